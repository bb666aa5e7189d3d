"""The simulated crowd answers any project by its task spec (Crowd.solve called directly, images as file://
URLs, no server): classification, label-less and relabelled drawings, texts without images, judgements of
shapes in any input, truth-backed accuracy per worker kind, and bad input."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import Counter
from pathlib import Path

import attrs
import numpy as np
import pytest
from PIL import Image

from crowdboxes.local_toloka import crowd as crowd_mod
from crowdboxes.local_toloka.crowd import Crowd, make_workforce
from crowdboxes.local_toloka.crowd.spec import task_model
from crowdboxes.local_toloka.crowd.values import is_valid

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CATEGORIES = [{"id": i + 1, "name": n} for i, n in enumerate(crowd_mod.CLASS_NAMES)]


def _tb(view: dict) -> dict:
    return {"type": "tb", "config": json.dumps({"view": view, "plugins": []}), "lock": {"core": "1.0.0"}}


def _spec(inputs: dict, outputs: dict, view: dict | None = None) -> dict:
    return {"input_spec": inputs, "output_spec": outputs, **({"view_spec": view} if view is not None else {})}


def _config(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())["task_spec"]


def _valid(spec: dict, answer: dict) -> bool:
    model = task_model(spec)
    if set(answer) - {f.name for f in model.outputs}:
        return False
    return all(is_valid(f, answer[f.name]) if f.name in answer else not f.required for f in model.outputs)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Six 640x480 PNGs (file:// URLs): two with signs, classification labels and texts; their truth."""
    folder = tmp_path_factory.mktemp("scenes")
    truth = {"images": [], "annotations": [], "categories": CATEGORIES}
    specs = [("a.png", [(60, 40, 120, 120, 1), (400, 250, 90, 90, 7)], "cat", "STOP 42"),
             ("b.png", [(200, 100, 150, 150, 2)], "dog", "Main Street"),
             ("c.png", [], "cat", "no signs here")]
    urls = {}
    for n, (name, boxes, label, text) in enumerate(specs):
        buf = io.BytesIO()
        Image.new("RGB", (640, 480), (40 * n, 100, 90)).save(buf, format="PNG")
        (folder / name).write_bytes(buf.getvalue())
        truth["images"].append({"id": n + 1, "file_name": name, "width": 640, "height": 480, "label": label,
                                "text": text, "sha256": hashlib.sha256(buf.getvalue()).hexdigest()})
        for x, y, w, h, cat in boxes:
            truth["annotations"].append({"id": len(truth["annotations"]) + 1, "image_id": n + 1, "category_id": cat,
                                         "bbox": [x, y, w, h]})
        urls[name] = (folder / name).as_uri()
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (0, 0, 0)).save(buf, format="PNG")
    (folder / "unknown.png").write_bytes(buf.getvalue())
    urls["unknown.png"] = (folder / "unknown.png").as_uri()
    return urls, truth


def _careful(**changes):
    return attrs.evolve(make_workforce(1, 0, mix={"careful": 1})[0], p_miss=0.0, p_miss_small=0.0, **changes)


def _kind(kind):
    return make_workforce(1, 0, mix={kind: 1})[0]


IMAGE_URL_IN = {"image_url": {"type": "url", "required": True}}
CLASSIFY = _spec(IMAGE_URL_IN, {"result": {"type": "string", "required": True, "allowed_values": ["cat", "dog"]}},
                 _tb({"type": "view.list", "items": [
                     {"type": "view.image", "url": {"type": "data.input", "path": "image_url"}},
                     {"type": "field.radio-group", "data": {"type": "data.output", "path": "result"},
                      "options": [{"label": "Cat", "value": "cat"}, {"label": "Dog", "value": "dog"}]}]}))


def _annotation(labels=None, out="boxes", image="image_url", shapes=None):
    node = {"type": "field.image-annotation", "data": {"type": "data.output", "path": out},
            "image": {"type": "data.input", "path": image}}
    if labels is not None:
        node["labels"] = [{"label": t, "value": v} for v, t in labels]
    if shapes is not None:
        node["shapes"] = shapes
    return _spec({image: {"type": "url", "required": True}}, {out: {"type": "json", "required": True}}, _tb(node))


