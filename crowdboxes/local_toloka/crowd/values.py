"""Valid answer values for an :class:`~.spec.OutputField`.

* :func:`is_valid` mirrors the local Toloka backend's ``validate_value`` (models/validation.py)
  and is a little stricter where real Toloka or the view is: ``allowed_values`` of every type,
  ``min_size``/``max_size`` of arrays, the view's options, a ``condition.schema`` pattern
  (JSON-schema semantics: ``re.search``), finite floats, JSON-serialisable json, and the
  image-annotation item format. Whatever passes it passes the backend.
* :func:`uninformed` draws a random valid value (spammers, tasks without truth, unknown things).
* :func:`coerce` moves a wanted value to the closest valid one; :func:`complete` does that for a
  whole answer; :func:`shapes_to_annotation` writes rectangles in a field's annotation format.

Image annotation (TB ``field.image-annotation``) output: a list of items with coordinates
relative to the image (0..1, origin top left): ``{"shape": "rectangle", "left", "top", "width",
"height"}``, ``{"shape": "polygon", "points": [{"left", "top"}, ...]}``, ``{"shape": "point",
"left", "top"}``, each with ``"label"`` (one of the field's label values) when the field has labels.

Every function takes an explicit ``numpy.random.Generator`` so a seeded crowd replays exactly.
Stdlib + attrs + numpy only: the crowd never imports the product.
"""

from __future__ import annotations

import json
import math
import re
import string
from typing import Any, Mapping, Sequence

import attrs
import numpy as np

from .spec import ALL_SHAPES, OutputField

__all__ = ["is_valid", "uninformed", "coerce", "complete", "shapes_to_annotation", "sample_pattern"]

# The backend's syntax checks (models/base.py URL_RE, COORD_RE), restated here because this
# module may not import the product; tests/test_crowd_spec.py checks values against the backend.
_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_COORD_RE = re.compile(r"^\s*-?\d+(\.\d+)?\s*,\s*-?\d+(\.\d+)?\s*$")

_WORDS = ("red", "car", "sign", "tree", "house", "road", "blue", "left", "right", "small", "big",
          "stop", "light", "green", "photo", "item", "shoe", "street", "city", "park", "one", "two",
          "yes", "no", "maybe", "dark", "white", "black", "near", "far")
_SHAPE_KEYS = {"rectangle": ("left", "top", "width", "height"), "point": ("left", "top")}
_DEFAULT_ARRAY_SIZE = (1, 3)  # array_* without min/max_size: 1..3 items
_NUMBER_SPAN = 10  # an unbounded side of integer/float draws spans this much


# --------------------------------------------------------------------------------------------------
# Validity
# --------------------------------------------------------------------------------------------------

def _is_annotation(field: OutputField) -> bool:
    return field.component == "field.image-annotation" and field.subpath is None


def _is_checkbox_group(field: OutputField) -> bool:
    return field.component == "field.checkbox-group" and field.subpath is None


def _item_field(field: OutputField) -> OutputField:
    """The field an ``array_*`` element is checked against (same constraints, scalar type)."""
    return attrs.evolve(field, type=field.item_type, required=True, min_size=None, max_size=None)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pattern_ok(pattern: str | None, value: str) -> bool:
    if not pattern:
        return True
    try:
        return re.search(pattern, value) is not None
    except re.error:  # a JS-only regex we cannot compile: nothing we can hold the value to
        return True


