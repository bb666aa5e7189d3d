"""What a Toloka project asks of a worker: its task spec read into a small, typed model.

``task_model(task_spec)`` turns ``{input_spec, output_spec, view_spec}`` into a :class:`TaskModel`:
one :class:`OutputField` per ``output_spec`` key, enriched with what the Template Builder (TB) view
says about it (which ``field.*`` component writes it, its options, image-annotation labels and
shapes, a ``condition.schema`` pattern or length). Views that are not TB (classic HTML markup) or
that do not parse give a model from ``output_spec`` alone, with a note in ``problems``.

Sources: Toloka's FieldSpec (toloka-api.md 6.1; toloka-kit ``project/field_spec.py``): every spec
has ``type``, ``required`` (default true), ``hidden``; string/integer/boolean may carry
``allowed_values``; string ``min_length``/``max_length``; integer/float ``min_value``/``max_value``;
``array_*`` ``min_size``/``max_size``. Toloka's FieldSpec has no ``pattern``: ``OutputField.pattern``
comes from the view's ``condition.schema`` (JSON-schema ``pattern``, matched with ``re.search``).
TB components and attributes: toloka-kit ``project/template_builder/{base,fields}.py``.

Deliberately stdlib + attrs only: the crowd reads specs, it never imports the product.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Iterator

import attrs

__all__ = ["Choice", "OutputField", "TaskModel", "task_model", "image_inputs",
           "ALL_SHAPES", "CHOICE_COMPONENTS", "TEXT_COMPONENTS", "KNOWN_COMPONENTS"]

#: TB's default when ``field.image-annotation`` has no ``shapes``: "By default, all modes are
#: available" (toloka-kit ImageAnnotationFieldV1 docstring), so all three, in this order.
ALL_SHAPES: tuple[str, ...] = ("rectangle", "polygon", "point")

#: Components whose value is one of a list of options.
CHOICE_COMPONENTS = frozenset({"field.radio-group", "field.select", "field.button-radio-group",
                               "field.button-radio"})
#: Components where the worker types free text.
TEXT_COMPONENTS = frozenset({"field.text", "field.textarea", "field.email", "field.phone-number"})
BOOLEAN_COMPONENTS = frozenset({"field.checkbox", "field.toggle"})

#: Every TB component type toloka-kit 1.2 knows (ComponentType), plus ``field.toggle``; anything
#: else with a dotted ``type`` is reported in ``TaskModel.unknown_components``.
KNOWN_COMPONENTS = frozenset("""
action.bulk action.notify action.open-close action.open-link action.play-pause action.rotate
action.set action.toggle
condition.all condition.any condition.empty condition.equals condition.link-opened condition.not
condition.played condition.played-fully condition.required condition.same-domain condition.schema
condition.sub-array @yandex-toloka/condition.distance
data.input data.internal data.local @yandex-toloka/data.location data.output data.relative
field.audio field.button-radio field.button-radio-group field.checkbox field.checkbox-group
field.date field.email field.file field.image-annotation field.list field.media-file field.number
field.phone-number field.radio-group field.select field.text field.text-annotation field.textarea
field.toggle
helper.concat-arrays helper.entries2object helper.if helper.join helper.object2entries
helper.replace helper.search-query helper.switch helper.text-transform helper.transform
helper.translate @yandex-toloka/helper.proxy
layout.bars layout.columns layout.compare layout.side-by-side layout.sidebar
plugin.field.image-annotation.hotkeys plugin.field.text-annotation.hotkeys plugin.hotkeys
plugin.trigger plugin.toloka
view.action-button view.alert view.audio view.collapse view.device-frame view.divider view.group
view.iframe view.image view.labeled-list view.link view.link-group view.list view.map
view.markdown view.text view.video
""".split())

# A TB component type: "family.name" or "@scope/family.name". JSON-schema types inside
# condition.schema ("string", "object") have no dot, so they never look like components.
_COMPONENT_TYPE_RE = re.compile(r"^(@[\w-]+/)?[a-z]+\.[\w.-]+$")
# The link heuristic for kind "link": a free-text output whose name or label says link/URL.
_LINK_WORDS_RE = re.compile(r"link|url|href|website|web site|web page|webpage|ссылк", re.IGNORECASE)
_URLISH_RE = re.compile(r"^(https?|file)://\S+$", re.IGNORECASE)


@attrs.frozen
class Choice:
    """One option a worker can pick."""

    value: Any  # what is stored in the output
    label: str  # what the worker sees ("" if none)


@attrs.frozen
class OutputField:
    """One ``output_spec`` key with its constraints and what the view says about it."""

    name: str  # output_spec key (top level; a TB data.output path "a.b" writes key "a")
    type: str  # output_spec type: "string", "json", "boolean", "array_string", ...
    required: bool
    allowed_values: tuple | None
    min_value: float | None = None
    max_value: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None  # from the view's condition.schema; Toloka's FieldSpec has none
    component: str | None = None  # TB component writing it; None = not in the view
    options: tuple[Choice, ...] = ()  # from the view, else from allowed_values
    labels: tuple[Choice, ...] = ()  # field.image-annotation labels; () = none declared
    shapes: tuple[str, ...] = ()  # image-annotation shapes; ALL_SHAPES when the view lists none
    image_input: str | None = None  # image-annotation's data.input path of the image
    # Additions to the agreed interface (all defaulted, so positional use is unchanged):
    min_size: int | None = None  # array_* min_size
    max_size: int | None = None  # array_* max_size
    disabled: bool = False  # the writing component has disabled: true
    label: str = ""  # the writing component's label (what the worker reads next to it)
    subpath: str | None = None  # "b" when the view writes data.output "name.b" (a part of a json)

    @property
    def is_choice(self) -> bool:
        """The worker picks a value (options, booleans) rather than producing one."""
        return bool(self.options) or self.type == "boolean"

    @property
    def is_link(self) -> bool:
        """The worker pastes a link: a ``url`` output, or a free-text string written by
        ``field.text`` whose name or label mentions link/url/website (find-items projects)."""
        return (self.item_type == "url" and not self.options) or (
            _is_free_text(self) and self.component == "field.text"
            and _LINK_WORDS_RE.search(f"{self.name} {self.label}") is not None)

    @property
    def item_type(self) -> str:
        """The element type of an ``array_*`` field, else the type itself."""
        return self.type[len("array_"):] if self.type.startswith("array_") else self.type

    def spec(self) -> dict:
        """The Toloka FieldSpec dict this field came from (as the backend validator reads it)."""
        out: dict[str, Any] = {"type": self.type, "required": self.required}
        for key in ("min_value", "max_value", "min_length", "max_length", "min_size", "max_size"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.allowed_values is not None:
            out["allowed_values"] = list(self.allowed_values)
        return out


@attrs.frozen
class TaskModel:
    """A project's task as the crowd understands it."""

    input_spec: dict
    outputs: tuple[OutputField, ...]
    unknown_components: tuple[str, ...]
    problems: tuple[str, ...]
    # Addition: inputs shown as shapes by a disabled field.image-annotation (see the property).
    shape_inputs: tuple[str, ...] = ()
    # Addition: the labels of the (first) image-annotation that shows input shapes, e.g. the
    # verification project's sign types; () when it declares none or there is none.
    shown_labels: tuple[Choice, ...] = ()
    view_type: str | None = None  # "tb", "classic", ... None if there is no view_spec

    def field(self, name: str) -> OutputField | None:
        return next((f for f in self.outputs if f.name == name), None)

    @property
    def annotation(self) -> OutputField | None:
        """The first output a non-disabled ``field.image-annotation`` writes (a drawing field)."""
        return next((f for f in self.outputs
                     if f.component == "field.image-annotation" and not f.disabled), None)

    @property
    def shown_shapes_inputs(self) -> tuple[str, ...]:
        """Inputs shown to the worker as shapes: what a ``field.image-annotation`` reads (it is disabled
        in practice: it cannot write an input) - ``data.input`` directly, or ``data.internal`` whose
        ``default`` is a ``data.input``.
        For a non-TB view (nothing to read) every ``json`` input counts. JSON inputs found only
        from the task's values are the caller's business."""
        return self.shape_inputs

    @property
    def kind(self) -> str:
        """The sort of work, checked in this order:

        * ``drawing``: there is an :attr:`annotation` field;
        * ``judgement``: shapes from the input are shown and some output is a choice;
        * ``choice``: every required output (every output, if none is required) is a choice/boolean;
        * ``link``: a ``url`` output, or a free-text ``string`` output written by ``field.text``
          whose name or label mentions link/url/website (the find-items pattern);
        * ``text``: free-text string outputs are at least half of the required outputs;
        * ``generic`` otherwise.
        """
        if self.annotation is not None:
            return "drawing"
        if self.shape_inputs and any(f.is_choice for f in self.outputs):
            return "judgement"
        considered = [f for f in self.outputs if f.required] or list(self.outputs)
        if considered and all(f.is_choice for f in considered):
            return "choice"
        if any(f.is_link for f in self.outputs):
            return "link"
        if considered and 2 * sum(_is_free_text(f) for f in considered) >= len(considered):
            return "text"
        return "generic"


