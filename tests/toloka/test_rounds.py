"""The rounds' rules by hand-computed cases: box keys, what is selected, what counts as already sent, what the
budget allows, and how collected answers become answers.csv / checks.csv rows (no Toloka here; the rounds on
the local Toloka are in test_rounds_local.py)."""

from __future__ import annotations

import types

import pandas as pd
import pytest

from crowdboxes.artifacts import CHECKS
from crowdboxes.errors import CrowdboxesError
from crowdboxes.toloka.rounds import box_key
from crowdboxes.toloka.rounds.collect import check_rows, missed_sign_rows, round_tasks_frame, with_round
from crowdboxes.toloka.rounds.runner import RoundSettings, round_pools
from crowdboxes.toloka.rounds.selection import (affordable, aliases, at_risk_images, not_checked, plan_boxes,
                                                plan_images, pool_cost, uncertain_boxes, with_box_ids)
from crowdboxes.toloka.rounds.tasks import check_inputs, create_tasks, missed_sign_inputs, shapes, task_boxes


# ------------------------------------------------------------------ box_key

def test_box_key_is_sha1_of_id_label_and_coordinates_at_a_tenth_of_a_pixel():
    # sha1("img1|stop|10.0|20.0|30.0|40.0") = 1702d01d29c34256...
    assert box_key("img1", "stop", 10, 20, 30, 40) == "1702d01d29c34256"
    assert box_key("img1", "stop", 10.04, 19.96, 30.0, 40.049) == "1702d01d29c34256"
    assert box_key("img1", "stop", 10.06, 20, 30, 40) != "1702d01d29c34256"  # 10.1 px
    assert box_key("img1", "yield", 10, 20, 30, 40) != "1702d01d29c34256"
    assert box_key("i", "s", -0.04, 0, 1, 1) == box_key("i", "s", 0, 0, 1, 1)  # -0.0 is 0.0


# ------------------------------------------------------------------ selection

def test_at_risk_images_are_strictly_above_the_threshold_most_at_risk_first():
    risk = pd.DataFrame({"expected_missed": [0.2, 0.9, 0.3, 0.9, 0.31]}, index=["a", "b", "c", "d", "e"])
    assert at_risk_images(risk, 0.3) == ["b", "d", "e"]  # ties by image id; 0.3 itself is not above
    assert at_risk_images(pd.DataFrame(), 0.3) == []


def boxes_frame(rows):
    """(image_id, label, x, y, w, h, score)"""
    return pd.DataFrame(rows, columns=["image_id", "label", "x", "y", "w", "h", "score"])


def test_uncertain_boxes_are_inside_the_bounds_nearest_one_half_first():
    boxes = boxes_frame([("a", "stop", 0, 0, 10, 10, 0.95), ("a", "stop", 20, 0, 10, 10, 0.9),
                         ("a", "yield", 40, 0, 10, 10, 0.45), ("b", "stop", 0, 0, 10, 10, 0.1),
                         ("b", "stop", 20, 0, 10, 10, 0.05), ("b", "stop", 40, 0, 10, 10, 0.7)])
    picked = uncertain_boxes(boxes, 0.1, 0.9)
    # |p - 0.5|: 0.05, 0.2, 0.4, 0.4 (ties by image id, then box id: a before b)
    assert picked["score"].tolist() == [0.45, 0.7, 0.9, 0.1]
    assert picked["box_id"].tolist()[0] == box_key("a", "yield", 40, 0, 10, 10)


def test_a_box_counts_as_checked_by_its_id_or_an_iou_of_at_least_0_7_on_the_same_image_and_label():
    existing = with_box_ids(boxes_frame([("a", "stop", 0, 0, 10, 10, 0.5)]))
    candidates = with_box_ids(boxes_frame([
        ("a", "stop", 0, 0, 10, 10, 0.5),     # the same box id
        ("a", "yield", 0, 0, 10, 8, 0.5),     # IoU 80/100 = 0.8 but another label: its old answers would not
                                              # count for it (selection.aliases), so it is not checked
        ("a", "stop", 0, 0, 10, 8, 0.5),      # IoU 0.8, same label: checked
        ("a", "stop", 0, 0, 10, 7, 0.5),      # IoU 0.7 exactly: checked
        ("a", "stop", 0, 0, 10, 6, 0.5),      # IoU 0.6: not checked
        ("b", "stop", 0, 0, 10, 10, 0.5)]))   # another image
    assert not_checked(candidates, existing).tolist() == [False, True, False, False, True, True]


