"""The local Toloka crowd reads a project's task spec (crowd/spec.py) and answers with valid values
(crowd/values.py). Hand-written configs shaped like ours and Toloka's examples; no servers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crowdboxes.local_toloka.crowd.spec import ALL_SHAPES, Choice, OutputField, image_inputs, task_model
from crowdboxes.local_toloka.crowd.values import (coerce, complete, is_valid, sample_pattern, shapes_to_annotation,
                                                  uninformed)
from crowdboxes.local_toloka.models import validate_value

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _tb(view: dict, plugins: list | None = None) -> dict:
    return {"type": "tb", "config": json.dumps({"view": view, "plugins": plugins or []}), "lock": {"core": "1.0.0"}}


def _spec(inputs: dict, outputs: dict, view: dict | None) -> dict:
    return {"input_spec": inputs, "output_spec": outputs, **({"view_spec": view} if view is not None else {})}


def _project(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())["task_spec"]


URL_IN = {"image": {"type": "url", "required": True, "hidden": False}}

# Toloka's image classification example: an image and a radio group over allowed values.
CLASSIFICATION = _spec(URL_IN, {"result": {"type": "string", "required": True, "allowed_values": ["cat", "dog"]}},
                       _tb({"type": "view.list", "items": [
                           {"type": "view.image", "url": {"type": "data.input", "path": "image"}},
                           {"type": "field.radio-group", "data": {"type": "data.output", "path": "result"},
                            "options": [{"label": "Cat", "value": "cat"}, {"label": "Dog", "value": "dog"}],
                            "validation": {"type": "condition.required"}}]}))

# Toloka's text recognition example (field.text with a schema) and a textarea variant.
TEXT_RECOGNITION = _spec({"image_url": {"type": "url"}}, {"value": {"type": "string"}},
                         _tb({"type": "view.list", "items": [
                             {"type": "view.markdown", "content": "Write down the digits"},
                             {"type": "view.image", "url": {"type": "data.input", "path": "image_url"}},
                             {"type": "field.text", "data": {"type": "data.output", "path": "value"},
                              "label": "Write down the digits. Format: 365.235",
                              "validation": {"type": "condition.schema", "schema": {
                                  "type": "string", "pattern": r"^\d+\.?\d{0,3}$", "minLength": 1, "maxLength": 9}}}]}))
TEXTAREA = _spec(URL_IN, {"text": {"type": "string", "required": True, "max_length": 40}},
                 _tb({"type": "layout.side-by-side", "items": [
                     {"type": "view.image", "url": {"type": "data.input", "path": "image"}},
                     {"type": "field.textarea", "data": {"type": "data.output", "path": "text"}}]}))

# toloka-kit's streaming-pipelines find_items_project.json: image in, a pasted link out.
FIND_ITEMS = _spec(URL_IN, {"found_link": {"required": True, "hidden": False, "type": "string"}},
                   _tb({"type": "layout.sidebar", "content": {
                       "type": "view.image", "url": {"type": "data.input", "path": "image"}, "fullHeight": True},
                       "controls": {"type": "view.list", "items": [
                           {"type": "view.action-button", "label": "Marks and Spencer",
                            "action": {"type": "action.open-link", "payload": "https://www.marksandspencer.com"},
                            "validation": {"type": "condition.link-opened", "url": "https://www.marksandspencer.com"}},
                           {"type": "field.text", "data": {"type": "data.output", "path": "found_link"},
                            "label": "Paste the link here",
                            "validation": {"type": "condition.all", "conditions": [
                                {"type": "condition.required"},
                                {"type": "condition.schema", "data": {"type": "data.output", "path": "found_link"},
                                 "schema": {"type": "string", "pattern": "marksandspencer.com/?"}}]}}]}}))
FIND_ITEMS_URL = _spec(URL_IN, {"page": {"type": "url"}}, None)

ANNOTATION_NO_LABELS = _spec(URL_IN, {"boxes": {"type": "json", "required": True}},
                             _tb({"type": "field.image-annotation", "data": {"type": "data.output", "path": "boxes"},
                                  "image": {"type": "data.input", "path": "image"}}))
POLYGON_ONLY = _spec(URL_IN, {"areas": {"type": "json"}},
                     _tb({"type": "field.image-annotation", "data": {"type": "data.output", "path": "areas"},
                          "image": {"type": "data.input", "path": "image"},
                          "shapes": {"polygon": True, "rectangle": False},
                          "labels": [{"label": "Car", "value": "car"}, {"label": "Bus", "value": "bus"}]}))
POINT_ONLY = _spec(URL_IN, {"points": {"type": "json"}},
                   _tb({"type": "field.image-annotation", "data": {"type": "data.output", "path": "points"},
                        "image": {"type": "data.input", "path": "image"}, "shapes": {"point": True}}))

CLASSIC = _spec({"text": {"type": "string"}, "shapes": {"type": "json"}},
                {"answer": {"type": "string", "allowed_values": ["a", "b"]},
                 "note": {"type": "string", "required": False}},
                {"type": "classic", "markup": "{{field type=\"radio\" name=\"answer\"}}", "script": "", "styles": ""})

UNKNOWN = _spec(URL_IN, {"score": {"type": "integer", "min_value": 1, "max_value": 5},
                         "tags": {"type": "json", "required": False}},
                _tb({"type": "view.list", "items": [
                    {"type": "field.star-rating", "data": {"type": "data.output", "path": "score"}},
                    {"type": "@acme/field.tagger", "data": {"type": "data.output", "path": "tags"}},
                    {"type": "field.text", "data": {"type": "data.output", "path": "ghost"}}]}))

# One output of (nearly) every type and component.
EVERYTHING = _spec(URL_IN, {
    "ok": {"type": "boolean"},
    "flags": {"type": "json"},
    "side": {"type": "string", "required": False},
    "count": {"type": "integer", "min_value": -3, "max_value": 2},
    "big": {"type": "integer", "min_value": 1000},
    "ratio": {"type": "float", "min_value": 0.25, "max_value": 0.5},
    "any_float": {"type": "float", "max_value": -100.5},
    "where": {"type": "coordinates"},
    "upload": {"type": "file"},
    "maybe_upload": {"type": "file", "required": False},
    "links": {"type": "array_url", "min_size": 2, "max_size": 4},
    "words": {"type": "array_string", "max_length": 5},
    "nums": {"type": "array_integer", "allowed_values": [3, 7]},
    "short": {"type": "string", "min_length": 12, "max_length": 14},
    "meta": {"type": "json"},
    "level": {"type": "integer", "allowed_values": [1, 2, 3]},
}, _tb({"type": "view.list", "items": [
    {"type": "field.toggle", "data": {"type": "data.output", "path": "ok"}},
    {"type": "field.checkbox-group", "data": {"type": "data.output", "path": "flags"},
     "options": [{"label": "Blurry", "value": "blurry"}, {"label": "Dark", "value": "dark"}]},
    {"type": "field.button-radio", "data": {"type": "data.output", "path": "side"}, "label": "Left",
     "valueToSet": "L"},
    {"type": "field.button-radio", "data": {"type": "data.output", "path": "side"}, "label": "Right",
     "valueToSet": "R"},
    {"type": "field.number", "data": {"type": "data.output", "path": "count"}},
    {"type": "field.select", "data": {"type": "data.output", "path": "meta.color"},
     "options": [{"label": "Red", "value": "red"}]},
]}))

ALL_CONFIGS = {"detection": _project("detection_project"), "verification": _project("verification_project"),
               "classification": CLASSIFICATION, "text_recognition": TEXT_RECOGNITION, "textarea": TEXTAREA,
               "find_items": FIND_ITEMS, "find_items_url": FIND_ITEMS_URL, "no_labels": ANNOTATION_NO_LABELS,
               "polygon_only": POLYGON_ONLY, "point_only": POINT_ONLY, "classic": CLASSIC, "unknown": UNKNOWN,
               "everything": EVERYTHING}


def _backend_ok(field: OutputField, value) -> bool:
    return value is None and not field.required or value is not None and validate_value(field.spec(), value) is None


# ---- spec.py ------------------------------------------------------------------------------------

def test_detection_project_is_a_drawing_with_labels():
    model = task_model(_project("detection_project"))
    assert model.kind == "drawing" and model.problems == () and model.unknown_components == ()
    ann = model.annotation
    assert ann is model.field("result") and ann.type == "json" and ann.required
    assert ann.component == "field.image-annotation" and ann.shapes == ("rectangle",) and ann.image_input == "image"
    assert [c.value for c in ann.labels][:3] == ["stop", "yield", "speed_limit"] and len(ann.labels) == 10
    assert ann.labels[0] == Choice("stop", "Stop")
    assert model.shown_shapes_inputs == ()


def test_verification_project_is_a_judgement_over_shown_outlines():
    model = task_model(_project("verification_project"))
    assert model.kind == "judgement" and model.annotation is None
    assert model.shown_shapes_inputs == ("outlines",)
    assert len(model.shown_labels) == 10 and model.shown_labels[-1] == Choice("traffic_light", "Traffic light")
    assert [f.name for f in model.outputs] == ["verdict", "reason"]
    verdict, reason = model.outputs
    assert verdict.component == "field.radio-group" and verdict.options == (Choice("OK", "Yes"), Choice("BAD", "No"))
    assert verdict.required and not reason.required and reason.allowed_values[0] == "missed_sign"
    assert reason.options[0] == Choice("missed_sign", "A road sign is not outlined")  # found inside helper.if


def test_classification_text_and_link_kinds():
    cls = task_model(CLASSIFICATION)
    assert cls.kind == "choice" and cls.field("result").options == (Choice("cat", "Cat"), Choice("dog", "Dog"))
    rec = task_model(TEXT_RECOGNITION)
    value = rec.field("value")
    assert rec.kind == "text" and value.component == "field.text"
    assert (value.pattern, value.min_length, value.max_length) == (r"^\d+\.?\d{0,3}$", 1, 9)
    assert task_model(TEXTAREA).kind == "text"
    find = task_model(FIND_ITEMS)
    assert find.kind == "link" and find.field("found_link").pattern == "marksandspencer.com/?"
    assert task_model(FIND_ITEMS_URL).kind == "link"


def test_annotation_shapes_default_and_disabled():
    assert task_model(ANNOTATION_NO_LABELS).annotation.shapes == ALL_SHAPES  # TB: all modes when none given
    poly = task_model(POLYGON_ONLY).annotation
    assert poly.shapes == ("polygon",) and poly.required  # FieldSpec.required defaults to true
    assert task_model(POINT_ONLY).annotation.shapes == ("point",)


def test_classic_view_uses_output_spec_alone():
    model = task_model(CLASSIC)
    assert [f.name for f in model.outputs] == ["answer", "note"]
    assert all(f.component is None for f in model.outputs)
    assert model.field("answer").options == (Choice("a", "a"), Choice("b", "b"))
    assert model.shown_shapes_inputs == ("shapes",)  # no view to read: json inputs may be shapes
    assert model.kind == "judgement" and any("not TB" in p for p in model.problems)


def test_unknown_components_and_problems():
    model = task_model(UNKNOWN)
    assert model.unknown_components == ("field.star-rating", "@acme/field.tagger")
    assert model.field("score").component is None
    assert any("'ghost'" in p for p in model.problems)


def test_malformed_specs_never_raise():
    bad_view = {**CLASSIFICATION, "view_spec": {"type": "tb", "config": "{not json"}}
    model = task_model(bad_view)
    assert model.kind == "choice" and any("unreadable" in p for p in model.problems)
    for spec in (None, {}, {"output_spec": []}, {"output_spec": {"x": "string"}}, "junk"):
        assert isinstance(task_model(spec).outputs, tuple)
    assert task_model(CLASSIFICATION) is task_model(json.loads(json.dumps(CLASSIFICATION)))  # memoised


def test_everything_components():
    model = task_model(EVERYTHING)
    assert model.field("flags").options == (Choice("blurry", "Blurry"), Choice("dark", "Dark"))
    assert model.field("side").options == (Choice("L", "Left"), Choice("R", "Right"))
    assert model.field("meta").subpath == "color" and model.field("ok").component == "field.toggle"
    assert model.kind == "link"  # "links" is an array_url output
    rng = np.random.default_rng(5)
    assert uninformed(model.field("meta"), rng) == {"color": "red"}  # the select writes meta.color
    assert {uninformed(model.field("any_float"), rng) for _ in range(5)} != {-100.5}  # open below: a range
    assert task_model(UNKNOWN).kind == "generic"


def test_image_inputs():
    spec = {"image": {"type": "url"}, "thumb": {"type": "string"}, "name": {"type": "string"}, "meta": {"type": "json"}}
    values = {"image": "https://x.org/a.jpg", "thumb": "file:///tmp/b.png", "name": "cat", "meta": {"u": "http://y"},
              "extra": "http://z.org/c.jpg"}
    assert image_inputs(spec, values) == ["image", "thumb", "extra"]


# ---- values.py ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_uninformed_values_pass_is_valid_and_the_backend(name):
    model = task_model(ALL_CONFIGS[name])
    junk = [None, "", "x" * 30, 3, 2.5, -1e9, True, [], {}, [1, "a"], {"a": 1}, "https://ok.org/x", "1,2", float("nan")]
    for seed in range(200):
        rng = np.random.default_rng(seed)
        for field in model.outputs:
            value = uninformed(field, rng)
            assert is_valid(field, value), (name, field.name, value)
            assert _backend_ok(field, value), (name, field.name, value)
            wanted = junk[seed % len(junk)]
            fixed = coerce(field, wanted, rng)
            assert is_valid(field, fixed) and _backend_ok(field, fixed), (name, field.name, wanted, fixed)
            if is_valid(field, wanted):  # never looser than the backend
                assert _backend_ok(field, wanted), (name, field.name, wanted)
        answer = complete(model.outputs, {}, rng)
        assert {f.name for f in model.outputs if f.required} <= set(answer)


def test_is_valid_mirrors_backend_details():
    everything = task_model(EVERYTHING)
    count, ratio, nums = everything.field("count"), everything.field("ratio"), everything.field("nums")
    assert is_valid(count, 2) and not is_valid(count, 3) and not is_valid(count, 1.0) and not is_valid(count, True)
    assert is_valid(ratio, 0.25) and not is_valid(ratio, 0.6) and not is_valid(ratio, "0.3")
    assert is_valid(nums, [3, 7, 3]) and not is_valid(nums, [4]) and not is_valid(nums, 3)
    verdict = task_model(_project("verification_project")).field("verdict")
    assert is_valid(verdict, "OK") and not is_valid(verdict, "ok") and not is_valid(verdict, None)
    assert is_valid(task_model(_project("verification_project")).field("reason"), None)


def test_coerce_moves_to_the_closest_valid_value():
    rng = np.random.default_rng(0)
    model = task_model(EVERYTHING)
    verdict = task_model(_project("verification_project")).field("verdict")
    assert coerce(verdict, "No", rng) == "BAD" and coerce(verdict, "ok", rng) == "OK"  # by label / by text
    assert coerce(verdict, "maybe", rng) in ("OK", "BAD")
    assert coerce(model.field("count"), 7.6, rng) == 2 and coerce(model.field("count"), np.int64(-9), rng) == -3
    assert coerce(model.field("ratio"), "0.9", rng) == 0.5
    assert coerce(model.field("short"), "x" * 40, rng) == "x" * 14
    assert len(coerce(model.field("short"), "hi", rng)) >= 12
    assert coerce(model.field("ok"), "yes", rng) is True and coerce(model.field("ok"), np.bool_(False), rng) is False
    assert coerce(model.field("flags"), ["dark"], rng) == {"blurry": False, "dark": True}
    assert coerce(model.field("where"), (55.75, 37.62), rng) == "55.750000,37.620000"
    assert coerce(model.field("level"), 9, rng) == 3
    link = task_model(FIND_ITEMS_URL).field("page")
    assert coerce(link, "www.shop.com/a", rng) == "https://www.shop.com/a"
    assert coerce(task_model(CLASSIC).field("note"), None, rng) is None
    detection = task_model(_project("detection_project")).annotation
    drawn = coerce(detection, [{"left": 0.5, "top": 0.5, "width": 0.9, "height": 0.1, "label": "Stop"},
                               {"shape": "point", "left": 0.2, "top": 0.2}, "junk"], rng)
    assert drawn == [{"shape": "rectangle", "left": 0.5, "top": 0.5, "width": 0.5, "height": 0.1, "label": "stop"}]


def test_complete_fills_coerces_and_drops():
    rng = np.random.default_rng(1)
    outputs = task_model(_project("verification_project")).outputs
    answer = complete(outputs, {"verdict": "Yes", "stray": 1}, rng)
    assert answer == {"verdict": "OK"}
    answer = complete(outputs, {"reason": "loose_box"}, rng)
    assert answer["reason"] == "loose_box" and answer["verdict"] in ("OK", "BAD")
    dropped = [complete(outputs, {"verdict": "OK", "reason": "loose_box"}, rng, omit_optional_share=1.0)]
    assert dropped == [{"verdict": "OK"}]


def test_shapes_to_annotation_formats():
    rng = np.random.default_rng(2)
    boxes = [{"left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4, "label": "Traffic light"},
             {"left": 0.8, "top": 0.9, "width": 0.5, "height": 0.5}]
    detection = task_model(_project("detection_project")).annotation
    rects = shapes_to_annotation(boxes, detection, rng)
    assert rects[0] == {"shape": "rectangle", "left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4,
                        "label": "traffic_light"}
    assert rects[1]["width"] == pytest.approx(0.2) and rects[1]["label"] in {c.value for c in detection.labels}
    plain = shapes_to_annotation(boxes, task_model(ANNOTATION_NO_LABELS).annotation, rng)
    assert all("label" not in item and item["shape"] == "rectangle" for item in plain)
    poly_field = task_model(POLYGON_ONLY).annotation
    polys = shapes_to_annotation(boxes[:1], poly_field, rng)
    assert polys[0]["shape"] == "polygon" and polys[0]["label"] in ("car", "bus")
    assert [v for p in polys[0]["points"] for v in (p["left"], p["top"])] == pytest.approx(
        [0.1, 0.2, 0.4, 0.2, 0.4, 0.6, 0.1, 0.6])
    points = shapes_to_annotation(boxes[:1], task_model(POINT_ONLY).annotation, rng)
    assert points == [{"shape": "point", "left": pytest.approx(0.25), "top": pytest.approx(0.4)}]
    for field, items in ((detection, rects), (poly_field, polys)):
        assert is_valid(field, items) and _backend_ok(field, items)


def test_pattern_samples():
    rng = np.random.default_rng(3)
    model = task_model(TEXT_RECOGNITION)
    for _ in range(50):
        value = uninformed(model.field("value"), rng)
        assert is_valid(model.field("value"), value) and 1 <= len(value) <= 9
    assert sample_pattern("(a|b)\\1[^x]{2}", rng) is not None
    assert sample_pattern("(unclosed", rng) is None


def test_link_values_look_like_links():
    rng = np.random.default_rng(4)
    found = task_model(FIND_ITEMS).field("found_link")
    assert found.is_link and not task_model(TEXT_RECOGNITION).field("value").is_link
    for _ in range(20):
        value = uninformed(found, rng)
        assert value.startswith("https://www.") and "marksandspencer" in value and is_valid(found, value)