def _is_free_text(f: OutputField) -> bool:
    return f.type == "string" and not f.options and f.subpath is None and (
        f.component is None or f.component in TEXT_COMPONENTS)


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

def task_model(task_spec: dict | None) -> TaskModel:
    """The :class:`TaskModel` of a project's ``task_spec``. Never raises; memoised by JSON text
    (the same spec comes back for every task of a pool)."""
    try:
        # No sort_keys: output order matters (the "first" annotation), and dicts keep it.
        key = json.dumps(task_spec, default=str)
    except (TypeError, ValueError):  # not JSON-able at all: parse it uncached
        return _parse_safe(task_spec)
    return _cached(key)


@functools.lru_cache(maxsize=256)
def _cached(key: str) -> TaskModel:
    return _parse_safe(json.loads(key))


def _parse_safe(task_spec: Any) -> TaskModel:
    try:
        return _parse(task_spec)
    except Exception as exc:  # a model must always come back: the crowd falls back to generic work
        return TaskModel(input_spec={}, outputs=(), unknown_components=(),
                         problems=(f"task_spec unreadable: {type(exc).__name__}: {exc}",))


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _int(value: Any) -> int | None:
    n = _num(value)
    return int(n) if n is not None and n == int(n) else None


def _text(value: Any) -> str:
    """A label as plain text; TB allows components (helpers) there, which we cannot render."""
    return value if isinstance(value, str) else ("" if value is None else
                                                   str(value) if isinstance(value, (int, float)) else "")


