"""Streaming readers hold a completed pool open until they have read past its last event.

Backend only, with an injected clock (``backend.now``) and the scheduler's ``now`` passed in: no
sleeping on wall time. See ``crowdboxes/local_toloka/models/readers.py`` for the rule.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from crowdboxes.local_toloka.db import fmt_ts, utcnow
from crowdboxes.local_toloka.models import Backend
from crowdboxes.local_toloka.models.readers import READER_TTL, REVIEW_WAIT_WINDOW

PROJECT = {"public_name": "p", "task_spec": {
    "input_spec": {"image": {"type": "url", "required": True}},
    "output_spec": {"result": {"type": "json"}},
    "view_spec": {"type": "classic", "markup": "x"}}}
BASE = utcnow().replace(microsecond=0)
LAG = dt.timedelta(seconds=60)


class Clock:
    def __init__(self):
        self.t = BASE

    def __call__(self):
        return self.t

    def at(self, seconds):
        self.t = BASE + dt.timedelta(seconds=seconds)
        return self.t


def make_backend(tmp_path, **kwargs):
    clock = Clock()
    backend = Backend(tmp_path / "state", speed=1e6, clock=clock, **kwargs)
    return backend, clock


def completed_pool(backend, clock, n_tasks=2, submit_at=2.0, **pool_extra):
    """A pool whose tasks were all submitted at ``BASE + submit_at``; it is complete, not yet closed."""
    project = backend.create_project(PROJECT)
    pool = backend.create_pool({
        "project_id": project["id"], "private_name": "p", "reward_per_assignment": 0.01,
        "assignment_max_duration_seconds": 600, "will_expire": fmt_ts(BASE + dt.timedelta(days=1)),
        "defaults": {"default_overlap_for_new_task_suites": 1},
        "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}, **pool_extra})
    backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": f"https://i/{i}.png"}}
                          for i in range(n_tasks)], {"allow_defaults": "true"})
    backend.open_pool(pool["id"])
    clock.at(submit_at)
    with backend.transaction():
        row, doc = backend.open_pools()[0]
        for n in range(n_tasks):
            backend.issue_suite(row, doc, f"w{n}", backend.suite_tasks(row, doc, f"w{n}"))
    for item in backend.unplanned_active():
        backend.set_plan(item["id"], "SUBMIT", [{"result": []}], 10.0, clock())
    with backend.transaction():
        backend.finish_due(clock())
    return pool


def read(backend, clock, pool_id, at, field="submitted", lag=LAG):
    """A streaming cursor's request at ``BASE + at``: ``<field>_lte = now - lag``."""
    now = clock.at(at)
    return json.loads(backend.find_assignments({"pool_id": pool_id, f"{field}_gte": "1970-01-01T00:00:00",
                                                f"{field}_lte": fmt_ts(now - lag), "sort": field}))["items"]


def close_step(backend, clock, at):
    now = clock.at(at)
    with backend.transaction():
        backend.close_finished_pools(now)


def status(backend, pool_id):
    pool = backend.get_pool(pool_id)
    return pool["status"], pool.get("last_close_reason")


def raw_status(backend, pool_id):
    """The pool's status as stored, without a status read (``get_pool`` ends a first-reader wait)."""
    return backend._pool_row(pool_id)["status"]


@pytest.fixture()
def world(tmp_path):
    backend, clock = make_backend(tmp_path)
    yield backend, clock
    backend.close()


def test_a_lagging_reader_holds_the_pool_until_it_reads_past_the_last_submit(world):
    backend, clock = world
    # the cursor starts reading before anything is submitted
    pool = completed_pool(backend, clock, submit_at=2.0)
    assert read(backend, clock, pool["id"], at=1.0) == []  # lte = BASE - 59 s
    close_step(backend, clock, at=3.0)
    assert status(backend, pool["id"]) == ("OPEN", None)  # complete, held for the reader
    assert read(backend, clock, pool["id"], at=40.0) == []  # lte = BASE - 20 s: still before the submits
    close_step(backend, clock, at=41.0)
    assert status(backend, pool["id"])[0] == "OPEN"
    seen = read(backend, clock, pool["id"], at=62.0)  # lte = BASE + 2 s: the last submit is in the window
    assert len(seen) == 2 and all(a["status"] == "ACCEPTED" for a in seen)
    # the read that reaches the end closes the pool at once, so Pipeline.should_resume sees CLOSED
    assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")


