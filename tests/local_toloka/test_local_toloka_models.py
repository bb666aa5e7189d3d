"""The local Toloka backend and crowd scheduler in-process (no HTTP): rules, transitions, QC, money.

Every backend here runs on a :class:`ManualClock` that the tests step: nothing waits on the wall clock,
so a loaded machine cannot stretch a simulated duration (a one-day ban at speed 1e6 lasts 86 ms).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import types
from dataclasses import dataclass
from decimal import Decimal

import pytest

import helpers_local_toloka as fake
from crowdboxes.local_toloka.db import ManualClock, fmt_ts, parse_ts, utcnow
from crowdboxes.local_toloka.exceptions import DoesNotExist, IncorrectAction, ValidationError
from crowdboxes.local_toloka.models import Backend, cost_for
from crowdboxes.local_toloka.scheduler import Scheduler, passes_filter

PROJECT = {"public_name": "p", "task_spec": {
    "input_spec": {"image": {"type": "url", "required": True}, "note": {"type": "string", "required": False}},
    "output_spec": {"result": {"type": "json"}},
    "view_spec": {"type": "classic", "markup": "x"}}}


STEP_SECONDS = 0.002  # real seconds the clock moves per crowd step (2000 simulated seconds at speed 1e6)


def new_backend(state_dir, clock=None, **options):
    """A Backend on a manual clock, in the explicit fast mode (no wait for a first streaming reader)."""
    options = {"speed": 1e6, "first_reader_seconds": 0, **options}
    return Backend(state_dir, clock=clock or ManualClock(), **options)


@pytest.fixture()
def backend(tmp_path):
    """conftest's fast backend, on a manual clock."""
    b = new_backend(tmp_path / "state")
    yield b
    b.close()


def pool_spec(project_id, **extra):
    spec = {"project_id": project_id, "private_name": "p", "reward_per_assignment": 0.02,
            "assignment_max_duration_seconds": 600,
            "will_expire": fmt_ts(utcnow() + dt.timedelta(days=1)),
            "defaults": {"default_overlap_for_new_task_suites": 1},
            "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}}
    spec.update(extra)
    return spec


def make_pool(backend, n_tasks=3, **extra):
    project = backend.create_project(PROJECT)
    pool = backend.create_pool(pool_spec(project["id"], **extra))
    if n_tasks:
        status, _ = backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": f"https://i/{i}.png"}}
                                          for i in range(n_tasks)], {"allow_defaults": "true"})
        assert status == 201
    return project, pool


def run_crowd(backend, module=fake, workers=4, seed=2, steps=30, until=None):
    sched = Scheduler(backend, module, workers=workers, seed=seed, solve_threads=1)
    for _ in range(steps):
        sched.step()
        if until and until():
            break
        backend.clock.advance(STEP_SECONDS)
    return sched


def assignments(backend, pool_id, **params):
    return json.loads(backend.find_assignments({"pool_id": pool_id, "limit": "1000", **params}))["items"]


def test_pool_defaults_and_transitions(backend):
    project, pool = make_pool(backend, n_tasks=0)
    assert pool["status"] == "CLOSED" and pool["auto_accept_solutions"] is True and pool["priority"] == 0
    assert pool["auto_accept_period_day"] == 21
    with pytest.raises(IncorrectAction) as err:
        backend.open_pool(pool["id"])
    assert err.value.code == "EMPTY_POOL"
    backend.create_tasks({"pool_id": pool["id"], "input_values": {"image": "https://x/1.png"}}, {})
    assert backend.open_pool(pool["id"])["type"] == "POOL.OPEN"
    assert backend.open_pool(pool["id"]) is None  # 204: already open
    with pytest.raises(IncorrectAction):
        backend.archive_pool(pool["id"])
    assert backend.close_pool(pool["id"])["type"] == "POOL.CLOSE"
    assert backend.get_pool(pool["id"])["last_close_reason"] == "MANUAL"
    assert backend.archive_pool(pool["id"])["type"] == "POOL.ARCHIVE"
    with pytest.raises(IncorrectAction) as err:
        backend.open_pool(pool["id"])
    assert err.value.payload == {"appropriate_statuses": ["CLOSED"]}
    assert backend.archive_project(project["id"])["parameters"] == {"project_id": project["id"]}
    with pytest.raises(DoesNotExist):
        backend.get_pool("12345")
    project = backend.create_project(PROJECT)
    for broken, field in (({"reward_per_assignment": 0.001}, "reward_per_assignment"),
                          ({"defaults": {}}, "defaults.default_overlap_for_new_task_suites"),
                          ({"will_expire": "soon"}, "will_expire"),
                          ({"project_id": "999"}, "project_id"),
                          ({"quality_control": {"configs": [{"collector_config": {"type": "GOLDEN_SET"}, "rules": 5}]}},
                           "quality_control.configs[0].rules")):
        with pytest.raises(ValidationError) as err:
            backend.create_pool({**pool_spec(project["id"]), **broken})
        assert list(err.value.payload) == [field]


