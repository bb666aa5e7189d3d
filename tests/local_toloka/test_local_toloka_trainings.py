"""Trainings on the local Toloka: the /trainings resource, training tasks, pools' training requirements,
and the simulated crowd training before it works (backend in-process, and toloka-kit over HTTP)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

import helpers_local_toloka as fake
from crowdboxes.local_toloka.db import utcnow
from crowdboxes.local_toloka.exceptions import DoesNotExist, IncorrectAction, ValidationError
from crowdboxes.local_toloka.scheduler import Scheduler
from helpers_local_toloka import start_local_toloka

TOKEN = "trainings-test-token"
FAKE = "helpers_local_toloka"
PROJECT = fake.classic_project()
GOOD = [dict(fake.GOOD_BOX)]  # what the fake crowd's good workers draw; bad workers draw nothing


def training_spec(project_id, **extra):
    spec = {"project_id": project_id, "private_name": "t", "training_tasks_in_task_suite_count": 2,
            "task_suites_required_to_pass": 1, "inherited_instructions": True, "assignment_max_duration_seconds": 600,
            "may_contain_adult_content": False, "mix_tasks_in_creation_order": True,
            "shuffle_tasks_in_task_suite": True}
    spec.update(extra)
    return spec


def pool_spec(project_id, training_id=None, passing=80, **extra):
    spec = fake.pool_spec(project_id)
    if training_id is not None:
        spec["quality_control"] = {"configs": [], "training_requirement": {
            "training_pool_id": training_id, "training_passing_skill_value": passing}}
    spec.update(extra)
    return spec


def training_task(training_id, i):
    return {"pool_id": training_id, "input_values": {"image": f"https://t/{i}.png"},
            "known_solutions": [{"output_values": {"result": GOOD}, "correctness_weight": 1}],
            "message_on_unknown_solution": "Outline the sign"}


def test_training_resource_lifecycle_and_errors(backend):
    project = backend.create_project(PROJECT)
    training = backend.create_training(training_spec(project["id"]))
    assert training["status"] == "CLOSED" and training["project_id"] == project["id"]
    assert training["training_tasks_in_task_suite_count"] == 2 and training["inherited_instructions"] is True
    assert "reward_per_assignment" not in training and "will_expire" not in training  # internal fields stay hidden
    with pytest.raises(ValidationError) as err:
        backend.create_training({**training_spec(project["id"]), "training_tasks_in_task_suite_count": None})
    assert list(err.value.payload) == ["training_tasks_in_task_suite_count"]
    with pytest.raises(ValidationError) as err:
        backend.create_training(training_spec("999"))
    assert err.value.payload["project_id"]["code"] == "ENTITY_DOES_NOT_EXIST"
    with pytest.raises(IncorrectAction) as err:
        backend.open_training(training["id"])
    assert err.value.code == "EMPTY_POOL"
    # training tasks need known solutions (hints optional); without an overlap they go to everyone
    with pytest.raises(ValidationError) as err:
        backend.create_tasks({"pool_id": training["id"], "input_values": {"image": "https://t/x.png"}}, {})
    assert err.value.payload["known_solutions"]["code"] == "VALUE_REQUIRED"
    status, task = backend.create_tasks(training_task(training["id"], 0), {"allow_defaults": "true"})
    assert status == 201 and task["infinite_overlap"] is True and task["message_on_unknown_solution"]
    with pytest.raises(ValidationError):  # edited, never removed
        backend.patch_task(task["id"], {"known_solutions": None})
    hinted = backend.patch_task(task["id"], {"message_on_unknown_solution": "Outline the whole sign"})
    assert hinted["known_solutions"] and hinted["message_on_unknown_solution"] == "Outline the whole sign"
    op = backend.open_training(training["id"])
    assert op["type"] == "TRAINING.OPEN" and op["parameters"] == {"training_id": training["id"]}
    assert backend.open_training(training["id"]) is None  # 204: already open
    # trainings are not pools: /pools neither lists nor opens them
    pool = backend.create_pool(pool_spec(project["id"], training["id"]))
    assert [p["id"] for p in backend.find_pools({"project_id": project["id"]})["items"]] == [pool["id"]]
    assert [t["id"] for t in backend.find_trainings({"project_id": project["id"]})["items"]] == [training["id"]]
    assert backend.find_trainings({"status": "OPEN"})["items"][0]["id"] == training["id"]
    with pytest.raises(IncorrectAction) as err:
        backend.close_pool(training["id"])
    assert err.value.code == "POOL_IS_TRAINING"
    with pytest.raises(DoesNotExist):
        backend.get_training(pool["id"])
    updated = backend.update_training(training["id"], {**training, "private_name": "renamed"})
    assert updated["private_name"] == "renamed" and updated["status"] == "OPEN"
    assert backend.close_training(training["id"])["type"] == "TRAINING.CLOSE"
    assert backend.get_training(training["id"])["last_close_reason"] == "MANUAL"
    with pytest.raises(IncorrectAction) as err:  # a pool still links to it
        backend.archive_training(training["id"])
    assert err.value.code == "TRAINING_ARCHIVE_CONFLICT"
    clone = backend.clone_training(training["id"])
    copy = backend.get_training(clone["details"]["training_id"])
    assert copy["private_name"] == "renamed" and copy["status"] == "CLOSED" and copy["id"] != training["id"]
    backend.archive_pool(pool["id"])
    assert backend.archive_training(training["id"])["type"] == "TRAINING.ARCHIVE"
    assert backend.archive_training(training["id"]) is None


def test_pool_training_requirement_is_validated(backend):
    project = backend.create_project(PROJECT)
    other = backend.create_project(PROJECT)
    training = backend.create_training(training_spec(project["id"]))
    foreign = backend.create_training(training_spec(other["id"]))
    path = "quality_control.training_requirement.training_pool_id"
    for requirement, code in (({"training_passing_skill_value": 80}, "VALUE_REQUIRED"),
                              ({"training_pool_id": "424242", "training_passing_skill_value": 80},
                               "ENTITY_DOES_NOT_EXIST"),
                              ({"training_pool_id": foreign["id"], "training_passing_skill_value": 80},
                               "VALUE_NOT_ALLOWED")):
        with pytest.raises(ValidationError) as err:
            backend.create_pool({**pool_spec(project["id"]),
                                 "quality_control": {"configs": [], "training_requirement": requirement}})
        assert err.value.payload[path]["code"] == code
    with pytest.raises(ValidationError) as err:
        backend.create_pool(pool_spec(project["id"], training["id"], passing=101))
    assert list(err.value.payload) == ["quality_control.training_requirement.training_passing_skill_value"]
    # the deprecated read-only `type` does not get a pool refused
    pool = backend.create_pool({**pool_spec(project["id"], training["id"]), "type": "TRAINING"})
    assert pool["type"] == "REGULAR"
    assert pool["quality_control"]["training_requirement"] == {"training_pool_id": training["id"],
                                                               "training_passing_skill_value": 80}


def _assignments(backend, pool_id):
    return json.loads(backend.find_assignments({"pool_id": pool_id, "limit": "1000"}))["items"]


def test_what_the_crowd_reads_is_validated_up_front(backend):
    """Known solutions (create, PATCH, suites) and training_config are what the scheduler scores and reads:
    a bad one is a validation error, never an exception in the crowd's step."""
    project = backend.create_project(PROJECT)
    training = backend.create_training(training_spec(project["id"]))
    bad_weight = [{"output_values": {"result": GOOD}, "correctness_weight": "x"}]
    with pytest.raises(ValidationError) as err:
        backend.create_tasks({**training_task(training["id"], 0), "known_solutions": bad_weight}, {})
    assert err.value.payload["known_solutions[0].correctness_weight"]["code"] == "FLOAT_EXPECTED"
    _, task = backend.create_tasks(training_task(training["id"], 1), {})
    for known, where in ((bad_weight, "known_solutions[0].correctness_weight"),
                         ([5], "known_solutions[0].output_values"), ([], "known_solutions")):
        with pytest.raises(ValidationError) as err:
            backend.patch_task(task["id"], {"known_solutions": known})
        assert list(err.value.payload) == [where]
    with pytest.raises(ValidationError) as err:
        backend.create_task_suites({"pool_id": training["id"], "tasks": [
            {"input_values": {"image": "https://t/s.png"}, "known_solutions": [{"output_values": 1}]}]}, {})
    assert "tasks[0].known_solutions[0].output_values" in err.value.payload
    for config, where in (("x", "training_config"), ({"training_skill_ttl_days": "x"},
                                                     "training_config.training_skill_ttl_days")):
        with pytest.raises(ValidationError) as err:
            backend.create_pool(pool_spec(project["id"], training["id"], training_config=config))
        assert list(err.value.payload) == [where]