def test_a_pool_nobody_streams_waits_for_a_first_reader_then_closes(world):
    backend, clock = world
    pool = completed_pool(backend, clock)
    close_step(backend, clock, at=3.0)  # complete since BASE + 3 s
    wait = backend.first_reader_seconds
    assert raw_status(backend, pool["id"]) == "OPEN"  # no GET /pools: that would end the wait
    assert backend.next_wakeup() == BASE + dt.timedelta(seconds=3 + wait)
    close_step(backend, clock, at=3 + wait - 1)
    assert raw_status(backend, pool["id"]) == "OPEN"
    close_step(backend, clock, at=3 + wait)
    assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")


def test_a_reader_who_comes_after_completion_holds_the_pool_until_it_reads_past(world):
    backend, clock = world
    pool = completed_pool(backend, clock, submit_at=2.0)
    close_step(backend, clock, at=3.0)
    assert read(backend, clock, pool["id"], at=13.0) == []  # a Pipeline from the next notebook cell
    wait = backend.first_reader_seconds
    close_step(backend, clock, at=3 + wait + 1)  # past the first-reader window: the reader holds it now
    assert status(backend, pool["id"])[0] == "OPEN"
    assert len(read(backend, clock, pool["id"], at=3 + wait + 2, lag=dt.timedelta(seconds=60))) == 2
    assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")


def test_a_status_read_from_a_non_reader_ends_the_first_reader_wait(world):
    backend, clock = world
    pool = completed_pool(backend, clock)
    assert backend.get_pool(pool["id"])["status"] == "OPEN"  # not complete yet for the scheduler
    close_step(backend, clock, at=3.0)
    clock.at(4.0)
    # a plain wait loop polls the status: it streams nothing, so nothing waits for it
    assert (backend.get_pool(pool["id"])["status"], backend.get_pool(pool["id"])["last_close_reason"]) == \
        ("CLOSED", "COMPLETED")


def test_a_status_read_does_not_end_a_readers_hold(world):
    backend, clock = world
    pool = completed_pool(backend, clock, submit_at=2.0)
    read(backend, clock, pool["id"], at=2.5)  # a Pipeline reads assignments before it checks the pool
    close_step(backend, clock, at=3.0)
    clock.at(4.0)
    assert backend.get_pool(pool["id"])["status"] == "OPEN"


def test_the_first_reader_wait_never_outlasts_the_cap(tmp_path):
    backend, clock = make_backend(tmp_path, reader_hold_seconds=20)
    try:
        pool = completed_pool(backend, clock)
        close_step(backend, clock, at=3.0)
        assert backend.next_wakeup() == BASE + dt.timedelta(seconds=23)
        close_step(backend, clock, at=23.0)
        assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")
    finally:
        backend.close()


def test_a_reader_of_a_field_without_events_holds_nothing(world):
    backend, clock = world
    pool = completed_pool(backend, clock)
    read(backend, clock, pool["id"], at=2.5, field="rejected")  # no assignment is rejected
    close_step(backend, clock, at=3.0)
    assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")


def test_every_reader_must_be_past_its_field(world):
    backend, clock = world
    pool = completed_pool(backend, clock, submit_at=2.0)
    read(backend, clock, pool["id"], at=2.5, field="submitted", lag=dt.timedelta(0))  # past the submits
    read(backend, clock, pool["id"], at=2.5, field="accepted")  # 60 s behind
    close_step(backend, clock, at=3.0)
    assert status(backend, pool["id"])[0] == "OPEN"
    read(backend, clock, pool["id"], at=63.0, field="accepted")
    assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")