def test_task_validation_ids_and_range_queries(backend):
    _, pool = make_pool(backend, n_tasks=0)
    status, result = backend.create_tasks(
        [{"pool_id": pool["id"], "input_values": {"image": "https://ok/a.png"}},
         {"pool_id": pool["id"], "input_values": {"note": "x"}},
         {"pool_id": pool["id"], "input_values": {"image": "https://ok/b.png", "note": 5}},
         {"pool_id": "777", "input_values": {"image": "https://ok/c.png"}}],
        {"skip_invalid_items": "true", "allow_defaults": "true"})
    assert status == 201 and list(result["items"]) == ["0"]
    assert result["validation_errors"]["1"]["input_values.image"]["code"] == "VALUE_REQUIRED"
    assert result["validation_errors"]["2"]["input_values.note"]["code"] == "STRING_EXPECTED"
    assert result["validation_errors"]["3"]["pool_id"]["code"] == "ENTITY_DOES_NOT_EXIST"
    with pytest.raises(ValidationError) as err:  # without skip_invalid_items nothing is created
        backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": "https://ok/x.png"}},
                              {"pool_id": pool["id"], "input_values": {}}], {})
    assert list(err.value.payload) == ["1"]
    # ids: fixed width, string order = creation order, even past 9 -> 10 and 15 -> 16
    _, res = backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": f"https://ok/{i}.png"}}
                                   for i in range(20)], {"allow_defaults": "true"})
    ids = [res["items"][str(i)]["id"] for i in range(20)]
    assert ids == sorted(ids) and len({len(i) for i in ids}) == 1
    found = backend.find_tasks({"pool_id": pool["id"], "id_gte": ids[3], "id_lte": ids[12], "sort": "id"})
    assert [t["id"] for t in found["items"]] == ids[3:13] and found["has_more"] is False
    page = backend.find_tasks({"pool_id": pool["id"], "sort": "id", "limit": "5", "id_gt": ids[14]})
    assert [t["id"] for t in page["items"]] == ids[15:20] and page["has_more"] is False
    page = backend.find_tasks({"pool_id": pool["id"], "sort": "id", "limit": "5"})
    assert page["has_more"] is True and len(page["items"]) == 5
    task = backend.get_task(ids[0])
    assert task["overlap"] == 1 and task["remaining_overlap"] == 1 and task["infinite_overlap"] is False
    patched = backend.patch_task(ids[0], {"overlap": 4, "infinite_overlap": False})
    assert patched["overlap"] == 4 and patched["remaining_overlap"] == 4


