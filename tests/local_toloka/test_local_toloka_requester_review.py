"""The requester's own hand on the local Toloka, as Toloka's API documents it.

* Review (OpenAPI ``patchAssignment``; guide "Reviewing Tolokers' responses"): SUBMITTED -> ACCEPTED or
  REJECTED (a rejection needs a ``public_comment`` of at most 2048 characters), REJECTED -> ACCEPTED
  within the 9 days a Toloker may appeal; accepting charges reward + fee (``max(30 %, $0.005)``), a
  rejection charges nothing and earns the worker nothing.
* Review period (``auto_accept_period_day``, "Acceptance procedure" 1.3): what is not decided within it
  is accepted when it ends; a decision after that is refused.
* Pool edits (``updatePool``: "The pool can't be edited if it's open"; ``patchPool``: priority only, on
  an open or closed pool, 409 with an empty body when archived; ``closePoolForUpdate``: a pool closed for
  update and not opened again opens by itself in 15 minutes).
* Archive (``archivePool``, ``archiveProject``; error codes of toloka-kit's ``InternalErrorCodes``): a
  pool must be CLOSED, with no suite in progress, nothing awaiting review and no rejection younger than
  9 days; a project only once all its pools are archived; archived objects are read-only.

Rule-level tests call the backend (no HTTP); the toloka-kit tests serve the same backend over real HTTP.
Work is issued and submitted through the backend's own crowd calls at chosen clock times, so every
period below is hand-computed: at speed 86400 (simulated seconds per real second) a day lasts 1 s.
"""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import httpx
import pytest
import requests
import toloka.client as toloka
from toloka.client.exceptions import IncorrectActionsApiError, ValidationApiError

import helpers_local_toloka as fake
from crowdboxes.local_toloka.db import ManualClock, fmt_ts, parse_ts
from crowdboxes.local_toloka.exceptions import EmptyConflict, IncorrectAction, ValidationError
from crowdboxes.local_toloka.models import Backend
from crowdboxes.local_toloka.scheduler import Scheduler
from crowdboxes.local_toloka.server import LocalToloka, serve

TOKEN = "review-test-token"
DAY = 1.0  # real seconds per simulated day at SPEED
SPEED = 86400.0
REWARD = Decimal("0.02")
COST = Decimal("0.026")  # 0.02 + max(0.3 * 0.02, 0.005)
PROJECT = {"public_name": "p", "task_spec": {
    "input_spec": {"image": {"type": "url", "required": True}},
    "output_spec": {"result": {"type": "json"}},
    "view_spec": {"type": "classic", "markup": "x"}}}


@pytest.fixture()
def backend(tmp_path):
    """A backend on a manual clock where a simulated day lasts one real second."""
    b = Backend(tmp_path / "state", speed=SPEED, first_reader_seconds=0, reader_hold_seconds=0,
                clock=ManualClock(dt.datetime(2030, 1, 1)), balance="10")
    yield b
    b.close()


@pytest.fixture()
def client(backend):
    """toloka-kit over real HTTP to ``backend`` (served in this process)."""
    server = serve(LocalToloka(backend, TOKEN))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield toloka.TolokaClient(TOKEN, url=backend.base_url, timeout=30.0, retries=0)
    server.shutdown()
    thread.join(5)


def pool_spec(project_id, backend, **extra):
    return {"project_id": project_id, "private_name": "review", "reward_per_assignment": float(REWARD),
            "assignment_max_duration_seconds": 600, "will_expire": fmt_ts(backend.now() + dt.timedelta(days=365)),
            "auto_accept_solutions": False, "auto_accept_period_day": 7,
            "defaults": {"default_overlap_for_new_task_suites": 1},
            "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}, **extra}


def open_pool(backend, n_tasks=3, **extra):
    """A project and an OPEN pool of ``n_tasks`` one-task suites; ``(project, pool)``."""
    project = backend.create_project(PROJECT)
    pool = backend.create_pool(pool_spec(project["id"], backend, **extra))
    backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": f"https://i/{i}.png"}}
                          for i in range(n_tasks)], {"allow_defaults": "true"})
    backend.open_pool(pool["id"])
    return project, pool