# ---------------------------------------------------------------------------------------- classification

def test_classification_labels_come_from_allowed_values(world):
    urls, truth = world
    crowd = Crowd(truth, seed=1)
    answers = [crowd.solve(w, {"image_url": urls["a.png"]}, CLASSIFY) for w in make_workforce(40, 2)]
    assert all(set(a) == {"result"} and a["result"] in ("cat", "dog") for a in answers)
    # truth says cat: ~34 of 40 expected (10 % spammers, 20 % sloppy); the file URL reseeds draws, so 4 sd slack
    assert Counter(a["result"] for a in answers)["cat"] >= 26


def test_truth_backed_accuracy_careful_high_spammers_at_chance(world):
    urls, truth = world
    crowd = Crowd(truth, seed=2)
    spec = _spec(IMAGE_URL_IN, {"kind": {"type": "string", "required": True,
                                         "allowed_values": ["cat", "dog", "bird", "fish"]}})
    tasks = [{"image_url": urls[n], "n": i} for i in range(100) for n in ("a.png", "b.png")]
    right = {"a.png": "cat", "b.png": "dog"}

    def accuracy(workers):
        hits = [crowd.solve(w, t, spec)["kind"] == right[t["image_url"].rsplit("/", 1)[1]]
                for w in workers for t in tasks]
        return float(np.mean(hits))

    careful = accuracy(make_workforce(5, 1, mix={"careful": 1}))
    sloppy = accuracy(make_workforce(5, 1, mix={"sloppy": 1}))
    spam = accuracy(make_workforce(5, 1, mix={"spammer_random": 1}))
    assert careful > 0.8 and sloppy < careful
    assert 0.15 < spam < 0.35  # uniform over 4 options
    # a spammer who does not look picks the first option every time
    assert {crowd.solve(_kind("spammer_empty"), t, spec)["kind"] for t in tasks[:20]} == {"cat"}


# ------------------------------------------------------------------------------------------------ drawing

def test_label_less_annotation_has_no_label_key_and_image_url_input_works(world):
    urls, truth = world
    spec = _annotation(labels=None)
    out = Crowd(truth, seed=0).solve(_careful(), {"image_url": urls["a.png"]}, spec)
    assert set(out) == {"boxes"} and len(out["boxes"]) >= 2
    assert all("label" not in s and s["shape"] == "rectangle" for s in out["boxes"])
    assert _valid(spec, out)


def test_truth_classes_map_to_differently_named_labels(world, caplog):
    urls, truth = world
    labels = [("STOP_SIGN", "Stop sign"), ("Park", "Parking"), ("give-way", "Yield")]
    spec = _annotation(labels=labels, out="objects")
    label_map = {"stop": "STOP_SIGN", "yield": "give-way"}  # parking -> "Park" by its label text "Parking"
    crowd = Crowd(truth, seed=0, label_map=label_map)
    worker = _careful(class_accuracy=1.0, fp_rate=0.0, gross_rate=0.0)
    with caplog.at_level(logging.WARNING, logger="crowdboxes.local_toloka"):
        a = crowd.solve(worker, {"image_url": urls["a.png"]}, spec)
        b = crowd.solve(worker, {"image_url": urls["b.png"]}, spec)
    assert sorted(s["label"] for s in a["objects"]) == ["Park", "STOP_SIGN"]
    assert [s["label"] for s in b["objects"]] == ["give-way"]
    assert not [r for r in caplog.records if "matches no label" in r.getMessage()]
    # without the map, "stop" matches nothing: a random view label and one log line naming the class
    caplog.clear()
    plain = Crowd(truth, seed=0)
    with caplog.at_level(logging.WARNING, logger="crowdboxes.local_toloka"):
        for n in range(3):
            out = plain.solve(worker, {"image_url": urls["a.png"], "n": n}, spec)
            assert {s["label"] for s in out["objects"]} <= {v for v, _ in labels}
    lines = [r.getMessage() for r in caplog.records if "matches no label" in r.getMessage()]
    assert len(lines) == 1 and "'stop'" in lines[0]