def test_async_batch_operation_log_and_idempotency(backend):
    _, pool = make_pool(backend, n_tasks=0)
    items = [{"__item_idx": str(i), "pool_id": pool["id"], "input_values": {"image": f"https://b/{i}.png"}}
             for i in range(3)] + [{"__item_idx": "3", "pool_id": pool["id"], "input_values": {}}]
    status, op = backend.create_tasks(items, {"async_mode": "true", "operation_id": "op-1",
                                              "allow_defaults": "true", "skip_invalid_items": "true",
                                              "open_pool": "true"})
    assert status == 202 and op["id"] == "op-1" and op["type"] == "TASK.BATCH_CREATE" and op["status"] == "SUCCESS"
    assert op["details"]["success_count"] == 3 and op["details"]["not_valid_count"] == 1
    log = backend.get_operation_log("op-1")
    created = [e for e in log if e["type"] == "TASK_CREATE"]
    assert [e["input"]["__item_idx"] for e in created] == ["0", "1", "2"]
    assert all(e["output"]["task_id"] for e in created)
    failed = [e for e in log if e["type"] == "TASK_VALIDATE"]
    assert failed[0]["input"]["__item_idx"] == "3" and "input_values.image" in failed[0]["output"]
    assert [e["success"] for e in log if e["type"] == "POOL_OPEN"] == [True]
    assert backend.get_pool(pool["id"])["status"] == "OPEN"
    with pytest.raises(IncorrectAction) as err:
        backend.create_tasks(items, {"async_mode": "true", "operation_id": "op-1"})
    assert err.value.code == "OPERATION_ALREADY_EXISTS"
    # a big batch runs in the background and finishes
    big = [{"__item_idx": str(i), "pool_id": pool["id"], "input_values": {"image": f"https://b/{i}.png"}}
           for i in range(2500)]
    _, op = backend.create_tasks(big, {"async_mode": "true", "operation_id": "op-big", "allow_defaults": "true"})
    deadline = time.monotonic() + 20
    while backend.get_operation("op-big")["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.get_operation("op-big")["details"]["success_count"] == 2500


def test_crowd_mixer_overlap_and_no_repeats(backend):
    _, pool = make_pool(backend, n_tasks=7, mixer_config={"real_tasks_count": 3, "golden_tasks_count": 0,
                                                           "training_tasks_count": 0, "force_last_assignment": False},
                        defaults={"default_overlap_for_new_task_suites": 2})
    backend.open_pool(pool["id"])
    run_crowd(backend, workers=3)
    done = assignments(backend, pool["id"])
    # 7 tasks x overlap 2 = 14 slots; suites of exactly 3 (force_last_assignment false) -> 4 suites, 2 slots left
    assert sorted(len(a["tasks"]) for a in done) == [3, 3, 3, 3]
    assert all(a["status"] == "ACCEPTED" for a in done)
    pairs = [(a["user_id"], t["id"]) for a in done for t in a["tasks"]]
    assert len(pairs) == len(set(pairs))
    assert backend.get_pool(pool["id"])["status"] == "OPEN"  # a partial suite waits for more tasks
    spec = backend.get_pool(pool["id"])
    spec["mixer_config"]["force_last_assignment"] = True
    backend.close_pool(pool["id"], reason="FOR_UPDATE")  # Toloka edits closed pools only
    backend.update_pool(pool["id"], spec)
    backend.open_pool(pool["id"])
    run_crowd(backend, workers=3, until=lambda: backend.get_pool(pool["id"])["status"] == "CLOSED")
    final = backend.get_pool(pool["id"])
    assert final["status"] == "CLOSED" and final["last_close_reason"] == "COMPLETED"
    sizes = sorted(len(a["tasks"]) for a in assignments(backend, pool["id"]))
    assert sum(sizes) == 14 and sizes[0] < 3

    # unset, force_last_assignment is true (Toloka's default): the pool completes with a short last suite
    _, unset = make_pool(backend, n_tasks=7, mixer_config={"real_tasks_count": 3, "golden_tasks_count": 0,
                                                            "training_tasks_count": 0})
    backend.open_pool(unset["id"])
    run_crowd(backend, workers=1, until=lambda: backend.get_pool(unset["id"])["status"] == "CLOSED")
    assert sorted(len(a["tasks"]) for a in assignments(backend, unset["id"])) == [1, 3, 3]
    assert backend.get_pool(unset["id"])["last_close_reason"] == "COMPLETED"


def test_filters_languages_and_skill_null():
    ru = {"and": [{"or": [{"category": "profile", "key": "languages", "operator": "IN", "value": "RU"}]}]}
    en = {"and": [{"or": [{"category": "profile", "key": "languages", "operator": "IN", "value": "EN"}]}]}
    no_skill = {"and": [{"or": [{"category": "skill", "key": "7", "operator": "EQ", "value": None}]}]}
    high = {"and": [{"or": [{"category": "skill", "key": "7", "operator": "GTE", "value": 80}]}]}
    attrs = {"languages": ["EN"]}
    assert passes_filter(en, attrs, {}) and not passes_filter(ru, attrs, {})
    assert passes_filter(no_skill, attrs, {}) and not passes_filter(no_skill, attrs, {"7": 1.0})
    assert passes_filter(high, attrs, {"7": 90.0}) and not passes_filter(high, attrs, {}) \
        and not passes_filter(high, attrs, {"7": 50.0})


def test_skill_filter_keeps_skilled_workers_out(backend):
    skill = backend.create_skill({"name": "drawer"})
    flt = {"and": [{"or": [{"category": "skill", "key": skill["id"], "operator": "EQ", "value": None}]}]}
    _, pool = make_pool(backend, n_tasks=4, filter=flt, defaults={"default_overlap_for_new_task_suites": 4})
    for worker in ("f01", "f02"):
        backend.set_user_skill({"skill_id": skill["id"], "user_id": worker, "value": 1})
    backend.open_pool(pool["id"])
    run_crowd(backend, workers=4)
    assert {a["user_id"] for a in assignments(backend, pool["id"])} == {"f03", "f04"}
    languages = {"and": [{"or": [{"category": "profile", "key": "languages", "operator": "IN", "value": "DE"}]}]}
    _, german = make_pool(backend, n_tasks=2, filter=languages)
    backend.open_pool(german["id"])
    run_crowd(backend, workers=4, steps=5)
    assert assignments(backend, german["id"]) == []


@dataclass(frozen=True)
class SlowProfile:
    worker_id: str
    kind: str = "good"
    speed: float = 3.0  # 90 simulated seconds per task


def test_slow_worker_expires_and_task_returns(backend):
    slow = types.SimpleNamespace(make_workforce=lambda n, seed: [SlowProfile(f"s{i}") for i in range(n)],
                                 Crowd=fake.Crowd, seconds_for=fake.seconds_for)
    _, pool = make_pool(backend, n_tasks=1, assignment_max_duration_seconds=60)
    backend.open_pool(pool["id"])
    run_crowd(backend, module=slow, workers=2, steps=10)
    done = assignments(backend, pool["id"])
    assert {a["status"] for a in done} == {"EXPIRED"} and len({a["user_id"] for a in done}) == 2
    assert all(a.get("expired") and "solutions" not in a for a in done)
    task = backend.get_task(done[0]["tasks"][0]["id"])
    assert task["remaining_overlap"] == 1  # the slot went back to the pool


def test_unloadable_image_is_skipped(backend):
    project = backend.create_project(PROJECT)
    pool = backend.create_pool(pool_spec(project["id"]))
    backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": "https://x/unloadable.png"}}], {})
    backend.open_pool(pool["id"])
    run_crowd(backend, workers=2, steps=10)
    assert {a["status"] for a in assignments(backend, pool["id"])} == {"SKIPPED"}


def test_fast_submit_and_acceptance_rate_restrictions(backend):
    qc = {"configs": [
        {"collector_config": {"type": "ASSIGNMENT_SUBMIT_TIME",
                              "parameters": {"history_size": 5, "fast_submit_threshold_seconds": 40}},
         "rules": [{"conditions": [{"key": "fast_submitted_count", "operator": "GT", "value": 1}],
                    "action": {"type": "RESTRICTION_V2", "parameters": {"scope": "POOL", "duration": 1,
                                                                        "duration_unit": "DAYS"}}}]}]}
    _, pool = make_pool(backend, n_tasks=6, quality_control=qc)
    backend.open_pool(pool["id"])
    run_crowd(backend, workers=1)
    # the fake worker needs 30 s < 40 s: banned from the pool after its second fast submit
    assert len(assignments(backend, pool["id"])) == 2
    bans = backend.find_user_restrictions({"user_id": "f01"})["items"]
    assert [(b["scope"], b["pool_id"]) for b in bans] == [("POOL", pool["id"])]
    assert parse_ts(bans[0]["will_expire"]) > parse_ts(bans[0]["created"])

    qc = {"configs": [{"collector_config": {"type": "ACCEPTANCE_RATE"},
                       "rules": [{"conditions": [{"key": "total_assignments_count", "operator": "GT", "value": 1},
                                                 {"key": "rejected_assignments_rate", "operator": "GT", "value": 35}],
                                  "action": {"type": "RESTRICTION_V2",
                                             "parameters": {"scope": "ALL_PROJECTS", "duration": 15,
                                                            "duration_unit": "DAYS"}}}]}]}
    _, reviewed = make_pool(backend, n_tasks=3, quality_control=qc, auto_accept_solutions=False)
    backend.open_pool(reviewed["id"])
    run_crowd(backend, workers=1, seed=4, steps=10)
    first, second = assignments(backend, reviewed["id"], status="SUBMITTED", sort="id")[:2]
    backend.patch_assignment(first["id"], {"status": "ACCEPTED", "public_comment": "ok"})
    assert backend.find_user_restrictions({"scope": "ALL_PROJECTS"})["items"] == []
    backend.patch_assignment(second["id"], {"status": "REJECTED", "public_comment": "bad"})
    assert [r["user_id"] for r in backend.find_user_restrictions({"scope": "ALL_PROJECTS"})["items"]] == ["f01"]
    with pytest.raises(IncorrectAction) as err:
        backend.patch_assignment(first["id"], {"status": "REJECTED", "public_comment": "changed my mind"})
    assert err.value.code == "INAPPROPRIATE_STATUS"
    after = backend.patch_assignment(second["id"], {"status": "ACCEPTED", "public_comment": "sorry"})
    assert after["status"] == "ACCEPTED" and after["public_comment"] == "sorry" and after["rejected"]


def test_money_fee_and_not_enough_balance(tmp_path):
    assert cost_for(Decimal("0.01")) == Decimal("0.015")  # fee floor $0.005
    assert cost_for(Decimal("0.10")) == Decimal("0.13")  # 30 %
    backend = new_backend(tmp_path / "s", balance="0.05")
    try:
        project = backend.create_project(PROJECT)
        pool = backend.create_pool(pool_spec(project["id"], reward_per_assignment=0.1))
        backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": "https://m/1.png"}}], {})
        with pytest.raises(IncorrectAction) as err:
            backend.open_pool(pool["id"])
        assert err.value.code == "NOT_ENOUGH_BALANCE"
        backend.set_balance("0.3")  # enough for two assignments of $0.13
        backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": f"https://m/{i}.png"}}
                              for i in range(2, 6)], {})
        backend.open_pool(pool["id"])
        run_crowd(backend, workers=4, steps=10)
        done = assignments(backend, pool["id"])
        assert len(done) == 2 and {a["status"] for a in done} == {"ACCEPTED"}
        assert backend.get_pool(pool["id"])["last_close_reason"] == "NOT_ENOUGH_BALANCE"
        assert Decimal(str(backend.get_requester()["balance"])) == Decimal("0.04")
    finally:
        backend.close()


