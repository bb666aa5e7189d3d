"""Wait Pool: answer conversion, the resumable cursor/journal, and the step against Toloka.

The first tests use a small in-memory stand-in of the assignment search API (filters, sorting,
paging as toloka-kit sends them) with real toloka-kit ``Assignment`` objects, to pin the cursor
logic down exactly. The end-to-end tests run the step as a subprocess against the local Toloka.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import types

import pandas as pd
import pytest
from toloka.client import Assignment, Pool, Task

from crowdboxes import answers as ans

T0 = dt.datetime(2026, 11, 23, 9, 0, 0, tzinfo=dt.timezone.utc)


def make_assignment(number: int, *, pool_id="7", worker="w1", status="ACCEPTED", submitted_s=0.0,
                    accepted_s=None, rejected_s=None, tasks=(("t1", [{"shape": "rectangle", "left": 0.1, "top": 0.2,
                                                                      "width": 0.3, "height": 0.4,
                                                                      "label": "stop"}]),),
                    reward=0.01):
    def at(seconds):
        return None if seconds is None else (T0 + dt.timedelta(seconds=seconds)).isoformat()

    if status == "ACCEPTED" and accepted_s is None:
        accepted_s = submitted_s
    return Assignment.structure({
        "id": f"{number:08d}--a", "task_suite_id": f"{number:08d}--s", "pool_id": pool_id, "user_id": worker,
        "status": status, "reward": reward,
        "tasks": [{"id": tid, "pool_id": pool_id, "input_values": {"image": f"http://img/{tid}.jpg"}}
                  for tid, _ in tasks],
        "solutions": [{"output_values": {"result": result}} for _, result in tasks],
        "created": at(submitted_s - 5), "submitted": at(submitted_s), "accepted": at(accepted_s),
        "rejected": at(rejected_s),
    })


class FakeAssignmentsApi:
    """Just enough of TolokaClient for the collector: find/get assignments, get_pool, get_tasks."""

    def __init__(self, assignments=(), pool_status="OPEN", close_reason=None):
        self.assignments = list(assignments)
        self.pool_status, self.close_reason = pool_status, close_reason
        self.remaining = {}
        self.calls = 0

    @staticmethod
    def _time(value):
        return ans.utc_naive(value)

    def find_assignments(self, sort=None, limit=None, **filters):
        self.calls += 1
        items = [a for a in self.assignments if a.pool_id == filters.get("pool_id")]
        if "status" in filters:
            wanted = {str(getattr(s, "value", s)) for s in filters["status"]}
            items = [a for a in items if a.status.value in wanted]
        for key, value in filters.items():
            if key in ("pool_id", "status"):
                continue
            name, op = key.rsplit("_", 1)
            if name == "id":
                items = [a for a in items if a.id > value]
                continue
            bound = self._time(value)
            checks = {"gte": lambda t: t >= bound, "gt": lambda t: t > bound, "lte": lambda t: t <= bound,
                      "lt": lambda t: t < bound}
            items = [a for a in items if getattr(a, name) is not None and checks[op](self._time(getattr(a, name)))]
        for key in reversed(sort or []):
            items.sort(key=lambda a: (self._time(getattr(a, key)) if key != "id" else a.id))
        limit = limit or 50
        return types.SimpleNamespace(items=items[:limit], has_more=len(items) > limit)

    def get_assignments(self, pool_id, status, batch_size=None):
        result = self.find_assignments(pool_id=pool_id, status=status, sort=["id"], limit=10**9)
        return iter(result.items)

    def get_pool(self, pool_id):
        return Pool.structure({"id": pool_id, "project_id": "1", "private_name": "p", "reward_per_assignment": 0.01,
                               "assignment_max_duration_seconds": 60, "will_expire": T0.isoformat(),
                               "defaults": {"default_overlap_for_new_task_suites": 1},
                               "status": self.pool_status, "last_close_reason": self.close_reason})

    def get_tasks(self, pool_id):
        return iter(Task.structure({"id": tid, "pool_id": pool_id, "input_values": {}, "remaining_overlap": left})
                    for tid, left in self.remaining.items())


TASKS = pd.DataFrame({"task_id": ["t1", "t2"], "pool_id": ["7", "7"], "image_id": ["img1", "img2"],
                      "url": ["http://img/t1.jpg", "http://img/t2.jpg"]})
IMAGES = pd.DataFrame({"image_id": ["img1", "img2"], "file_name": ["a.jpg", "b.jpg"],
                       "url": ["http://img/t1.jpg", "http://img/t2.jpg"], "width": [200, 640],
                       "height": [100, 480], "sha256": ["x", "y"]})


def test_rectangles_become_pixels_and_empty_answer_is_one_row():
    a1 = make_assignment(1, tasks=(("t1", [{"shape": "rectangle", "left": 0.1, "top": 0.2, "width": 0.3,
                                            "height": 0.4, "label": "stop"},
                                           {"shape": "rectangle", "left": 0.5, "top": 0.5, "width": 0.25,
                                            "height": 0.5, "label": "yield"}]),
                                   ("t2", [])), submitted_s=1)
    frame, problems = ans.answers_frame([ans.snapshot(a1)], TASKS, IMAGES)
    assert problems == []
    assert list(frame.columns[:11]) == list(ans.ANSWERS.columns)
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
    frame, problems = ans.answers_frame([ans.snapshot(a1), ans.snapshot(a2)], TASKS, IMAGES)
    assert len(problems) == 3
    assert "shape 1: shape 'point' is not a rectangle" in problems[0]
    assert "shape 2: rectangle left is 'x'" in problems[1]
    assert "task t9 is not in tasks.csv" in problems[2]
    assert frame[["image_id", "label", "w", "h"]].values.tolist() == [["img1", "stop", 200.0, 100.0],
                                                                       ["img2", "parking", 320.0, 240.0]]


def test_task_missing_from_tasks_csv_maps_by_image_url():
    a1 = make_assignment(1, tasks=(("t-other", []),))
    a1.tasks[0].input_values["image"] = "http://img/t2.jpg"
    frame, problems = ans.answers_frame([ans.snapshot(a1)], TASKS, IMAGES)
    assert problems == [] and frame["image_id"].tolist() == ["img2"]


def test_collector_follows_status_changes_and_survives_restart(tmp_path):
    api = FakeAssignmentsApi([make_assignment(1, status="SUBMITTED", submitted_s=1),
                              make_assignment(2, status="SUBMITTED", submitted_s=2)])
    collector = ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    assert sorted(collector.poll()) == ["00000001--a", "00000002--a"]
    assert collector.poll() == []  # nothing new: the cursors stand still
    # the requester reviews: 1 accepted, 2 rejected; a third arrives
    api.assignments[0] = make_assignment(1, status="ACCEPTED", submitted_s=1, accepted_s=10)
    api.assignments[1] = make_assignment(2, status="REJECTED", submitted_s=2, rejected_s=11)
    api.assignments.append(make_assignment(3, status="SUBMITTED", submitted_s=12))
    assert sorted(collector.poll()) == ["00000001--a", "00000002--a", "00000003--a"]
    assert collector.counts() == {"submitted": 3, "accepted": 1, "rejected": 1, "pending_review": 1,
                                  "task_answers": 2}
    assert collector.spent_estimate() == (0.01, 0.005)
    # a new collector on the same folder resumes: same state, nothing refetched as new
    again = ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    assert again.resumed and again.snapshots == collector.snapshots
    assert again.poll() == [] and again.rescan() == []


def test_cursor_lag_hides_recent_events_until_they_age(tmp_path):
    recent = (dt.datetime.now(dt.timezone.utc) - T0).total_seconds() - 2  # submitted 2 s ago
    api = FakeAssignmentsApi([make_assignment(1, submitted_s=0), make_assignment(2, submitted_s=recent)])
    collector = ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=30)
    assert collector.poll() == ["00000001--a"]
    assert collector.poll(lag=dt.timedelta(0)) == ["00000002--a"]


def test_cursor_pages_through_many_assignments_at_one_timestamp(tmp_path, monkeypatch):
    monkeypatch.setattr(ans, "BATCH_SIZE", 3)
    same = [make_assignment(i, submitted_s=5) for i in range(1, 8)]  # 7 at one instant, pages of 3
    api = FakeAssignmentsApi([make_assignment(0, submitted_s=1), *same, make_assignment(9, submitted_s=6)])
    collector = ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    got = collector.poll()
    assert sorted(got) == sorted(a.id for a in api.assignments)
    api.assignments.append(make_assignment(10, submitted_s=6))  # same time as the cursor, new id
    assert collector.poll() == ["00000010--a"]
    assert ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0).poll() == []


def test_torn_journal_line_is_dropped_and_refetched(tmp_path):
    api = FakeAssignmentsApi([make_assignment(i, submitted_s=i) for i in range(1, 5)])
    collector = ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    collector.poll()
    path = collector.journal.path
    full = path.read_bytes()
    # simulate a crash: cut the journal in the middle of the third snapshot line
    lines = full.split(b"\n")
    torn = b"\n".join(lines[:3]) + b"\n" + lines[3][:20]
    path.write_bytes(torn)
    resumed = ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    assert len(resumed.snapshots) == 2  # two complete snapshot lines survived; the cursors were lost
    assert path.read_bytes().endswith(b"\n")
    resumed.poll()
    frame_a, _ = ans.answers_frame(collector.records(), TASKS, IMAGES)
    frame_b, _ = ans.answers_frame(resumed.records(), TASKS, IMAGES)
    pd.testing.assert_frame_equal(frame_a, frame_b)


def test_journal_of_other_pools_is_kept_aside(tmp_path):
    api = FakeAssignmentsApi([make_assignment(1, submitted_s=1)])
    ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0).poll()
    other = ans.AnswerCollector(api, ["8"], tmp_path, lag_seconds=0)
    assert not other.resumed and other.snapshots == {}
    assert len(list(tmp_path.glob(f"{ans.JOURNAL_NAME}.*.old"))) == 1


def test_pool_state_done_reasons():
    api = FakeAssignmentsApi(pool_status="CLOSED", close_reason="COMPLETED")
    assert ans.pool_state(api, "7", 4, 0) == (True, "CLOSED COMPLETED")
    api.close_reason = "NOT_ENOUGH_BALANCE"
    assert ans.pool_state(api, "7", 4, 0)[0] is False
    api.pool_status, api.close_reason = "OPEN", None
    api.remaining = {"t1": 0, "t2": 1}
    assert ans.pool_state(api, "7", 4, 4) == (False, "OPEN")
    api.remaining["t2"] = 0
    assert ans.pool_state(api, "7", 4, 3) == (False, "OPEN")  # too few answers: tasks not even read
    assert ans.pool_state(api, "7", 4, 4) == (True, "OPEN with no remaining tasks")
