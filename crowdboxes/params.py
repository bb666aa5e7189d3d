"""Step params as cnvrg passes them (every value a string): the "unset" words, numbers and booleans with
one-line errors that name the param."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from crowdboxes.errors import CrowdboxesError


def is_none(value: object) -> bool:
    """cnvrg params are strings and cannot be empty: the words none/null (or nothing) mean "unset"."""
    return value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"})


def none_or_value(value: str | None) -> str | None:
    """argparse ``type=`` for optional params: None for an unset word, else the value unchanged."""
    return None if is_none(value) else value


def none_or(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse ``type=``: None for the words none/null/empty (:func:`is_none`),
    else ``convert(value)``; named like ``convert`` so argparse's message reads e.g. "invalid float value"."""
    def parse(value: str) -> Any:
        return None if is_none(value) else convert(value)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def parse_bool(name: str, value: object) -> bool:
    """``true/1/yes`` or ``false/0/no`` (any case), else CrowdboxesError naming the param."""
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise CrowdboxesError(f"--{name} {value!r}: use true or false")


def parse_number(name: str, value: object, *, minimum: float | None = None, maximum: float | None = None,
                 integer: bool = False) -> float | int:
    """A finite number within bounds, or CrowdboxesError naming the param and the value."""
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise CrowdboxesError(f"--{name} {value!r} is not a {'whole ' if integer else ''}number") from None
    if not math.isfinite(number) or (integer and number != int(number)):
        raise CrowdboxesError(f"--{name} {value!r} is not a {'whole ' if integer else ''}number")
    if minimum is not None and number < minimum:
        raise CrowdboxesError(f"--{name} {value!r} must be at least {minimum:g}")
    if maximum is not None and number > maximum:
        raise CrowdboxesError(f"--{name} {value!r} must be at most {maximum:g}")
    return int(number) if integer else number


def number_type(name: str, *, minimum: float | None = None, maximum: float | None = None, integer: bool = False,
                allow_none: bool = False) -> Callable[[str], float | int | None]:
    """argparse ``type=`` checking like :func:`parse_number` (``allow_none``: the unset words give None); a bad
    value is the step's one ``error:`` line naming the param (argparse lets CrowdboxesError through)."""
    def parse(value: str) -> float | int | None:
        if allow_none and is_none(value):
            return None
        return parse_number(name, value, minimum=minimum, maximum=maximum, integer=integer)

    parse.__name__ = "number"
    return parse