def test_review_period_auto_accept_and_expiry(tmp_path):
    backend = new_backend(tmp_path / "s", speed=86400 * 2)  # a day of review = 0.5 s
    try:
        project = backend.create_project(PROJECT)
        pool = backend.create_pool(pool_spec(project["id"], auto_accept_solutions=False, auto_accept_period_day=1))
        backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": "https://r/1.png"}}], {})
        backend.open_pool(pool["id"])
        run_crowd(backend, workers=1, steps=3)
        (a,) = assignments(backend, pool["id"])
        assert a["status"] == "SUBMITTED"
        backend.clock.advance(0.6)
        run_crowd(backend, workers=1, steps=2)
        (a,) = assignments(backend, pool["id"])
        assert a["status"] == "ACCEPTED" and parse_ts(a["accepted"]) > parse_ts(a["submitted"])
        # a pool past will_expire closes as EXPIRED
        soon = backend.create_pool(pool_spec(project["id"], will_expire=fmt_ts(backend.now() + dt.timedelta(seconds=1.0))))
        backend.create_tasks([{"pool_id": soon["id"], "input_values": {"image": "https://r/2.png"}}], {})
        backend.open_pool(soon["id"])
        backend.speed = 1e-3  # nobody finishes in time
        backend.clock.advance(1.05)
        run_crowd(backend, workers=1, steps=1)
        assert backend.get_pool(soon["id"])["last_close_reason"] == "EXPIRED"
    finally:
        backend.close()