def test_crowd_trains_first_and_only_trained_workers_get_the_pool(backend):
    """Seed 1: f04 and f08 of 8 fake workers draw nothing (they fail), the others pass with 100 %."""
    project = backend.create_project(PROJECT)
    training = backend.create_training(training_spec(project["id"]))
    backend.create_tasks([training_task(training["id"], i) for i in range(4)], {"allow_defaults": "true"})
    pool = backend.create_pool(pool_spec(project["id"], training["id"], passing=80))
    backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": f"https://i/{i}.png"}} for i in range(12)],
                         {"allow_defaults": "true"})
    backend.open_training(training["id"])
    balance = backend.balance()
    backend.open_pool(pool["id"])
    sched = Scheduler(backend, fake, workers=8, seed=1, solve_threads=1)
    fake.crowd_until(backend, sched, fake.pool_closed(backend, pool["id"]))
    assert backend.get_pool(pool["id"])["status"] == "CLOSED", sched.last_error
    trained = _assignments(backend, training["id"])
    assert {a["pool_id"] for a in trained} == {training["id"]}
    assert {a["user_id"] for a in trained} == {f"f{i:02d}" for i in range(1, 9)}  # everyone trains first
    assert all(a["status"] == "ACCEPTED" and a["reward"] == 0 and len(a["tasks"]) == 2 for a in trained)
    for a in trained:
        failed = a["user_id"] in {"f04", "f08"}
        assert ("first_declined_solution_attempt" in a) == failed
        # the solutions hold the corrected answer (the worker saw the hint)
        assert all(s["output_values"]["result"] == GOOD for s in a["solutions"])
        if failed:
            assert all(f["output_values"]["result"] == [] for f in a["first_declined_solution_attempt"])
    assert backend.training_score(training["id"], "f01") == 100.0
    assert backend.training_score(training["id"], "f04") == 0.0
    skill = backend.get_skill(backend.training_skill_id(training["id"]))
    assert skill["training"] is True and skill["hidden"] is True
    values = {s["user_id"]: s["value"] for s in backend.find_user_skills({"skill_id": skill["id"]})["items"]}
    assert values == {f"f{i:02d}": 0 if i in (4, 8) else 100 for i in range(1, 9)}
    work = _assignments(backend, pool["id"])
    assert len(work) == 12 and {a["user_id"] for a in work} <= {"f01", "f02", "f03", "f05", "f06", "f07"}
    # only the pool's work is paid: training costs nothing
    spent = balance - backend.balance()
    assert float(spent) == pytest.approx(12 * (0.02 + 0.006))