def test_polygon_only_annotation_and_unknown_image(world):
    urls, truth = world
    spec = _annotation(labels=[("stop", "Stop"), ("parking", "Parking")], shapes={"polygon": True})
    out = Crowd(truth, seed=0).solve(_careful(), {"image_url": urls["a.png"]}, spec)
    assert out["boxes"] and all(s["shape"] == "polygon" for s in out["boxes"]) and _valid(spec, out)
    assert Crowd(truth, seed=0).solve(_careful(), {"image_url": urls["unknown.png"]}, spec) == {"boxes": []}


def test_our_detection_config_draws_exactly_as_before(world):
    """configs/detection_project.json (TB, labels = class names) gives the answers of the spec-less crowd."""
    urls, truth = world
    spec = _config("detection_project")
    for worker in make_workforce(30, 4):
        task = {"image": urls["a.png"]}
        assert Crowd(truth, seed=3).solve(worker, task, spec) == Crowd(truth, seed=3).solve(worker, task)


# ---------------------------------------------------------------------------------------------- judgement

def _rect(x, y, w, h, label=None):
    out = {"shape": "rectangle", "left": x / 640, "top": y / 480, "width": w / 640, "height": h / 480}
    return {**out, "label": label} if label else out


def test_judgement_of_shapes_in_any_input_with_yes_no_options(world):
    urls, truth = world
    spec = _spec({"picture": {"type": "url"}, "boxes": {"type": "string"}},
                 {"answer": {"type": "string", "required": True, "allowed_values": ["yes", "no"]}},
                 _tb({"type": "view.list", "items": [
                     {"type": "view.image", "url": {"type": "data.input", "path": "picture"}},
                     {"type": "field.radio-group", "data": {"type": "data.output", "path": "answer"},
                      "options": [{"label": "Right", "value": "yes"}, {"label": "Wrong", "value": "no"}]}]}))
    good = json.dumps([_rect(60, 40, 120, 120), _rect(400, 250, 90, 90)])
    missing = json.dumps([_rect(60, 40, 120, 120)])
    crowd = Crowd(truth, seed=0)
    # 200 careful judges: their rate varies 0.85-0.95 with the (random) image URL; 40 judges crossed 0.75 once
    workers = make_workforce(200, 1, mix={"careful": 1})
    ok = [crowd.solve(w, {"picture": urls["a.png"], "boxes": good}, spec) for w in workers]
    bad = [crowd.solve(w, {"picture": urls["a.png"], "boxes": missing}, spec) for w in workers]
    assert all(set(a) == {"answer"} for a in ok + bad)
    assert np.mean([a["answer"] == "yes" for a in ok]) > 0.75
    assert np.mean([a["answer"] == "no" for a in bad]) > 0.75
    always = _kind("verifier_always_ok")
    assert {crowd.solve(always, {"picture": urls["a.png"], "boxes": missing, "n": i}, spec)["answer"]
            for i in range(10)} == {"yes"}
    # the task is timed as a judgement
    assert crowd_mod.task_kind(spec, {"picture": urls["a.png"], "boxes": good}) == "judgement"


def test_judgement_options_given_at_start_and_boolean_outputs(world):
    urls, truth = world
    spec = _spec({"img": {"type": "url"}, "shapes": {"type": "json"}},
                 {"fine": {"type": "string", "required": True, "allowed_values": ["A", "B"]}})
    crowd = Crowd(truth, seed=0, judgement_options={"correct": "B", "incorrect": "A"})
    outlines = [_rect(200, 100, 150, 150, "yield")]
    careful = make_workforce(100, 2, mix={"careful": 1})  # ~94 right; below 75 in about 2e-6 of runs
    answers = [crowd.solve(w, {"img": urls["b.png"], "shapes": outlines}, spec)["fine"] for w in careful]
    assert Counter(answers)["B"] >= 75
    boolean = _spec({"img": {"type": "url"}, "shapes": {"type": "json"}}, {"is_correct": {"type": "boolean"}})
    answers = [Crowd(truth, seed=0).solve(w, {"img": urls["b.png"], "shapes": outlines}, boolean)["is_correct"]
               for w in careful]
    assert Counter(answers)[True] >= 75


