"""Control (golden) tasks in the local Toloka: smart mixing into suites and the GOLDEN_SET collector.

The backend rules are checked without HTTP (``Backend.suite_tasks``, the scheduler in-process), then
once through toloka-kit against a server subprocess. The crowd is the deterministic fake of
``helpers_local_toloka``: a "good" worker answers ``{"result": [GOOD_BOX]}``, a "bad" one
``{"result": []}`` (seed 1: every 4th worker is bad), so every expected number is hand-computable.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time

import pytest

import helpers_local_toloka as fake
from crowdboxes.local_toloka.db import fmt_ts, utcnow
from helpers_local_toloka import start_local_toloka
from test_local_toloka_models import PROJECT, assignments, pool_spec, run_crowd

GOOD = {"result": [dict(fake.GOOD_BOX)]}


def mixer(real, golden, **extra):
    return {"real_tasks_count": real, "golden_tasks_count": golden, "training_tasks_count": 0, **extra}


def golden_pool(backend, n_real, n_golden, *, overlap=1, golden_overlap=None, **extra):
    """A pool with ``n_real`` general tasks (``g``-less URLs) and ``n_golden`` control tasks whose known
    solution is the good worker's answer; control tasks have infinite overlap unless ``golden_overlap``."""
    project = backend.create_project(PROJECT)
    pool = backend.create_pool(pool_spec(project["id"], defaults={"default_overlap_for_new_task_suites": overlap},
                                         **extra))
    tasks = [{"pool_id": pool["id"], "input_values": {"image": f"https://i/real{i}.png"}, "overlap": overlap}
             for i in range(n_real)]
    for i in range(n_golden):
        task = {"pool_id": pool["id"], "input_values": {"image": f"https://i/gold{i}.png"},
                "known_solutions": [{"output_values": GOOD, "correctness_weight": 1}]}
        task.update({"overlap": golden_overlap} if golden_overlap else {"infinite_overlap": True})
        tasks.append(task)
    status, body = backend.create_tasks(tasks, {})
    assert status == 201 and not body["validation_errors"]
    return pool


def kinds(suite) -> str:
    """A suite as a string of R (general) and G (control) in suite order."""
    return "".join("G" if doc.get("known_solutions") else "R" for _, doc in suite)


def issue(backend, pool_id, user):
    with backend.transaction():
        row = backend._pool_row(pool_id)
        doc = backend._pool_doc(row)
        suite = backend.suite_tasks(row, doc, user)
        if suite:
            backend.issue_suite(row, doc, user, suite)
        return suite


# --- mixing rules, no HTTP -----------------------------------------------------------------------

def test_suite_mixes_control_tasks_each_shown_once_per_worker(backend):
    pool = golden_pool(backend, n_real=6, n_golden=2, mixer_config=mixer(2, 1))
    a1, a2 = issue(backend, pool["id"], "w1"), issue(backend, pool["id"], "w1")
    assert sorted(kinds(a1)) == sorted(kinds(a2)) == ["G", "R", "R"]
    golden_w1 = {seq for seq, doc in a1 + a2 if doc.get("known_solutions")}
    assert len(golden_w1) == 2  # both control tasks, once each
    # w1 has seen every control task: no more suites for w1 although 2 general tasks are left
    assert issue(backend, pool["id"], "w1") == []
    # control tasks have infinite overlap: w2 gets one too, with the 2 general tasks left
    b1 = issue(backend, pool["id"], "w2")
    assert sorted(kinds(b1)) == ["G", "R", "R"]
    assert {seq for seq, doc in b1 if doc.get("known_solutions")} <= golden_w1
    real = {seq for seq, doc in a1 + a2 + b1 if not doc.get("known_solutions")}
    assert len(real) == 6  # every general task once (overlap 1), none twice
    assert issue(backend, pool["id"], "w3") == []  # general work is done; control tasks alone make no suite
    tasks = backend.find_tasks({"pool_id": pool["id"], "limit": "100"})["items"]
    assert all(t["infinite_overlap"] and t["overlap"] is None for t in tasks if t.get("known_solutions"))


def test_no_control_tasks_means_no_suites_and_min_golden_relaxes_it(backend):
    pool = golden_pool(backend, n_real=3, n_golden=0, mixer_config=mixer(1, 1))
    assert backend.open_pool(pool["id"])["type"] == "POOL.OPEN"  # it opens (it has tasks) ...
    assert issue(backend, pool["id"], "w1") == []  # ... but no suite can be made without control tasks
    assert backend._pool_metric(backend._pool_row(pool["id"]), "real_tasks_count", 0, {}) == 3

    # min_golden_tasks_count 0: once the control tasks run out, suites carry general tasks only
    relaxed = golden_pool(backend, n_real=3, n_golden=1, mixer_config=mixer(1, 1, min_golden_tasks_count=0))
    assert [kinds(issue(backend, relaxed["id"], "w1")) for _ in range(4)] in (["RG", "R", "R", ""],
                                                                              ["GR", "R", "R", ""])
    with pytest.raises(Exception) as err:  # min above the count is refused like Toloka's range check
        backend.create_pool(pool_spec(pool["project_id"], mixer_config=mixer(1, 1, min_golden_tasks_count=2)))
    assert "min_golden_tasks_count" in json.dumps(err.value.body())