def test_assignment_time_filters_parse_datetimes(backend):
    _, pool = make_pool(backend, n_tasks=3, auto_accept_solutions=False)
    backend.open_pool(pool["id"])
    run_crowd(backend, workers=3, steps=5)
    items = assignments(backend, pool["id"], sort="submitted")
    first = items[0]
    stamp = first["submitted"]  # milliseconds, e.g. ...50.724
    padded = stamp + "000"       # what toloka-kit sends back: ...50.724000
    got = assignments(backend, pool["id"], submitted_gte=padded, sort="submitted")
    assert first["id"] in [a["id"] for a in got]
    assert assignments(backend, pool["id"], accepted_gte="1970-01-01T00:00:00") == []  # nulls excluded
    later = parse_ts(stamp) + dt.timedelta(microseconds=500)
    assert first["id"] not in [a["id"] for a in assignments(backend, pool["id"], submitted_gte=later.isoformat())]
    assert len(assignments(backend, pool["id"], status="SUBMITTED,ACCEPTED")) == 3
    desc = assignments(backend, pool["id"], sort="-submitted,id")
    assert [a["submitted"] for a in desc] == sorted((a["submitted"] for a in desc), reverse=True)
    with pytest.raises(ValidationError):
        assignments(backend, pool["id"], sort="reward")