def _base_field(name: str, spec: Any, problems: list[str]) -> OutputField:
    if not isinstance(spec, dict):
        problems.append(f"output {name!r}: spec is not an object; treated as an optional json")
        return OutputField(name=name, type="json", required=False, allowed_values=None)
    kind = str(spec.get("type", "")).lower() or "json"
    allowed = spec.get("allowed_values")
    allowed_t = tuple(allowed) if isinstance(allowed, list) and allowed else None
    return OutputField(
        name=name, type=kind, required=bool(spec.get("required", True)), allowed_values=allowed_t,
        min_value=_num(spec.get("min_value")), max_value=_num(spec.get("max_value")),
        min_length=_int(spec.get("min_length")), max_length=_int(spec.get("max_length")),
        min_size=_int(spec.get("min_size")), max_size=_int(spec.get("max_size")),
    )


def _parse(task_spec: Any) -> TaskModel:
    problems: list[str] = []
    if not isinstance(task_spec, dict):
        if task_spec is not None:
            problems.append("task_spec is not an object")
        task_spec = {}
    input_spec = task_spec.get("input_spec") if isinstance(task_spec.get("input_spec"), dict) else {}
    output_spec = task_spec.get("output_spec")
    if not isinstance(output_spec, dict):
        problems.append("output_spec missing or not an object")
        output_spec = {}
    fields = {name: _base_field(name, spec, problems) for name, spec in output_spec.items()}

    view_spec = task_spec.get("view_spec") if isinstance(task_spec.get("view_spec"), dict) else {}
    view_type = view_spec.get("type") if view_spec else None
    unknown: list[str] = []
    shape_inputs: list[str] = []
    shown_labels: list[Choice] = []
    config: Any = None
    if view_type == "tb":
        raw = view_spec.get("config")
        try:
            config = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(config, dict):
                raise ValueError("config is not an object")
        except (TypeError, ValueError) as exc:
            problems.append(f"TB view config unreadable ({exc}); outputs from output_spec alone")
            config = None
    elif view_spec:
        problems.append(f"view type {view_type!r} is not TB; outputs from output_spec alone")

    if config is not None:
        _read_view(config, fields, unknown, shape_inputs, shown_labels, problems)
    elif view_type != "tb" or not view_spec:
        # No TB view to read: any json input may be shapes shown to the worker.
        shape_inputs = [n for n, s in input_spec.items()
                        if isinstance(s, dict) and str(s.get("type", "")).lower() == "json"]

    # Options must also pass output_spec (the backend checks allowed_values, not the view);
    # they default to allowed_values when the view gave none.
    for name, f in fields.items():
        if f.options and f.allowed_values:
            kept = tuple(c for c in f.options if c.value in f.allowed_values)
            if len(kept) < len(f.options):
                problems.append(f"output {name!r}: view options outside allowed_values dropped")
            fields[name] = f = attrs.evolve(f, options=kept)
        if not f.options and f.allowed_values:
            fields[name] = attrs.evolve(f, options=tuple(Choice(v, _text(v)) for v in f.allowed_values))
    return TaskModel(input_spec=input_spec, outputs=tuple(fields.values()),
                     unknown_components=tuple(unknown), problems=tuple(problems),
                     shape_inputs=tuple(dict.fromkeys(shape_inputs)), shown_labels=tuple(shown_labels),
                     view_type=view_type)