def issue(backend, pool_id, workers):
    """One ACTIVE suite per worker id in ``workers``, issued now; their assignment ids."""
    with backend.transaction():
        row, doc = next((r, d) for r, d in backend.open_pools() if str(r["id"]) == str(pool_id))
        return [backend.issue_suite(row, doc, w, backend.suite_tasks(row, doc, w)) for w in workers]


def submit(backend, pool_id, workers):
    """Each worker takes a suite and submits it now; the assignment ids, in ``workers`` order."""
    ids = issue(backend, pool_id, workers)
    for item in backend.unplanned_active():
        if item["id"] in ids:
            backend.set_plan(item["id"], "SUBMIT", [{"result": [1]}], 5.0, backend.now())
    with backend.transaction():
        backend.finish_due(backend.now())
    return ids


def balance(backend):
    return Decimal(str(backend.get_requester()["balance"]))


def charges(backend):
    rows = backend.conn.execute("SELECT assignment_id, amount FROM charges ORDER BY seq")
    return [(r[0], Decimal(r[1])) for r in rows]


def refusal(call, code):
    """The IncorrectAction ``call()`` raises; its code must be ``code``."""
    with pytest.raises(IncorrectAction) as err:
        call()
    assert err.value.code == code, err.value
    assert err.value.status == 409
    return err.value


# ---- review: rules ------------------------------------------------------------------------------------

def test_accept_pays_reward_and_fee_reject_pays_nothing(backend):
    _, pool = open_pool(backend)
    good, bad, waiting = submit(backend, pool["id"], ["w1", "w2", "w3"])
    assert {backend.get_assignment(a)["status"] for a in (good, bad, waiting)} == {"SUBMITTED"}
    assert balance(backend) == Decimal("10") and charges(backend) == []  # nothing is paid on submit

    accepted = backend.patch_assignment(good, {"status": "ACCEPTED", "public_comment": "Well done"})
    rejected = backend.patch_assignment(bad, {"status": "REJECTED", "public_comment": "The stop sign has no box"})
    assert accepted["status"] == "ACCEPTED" and accepted["accepted"] == fmt_ts(backend.now())[:23]
    assert rejected["status"] == "REJECTED" and rejected["rejected"] == fmt_ts(backend.now())[:23]
    assert backend.get_assignment(bad)["public_comment"] == "The stop sign has no box"
    assert backend.get_assignment(good)["public_comment"] == "Well done"
    assert balance(backend) == Decimal("10") - COST  # 9.974
    assert charges(backend) == [(good, COST)]
    assert backend.earnings() == {"workers": {"w1": {"accepted": 1, "rejected": 0, "earned": 0.02},
                                              "w2": {"accepted": 0, "rejected": 1, "earned": 0}},
                                  "requester": {"balance": 9.974, "charged": 0.026}}