def _train_once(backend, training_id, worker, result):
    """Hand ``worker`` one training suite (one task) and submit ``result`` for it."""
    with backend.transaction():
        offered = backend.open_pools()
        assert [r["id"] for r, _ in offered][:1] == [int(training_id)]  # the training comes first
        row, doc = offered[0]
        tasks = backend.suite_tasks(row, doc, worker)
        assert len(tasks) == 1
        asg = backend.issue_suite(row, doc, worker, tasks)
    backend.set_plan(asg, "SUBMIT", [{"result": result}], 30.0, utcnow())
    with backend.transaction():
        backend.finish_due(utcnow() + dt.timedelta(days=1))


def _offers(backend, worker):
    with backend.transaction():
        return {r["id"]: len(backend.suite_tasks(r, d, worker)) for r, d in backend.open_pools()}


def test_failed_worker_retries_after_retry_days(backend):
    project = backend.create_project(PROJECT)
    training = backend.create_training(training_spec(project["id"], retry_training_after_days=2,
                                                     training_tasks_in_task_suite_count=1,
                                                     task_suites_required_to_pass=2))
    backend.create_tasks([training_task(training["id"], i) for i in range(3)], {"allow_defaults": "true"})
    pool = backend.create_pool(pool_spec(project["id"], training["id"], passing=50))
    backend.create_tasks({"pool_id": pool["id"], "input_values": {"image": "https://i/0.png"}}, {})
    backend.open_training(training["id"])
    backend.open_pool(pool["id"])
    tid, worker = training["id"], "w1"
    assert _offers(backend, worker)[int(pool["id"])] == 0  # untrained: no work yet
    _train_once(backend, tid, worker, [])    # wrong
    assert backend.training_score(tid, worker) is None  # one suite of two
    _train_once(backend, tid, worker, GOOD)  # right: 50 % over the attempt, enough for passing=50
    assert backend.training_score(tid, worker) == 50.0
    assert _offers(backend, worker) == {int(tid): 0, int(pool["id"]): 1}
    # a stricter pool: the worker failed it and may retry only after 2 (simulated) days
    backend.close_pool(pool["id"])
    strict = backend.create_pool(pool_spec(project["id"], tid, passing=90))
    backend.create_tasks({"pool_id": strict["id"], "input_values": {"image": "https://i/1.png"}}, {})
    backend.open_pool(strict["id"])
    backend.speed = 1.0  # 2 days of simulated time are 2 real days now
    assert _offers(backend, worker) == {int(tid): 0, int(strict["id"]): 0}
    backend.speed = 1e6  # ...and 0.17 s now
    backend.clock.advance(0.3)
    assert _offers(backend, worker)[int(tid)] == 1
    progress = backend.conn.execute("SELECT attempt, suites FROM training_progress WHERE user_id = ?",
                                    (worker,)).fetchone()
    assert tuple(progress) == (2, 0)


