"""The collection of a pool's answers (crowdboxes.toloka.collection): answers.csv rows in pixels, the
resumable cursors and journal, the pool's done state, progress, and the wait loop's retries and deadline.

A small in-memory stand-in of the assignment search API (tests/helpers_collection.py) with real toloka-kit
``Assignment`` objects pins the cursor logic down exactly; Wait Pool as a step is tested in
tests/steps/test_step_wait_pool.py.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tracemalloc
from collections import Counter

import pandas as pd
import pytest

from crowdboxes.artifacts import ANSWERS, WAIT_JOURNAL
from crowdboxes.toloka.collection import cursor
from crowdboxes.toloka.collection.collector import AnswerCollector
from crowdboxes.toloka.collection.progress import Progress
from crowdboxes.toloka.collection.snapshots import Snapshot, snapshot
from crowdboxes.toloka.collection.solutions import answers_frame
from crowdboxes.toloka.collection.wait import pool_state, wait_for_pool
from crowdboxes.toloka.spending import recorded_cost
from helpers_collection import IMAGES, T0, TASKS, FakeAssignmentsApi, FlakyApi, Terminal, make_assignment


def test_rectangles_become_pixels_and_empty_answer_is_one_row():
    a1 = make_assignment(1, tasks=(("t1", [{"shape": "rectangle", "left": 0.1, "top": 0.2, "width": 0.3,
                                            "height": 0.4, "label": "stop"},
                                           {"shape": "rectangle", "left": 0.5, "top": 0.5, "width": 0.25,
                                            "height": 0.5, "label": "yield"}]),
                                   ("t2", [])), submitted_s=1)
    frame, problems = answers_frame([snapshot(a1)], TASKS, IMAGES)
    assert problems == []
    assert list(frame.columns[:11]) == list(ANSWERS.columns)
    assert frame[["image_id", "label", "x", "y", "w", "h"]].values.tolist()[:2] == [
        ["img1", "stop", pytest.approx(20.0), pytest.approx(20.0), pytest.approx(60.0), pytest.approx(40.0)],
        ["img1", "yield", pytest.approx(100.0), pytest.approx(50.0), pytest.approx(50.0), pytest.approx(50.0)]]
    empty = frame.iloc[2]
    assert empty["image_id"] == "img2" and empty["task_id"] == "t2" and empty["worker_id"] == "w1"
    assert pd.isna(empty["label"]) and all(math.isnan(empty[c]) for c in "xywh")
    assert set(frame["status"]) == {"ACCEPTED"} and frame["submitted_at"].iloc[0] == "2026-11-23T09:00:01.000000Z"


def test_bad_shapes_and_unknown_tasks_are_reported_not_fatal():
    a1 = make_assignment(1, tasks=(("t1", [{"shape": "point", "left": 0.1, "top": 0.2},
                                           {"shape": "rectangle", "left": "x", "top": 0, "width": 1, "height": 1},
                                           {"shape": "rectangle", "left": 0, "top": 0, "width": 1, "height": 1,
                                            "label": "stop"}]),
                                   ("t9", [])))
    a2 = make_assignment(2, tasks=(("t2", json.dumps([{"shape": "rectangle", "left": 0.5, "top": 0.5,
                                                       "width": 0.5, "height": 0.5, "label": "parking"}])),))
    frame, problems = answers_frame([snapshot(a1), snapshot(a2)], TASKS, IMAGES)
    assert len(problems) == 3
    assert "shape 1: shape 'point' is not a rectangle" in problems[0]
    assert "shape 2: rectangle left is 'x'" in problems[1]
    assert "task t9 is not in tasks.csv" in problems[2]
    assert frame[["image_id", "label", "w", "h"]].values.tolist() == [["img1", "stop", 200.0, 100.0],
                                                                       ["img2", "parking", 320.0, 240.0]]


def test_task_missing_from_tasks_csv_maps_by_image_url():
    a1 = make_assignment(1, tasks=(("t-other", []),))
    a1.tasks[0].input_values["image"] = "http://img/t2.jpg"
    frame, problems = answers_frame([snapshot(a1)], TASKS, IMAGES)
    assert problems == [] and frame["image_id"].tolist() == ["img2"]


def test_collector_follows_status_changes_and_survives_restart(tmp_path):
    api = FakeAssignmentsApi([make_assignment(1, status="SUBMITTED", submitted_s=1),
                              make_assignment(2, status="SUBMITTED", submitted_s=2)])
    collector = AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    assert sorted(collector.poll()) == ["00000001--a", "00000002--a"]
    assert collector.poll() == []  # nothing new: the cursors stand still
    # the requester reviews: 1 accepted, 2 rejected; a third arrives
    api.assignments[0] = make_assignment(1, status="ACCEPTED", submitted_s=1, accepted_s=10)
    api.assignments[1] = make_assignment(2, status="REJECTED", submitted_s=2, rejected_s=11)
    api.assignments.append(make_assignment(3, status="SUBMITTED", submitted_s=12))
    assert sorted(collector.poll()) == ["00000001--a", "00000002--a", "00000003--a"]
    assert collector.counts() == {"submitted": 3, "accepted": 1, "rejected": 1, "pending_review": 1,
                                  "task_answers": 2}
    assert recorded_cost(collector.records()) == (0.02, 0.01)  # the accepted one and the one pending review
    # a new collector on the same folder resumes: same state, nothing refetched as new
    again = AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    assert again.resumed and again.snapshots == collector.snapshots
    assert again.poll() == [] and again.rescan() == []


def test_collector_holds_compact_snapshots_that_read_like_journal_records(tmp_path):
    boxes = [{"shape": "rectangle", "left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4, "label": "stop"}]
    api = FakeAssignmentsApi([make_assignment(1, status="REJECTED", submitted_s=1, rejected_s=4),
                              make_assignment(2, tasks=(("t1", boxes), ("t2", [])), submitted_s=2)])
    collector = AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    collector.poll()
    journal = [json.loads(line) for line in collector.journal.path.read_text().splitlines()[1:]]
    records = [r for r in journal if r["k"] == "a"]
    held = collector.records()
    assert all(isinstance(r, Snapshot) for r in held)
    assert [dict(r) for r in held] == records  # every key, nested tasks and outputs included
    assert held[1]["outputs"] == [{"result": boxes}, {"result": []}] and held[0]["rejected"] == records[0]["rejected"]
    assert held[1]["tasks"] is not held[1]["tasks"]  # parsed afresh: a caller's edit cannot change what is held
    with pytest.raises(KeyError):
        held[0]["missing"]
    frame_held, _ = answers_frame(held, TASKS, IMAGES)
    frame_records, _ = answers_frame(records, TASKS, IMAGES)
    pd.testing.assert_frame_equal(frame_held, frame_records)


def test_snapshot_takes_a_fraction_of_the_dicts_memory():
    """Wait Pool holds every assignment of its pool (300,000 at 100,000 images): a journal record as a dict
    takes about 3.7 KB here, as a Snapshot about 0.8 KB."""
    boxes = [{"shape": "rectangle", "left": 0.1 + i / 100, "top": 0.2, "width": 0.05, "height": 0.07,
              "label": "speed_limit"} for i in range(2)]
    lines = [json.dumps(snapshot(make_assignment(n, worker=f"w{n % 40}", tasks=((f"t{n}", boxes),))))
             for n in range(2000)]

    def held_bytes(build):
        tracemalloc.start()
        try:
            held = {str(n): build(json.loads(line)) for n, line in enumerate(lines)}
            size = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(held) == len(lines)
        return size / len(lines)

    as_dicts, as_snapshots = held_bytes(dict), held_bytes(Snapshot)
    assert as_snapshots < as_dicts / 3, (as_dicts, as_snapshots)


def test_cursor_lag_hides_recent_events_until_they_age(tmp_path):
    now = (T0 + dt.timedelta(seconds=100)).replace(tzinfo=None)  # naive UTC, as the collector counts
    api = FakeAssignmentsApi([make_assignment(1, submitted_s=0), make_assignment(2, submitted_s=98)])
    collector = AnswerCollector(api, ["7"], tmp_path, lag_seconds=30, now=lambda: now)
    assert collector.poll() == ["00000001--a"]  # the one submitted 2 s ago is inside the 30 s lag
    assert collector.poll(lag=dt.timedelta(0)) == ["00000002--a"]


def test_cursor_pages_through_many_assignments_at_one_timestamp(tmp_path, monkeypatch):
    monkeypatch.setattr(cursor, "BATCH_SIZE", 3)
    same = [make_assignment(i, submitted_s=5) for i in range(1, 8)]  # 7 at one instant, pages of 3
    api = FakeAssignmentsApi([make_assignment(0, submitted_s=1), *same, make_assignment(9, submitted_s=6)])
    collector = AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    got = collector.poll()
    assert sorted(got) == sorted(a.id for a in api.assignments)
    api.assignments.append(make_assignment(10, submitted_s=6))  # same time as the cursor, new id
    assert collector.poll() == ["00000010--a"]
    assert AnswerCollector(api, ["7"], tmp_path, lag_seconds=0).poll() == []


def test_torn_journal_line_is_dropped_and_refetched(tmp_path):
    api = FakeAssignmentsApi([make_assignment(i, submitted_s=i) for i in range(1, 5)])
    collector = AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    collector.poll()
    path = collector.journal.path
    full = path.read_bytes()
    # simulate a crash: cut the journal in the middle of the third snapshot line
    lines = full.split(b"\n")
    torn = b"\n".join(lines[:3]) + b"\n" + lines[3][:20]
    path.write_bytes(torn)
    resumed = AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    assert len(resumed.snapshots) == 2  # two complete snapshot lines survived; the cursors were lost
    assert path.read_bytes().endswith(b"\n")
    resumed.poll()
    frame_a, _ = answers_frame(collector.records(), TASKS, IMAGES)
    frame_b, _ = answers_frame(resumed.records(), TASKS, IMAGES)
    pd.testing.assert_frame_equal(frame_a, frame_b)


def test_journal_of_other_pools_is_kept_aside(tmp_path):
    api = FakeAssignmentsApi([make_assignment(1, submitted_s=1)])
    AnswerCollector(api, ["7"], tmp_path, lag_seconds=0).poll()
    other = AnswerCollector(api, ["8"], tmp_path, lag_seconds=0)
    assert not other.resumed and other.snapshots == {}
    assert len(list(tmp_path.glob(f"{WAIT_JOURNAL.file_name}.*.old"))) == 1


def test_pool_state_done_reasons():
    api = FakeAssignmentsApi(pool_status="CLOSED", close_reason="COMPLETED")
    assert pool_state(api, "7", 4, 0) == (True, "CLOSED COMPLETED")
    api.close_reason = "NOT_ENOUGH_BALANCE"
    assert pool_state(api, "7", 4, 0)[0] is False
    api.pool_status, api.close_reason = "OPEN", None
    api.remaining = {"t1": 0, "t2": 1}
    assert pool_state(api, "7", 4, 4) == (False, "OPEN")
    api.remaining["t2"] = 0
    assert pool_state(api, "7", 4, 3) == (False, "OPEN")  # too few answers: tasks not even read
    assert pool_state(api, "7", 4, 4) == (True, "OPEN with no remaining tasks")



def test_progress_bar_on_a_terminal_and_lines_otherwise(capsys):
    counts = {"submitted": 3, "accepted": 2, "rejected": 1}
    terminal = Terminal(True)
    now = [0.0]
    bar = Progress(8, "wait_pool 7", stream=terminal, clock=lambda: now[0])
    bar.update(2, counts, 0.03, "OPEN")
    bar.close()
    assert "wait_pool 7:  25%" in terminal.text and "2/8" in terminal.text and "spent=$0.03" in terminal.text
    assert "projected=$0.12" in terminal.text  # 0.03 for 2 of 8 answers
    log = Terminal(False)
    lines = Progress(8, "wait_pool 7", stream=log, clock=lambda: now[0])
    lines.update(2, counts, 0.03, "OPEN")
    now[0] = 90.0
    lines.update(8, counts, 0.045, "CLOSED COMPLETED")
    assert log.text.splitlines()[1] == ("wait_pool 7: 8/8 answers (100.0%), 4.0 answers/min, ETA 0 s, submitted 3, "
                                        "accepted 2, rejected 1, spent $0.04 (projected $0.04), "
                                        "pool CLOSED COMPLETED, 2 min")
    stdout = capsys.readouterr().out.splitlines()
    assert stdout == ["cnvrg_linechart_Progress key: 0.0 value: 25.0", "cnvrg_linechart_Spent key: 0.0 value: 0.03"
                      ] * 2 + ["cnvrg_linechart_Progress key: 1.5 value: 100.0",
                               "cnvrg_linechart_Spent key: 1.5 value: 0.045"]


def test_failed_page_does_not_advance_the_cursor(tmp_path, monkeypatch):
    monkeypatch.setattr(cursor, "BATCH_SIZE", 3)
    api = FlakyApi([make_assignment(i, submitted_s=i) for i in range(1, 8)], fail_calls={2})
    collector = AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    with pytest.raises(RuntimeError):
        collector.poll()  # page 1 of 3 read, page 2 failed
    assert collector.snapshots == {}
    assert len(collector.poll()) == 7
    assert AnswerCollector(api, ["7"], tmp_path, lag_seconds=0).poll() == []


def test_wait_survives_transient_failures_but_not_a_rejected_token(tmp_path, capsys):
    from toloka.client.exceptions import AuthenticationApiError

    api = FlakyApi([make_assignment(1, submitted_s=1)], pool_status="CLOSED", close_reason="COMPLETED",
                   fail_calls={1, 3})  # the first poll's first fetch; the second poll's get_pool (its 2nd call)
    collector = AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    progress = Progress(1, "w", stream=Terminal(False))
    outcome = wait_for_pool(api, "7", collector, progress, poll_seconds=5, deadline=None, expected_answers=1,
                                sleep=lambda s: None)
    assert outcome.done and outcome.polls == 3 and len(collector.snapshots) == 1
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: poll")]
    assert len(warnings) == 2 and "RuntimeError: connection reset" in warnings[0]

    def auth_error(message):
        return AuthenticationApiError(status_code=401, code="AUTHENTICATION_ERROR", message=message)

    api = FlakyApi(fail_calls={1}, error=auth_error)
    with pytest.raises(AuthenticationApiError):
        wait_for_pool(api, "7", AnswerCollector(api, ["7"], tmp_path / "b", lag_seconds=0), progress,
                          poll_seconds=5, deadline=None, expected_answers=1, sleep=lambda s: None)


def test_wait_stops_at_the_deadline(tmp_path):
    api = FakeAssignmentsApi(pool_status="OPEN")
    collector = AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    now, slept = [100.0], []

    def sleep(seconds):  # a fake clock: sleeping moves it on, nothing waits
        slept.append(seconds)
        now[0] += seconds

    outcome = wait_for_pool(api, "7", collector, Progress(4, "w", stream=Terminal(False)),
                            poll_seconds=0.05, deadline=100.12, expected_answers=4, sleep=sleep,
                            clock=lambda: now[0])
    assert not outcome.done and outcome.state == "OPEN" and outcome.polls == 4
    assert slept == pytest.approx([0.05, 0.05, 0.02])  # the last sleep ends at the deadline


class CountingApi(FakeAssignmentsApi):
    """Logs each call: the event stream a listing reads (``submitted``...), ``active`` or ``pool``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []

    def find_assignments(self, sort=None, limit=None, **filters):
        self.log.append(next((key.split("_")[0] for key in filters if key.endswith("_lte")), "active"))
        return super().find_assignments(sort=sort, limit=limit, **filters)

    def get_pool(self, pool_id):
        self.log.append("pool")
        return super().get_pool(pool_id)