def test_state_survives_reopen(tmp_path):
    backend = new_backend(tmp_path / "s")
    _, pool = make_pool(backend, n_tasks=2)
    backend.open_pool(pool["id"])
    run_crowd(backend, workers=2, steps=5)
    before = (backend.get_requester()["balance"], assignments(backend, pool["id"]))
    backend.close()
    again = new_backend(tmp_path / "s", clock=backend.clock)
    try:
        assert (again.get_requester()["balance"], assignments(again, pool["id"])) == before
    finally:
        again.close()


def test_interrupted_batch_resumes_after_restart(tmp_path, monkeypatch):
    import crowdboxes.local_toloka.models as models

    backend = new_backend(tmp_path / "s")
    _, pool = make_pool(backend, n_tasks=0)
    items = [{"__item_idx": str(i), "pool_id": pool["id"], "input_values": {"image": f"https://r/{i}.png"}}
             for i in range(models.INLINE_BATCH + 10)]

    class NoThread:  # the server "dies" before the background worker runs
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            pass

    monkeypatch.setattr(models.threading, "Thread", NoThread)
    _, op = backend.create_tasks(items, {"async_mode": "true", "operation_id": "op-crash", "allow_defaults": "true"})
    assert op["status"] == "RUNNING"
    backend.close()
    monkeypatch.undo()
    again = new_backend(tmp_path / "s", clock=backend.clock)
    try:
        op = again.get_operation("op-crash")
        assert op["status"] == "SUCCESS" and op["details"]["success_count"] == len(items) and "_progress" not in op
        log = again.get_operation_log("op-crash")
        assert sorted(int(e["input"]["__item_idx"]) for e in log) == list(range(len(items)))
        assert again.find_tasks({"pool_id": pool["id"], "limit": "5000"})["has_more"] is False
        assert len(again.find_tasks({"pool_id": pool["id"], "limit": "5000"})["items"]) == len(items)
        # one invalid item without skip_invalid_items: the operation fails and creates nothing
        bad = [{"__item_idx": "0", "pool_id": pool["id"], "input_values": {"image": "https://r/x.png"}},
               {"__item_idx": "1", "pool_id": pool["id"], "input_values": {}}]
        _, op = again.create_tasks(bad, {"async_mode": "true", "operation_id": "op-bad"})
        assert op["status"] == "FAIL" and [e["input"]["__item_idx"] for e in again.get_operation_log("op-bad")] == ["1"]
        assert len(again.find_tasks({"pool_id": pool["id"], "limit": "5000"})["items"]) == len(items)
    finally:
        again.close()


def test_crowd_failure_skips_instead_of_sticking(backend):
    class Broken(fake.Crowd):
        def solve(self, profile, task_input):
            raise RuntimeError("decoder crashed")

    module = types.SimpleNamespace(make_workforce=fake.make_workforce, Crowd=Broken, seconds_for=fake.seconds_for)
    _, pool = make_pool(backend, n_tasks=1)
    backend.open_pool(pool["id"])
    sched = run_crowd(backend, module=module, workers=2, steps=10)
    assert {a["status"] for a in assignments(backend, pool["id"])} == {"SKIPPED"}
    assert sched.errors >= 1 and "decoder crashed" in sched.last_error