def test_our_verification_config_keeps_todays_answers_exactly(world):
    urls, truth = world
    spec = _config("verification_project")
    crowd_a, crowd_b = Crowd(truth, seed=5), Crowd(truth, seed=5)
    outlines = [_rect(60, 40, 120, 120, "stop")]
    for worker in make_workforce(40, 6):
        for shown in (outlines, json.dumps(outlines), []):
            task = {"image": urls["a.png"], "outlines": shown, "assignment_id": "a1"}
            with_spec = crowd_a.solve(worker, task, spec)
            assert with_spec == crowd_b.solve(worker, task)
            assert set(with_spec) == {"verdict", "reason"}


# ------------------------------------------------------------------------------ texts, links, no image

def test_text_task_without_image_is_answered_from_task_truth(world):
    _, truth = world
    spec = _spec({"question": {"type": "string"}},
                 {"answer": {"type": "string", "required": True, "max_length": 60}},
                 _tb({"type": "view.list", "items": [
                     {"type": "view.text", "content": {"type": "data.input", "path": "question"}},
                     {"type": "field.textarea", "data": {"type": "data.output", "path": "answer"}}]}))
    with_tasks = {**truth, "tasks": [{"input_values": {"question": "Capital of France?"},
                                      "output_values": {"answer": "Paris is the capital"}}]}
    crowd = Crowd(with_tasks, seed=0)
    careful = [crowd.solve(w, {"question": "Capital of France?"}, spec)["answer"]
               for w in make_workforce(30, 3, mix={"careful": 1})]
    assert Counter(careful).most_common(1)[0] == ("Paris is the capital", Counter(careful)["Paris is the capital"])
    assert Counter(careful)["Paris is the capital"] >= 20  # ~1 % typos per character
    other = crowd.solve(_careful(), {"question": "Who wrote Hamlet?"}, spec)
    assert _valid(spec, other) and other["answer"]  # no truth: uninformed, valid


def test_text_recognition_from_image_truth_with_typos(world):
    urls, truth = world
    spec = _spec({"image": {"type": "url"}}, {"text": {"type": "string", "required": True}},
                 _tb({"type": "field.text", "data": {"type": "data.output", "path": "text"}}))
    crowd = Crowd(truth, seed=0)
    # 200 each: the coins change with the tmp folder's URL. Exact for a careful worker is 0.99 ** 11 = 0.895
    # (sd 0.022 at 200; 40 drew 0.70 once), for a sloppy one 0.95 ** 11 = 0.57
    careful, sloppy = ([crowd.solve(w, {"image": urls["b.png"]}, spec)["text"]
                        for w in make_workforce(200, 3, mix={kind: 1})] for kind in ("careful", "sloppy"))
    assert np.mean([t == "Main Street" for t in careful]) > 0.8
    assert np.mean([t == "Main Street" for t in sloppy]) < 0.72
    spam = [crowd.solve(w, {"image": urls["b.png"]}, spec)["text"]
            for w in make_workforce(10, 3, mix={"spammer_random": 1})]
    assert not any(t == "Main Street" for t in spam)