def test_review_refusals_name_the_rule(backend):
    _, pool = open_pool(backend)
    first, second = submit(backend, pool["id"], ["w1", "w2"])
    for body, field, code in (({"status": "REJECTED"}, "public_comment", "VALUE_REQUIRED"),
                              ({"status": "REJECTED", "public_comment": "  "}, "public_comment", "VALUE_REQUIRED"),
                              ({"status": "REJECTED", "public_comment": "x" * 2049}, "public_comment",
                               "STRING_LENGTH_GREATER_THAN_MAX"),
                              ({"status": "ACCEPTED", "public_comment": 5}, "public_comment", "STRING_EXPECTED"),
                              ({"status": "SKIPPED", "public_comment": "x"}, "status", "VALUE_NOT_ALLOWED")):
        with pytest.raises(ValidationError) as err:
            backend.patch_assignment(first, body)
        assert err.value.payload[field]["code"] == code
    assert backend.get_assignment(first)["status"] == "SUBMITTED"
    backend.patch_assignment(first, {"status": "REJECTED", "public_comment": "x" * 2048})  # the maximum is allowed
    backend.patch_assignment(second, {"status": "ACCEPTED", "public_comment": "ok"})
    # decided once: an accepted one stays accepted, a rejected one is not rejected again
    err = refusal(lambda: backend.patch_assignment(second, {"status": "REJECTED", "public_comment": "no"}),
                  "INAPPROPRIATE_STATUS")
    assert err.payload == {"appropriate_statuses": ["SUBMITTED"]}
    refusal(lambda: backend.patch_assignment(second, {"status": "ACCEPTED", "public_comment": "ok"}),
            "INAPPROPRIATE_STATUS")
    refusal(lambda: backend.patch_assignment(first, {"status": "REJECTED", "public_comment": "again"}),
            "INAPPROPRIATE_STATUS")
    assert charges(backend) == [(second, COST)]


def test_a_rejection_can_be_reversed_for_nine_days(backend):
    _, pool = open_pool(backend)
    early, late = submit(backend, pool["id"], ["w1", "w2"])
    for a in (early, late):
        backend.patch_assignment(a, {"status": "REJECTED", "public_comment": "missed signs"})
    backend.clock.advance(9 * DAY - 0.01)  # the appeal is still open
    after = backend.patch_assignment(early, {"status": "ACCEPTED", "public_comment": "accepted on appeal"})
    assert after["status"] == "ACCEPTED" and after["public_comment"] == "accepted on appeal" and after["rejected"]
    assert charges(backend) == [(early, COST)]  # paid once accepted
    backend.clock.advance(0.02)  # 9 days and 0.01 s after the rejection
    err = refusal(lambda: backend.patch_assignment(late, {"status": "ACCEPTED", "public_comment": "too late"}),
                  "INAPPROPRIATE_STATUS")
    assert "9 days" in err.message
    assert backend.get_assignment(late)["status"] == "REJECTED" and charges(backend) == [(early, COST)]


def test_review_period_ends_in_an_automatic_acceptance(backend):
    _, pool = open_pool(backend, n_tasks=4, auto_accept_period_day=2)
    submitted_at = backend.now()
    decided, late, untouched, by_scheduler = submit(backend, pool["id"], ["w1", "w2", "w3", "w4"])
    backend.clock.advance(2 * DAY - 0.01)  # the last moment of the review period
    assert backend.patch_assignment(decided, {"status": "REJECTED", "public_comment": "wrong"})["status"] == "REJECTED"
    assert backend.get_assignment(late)["status"] == "SUBMITTED"
    backend.clock.advance(0.02)  # the period is over: what was not decided is accepted
    err = refusal(lambda: backend.patch_assignment(late, {"status": "REJECTED", "public_comment": "wrong"}),
                  "INAPPROPRIATE_STATUS")
    assert "review period ended" in err.message and "accepted automatically" in err.message
    got = backend.get_assignment(late)
    assert got["status"] == "ACCEPTED"
    assert parse_ts(got["accepted"]) >= submitted_at + dt.timedelta(seconds=2 * DAY)
    # without any request, the crowd's scheduler accepts the rest when their period ends
    with backend.transaction():
        assert backend.auto_accept_due(backend.now()) == 2
    assert {backend.get_assignment(a)["status"] for a in (untouched, by_scheduler)} == {"ACCEPTED"}
    assert sorted(a for a, _ in charges(backend)) == sorted([late, untouched, by_scheduler])
    assert balance(backend) == Decimal("10") - 3 * COST


# ---- pool edits: rules ------------------------------------------------------------------------------------

