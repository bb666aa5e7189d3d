"""cnvrg's stdout protocol: tag and line-chart lines that the cnvrg UI (and the local runner) parse."""

from __future__ import annotations

from typing import Any


def cnvrg_tag(key: str, value: Any) -> None:
    """A cnvrg tag line: shown in the UI and passed to downstream tasks as env vars."""
    print(f"cnvrg_tag_{key}: {value}", flush=True)


def cnvrg_linechart(chart: str, value: Any, key: str | None = None) -> None:
    """A point of line chart ``chart`` (series ``key`` when given), drawn by the cnvrg UI."""
    key_part = f" key: {key}" if key is not None else ""
    print(f"cnvrg_linechart_{chart}{key_part} value: {value}", flush=True)