def _annotation_item_ok(field: OutputField, item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    shapes = field.shapes or ALL_SHAPES
    shape = item.get("shape")
    if shape not in shapes:
        return False
    if shape == "polygon":
        points = item.get("points")
        if not isinstance(points, list) or len(points) < 3:
            return False
        if not all(isinstance(p, dict) and all(_number(p.get(k)) and 0 <= p[k] <= 1 for k in ("left", "top"))
                   for p in points):
            return False
    else:
        keys = _SHAPE_KEYS[shape]
        if not all(_number(item.get(k)) and 0 <= item[k] <= 1 for k in keys):
            return False
        if shape == "rectangle" and (item["left"] + item["width"] > 1 + 1e-9
                                     or item["top"] + item["height"] > 1 + 1e-9):
            return False
    label_values = [c.value for c in field.labels]
    if label_values:
        return item.get("label") in label_values
    return "label" not in item


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _scalar_ok(field: OutputField, value: Any) -> bool:
    kind = field.type
    if kind == "url":
        ok = isinstance(value, str) and _URL_RE.match(value) is not None
    elif kind in ("string", "file"):
        ok = (isinstance(value, str)
              and (field.min_length is None or len(value) >= field.min_length)
              and (field.max_length is None or len(value) <= field.max_length)
              and (kind == "file" or _pattern_ok(field.pattern, value)))
    elif kind == "integer":
        # The backend takes int (or Decimal); a float 3.0 is INTEGER_EXPECTED there.
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = _number(value)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "coordinates":
        ok = isinstance(value, str) and _COORD_RE.match(value) is not None
    elif kind == "json":
        if _is_annotation(field):
            ok = isinstance(value, list) and all(_annotation_item_ok(field, i) for i in value)
        elif _is_checkbox_group(field):
            keys = {str(c.value) for c in field.options}
            ok = isinstance(value, dict) and all(k in keys and isinstance(v, bool) for k, v in value.items())
        else:
            ok = _json_ok(value)
    else:  # a type we do not know: the backend checks nothing; JSON is the least we need
        ok = _json_ok(value)
    if not ok:
        return False
    if kind in ("integer", "float"):
        if field.min_value is not None and value < field.min_value:
            return False
        if field.max_value is not None and value > field.max_value:
            return False
    if field.allowed_values is not None and kind in ("string", "file", "integer", "float", "boolean"):
        if value not in field.allowed_values:
            return False
    if field.options and not _is_checkbox_group(field) and kind != "json":
        if value not in [c.value for c in field.options]:
            return False
    return True


def is_valid(field: OutputField, value: Any) -> bool:
    """Whether ``value`` is an acceptable answer for ``field`` (None: only if not required)."""
    if value is None:
        return not field.required
    if field.type.startswith("array_"):
        if not isinstance(value, list):
            return False
        if field.min_size is not None and len(value) < field.min_size:
            return False
        if field.max_size is not None and len(value) > field.max_size:
            return False
        item = _item_field(field)
        return all(_scalar_ok(item, v) for v in value)
    return _scalar_ok(field, value)


# --------------------------------------------------------------------------------------------------
# Random valid values
# --------------------------------------------------------------------------------------------------

def _pick(seq: Sequence[Any], rng: np.random.Generator) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _words(rng: np.random.Generator, lo: int, hi: int | None) -> str:
    """1-3 random words, padded/cut so that ``lo <= len <= hi``."""
    text = " ".join(_pick(_WORDS, rng) for _ in range(int(rng.integers(1, 4))))
    while len(text) < lo:
        text += " " + _pick(_WORDS, rng)
    if hi is not None:
        text = text[:hi].rstrip() if len(text[:hi].rstrip()) >= lo else text[:hi]
    return text


def sample_pattern(pattern: str, rng: np.random.Generator, *, max_repeat: int = 3) -> str | None:
    """A random string matching the regex ``pattern`` (Python syntax), or None if we cannot.

    Walks the stdlib's parse tree of the regex: literals, classes, categories, alternation,
    groups and repeats (an open repeat draws at most ``min + max_repeat`` times); anchors and
    look-arounds are skipped, so the result is checked by the caller with ``re.search``.
    """
    # the stdlib's private regex parser (Python >= 3.11; the package requires it): no type stubs
    import re._parser as sre_parse  # type: ignore[import-not-found]
    from re import _constants as c  # type: ignore[attr-defined]
    try:
        tree = sre_parse.parse(pattern)
    except Exception:
        return None
    printable = [ch for ch in string.ascii_letters + string.digits + " .-_/"]
    categories = {c.CATEGORY_DIGIT: string.digits, c.CATEGORY_WORD: string.ascii_letters + string.digits + "_",
                  c.CATEGORY_SPACE: " ", c.CATEGORY_NOT_DIGIT: string.ascii_letters,
                  c.CATEGORY_NOT_WORD: " .-/", c.CATEGORY_NOT_SPACE: string.ascii_letters + string.digits}
    groups: dict[int, str] = {}

    def klass(items: list) -> str:
        negate = bool(items) and items[0][0] == c.NEGATE
        pool: list[str] = []
        for op, arg in items[1:] if negate else items:
            if op == c.LITERAL:
                pool.append(chr(arg))
            elif op == c.RANGE:
                lo, hi = arg
                pool.extend(chr(x) for x in range(lo, min(hi, lo + 200) + 1))
            elif op == c.CATEGORY:
                pool.extend(categories.get(arg, ""))
        if negate:
            banned = set(pool)
            pool = [ch for ch in printable if ch not in banned]
        if not pool:
            raise ValueError("empty class")
        return _pick(pool, rng)

    def emit(seq: Any) -> str:
        out = []
        for op, arg in seq:
            if op == c.LITERAL:
                out.append(chr(arg))
            elif op == c.NOT_LITERAL:
                out.append(_pick([ch for ch in printable if ord(ch) != arg], rng))
            elif op == c.ANY:
                # Half the time a literal dot: an unescaped "." in "shop.com/" usually means one.
                out.append("." if rng.random() < 0.5 else _pick(printable, rng))
            elif op == c.IN:
                out.append(klass(arg))
            elif op == c.BRANCH:
                out.append(emit(_pick(arg[1], rng)))
            elif op == c.SUBPATTERN:
                group, sub = arg[0], arg[-1]
                text = emit(sub)
                if group is not None:
                    groups[group] = text
                out.append(text)
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
                lo, hi, sub = arg
                hi = lo + max_repeat if hi == c.MAXREPEAT else min(hi, lo + max_repeat)
                out.extend(emit(sub) for _ in range(int(rng.integers(lo, hi + 1))))
            elif op == c.GROUPREF:
                out.append(groups.get(arg, ""))
            elif op == getattr(c, "ATOMIC_GROUP", None):
                out.append(emit(arg))
            # AT (anchors), ASSERT, ASSERT_NOT, CATEGORY outside a class: nothing to emit
        return "".join(out)

    try:
        return emit(tree)
    except (ValueError, RecursionError):
        return None


def _string_value(field: OutputField, rng: np.random.Generator) -> str:
    lo, hi = field.min_length or 0, field.max_length
    if lo == 0 and field.required:
        lo = 1  # an empty required answer is what a real form would refuse
    if hi is not None and hi < lo:
        lo = hi  # infeasible spec: keep within the max, the backend checks both and will say so
    fits = lambda text: (lo <= len(text) and (hi is None or len(text) <= hi)  # noqa: E731
                         and _pattern_ok(field.pattern, text))
    if field.is_link:  # a pasted link: a URL, made from the pattern's sample when there is one
        for _ in range(10):
            sample = sample_pattern(field.pattern, rng) if field.pattern else None
            for text in ((f"https://www.{sample.lstrip('/')}", sample) if sample else (_url_value(rng),)):
                if fits(text):
                    return text
    if field.pattern:
        for _ in range(30):  # a pattern sample that also fits the lengths, if there is one
            candidate = sample_pattern(field.pattern, rng)
            if candidate is None:
                break
            if fits(candidate):
                return candidate
    return _words(rng, lo, hi)


def _annotation_value(field: OutputField, rng: np.random.Generator) -> list[dict]:
    """0-3 random shapes of the enabled kinds; each rectangle 5-50% of the image per side."""
    shapes = field.shapes or ALL_SHAPES
    items = []
    for _ in range(int(rng.integers(0, 4))):
        w, h = (float(x) for x in rng.uniform(0.05, 0.5, size=2))
        left, top = float(rng.uniform(0, 1 - w)), float(rng.uniform(0, 1 - h))
        box = {"left": left, "top": top, "width": w, "height": h}
        shape = _pick(shapes, rng)
        items.append(_box_item(box, shape, field, rng))
    return items


def _url_value(rng: np.random.Generator) -> str:
    return f"https://www.example.com/{_pick(_WORDS, rng)}/{int(rng.integers(1, 100000))}"


def _int_bounds(field: OutputField) -> tuple[int, int]:
    lo = math.ceil(field.min_value) if field.min_value is not None else None
    hi = math.floor(field.max_value) if field.max_value is not None else None
    if lo is None:  # open below: from 0 when the max allows it, else the 10 below the max
        lo = 0 if hi is None or hi >= 0 else hi - _NUMBER_SPAN
    if hi is None:
        hi = lo + _NUMBER_SPAN
    return lo, max(lo, hi)


def _float_bounds(field: OutputField) -> tuple[float, float]:
    lo = float(field.min_value) if field.min_value is not None else None
    hi = float(field.max_value) if field.max_value is not None else None
    if lo is None:
        lo = 0.0 if hi is None or hi >= 0 else hi - _NUMBER_SPAN
    if hi is None:
        hi = lo + _NUMBER_SPAN
    return lo, max(lo, hi)


def _scalar_uninformed(field: OutputField, rng: np.random.Generator) -> Any:
    kind = field.type
    if field.options and kind != "json" and not _is_checkbox_group(field):
        return _pick(field.options, rng).value
    if field.allowed_values and kind in ("string", "file", "integer", "float", "boolean"):
        return _pick(field.allowed_values, rng)
    if kind == "boolean":
        return bool(rng.integers(2))
    if kind == "string":
        return _string_value(field, rng)
    if kind == "integer":
        lo, hi = _int_bounds(field)
        return int(rng.integers(lo, hi + 1))
    if kind == "float":
        low, high = _float_bounds(field)
        # 3 decimals read like a person's number; re-clip after rounding so bounds still hold.
        return float(min(max(round(float(rng.uniform(low, high)), 3), low), high))
    if kind == "url":
        return _url_value(rng)
    if kind == "file":
        # Toloka stores an uploaded file's id; any non-empty string passes the backend.
        return f"file-{int(rng.integers(16 ** 8)):08x}"
    if kind == "coordinates":
        return f"{float(rng.uniform(-80, 80)):.6f},{float(rng.uniform(-180, 180)):.6f}"
    if kind == "json":
        if _is_annotation(field):
            return _annotation_value(field, rng)
        if _is_checkbox_group(field):
            return {str(c.value): bool(rng.integers(2)) for c in field.options}
        if field.subpath:  # the view fills one key (maybe nested) of this object
            value: Any = _pick(field.options, rng).value if field.options else _pick(_WORDS, rng)
            for key in reversed(field.subpath.split(".")):
                value = {key: value}
            return value
        return {}
    return _pick(_WORDS, rng)  # unknown type: a word is JSON and passes the backend


def uninformed(field: OutputField, rng: np.random.Generator) -> Any:
    """A random valid value for ``field`` (see the module docstring for the formats).

    Choices draw a uniform option; booleans a fair coin; strings 1-3 words within the lengths
    (or a regex sample when the view sets a pattern); numbers uniform within the bounds (an open
    side spans 10); arrays ``min_size..max_size`` items (default 1..3); an optional ``file``
    gives None (nothing uploaded), a required one a placeholder file id.
    """
    if field.type == "file" and not field.required:
        return None
    if field.type.startswith("array_"):
        lo = field.min_size if field.min_size is not None else _DEFAULT_ARRAY_SIZE[0]
        hi = field.max_size if field.max_size is not None else max(lo, _DEFAULT_ARRAY_SIZE[1])
        item = _item_field(field)
        return [_scalar_uninformed(item, rng) for _ in range(int(rng.integers(lo, max(lo, hi) + 1)))]
    return _scalar_uninformed(field, rng)


# --------------------------------------------------------------------------------------------------
# Coercion
# --------------------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples as plain JSON types."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _match_choice(choices: Sequence[Any], wanted: Any) -> Any:
    """The choice value equal to ``wanted``, else one whose value or label matches it as text
    (case-insensitive), else a sentinel."""
    for c in choices:
        if c.value == wanted and type(c.value) is type(wanted):
            return c.value
    text = str(wanted).strip().lower()
    for c in choices:
        if str(c.value).strip().lower() == text or (c.label and c.label.strip().lower() == text):
            return c.value
    return _NO_MATCH


_NO_MATCH = object()


def _to_float(value: Any) -> float | None:
    try:
        return None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        return None

_TRUE_WORDS = {"true", "yes", "y", "1", "on", "ok", "да"}
_FALSE_WORDS = {"false", "no", "n", "0", "off", "нет", ""}


def _coerce_scalar(field: OutputField, wanted: Any, rng: np.random.Generator) -> Any:
    kind = field.type
    if _scalar_ok(field, wanted):
        return wanted
    if field.options and kind != "json" and not _is_checkbox_group(field):
        found = _match_choice(field.options, wanted)
        if found is not _NO_MATCH:
            return found
        numbers = [c.value for c in field.options if _number(c.value)]
        if kind in ("integer", "float") and numbers and _number(_to_float(wanted)):
            return min(numbers, key=lambda v: abs(v - _to_float(wanted)))  # the nearest number
        return _pick(field.options, rng).value
    if field.allowed_values and kind in ("string", "file", "boolean"):
        found = next((v for v in field.allowed_values if str(v).lower() == str(wanted).strip().lower()), _NO_MATCH)
        return found if found is not _NO_MATCH else _pick(field.allowed_values, rng)
    try:
        if kind == "boolean":
            if isinstance(wanted, str) and wanted.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
                return wanted.strip().lower() in _TRUE_WORDS
            if _number(wanted):
                return bool(wanted)
        elif kind in ("integer", "float"):
            number = float(wanted) if not isinstance(wanted, bool) else float(int(wanted))
            if math.isfinite(number):
                if kind == "integer":
                    lo, hi = field.min_value, field.max_value
                    value = int(round(number))
                    if lo is not None:
                        value = max(value, math.ceil(lo))
                    if hi is not None:
                        value = min(value, math.floor(hi))
                    if field.allowed_values:  # the nearest allowed number
                        value = min(field.allowed_values, key=lambda v: abs(v - value))
                    return value
                if field.min_value is not None:
                    number = max(number, float(field.min_value))
                if field.max_value is not None:
                    number = min(number, float(field.max_value))
                if field.allowed_values:
                    number = min(field.allowed_values, key=lambda v: abs(v - number))
                return number
        elif kind == "string":
            text = wanted if isinstance(wanted, str) else json.dumps(wanted) if isinstance(
                wanted, (dict, list)) else str(wanted)
            if field.max_length is not None:
                text = text[:field.max_length]  # too long: cut
            if field.min_length is not None and len(text) < field.min_length:
                text = (text + " " + _words(rng, field.min_length, field.max_length))[
                    :field.max_length or None] if text else _words(rng, field.min_length, field.max_length)
            if _scalar_ok(field, text):
                return text
        elif kind == "url" and isinstance(wanted, str):
            text = wanted.strip()
            if not re.match(r"^[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
                text = "https://" + text.lstrip("/")  # a bare "www.x.com/y" gets a scheme
            if _URL_RE.match(text):
                return text
        elif kind == "coordinates":
            if isinstance(wanted, (list, tuple)) and len(wanted) == 2 and all(_number(v) for v in wanted):
                return f"{float(wanted[0]):.6f},{float(wanted[1]):.6f}"
            if isinstance(wanted, str) and _COORD_RE.match(wanted.strip()):
                return wanted.strip()
        elif kind == "json":
            if _is_annotation(field):
                return _coerce_annotation(field, wanted, rng)
            if _is_checkbox_group(field):
                keys = [str(c.value) for c in field.options]
                if isinstance(wanted, dict):
                    return {k: bool(v) for k, v in wanted.items() if k in keys}
                if isinstance(wanted, (list, tuple, set)):  # the values that are ticked
                    ticked = {str(v) for v in wanted}
                    return {k: k in ticked for k in keys}
    except (TypeError, ValueError, OverflowError):
        pass
    return _scalar_uninformed(field, rng)


def _coerce_annotation(field: OutputField, wanted: Any, rng: np.random.Generator) -> list[dict]:
    """Keep the items that are (or can be made) valid: rectangles without ``shape`` are
    converted, coordinates clipped to the image, labels fixed to the field's labels."""
    if isinstance(wanted, dict):
        wanted = [wanted]
    if not isinstance(wanted, list):
        return _annotation_value(field, rng)
    out = []
    for item in wanted:
        if not isinstance(item, dict):
            continue
        if _annotation_item_ok(field, item):
            out.append(item)
            continue
        shape = item.get("shape")
        if shape in (None, "rectangle") and all(_number(item.get(k)) for k in _SHAPE_KEYS["rectangle"]):
            out.extend(shapes_to_annotation([item], field, rng))
        elif shape == "point" and "point" in (field.shapes or ALL_SHAPES) and all(
                _number(item.get(k)) for k in ("left", "top")):
            out.append(_with_label({"shape": "point", "left": _clip01(item["left"]),
                                    "top": _clip01(item["top"])}, item.get("label"), field, rng))
        elif shape == "polygon" and isinstance(item.get("points"), list):
            pts = [{"left": _clip01(p["left"]), "top": _clip01(p["top"])} for p in item["points"]
                   if isinstance(p, dict) and _number(p.get("left")) and _number(p.get("top"))]
            if len(pts) >= 3 and "polygon" in (field.shapes or ALL_SHAPES):
                out.append(_with_label({"shape": "polygon", "points": pts}, item.get("label"), field, rng))
            elif len(pts) >= 1:  # another shape kind: go through the bounding box
                xs, ys = [p["left"] for p in pts], [p["top"] for p in pts]
                box = {"left": min(xs), "top": min(ys), "width": max(xs) - min(xs),
                       "height": max(ys) - min(ys), "label": item.get("label")}
                out.extend(shapes_to_annotation([box], field, rng))
    return [i for i in out if _annotation_item_ok(field, i)]


def coerce(field: OutputField, wanted: Any, rng: np.random.Generator) -> Any:
    """The closest valid value to ``wanted``: a valid value comes back as is; an option given by
    label or as text becomes the option's value, anything else a random option; text too long
    is cut, too short padded with words; numbers are rounded (integers) and clipped to the
    bounds; arrays are coerced item by item and cut/padded to the sizes; None for a required
    field (or anything hopeless) is :func:`uninformed`; None for an optional one stays None."""
    wanted = _plain(wanted)
    if wanted is None:
        return uninformed(field, rng) if field.required else None
    if is_valid(field, wanted):
        return wanted
    if field.type.startswith("array_"):
        item = _item_field(field)
        items = wanted if isinstance(wanted, list) else [wanted]
        out = [_coerce_scalar(item, v, rng) for v in items if v is not None]
        if field.max_size is not None:
            out = out[:field.max_size]
        while field.min_size is not None and len(out) < field.min_size:
            out.append(_scalar_uninformed(item, rng))
        value: Any = out
    else:
        value = _coerce_scalar(field, wanted, rng)
    return value if is_valid(field, value) else uninformed(field, rng)


def complete(outputs: Sequence[OutputField], values: Mapping[str, Any], rng: np.random.Generator, *,
             omit_optional_share: float = 0.0) -> dict:
    """A whole valid answer: each output in ``outputs`` order; a present value is coerced, a
    missing required one drawn with :func:`uninformed`, a missing optional one omitted; keys
    not in ``outputs`` are dropped. ``omit_optional_share``: the probability that a *given*
    optional value is dropped anyway (workers skip optional questions); the draw happens only
    when the share is > 0, so the default consumes no randomness for it."""
    values = values if isinstance(values, Mapping) else {}
    answer: dict[str, Any] = {}
    for field in outputs:
        wanted = values.get(field.name)
        if wanted is None:
            if field.required:
                answer[field.name] = uninformed(field, rng)
            continue
        if not field.required and omit_optional_share > 0 and rng.random() < omit_optional_share:
            continue
        value = coerce(field, wanted, rng)
        if value is not None:
            answer[field.name] = value
    return answer


# --------------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------------

def _clip01(x: float) -> float:
    return min(max(float(x), 0.0), 1.0)


def _with_label(item: dict, wanted: Any, field: OutputField, rng: np.random.Generator) -> dict:
    """Set ``item["label"]`` to a label value of the field (the wanted one matched by value or
    label text, else a random one); no label key at all when the field declares no labels."""
    item.pop("label", None)
    if field.labels:
        found = _match_choice(field.labels, wanted) if wanted is not None else _NO_MATCH
        item["label"] = found if found is not _NO_MATCH else _pick(field.labels, rng).value
    return item


def _box_item(box: Mapping[str, Any], shape: str, field: OutputField, rng: np.random.Generator) -> dict:
    """One normalised box in one shape kind. Coordinates are clipped into the image first
    (left/top to 0..1, then width/height so the box ends inside it)."""
    left, top = _clip01(box["left"]), _clip01(box["top"])
    width = min(max(float(box["width"]), 0.0), 1.0 - left)
    height = min(max(float(box["height"]), 0.0), 1.0 - top)
    if shape == "rectangle":
        item: dict[str, Any] = {"shape": "rectangle", "left": left, "top": top, "width": width, "height": height}
    elif shape == "polygon":  # the 4 corners, clockwise from the top left
        right, bottom = left + width, top + height
        item = {"shape": "polygon", "points": [{"left": left, "top": top}, {"left": right, "top": top},
                                               {"left": right, "top": bottom}, {"left": left, "top": bottom}]}
    else:  # a point at the centre
        item = {"shape": "point", "left": left + width / 2, "top": top + height / 2}
    return _with_label(item, box.get("label"), field, rng)


def shapes_to_annotation(boxes_norm: Sequence[Mapping[str, Any]], field: OutputField,
                         rng: np.random.Generator) -> list[dict]:
    """Rectangles ``{"left","top","width","height","label"?}`` (normalised 0..1) in ``field``'s
    annotation format: rectangles if the field allows them, else 4-corner polygons, else
    points at the centres. ``label`` is set only when the field has labels, and then always to
    one of its label values (the box's label matched by value or label text, else random).
    Boxes that are not dicts with four numbers are skipped; a 4-sequence is read as
    ``(left, top, width, height)``."""
    shapes = field.shapes or ALL_SHAPES
    shape = next(s for s in ("rectangle", "polygon", "point") if s in shapes) \
        if any(s in shapes for s in ALL_SHAPES) else "rectangle"
    out = []
    for box in boxes_norm:
        if isinstance(box, (list, tuple)) and len(box) in (4, 5):
            box = dict(zip(("left", "top", "width", "height", "label"), box))
        if not isinstance(box, Mapping):
            continue
        box = {k: _plain(v) for k, v in box.items()}
        if not all(_number(box.get(k)) for k in _SHAPE_KEYS["rectangle"]):
            continue
        out.append(_box_item(box, shape, field, rng))
    return out