def test_analytics_counts_and_budget(backend):
    _, pool = make_pool(backend, n_tasks=4, auto_accept_solutions=False,
                        defaults={"default_overlap_for_new_task_suites": 2})
    backend.open_pool(pool["id"])
    run_crowd(backend, workers=1, steps=10)
    done = assignments(backend, pool["id"], sort="id")
    assert len(done) == 4  # one worker takes each task once: 4 of the 8 slots
    backend.patch_assignment(done[0]["id"], {"status": "ACCEPTED", "public_comment": "ok"})
    backend.patch_assignment(done[1]["id"], {"status": "REJECTED", "public_comment": "no"})
    names = ["submitted_assignments_count", "approved_assignments_count", "rejected_assignments_count",
             "spent_budget", "completion_percentage", "real_tasks_count", "unique_submitters_count"]
    op = backend.analytics([{"subject": "POOL", "subject_id": pool["id"], "name": n} for n in names])
    got = {v["request"]["name"]: v["result"] for v in op["details"]["value"]}
    assert op["type"] == "ANALYTICS" and op["status"] == "SUCCESS"
    assert got["submitted_assignments_count"] == 2 and got["approved_assignments_count"] == 1
    assert got["rejected_assignments_count"] == 1 and got["spent_budget"] == 0.02  # without the fee
    assert got["completion_percentage"]["value"] == 50
    assert got["real_tasks_count"] == 4 and got["unique_submitters_count"] == 1
    with pytest.raises(ValidationError):
        backend.analytics([{"subject": "POOL", "subject_id": "999", "name": "spent_budget"}])


def test_majority_vote_sets_skill_from_correct_answers_rate(backend):
    class Contrarian(fake.Crowd):  # f03 always disagrees with the other two
        def solve(self, profile, task_input):
            return {"verdict": "BAD" if profile.worker_id == "f03" else "OK"}

    module = types.SimpleNamespace(make_workforce=fake.make_workforce, Crowd=Contrarian, seconds_for=fake.seconds_for)
    skill = backend.create_skill({"name": "verifier"})
    qc = {"configs": [{"collector_config": {"type": "MAJORITY_VOTE", "parameters": {"answer_threshold": 2}},
                       "rules": [{"conditions": [{"key": "total_answers_count", "operator": "GT", "value": 0}],
                                  "action": {"type": "SET_SKILL_FROM_OUTPUT_FIELD",
                                             "parameters": {"skill_id": skill["id"],
                                                            "from_field": "correct_answers_rate"}}}]}]}
    _, pool = make_pool(backend, n_tasks=3, quality_control=qc, defaults={"default_overlap_for_new_task_suites": 3})
    backend.open_pool(pool["id"])
    run_crowd(backend, module=module, workers=3, until=lambda: backend.get_pool(pool["id"])["status"] == "CLOSED")
    skills = {s["user_id"]: s["exact_value"] for s in backend.find_user_skills({"skill_id": skill["id"]})["items"]}
    assert skills == {"f01": 100, "f02": 100, "f03": 0}


# --- project and skill edits (PUT) ----------------------------------------------------------------