def test_link_task_and_image_less_tasks_never_skipped(world):
    urls, truth = world
    find = _spec({"image": {"type": "url"}}, {"found_link": {"type": "string", "required": True}},
                 _tb({"type": "field.text", "label": "Paste the link",
                      "data": {"type": "data.output", "path": "found_link"}}))
    with_link = {**truth, "images": [{**im, "link": "https://shop.example.com/red-shoe"} if im["id"] == 1 else im
                                     for im in truth["images"]]}
    crowd = Crowd(with_link, seed=0)
    links = [crowd.solve(w, {"image": urls["a.png"]}, find)["found_link"]
             for w in make_workforce(100, 1, mix={"careful": 1})]
    assert Counter(links)["https://shop.example.com/red-shoe"] >= 75  # ~90 expected, below 75 in about 1e-5
    assert all(link.startswith("https://") for link in links)
    # no image at all, or one that does not load: a valid answer, never None
    side_by_side = _spec({"left": {"type": "string"}, "right": {"type": "string"}},
                         {"better": {"type": "string", "allowed_values": ["left", "right"]}})
    for worker in make_workforce(10, 1):
        out = crowd.solve(worker, {"left": "a", "right": "b"}, side_by_side)
        assert out["better"] in ("left", "right")
        broken = crowd.solve(worker, {"image_url": "file:///nonexistent/x.png"}, CLASSIFY)
        assert broken["result"] in ("cat", "dog")


def test_no_truth_is_logged_once_per_project(world, caplog):
    urls, _ = world
    crowd = Crowd(None, seed=0)
    with caplog.at_level(logging.WARNING, logger="crowdboxes.local_toloka"):
        for w in make_workforce(10, 1):
            assert crowd.solve(w, {"image_url": urls["a.png"]}, CLASSIFY, project_id=7)["result"] in ("cat", "dog")
            crowd.solve(w, {"image_url": urls["a.png"]}, CLASSIFY, project_id=8)
    lines = [r.getMessage() for r in caplog.records if "no truth" in r.getMessage()]
    assert lines == ["project 7 has no truth for its tasks; answers are uninformed",
                     "project 8 has no truth for its tasks; answers are uninformed"]


# ---------------------------------------------------------------------------------------------- bad input

def test_unknown_component_gives_a_valid_answer_and_one_log_line(world):
    urls, truth = world
    lines = []
    spec = _spec(IMAGE_URL_IN, {"score": {"type": "integer", "required": True, "min_value": 1, "max_value": 5},
                                "note": {"type": "string", "required": False}},
                 _tb({"type": "view.list", "items": [
                     {"type": "field.star-rating", "data": {"type": "data.output", "path": "score"}},
                     {"type": "field.text", "data": {"type": "data.output", "path": "note"}}]}))
    crowd = Crowd(truth, seed=0, log=lines.append)
    for worker in make_workforce(20, 1):
        out = crowd.solve(worker, {"image_url": urls["a.png"]}, spec, project_id=3)
        assert _valid(spec, out) and 1 <= out["score"] <= 5
    unknown = [line for line in lines if "field.star-rating" in line]
    assert len(unknown) == 1 and "project 3" in unknown[0]


@pytest.mark.parametrize("spec", [None, {}, {"output_spec": "nonsense"}, {"output_spec": {"x": 5}},
                                  {"input_spec": [], "output_spec": {"a": {"type": "weird"}}, "view_spec": 3},
                                  {"output_spec": {"a": {"type": "string"}},
                                   "view_spec": {"type": "tb", "config": "{not json"}}])
def test_unreadable_specs_never_raise(world, spec):
    urls, truth = world
    out = Crowd(truth, seed=0, log=lambda line: None).solve(_careful(), {"image": urls["a.png"]}, spec)
    assert isinstance(out, dict)


def test_a_crashing_answer_is_logged_and_uninformed(world, monkeypatch):
    urls, truth = world
    lines = []
    crowd = Crowd(truth, seed=0, log=lines.append)
    monkeypatch.setattr(crowd, "_from_truth", lambda *a, **k: 1 / 0)
    for _ in range(3):
        out = crowd.solve(_careful(), {"image_url": urls["a.png"]}, CLASSIFY, project_id=9)
        assert out["result"] in ("cat", "dog")
    assert len(lines) == 1 and "project 9" in lines[0] and "ZeroDivisionError" in lines[0]