def test_training_skill_expires_after_the_pools_ttl(backend):
    project = backend.create_project(PROJECT)
    training = backend.create_training(training_spec(project["id"], training_tasks_in_task_suite_count=1))
    backend.create_tasks([training_task(training["id"], i) for i in range(3)], {"allow_defaults": "true"})
    pool = backend.create_pool(pool_spec(project["id"], training["id"], passing=50,
                                         training_config={"training_skill_ttl_days": 1}))
    backend.create_tasks({"pool_id": pool["id"], "input_values": {"image": "https://i/0.png"}}, {})
    backend.open_training(training["id"])
    backend.open_pool(pool["id"])
    backend.speed = 1.0  # a day is a day
    _train_once(backend, training["id"], "w1", GOOD)
    assert _offers(backend, "w1") == {int(training["id"]): 0, int(pool["id"]): 1}
    backend.speed = 1e6  # a day is 0.09 s: the skill runs out, the worker trains again (no retry delay set)
    backend.clock.advance(0.3)
    assert _offers(backend, "w1") == {int(training["id"]): 1, int(pool["id"]): 0}


def test_trainings_through_toloka_kit(tmp_path):
    import toloka.client as toloka

    server = start_local_toloka(tmp_path, TOKEN, workers=8, speed=2000, seed=1, crowd_module=FAKE)
    try:
        client = server.client()
        project = fake.kit_project(client)
        training = client.create_training(toloka.Training(
            project_id=project.id, private_name="Training v0", may_contain_adult_content=False,
            assignment_max_duration_seconds=600, mix_tasks_in_creation_order=True, shuffle_tasks_in_task_suite=True,
            training_tasks_in_task_suite_count=2, task_suites_required_to_pass=1, retry_training_after_days=7,
            inherited_instructions=False, public_instructions=""))
        assert training.status == toloka.Training.Status.CLOSED and training.retry_training_after_days == 7
        assert [t.id for t in client.get_trainings(project_id=project.id)] == [training.id]
        training.private_name = "Training"
        training.public_instructions = "Outline every sign."
        training = client.update_training(training.id, training)
        assert client.get_training(training.id).public_instructions == "Outline every sign."
        tasks = [toloka.Task(pool_id=training.id, input_values={"image": f"https://t/{i}.png"},
                             known_solutions=[toloka.task.BaseTask.KnownSolution(output_values={"result": GOOD})],
                             message_on_unknown_solution="Outline the sign", infinite_overlap=True) for i in range(4)]
        created = client.create_tasks(tasks, allow_defaults=True)
        assert len(created.items) == 4
        with pytest.raises(toloka.exceptions.ValidationApiError):
            client.create_tasks([toloka.Task(pool_id=training.id, input_values={"image": "https://t/x.png"})])
        assert client.open_training(training.id).status == toloka.Training.Status.OPEN
        pool = fake.kit_pool(project.id)
        pool.quality_control.training_requirement = toloka.quality_control.QualityControl.TrainingRequirement(
            training_pool_id=training.id, training_passing_skill_value=80)
        pool = client.create_pool(pool)
        assert pool.quality_control.training_requirement.training_pool_id == training.id
        client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"image": f"https://i/{i}.png"})
                             for i in range(10)], allow_defaults=True, open_pool=True)
        deadline = time.monotonic() + 60  # a condition wait: only a stuck pool reaches it
        while time.monotonic() < deadline:
            done = [a for a in client.get_assignments(pool_id=pool.id) if a.status.value == "ACCEPTED"]
            if len(done) == 10:
                break
            time.sleep(0.1)
        assert len(done) == 10
        trained = list(client.get_assignments(pool_id=training.id))
        assert trained and all(a.pool_id == training.id and a.reward == 0 for a in trained)
        failed = {a.user_id for a in trained if a.first_declined_solution_attempt}
        assert failed == {"f04", "f08"}
        assert not failed & {a.user_id for a in done}
        assert [p.id for p in client.get_pools(project_id=project.id)] == [pool.id]
        with pytest.raises(toloka.exceptions.ValidationApiError):
            bad = client.get_pool(pool.id)
            bad.quality_control.training_requirement.training_pool_id = None
            client.update_pool(pool.id, bad)
        closed = client.close_training(training.id)
        assert closed.status == toloka.Training.Status.CLOSED
        clone = client.clone_training(training.id)
        assert clone.id != training.id and clone.private_name == "Training"
        client.archive_training(clone.id)
        assert client.get_training(clone.id).status == toloka.Training.Status.ARCHIVED
    finally:
        server.stop()