def test_the_cap_closes_a_pool_whose_reader_never_catches_up(tmp_path):
    backend, clock = make_backend(tmp_path, reader_hold_seconds=100)
    try:
        pool = completed_pool(backend, clock)
        read(backend, clock, pool["id"], at=2.5, lag=dt.timedelta(hours=1))
        close_step(backend, clock, at=3.0)  # complete since BASE + 3 s
        read(backend, clock, pool["id"], at=80.0, lag=dt.timedelta(hours=1))  # alive, still behind
        close_step(backend, clock, at=102.0)
        assert status(backend, pool["id"])[0] == "OPEN"
        assert backend.next_wakeup() == BASE + dt.timedelta(seconds=103)  # the cap, before the reader's expiry
        close_step(backend, clock, at=103.0)
        assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")
    finally:
        backend.close()


def test_reader_entries_expire(tmp_path):
    backend, clock = make_backend(tmp_path, reader_hold_seconds=3600)
    try:
        pool = completed_pool(backend, clock)
        read(backend, clock, pool["id"], at=2.5)
        close_step(backend, clock, at=3.0)
        assert [r["field"] for r in backend.streaming_readers(pool["id"])] == ["submitted"]
        ttl = READER_TTL.total_seconds()
        assert backend.next_wakeup() == BASE + dt.timedelta(seconds=2.5 + ttl)  # the reader's expiry
        close_step(backend, clock, at=2.5 + ttl - 1)
        assert status(backend, pool["id"])[0] == "OPEN"
        close_step(backend, clock, at=2.5 + ttl + 1)
        assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")
        assert backend.streaming_readers(pool["id"]) == []
    finally:
        backend.close()


def test_an_expired_reader_starts_over_from_its_new_position(world):
    backend, clock = world
    pool = completed_pool(backend, clock)
    read(backend, clock, pool["id"], at=2.5, lag=dt.timedelta(0))  # position BASE + 2.5 s
    ttl = READER_TTL.total_seconds()
    read(backend, clock, pool["id"], at=ttl + 10, lag=dt.timedelta(seconds=ttl + 9))  # back: BASE + 1 s
    (reader,) = backend.streaming_readers(pool["id"])
    assert reader["position"] == BASE + dt.timedelta(seconds=1)
    read(backend, clock, pool["id"], at=ttl + 11, lag=dt.timedelta(seconds=ttl + 11))  # live: the largest stays
    (reader,) = backend.streaming_readers(pool["id"])
    assert reader["position"] == BASE + dt.timedelta(seconds=1)


def test_first_reader_zero_closes_a_pool_nobody_streams_at_once(tmp_path):
    backend, clock = make_backend(tmp_path, first_reader_seconds=0)
    try:
        pool = completed_pool(backend, clock)
        close_step(backend, clock, at=3.0)
        assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")
    finally:
        backend.close()


def test_hold_zero_is_toloka_literal(tmp_path):
    backend, clock = make_backend(tmp_path, reader_hold_seconds=0)
    try:
        pool = completed_pool(backend, clock)
        read(backend, clock, pool["id"], at=2.5)
        close_step(backend, clock, at=3.0)
        assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")
    finally:
        backend.close()


def test_the_close_delay_still_applies_and_the_requesters_close_is_never_held(world):
    backend, clock = world
    pool = completed_pool(backend, clock, auto_close_after_complete_delay_seconds=200_000)  # 0.2 real s at 1e6
    close_step(backend, clock, at=3.0)
    read(backend, clock, pool["id"], at=3.05, lag=dt.timedelta(0))  # a reader already past the end
    close_step(backend, clock, at=3.1)
    assert status(backend, pool["id"])[0] == "OPEN"  # Toloka's delay
    close_step(backend, clock, at=3.3)
    assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")

    other = completed_pool(backend, clock, submit_at=5.0)
    read(backend, clock, other["id"], at=5.5)
    close_step(backend, clock, at=6.0)
    assert status(backend, other["id"])[0] == "OPEN"
    assert backend.close_pool(other["id"])["type"] == "POOL.CLOSE"
    assert status(backend, other["id"]) == ("CLOSED", "MANUAL")


