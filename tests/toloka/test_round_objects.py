"""The Toloka objects of mode overlap's rounds: the shipped configs, the refusals of a round project the
flow cannot run, the prices derived from timings (hand-computed), ``--rounds`` and the round pool's JSON."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest

from crowdboxes.classes import CLASS_NAMES
from crowdboxes.cnvrg.stepkit import StepError
from crowdboxes.toloka import pools, pricing, projects
from crowdboxes.toloka.fields import CHECK_VERDICTS, check_round_project, view_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def _load(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}_project.json").read_text())


def _items(data: dict) -> list[dict]:
    def walk(node):
        if isinstance(node, dict):
            yield node
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)
    return list(walk(view_config(data)))


# --- the shipped configs ---------------------------------------------------------------------------------

def test_shipped_round_projects_pass_and_show_what_the_brief_says():
    loaded = projects.load_project_configs(CONFIGS)
    assert {"detection_project", "verification_project", "box_check", "missed_signs"} <= set(loaded)
    check = _load("box_check")
    spec = check["task_spec"]
    assert {n: s["type"] for n, s in spec["input_spec"].items()} == {
        "image": "url", "box": "json", "box_id": "string", "image_id": "string", "label_text": "string"}
    assert spec["output_spec"]["verdict"]["allowed_values"] == list(CHECK_VERDICTS)
    assert spec["output_spec"]["right_label"]["allowed_values"] == list(CLASS_NAMES)
    assert spec["output_spec"]["right_label"]["required"] is False
    items = _items(check)
    shown = next(i for i in items if i.get("type") == "field.image-annotation")
    assert shown["disabled"] is True and shown["data"]["type"] == "data.internal"
    assert shown["data"]["default"] == {"path": "box", "type": "data.input"}
    radios = [i for i in items if i.get("type") == "field.radio-group"]
    assert [r["data"]["path"] for r in radios] == ["verdict", "right_label"]
    assert [o["value"] for o in radios[0]["options"]] == list(CHECK_VERDICTS)
    assert [o["value"] for o in radios[1]["options"]] == list(CLASS_NAMES)
    assert any(i.get("type") == "helper.if" and i["condition"]["to"] == "wrong_class" for i in items)
    assert set(check["task_spec"]["view_spec"]["lock"]) >= {i["type"] for i in items if "." in str(i.get("type"))
                                                            and not i["type"].startswith("data.")}

    missed = _load("missed_signs")
    items = _items(missed)
    annotations = [i for i in items if i.get("type") == "field.image-annotation"]
    assert [bool(a.get("disabled")) for a in annotations] == [True, False]
    assert annotations[0]["data"]["default"] == {"path": "shown", "type": "data.input"}
    assert annotations[1]["data"]["path"] == "result" and annotations[1]["validation"]["type"] == "condition.any"
    assert [label["value"] for label in annotations[1]["labels"]] == list(CLASS_NAMES)
    assert set(missed["task_spec"]["view_spec"]["lock"]) >= {i["type"] for i in items if "." in str(i.get("type"))
                                                             and not i["type"].startswith("data.")}


def test_shipped_round_pool_configs_set_no_reward_and_one_overlap():
    check = pools.load_pool_config(CONFIGS / "box_check_pool.json")
    missed = pools.load_pool_config(CONFIGS / "missed_signs_pool.json")
    assert "reward_per_assignment" not in check and "reward_per_assignment" not in missed  # pricing derives it
    assert pools.config_suite_size(check) == 10 and pools.config_suite_size(missed) == 1
    assert pools.default_overlap(check) == pools.default_overlap(missed) == 1


# --- refusals ---------------------------------------------------------------------------------------------

def _edited(name: str, change) -> dict:
    data = _load(name)
    change(data)
    return data


def _view_edit(change):
    def edit(data):
        view = json.loads(data["task_spec"]["view_spec"]["config"])
        change(view)
        data["task_spec"]["view_spec"]["config"] = json.dumps(view)
    return edit


@pytest.mark.parametrize("role, change, message", [
    ("box_check", lambda d: d["task_spec"]["output_spec"].pop("verdict"),
     "task_spec.output_spec needs field 'verdict' of type string"),
    ("box_check", lambda d: d["task_spec"]["input_spec"]["box"].update(type="string"),
     "task_spec.input_spec needs field 'box' of type json"),
    ("box_check", lambda d: d["task_spec"]["output_spec"]["verdict"].update(allowed_values=["yes", "no_sign"]),
     "verdict must allow yes, no_sign, loose, wrong_class (missing loose, wrong_class)"),
    ("box_check", lambda d: d["task_spec"]["output_spec"]["right_label"].update(required=True),
     "right_label must be \"required\": false"),
    ("box_check", lambda d: d["task_spec"]["input_spec"].update(crop={"type": "url", "required": True}),
     "task_spec.input_spec field 'crop' is required, but the flow fills only image, box, box_id"),
    ("box_check", _view_edit(lambda v: v["view"]["items"].pop()),  # the right_label radio removed
     "the view has no component whose 'data' is data.output 'right_label'"),
    ("missed_signs", lambda d: d["task_spec"]["input_spec"].pop("shown"),
     "task_spec.input_spec needs field 'shown' of type json"),
    ("missed_signs", _view_edit(lambda v: v["view"]["items"][2].update(disabled=True)),
     "the view's data.output 'result' must be an editable field.image-annotation"),
])
def test_a_round_project_without_what_the_flow_needs_is_refused_in_one_line(role, change, message):
    with pytest.raises(StepError) as info:
        check_round_project(_edited(role, change), role, f"{role}_project.json")
    text = str(info.value)
    assert text.startswith(f"{role}_project.json: ") and message in text and "\n" not in text


def test_load_project_configs_refuses_before_returning_and_skips_absent_files(tmp_path):
    import shutil

    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    (configs / "missed_signs_project.json").unlink()
    assert "missed_signs" not in projects.load_project_configs(configs)
    data = _edited("box_check", lambda d: d["task_spec"]["input_spec"].pop("label_text"))
    (configs / "box_check_project.json").write_text(json.dumps(data))
    with pytest.raises(StepError, match=r"box_check_project.json: task_spec.input_spec needs field 'label_text'"):
        projects.load_project_configs(configs)


def test_label_notes_name_a_round_project_with_other_labels(tmp_path):
    import shutil

    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    data = _edited("box_check", lambda d: d["task_spec"]["output_spec"]["right_label"].update(
        allowed_values=["a", "b"]))
    (configs / "box_check_project.json").write_text(json.dumps(data))
    fields = projects.validate_detection_project(projects.load_project_config(configs / "detection_project.json"),
                                                 configs / "detection_project.json")
    notes = projects.label_notes(fields, configs)
    assert len(notes) == 1 and "box_check_project.json: task_spec.output_spec.right_label allows (a, b" in notes[0]


# --- prices from timings (hand-computed) ----------------------------------------------------------------

def test_check_price_is_the_drawing_rate_for_six_seconds_in_suites_where_the_fee_is_thirty_percent():
    # $0.05 per drawn image for 6 + 25 x 1.5 = 43.5 s; a check of 6 s: 0.05 x 6 / 43.5 = $0.0068966
    price = pricing.check_price(0.05)
    assert math.isclose(price.task_reward, 0.05 * 6 / 43.5)
    # MIN_FEE / (0.3 x 0.0068966) = 2.42 -> 3 checks; 3 x 0.0068966 = 0.02069 -> $0.021 (rounded up)
    assert (price.tasks_per_suite, price.reward) == (3, 0.021)
    assert pricing.toloka_fee(price.reward) == pytest.approx(0.3 * 0.021)  # not the $0.005 minimum
    # a suite of 2 images per drawing assignment halves the per-image reward
    assert math.isclose(pricing.check_price(0.10, tasks_per_suite=2).task_reward, price.task_reward)
    # the config's 10 per suite: $0.068966 -> $0.069, $0.0897 with fee, $0.00897 a check
    ten = pricing.check_price(0.05, min_tasks_per_suite=10)
    assert (ten.tasks_per_suite, ten.reward) == (10, 0.069)
    assert ten.price_per_task == pytest.approx(0.069 * 1.3 / 10)


def test_missed_sign_price_is_two_looks_and_half_a_box():
    # (6 + 6 + 25 x 0.5) / 43.5 = 24.5 / 43.5 of a drawing: 0.05 x 0.5632 = $0.028161 -> $0.029
    price = pricing.missed_sign_price(0.05)
    assert math.isclose(price.task_reward, 0.05 * 24.5 / 43.5)
    assert (price.tasks_per_suite, price.reward) == (1, 0.029)
    # a cheap drawing: 0.01 x 0.5632 = $0.005632 a task; 0.005 / (0.3 x 0.005632) = 2.96 -> 3 per suite
    cheap = pricing.missed_sign_price(0.01)
    assert (cheap.tasks_per_suite, cheap.reward) == (3, 0.017)
    with pytest.raises(StepError, match="must be positive"):
        pricing.missed_sign_price(0.0)


# --- --rounds and the round pool -------------------------------------------------------------------------

def test_parse_rounds():
    assert pools.parse_rounds("none") == () and pools.parse_rounds("None") == ()
    assert pools.parse_rounds("box_check, missed_signs") == ("missed_signs", "box_check")
    assert pools.parse_rounds("box_check,box_check,") == ("box_check",)
    for bad in ("checks", ",", "box_check,drawing"):
        with pytest.raises(StepError, match="use none, or a comma list of missed_signs, box_check"):
            pools.parse_rounds(bad)


def test_round_pool_json_keeps_the_config_and_sets_project_reward_suite_and_languages():
    config = pools.load_pool_config(CONFIGS / "box_check_pool.json")
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    key = pools.round_pool_key("crowdboxes:x:detection:pool:abc", "box_check", config, 0.069, 10)
    assert key.startswith("crowdboxes:x:detection:pool:abc:box_check:")
    assert key == pools.round_pool_key("crowdboxes:x:detection:pool:abc", "box_check", config, 0.069, 10)
    assert key != pools.round_pool_key("crowdboxes:x:detection:pool:abc", "box_check", config, 0.07, 10)
    pool = pools.build_round_pool(config, project_id="5", key=key, reward=0.069, tasks_per_suite=10,
                                  will_expire=expires, languages=("EN", "DE"), adult_content=False, skill_ids={},
                                  config_path="box_check_pool.json")
    data = json.loads(pool.to_json())
    assert (data["project_id"], data["private_comment"], data["reward_per_assignment"]) == ("5", key, 0.069)
    assert data["mixer_config"]["real_tasks_count"] == 10 and data["mixer_config"]["force_last_assignment"] is True
    assert data["defaults"]["default_overlap_for_new_tasks"] == 1
    assert data["will_expire"].startswith("2030-01-02T03:04:05")
    assert [c["value"] for c in data["filter"]["and"][0]["or"]] == ["EN", "DE"]
    assert len(data["quality_control"]["configs"]) == len(config["quality_control"]["configs"])