def test_finite_overlap_control_tasks_are_used_up_and_never_hold_the_pool_open(backend):
    pool = golden_pool(backend, n_real=4, n_golden=1, golden_overlap=2, mixer_config=mixer(1, 1))
    backend.open_pool(pool["id"])
    assert kinds(issue(backend, pool["id"], "w1")) in ("RG", "GR")
    assert kinds(issue(backend, pool["id"], "w2")) in ("RG", "GR")
    assert issue(backend, pool["id"], "w3") == []  # the control task's overlap of 2 is used up
    # the pool's work (analytics) counts general tasks only
    row = backend._pool_row(pool["id"])
    assert backend._pool_metric(row, "estimated_assignments_count", 0, {})["value"] == 2
    assert backend._pool_metric(row, "real_tasks_count", 0, {}) == 4


def test_crowd_completes_pool_with_infinite_control_tasks_and_golden_set_rules(backend):
    """Seed 1: f04 is bad. 8 general tasks, overlap 1, suites of 1 general + 1 control task; 3 control
    tasks, so each worker does at most 3 suites. GOLDEN_SET: the skill gets the correct rate; a worker
    under 50 % after 1+ control answers is banned from the pool."""
    skill = backend.create_skill({"name": "control accuracy"})
    qc = {"configs": [{"collector_config": {"type": "GOLDEN_SET", "parameters": {"history_size": 10}},
                       "rules": [{"conditions": [{"key": "golden_set_answers_count", "operator": "GTE", "value": 1}],
                                  "action": {"type": "SET_SKILL_FROM_OUTPUT_FIELD",
                                             "parameters": {"skill_id": skill["id"],
                                                            "from_field": "golden_set_correct_answers_rate"}}},
                                 {"conditions": [{"key": "golden_set_answers_count", "operator": "GTE", "value": 1},
                                                 {"key": "golden_set_correct_answers_rate", "operator": "LT",
                                                  "value": 50}],
                                  "action": {"type": "RESTRICTION_V2",
                                             "parameters": {"scope": "POOL", "duration": 1, "duration_unit": "DAYS"}}}]}]}
    pool = golden_pool(backend, n_real=8, n_golden=3, mixer_config=mixer(1, 1), quality_control=qc)
    backend.open_pool(pool["id"])
    run_crowd(backend, workers=4, seed=1, steps=200, until=lambda: backend.get_pool(pool["id"])["status"] == "CLOSED")
    final = backend.get_pool(pool["id"])
    assert final["status"] == "CLOSED" and final["last_close_reason"] == "COMPLETED"  # infinite control tasks
    done = assignments(backend, pool["id"])
    per_worker = {}
    for a in done:
        assert len(a["tasks"]) == 2 and sum(bool(t.get("known_solutions")) for t in a["tasks"]) == 1
        per_worker.setdefault(a["user_id"], []).append(a)
    assert sum(len(v) for v in per_worker.values()) == 8  # one suite per general task
    assert len(per_worker["f04"]) == 1  # the bad worker fails its first control task and is banned
    assert max(len(v) for v in per_worker.values()) <= 3  # never more suites than control tasks
    skills = {s["user_id"]: s["exact_value"] for s in backend.find_user_skills({"skill_id": skill["id"]})["items"]}
    assert skills == {**{w: 100 for w in per_worker if w != "f04"}, "f04": 0}
    bans = backend.find_user_restrictions({"pool_id": pool["id"]})["items"]
    assert [b["user_id"] for b in bans] == ["f04"]
    # control tasks show who answered them, and the results file carries their known answers
    rows = list(csv.reader(io.StringIO(backend.assignments_tsv(pool["id"], {})), delimiter="\t"))
    assert rows[0][:4] == ["INPUT:image", "INPUT:note", "OUTPUT:result", "GOLDEN:result"]
    assert len(rows) == 1 + 2 * 8  # one row per task of the 8 accepted suites
    assert all((json.loads(r[3]) == GOOD["result"]) == ("gold" in r[0]) for r in rows[1:] if r[3])
    assert sum(bool(r[3]) for r in rows[1:]) == 8


