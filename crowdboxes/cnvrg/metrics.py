"""cnvrg's stdout protocol: tag and line-chart lines that the cnvrg UI (and the local runner) parse.

A line-chart point is ``cnvrg_linechart_<chart> [key: <x>] [group: '<series>'] value: <y>``: ``key`` is the
point's x value (without it cnvrg numbers the points), ``group`` the series inside the chart. The local
runner reads these lines back with :func:`crowdboxes.cnvrg.runner.parse_linechart`.

cnvrg reads *every* line of a job's output, so a line break inside user text (a file name, a label) could
start a line of its own, a fake ``cnvrg_tag_...`` or chart point. Every line a step prints that holds user
text goes through :func:`one_line`; tag and chart lines do so themselves, and their names are checked.
"""

from __future__ import annotations

import re
from typing import Any

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def one_line(text: Any) -> str:
    """``text`` as one printable line: each non-printable character (``\\n``, ``\\r``, ``\\t``, ESC, U+2028,
    U+0085 ...: everything ``str.isprintable`` refuses) as its Python escape (``\\n`` as the two characters
    backslash and n); printable text, spaces included, is unchanged."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _name(kind: str, name: str) -> str:
    """A tag key or chart name: letters, digits, ``_ . -`` only (cnvrg parses up to the first ``:``/space)."""
    if not _NAME_RE.match(str(name)):
        raise ValueError(f"cnvrg {kind} name {one_line(name)!r}: use letters, digits, '_', '.' or '-'")
    return str(name)


def tag_line(key: str, value: Any) -> str:
    """The stdout line of tag ``key``: the value on one line (:func:`one_line`)."""
    return f"cnvrg_tag_{_name('tag', key)}: {one_line(value)}"


def cnvrg_tag(key: str, value: Any) -> None:
    """A cnvrg tag line: shown in the UI and passed to downstream tasks as env vars."""
    print(tag_line(key, value), flush=True)


def linechart_line(chart: str, value: Any, key: Any = None, group: str | None = None) -> str:
    """The stdout line of one point of line chart ``chart``: x = ``key`` (when given), series ``group``.

    Every field is one line (:func:`one_line`); a quote in ``group`` is escaped (``\\x27``) so the series
    name cannot end early and carry a field of its own."""
    key_part = f" key: {one_line(key).replace(' ', '_')}" if key is not None else ""
    group_part = f" group: '{one_line(group).replace(chr(39), chr(92) + 'x27')}'" if group is not None else ""
    return f"cnvrg_linechart_{_name('chart', chart)}{key_part}{group_part} value: {one_line(value).replace(' ', '_')}"


def cnvrg_linechart(chart: str, value: Any, key: Any = None, group: str | None = None) -> None:
    """Print a point of line chart ``chart`` (x = ``key`` when given, series ``group``) for the cnvrg UI."""
    print(linechart_line(chart, value, key, group), flush=True)