def test_an_open_pool_is_edited_only_after_closing(backend):
    _, pool = open_pool(backend)
    (before,) = submit(backend, pool["id"], ["w1"])
    raised = {**backend.get_pool(pool["id"]), "reward_per_assignment": 0.05}
    err = refusal(lambda: backend.update_pool(pool["id"], raised), "INAPPROPRIATE_STATUS")
    assert err.payload == {"appropriate_statuses": ["CLOSED"]}
    assert backend.get_pool(pool["id"])["reward_per_assignment"] == 0.02
    # PATCH: priority only, without stopping the pool
    assert backend.patch_pool(pool["id"], {"priority": 7})["priority"] == 7
    assert backend.get_pool(pool["id"])["status"] == "OPEN"
    with pytest.raises(ValidationError) as verr:
        backend.patch_pool(pool["id"], {"priority": 1, "reward_per_assignment": 0.05})
    assert "reward_per_assignment" in verr.value.payload
    # close for update, edit, reopen: new suites carry the new reward; the one issued before keeps its own
    backend.close_pool(pool["id"], reason="FOR_UPDATE")
    assert backend.get_pool(pool["id"])["last_close_reason"] == "FOR_UPDATE"
    raised = {**backend.get_pool(pool["id"]), "reward_per_assignment": 0.05}  # PUT sends every field
    edited = backend.update_pool(pool["id"], raised)
    assert edited["reward_per_assignment"] == 0.05 and edited["priority"] == 7 and edited["status"] == "CLOSED"
    backend.open_pool(pool["id"])
    (after,) = submit(backend, pool["id"], ["w2"])
    assert backend.get_assignment(after)["reward"] == 0.05 and backend.get_assignment(before)["reward"] == 0.02
    backend.patch_assignment(before, {"status": "ACCEPTED", "public_comment": "ok"})
    backend.patch_assignment(after, {"status": "ACCEPTED", "public_comment": "ok"})
    assert [amount for _, amount in charges(backend)] == [COST, Decimal("0.065")]  # 0.05 + 30 %


def test_a_pool_closed_for_update_reopens_by_itself_after_15_minutes(backend):
    _, edited = open_pool(backend)
    _, stopped = open_pool(backend)
    backend.close_pool(edited["id"], reason="FOR_UPDATE")
    backend.close_pool(stopped["id"])  # a MANUAL close stays closed
    backend.update_pool(edited["id"], {**backend.get_pool(edited["id"]), "reward_per_assignment": 0.03})
    sched = Scheduler(backend, fake, workers=1, seed=1, solve_threads=1)
    backend.clock.advance(15 * 60 - 0.01)  # real minutes: Toloka's timer, not the crowd's simulated time
    sched.step()
    assert backend.get_pool(edited["id"])["status"] == "CLOSED"
    backend.clock.advance(0.02)
    sched.step()
    reopened = backend.get_pool(edited["id"])
    assert reopened["status"] == "OPEN" and "last_close_reason" not in reopened
    assert reopened["reward_per_assignment"] == 0.03
    assert backend.get_pool(stopped["id"])["status"] == "CLOSED"


# ---- archive: rules ------------------------------------------------------------------------------------------