def test_project_edit_breaking_change_pins_existing_pools(backend):
    project, old_pool = make_pool(backend, n_tasks=1)
    edited = {**PROJECT, "public_instructions": "<p>read me</p>"}
    assert backend.check_project_update(project["id"], PROJECT) == {"differenceLevel": "EQUAL"}
    assert backend.check_project_update(project["id"], edited) == {"differenceLevel": "NON_BREAKING_CHANGE"}
    renamed = {**edited, "task_spec": {**PROJECT["task_spec"],
                                       "input_spec": {"photo": {"type": "url", "required": True}}}}
    assert backend.check_project_update(project["id"], renamed) == {"differenceLevel": "BREAKING_CHANGE"}
    assert backend.get_project(project["id"])["task_spec"]["input_spec"] == PROJECT["task_spec"]["input_spec"]

    # a non-breaking edit reaches the existing pool at once (nothing pinned)
    updated = backend.update_project(project["id"], {**edited, "id": "999", "status": "ARCHIVED"})
    assert updated["public_instructions"] == "<p>read me</p>" and updated["id"] == project["id"]
    assert updated["status"] == "ACTIVE"  # read-only fields in the body are ignored
    assert backend.pool_task_spec(backend._pool_row(old_pool["id"]))["input_spec"] == \
        PROJECT["task_spec"]["input_spec"]

    # a breaking edit: the old pool keeps "image", a new pool gets "photo"
    backend.update_project(project["id"], renamed)
    new_pool = backend.create_pool(pool_spec(project["id"]))
    status, body = backend.create_tasks([{"pool_id": old_pool["id"], "input_values": {"image": "https://i/x.png"}},
                                         {"pool_id": new_pool["id"], "input_values": {"photo": "https://i/y.png"}}],
                                        {"allow_defaults": "true"})
    assert status == 201 and not body["validation_errors"] and len(body["items"]) == 2
    with pytest.raises(ValidationError):
        backend.create_tasks({"pool_id": old_pool["id"], "input_values": {"photo": "https://i/z.png"}}, {})
    with pytest.raises(ValidationError):
        backend.create_tasks({"pool_id": new_pool["id"], "input_values": {"image": "https://i/z.png"}}, {})
    # the results of the old pool still list its own fields
    assert backend.assignments_tsv(old_pool["id"], {}).splitlines()[0].startswith("INPUT:image\tINPUT:note\t")
    # and a later edit does not move it either
    backend.update_project(project["id"], {**renamed, "public_name": "p2"})
    assert "image" in backend.pool_task_spec(backend._pool_row(old_pool["id"]))["input_spec"]


def test_project_edit_rules(backend):
    project, pool = make_pool(backend, n_tasks=0)
    with pytest.raises(ValidationError) as err:
        backend.update_project(project["id"], {**PROJECT, "public_name": ""})
    assert "public_name" in json.dumps(err.value.body())
    with pytest.raises(ValidationError):
        backend.update_project(project["id"], {**PROJECT, "task_spec": {**PROJECT["task_spec"], "view_spec": {}}})
    with pytest.raises(DoesNotExist):
        backend.update_project("424242", PROJECT)
    backend.archive_pool(pool["id"])
    backend.archive_project(project["id"])
    with pytest.raises(IncorrectAction) as err:
        backend.update_project(project["id"], {**PROJECT, "public_name": "again"})
    assert err.value.status == 409
    assert backend.get_project(project["id"])["public_name"] == "p"


def test_skill_edit_changes_name_comment_and_access_only(backend):
    skill = backend.create_skill({"name": "s", "training": False, "skill_ttl_hours": 48,
                                  "public_requester_description": {"EN": "old"}})
    updated = backend.update_skill(skill["id"], {"name": "s2", "hidden": False, "private_comment": "k",
                                                 "public_requester_description": {"EN": "new"},
                                                 "training": True, "skill_ttl_hours": 1, "id": "77"})
    assert (updated["id"], updated["name"], updated["hidden"], updated["private_comment"]) == \
        (skill["id"], "s2", False, "k")
    assert updated["public_requester_description"] == {"EN": "new"}
    assert updated["training"] is False and updated["skill_ttl_hours"] == 48
    assert backend.find_skills({"name": "s2"})["items"][0]["id"] == skill["id"]
    assert backend.find_skills({"name": "s"})["items"] == []
    with pytest.raises(ValidationError):
        backend.update_skill(skill["id"], {"hidden": True})
    with pytest.raises(DoesNotExist):
        backend.update_skill("999", {"name": "x"})


def test_unplanned_active_items_carry_project_and_task_spec(backend):
    """The crowd scheduler reads ``project_id`` and the pool's effective ``task_spec`` from each item."""
    project, pool = make_pool(backend, n_tasks=2)
    backend.open_pool(pool["id"])
    with backend.transaction():
        row, doc = backend.open_pools()[0]
        backend.issue_suite(row, doc, "w1", backend.suite_tasks(row, doc, "w1"))
    # a breaking edit of the project pins the pool to the spec it had
    edited = json.loads(json.dumps(PROJECT))
    edited["task_spec"]["output_spec"] = {"other": {"type": "string"}}
    backend.update_project(project["id"], edited)
    with backend.transaction():
        (item,) = backend.unplanned_active()
    assert item["pool_id"] == int(pool["id"]) and item["project_id"] == int(project["id"])
    assert item["task_spec"] == PROJECT["task_spec"] and "training" not in item
    assert item["inputs"] == [{"image": "https://i/0.png"}] and item["user_id"] == "w1"