def test_pool_cost_pays_whole_suites_and_affordable_counts_the_tasks_already_there():
    price = 0.026  # reward 0.02 + fee max(0.3 * 0.02, 0.005) = 0.006
    assert pool_cost(25, 1, 10, price) == pytest.approx(3 * 0.026)
    assert pool_cost(3, 2, 1, price) == pytest.approx(6 * 0.026)
    # 12 tasks are there (2 suites = 0.052); 0.06 pays for 2 suites only: up to 20 tasks, 8 new
    assert affordable(12, 30, overlap=1, tasks_per_suite=10, price=price, budget=0.06) == 8
    assert affordable(0, 5, overlap=2, tasks_per_suite=1, price=price, budget=0.11) == 2  # 2 x 2 x 0.026 = 0.104
    assert affordable(0, 5, overlap=1, tasks_per_suite=1, price=price, budget=None) == 5
    assert affordable(0, 5, overlap=1, tasks_per_suite=1, price=price, budget=0.0) == 0


def test_plans_skip_what_the_pool_has_and_count_what_the_budget_leaves_out():
    plan = plan_images(["a", "b", "c", "d"], {"b"}, overlap=1, tasks_per_suite=1, price=0.026, budget=0.08,
                       n_existing_tasks=1)
    assert plan.new["image_id"].tolist() == ["a", "c"] and plan.already == 1 and plan.skipped == 1
    existing = with_box_ids(boxes_frame([("a", "stop", 0, 0, 10, 10, 0.5)]))
    candidates = with_box_ids(boxes_frame([("a", "stop", 0, 0, 10, 10, 0.5), ("a", "stop", 50, 0, 10, 10, 0.5),
                                           ("b", "stop", 0, 0, 10, 10, 0.5)]))
    plan = plan_boxes(candidates, existing, overlap=3, tasks_per_suite=10, price=0.026, budget=0.078,
                      n_existing_tasks=1)
    assert plan.new["image_id"].tolist() == ["a", "b"] and plan.already == 1 and plan.skipped == 0
    plan = plan_boxes(candidates, existing, overlap=3, tasks_per_suite=10, price=0.026, budget=0.07,
                      n_existing_tasks=1)  # not even the task already there fits: nothing new
    assert plan.new.empty and plan.skipped == 2


def test_aliases_map_a_moved_box_to_the_current_box_of_its_label_with_iou_at_least_0_7():
    tasks = with_box_ids(boxes_frame([("a", "stop", 0, 0, 10, 8, 0.5), ("a", "stop", 50, 0, 10, 10, 0.5),
                                      ("a", "yield", 0, 0, 10, 10, 0.5)]))
    current = with_box_ids(boxes_frame([("a", "stop", 0, 0, 10, 10, 0.6), ("a", "yield", 1, 0, 10, 10, 0.3)]))
    got = aliases(tasks, current)
    stop_now, yield_now = current["box_id"].tolist()
    # the moved stop box -> the current one (IoU 0.8); the far one -> nothing; the yield box -> IoU 90/110
    assert got == {tasks["box_id"][0]: stop_now, tasks["box_id"][2]: yield_now}


# ------------------------------------------------------------------ task inputs