def test_readers_survive_a_restart(tmp_path):
    backend, clock = make_backend(tmp_path)
    pool = completed_pool(backend, clock)
    read(backend, clock, pool["id"], at=2.5)
    close_step(backend, clock, at=3.0)
    backend.close()
    again, clock = make_backend(tmp_path)
    try:
        clock.at(4.0)
        assert [r["field"] for r in again.streaming_readers(pool["id"])] == ["submitted"]
        close_step(again, clock, at=4.0)
        assert status(again, pool["id"])[0] == "OPEN"
        read(again, clock, pool["id"], at=63.0)
        assert status(again, pool["id"]) == ("CLOSED", "COMPLETED")
    finally:
        again.close()


def test_negative_hold_is_refused(tmp_path):
    with pytest.raises(ValueError):
        Backend(tmp_path / "s", reader_hold_seconds=-1)


def test_reads_kept_in_memory_count_before_they_are_written(world):
    """Reader rows are rewritten at most every second; a hold is decided on the latest reads anyway."""
    backend, clock = world
    pool = completed_pool(backend, clock, submit_at=2.0)
    read(backend, clock, pool["id"], at=2.5)  # written: 60 s behind
    read(backend, clock, pool["id"], at=2.6, lag=dt.timedelta(0))  # within a second: kept in memory only
    row = backend.conn.execute("SELECT position FROM readers WHERE pool_id = ?", (int(pool["id"]),)).fetchone()
    assert row[0] < fmt_ts(BASE)
    close_step(backend, clock, at=3.0)
    assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")


def test_an_acceptance_reader_waits_for_the_reviews_still_to_come(world):
    """No auto-acceptance: SUBMITTED assignments will be accepted or rejected, events an ``accepted``
    reader must still see (a Pipeline that reviews what it is shown reads its own acceptances)."""
    backend, clock = world
    backend.speed = 1e3  # the review period (21 days = 30 real minutes) outlasts the test: the requester decides
    pool = completed_pool(backend, clock, submit_at=2.0, auto_accept_solutions=False)
    read(backend, clock, pool["id"], at=2.5, field="accepted", lag=dt.timedelta(0))  # nothing accepted yet
    read(backend, clock, pool["id"], at=2.5, field="submitted", lag=dt.timedelta(0))  # past the submits
    close_step(backend, clock, at=3.0)
    assert status(backend, pool["id"])[0] == "OPEN"  # the reviews are still to come
    submitted = read(backend, clock, pool["id"], at=10.0, lag=dt.timedelta(0))
    for assignment in submitted:
        backend.patch_assignment(assignment["id"], {"status": "ACCEPTED"})
    close_step(backend, clock, at=11.0)
    assert status(backend, pool["id"])[0] == "OPEN"  # the acceptances (at 10 s) are not read yet
    assert len(read(backend, clock, pool["id"], at=70.0, field="accepted")) == 2  # lte = BASE + 10 s
    assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")


def test_a_review_reader_that_stopped_reading_no_longer_waits_for_reviews(world):
    """A killed step's acceptance reader: it keeps no completed pool open for reviews once it stops reading."""
    backend, clock = world
    pool = completed_pool(backend, clock, submit_at=2.0, auto_accept_solutions=False)
    read(backend, clock, pool["id"], at=2.5, field="accepted", lag=dt.timedelta(0))
    read(backend, clock, pool["id"], at=2.5, field="submitted", lag=dt.timedelta(0))
    close_step(backend, clock, at=60.0)
    assert raw_status(backend, pool["id"]) == "OPEN"  # still reading a minute ago: reviews may come
    close_step(backend, clock, at=2.5 + REVIEW_WAIT_WINDOW.total_seconds() + 1)
    assert raw_status(backend, pool["id"]) == "CLOSED"


def test_a_submit_reader_alone_does_not_wait_for_reviews(world):
    backend, clock = world
    pool = completed_pool(backend, clock, submit_at=2.0, auto_accept_solutions=False)
    read(backend, clock, pool["id"], at=2.5, lag=dt.timedelta(0))
    close_step(backend, clock, at=3.0)
    assert status(backend, pool["id"]) == ("CLOSED", "COMPLETED")
