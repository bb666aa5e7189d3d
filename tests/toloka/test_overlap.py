"""Adaptive overlap: LeanEM's per-image risk, the raise rule, and :class:`AdaptiveOverlap` on a (fake) pool."""

from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest

from crowdboxes.toloka.overlap import AdaptiveOverlap, next_targets
from crowdboxes.aggregation import LeanEM
from crowdboxes.artifacts import OVERLAP_STATE
from helpers_aggregation import answers, images



def agreeing_and_disputed():
    """Image "calm": three workers draw the same sign. Image "torn": two workers outline one sign with
    different classes, and one of them a second box the other did not draw. Image "quiet": nobody drew."""
    rows = [("calm", w, 10, 10, 20, 20, "stop") for w in ("w1", "w2", "w3")]
    rows += [("torn", "w1", 5, 5, 20, 20, "stop"), ("torn", "w2", 6, 5, 20, 20, "yield"),
             ("torn", "w2", 60, 60, 20, 20, "stop")]
    rows += [("quiet", w, None, None, None, None, None) for w in ("w1", "w2", "w3")]
    return answers(rows)


def test_risk_is_the_documented_sum_of_expected_errors():
    # one size group: h = 1, so M_t is the product of the workers' miss rates (docstring, *Risk*)
    model = LeanEM(min_score=0.0, label_alternatives=False, size_groups=1).fit(agreeing_and_disputed(),
                                                                               images("calm", "torn", "quiet"))
    risk = model.images_
    miss = model.workers_["miss_rate"]
    # sum of the existence posteriors p_c (a box's score is p_c times its class and localisation terms)
    found = risk["expected_objects"]
    typical = float(found.mean())
    for image, workers in (("calm", ["w1", "w2", "w3"]), ("torn", ["w1", "w2"]), ("quiet", ["w1", "w2", "w3"])):
        all_miss = float(np.prod(miss[workers]))
        expected_missed = max(found[image], typical) * all_miss / (1 - all_miss)
        assert risk.loc[image, "expected_missed"] == pytest.approx(expected_missed)
        assert 0 <= risk.loc[image, "existence_risk"] <= found[image] / 2 + 1e-9  # sum of min(p, 1 - p)
        assert risk.loc[image, "risk"] == pytest.approx(expected_missed + risk.loc[image, "existence_risk"]
                                                        + risk.loc[image, "class_risk"])
    assert risk.loc["calm", "class_risk"] < 0.01 < risk.loc["torn", "class_risk"]  # three labels agree / differ
    assert risk.loc["torn", "risk"] > 0.3 > 0.05 > risk.loc["calm", "risk"]  # one more drawer only where disputed
    assert risk["workers"].to_dict() == {"calm": 3, "quiet": 3, "torn": 2}


def test_nobody_drew_anything_gives_zero_risk_rows_for_every_image():
    data = answers([(t, w, None, None, None, None, None) for t in ("a", "b") for w in ("w1", "w2")])
    risk = LeanEM().fit(data).images_
    assert list(risk.index) == ["a", "b"] and (risk["risk"] == 0).all() and (risk["workers"] == 2).all()


def test_next_targets_raises_only_complete_risky_images_below_the_maximum():
    data = agreeing_and_disputed()
    targets = pd.Series({"calm": 3, "torn": 2, "quiet": 3, "unanswered": 3})
    raised, risk = next_targets(data, images("calm", "torn", "quiet", "unanswered"), targets, 5, 0.3)
    assert raised.to_dict() == {"torn": 3}
    assert risk["risk"].isna().tolist() == [False, False, False, True]
    # at the maximum: nothing; still waiting for a 3rd answer: nothing; threshold above the risk: nothing
    assert next_targets(data, None, targets, 2, 0.3)[0].empty
    assert next_targets(data, None, targets.replace(2, 3), 5, 0.3)[0].empty
    assert next_targets(data, None, targets, 5, risk.loc["torn", "risk"] + 1e-9)[0].empty


# ------------------------------------------------------------------------- AdaptiveOverlap on a pool

class FakePoolApi:
    """get_tasks / get_task / patch_task_overlap_or_min / get_pool / open_pool, recording every change."""

    def __init__(self, overlaps: dict, is_open=False, close_reason="COMPLETED"):
        self.overlap = dict(overlaps)
        self.patches, self.opened = [], 0
        self._open, self.close_reason = is_open, close_reason

    def get_tasks(self, pool_id, batch_size=None):
        return [types.SimpleNamespace(id=t, overlap=o, remaining_overlap=0) for t, o in self.overlap.items()]

    def get_task(self, task_id):
        return types.SimpleNamespace(id=task_id, overlap=self.overlap[task_id])

    def patch_task_overlap_or_min(self, task_id, overlap, infinite_overlap):
        self.patches.append((task_id, overlap))
        self.overlap[task_id] = overlap

    def get_pool(self, pool_id):
        return types.SimpleNamespace(is_open=lambda: self._open, last_close_reason=self.close_reason)

    def open_pool(self, pool_id):
        self.opened += 1
        self._open = True