def test_task_inputs_carry_normalised_rectangles_and_read_back_to_pixels():
    boxes = with_box_ids(boxes_frame([("a", "stop", 20, 10, 40, 30, 0.8), ("a", "yield", 150, 90, 100, 20, 0.4),
                                      ("b", "stop", 0, 0, 5, 5, 0.2)]))
    assert shapes(boxes.iloc[1:2], 200, 100) == [{"shape": "rectangle", "left": 0.75, "top": 0.9, "width": 0.25,
                                                  "height": pytest.approx(0.1), "label": "yield"}]  # clipped at 1
    urls, sizes = {"a": "http://i/a.jpg", "b": "http://i/b.jpg"}, {"a": (200.0, 100.0), "b": (50.0, 50.0)}
    missed = missed_sign_inputs(["b", "a"], urls, sizes, boxes)
    assert missed[0] == {"image": "http://i/b.jpg", "shown": [], "image_id": "b"}  # only scores >= 0.5 are shown
    assert missed[1]["shown"] == [{"shape": "rectangle", "left": 0.1, "top": 0.1, "width": 0.2, "height": 0.3,
                                   "label": "stop"}]
    checks = check_inputs(boxes.iloc[[0]], urls, sizes, {"stop": "Stop"})
    assert checks == [{"image": "http://i/a.jpg", "box": missed[1]["shown"], "box_id": boxes["box_id"][0],
                       "image_id": "a", "label_text": "Stop"}]
    tasks = [types.SimpleNamespace(input_values=checks[0]), types.SimpleNamespace(input_values={"image": "x"})]
    back = task_boxes(tasks, sizes)
    assert back[["image_id", "box_id", "label"]].values.tolist() == [["a", boxes["box_id"][0], "stop"]]
    assert back[["x", "y", "w", "h"]].values.tolist() == [pytest.approx([20, 10, 40, 30])]


class FakeTasksApi:
    """create_tasks recording every request; items get ids t1, t2, ..."""

    def __init__(self):
        self.requests = []
        self.opened = 0

    def get_pool(self, pool_id):
        return types.SimpleNamespace(is_open=lambda: self.opened > 0)

    def open_pool(self, pool_id):
        self.opened += 1

    def create_tasks(self, tasks, **params):
        self.requests.append((len(tasks), params))
        start = sum(n for n, _ in self.requests[:-1])
        return types.SimpleNamespace(items={str(i): types.SimpleNamespace(id=f"t{start + i + 1}")
                                            for i in range(len(tasks))}, validation_errors={})


def test_create_tasks_asks_the_budget_before_every_batch_and_cuts_the_last_one():
    api = FakeTasksApi()
    asked = []

    def fits(n):
        asked.append(n)
        return n <= 5

    done = create_tasks(api, "p", [{"image_id": str(i)} for i in range(9)], overlap=2, fits=fits, batch=3)
    assert done.created == 5 and done.refused == 4
    assert [n for n, _ in api.requests] == [3, 2]
    # closed while the batches arrive, opened once after the last (a partial suite per batch would break the cap)
    assert all(params == {"allow_defaults": False, "open_pool": False, "skip_invalid_items": True}
               for _, params in api.requests)
    assert api.opened == 1
    assert asked == [3, 6, 5]  # before each batch (and while cutting one); nothing after the cap was reached


# ------------------------------------------------------------------ collected rows

IMAGES = pd.DataFrame({"image_id": ["a", "b"], "url": ["http://i/a.jpg", "http://i/b.jpg"], "width": [200, 100],
                       "height": [100, 100]})


def record(number, worker, task_id, output, status="ACCEPTED"):
    return {"id": f"as{number}", "pool_id": "p9", "user_id": worker, "status": status, "reward": 0.02,
            "submitted": f"2026-11-26T10:00:{number:02d}.000000Z", "tasks": [{"id": task_id, "image": None}],
            "outputs": [output]}


def test_missed_sign_rows_drop_the_additions_of_a_drawer_of_the_image():
    tasks = round_tasks_frame([types.SimpleNamespace(id="ta", input_values={"image": "http://i/a.jpg",
                                                                            "image_id": "a"}),
                               types.SimpleNamespace(id="tb", input_values={"image": "http://i/b.jpg",
                                                                            "image_id": "b"})], "p9")
    new_box = {"shape": "rectangle", "left": 0.5, "top": 0.5, "width": 0.1, "height": 0.2, "label": "stop"}
    records = [record(1, "w1", "ta", {"result": [new_box, new_box]}),   # w1 drew "a": both dropped
               record(2, "w9", "tb", {"result": [new_box]}),
               record(3, "w8", "tb", {"result": []})]                   # nothing missing: one empty row
    rows = missed_sign_rows(records, tasks, IMAGES, {"a": {"w1", "w2"}, "b": {"w1"}})
    assert rows.dropped_drawer_rows == 2 and rows.problems == []
    frame = rows.frame
    assert frame["round"].tolist() == ["missed_signs", "missed_signs"]
    assert frame[["image_id", "worker_id", "label", "x", "y", "w", "h"]].values.tolist()[0] == \
        ["b", "w9", "stop", 50.0, 50.0, 10.0, 20.0]
    assert frame["label"].isna().tolist() == [False, True]
    assert with_round(pd.DataFrame({"x": [1]}))["round"].tolist() == ["drawing"]


