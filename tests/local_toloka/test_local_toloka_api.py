"""The local Toloka over real HTTP, driven by toloka-kit's TolokaClient against a server subprocess.

The crowd is the deterministic fake in ``helpers_local_toloka`` (seed 1: workers f04, f08, f12 are
"bad" and draw nothing; verifiers say OK iff the outline list is not empty), so every expected
number below is hand-computable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal

import pytest
import requests
import toloka.client as toloka
from toloka.client.exceptions import (AuthenticationApiError, DoesNotExistApiError, IncorrectActionsApiError,
                                      ValidationApiError)
from toloka.streaming import AssignmentsObserver, Pipeline

from helpers_local_toloka import start_local_toloka

pytestmark = pytest.mark.server  # every test talks to a local Toloka subprocess

TOKEN = "local-test-token-7f3a"
FAKE = "helpers_local_toloka"

DETECTION_PROJECT = {
    "public_name": "Outline all traffic signs", "public_description": "Boxes around signs",
    "assignments_issuing_type": "AUTOMATED",
    "task_spec": {"input_spec": {"image": {"type": "url", "required": True}},
                  "output_spec": {"result": {"type": "json", "required": True}},
                  "view_spec": {"type": "classic", "markup": "{{field type=\"image-annotation\" name=\"result\"}}",
                                "script": "", "styles": ""}}}
VERIFICATION_PROJECT = {
    "public_name": "Are all signs outlined?", "public_description": "Judge boxes",
    "task_spec": {"input_spec": {"image": {"type": "url", "required": True},
                                 "outlines": {"type": "json", "required": True},
                                 "assignment_id": {"type": "string", "required": True}},
                  "output_spec": {"verdict": {"type": "string", "required": True, "allowed_values": ["OK", "BAD"]},
                                  "reason": {"type": "string", "required": False}},
                  "view_spec": {"type": "classic", "markup": "{{img src=image}}", "script": "", "styles": ""}}}


def _will_expire():
    return (dt.datetime.utcnow() + dt.timedelta(days=2)).isoformat()


def detection_pool(project_id, skill_id, **extra):
    return {"project_id": project_id, "private_name": "detection", "reward_per_assignment": 0.02,
            "assignment_max_duration_seconds": 600, "will_expire": _will_expire(),
            "auto_accept_solutions": False, "auto_accept_period_day": 7,
            "defaults": {"default_overlap_for_new_task_suites": 1, "default_overlap_for_new_tasks": 1},
            "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0},
            "filter": {"and": [{"or": [{"category": "profile", "key": "languages", "operator": "IN", "value": "EN"}]}]},
            "quality_control": {"configs": [
                {"collector_config": {"type": "ANSWER_COUNT"},
                 "rules": [{"conditions": [{"key": "assignments_accepted_count", "operator": "GT", "value": 0}],
                            "action": {"type": "SET_SKILL", "parameters": {"skill_id": skill_id, "skill_value": 1}}}]},
                {"collector_config": {"type": "ASSIGNMENTS_ASSESSMENT"},
                 "rules": [{"conditions": [{"key": "assessment_event", "operator": "EQ", "value": "REJECT"}],
                            "action": {"type": "CHANGE_OVERLAP", "parameters": {"delta": 1, "open_pool": True}}}]}]},
            **extra}


def verification_pool(project_id, drawer_skill, verifier_skill):
    return {"project_id": project_id, "private_name": "verification", "reward_per_assignment": 0.01,
            "assignment_max_duration_seconds": 600, "will_expire": _will_expire(),
            "defaults": {"default_overlap_for_new_task_suites": 3},
            "mixer_config": {"real_tasks_count": 2, "golden_tasks_count": 0, "training_tasks_count": 0,
                             "force_last_assignment": True},
            "filter": {"and": [{"or": [{"category": "profile", "key": "languages", "operator": "IN", "value": "EN"}]},
                               {"or": [{"category": "skill", "key": drawer_skill, "operator": "EQ", "value": None}]}]},
            "quality_control": {"configs": [
                {"collector_config": {"type": "MAJORITY_VOTE", "parameters": {"answer_threshold": 2}},
                 "rules": [{"conditions": [{"key": "total_answers_count", "operator": "GT", "value": 0}],
                            "action": {"type": "SET_SKILL_FROM_OUTPUT_FIELD",
                                       "parameters": {"skill_id": verifier_skill,
                                                      "from_field": "correct_answers_rate"}}}]}]}}


@pytest.fixture()
def server(tmp_path):
    handle = start_local_toloka(tmp_path, TOKEN, workers=12, speed=600, seed=1, crowd_module=FAKE)
    yield handle
    handle.stop()


def _wait(predicate, timeout=90.0, period=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    raise AssertionError("condition not reached in time")


def _structure(client, cls, data):
    from toloka.client import structure
    return structure(data, cls)


def test_detection_verification_streaming_loop(server):
    client = server.client()
    start_balance = client.get_requester().balance
    det_project = client.create_project(_structure(client, toloka.Project, DETECTION_PROJECT))
    ver_project = client.create_project(_structure(client, toloka.Project, VERIFICATION_PROJECT))
    drawer = client.create_skill(name="drawer", hidden=True, public_requester_description={"EN": "drew"})
    verifier = client.create_skill(name="verifier", hidden=True, public_requester_description={"EN": "judged"})
    assert next(client.get_skills(name="drawer")).id == drawer.id
    det_pool = client.create_pool(_structure(client, toloka.Pool, detection_pool(det_project.id, drawer.id)))
    ver_pool = client.create_pool(_structure(client, toloka.Pool, verification_pool(ver_project.id, drawer.id,
                                                                                 verifier.id)))
    assert det_pool.status == toloka.Pool.Status.CLOSED and ver_pool.auto_accept_solutions is True

    images = [f"https://img.example/{i}.jpg" for i in range(4)]
    created = client.create_tasks([toloka.Task(pool_id=det_pool.id, input_values={"image": url}) for url in images],
                                  allow_defaults=True)  # async by default
    assert sorted(t.input_values["image"] for t in created.items.values()) == images
    ids = [created.items[str(i)].id for i in range(4)]
    assert ids == sorted(ids) and len({len(i) for i in ids}) == 1  # fixed width, creation order
    client.open_pool(det_pool.id)

    verdicts: dict[str, list[str]] = {}
    decided: dict[str, str] = {}

    def on_detection_submitted(events):
        tasks = [toloka.Task(pool_id=ver_pool.id, input_values={
            "image": e.assignment.tasks[0].input_values["image"],
            "outlines": e.assignment.solutions[0].output_values["result"], "assignment_id": e.assignment.id})
            for e in events]
        client.create_tasks(tasks, allow_defaults=True, open_pool=True)

    def on_verification_accepted(events):
        for event in events:
            for task, solution in zip(event.assignment.tasks, event.assignment.solutions):
                verdicts.setdefault(task.input_values["assignment_id"], []).append(solution.output_values["verdict"])
        for assignment_id, votes in verdicts.items():
            if assignment_id in decided or len(votes) < 3:
                continue
            if votes.count("OK") > len(votes) / 2:
                client.accept_assignment(assignment_id, "Well done!")
                decided[assignment_id] = "OK"
            else:
                client.reject_assignment(assignment_id, "The signs were not outlined.")
                decided[assignment_id] = "BAD"

    pipeline = Pipeline(period=dt.timedelta(seconds=1))
    old_sleep = Pipeline.MIN_SLEEP_SECONDS
    Pipeline.MIN_SLEEP_SECONDS = 0.2
    try:
        pipeline.register(AssignmentsObserver(client, det_pool.id, cursor_time_lag=dt.timedelta(0))).on_submitted(
            on_detection_submitted)
        pipeline.register(AssignmentsObserver(client, ver_pool.id, cursor_time_lag=dt.timedelta(0))).on_accepted(
            on_verification_accepted)
        asyncio.run(asyncio.wait_for(pipeline.run(), timeout=60))
    finally:
        Pipeline.MIN_SLEEP_SECONDS = old_sleep

    det = client.get_pool(det_pool.id)
    assert det.status == toloka.Pool.Status.CLOSED and det.last_close_reason == toloka.Pool.CloseReason.COMPLETED
    assert client.get_pool(ver_pool.id).last_close_reason == toloka.Pool.CloseReason.COMPLETED
    detections = list(client.get_assignments(pool_id=det_pool.id))
    accepted = [a for a in detections if a.status == toloka.Assignment.ACCEPTED]
    rejected = [a for a in detections if a.status == toloka.Assignment.REJECTED]
    # every image ends with exactly one accepted (non-empty) outline; each rejection was a "bad" worker's
    assert sorted(a.tasks[0].input_values["image"] for a in accepted) == images
    assert all(a.solutions[0].output_values["result"] for a in accepted)
    assert all(a.user_id in {"f04", "f08", "f12"} and a.solutions[0].output_values["result"] == [] for a in rejected)
    assert len(detections) == 4 + len(rejected)
    for a in rejected:  # CHANGE_OVERLAP gave the rejected image one more slot per rejection (two bad
        # workers may draw the same image in turn, depending on who is idle when the slot comes back)
        rejections = sum(r.tasks[0].id == a.tasks[0].id for r in rejected)
        assert client.get_task(a.tasks[0].id).overlap == 1 + rejections
    # the drawer skill (SET_SKILL on submit) keeps a worker out of verification from then on
    drawers = {a.user_id for a in detections}
    verifications = list(client.get_assignments(pool_id=ver_pool.id))
    assert verifications
    for v in verifications:
        assert not any(d.user_id == v.user_id and d.submitted <= v.created for d in detections)
    assert {s.user_id for s in client.get_user_skills(skill_id=drawer.id)} == drawers
    verifier_skill = {s.user_id: s.exact_value for s in client.get_user_skills(skill_id=verifier.id)}
    assert verifier_skill and all(v == Decimal(100) for v in verifier_skill.values())
    # one worker never got the same task twice
    seen = [(a.user_id, t.id) for a in verifications + detections for t in a.tasks]
    assert len(seen) == len(set(seen))
    # money: reward + max(30 %, $0.005) fee per accepted assignment
    n_ver = sum(a.status == toloka.Assignment.ACCEPTED for a in verifications)
    expected = len(accepted) * (Decimal("0.02") + Decimal("0.006")) + n_ver * (Decimal("0.01") + Decimal("0.005"))
    assert start_balance - client.get_requester().balance == expected

    df = client.get_assignments_df(det_pool.id, status=["APPROVED", "REJECTED"])
    assert len(df) == len(detections)
    assert set(df["ASSIGNMENT:status"]) <= {"APPROVED", "REJECTED"}
    assert (df["ASSIGNMENT:status"] == "APPROVED").sum() == 4
    op = client.get_analytics([toloka.analytics_request.CompletionPercentagePoolAnalytics(subject_id=det_pool.id)])
    op = client.wait_operation(op)
    assert op.details["value"][0]["result"]["value"] == 100

    assert client.archive_pool(ver_pool.id).status == toloka.Pool.Status.ARCHIVED
    if not rejected:
        client.archive_pool(det_pool.id)
        assert client.archive_project(det_project.id).status == toloka.Project.ProjectStatus.ARCHIVED
        return
    # a rejection may be appealed for 9 days: until then the detection pool, and so its project, stay out
    with pytest.raises(IncorrectActionsApiError) as err:
        client.archive_pool(det_pool.id)
    assert err.value.code == "THERE_IS_REJECTED_ASSIGNMENT"
    with pytest.raises(IncorrectActionsApiError) as err:
        client.archive_project(det_project.id)
    assert err.value.code == "UNARCHIVED_POOLS_CONFLICT"


def test_errors_map_to_toloka_kit_exceptions(server, tmp_path):
    client = server.client()
    with pytest.raises(DoesNotExistApiError):
        client.get_pool("987654")
    with pytest.raises(DoesNotExistApiError):
        client.get_assignment("0000000001--000000000000000000000999")
    with pytest.raises(AuthenticationApiError):
        toloka.TolokaClient("wrong-token", url=server.url, retries=0).get_requester()
    project = client.create_project(_structure(client, toloka.Project, DETECTION_PROJECT))
    skill = client.create_skill(name="s")
    pool = client.create_pool(_structure(client, toloka.Pool, detection_pool(project.id, skill.id)))
    # a task without its required input field: the field is named
    with pytest.raises(ValidationApiError) as err:
        client.create_task(toloka.Task(pool_id=pool.id, input_values={}), allow_defaults=True)
    assert "input_values.image" in str(err.value.payload)
    with pytest.raises(ValidationApiError) as err:
        client.create_task(toloka.Task(pool_id=pool.id, input_values={}), allow_defaults=True, async_mode=False)
    assert err.value.invalid_fields == ["input_values.image"]
    mixed = client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"image": "https://a/1.png"}),
                                 toloka.Task(pool_id=pool.id, input_values={"image": "not a url"})],
                                allow_defaults=True, skip_invalid_items=True)
    assert list(mixed.items) == ["0"] and mixed.validation_errors["1"]["input_values.image"].code == "INVALID_URL_SYNTAX"
    # wrong transitions
    with pytest.raises(IncorrectActionsApiError) as err:
        client.archive_project(project.id)
    assert err.value.code == "UNARCHIVED_POOLS_CONFLICT"
    client.open_pool(pool.id)
    with pytest.raises(IncorrectActionsApiError) as err:
        client.archive_pool(pool.id)
    assert err.value.code == "INAPPROPRIATE_STATUS"
    assignment = _wait(lambda: next(client.get_assignments(pool_id=pool.id, status="SUBMITTED"), None))
    client.accept_assignment(assignment.id, "ok")
    with pytest.raises(IncorrectActionsApiError) as err:
        client.reject_assignment(assignment.id, "too late")
    assert err.value.code == "INAPPROPRIATE_STATUS"
    # empty pool and missing mixer config
    empty = client.create_pool(_structure(client, toloka.Pool, detection_pool(project.id, skill.id)))
    with pytest.raises(IncorrectActionsApiError) as err:
        client.open_pool(empty.id)
    assert err.value.code == "EMPTY_POOL"
    no_mixer = detection_pool(project.id, skill.id)
    del no_mixer["mixer_config"]
    no_mixer = client.create_pool(_structure(client, toloka.Pool, no_mixer))
    client.create_tasks([toloka.Task(pool_id=no_mixer.id, input_values={"image": "https://a/2.png"})],
                        allow_defaults=True)
    with pytest.raises(IncorrectActionsApiError) as err:
        client.open_pool(no_mixer.id)
    assert err.value.code == "MIXER_CONFIG_REQUIRED"
    # clone: an empty closed pool with the same settings; close for update: reason FOR_UPDATE
    clone = client.clone_pool(pool.id)
    assert clone.id != pool.id and clone.status == toloka.Pool.Status.CLOSED
    assert clone.reward_per_assignment == pool.reward_per_assignment and not list(client.get_tasks(pool_id=clone.id))
    server.admin("POST", "/_local/crowd", {"paused": True})  # nobody works the clone: it stays open
    client.create_tasks([toloka.Task(pool_id=clone.id, input_values={"image": "https://a/3.png"})],
                        allow_defaults=True, open_pool=True)
    assert client.get_pool(clone.id).status == toloka.Pool.Status.OPEN
    client.close_pool_for_update(clone.id)
    assert client.get_pool(clone.id).last_close_reason == toloka.Pool.CloseReason.FOR_UPDATE
    server.admin("POST", "/_local/crowd", {"paused": False})
    # a pool without a required setting names it
    bad = detection_pool(project.id, skill.id)
    del bad["reward_per_assignment"]
    with pytest.raises(ValidationApiError) as err:
        client.create_pool(_structure(client, toloka.Pool, bad))
    assert err.value.invalid_fields == ["reward_per_assignment"]


def test_raw_bad_input_never_500(server):
    headers = {"Authorization": f"OAuth {TOKEN}", "Content-Type": "application/json"}
    url = server.url + "/api/v1"

    def call(method, path, **kw):
        response = requests.request(method, url + path, headers=headers, timeout=10, **kw)
        return response.status_code, response.json() if response.content else None

    status, body = call("POST", "/projects", data=b"{not json")
    assert (status, body["code"]) == (400, "VALIDATION_ERROR") and set(body) == {"request_id", "code", "message",
                                                                                   "payload"}
    assert call("GET", "/pools/not-a-number")[1]["code"] == "DOES_NOT_EXIST"
    assert call("GET", "/tasks/nope")[0] == 404
    assert call("GET", "/no/such/path")[0] == 404
    assert call("GET", "/assignments?pool_id=1&submitted_gte=yesterday")[1]["payload"] == {
        "submitted_gte": {"code": "INVALID_DATE_TIME_SYNTAX", "message": "Invalid value 'yesterday'"}}
    assert call("GET", "/assignments")[1]["code"] == "VALIDATION_ERROR"  # pool_id/task_id required
    assert call("GET", "/pools?sort=bogus")[0] == 400
    assert call("GET", "/tasks?limit=0")[0] == 400
    assert call("POST", "/pools", json=[1, 2])[0] == 400
    assert call("PATCH", "/assignments/x", json={"status": "ACCEPTED"})[0] == 404
    assert call("POST", "/tasks", json="just a string")[0] == 400
    assert call("DELETE", "/pools/1")[0] == 405
    stats = server.admin("GET", "/_local/stats")
    assert "500" not in stats["statuses"] and stats["statuses"]["400"] >= 6
    no_auth = requests.get(url + "/requester", timeout=10)
    assert no_auth.status_code == 401 and no_auth.json()["code"] == "AUTHENTICATION_ERROR"
    api_key = requests.get(url + "/requester", headers={"Authorization": f"ApiKey {TOKEN}"}, timeout=10)
    assert api_key.status_code == 200


def test_rate_limit_concurrency_and_clean_shutdown(server):
    from concurrent.futures import ThreadPoolExecutor

    headers = {"Authorization": f"OAuth {TOKEN}"}
    # 1 request/s: requests in a row get at most one through per second they span (plus the first), however
    # slow the machine; asked until 6 are refused
    server.admin("POST", "/_local/faults", {"rate_limit": 1})
    answers, started = [], time.monotonic()
    while sum(r.status_code == 429 for r in answers) < 6 and len(answers) < 500:
        answers.append(requests.get(server.url + "/api/v1/requester", headers=headers, timeout=10))
    spanned = time.monotonic() - started
    limited = [r for r in answers if r.status_code == 429]
    assert len(limited) == 6 and len(answers) - len(limited) <= spanned + 1, (len(answers), spanned)
    assert {r.status_code for r in answers} == {200, 429}
    for r in limited:  # toloka-kit 1.2.3 crashes on Retry-After or payload.interval=MIN
        assert "Retry-After" not in r.headers and r.json()["code"] == "TOO_MANY_REQUESTS"
        assert not (r.json()["payload"] or {}).get("interval")
    server.admin("POST", "/_local/faults", {"rate_limit": 0})

    client = server.client()
    project = client.create_project(_structure(client, toloka.Project, DETECTION_PROJECT))
    pool = client.create_pool(_structure(client, toloka.Pool, detection_pool(project.id, "1")))

    def upload(i):
        batch = [toloka.Task(pool_id=pool.id, input_values={"image": f"https://c/{i}-{j}.png"}) for j in range(25)]
        created = client.create_tasks(batch, allow_defaults=True)
        list(client.get_tasks(pool_id=pool.id))
        return len(created.items)

    with ThreadPoolExecutor(8) as pool_of_threads:
        assert sum(pool_of_threads.map(upload, range(16))) == 400
    ids = [t.id for t in client.get_tasks(pool_id=pool.id)]
    assert len(ids) == len(set(ids)) == 400
    assert "500" not in server.admin("GET", "/_local/stats")["statuses"]
    assert server.stop() == 0  # SIGTERM: clean exit


def test_kill_9_and_restart_loses_nothing(tmp_path):
    server = start_local_toloka(tmp_path, TOKEN, workers=6, speed=100, seed=2, crowd_module=FAKE)
    try:
        client = server.client()
        project = client.create_project(_structure(client, toloka.Project, DETECTION_PROJECT))
        skill = client.create_skill(name="s")
        spec = detection_pool(project.id, skill.id, auto_accept_solutions=True)
        spec["defaults"] = {"default_overlap_for_new_task_suites": 2}
        spec["quality_control"] = {"configs": []}
        pool = client.create_pool(_structure(client, toloka.Pool, spec))
        created = client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"image": f"https://i/{i}.jpg"})
                                       for i in range(12)], allow_defaults=True)
        client.open_pool(pool.id)
        _wait(lambda: len(list(client.get_assignments(pool_id=pool.id, status="ACCEPTED"))) >= 4)
        before = {a.id: a for a in client.get_assignments(pool_id=pool.id)}
        balance_before = client.get_requester().balance
        server.kill()
    finally:
        server.kill()
    server = start_local_toloka(tmp_path, TOKEN, state_dir=server.state_dir, workers=6, speed=100, seed=2,
                                crowd_module=FAKE)
    try:
        client = server.client()
        assert {t.id for t in client.get_tasks(pool_id=pool.id)} == {t.id for t in created.items.values()}
        after = {a.id: a for a in client.get_assignments(pool_id=pool.id)}
        assert set(before) <= set(after)
        for aid, a in before.items():  # nothing acknowledged went back in time
            if a.status == toloka.Assignment.ACCEPTED:
                assert after[aid].status == a.status and after[aid].accepted == a.accepted
                assert after[aid].solutions == a.solutions
        assert client.get_requester().balance <= balance_before
        # the crowd carries on after the restart and finishes with exact overlap
        _wait(lambda: client.get_pool(pool.id).status == toloka.Pool.Status.CLOSED, timeout=90)
        final = list(client.get_assignments(pool_id=pool.id, status="ACCEPTED"))
        per_task = {}
        for a in final:
            per_task[a.tasks[0].id] = per_task.get(a.tasks[0].id, 0) + 1
        assert per_task == {t.id: 2 for t in created.items.values()}
        spent = Decimal(1000) - client.get_requester().balance
        assert spent == len(final) * (Decimal("0.02") + Decimal("0.006"))
    finally:
        server.stop()


def test_injected_500s_are_absorbed_by_client_retries(tmp_path):
    server = start_local_toloka(tmp_path, TOKEN, workers=4, speed=600, seed=2, crowd_module=FAKE,
                                fault_error_rate=0.3, fault_seed=7, fault_max_streak=2)
    # toloka-kit's default retry policy (statuses, methods, count) with short sleeps: its backoff factor 2
    # would spend about 8 s sleeping here without testing anything more
    default = toloka.TolokaClient._default_retryer_factory(3, "MIN")
    try:
        client = server.client(retryer_factory=lambda: default.new(backoff_factor=0.05))
        project = client.create_project(_structure(client, toloka.Project, DETECTION_PROJECT))
        skill = client.create_skill(name="s")
        spec = detection_pool(project.id, skill.id, auto_accept_solutions=True)
        spec["quality_control"] = {"configs": []}
        pool = client.create_pool(_structure(client, toloka.Pool, spec))
        client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"image": f"https://i/{i}.jpg"})
                             for i in range(3)], allow_defaults=True)
        client.open_pool(pool.id)
        _wait(lambda: client.get_pool(pool.id).status == toloka.Pool.Status.CLOSED, timeout=60, period=1.0)
        assert len(client.get_assignments_df(pool.id)) == 3
        injected = server.admin("GET", "/_local/stats")["injected_faults"]
        assert sum(injected.values()) > 0 and set(injected) <= {"500", "503"}
    finally:
        server.stop()


def test_a_lost_reply_to_a_write_makes_the_retry_write_again(server):
    """``lost_reply_rate``: the write is made, the reply is a 503, toloka-kit's retry writes again: what a
    requester's code must survive (a create that is not idempotent leaves two objects)."""
    client = server.client()
    before = {s.id for s in client.get_skills()}
    server.admin("POST", "/_local/faults", json={"lost_reply_rate": 1, "max_streak": 1})
    try:
        kept = client.create_skill(name="lost-reply")
        listed = [s for s in client.get_skills() if s.id not in before]  # a GET is never a lost reply
    finally:
        server.admin("POST", "/_local/faults", json={"lost_reply_rate": 0, "max_streak": 3})
    assert [s.name for s in listed] == ["lost-reply", "lost-reply"]
    assert kept.id == max(s.id for s in listed)  # the client holds the retry's object, the first is orphaned
    injected = server.admin("GET", "/_local/stats")["injected_faults"]
    assert injected.get("503", 0) >= 1


