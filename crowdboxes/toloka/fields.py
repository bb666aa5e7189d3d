"""The detection project's field names and labels, derived from its task spec in one place.

The flow does not assume what ``configs/detection_project.json`` calls its fields. The project's
Template Builder view holds one ``field.image-annotation`` whose

* ``data`` is a ``data.output``: its path is the **output field** the rectangles are read from
  (``result`` in the shipped config);
* ``image`` is a ``data.input``: its path is the **image input field** tasks are created with
  (``image`` in the shipped config);
* ``labels`` (optional) are the label values workers pick from; answers.csv, boxes.csv and the COCO
  export carry these values as they are (``stop``, or ``sign_stop`` in a project that names them so).

How the steps learn them: Create Project checks the config (:func:`detection_fields` on the file);
Launch Pool and Wait Pool read the project back from Toloka (:func:`fields_from_toloka`, the project id
is in projects.csv / pool.csv), so a step re-run alone with a fresh output folder finds the same names;
Wait Pool records them in ``wait_summary.json`` (key ``detection_fields``) for Export, which has no
Toloka access and builds its COCO categories from the labels.

A label map (``--label-map`` of the demo and of ``evaluate``: truth class name -> label value used in
the view) is read by :func:`read_label_map`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crowdboxes.errors import CrowdboxesError

ANNOTATION = "field.image-annotation"


@dataclass(frozen=True)
class Label:
    value: str  # what the answer carries
    title: str  # what the worker sees


@dataclass(frozen=True)
class DetectionFields:
    """Field names of the detection project: tasks carry ``{image_input: url}``, answers ``{output: [shapes]}``."""

    image_input: str = "image"
    output: str = "result"
    labels: tuple[Label, ...] = field(default_factory=tuple)

    @property
    def label_values(self) -> tuple[str, ...]:
        return tuple(label.value for label in self.labels)

    def as_dict(self) -> dict:
        return {"image_input": self.image_input, "output": self.output,
                "labels": [{"value": label.value, "title": label.title} for label in self.labels]}

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "detection_fields") -> "DetectionFields":
        """The inverse of :meth:`as_dict` (e.g. ``wait_summary.json``'s ``detection_fields``)."""
        try:
            labels = tuple(Label(str(item["value"]), str(item.get("title") or item["value"]))
                           for item in data.get("labels") or [])
            return cls(str(data["image_input"]), str(data["output"]), labels)
        except (KeyError, TypeError, AttributeError) as exc:
            raise CrowdboxesError(f"{where}: not a detection_fields object ({type(exc).__name__}: {exc})") from None


def default_fields() -> DetectionFields:
    """The shipped configs' names (``image`` in, ``result`` out, the labels of crowdboxes/classes.py)."""
    from crowdboxes.classes import SIGN_CLASSES

    return DetectionFields("image", "result", tuple(Label(c.name, c.title) for c in SIGN_CLASSES))


# ------------------------------------------------------------------------------------------------- derivation


def walk_dicts(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict inside ``node`` (JSON-like: a view config, a pool spec), ``node`` itself first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk_dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_dicts(value)


def _spec_type(spec) -> str:
    """A field spec's type as a lower-case string, for toloka-kit objects and plain JSON alike."""
    kind = spec.get("type") if isinstance(spec, dict) else getattr(spec, "type", None)
    return str(getattr(kind, "value", kind) or "").lower()


def _project_dict(project) -> dict:
    if isinstance(project, dict):
        return project
    return json.loads(project.to_json())


def view_config(project) -> dict | None:
    """The Template Builder config of a project (toloka-kit Project or its JSON dict), parsed; None if not tb."""
    view_spec = (_project_dict(project).get("task_spec") or {}).get("view_spec") or {}
    config = view_spec.get("config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            return None
    return config if isinstance(config, dict) else None


def _data_path(node, kind: str) -> str | None:
    if isinstance(node, dict) and node.get("type") == kind and isinstance(node.get("path"), str) and node["path"]:
        return node["path"]
    return None


def _from_spec(inputs: Mapping, outputs: Mapping, where) -> DetectionFields:
    """Names from the data spec alone (a view without an image-annotation): the one json output and the
    one url input, preferring the shipped names."""
    def pick(spec: Mapping, kinds: tuple[str, ...], default: str, what: str) -> str:
        if default in spec and _spec_type(spec[default]) in kinds:
            return default
        names = [n for n, s in spec.items() if _spec_type(s) in kinds]
        if len(names) != 1:
            raise CrowdboxesError(f"{where}: the view has no {ANNOTATION} and task_spec.{what} has "
                            f"{len(names)} {kinds[0]} fields, so the flow cannot tell which one to use")
        return names[0]

    return DetectionFields(pick(inputs, ("url",), "image", "input_spec"), pick(outputs, ("json",), "result",
                                                                                "output_spec"))


def detection_fields(project, where: str | Path, strict: bool = True) -> DetectionFields:
    """The detection project's field names and labels; CrowdboxesError in one line naming ``where`` and the field.

    ``project``: a toloka-kit ``Project`` or its JSON dict (``view_spec.config`` as string or object).
    ``strict=False`` (a project read back from Toloka, whose view may have been edited in Toloka's UI):
    a view without a usable image-annotation falls back to the data spec's one url input and one json
    output, with no labels.
    """
    data = _project_dict(project)
    spec = data.get("task_spec") or {}
    inputs, outputs = spec.get("input_spec") or {}, spec.get("output_spec") or {}
    config = view_config(data)
    if config is None:
        if not strict:
            return _from_spec(inputs, outputs, where)
        raise CrowdboxesError(f"{where}: task_spec.view_spec must be a Template Builder view (type tb) with a {ANNOTATION}")
    found = [c for c in walk_dicts(config) if c.get("type") == ANNOTATION and _data_path(c.get("data"), "data.output")]
    if not found:
        if not strict:
            return _from_spec(inputs, outputs, where)
        raise CrowdboxesError(f"{where}: the view needs a {ANNOTATION} whose 'data' is a data.output (the field the "
                        f"rectangles are saved in)")
    paths = sorted({path for c in found if (path := _data_path(c["data"], "data.output")) is not None})
    if len(paths) > 1:
        raise CrowdboxesError(f"{where}: the view has {len(paths)} {ANNOTATION} outputs ({', '.join(paths)}); the flow "
                        f"reads one")
    annotation = found[0]
    output = paths[0]
    if output not in outputs or _spec_type(outputs[output]) != "json":
        raise CrowdboxesError(f"{where}: task_spec.output_spec needs field {output!r} of type json (the {ANNOTATION}'s "
                        f"data.output path)")
    image = _data_path(annotation.get("image"), "data.input")
    if image is None:
        raise CrowdboxesError(f"{where}: the {ANNOTATION} needs 'image' as a data.input (the task's image URL field)")
    if image not in inputs or _spec_type(inputs[image]) not in ("url", "string"):
        raise CrowdboxesError(f"{where}: task_spec.input_spec needs field {image!r} of type url (the {ANNOTATION}'s "
                        f"image data.input path)")
    extra = [name for name, s in inputs.items() if name not in (image, "image_id")
             and (s.get("required", True) if isinstance(s, dict) else getattr(s, "required", True))]
    if extra:
        raise CrowdboxesError(f"{where}: task_spec.input_spec field {extra[0]!r} is required, but the flow fills only "
                        f"{image!r} (and image_id); make it \"required\": false or remove it")
    shapes = annotation.get("shapes")
    if isinstance(shapes, dict) and not shapes.get("rectangle"):
        raise CrowdboxesError(f"{where}: the {ANNOTATION} must allow shapes.rectangle")
    labels: list[Label] = []
    for n, item in enumerate(annotation.get("labels") or []):
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise CrowdboxesError(f"{where}: {ANNOTATION} labels[{n}] needs a non-empty string 'value'")
        if value in (label.value for label in labels):
            raise CrowdboxesError(f"{where}: {ANNOTATION} label value {value!r} appears twice")
        title = item.get("label")
        labels.append(Label(value, str(title) if title else value))
    return DetectionFields(image, output, tuple(labels))


def view_label_values(project) -> tuple[str, ...]:
    """Label values of the first image-annotation in a project's view (any project; () if none)."""
    config = view_config(project)
    annotation = next((c for c in walk_dicts(config) if c.get("type") == ANNOTATION), None) if config else None
    return tuple(str(i.get("value")) for i in (annotation or {}).get("labels") or [] if isinstance(i, dict))


def fields_from_toloka(client, project_id, where: str | Path | None = None) -> DetectionFields:
    """The field names of the detection project ``project_id`` as Toloka has it (what the pool runs on)."""
    try:
        project = client.get_project(str(project_id))
    except Exception as exc:
        raise CrowdboxesError(f"detection project {project_id} cannot be read from Toloka ({type(exc).__name__}); "
                        f"re-run Create Project") from None
    return detection_fields(project, where or f"detection project {project_id} on Toloka", strict=False)


@dataclass(frozen=True)
class VerificationFields:
    """Field names of the verification project: tasks carry ``{image_input: url, outlines_input: shapes,
    assignment_input: drawing's assignment}``, answers ``{verdict: OK|BAD, reason: ...}``."""

    image_input: str = "image"
    outlines_input: str = "outlines"
    assignment_input: str = "assignment_id"
    verdict: str = "verdict"
    reason: str = "reason"


def verification_fields(project) -> VerificationFields:
    """The verification project's field names, read from its view and spec where they can be told apart,
    else the shipped names (this project is not meant to be reshaped; a name that cannot be derived keeps
    its default)."""
    data = _project_dict(project)
    spec = data.get("task_spec") or {}
    inputs, outputs = spec.get("input_spec") or {}, spec.get("output_spec") or {}
    found = VerificationFields()
    names: dict[str, str] = {}
    config = view_config(data)
    annotation = next((c for c in walk_dicts(config) if c.get("type") == ANNOTATION), None) if config else None
    if annotation is not None:
        image = _data_path(annotation.get("image"), "data.input")
        shown = annotation.get("data") or {}
        outlines = _data_path(shown, "data.input") or _data_path(shown.get("default"), "data.input")
        if image is not None and image in inputs:
            names["image_input"] = image
        if outlines is not None and outlines in inputs:
            names["outlines_input"] = outlines
    hidden = [n for n, s in inputs.items() if _spec_type(s) == "string" and n not in names.values()]
    if found.assignment_input not in inputs and len(hidden) == 1:
        names["assignment_input"] = hidden[0]

    def allowed(s) -> set:
        values = s.get("allowed_values") if isinstance(s, dict) else getattr(s, "allowed_values", None)
        return {str(v).upper() for v in values or []}

    verdicts = [n for n, s in outputs.items() if {"OK", "BAD"} <= allowed(s)]
    if found.verdict not in outputs and len(verdicts) == 1:
        names["verdict"] = verdicts[0]
    others = [n for n in outputs if n != names.get("verdict", found.verdict)]
    if found.reason not in outputs and len(others) == 1:
        names["reason"] = others[0]
    return replace(found, **names)


# ------------------------------------------------------------------------------------------------- round projects
# The two projects of mode overlap's extra rounds have fixed field names (Wait Pool fills and reads them):
# ``{input fields: types}, {output fields: types}`` of configs/box_check_project.json and
# configs/missed_signs_project.json.
CHECK_VERDICTS = ("yes", "no_sign", "loose", "wrong_class")  # box_check's ``verdict`` values
ROUND_PROJECT_FIELDS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "box_check": ({"image": "url", "box": "json", "box_id": "string", "image_id": "string", "label_text": "string"},
                  {"verdict": "string", "right_label": "string"}),
    "missed_signs": ({"image": "url", "shown": "json", "image_id": "string"}, {"result": "json"}),
}


def _required(spec) -> bool:
    return bool(spec.get("required", True) if isinstance(spec, dict) else getattr(spec, "required", True))


def _allowed_values(spec) -> list | None:
    values = spec.get("allowed_values") if isinstance(spec, dict) else getattr(spec, "allowed_values", None)
    return None if values is None else list(values)


def check_round_project(project, role: str, where: str | Path) -> None:
    """Refuse (CrowdboxesError, one line naming ``where`` and the field) a round project the flow cannot run.

    ``role``: ``box_check`` or ``missed_signs`` (:data:`ROUND_PROJECT_FIELDS`). Checked: every input and
    output field is declared with its type (an image may be ``url`` or ``string``); no other input is
    required (the flow fills only these); box_check's ``verdict`` allows every one of :data:`CHECK_VERDICTS`
    and ``right_label`` is optional; the Template Builder view writes every output (a ``data.output`` with
    its path), missed_signs' ``result`` from an editable image-annotation.
    """
    if role not in ROUND_PROJECT_FIELDS:
        raise ValueError(f"unknown round project role {role!r}")
    data = _project_dict(project)
    spec = data.get("task_spec") or {}
    inputs, outputs = spec.get("input_spec") or {}, spec.get("output_spec") or {}
    wanted_in, wanted_out = ROUND_PROJECT_FIELDS[role]
    for part, have, wanted in (("input_spec", inputs, wanted_in), ("output_spec", outputs, wanted_out)):
        for name, kind in wanted.items():
            kinds = ("url", "string") if kind == "url" else (kind,)
            if name not in have or _spec_type(have[name]) not in kinds:
                raise CrowdboxesError(f"{where}: task_spec.{part} needs field {name!r} of type {kind}")
    extra = [name for name, s in inputs.items() if name not in wanted_in and _required(s)]
    if extra:
        raise CrowdboxesError(f"{where}: task_spec.input_spec field {extra[0]!r} is required, but the flow fills only "
                              f"{', '.join(wanted_in)}; make it \"required\": false or remove it")
    if role == "box_check":
        allowed = _allowed_values(outputs["verdict"])
        missing = [v for v in CHECK_VERDICTS if allowed is not None and v not in allowed]
        if missing:
            raise CrowdboxesError(f"{where}: task_spec.output_spec.verdict must allow {', '.join(CHECK_VERDICTS)} "
                                  f"(missing {', '.join(missing)})")
        if _required(outputs["right_label"]):
            raise CrowdboxesError(f"{where}: task_spec.output_spec.right_label must be \"required\": false "
                                  f"(it is answered only with wrong_class)")
    config = view_config(data)
    if config is None:
        raise CrowdboxesError(f"{where}: task_spec.view_spec must be a Template Builder view (type tb)")
    writers = {path: c for c in walk_dicts(config) if (path := _data_path(c.get("data"), "data.output")) is not None}
    for name in wanted_out:
        if name not in writers:
            raise CrowdboxesError(f"{where}: the view has no component whose 'data' is data.output {name!r}")
    if role == "missed_signs" and (writers["result"].get("type") != ANNOTATION or writers["result"].get("disabled")):
        raise CrowdboxesError(f"{where}: the view's data.output 'result' must be an editable {ANNOTATION}")


# ------------------------------------------------------------------------------------------------- label maps


def read_label_map(value: str | Path | Mapping | None, what: str = "--label-map") -> dict[str, str]:
    """``{truth class name: label value in the view}`` from JSON text, a JSON file or a dict; {} for None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, Mapping):
        data, where = dict(value), what
    else:
        text = str(value).strip()
        if text.startswith("{"):
            where = what
        else:
            path = Path(text)
            if not path.is_file():
                raise CrowdboxesError(f"{what} {text}: neither JSON text nor an existing JSON file")
            where, text = f"{what} {path}", path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CrowdboxesError(f"{where}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise CrowdboxesError(f"{where}: expected a JSON object {{truth class: label value}}")
    bad = [k for k, v in data.items() if not isinstance(v, str) or not v or not str(k)]
    if bad:
        raise CrowdboxesError(f"{where}: class {bad[0]!r} must map to a non-empty string label value")
    return {str(k): v for k, v in data.items()}


def inverse_label_map(label_map: Mapping[str, str], what: str = "--label-map") -> dict[str, str]:
    """``{label value: truth class}``; CrowdboxesError when two classes share a label value (not reversible)."""
    inverse: dict[str, str] = {}
    for name, value in label_map.items():
        if value in inverse:
            raise CrowdboxesError(f"{what}: classes {inverse[value]!r} and {name!r} both map to label {value!r}")
        inverse[value] = name
    return inverse