def test_check_rows_skip_and_count_an_unknown_box_and_an_unreadable_verdict():
    known = with_box_ids(boxes_frame([("a", "stop", 20, 10, 40, 30, 0.5)]))
    box_id = known["box_id"][0]
    inputs = {"t1": {"box_id": box_id}, "t2": {"box_id": "0123456789abcdef"}, "t3": {"box_id": box_id},
              "t4": {"box_id": box_id}, "t5": {"box_id": "moved"}}
    records = [record(1, "c1", "t1", {"verdict": "wrong_class", "right_label": "yield"}),
               record(2, "c2", "t2", {"verdict": "yes"}),          # a box nobody output: skipped
               record(3, "c3", "t3", {"verdict": "maybe"}),        # not an allowed verdict: skipped
               record(4, "c4", "t4", {"verdict": "loose", "right_label": "yield"}),
               record(5, "c5", "t5", {"verdict": "no_sign"}),      # an alias of the known box
               record(6, "c6", "t-none", {"verdict": "yes"})]      # a task without inputs: unknown too
    rows = check_rows(records, inputs, known, labels=["stop", "yield"], aliases={"moved": box_id})
    assert rows.unknown_box == 2 and rows.bad_verdict == 1 and len(rows.problems) == 3
    frame = rows.frame
    assert list(frame.columns) == list(CHECKS.columns)
    assert frame[["worker_id", "box_id", "verdict", "right_label"]].values.tolist() == [
        ["c1", box_id, "wrong_class", "yield"], ["c4", box_id, "loose", ""], ["c5", box_id, "no_sign", ""]]
    assert frame[["image_id", "label", "x", "y", "w", "h"]].values.tolist()[0] == ["a", "stop", 20, 10, 40, 30]
    bad_class = check_rows([record(7, "c7", "t1", {"verdict": "wrong_class", "right_label": "tree"})], inputs,
                           known, labels=["stop", "yield"])
    assert bad_class.bad_verdict == 1 and bad_class.frame.empty


# ------------------------------------------------------------------ settings and pool.csv rows

@pytest.mark.parametrize("settings, message", [
    (RoundSettings(missed_threshold=-1), "--missed_threshold -1"),
    (RoundSettings(check_low=0.6, check_high=0.4), "need 0 <= check_low <= check_high <= 1"),
    (RoundSettings(check_high=1.5), "need 0 <= check_low"),
    (RoundSettings(checkers=0), "--checkers 0: must be at least 1"),
])
def test_impossible_round_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(CrowdboxesError) as err:
        settings.check()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_round_pools_reads_the_round_rows_and_refuses_two_of_a_role_or_a_round_without_a_budget():
    pools = pd.DataFrame({"pool_id": ["1", "2", "3"], "role": ["detection", "missed_signs", "box_check"],
                          "reward_per_assignment": [0.02, 0.03, 0.01], "estimated_cost": [1.0, 0.5, 0.25]})
    got = round_pools(pools)
    assert got["missed_signs"].pool_id == "2" and got["missed_signs"].budget == 0.5
    assert got["box_check"].budget == 0.25 and got["box_check"].reward == 0.01
    with pytest.raises(CrowdboxesError, match="2 rows with role 'box_check'"):
        round_pools(pd.concat([pools, pools.iloc[[2]]]))
    # a round is capped by its budget: a row without one would spend without a cap
    with pytest.raises(CrowdboxesError, match="role 'box_check': estimated_cost .* is not a budget") as err:
        round_pools(pools.assign(estimated_cost=[1.0, 0.5, float("nan")]))
    assert "\n" not in str(err.value)
