"""Validation shared by the resources: request fields, input/output values, project edits, QC comparisons."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, overload

from crowdboxes.local_toloka.db import parse_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist, ValidationError, field_error
from crowdboxes.local_toloka.models.base import COORD_RE, URL_RE, Doc


# The field readers return None only for an absent optional field: the overloads tell a required
# field's type apart from an optional one's.


def _require_object(body: Any, what: str = "body") -> Doc:
    if not isinstance(body, dict):
        raise ValidationError.field(what, "OBJECT_EXPECTED", "A JSON object is expected")
    return body


@overload
def _decimal(body: Doc, key: str, *, required: Literal[True] = ..., minimum: Decimal | None = None) -> Decimal: ...
@overload
def _decimal(body: Doc, key: str, *, required: bool, minimum: Decimal | None = None) -> Decimal | None: ...
def _decimal(body: Doc, key: str, *, required: bool = True, minimum: Decimal | None = None) -> Decimal | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError.field(key, "VALUE_REQUIRED", "Value must be present and not equal to null")
        return None
    if isinstance(value, bool):
        raise ValidationError.field(key, "FLOAT_EXPECTED", "A number is expected")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError.field(key, "FLOAT_EXPECTED", "A number is expected") from None
    if minimum is not None and number < minimum:
        raise ValidationError.field(key, "VALUE_LESS_THAN_MIN", f"Value must be at least {minimum}", [str(minimum)])
    return number


def _referenced(body: Doc, key: str, lookup: Callable[[Any], sqlite3.Row], what: str) -> sqlite3.Row:
    """The row ``lookup(body[key])`` of the entity ``body[key]`` names (``what``: "Project", "Skill"...);
    VALUE_REQUIRED when absent, ENTITY_DOES_NOT_EXIST when there is none."""
    if body.get(key) is None:
        raise ValidationError.field(key, "VALUE_REQUIRED", "Value must be present and not equal to null")
    try:
        return lookup(body[key])
    except DoesNotExist:
        raise ValidationError.field(key, "ENTITY_DOES_NOT_EXIST", f"{what} {body[key]} does not exist") from None


@overload
def _integer(body: Doc, key: str, *, required: Literal[True] = ..., minimum: int | None = None,
             maximum: int | None = None, path: str | None = None) -> int: ...
@overload
def _integer(body: Doc, key: str, *, required: bool, minimum: int | None = None, maximum: int | None = None,
             path: str | None = None) -> int | None: ...
def _integer(body: Doc, key: str, *, required: bool = True, minimum: int | None = None, maximum: int | None = None,
             path: str | None = None) -> int | None:
    path = path or key
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError.field(path, "VALUE_REQUIRED", "Value must be present and not equal to null")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or int(value) != value:
        raise ValidationError.field(path, "INTEGER_EXPECTED", "An integer is expected")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValidationError.field(path, "VALUE_LESS_THAN_MIN", f"Value must be at least {minimum}", [minimum])
    if maximum is not None and value > maximum:
        raise ValidationError.field(path, "VALUE_GREATER_THAN_MAX", f"Value must be at most {maximum}", [maximum])
    return value


@overload
def _string(body: Doc, key: str, *, required: Literal[True] = ...) -> str: ...
@overload
def _string(body: Doc, key: str, *, required: bool) -> str | None: ...
def _string(body: Doc, key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError.field(key, "VALUE_REQUIRED", "Value must be present and not equal to null")
        return None
    if not isinstance(value, str):
        raise ValidationError.field(key, "STRING_EXPECTED", "A string is expected")
    return value


@overload
def _timestamp(body: Doc, key: str, *, required: Literal[True] = ...) -> dt.datetime: ...
@overload
def _timestamp(body: Doc, key: str, *, required: bool) -> dt.datetime | None: ...
def _timestamp(body: Doc, key: str, *, required: bool = True) -> dt.datetime | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError.field(key, "VALUE_REQUIRED", "Value must be present and not equal to null")
        return None
    try:
        return parse_ts(value)
    except (ValueError, TypeError):
        raise ValidationError.field(key, "INVALID_DATE_TIME_SYNTAX", f"Invalid date-time {value!r}") from None


def validate_value(spec: dict, value: Any) -> dict | None:
    """One input/output value against its FieldSpec: None if fine, else ``{code, message}``."""
    kind = str(spec.get("type", "")).lower()
    if kind.startswith("array_"):
        if not isinstance(value, list):
            return field_error("ARRAY_EXPECTED", "An array is expected")
        for item in value:
            problem = validate_value({**spec, "type": kind[len("array_"):]}, item)
            if problem:
                return problem
        return None
    if kind == "url":
        if not isinstance(value, str) or not URL_RE.match(value):
            return field_error("INVALID_URL_SYNTAX", f"Invalid URL {str(value)[:80]!r}")
    elif kind in {"string", "file"}:
        if not isinstance(value, str):
            return field_error("STRING_EXPECTED", "A string is expected")
        allowed = spec.get("allowed_values")
        if allowed and value not in allowed:
            return field_error("VALUE_NOT_ALLOWED", f"Value {value!r} is not one of {allowed}", allowed)
        if spec.get("min_length") is not None and len(value) < spec["min_length"]:
            return field_error("STRING_LENGTH_LESS_THAN_MIN", "String is too short", [spec["min_length"]])
        if spec.get("max_length") is not None and len(value) > spec["max_length"]:
            return field_error("STRING_LENGTH_GREATER_THAN_MAX", "String is too long", [spec["max_length"]])
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or int(value) != value:
            return field_error("INTEGER_EXPECTED", "An integer is expected")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return field_error("FLOAT_EXPECTED", "A number is expected")
    elif kind == "boolean":
        if not isinstance(value, bool):
            return field_error("BOOLEAN_EXPECTED", "A boolean is expected")
    elif kind == "coordinates":
        if not isinstance(value, str) or not COORD_RE.match(value):
            return field_error("INVALID_COORDINATES_SYNTAX", "Coordinates 'lat,lon' are expected")
    if kind in {"integer", "float"}:
        if spec.get("min_value") is not None and value < spec["min_value"]:
            return field_error("VALUE_LESS_THAN_MIN", "Value is too small", [spec["min_value"]])
        if spec.get("max_value") is not None and value > spec["max_value"]:
            return field_error("VALUE_GREATER_THAN_MAX", "Value is too large", [spec["max_value"]])
    return None


def validate_input_values(input_spec: dict, values: Any, prefix: str = "input_values") -> dict:
    """Per-field errors keyed ``input_values.<field>`` (empty dict when valid)."""
    if not isinstance(values, dict):
        return {prefix: field_error("OBJECT_EXPECTED", "input_values must be an object")}
    errors = {}
    for name, spec in input_spec.items():
        value = values.get(name)
        if value is None:
            if spec.get("required", True):
                errors[f"{prefix}.{name}"] = field_error("VALUE_REQUIRED",
                                                         "Value must be present and not equal to null")
            continue
        problem = validate_value(spec, value)
        if problem:
            errors[f"{prefix}.{name}"] = problem
    for name in values:
        if name not in input_spec:
            errors[f"{prefix}.{name}"] = field_error("VALUE_NOT_ALLOWED", f"Field {name!r} is not in the input spec")
    return errors


def project_difference(old: dict, new: dict) -> str:
    """Toloka's level of a project edit: ``EQUAL``, ``NON_BREAKING_CHANGE`` or ``BREAKING_CHANGE``
    (the data specification changed, so existing pools stay on the old version)."""
    strip = lambda d: {k: v for k, v in d.items() if k not in {"id", "status", "created", "owner"}}  # noqa: E731
    if strip(old) == strip(new):
        return "EQUAL"
    old_spec, new_spec = old.get("task_spec") or {}, new.get("task_spec") or {}
    if any(old_spec.get(part) != new_spec.get(part) for part in ("input_spec", "output_spec")) \
            or old.get("assignments_issuing_type", "AUTOMATED") != new.get("assignments_issuing_type", "AUTOMATED"):
        return "BREAKING_CHANGE"
    return "NON_BREAKING_CHANGE"


def _compare(left: Any, operator: str, right: Any) -> bool:
    """A QC condition or filter comparison; None only equals None."""
    op = str(operator).upper()
    if op == "EQ":
        return left == right
    if op == "NE":
        return left != right
    if left is None or right is None:
        return False
    left_n: Any  # both floats, or both strings
    right_n: Any
    try:
        left_n, right_n = float(left), float(right)
    except (TypeError, ValueError):
        left_n, right_n = str(left), str(right)
    return {"GT": left_n > right_n, "GTE": left_n >= right_n, "LT": left_n < right_n,
            "LTE": left_n <= right_n}.get(op, False)
