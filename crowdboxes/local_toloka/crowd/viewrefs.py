"""What a Template Builder view says beyond :mod:`.spec`'s model: choice options taken from the task's
inputs, and drawings the view requires to be non-empty. Read from the view's JSON text (memoised per text).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import attrs

from crowdboxes.local_toloka.crowd.spec import Choice, TaskModel, view_nodes


@functools.lru_cache(maxsize=256)
def input_option_refs(config_text: str) -> tuple:
    """``((output name, ((value, label, input path or None), ...)), ...)`` of the choice components of a TB
    view whose options take their values from the task's inputs (``{"type": "data.input", "path": ...}``),
    e.g. a side-by-side "which link is better" radio group."""
    try:
        config = json.loads(config_text)
    except (TypeError, ValueError):
        return ()
    found = []
    for node in view_nodes(config):
        options = node.get("options")
        data = node.get("data")
        if (isinstance(options, list) and isinstance(data, dict) and data.get("type") == "data.output"
                and isinstance(data.get("path"), str)
                and any(isinstance(o, dict) and isinstance(o.get("value"), dict) for o in options)):
            refs = []
            for o in options:
                if not isinstance(o, dict):
                    continue
                value, label = o.get("value"), o.get("label")
                label = label if isinstance(label, str) else ""
                if (isinstance(value, dict) and value.get("type") == "data.input"
                        and isinstance(value.get("path"), str)):
                    refs.append((None, label, value["path"]))
                elif not isinstance(value, (dict, list)):
                    refs.append((value, label, None))
            found.append((data["path"].split(".")[0], tuple(refs)))
    return tuple(found)


@functools.lru_cache(maxsize=256)
def shapes_required_in(config_text: str) -> frozenset:
    """Outputs of a TB view's ``field.image-annotation`` whose validation requires at least one shape
    (``condition.required``, alone or inside ``condition.all``; not inside ``condition.any``, which our
    detection view uses to allow "no signs")."""
    try:
        config = json.loads(config_text)
    except (TypeError, ValueError):
        return frozenset()

    def requires(validation: Any) -> bool:
        if not isinstance(validation, dict):
            return False
        if validation.get("type") == "condition.required":
            return True
        if validation.get("type") == "condition.all":
            return any(requires(c) for c in validation.get("conditions") or [])
        return False

    found = set()
    for node in view_nodes(config):
        data = node.get("data")
        if (node.get("type") == "field.image-annotation" and isinstance(data, dict)
                and data.get("type") == "data.output" and isinstance(data.get("path"), str)
                and requires(node.get("validation"))):
            found.add(data["path"].split(".")[0])
    return frozenset(found)


def shapes_required(task_spec: Any) -> frozenset:
    """:func:`shapes_required_in` of a task spec's TB view (empty for any other view)."""
    view = task_spec.get("view_spec") if isinstance(task_spec, dict) else None
    if not isinstance(view, dict) or view.get("type") != "tb":
        return frozenset()
    config = view.get("config")
    return shapes_required_in(config if isinstance(config, str) else json.dumps(config, sort_keys=True, default=str))


def with_input_options(model: TaskModel, task_spec: Any, task_input: dict) -> TaskModel:
    """``model`` with the options that a TB view takes from the task's inputs filled in for this task."""
    view = task_spec.get("view_spec") if isinstance(task_spec, dict) else None
    if not isinstance(view, dict) or view.get("type") != "tb":
        return model
    config = view.get("config")
    text = config if isinstance(config, str) else json.dumps(config, sort_keys=True, default=str)
    refs = input_option_refs(text)
    if not refs:
        return model
    outputs = list(model.outputs)
    for name, options in refs:
        at = next((i for i, f in enumerate(outputs) if f.name == name and not f.options), None)
        if at is None:
            continue
        resolved: list[Choice] = []
        for value, label, path in options:
            if path is not None:
                value = task_input.get(path)
                if value is None or isinstance(value, (dict, list)):
                    continue
            if all(c.value != value for c in resolved):
                resolved.append(Choice(value, label))
        if resolved:
            outputs[at] = attrs.evolve(outputs[at], options=tuple(resolved))
    return attrs.evolve(model, outputs=tuple(outputs))