def test_archive_waits_for_work_reviews_and_appeals(backend):
    project, pool = open_pool(backend, n_tasks=3)
    pid = pool["id"]
    active = issue(backend, pid, ["w1"])[0]
    err = refusal(lambda: backend.archive_pool(pid), "INAPPROPRIATE_STATUS")
    assert err.payload == {"appropriate_statuses": ["CLOSED"]}
    backend.close_pool(pid)
    refusal(lambda: backend.archive_pool(pid), "THERE_IS_ACTIVE_ASSIGNMENT")  # a Toloker is still on it
    for item in backend.unplanned_active():
        backend.set_plan(item["id"], "SUBMIT", [{"result": []}], 5.0, backend.now())
    with backend.transaction():
        backend.finish_due(backend.now())
    refusal(lambda: backend.archive_pool(pid), "SUBMITTED_ASSIGNMENTS_CONFLICT")  # awaiting review
    backend.patch_assignment(active, {"status": "REJECTED", "public_comment": "empty"})
    backend.clock.advance(5 * DAY)
    err = refusal(lambda: backend.archive_pool(pid), "THERE_IS_REJECTED_ASSIGNMENT")  # may still be appealed
    assert parse_ts(err.payload["archivable_from"]) == parse_ts(backend.get_assignment(active)["rejected"]) \
        + dt.timedelta(seconds=9 * DAY)
    refusal(lambda: backend.archive_project(project["id"]), "UNARCHIVED_POOLS_CONFLICT")
    backend.clock.advance(4 * DAY)
    assert backend.archive_pool(pid)["type"] == "POOL.ARCHIVE"
    assert backend.get_pool(pid)["status"] == "ARCHIVED"
    assert backend.archive_pool(pid) is None  # 204: already archived
    assert backend.archive_project(project["id"])["type"] == "PROJECT.ARCHIVE"
    assert backend.get_project(project["id"])["status"] == "ARCHIVED"


def test_a_review_period_that_ended_does_not_block_the_archive(backend):
    _, pool = open_pool(backend, n_tasks=1, auto_accept_period_day=1)
    (a,) = submit(backend, pool["id"], ["w1"])
    backend.close_pool(pool["id"])
    refusal(lambda: backend.archive_pool(pool["id"]), "SUBMITTED_ASSIGNMENTS_CONFLICT")
    backend.clock.advance(DAY + 0.01)  # no scheduler ran: the archive itself sees the period is over
    assert backend.archive_pool(pool["id"])["type"] == "POOL.ARCHIVE"
    assert backend.get_assignment(a)["status"] == "ACCEPTED" and charges(backend) == [(a, COST)]


def test_archived_objects_are_read_only(backend):
    project, pool = open_pool(backend, n_tasks=2)
    first, second = submit(backend, pool["id"], ["w1", "w2"])
    backend.patch_assignment(first, {"status": "REJECTED", "public_comment": "no"})
    backend.patch_assignment(second, {"status": "ACCEPTED", "public_comment": "ok"})
    backend.close_pool(pool["id"])
    backend.clock.advance(9 * DAY + 0.01)
    backend.archive_pool(pool["id"])
    spec = backend.get_pool(pool["id"])
    refusal(lambda: backend.update_pool(pool["id"], spec), "POOL_INAPPROPRIATE_STATUS")
    with pytest.raises(EmptyConflict):
        backend.patch_pool(pool["id"], {"priority": 3})
    refusal(lambda: backend.open_pool(pool["id"]), "INAPPROPRIATE_STATUS")
    refusal(lambda: backend.patch_assignment(first, {"status": "ACCEPTED", "public_comment": "late"}),
            "POOL_INAPPROPRIATE_STATUS")
    with pytest.raises(ValidationError) as verr:  # no new tasks either
        backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": "https://i/new.png"}}], {})
    assert verr.value.payload["0"]["pool_id"]["code"] == "POOL_INAPPROPRIATE_STATUS"
    clone = backend.clone_pool(pool["id"])  # Toloka: an archived pool cannot run, but can be cloned
    assert backend.get_pool(clone["details"]["pool_id"])["status"] == "CLOSED"
    backend.archive_pool(clone["details"]["pool_id"])
    backend.archive_project(project["id"])
    refusal(lambda: backend.create_pool(pool_spec(project["id"], backend)), "PROJECT_INAPPROPRIATE_STATUS")
    refusal(lambda: backend.update_project(project["id"], {**PROJECT, "public_name": "again"}),
            "PROJECT_INAPPROPRIATE_STATUS")
    assert backend.get_pool(pool["id"])["priority"] == 0 and backend.get_project(project["id"])["public_name"] == "p"


# ---- the same through toloka-kit over HTTP ---------------------------------------------------------------