def test_classification_from_the_largest_box_when_the_image_has_no_label(world):
    urls, truth = world
    boxes_only = {**truth, "images": [{k: v for k, v in im.items() if k != "label"} for im in truth["images"]]}
    spec = _spec(IMAGE_URL_IN, {"sign": {"type": "string", "required": True,
                                         "allowed_values": ["Stop", "Yield", "Parking"]}})
    crowd = Crowd(boxes_only, seed=0)
    careful = make_workforce(100, 1, mix={"careful": 1})  # ~90 right of 100, below 75 in about 1e-5 of runs
    # a.png: a 120 px stop sign and a 90 px parking sign -> "Stop"; b.png: one yield sign
    assert Counter(crowd.solve(w, {"image_url": urls["a.png"]}, spec)["sign"] for w in careful)["Stop"] >= 75
    assert Counter(crowd.solve(w, {"image_url": urls["b.png"]}, spec)["sign"] for w in careful)["Yield"] >= 75


def test_judging_renamed_labels_through_the_label_map(world):
    """Shapes labelled with the view's values (not the truth's class names) are judged through the map."""
    urls, truth = world
    spec = _spec({"image": {"type": "url"}, "outlines": {"type": "json"}},
                 {"verdict": {"type": "string", "required": True, "allowed_values": ["OK", "BAD"]}})
    shown = [_rect(60, 40, 120, 120, "S1"), _rect(400, 250, 90, 90, "P9")]
    task = {"image": urls["a.png"], "outlines": shown}
    careful = make_workforce(100, 1, mix={"careful": 1})  # ~94 right of 100, below 75 in about 2e-6 of runs
    mapped = Crowd(truth, seed=0, label_map={"stop": "S1", "parking": "P9"})
    assert Counter(mapped.solve(w, task, spec)["verdict"] for w in careful)["OK"] >= 75
    unmapped = Crowd(truth, seed=0)  # "S1" is not "stop": a wrong class
    assert Counter(unmapped.solve(w, task, spec)["verdict"] for w in careful)["BAD"] >= 75


def test_found_links_are_urls_even_with_a_loose_pattern(world):
    """toloka-kit's find-items view checks the link with the pattern "marksandspencer.com/?": the pasted link
    still has to be a URL (the next project takes it as a url input)."""
    urls, truth = world
    spec = _spec({"image": {"type": "url"}}, {"found_link": {"type": "string", "required": True}},
                 _tb({"type": "field.text", "label": "Paste the link here",
                      "data": {"type": "data.output", "path": "found_link"},
                      "validation": {"type": "condition.schema", "schema": {"type": "string",
                                                                            "pattern": "marksandspencer.com/?"}}}))
    crowd = Crowd(None, seed=0)
    for i, worker in enumerate(make_workforce(40, 5)):
        link = crowd.solve(worker, {"image": urls["a.png"], "n": i}, spec)["found_link"]
        assert crowd_mod.answering._URL_RE.match(link) and "marksandspencer" in link and " " not in link, link


def test_options_taken_from_the_inputs_side_by_side(world):
    """A radio group whose option values are the task's inputs (toloka-kit's side-by-side link comparison):
    the answer is one of the two links shown, not some other URL."""
    urls, truth = world
    inp = lambda path: {"type": "data.input", "path": path}  # noqa: E731
    spec = _spec({"image": {"type": "url"}, "left_link": {"type": "url"}, "right_link": {"type": "url"}},
                 {"result": {"type": "url", "required": True}},
                 _tb({"type": "view.list", "items": [
                     {"type": "view.image", "url": inp("image")},
                     {"type": "layout.side-by-side", "items": [{"type": "view.link", "url": inp("left_link")},
                                                               {"type": "view.link", "url": inp("right_link")}]},
                     {"type": "field.radio-group", "data": {"type": "data.output", "path": "result"},
                      "options": [{"value": inp("left_link"), "label": "The left one"},
                                  {"value": inp("right_link"), "label": "The right one"}]}]}))
    crowd = Crowd(truth, seed=0)
    answers = []
    for i, worker in enumerate(make_workforce(30, 2)):
        task = {"image": urls["a.png"], "left_link": f"https://shop.example.com/a{i}",
                "right_link": f"https://shop.example.com/b{i}"}
        out = crowd.solve(worker, task, spec)
        assert out["result"] in (task["left_link"], task["right_link"])
        answers.append(out["result"] == task["left_link"])
    assert 0 < sum(answers) < len(answers)
    assert crowd_mod.task_kind(spec, task) == "choice"


def test_multi_label_checkbox_group_from_the_boxes_classes(world):
    urls, truth = world
    spec = _spec(IMAGE_URL_IN, {"present": {"type": "json", "required": True}},
                 _tb({"type": "field.checkbox-group", "data": {"type": "data.output", "path": "present"},
                      "options": [{"label": "Stop", "value": "stop"}, {"label": "Parking", "value": "parking"},
                                  {"label": "Yield", "value": "yield"}]}))
    crowd = Crowd(truth, seed=0)
    answers = [crowd.solve(w, {"image_url": urls["a.png"]}, spec) for w in make_workforce(200, 1, mix={"careful": 1})]
    assert all(_valid(spec, a) for a in answers)
    exact = [a["present"] == {"stop": True, "parking": True, "yield": False} for a in answers]
    assert sum(exact) >= 110  # three options right at ~0.9 each: ~146 of 200 expected, below 110 in about 3e-9
    arrays = _spec(IMAGE_URL_IN, {"present": {"type": "array_string", "required": True,
                                              "allowed_values": ["stop", "parking", "yield"]}})
    got = crowd.solve(_careful(class_accuracy=1.0), {"image_url": urls["a.png"]}, arrays)["present"]
    assert sorted(got) == ["parking", "stop"]


def test_likely_images_are_fetched_first(world, monkeypatch):
    urls, truth = world
    spec = _spec({"shop_page": {"type": "url"}, "photo": {"type": "url"}},
                 {"match": {"type": "string", "required": True, "allowed_values": ["cat", "dog"]}})
    crowd = Crowd(truth, seed=0)
    fetched = []
    real = crowd._fetch_bytes
    monkeypatch.setattr(crowd, "_fetch_bytes", lambda u: fetched.append(u) or real(u))
    out = crowd.solve(_careful(), {"shop_page": "https://shop.example.com/item/4", "photo": urls["b.png"]}, spec)
    assert fetched == [urls["b.png"]] and out["match"] in ("cat", "dog")


def test_a_view_that_requires_a_shape_never_gets_an_empty_drawing(world):
    """toloka-kit's object-detection example puts condition.required on the annotation: nobody can submit
    nothing, so a worker who saw nothing still outlines the most visible object (or something)."""
    urls, truth = world
    spec = _spec({"image": {"type": "url"}}, {"result": {"type": "json"}},
                 _tb({"type": "field.image-annotation", "data": {"type": "data.output", "path": "result"},
                      "image": {"type": "data.input", "path": "image"}, "shapes": {"rectangle": True},
                      "validation": {"type": "condition.required", "hint": "Outline the signs"}}))
    crowd = Crowd(truth, seed=0)
    for i, worker in enumerate(make_workforce(40, 3)):
        for name in ("a.png", "c.png", "unknown.png"):  # signs, no signs, no truth
            out = crowd.solve(worker, {"image": urls[name], "n": i}, spec)["result"]
            assert out and all(s["shape"] == "rectangle" and "label" not in s for s in out), (worker.kind, name)
    spammer = _kind("spammer_empty")
    assert len(crowd.solve(spammer, {"image": urls["a.png"]}, spec)["result"]) == 1
    # our detection view allows "no signs" (condition.any with a checkbox): empty drawings stay possible
    ours = _config("detection_project")
    assert crowd.solve(spammer, {"image": urls["a.png"]}, ours) == {"result": []}
