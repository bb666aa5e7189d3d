"""Matching truth classes and answer words to a view's options: loose text comparison and the label map.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from crowdboxes.local_toloka.crowd.spec import Choice, OutputField

MISSING: Any = object()
"""What a lookup returns when nothing matches (None and "" can be real option values)."""


def norm(text: Any) -> str:
    """``text`` compared loosely: case-folded, without spaces, ``_`` and ``-`` ("No sign" == "no_sign")."""
    return re.sub(r"[\s_\-]+", "", str(text)).casefold()


def options_of(field: OutputField) -> list:
    """The values a worker can pick for a choice field (booleans without options: True, False)."""
    if field.options:
        return [c.value for c in field.options]
    if field.type == "boolean":
        return [True, False]
    return []


class Labels:
    """Truth class -> a value among ``choices`` (view labels or options), and back."""

    def __init__(self, choices: Sequence[Choice], label_map: Mapping | None) -> None:
        self.values = [c.value for c in choices]
        self._exact = {str(c.value): c.value for c in choices}
        self._loose: dict[str, object] = {}
        for c in choices:
            self._loose.setdefault(norm(c.value), c.value)
        for c in choices:
            if c.label:
                self._loose.setdefault(norm(c.label), c.value)
        self._map = dict(label_map or {})

    def find(self, cls: Any) -> Any:
        """The choice value for truth class ``cls``, or ``MISSING``."""
        for wanted in ([self._map[cls]] if cls in self._map else []) + [cls]:
            if str(wanted) in self._exact:
                return self._exact[str(wanted)]
            if norm(wanted) in self._loose:
                return self._loose[norm(wanted)]
        return MISSING

    def back(self, value: Any, classes: Iterable[str]) -> str:
        """The truth class among ``classes`` that maps to ``value`` (else ``value`` itself)."""
        for cls in classes:
            if self.find(cls) == value:
                return cls
        return value
