"""Quality control without a server: settings, verdict tie rules, budget math, control scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdboxes.toloka import pricing
from crowdboxes.toloka import quality as qs
from crowdboxes.toloka.spending import BudgetGuard, estimate_cost, money_spent, recorded_cost
from crowdboxes.geometry import match_boxes
from crowdboxes.toloka.known_boxes import ControlScorer, load_control_csv, score_drawing
from crowdboxes.cnvrg.stepkit import StepError
from crowdboxes.files import read_json_object
from crowdboxes.artifacts import VERIFICATION_POOL_CONFIG, VERIFICATION_PROJECT_CONFIG
from crowdboxes.toloka.verification import aggregate_verdicts

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


# ------------------------------------------------------------------------------------ settings

def test_shipped_verification_pool_excludes_drawers():
    config = read_json_object(CONFIGS / VERIFICATION_POOL_CONFIG.file_name)
    assert qs.check_verification_pool_config(config, "x") is config


def test_shipped_verification_project_has_the_contract_fields():
    project = json.loads((CONFIGS / VERIFICATION_PROJECT_CONFIG.file_name).read_text())
    spec = project["task_spec"]
    assert set(spec["input_spec"]) == {"image", "outlines", "assignment_id"}
    assert spec["input_spec"]["outlines"]["type"] == "json"
    assert spec["output_spec"]["verdict"]["allowed_values"] == ["OK", "BAD"]
    assert spec["output_spec"]["verdict"]["required"] is True
    assert spec["output_spec"]["reason"]["required"] is False
    view = spec["view_spec"]["config"]
    assert "Are all road signs outlined correctly and completely?" in view
    assert '"disabled": true' in view


def test_unknown_mode_lists_modes():
    with pytest.raises(StepError) as err:
        qs.parse_settings("review", config_dir=CONFIGS)
    assert "overlap, verify, overlap+verify" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("filter_json, ok", [
    ({"category": "skill", "key": "$drawer_skill", "operator": "EQ", "value": None}, True),
    ({"and": [{"category": "profile", "key": "languages", "operator": "IN", "value": "EN"},
              {"or": [{"category": "skill", "key": "$drawer_skill", "operator": "EQ", "value": None}]}]}, True),
    ({"category": "skill", "key": "17", "operator": "EQ", "value": None}, True),  # the resolved id
    # an OR with another branch lets drawers in through that branch
    ({"or": [{"category": "skill", "key": "$drawer_skill", "operator": "EQ", "value": None},
             {"category": "profile", "key": "languages", "operator": "IN", "value": "EN"}]}, False),
    ({"category": "skill", "key": "$drawer_skill", "operator": "EQ", "value": 1}, False),
    ({"category": "skill", "key": "$verifier_skill", "operator": "EQ", "value": None}, False),
    (None, False),
])
def test_drawer_filter_detection(filter_json, ok):
    assert qs.filter_excludes_drawers(filter_json, {"$drawer_skill", "17"}) is ok


def test_verification_pool_without_drawer_filter_is_refused_naming_the_file(tmp_path):
    config = json.loads((CONFIGS / VERIFICATION_POOL_CONFIG.file_name).read_text())
    config.pop("filter")
    (tmp_path / VERIFICATION_POOL_CONFIG.file_name).write_text(json.dumps(config))
    with pytest.raises(StepError) as err:
        qs.parse_settings("verify", config_dir=tmp_path, reward="0.02")
    assert str(tmp_path / VERIFICATION_POOL_CONFIG.file_name) in str(err.value)
    assert "filter" in str(err.value)
    # overlap mode does not need the verification pool at all
    assert qs.parse_settings("overlap", config_dir=tmp_path, reward="0.02").verification_pool_config is None


def test_fee_and_budget_floor():
    assert pricing.toloka_fee(0.01) == pytest.approx(0.005)  # 30 % = 0.003 < minimum
    assert pricing.toloka_fee(0.10) == pytest.approx(0.03)
    assert pricing.assignment_price(0.02) == pytest.approx(0.026)
    with pytest.raises(StepError, match="below the price of one assignment"):
        qs.parse_settings("overlap", budget="0.025", reward="0.02")
    assert qs.parse_settings("overlap", budget="0.026", reward="0.02").budget == pytest.approx(0.026)
    # verify: one drawing (0.026) + one verification (0.005 + 0.005) = 0.036
    with pytest.raises(StepError, match="cannot pay for one drawing and its verification"):
        qs.parse_settings("verify", budget="0.03", reward="0.02", config_dir=CONFIGS)
    assert qs.parse_settings("verify", budget="none", reward="0.02", config_dir=CONFIGS).budget is None


@pytest.mark.parametrize("kwargs, message", [
    ({"verdict_method": "median"}, "majority, dawid_skene"),
    ({"verifiers": "0"}, "--verifiers '0' must be at least 1"),
    ({"verifiers": "2.5"}, "not a whole number"),
    ({"max_attempts": "0"}, "--max_attempts '0' must be at least 1"),
    ({"budget": "-1"}, "non-negative"),
    ({"budget": "lots"}, "not a USD amount"),
])
def test_bad_values_fail_in_one_line(kwargs, message):
    with pytest.raises(StepError) as err:
        qs.parse_settings("verify", config_dir=CONFIGS, reward="0.02", **kwargs)
    assert message in str(err.value)


def test_placeholders_resolved_or_refused():
    config = {"filter": {"category": "skill", "key": "$drawer_skill", "operator": "EQ", "value": None},
              "rules": [{"skill_id": "$verifier_skill"}]}
    resolved = qs.resolve_skill_placeholders(config, {"drawer_skill": "4", "verifier_skill": "5"})
    assert resolved["filter"]["key"] == "4" and resolved["rules"][0]["skill_id"] == "5"
    with pytest.raises(StepError, match="no role 'verifier_skill'"):
        qs.resolve_skill_placeholders(config, {"drawer_skill": "4"})


# ------------------------------------------------------------------------------------ verdicts

def _votes(rows):
    return pd.DataFrame(rows, columns=["task", "worker", "label", "reason"])


def test_majority_tie_is_bad_and_reason_is_the_most_named():
    votes = _votes([("t1", "a", "OK", ""), ("t1", "b", "BAD", "loose_box"),
                    ("t2", "a", "OK", ""), ("t2", "b", "OK", ""), ("t2", "c", "BAD", "missed_sign"),
                    ("t3", "a", "BAD", "missed_sign"), ("t3", "b", "BAD", "missed_sign"), ("t3", "c", "BAD", "wrong_class")])
    out = aggregate_verdicts(votes, "majority")
    assert out.loc["t1", "verdict"] == "BAD"  # 1:1 tie
    assert out.loc["t1", "reason"] == "loose_box"
    assert out.loc["t2", "verdict"] == "OK" and out.loc["t2", "reason"] == ""
    assert (out.loc["t2", "ok_votes"], out.loc["t2", "bad_votes"]) == (2, 1)
    assert out.loc["t3", "verdict"] == "BAD" and out.loc["t3", "reason"] == "missed_sign"


def test_skill_weighted_majority():
    votes = _votes([("t", "expert", "BAD", "missed_sign"), ("t", "n1", "OK", ""), ("t", "n2", "OK", "")])
    # unweighted: 2 OK vs 1 BAD
    assert aggregate_verdicts(votes, "majority").loc["t", "verdict"] == "OK"
    # weighted: 90 vs 30 + 30
    skills = pd.Series({"expert": 90.0, "n1": 30.0, "n2": 30.0})
    out = aggregate_verdicts(votes, "majority", skills)
    assert out.loc["t", "verdict"] == "BAD"
    assert out.loc["t", "p_ok"] == pytest.approx(60 / 150)
    # weighted tie: 60 vs 30 + 30 -> BAD by the tie rule
    tie = aggregate_verdicts(votes, "majority", pd.Series({"expert": 60.0, "n1": 30.0, "n2": 30.0}))
    assert tie.loc["t", "verdict"] == "BAD"
    # a worker without a skill gets the mean of the known ones: (90 + 30) / 2 = 60 -> 60 + 30 vs 90 -> tie -> BAD
    partial = aggregate_verdicts(votes, "majority", pd.Series({"expert": 90.0, "n1": 30.0}))
    assert partial.loc["t", "p_ok"] == pytest.approx(0.5)
    assert partial.loc["t", "verdict"] == "BAD"


def test_dawid_skene_learns_a_contrarian_and_ties_are_bad():
    # three verifiers right 80 % of the time and one who always answers the opposite: majority of
    # four often ties (-> BAD), Dawid-Skene learns the contrarian's confusion matrix and uses it
    rng = np.random.default_rng(0)
    rows, truth = [], {}
    for i in range(80):
        label = "OK" if rng.random() < 0.5 else "BAD"
        flip = "BAD" if label == "OK" else "OK"
        truth[f"t{i}"] = label
        for w in ("a", "b", "e"):
            rows.append((f"t{i}", w, label if rng.random() < 0.8 else flip, ""))
        rows.append((f"t{i}", "c", flip, ""))
    accuracy = {}
    for method in ("majority", "dawid_skene"):
        out = aggregate_verdicts(_votes(rows), method)
        accuracy[method] = np.mean([out.loc[t, "verdict"] == v for t, v in truth.items()])
    assert accuracy["dawid_skene"] >= 0.95
    assert accuracy["majority"] < 0.8
    # a lone task with one OK and one BAD from unknown workers: P = 0.5 -> BAD
    tie = aggregate_verdicts(_votes([("x", "p", "OK", ""), ("x", "q", "BAD", "")]), "dawid_skene")
    assert tie.loc["x", "verdict"] == "BAD"


def test_empty_votes():
    assert aggregate_verdicts(_votes([]), "majority").empty


# ------------------------------------------------------------------------------------ budget

def test_estimate_cost_by_hand():
    # 10 images, 1 per suite, overlap 1, reward 0.02 -> 10 x 0.026
    e = estimate_cost(10, 1, 0.02)
    assert e.total == pytest.approx(0.26)
    # verify: reject rate 0.5, 3 attempts -> extra drawings per image 0.5 + 0.25 = 0.75
    e = estimate_cost(10, 1, 0.02, mode="verify", verifiers=3, verification_reward=0.005, reject_rate=0.5,
                      max_attempts=3)
    assert e.redraw_assignments == pytest.approx(7.5)
    assert e.redraw_cost == pytest.approx(7.5 * 0.026)
    assert e.verification_assignments == pytest.approx((10 + 7.5) * 3)
    assert e.verification_cost == pytest.approx(52.5 * 0.01)
    assert e.total == pytest.approx(0.26 + 0.195 + 0.525)
    # suites: 25 tasks, 10 per suite -> 3 suites x overlap 3
    assert estimate_cost(25, 3, 0.05, tasks_per_suite=10).detection_assignments == 9


class _FakeAssignments:
    """A stand-in for TolokaClient with counts per (pool, status) and pool open/close."""

    def __init__(self, counts):
        self.counts, self.closed = counts, []

    def get_assignments(self, pool_id, status, batch_size=None):
        return iter([object()] * sum(self.counts.get((pool_id, s), 0) for s in status))

    def get_pool(self, pool_id):
        closed = pool_id in self.closed

        class P:
            def is_open(self):
                return not closed
        return P()

    def close_pool(self, pool_id):
        self.closed.append(pool_id)


def test_budget_guard_stops_before_the_next_suite_would_cross_the_cap():
    fake = _FakeAssignments({("1", "ACCEPTED"): 10, ("1", "SUBMITTED"): 2, ("1", "ACTIVE"): 1,
                             ("2", "ACCEPTED"): 20})
    guard = BudgetGuard(fake, cap=0.60)
    guard.add_pool("1", 0.02)  # 0.026 each
    guard.add_pool("2", 0.005)  # 0.010 each
    # spent = 12 x 0.026 + 20 x 0.01 = 0.512; committed 0.026; + next suite 0.026 = 0.564 <= 0.6
    assert guard.check() is False
    assert guard.spent_ == pytest.approx(0.512)
    fake.counts[("1", "ACTIVE")] = 3  # 0.512 + 0.078 + 0.026 = 0.616 > 0.6
    assert guard.check() is True
    assert sorted(fake.closed) == ["1", "2"]
    assert not guard.may_spend()
    assert BudgetGuard(fake, cap=None).check() is False


def test_money_spent_is_reward_plus_fee_of_paid_or_payable_assignments():
    from types import SimpleNamespace

    fake = _FakeAssignments({("1", "ACCEPTED"): 10, ("1", "SUBMITTED"): 2, ("1", "REJECTED"): 4,
                             ("1", "ACTIVE"): 1, ("2", "ACCEPTED"): 20})
    fake.get_pool = lambda pool_id: SimpleNamespace(reward_per_assignment={"1": 0.02, "2": 0.005}[pool_id])
    assert money_spent(fake, ["1", "2", "1"]) == pytest.approx(12 * 0.026 + 20 * 0.01)  # each pool once
    assert money_spent(fake, ["1"], {"1": 0.1}) == pytest.approx(12 * 0.13)  # known rewards: no pool read
    records = [{"status": "ACCEPTED", "reward": 0.02}, {"status": "SUBMITTED", "reward": 0.02},
               {"status": "REJECTED", "reward": 0.02}, {"status": "ACCEPTED", "reward": 0.0}]
    assert recorded_cost(records) == pytest.approx((0.04, 0.012))


# ------------------------------------------------------------------------------------ control scoring

def test_hungarian_matching_prefers_the_global_optimum():
    truth = [[0, 0, 10, 10], [8, 0, 10, 10]]
    drawn = [[5, 0, 10, 10]]  # overlaps both; IoU with #0 is 50/150, with #1 70/130
    found = match_boxes(drawn, truth, iou_threshold=0.0)
    assert (found.pred.tolist(), found.true.tolist()) == ([0], [1])
    drawn = [[1, 0, 10, 10], [7, 0, 10, 10]]
    found = match_boxes(drawn, truth)
    assert sorted(zip(found.pred.tolist(), found.true.tolist())) == [(0, 0), (1, 1)]


def test_f1_by_hand():
    truth = [[0, 0, 10, 10], [50, 50, 10, 10], [100, 100, 20, 20]]
    drawn = [[1, 1, 10, 10], [50, 50, 10, 10], [300, 300, 5, 5]]
    s = score_drawing(drawn, truth)
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert s.f1 == pytest.approx(4 / 6)
    assert score_drawing([], []).f1 == 1.0
    assert score_drawing([], truth).f1 == 0.0
    # IoU of [0,0,10,10] vs [5,0,10,10] is 1/3 < 0.5: no match
    assert score_drawing([[5, 0, 10, 10]], [[0, 0, 10, 10]]).tp == 0


def test_control_scorer_bans_spammers_and_careless_but_not_one_slip():
    rows = [("spam_empty", 0.0, 0, 0, 3), ("spam_empty", 0.0, 0, 0, 2),
            ("spam_random", 0.0, 0, 2, 1), ("spam_random", 0.0, 0, 4, 2),
            ("slipped", 0.0, 0, 2, 2), ("slipped", 1.0, 2, 0, 0),  # one hopeless drawing, then perfect
            ("careless", 0.4, 1, 1, 2), ("careless", 0.2, 1, 2, 5),
            ("good", 1.0, 2, 0, 0), ("good", 0.9, 2, 1, 0),
            ("newcomer", 0.0, 0, 3, 2)]  # one control so far: hopeless once is not enough
    frame = pd.DataFrame(rows, columns=["worker", "f1", "tp", "fp", "fn"])
    scorer = ControlScorer(threshold=0.4, min_tasks=2).fit(frame)
    assert scorer.banned() == ["careless", "spam_empty", "spam_random"]
    assert scorer.scores_.loc["slipped", "f1"] == pytest.approx(0.5)
    assert scorer.scores_.loc["careless", "f1"] == pytest.approx(0.3)
    # a stricter threshold also catches the worker with one slip
    assert "slipped" in ControlScorer(threshold=0.6).fit(frame).banned()
    # newcomer's second hopeless drawing bans at once
    more = pd.concat([frame, pd.DataFrame([("newcomer", 0.0, 0, 0, 2)], columns=frame.columns)])
    assert "newcomer" in ControlScorer().fit(more).banned()


def test_control_csv_roundtrip_and_errors(tmp_path):
    path = tmp_path / "control.csv"
    path.write_text("url,width,height,label,x,y,w,h\n"
                    "http://h/a.jpg,100,80,stop,10,10,20,20\n"
                    "http://h/a.jpg,100,80,yield,50,10,20,20\n"
                    "http://h/b.jpg,100,80,,,,,\n")
    control = load_control_csv(path)
    assert len(control) == 2 and "http://h/a.jpg" in control
    outlines = [{"shape": "rectangle", "left": 0.1, "top": 0.125, "width": 0.2, "height": 0.25, "label": "stop"}]
    s = control.score("http://h/a.jpg", outlines)
    assert (s.tp, s.fp, s.fn) == (1, 0, 1)
    assert control.score("http://h/b.jpg", []).f1 == 1.0
    path.write_text("url,width,height,label,x,y,w,h\nhttp://h/a.jpg,100,80,stop,10,10,-2,20\n")
    with pytest.raises(StepError, match="row 2"):
        load_control_csv(path)
    path.write_text("url,width,label,x,y,w,h\n")
    with pytest.raises(StepError, match="missing column"):
        load_control_csv(path)


class _FakeFind:
    """find_assignments of a pool: the newest assignment and whether any is ACTIVE."""

    def __init__(self):
        self.newest = {}  # pool -> assignment id
        self.active = set()

    def find_assignments(self, pool_id, status=None, sort=None, limit=None):
        from types import SimpleNamespace

        if status is not None:
            items = [SimpleNamespace(id="busy")] if pool_id in self.active else []
        else:
            items = [SimpleNamespace(id=self.newest[pool_id])] if pool_id in self.newest else []
        return SimpleNamespace(items=items)


def test_stall_watch_warns_once_per_stall_in_each_pool():
    from types import SimpleNamespace

    from crowdboxes.toloka.verification import StallWatch

    client = _FakeFind()
    ledger = SimpleNamespace(votes={}, drawers=["w1", "w2"], banned={"w3": "spam"},
                             assignments={"a1": {"outcome": None}, "a2": {"outcome": "rejected"}},
                             items={"a1|t1": {"kind": "verify", "vtask_id": "v1", "assignment_id": "a1",
                                              "task_id": "t1"},
                                    "a2|t2": {"kind": "verify", "vtask_id": "v2", "assignment_id": "a2",
                                              "task_id": "t2", "decided": True}})
    status = {"t1": "pending", "t2": "pending", "t3": "accepted"}
    loop = SimpleNamespace(client=client, ledger=ledger, verification_pool_id="V", detection_pool_id="D",
                           image_status=lambda: status)
    now = [0.0]
    lines = []
    stream = SimpleNamespace(write=lines.append, flush=lambda: None)
    ver = StallWatch(loop, "verification", 60, stream=stream, clock=lambda: now[0])
    det = StallWatch(loop, "detection", 60, stream=stream, clock=lambda: now[0])
    # one drawing (a1) waits for verdicts; one image (t2: rejected, nothing under review) waits for a drawing
    assert ver.waiting() == 1 and det.waiting() == 1
    for t in (0, 30, 59):
        now[0] = t
        assert ver.check() is None and det.check() is None
    now[0] = 61
    line = ver.check()
    assert line.startswith("warning: verification pool V: 1 drawings wait for verdicts but no verifier has taken a "
                           "task for 61 s; its filter excludes the 2 workers who drew")
    assert det.check().startswith("warning: detection pool D: 1 images wait for another drawing but no drawer has "
                                  "taken a task for 61 s; a worker draws an image only once and 1 workers are banned")
    now[0] = 500
    assert ver.check() is None and det.check() is None  # once per stall
    assert [x for x in lines if x.strip()] == [line, lines[2]] and ver.warnings == det.warnings == 1
    # a verifier at work ends the stall; a new one warns again, in minutes
    client.active.add("V")
    now[0] = 501
    assert ver.check() is None and not ver.warned
    client.active.clear()
    now[0] = 501 + 180
    assert "for 3 min;" in ver.check() and ver.warnings == 2
    # a new verdict in the ledger is activity too
    ledger.votes["va"] = [["a1|t1", "v9", "OK", ""]]
    now[0] = 2000
    assert ver.check() is None and not ver.warned
    # nothing waiting is no stall, however long
    ledger.items["a1|t1"]["decided"] = True
    now[0] = 10_000
    assert ver.check() is None and ver.warnings == 2


@pytest.mark.parametrize("mode", ["overlap", "verify", "overlap+verify"])
def test_verify_modes_leave_overlap_and_rejection_rate_bans_to_the_loop(mode, capsys):
    """A CHANGE_OVERLAP-on-reject rule opens a redraw slot at the moment of the rejection, before the loop
    can cap the attempts, and an "over 35 % rejected" restriction bans careful drawers whose busy photos
    the verifiers often find incomplete: in the verify modes the detection pool is built without both,
    every other rule kept as configured."""
    from datetime import datetime, timedelta, timezone
    from pathlib import Path

    from crowdboxes.toloka import pools

    config = json.loads((Path(__file__).resolve().parents[2] / "configs" / "detection_pool.json").read_text())
    settings = pools.parse_pool_settings(mode=mode, reward="0.02", overlap="3", tasks_per_suite="1",
                                         time_per_suite="600", auto_accept="true", review_days="7", languages="EN",
                                         expiry_days="1", adult_content="false")
    pool = pools.build_detection_pool(config, settings, project_id="1", skill_ids={"drawer_skill": "11"}, key="k",
                                      will_expire=datetime.now(timezone.utc) + timedelta(days=1))

    def rules(data):
        return [(c["collector_config"]["type"], r["action"]["type"])
                for c in data["quality_control"]["configs"] for r in c["rules"]]

    shipped = rules(config)
    assert ("ASSIGNMENTS_ASSESSMENT", "CHANGE_OVERLAP") in shipped and ("ACCEPTANCE_RATE", "RESTRICTION_V2") in shipped
    expected = [r for r in shipped if r not in {("ASSIGNMENTS_ASSESSMENT", "CHANGE_OVERLAP"),
                                                ("ACCEPTANCE_RATE", "RESTRICTION_V2")}] if "verify" in mode else shipped
    assert rules(pool.unstructure()) == expected
    assert ("ASSIGNMENT_SUBMIT_TIME", "RESTRICTION_V2") in expected  # fast-response bans stay
    assert rules(config) == shipped  # the loaded config is not modified
    note = capsys.readouterr().err
    assert (note.strip() == f"note: detection_pool.json: mode {mode} leaves out 2 quality-control rule(s) the "
            "verification loop replaces (CHANGE_OVERLAP, rejected/accepted-share restrictions)"
            if "verify" in mode else note == "")


def test_verification_run_has_one_way_to_each_setting(tmp_path):
    from datetime import timedelta

    from crowdboxes.toloka.verification import VerificationRun

    quality = qs.loop_settings(verifiers=3)
    images = pd.DataFrame({"image_id": ["a"], "url": ["http://h/a.png"]})
    run = VerificationRun(detection_pool_id=1, verification_pool_id=2, images=images, quality=quality,
                          output_dir=tmp_path, period=0.5, cursor_lag=0)
    assert (run.detection_pool_id, run.verification_pool_id) == ("1", "2")
    assert run.period == timedelta(seconds=0.5) and run.cursor_lag == timedelta(0)
    assert run.state_folder == tmp_path / "verification_state"
    assert run.stall_after == 60.0  # 15 periods, at least a minute
    with pytest.raises(StepError, match="state_dir or an output_dir"):
        VerificationRun(detection_pool_id="1", verification_pool_id="2", images=images, quality=quality)
    with pytest.raises(TypeError):
        VerificationRun(detection_pool_id="1", verification_pool_id="2", images=images, quality=quality,
                        output_dir=tmp_path, poll_seconds=1)  # the period is ``period`` only