def view_nodes(node: Any) -> Iterator[dict]:
    """Every dict in the view, depth first in document order; never enters condition.schema's
    JSON schema (its "type" keys are JSON-schema types, not components)."""
    if isinstance(node, dict):
        yield node
        for key, child in node.items():
            if key == "schema" and node.get("type") == "condition.schema":
                continue
            yield from view_nodes(child)
    elif isinstance(node, list):
        for child in node:
            yield from view_nodes(child)


def _data_ref(data: Any) -> tuple[str, str] | None:
    """``(data type, path)`` of a ``data.*`` reference, else None."""
    if isinstance(data, dict) and isinstance(data.get("type"), str) and isinstance(data.get("path"), str):
        return data["type"], data["path"]
    return None


def _choices(raw: Any, problems: list[str], where: str) -> tuple[Choice, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(f"{where}: options/labels are computed (not a list); ignored")
        return ()
    out = []
    for item in raw:
        if isinstance(item, dict) and "value" in item and not isinstance(item["value"], dict):
            out.append(Choice(item["value"], _text(item.get("label"))))
        else:
            problems.append(f"{where}: an option without a plain value was ignored")
    return tuple(out)


def _schema_rules(validation: Any, out_path: str) -> dict:
    """pattern / minLength / maxLength from condition.schema rules inside a field's validation
    (those with no ``data`` or with ``data`` pointing to the same output)."""
    rules: dict[str, Any] = {}
    for node in view_nodes(validation):
        if node.get("type") != "condition.schema" or not isinstance(node.get("schema"), dict):
            continue
        ref = _data_ref(node.get("data"))
        if ref is not None and (ref[0] != "data.output" or ref[1] != out_path):
            continue
        schema = node["schema"]
        if isinstance(schema.get("pattern"), str):
            rules.setdefault("pattern", schema["pattern"])
        if _int(schema.get("minLength")) is not None:
            rules.setdefault("min_length", _int(schema["minLength"]))
        if _int(schema.get("maxLength")) is not None:
            rules.setdefault("max_length", _int(schema["maxLength"]))
    return rules


def _read_view(config: dict, fields: dict[str, OutputField], unknown: list[str],
               shape_inputs: list[str], shown_labels: list[Choice], problems: list[str]) -> None:
    seen_in_view: set[str] = set()
    for node in view_nodes(config):
        ctype = node.get("type")
        if not isinstance(ctype, str) or not _COMPONENT_TYPE_RE.match(ctype):
            continue
        if ctype not in KNOWN_COMPONENTS:
            if ctype not in unknown:
                unknown.append(ctype)
            continue
        if not ctype.startswith("field."):
            continue
        ref = _data_ref(node.get("data"))
        disabled = node.get("disabled") is True
        if ctype == "field.image-annotation":
            # An annotation showing shapes: it reads an input, or an internal copy of one.
            shown = None
            if ref is not None and ref[0] == "data.input":
                shown = ref[1].split(".")[0]
            elif ref is not None and ref[0] == "data.internal":
                default = _data_ref(node.get("data", {}).get("default"))
                if default is not None and default[0] == "data.input":
                    shown = default[1].split(".")[0]
            if shown is not None:
                if not shape_inputs and not shown_labels:
                    shown_labels.extend(_choices(node.get("labels"), problems, f"{ctype} <- {shown}"))
                shape_inputs.append(shown)
        if ref is None or ref[0] != "data.output":
            continue
        path = ref[1]
        name, _, sub = path.partition(".")
        where = f"{ctype} -> {path}"
        if name not in fields:
            if name not in seen_in_view:
                problems.append(f"view writes output {name!r} which is not in output_spec")
            seen_in_view.add(name)
            continue
        f = fields[name]
        if ctype == "field.button-radio":
            # Several buttons may write one output; each adds its valueToSet as an option.
            if "valueToSet" in node and not isinstance(node["valueToSet"], dict):
                option = Choice(node["valueToSet"], _text(node.get("label")))
                if option not in f.options:
                    fields[name] = f = attrs.evolve(f, options=f.options + (option,))
            if f.component is None:
                fields[name] = attrs.evolve(f, component=ctype, label=_text(node.get("label")))
            seen_in_view.add(name)
            continue
        if name in seen_in_view and f.component is not None:
            problems.append(f"output {name!r} is written by several components; "
                            f"the first ({f.component}) is used")
            continue
        seen_in_view.add(name)
        changes: dict[str, Any] = {"component": ctype, "disabled": disabled,
                                   "label": _text(node.get("label")), "subpath": sub or None}
        if sub:
            problems.append(f"{where}: writes a part of output {name!r}; values follow its type only")
        if ctype in CHOICE_COMPONENTS or ctype == "field.checkbox-group":
            # For a part ("a.b") these are the choices for that key, not for the whole object.
            changes["options"] = _choices(node.get("options"), problems, where)
        if ctype == "field.image-annotation":
            changes["labels"] = _choices(node.get("labels"), problems, where)
            shapes = node.get("shapes")
            if isinstance(shapes, dict):
                changes["shapes"] = tuple(s for s in ALL_SHAPES if shapes.get(s) is True)
                if not changes["shapes"]:
                    problems.append(f"{where}: no shape enabled; using all")
                    changes["shapes"] = ALL_SHAPES
            else:
                changes["shapes"] = ALL_SHAPES
            image = _data_ref(node.get("image"))
            if image is not None and image[0] == "data.input":
                changes["image_input"] = image[1].split(".")[0]
        if ctype in TEXT_COMPONENTS:
            rules = _schema_rules(node.get("validation"), path)
            # The stricter of output_spec and the view's schema wins.
            if "pattern" in rules:
                changes["pattern"] = rules["pattern"]
            if "min_length" in rules:
                changes["min_length"] = max(rules["min_length"], f.min_length or 0)
            if "max_length" in rules:
                changes["max_length"] = min(rules["max_length"], f.max_length) \
                    if f.max_length is not None else rules["max_length"]
        fields[name] = attrs.evolve(f, **changes)


def image_inputs(input_spec: dict, input_values: dict) -> list[str]:
    """Names of inputs that may hold an image: ``url`` inputs, and inputs whose value is a
    string that looks like an http(s)/file URL (the caller fetches them to decide)."""
    input_spec = input_spec if isinstance(input_spec, dict) else {}
    input_values = input_values if isinstance(input_values, dict) else {}
    out: list[str] = []
    for name in dict.fromkeys([*input_spec, *input_values]):
        spec = input_spec.get(name)
        value = input_values.get(name)
        typed_url = isinstance(spec, dict) and str(spec.get("type", "")).lower() == "url"
        if (typed_url and (value is None or isinstance(value, str))) or (
                isinstance(value, str) and _URLISH_RE.match(value.strip())):
            out.append(name)
    return out
