"""cnvrg's stdout protocol: tag and line-chart lines that the cnvrg UI (and the local runner) parse.

A line-chart point is ``cnvrg_linechart_<chart> [key: <x>] [group: '<series>'] value: <y>``: ``key`` is the
point's x value (without it cnvrg numbers the points), ``group`` the series inside the chart. The local
runner reads these lines back with :func:`crowdboxes.cnvrg.runner.parse_linechart`.
"""

from __future__ import annotations

from typing import Any


def cnvrg_tag(key: str, value: Any) -> None:
    """A cnvrg tag line: shown in the UI and passed to downstream tasks as env vars."""
    print(f"cnvrg_tag_{key}: {value}", flush=True)


def linechart_line(chart: str, value: Any, key: Any = None, group: str | None = None) -> str:
    """The stdout line of one point of line chart ``chart``: x = ``key`` (when given), series ``group``."""
    key_part = f" key: {key}" if key is not None else ""
    group_part = f" group: '{group}'" if group is not None else ""
    return f"cnvrg_linechart_{chart}{key_part}{group_part} value: {value}"


def cnvrg_linechart(chart: str, value: Any, key: Any = None, group: str | None = None) -> None:
    """Print a point of line chart ``chart`` (x = ``key`` when given, series ``group``) for the cnvrg UI."""
    print(linechart_line(chart, value, key, group), flush=True)