def test_golden_set_stats_exact_match_weights_and_history(backend):
    """Hand-computed: solutions ``GOOD`` (weight 1) and ``{"result": []}`` (weight 0.5)."""
    project = backend.create_project(PROJECT)
    pool = backend.create_pool(pool_spec(project["id"], mixer_config=mixer(0, 1)))
    known = [{"output_values": GOOD}, {"output_values": {"result": []}, "correctness_weight": 0.5}]
    backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": f"https://i/g{i}.png"},
                           "known_solutions": known, "infinite_overlap": True} for i in range(4)], {})
    answers = [GOOD, {"result": []}, {"result": [{**fake.GOOD_BOX, "left": 0.11}]}, GOOD]  # 1, 0.5, 0, 1
    for answer in answers:
        suite = issue(backend, pool["id"], "w1")
        assert kinds(suite) == "G"
        asg = assignments(backend, pool["id"], status="ACTIVE")[0]
        backend.set_plan(asg["id"], "SUBMIT", [answer], 30, utcnow())
        with backend.transaction():
            backend.finish_due(utcnow() + dt.timedelta(seconds=1))
    assert issue(backend, pool["id"], "w1") == []  # all 4 control tasks seen
    row = backend._pool_row(pool["id"])
    with backend.transaction():
        stats = dict(backend._golden_stats(row["id"], {}, "w1"))["w1"]
        recent = dict(backend._golden_stats(row["id"], {"history_size": 2}, "w1"))["w1"]
    assert stats["golden_set_answers_count"] == stats["total_answers_count"] == 4
    assert stats["golden_set_correct_answers_rate"] == pytest.approx(100 * 2.5 / 4)
    assert stats["golden_set_incorrect_answers_rate"] == pytest.approx(100 - 62.5)
    assert recent["golden_set_answers_count"] == 2  # the newest two: 0 and 1
    assert recent["golden_set_correct_answers_rate"] == pytest.approx(50.0)


# --- through toloka-kit -----------------------------------------------------------------------------

def test_golden_mixing_over_http_with_toloka_kit(tmp_path):
    import toloka.client as toloka

    token = "golden-test-token-31c9"
    with start_local_toloka(tmp_path, token, workers=4, speed=600, seed=1, crowd_module="helpers_local_toloka") as h:
        client = h.client()
        project = client.create_project(toloka.structure(PROJECT, toloka.Project))
        skill = client.create_skill(name="control accuracy", hidden=True)
        pool = client.create_pool(toloka.structure(pool_spec(
            project.id, mixer_config=mixer(2, 1), will_expire=fmt_ts(utcnow() + dt.timedelta(days=1)),
            quality_control={"configs": [{"collector_config": {"type": "GOLDEN_SET"}, "rules": [{
                "conditions": [{"key": "total_answers_count", "operator": "GTE", "value": 1}],
                "action": {"type": "SET_SKILL_FROM_OUTPUT_FIELD",
                           "parameters": {"skill_id": skill.id, "from_field": "correct_answers_rate"}}}]}]}),
            toloka.Pool))
        # a pool that asks for control tasks but has none: it opens, nobody gets a suite
        client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"image": f"https://i/r{i}.png"}, overlap=1)
                             for i in range(8)], allow_defaults=True)
        client.open_pool(pool.id)
        time.sleep(1.0)  # 600 simulated seconds: 20 suites' worth of work if anything could be issued
        assert list(client.get_assignments(pool_id=pool.id)) == []
        client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"image": f"https://i/gold{i}.png"},
                                         known_solutions=[toloka.task.BaseTask.KnownSolution(
                                             output_values=GOOD)], infinite_overlap=True)
                             for i in range(2)])
        deadline = time.monotonic() + 60  # a condition wait: only a stuck pool reaches it
        while client.get_pool(pool.id).status != toloka.Pool.Status.CLOSED and time.monotonic() < deadline:
            time.sleep(0.1)
        closed = client.get_pool(pool.id)
        assert closed.status == toloka.Pool.Status.CLOSED and closed.last_close_reason.value == "COMPLETED"
        done = list(client.get_assignments(pool_id=pool.id))
        assert len(done) == 4  # 8 general tasks, 2 per suite
        for a in done:
            assert len(a.tasks) == 3 and sum(bool(t.known_solutions) for t in a.tasks) == 1
        by_worker = {}
        for a in done:
            by_worker.setdefault(a.user_id, set()).update(t.id for t in a.tasks if t.known_solutions)
        assert all(len(ids) == sum(a.user_id == w for a in done) for w, ids in by_worker.items())  # no repeats
        skills = {s.user_id: float(s.exact_value) for s in client.get_user_skills(skill_id=skill.id)}
        assert skills == {w: (0.0 if w == "f04" else 100.0) for w in by_worker}
        df = client.get_assignments_df(pool.id, status=["APPROVED"])
        assert "GOLDEN:result" in df.columns and df["GOLDEN:result"].notna().sum() == 4


def test_patch_turns_a_task_into_a_control_task(backend):
    pool = golden_pool(backend, n_real=3, n_golden=0, mixer_config=mixer(1, 1))
    assert issue(backend, pool["id"], "w1") == []  # no control task yet
    task = backend.find_tasks({"pool_id": pool["id"], "limit": "10"})["items"][2]
    patched = backend.patch_task(task["id"], {"known_solutions": [{"output_values": GOOD}], "infinite_overlap": True})
    assert patched["known_solutions"] == [{"output_values": GOOD}] and patched["infinite_overlap"] is True
    suite = issue(backend, pool["id"], "w1")
    assert sorted(kinds(suite)) == ["G", "R"]
    assert [seq for seq, doc in suite if doc.get("known_solutions")] == [backend._task_row(task["id"])["seq"]]
    assert backend._pool_metric(backend._pool_row(pool["id"]), "real_tasks_count", 0, {}) == 2