def test_review_through_toloka_kit(backend, client):
    _, pool = open_pool(backend, n_tasks=3, auto_accept_period_day=1)
    good, bad, forgotten = submit(backend, pool["id"], ["w1", "w2", "w3"])
    assert client.accept_assignment(good, "Well done").status == toloka.Assignment.ACCEPTED
    rejected = client.reject_assignment(bad, "The stop sign has no box")
    assert rejected.status == toloka.Assignment.REJECTED and rejected.public_comment == "The stop sign has no box"
    assert client.get_assignment(bad).public_comment == "The stop sign has no box"
    with pytest.raises(ValidationApiError) as verr:
        client.reject_assignment(forgotten, "")
    assert verr.value.invalid_fields == ["public_comment"]
    with pytest.raises(IncorrectActionsApiError) as err:
        client.reject_assignment(good, "changed my mind")
    assert err.value.code == "INAPPROPRIATE_STATUS"
    backend.clock.advance(DAY + 0.01)  # the review period is over
    with pytest.raises(IncorrectActionsApiError) as err:
        client.reject_assignment(forgotten, "too late")
    assert err.value.code == "INAPPROPRIATE_STATUS" and "review period ended" in err.value.message
    assert client.get_assignment(forgotten).status == toloka.Assignment.ACCEPTED
    assert client.get_requester().balance == Decimal("10") - 2 * COST
    earnings = requests.get(f"{backend.base_url}/_local/earnings", headers={"Authorization": f"OAuth {TOKEN}"},
                            timeout=10).json()
    assert earnings["workers"] == {"w1": {"accepted": 1, "rejected": 0, "earned": 0.02},
                                   "w2": {"accepted": 0, "rejected": 1, "earned": 0},
                                   "w3": {"accepted": 1, "rejected": 0, "earned": 0.02}}
    assert earnings["requester"] == {"balance": 9.948, "charged": 0.052}


def test_pool_edit_and_archive_through_toloka_kit(backend, client):
    project, pool = open_pool(backend, n_tasks=2)
    (a,) = submit(backend, pool["id"], ["w1"])
    kit_pool = client.get_pool(pool["id"])
    kit_pool.reward_per_assignment = 0.05
    with pytest.raises(IncorrectActionsApiError) as err:
        client.update_pool(kit_pool.id, kit_pool)
    assert err.value.code == "INAPPROPRIATE_STATUS" and err.value.payload == {"appropriate_statuses": ["CLOSED"]}
    assert client.patch_pool(kit_pool.id, priority=9).priority == 9
    assert client.get_pool(kit_pool.id).status == toloka.Pool.Status.OPEN
    assert client.close_pool_for_update(kit_pool.id).last_close_reason == toloka.Pool.CloseReason.FOR_UPDATE
    kit_pool.priority = 9
    assert client.update_pool(kit_pool.id, kit_pool).reward_per_assignment == 0.05
    assert client.open_pool(kit_pool.id).status == toloka.Pool.Status.OPEN
    with pytest.raises(IncorrectActionsApiError) as err:
        client.archive_pool(kit_pool.id)
    assert err.value.code == "INAPPROPRIATE_STATUS"
    client.close_pool(kit_pool.id)
    with pytest.raises(IncorrectActionsApiError) as err:
        client.archive_pool(kit_pool.id)
    assert err.value.code == "SUBMITTED_ASSIGNMENTS_CONFLICT"
    client.accept_assignment(a, "ok")
    with pytest.raises(IncorrectActionsApiError) as err:
        client.archive_project(project["id"])
    assert err.value.code == "UNARCHIVED_POOLS_CONFLICT"
    assert client.archive_pool(kit_pool.id).status == toloka.Pool.Status.ARCHIVED
    with pytest.raises(httpx.HTTPStatusError) as http_err:  # Toloka answers 409 with no body here
        client.patch_pool(kit_pool.id, priority=1)
    assert http_err.value.response.status_code == 409 and http_err.value.response.content == b""
    assert client.archive_project(project["id"]).status == toloka.Project.ProjectStatus.ARCHIVED