def test_a_busy_pool_costs_one_listing_per_poll_until_the_answers_are_in(tmp_path):
    """21 polls of a pool still short of answers: each lists the new submissions; the status streams and the pool
    are read at polls 1, 11 and 21 only (FULL_POLL_EVERY = 10): 30 requests, where reading everything was 84."""
    api = CountingApi([make_assignment(1, submitted_s=1)], pool_status="OPEN")
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    outcome = wait_for_pool(api, "7", AnswerCollector(api, ["7"], tmp_path, lag_seconds=0),
                            Progress(2, "w", stream=Terminal(False)), poll_seconds=1, deadline=20, expected_answers=2,
                            sleep=sleep, clock=lambda: now[0])
    assert (outcome.done, outcome.polls) == (False, 21)
    assert Counter(api.log) == {"submitted": 21, "accepted": 3, "rejected": 3, "pool": 3}

    # once the answers are all in, the pool is about to complete: it is read at every poll
    api = CountingApi([make_assignment(1, submitted_s=1)], pool_status="OPEN")
    api.remaining = {"t1": 1}  # ... but Toloka still has a slot open, so the wait goes on
    now[0] = 0.0
    outcome = wait_for_pool(api, "7", AnswerCollector(api, ["7"], tmp_path / "b", lag_seconds=0),
                            Progress(1, "w", stream=Terminal(False)), poll_seconds=1, deadline=4, expected_answers=1,
                            sleep=sleep, clock=lambda: now[0])
    assert (outcome.done, outcome.polls) == (False, 5) and api.log.count("pool") == 5
