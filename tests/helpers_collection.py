"""Stand-ins for the collection tests: real toloka-kit ``Assignment`` objects and a small in-memory
assignment search API (filters, sorting, paging as toloka-kit sends them), so the cursor logic can be
pinned down exactly; and the tasks.csv/images.csv frames of their two images."""

from __future__ import annotations

import datetime as dt
import types
from pathlib import Path

import pandas as pd
from toloka.client import Assignment, Pool, Project, Task

from crowdboxes.toloka.collection.snapshots import utc_naive

T0 = dt.datetime(2026, 11, 23, 9, 0, 0, tzinfo=dt.timezone.utc)
REPO = Path(__file__).resolve().parents[1]

TASKS = pd.DataFrame({"task_id": ["t1", "t2"], "pool_id": ["7", "7"], "image_id": ["img1", "img2"],
                      "url": ["http://img/t1.jpg", "http://img/t2.jpg"]})
IMAGES = pd.DataFrame({"image_id": ["img1", "img2"], "file_name": ["a.jpg", "b.jpg"],
                       "url": ["http://img/t1.jpg", "http://img/t2.jpg"], "width": [200, 640],
                       "height": [100, 480], "sha256": ["x", "y"]})


def make_assignment(number: int, *, pool_id="7", worker="w1", status="ACCEPTED", submitted_s=0.0,
                    accepted_s=None, rejected_s=None, tasks=(("t1", [{"shape": "rectangle", "left": 0.1, "top": 0.2,
                                                                      "width": 0.3, "height": 0.4,
                                                                      "label": "stop"}]),),
                    reward=0.01) -> Assignment:
    """Assignment ``number`` (id ``0000000<n>--a``), its times in seconds after ``T0``."""
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
    """Just enough of TolokaClient for the collector: find/get assignments, get_pool, get_tasks, get_project."""

    def __init__(self, assignments=(), pool_status="OPEN", close_reason=None):
        self.assignments = list(assignments)
        self.pool_status, self.close_reason = pool_status, close_reason
        self.remaining = {}
        self.calls = 0

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
            bound = utc_naive(value)
            checks = {"gte": lambda t: t >= bound, "gt": lambda t: t > bound, "lte": lambda t: t <= bound,
                      "lt": lambda t: t < bound}
            items = [a for a in items if getattr(a, name) is not None and checks[op](utc_naive(getattr(a, name)))]
        for key in reversed(sort or []):
            items.sort(key=lambda a: (utc_naive(getattr(a, key)) if key != "id" else a.id))
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

    def get_tasks(self, pool_id, batch_size=None):
        return iter(Task.structure({"id": tid, "pool_id": pool_id, "input_values": {}, "remaining_overlap": left})
                    for tid, left in self.remaining.items())

    def get_project(self, project_id):
        return Project.from_json((REPO / "configs" / "detection_project.json").read_text())


class FlakyApi(FakeAssignmentsApi):
    """Fails the calls whose 1-based numbers are in ``fail_calls`` (counting every API call)."""

    def __init__(self, *args, fail_calls=(), error=RuntimeError, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_calls, self.error, self.n = set(fail_calls), error, 0

    def _tick(self):
        self.n += 1
        if self.n in self.fail_calls:
            raise self.error("connection reset")

    def find_assignments(self, sort=None, limit=None, **filters):
        self._tick()
        return super().find_assignments(sort=sort, limit=limit, **filters)

    def get_pool(self, pool_id):
        self._tick()
        return super().get_pool(pool_id)


class Terminal:
    """A text stream that says whether it is a terminal (``tty``) and keeps what was written."""

    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass
