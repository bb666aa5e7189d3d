"""Task suites on the local Toloka: /task-suites (create one or many, sync and async, find, get, patch,
set-overlap-or-min) and the crowd issuing a created suite's tasks together as one assignment."""

from __future__ import annotations

import json
import time

import pytest

import helpers_local_toloka as fake
from crowdboxes.local_toloka.exceptions import DoesNotExist, IncorrectAction, ValidationError
from crowdboxes.local_toloka.scheduler import Scheduler
from helpers_local_toloka import start_local_toloka

TOKEN = "task-suites-test-token"
FAKE = "helpers_local_toloka"
PROJECT = fake.classic_project()


def pool_spec(project_id, **extra):
    """Overlap 2 and no mixer_config (a pool holding only suites needs none)."""
    return fake.pool_spec(project_id, **{"defaults": {"default_overlap_for_new_task_suites": 2}, "mixer_config": None,
                                         **extra})


def suite(pool_id, start, n=3, **extra):
    return {"pool_id": pool_id, "tasks": [{"input_values": {"image": f"https://s/{start + i}.png"}}
                                          for i in range(n)], **extra}


def _assignments(backend, pool_id):
    return json.loads(backend.find_assignments({"pool_id": pool_id, "limit": "1000"}))["items"]


def test_create_validate_find_and_patch(backend):
    project = backend.create_project(PROJECT)
    pool = backend.create_pool(pool_spec(project["id"]))
    status, one = backend.create_task_suites(suite(pool["id"], 0, overlap=3), {})
    assert status == 201 and one["overlap"] == 3 and one["remaining_overlap"] == 3 and one["mixed"] is False
    assert len(one["tasks"]) == 3 and all(t["id"] for t in one["tasks"])
    # the suite's tasks are the pool's tasks too
    assert backend.get_task(one["tasks"][1]["id"])["input_values"] == {"image": "https://s/1.png"}
    status, many = backend.create_task_suites(
        [suite(pool["id"], 10), {"pool_id": pool["id"], "tasks": []},
         suite(pool["id"], 20, issuing_order_override=5.5),
         {"pool_id": pool["id"], "tasks": [{"input_values": {"image": "not a url"},
                                            "baseline_solutions": [{"output_values": {"result": 1}}]}]},
         suite("424242", 30)],
        {"skip_invalid_items": "true", "allow_defaults": "true"})
    assert status == 201 and sorted(many["items"]) == ["0", "2"]
    assert many["items"]["0"]["overlap"] == 2  # the pool's default_overlap_for_new_task_suites
    errors = many["validation_errors"]
    assert errors["1"]["tasks"]["code"] == "ARRAY_SIZE_LESS_THAN_MIN"
    assert errors["3"]["tasks[0].input_values.image"]["code"] == "INVALID_URL_SYNTAX"
    assert errors["3"]["tasks[0].baseline_solutions"]["code"] == "VALUE_NOT_ALLOWED"
    assert errors["4"]["pool_id"]["code"] == "ENTITY_DOES_NOT_EXIST"
    with pytest.raises(ValidationError):  # without skip_invalid_items nothing is created
        backend.create_task_suites([suite(pool["id"], 40), {"pool_id": pool["id"]}], {})
    # async mode: a finished TASK_SUITE.BATCH_CREATE operation whose log names the suites; idempotent ids
    status, op = backend.create_task_suites([{**suite(pool["id"], 50), "__item_idx": "0"}],
                                            {"async_mode": "true", "operation_id": "suites-op-1"})
    assert status == 202 and op["type"] == "TASK_SUITE.BATCH_CREATE" and op["status"] == "SUCCESS"
    log = backend.get_operation_log("suites-op-1")
    assert [(e["type"], e["input"]["__item_idx"]) for e in log] == [("TASK_SUITE_CREATE", "0")]
    with pytest.raises(IncorrectAction) as err:
        backend.create_task_suites([suite(pool["id"], 60)], {"async_mode": "true", "operation_id": "suites-op-1"})
    assert err.value.code == "OPERATION_ALREADY_EXISTS"
    _, failed = backend.create_task_suites([suite(pool["id"], 70), {"pool_id": pool["id"], "tasks": "x"}],
                                           {"async_mode": "true"})
    assert failed["status"] == "FAIL" and failed["details"]["success_count"] == 0
    assert [e["type"] for e in backend.get_operation_log(failed["id"])] == ["TASK_SUITE_VALIDATE"]
    extra = backend.get_task_suite(log[0]["output"]["task_suite_id"])
    assert len(extra["tasks"]) == 3 and extra["pool_id"] == pool["id"]
    ids = [one["id"], many["items"]["0"]["id"], many["items"]["2"]["id"], extra["id"]]
    found = backend.find_task_suites({"pool_id": pool["id"], "sort": "-id"})
    assert [s["id"] for s in found["items"]] == ids[::-1] and found["has_more"] is False
    assert [s["id"] for s in backend.find_task_suites({"pool_id": pool["id"], "limit": "2"})["items"]] == ids[:2]
    assert [s["id"] for s in backend.find_task_suites({"pool_id": pool["id"], "id_gt": ids[0]})["items"]] == ids[1:]
    assert [s["id"] for s in backend.find_task_suites({"pool_id": pool["id"], "overlap": "3"})["items"]] == ids[:1]
    assert [s["id"] for s in backend.find_task_suites({"pool_id": pool["id"], "overlap_lt": "3"})["items"]] == ids[1:]
    assert [s["id"] for s in backend.find_task_suites({"pool_id": pool["id"], "created_gte": one["created"]})[
        "items"]] == ids
    assert [s["id"] for s in backend.find_task_suites({"task_id": one["tasks"][2]["id"]})["items"]] == ids[:1]
    with pytest.raises(ValidationError):
        backend.find_task_suites({})
    patched = backend.patch_task_suite(ids[0], {"infinite_overlap": True, "issuing_order_override": 2})
    assert patched["infinite_overlap"] is True and patched["overlap"] is None and patched["issuing_order_override"] == 2
    assert backend.get_task(one["tasks"][0]["id"])["infinite_overlap"] is True  # its tasks follow
    patched = backend.patch_task_suite(ids[0], {"overlap": 4, "infinite_overlap": False})
    assert patched["overlap"] == 4 and backend.get_task(one["tasks"][0]["id"])["overlap"] == 4
    assert backend.patch_task_suite_overlap_or_min(ids[0], {"overlap": 0})["overlap"] == 0
    with pytest.raises(ValidationError):
        backend.patch_task_suite(ids[0], {"overlap": 0, "infinite_overlap": False})
    with pytest.raises(DoesNotExist):
        backend.get_task_suite("0000000001--00000000000000000000ffff")


def test_crowd_takes_created_suites_whole_and_by_priority(backend):
    """A pool with no mixer_config opens with created suites; each assignment is one whole suite, in order
    of issuing_order_override, and the suites' tasks never show up one by one."""
    project = backend.create_project(PROJECT)
    pool = backend.create_pool(pool_spec(project["id"]))
    _, made = backend.create_task_suites([suite(pool["id"], 0), suite(pool["id"], 10),
                                          suite(pool["id"], 20, n=2, issuing_order_override=10)],
                                         {"allow_defaults": "true", "open_pool": "true"})
    suites = {s["id"]: [t["id"] for t in s["tasks"]] for s in made["items"].values()}
    assert backend.get_pool(pool["id"])["status"] == "OPEN"  # open_pool=true, and no mixer_config needed
    sched = Scheduler(backend, fake, workers=1, seed=2, solve_threads=1)
    sched.step()
    first = _assignments(backend, pool["id"])
    assert [a["task_suite_id"] for a in first] == [made["items"]["2"]["id"]]  # the highest override first
    sched = Scheduler(backend, fake, workers=4, seed=2, solve_threads=1)
    fake.crowd_until(backend, sched, fake.pool_closed(backend, pool["id"]))
    assert backend.get_pool(pool["id"])["status"] == "CLOSED"
    done = _assignments(backend, pool["id"])
    assert len(done) == 6  # 3 suites x overlap 2
    for a in done:
        assert a["mixed"] is False and [t["id"] for t in a["tasks"]] == suites[a["task_suite_id"]]
    for suite_id in suites:
        takers = [a["user_id"] for a in done if a["task_suite_id"] == suite_id]
        assert len(takers) == 2 and len(set(takers)) == 2
        assert backend.get_task_suite(suite_id)["remaining_overlap"] == 0


def test_smart_mixing_leaves_created_suites_alone(backend):
    project = backend.create_project(PROJECT)
    pool = backend.create_pool(pool_spec(project["id"], mixer_config={
        "real_tasks_count": 2, "golden_tasks_count": 0, "training_tasks_count": 0}))
    backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": f"https://t/{i}.png"}}
                          for i in range(4)], {"allow_defaults": "true"})
    _, made = backend.create_task_suites(suite(pool["id"], 0, n=3), {"allow_defaults": "true"})
    backend.open_pool(pool["id"])
    sched = Scheduler(backend, fake, workers=3, seed=2, solve_threads=1)
    fake.crowd_until(backend, sched, fake.pool_closed(backend, pool["id"]))
    done = _assignments(backend, pool["id"])
    mine = {t["id"] for t in made["tasks"]}
    created = [a for a in done if a["task_suite_id"] == made["id"]]
    mixed = [a for a in done if a["task_suite_id"] != made["id"]]
    assert len(created) == 2 and all({t["id"] for t in a["tasks"]} == mine for a in created)
    assert len(mixed) == 4 and all(len(a["tasks"]) == 2 and not mine & {t["id"] for t in a["tasks"]} for a in mixed)
    # the suites smart mixing made are task suites too: listed, found by task, readable
    seen = backend.get_task_suite(mixed[0]["task_suite_id"])
    assert seen["mixed"] is True and [t["id"] for t in seen["tasks"]] == [t["id"] for t in mixed[0]["tasks"]]
    listed = backend.find_task_suites({"pool_id": pool["id"], "limit": "100"})["items"]
    assert sorted((s["id"], s["mixed"]) for s in listed) == sorted(
        [(made["id"], False)] + [(a["task_suite_id"], True) for a in mixed])
    task = mixed[1]["tasks"][0]["id"]  # overlap 2: in two mixed suites
    holding = sorted(a["task_suite_id"] for a in mixed if task in {t["id"] for t in a["tasks"]})
    assert len(holding) == 2
    assert [s["id"] for s in backend.find_task_suites({"task_id": task, "sort": "id"})["items"]] == holding


def test_task_suites_through_toloka_kit(tmp_path):
    import toloka.client as toloka

    server = start_local_toloka(tmp_path, TOKEN, workers=4, speed=2000, seed=2, crowd_module=FAKE)
    try:
        client = server.client()
        project = fake.kit_project(client)
        pool = client.create_pool(fake.kit_pool(project.id, mixer=False))

        def make(start, n=2, **extra):
            return toloka.TaskSuite(pool_id=pool.id, tasks=[toloka.Task(input_values={"image": f"https://s/{start + i}"
                                                                                       ".png"}) for i in range(n)],
                                    **extra)

        single = client.create_task_suite(make(0, overlap=2))  # async operation + get_task_suite
        assert single.overlap == 2 and len(single.tasks) == 2 and single.pool_id == pool.id
        batch = client.create_task_suites([make(10), make(20, n=3)], allow_defaults=True)
        assert sorted(batch.items) == ["0", "1"] and len(batch.items["1"].tasks) == 3
        with pytest.raises(toloka.exceptions.ValidationApiError):
            client.create_task_suites([toloka.TaskSuite(pool_id=pool.id, tasks=[])])
        found = client.find_task_suites(pool_id=pool.id, sort=["-created", "-id"], limit=2)
        assert found.has_more and len(found.items) == 2
        assert len(list(client.get_task_suites(pool_id=pool.id, batch_size=1))) == 3
        patched = client.patch_task_suite(batch.items["0"].id, issuing_order_override=3.5, infinite_overlap=False,
                                          overlap=2)
        assert patched.issuing_order_override == 3.5 and patched.overlap == 2
        stopped = client.patch_task_suite_overlap_or_min(batch.items["1"].id, overlap=0)
        assert stopped.overlap == 0 and stopped.remaining_overlap == 0
        client.open_pool(pool.id)
        deadline = time.monotonic() + 60  # a condition wait: only a stuck pool reaches it
        while client.get_pool(pool.id).status.value == "OPEN" and time.monotonic() < deadline:
            time.sleep(0.1)
        done = list(client.get_assignments(pool_id=pool.id))
        by_suite = {}
        for a in done:
            by_suite.setdefault(a.task_suite_id, []).append(a)
        assert {k: len(v) for k, v in by_suite.items()} == {single.id: 2, batch.items["0"].id: 2}
        assert all([t.id for t in a.tasks] == [t.id for t in single.tasks] for a in by_suite[single.id])
        assert client.get_task_suite(single.id).remaining_overlap == 0
    finally:
        server.stop()