def test_one_server_per_state_folder(server, tmp_path):
    with pytest.raises(RuntimeError, match="another local Toloka server is using this state folder"):
        start_local_toloka(tmp_path / "second", TOKEN, state_dir=server.state_dir, crowd_module=FAKE)


def test_project_and_skill_edits_through_toloka_kit(server):
    from toloka.client.project import ProjectUpdateDifferenceLevel as Level

    client = server.client()
    project = client.create_project(_structure(client, toloka.Project, {**DETECTION_PROJECT,
                                                                         "private_comment": "key-1"}))
    pool = client.create_pool(_structure(client, toloka.Pool, detection_pool(project.id, "1")))
    project.public_instructions = "<p>Box every sign.</p>"
    assert client.check_update_project_for_major_version_change(project.id, project) == Level.NON_BREAKING_CHANGE
    updated = client.update_project(project.id, project)
    assert isinstance(updated, toloka.Project) and updated.id == project.id
    again = client.get_project(project.id)
    assert again.public_instructions == "<p>Box every sign.</p>" and again.private_comment == "key-1"
    assert client.check_update_project_for_major_version_change(project.id, again) == Level.EQUAL

    again.task_spec.output_spec["comment"] = toloka.project.StringSpec(required=False)
    assert client.check_update_project_for_major_version_change(project.id, again) == Level.BREAKING_CHANGE
    client.update_project(project.id, again)
    assert "comment" in client.get_project(project.id).task_spec.output_spec
    # the pool made before the breaking change still takes tasks of its version
    client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"image": "https://example.com/a.png"})],
                        allow_defaults=True)

    with pytest.raises(DoesNotExistApiError):
        client.update_project("987654", again)
    again.public_name = ""
    with pytest.raises(ValidationApiError):
        client.update_project(project.id, again)

    skill = client.create_skill(name="drawer-x", hidden=True, public_requester_description={"EN": "drew"})
    skill.name, skill.public_requester_description = "drawer-y", {"EN": "drew boxes"}
    assert client.update_skill(skill.id, skill).name == "drawer-y"
    fresh = client.get_skill(skill.id)
    assert fresh.name == "drawer-y" and fresh.public_requester_description == {"EN": "drew boxes"}
    stats = server.admin("GET", "/_local/stats")["requests"]
    assert stats["PUT update_project"] == 4 and stats["PUT update_skill"] == 1  # 2 applied, one 404, one 400