TASKS = pd.DataFrame({"task_id": ["t-calm", "t-torn"], "pool_id": "p1", "image_id": ["calm", "torn"],
                      "url": ["http://img/calm.jpg", "http://img/torn.jpg"]})
IMAGES = pd.DataFrame({"image_id": ["calm", "torn"], "file_name": ["calm.jpg", "torn.jpg"],
                       "url": ["http://img/calm.jpg", "http://img/torn.jpg"], "width": [100, 100],
                       "height": [100, 100], "sha256": ["0" * 64] * 2})


def record(number, worker, image, shapes, status="ACCEPTED"):
    """A collector snapshot of a one-task assignment (normalised rectangles, as Toloka stores them)."""
    return {"id": f"a{number}", "pool_id": "p1", "user_id": worker, "status": status,
            "submitted": f"2026-11-23T09:00:{number:02d}", "reward": 0.02,
            "tasks": [{"id": f"t-{image}", "image": f"http://img/{image}.jpg"}],
            "outputs": [{"result": [{"shape": "rectangle", "left": x / 100, "top": y / 100, "width": w / 100,
                                     "height": h / 100, "label": lab} for x, y, w, h, lab in shapes]}]}


def answers_of_agreeing_and_disputed(start=0):
    recs = [record(start + i, w, "calm", [(10, 10, 20, 20, "stop")]) for i, w in enumerate(("w1", "w2", "w3"))]
    recs += [record(start + 3, "w1", "torn", [(5, 5, 20, 20, "stop")]),
             record(start + 4, "w2", "torn", [(6, 5, 20, 20, "yield"), (60, 60, 20, 20, "stop")])]
    return recs


def test_adaptive_overlap_raises_the_disputed_image_once_reopens_the_pool_and_resumes_from_its_state(tmp_path):
    api = FakePoolApi({"t-calm": 3, "t-torn": 2})
    ctl = AdaptiveOverlap(api, "p1", TASKS, IMAGES, tmp_path, max_overlap=4, risk_threshold=0.3)
    assert ctl.expected_answers == 5
    recs = answers_of_agreeing_and_disputed()
    assert ctl.update(recs[:4]) == 0  # "torn" has one answer of two: nothing to decide; "calm" is calm
    assert ctl.update(recs) == 1
    assert api.patches == [("t-torn", 3)] and api.opened == 1 and ctl.expected_answers == 6
    assert ctl.update(recs) == 0  # the same answers are not decided twice
    state = json.loads((OVERLAP_STATE.path(tmp_path)).read_text())
    assert state["targets"] == {"calm": 3, "torn": 3} and state["raises"] == 1

    # a restart reads its targets and re-applies the last raise (as if the crash came before Toloka heard of it)
    api.overlap["t-torn"] = 2
    again = AdaptiveOverlap(api, "p1", TASKS, IMAGES, tmp_path, max_overlap=4, risk_threshold=0.3)
    assert again.targets.to_dict() == {"calm": 3, "torn": 3} and api.overlap["t-torn"] == 3
    # a rejected 3rd answer does not complete the image; an accepted one that settles nothing raises it again,
    # up to the maximum and no further
    third = record(10, "w3", "torn", [(40, 70, 20, 20, "speed_limit")])
    assert again.update(recs + [dict(third, status="REJECTED")]) == 0
    assert again.update(recs + [third]) == 1 and api.overlap["t-torn"] == 4
    fourth = record(11, "w4", "torn", [(80, 10, 15, 15, "yield")])
    assert again.update(recs + [third, fourth]) == 0 and api.overlap["t-torn"] == 4


def test_adaptive_overlap_stops_raising_when_the_budget_has_no_room(tmp_path):
    from crowdboxes.toloka.spending import BudgetGuard

    api = FakePoolApi({"t-calm": 3, "t-torn": 2})
    guard = BudgetGuard(api, cap=0.134)
    guard.reserved_ = 5 * 0.026  # what the five launched slots reserved: $0.004 left
    ctl = AdaptiveOverlap(api, "p1", TASKS, IMAGES, tmp_path, max_overlap=5, risk_threshold=0.3, guard=guard,
                          unit_price=0.026)
    assert ctl.update(answers_of_agreeing_and_disputed()) == 0
    assert api.patches == [] and ctl.refused == {"torn"}
    assert json.loads((OVERLAP_STATE.path(tmp_path)).read_text())["refused_by_budget"] == ["torn"]


def test_a_pool_closed_by_hand_is_not_reopened_or_extended(tmp_path):
    api = FakePoolApi({"t-calm": 3, "t-torn": 2}, close_reason="MANUAL")
    ctl = AdaptiveOverlap(api, "p1", TASKS, IMAGES, tmp_path, max_overlap=4, risk_threshold=0.3)
    assert ctl.update(answers_of_agreeing_and_disputed()) == 0
    assert api.patches == [] and api.opened == 0 and ctl.expected_answers == 5
