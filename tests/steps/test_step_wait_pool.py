"""Wait Pool: answer conversion, the resumable cursor/journal, and the step against Toloka.

The first tests use a small in-memory stand-in of the assignment search API (filters, sorting,
paging as toloka-kit sends them) with real toloka-kit ``Assignment`` objects, to pin the cursor
logic down exactly. The end-to-end tests run the step as a subprocess against the local Toloka.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import types

import pandas as pd
import pytest
from toloka.client import Assignment, Pool, Task

from crowdboxes.toloka import collection as ans

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

    def get_project(self, project_id):
        from pathlib import Path

        from toloka.client import Project

        config = Path(__file__).resolve().parents[2] / "configs" / "detection_project.json"
        return Project.from_json(config.read_text())


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



class _Terminal:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_progress_bar_on_a_terminal_and_lines_otherwise(capsys):
    counts = {"submitted": 3, "accepted": 2, "rejected": 1}
    terminal = _Terminal(True)
    bar = ans.Progress(8, "wait_pool 7", stream=terminal)
    bar.update(2, counts, 0.03, "OPEN")
    bar.close()
    assert "wait_pool 7:  25%" in terminal.text and "2/8" in terminal.text and "spent=$0.03" in terminal.text
    log = _Terminal(False)
    lines = ans.Progress(8, "wait_pool 7", stream=log)
    lines.update(2, counts, 0.03, "OPEN")
    lines.update(8, counts, 0.045, "CLOSED COMPLETED")
    assert log.text.splitlines()[1].startswith("wait_pool 7: 8/8 answers (100.0%), submitted 3, accepted 2, "
                                               "rejected 1, spent $0.04, pool CLOSED COMPLETED")
    stdout = capsys.readouterr().out.splitlines()
    assert stdout == ["cnvrg_linechart_Progress value: 25.0", "cnvrg_linechart_Spent value: 0.03"] * 2 + [
        "cnvrg_linechart_Progress value: 100.0", "cnvrg_linechart_Spent value: 0.045"]


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


def test_failed_page_does_not_advance_the_cursor(tmp_path, monkeypatch):
    monkeypatch.setattr(ans, "BATCH_SIZE", 3)
    api = FlakyApi([make_assignment(i, submitted_s=i) for i in range(1, 8)], fail_calls={2})
    collector = ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    with pytest.raises(RuntimeError):
        collector.poll()  # page 1 of 3 read, page 2 failed
    assert collector.snapshots == {}
    assert len(collector.poll()) == 7
    assert ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0).poll() == []


def test_wait_survives_transient_failures_but_not_a_rejected_token(tmp_path, capsys):
    from toloka.client.exceptions import AuthenticationApiError

    api = FlakyApi([make_assignment(1, submitted_s=1)], pool_status="CLOSED", close_reason="COMPLETED",
                   fail_calls={1, 5})  # the first poll's first fetch, the second poll's get_pool
    collector = ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    progress = ans.Progress(1, "w", stream=_Terminal(False))
    outcome = ans.wait_for_pool(api, "7", collector, progress, poll_seconds=5, deadline=None, expected_answers=1,
                                sleep=lambda s: None)
    assert outcome.done and outcome.polls == 3 and len(collector.snapshots) == 1
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: poll")]
    assert len(warnings) == 2 and "RuntimeError: connection reset" in warnings[0]

    def auth_error(message):
        return AuthenticationApiError(status_code=401, code="AUTHENTICATION_ERROR", message=message)

    api = FlakyApi(fail_calls={1}, error=auth_error)
    with pytest.raises(AuthenticationApiError):
        ans.wait_for_pool(api, "7", ans.AnswerCollector(api, ["7"], tmp_path / "b", lag_seconds=0), progress,
                          poll_seconds=5, deadline=None, expected_answers=1, sleep=lambda s: None)


def test_wait_stops_at_the_deadline(tmp_path):
    api = FakeAssignmentsApi(pool_status="OPEN")
    collector = ans.AnswerCollector(api, ["7"], tmp_path, lag_seconds=0)
    slept = []
    outcome = ans.wait_for_pool(api, "7", collector, ans.Progress(4, "w", stream=_Terminal(False)),
                                poll_seconds=0.05, deadline=time.monotonic() + 0.3, expected_answers=4,
                                sleep=lambda s: (slept.append(s), time.sleep(s)))
    assert not outcome.done and outcome.state == "OPEN" and outcome.polls >= 2
    assert all(s <= 0.05 for s in slept)


def test_step_writes_collected_answers_when_the_wait_breaks(tmp_path, capsys, monkeypatch):
    """The step's main with a stand-in client whose token is revoked after the first poll."""
    import importlib.util

    from toloka.client.exceptions import AuthenticationApiError

    import crowdboxes.toloka.client
    from crowdboxes.cnvrg.stepkit import run_step

    def revoked(message):
        return AuthenticationApiError(status_code=401, code="AUTHENTICATION_ERROR", message=message)

    api = FlakyApi([make_assignment(i, submitted_s=i) for i in (1, 2, 3)], fail_calls=set(range(5, 50)),
                   error=revoked)
    monkeypatch.setattr(crowdboxes.toloka.client, "connect", lambda env, token_env: api)
    TASKS.to_csv(tmp_path / "tasks.csv", index=False)
    IMAGES.to_csv(tmp_path / "images.csv", index=False)
    (tmp_path / "pool.csv").write_text("pool_id,role,project_id,tasks,overlap,reward_per_assignment,estimated_cost\n"
                                       "7,detection_pool,1,2,3,0.01,0.09\n")
    spec = importlib.util.spec_from_file_location("step_wait_pool_b", REPO / "steps" / "wait_pool.py")
    step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step)
    code = run_step(step.main, ["--toloka_env", "http://127.0.0.1:9", "--pool_csv", str(tmp_path / "pool.csv"),
                                "--tasks_csv", str(tmp_path / "tasks.csv"), "--images_csv",
                                str(tmp_path / "images.csv"), "--output_dir", str(tmp_path / "out"),
                                "--poll_seconds", "0.01", "--cursor_lag_seconds", "0"])
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "AuthenticationApiError" in err[0] and "3 assignments collected so far" in err[0]
    answers = pd.read_csv(tmp_path / "out" / "answers.csv")
    assert len(answers) == 3 and set(answers["image_id"]) == {"img1"}

# ------------------------------------------------------------------ end to end against the local Toloka

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from helpers_local_toloka import start_local_toloka  # noqa: E402
from toloka.client import Project  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STEP = REPO / "steps" / "wait_pool.py"
TOKEN = "wait-pool-test-token-4242"
TOKEN_ENV = "G_WAIT_POOL_TOKEN"
# the helpers' deterministic crowd: "good" workers draw this rectangle, every 4th worker ("bad") nothing
GOOD = (0.1, 0.2, 0.3, 0.4)


@pytest.fixture(scope="module")
def toloka(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toloka")
    # no streaming-reader holds: a test below kills the step (a reader) and waits for the pool to close;
    # holds are tested in test_local_toloka_readers.py
    handle = start_local_toloka(tmp, TOKEN, workers=4, speed=30, seed=1, crowd_module="helpers_local_toloka",
                                reader_hold_seconds=0)
    client = handle.client()
    project = client.create_project(Project.structure({
        "public_name": "boxes", "public_description": "outline signs", "assignments_issuing_type": "AUTOMATED",
        "task_spec": {"input_spec": {"image": {"type": "url", "required": True}},
                      "output_spec": {"result": {"type": "json", "required": True}},
                      "view_spec": {"type": "tb", "lock": {"core": "1.0.0", "view.text": "1.0.0"},
                                    "config": json.dumps({"view": {"type": "view.text", "content": "x"}})}}}))
    yield handle, client, project.id
    handle.stop()


def make_pool(client, project_id, folder: Path, n_tasks: int, overlap: int, *, auto_accept=True, open_pool=True):
    """A detection pool with ``n_tasks`` one-task suites, and the pool/tasks/images CSVs Launch Pool would write."""
    pool = client.create_pool(Pool.structure({
        "project_id": project_id, "private_name": f"wait test {folder.name}", "reward_per_assignment": 0.01,
        "assignment_max_duration_seconds": 600, "auto_accept_solutions": auto_accept,
        "will_expire": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat(),
        "defaults": {"default_overlap_for_new_task_suites": overlap, "default_overlap_for_new_tasks": overlap},
        "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}}))
    urls = [f"http://127.0.0.1:9/{folder.name}/img{i}.jpg" for i in range(n_tasks)]
    created = client.create_tasks([Task(pool_id=pool.id, input_values={"image": u}, overlap=overlap) for u in urls],
                                  allow_defaults=True)
    by_url = {t.input_values["image"]: t.id for t in created.items.values()}
    folder.mkdir(parents=True, exist_ok=True)
    images = pd.DataFrame({"image_id": [f"im{i}" for i in range(n_tasks)],
                           "file_name": [f"img{i}.jpg" for i in range(n_tasks)], "url": urls,
                           "width": [200 + 40 * i for i in range(n_tasks)],
                           "height": [100 + 20 * i for i in range(n_tasks)], "sha256": ["0" * 64] * n_tasks})
    images.to_csv(folder / "images.csv", index=False)
    pd.DataFrame({"task_id": [by_url[u] for u in urls], "pool_id": pool.id, "image_id": images["image_id"],
                  "url": urls}).to_csv(folder / "tasks.csv", index=False)
    pd.DataFrame([{"pool_id": pool.id, "role": "detection_pool", "project_id": project_id, "tasks": n_tasks,
                   "overlap": overlap, "reward_per_assignment": 0.01, "estimated_cost": 0.015 * n_tasks * overlap,
                   "mode": "overlap"}]).to_csv(folder / "pool.csv", index=False)
    if open_pool:
        client.open_pool(pool.id)
    return pool.id, images


def step_command(handle, folder: Path, out: Path, *extra):
    return [sys.executable, str(STEP), "--toloka_env", handle.url, "--token_env", TOKEN_ENV,
            "--pool_csv", str(folder / "pool.csv"), "--tasks_csv", str(folder / "tasks.csv"),
            "--images_csv", str(folder / "images.csv"), "--projects_csv", "none", "--output_dir", str(out),
            "--poll_seconds", "0.5", "--timeout_hours", "0.05", "--verdict_method", "majority", "--verifiers", "3",
            "--max_attempts", "3", "--budget", "none", *extra]


def step_env():
    return {**os.environ, TOKEN_ENV: TOKEN, "PYTHONPATH": str(REPO)}


def run_step_process(handle, folder, out, *extra, timeout=60):
    proc = subprocess.run(step_command(handle, folder, out, *extra), capture_output=True, text=True,
                          timeout=timeout, env=step_env(), cwd=folder)
    assert TOKEN not in proc.stdout + proc.stderr
    return proc


def expected_rows(client, pool_id, images):
    """answers.csv rows computed independently from the server's assignments."""
    size = {u: (w, h, i) for u, w, h, i in zip(images["url"], images["width"], images["height"], images["image_id"])}
    rows = []
    for a in client.get_assignments(pool_id=pool_id, status=["SUBMITTED", "ACCEPTED", "REJECTED"]):
        w, h, image_id = size[a.tasks[0].input_values["image"]]
        result = a.solutions[0].output_values["result"]
        box = (GOOD[0] * w, GOOD[1] * h, GOOD[2] * w, GOOD[3] * h) if result else (None,) * 4
        rows.append((a.id, image_id, a.user_id, a.status.value, "stop" if result else None, *box))
    return sorted(rows)


def rows_of(frame):
    out = []
    for r in frame.itertuples(index=False):
        label = None if pd.isna(r.label) else r.label
        box = tuple(None if pd.isna(v) else pytest.approx(v) for v in (r.x, r.y, r.w, r.h))
        out.append((r.assignment_id, r.image_id, r.worker_id, r.status, label, *box))
    return sorted(out, key=lambda t: t[0])


def test_small_pool_end_to_end(toloka, tmp_path):
    handle, client, project_id = toloka
    pool_id, images = make_pool(client, project_id, tmp_path / "in", n_tasks=6, overlap=2)
    proc = run_step_process(handle, tmp_path / "in", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    answers = pd.read_csv(tmp_path / "out" / "answers.csv", dtype={"assignment_id": str, "worker_id": str})
    assert list(answers.columns[:11]) == list(ans.ANSWERS.columns)
    assert len(answers) == 12  # 6 images x overlap 2, one row each (one box or nothing)
    assert rows_of(answers) == expected_rows(client, pool_id, images)
    assert answers.loc[answers["worker_id"] == "f04", "label"].isna().all()  # the "bad" worker drew nothing
    summary = json.loads((tmp_path / "out" / "wait_summary.json").read_text())
    assert summary["counts"]["submitted"] == 12 and summary["counts"]["accepted"] == 12
    assert summary["counts"]["rejected"] == 0 and summary["timed_out"] is False
    assert summary["spent_usd"] == pytest.approx(12 * (0.01 + 0.005))
    assert summary["pool_ids"] == {"detection": pool_id} and summary["images_answered"] == 6
    assert summary["images_accepted"] == 6
    charts = [line for line in proc.stdout.splitlines() if line.startswith("cnvrg_linechart_Progress value: ")]
    assert charts and float(charts[-1].split(": ")[1]) == 100.0
    assert "cnvrg_tag_submitted: 12" in proc.stdout and "cnvrg_linechart_Spent value: " in proc.stdout
    assert any("answers (" in line for line in proc.stderr.splitlines())  # the progress line without a TTY

    # downstream, as the flow chains them: aggregate, then export; each image gets the good workers' box
    agg = subprocess.run([sys.executable, str(REPO / "steps" / "aggregate_boxes.py"), "--answers_csv",
                          str(tmp_path / "out" / "answers.csv"), "--images_csv", str(tmp_path / "in" / "images.csv"),
                          "--method", "iou_cluster", "--output_dir", str(tmp_path / "agg")],
                         capture_output=True, text=True, timeout=60)
    assert agg.returncode == 0, agg.stderr
    exp = subprocess.run([sys.executable, str(REPO / "steps" / "export.py"), "--boxes_csv",
                          str(tmp_path / "agg" / "boxes.csv"), "--images_csv", str(tmp_path / "in" / "images.csv"),
                          "--wait_summary", str(tmp_path / "out" / "wait_summary.json"), "--dataset", "signs",
                          "--dataset_root", str(tmp_path / "ds"), "--output_dir", str(tmp_path / "export")],
                         capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if not k.startswith("CNVRG_")})
    assert exp.returncode == 0, exp.stderr
    coco = json.loads((tmp_path / "export" / "annotations.coco.json").read_text())
    drew = answers.dropna(subset=["label"]).groupby("image_id")["worker_id"].nunique()
    by_file = {im["image_key"]: im for im in coco["images"]}
    got = {next(k for k, im in by_file.items() if im["id"] == a["image_id"]): a for a in coco["annotations"]}
    assert sorted(got) == sorted(drew.index)
    for image_id, a in got.items():
        w, h = by_file[image_id]["width"], by_file[image_id]["height"]
        assert a["bbox"] == pytest.approx([GOOD[0] * w, GOOD[1] * h, GOOD[2] * w, GOOD[3] * h], abs=1e-3)
        assert a["category_id"] == 1 and a["support"] == drew[image_id] and a["score"] == drew[image_id] / 2
    summary = json.loads((tmp_path / "export" / "summary.json").read_text())
    assert summary["cost_usd"] == pytest.approx(0.18) and summary["cost_per_accepted_image_usd"] == 0.03
    assert (tmp_path / "ds" / "signs" / "v1" / "annotations.coco.json").is_file()


def test_killed_mid_way_resumes_to_the_same_answers(toloka, tmp_path):
    handle, client, project_id = toloka
    folder = tmp_path / "in"
    pool_id, images = make_pool(client, project_id, folder, n_tasks=12, overlap=2, auto_accept=False,
                                open_pool=False)
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(step_command(handle, folder, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=step_env(), cwd=folder)
    journal = out / ans.JOURNAL_NAME
    deadline = time.monotonic() + 30
    while not journal.exists() and time.monotonic() < deadline:  # the step is up and polling
        time.sleep(0.05)
    client.open_pool(pool_id)  # only now, so the step surely sees the pool half done
    collected = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists():
            collected = journal.read_text().count('"k":"a"')
            if collected >= 4:
                break
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    assert 4 <= collected < 24, "the step should be killed while the pool is still running"
    assert client.get_pool(pool_id).status.value == "OPEN"
    # the requester reviews while the step is down: two rejected, the rest accepted
    while client.get_pool(pool_id).status.value == "OPEN":
        time.sleep(0.2)
    submitted = sorted(client.get_assignments(pool_id=pool_id, status="SUBMITTED"), key=lambda a: a.id)
    assert len(submitted) == 24
    for n, a in enumerate(submitted):
        if n in (3, 10):
            client.reject_assignment(a.id, "box misses the sign")
        else:
            client.accept_assignment(a.id, "ok")

    resumed = run_step_process(handle, folder, out)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    fresh = run_step_process(handle, folder, tmp_path / "uninterrupted")
    assert fresh.returncode == 0, fresh.stderr
    a = (out / "answers.csv").read_bytes()
    assert a == (tmp_path / "uninterrupted" / "answers.csv").read_bytes()
    answers = pd.read_csv(out / "answers.csv", dtype={"assignment_id": str, "worker_id": str})
    assert rows_of(answers) == expected_rows(client, pool_id, images)
    assert (answers["status"] == "REJECTED").sum() == 2 and len(answers) == 24
    summary = json.loads((out / "wait_summary.json").read_text())
    assert summary["counts"] == {"submitted": 24, "accepted": 22, "rejected": 2, "pending_review": 0,
                                 "task_answers": 22}
    assert summary["spent_usd"] == pytest.approx(22 * 0.015)
    rejected_only = set(answers.loc[answers["status"] == "REJECTED", "image_id"]) - set(
        answers.loc[answers["status"] == "ACCEPTED", "image_id"])
    assert summary["images_accepted"] == 12 - len(rejected_only)


def test_adaptive_overlap_reopens_the_closed_pool_until_every_image_has_its_raised_overlap(toloka, tmp_path):
    # risk threshold 0: every image whose answers are all in is uncertain enough, so each one is raised from 2
    # to the maximum 3, one drawing at a time; the pool closes when the first round is done and must be re-opened
    handle, client, project_id = toloka
    pool_id, images = make_pool(client, project_id, tmp_path / "in", n_tasks=5, overlap=2)
    proc = run_step_process(handle, tmp_path / "in", tmp_path / "out", "--max_overlap", "3",
                            "--risk_threshold", "0")
    assert proc.returncode == 0, proc.stderr
    answers = pd.read_csv(tmp_path / "out" / "answers.csv", dtype={"assignment_id": str, "worker_id": str})
    assert answers.groupby("image_id")["worker_id"].nunique().to_dict() == {f"im{i}": 3 for i in range(5)}
    assert rows_of(answers) == expected_rows(client, pool_id, images)
    assert {t.overlap for t in client.get_tasks(pool_id=pool_id)} == {3}
    summary = json.loads((tmp_path / "out" / "wait_summary.json").read_text())
    assert summary["adaptive_overlap"] == {"max_overlap": 3, "risk_threshold": 0.0, "raises": 5,
                                           "refused_by_budget": 0, "mean_overlap": 3.0}
    assert summary["counts"]["submitted"] == 15 and summary["timed_out"] is False
    state = json.loads((tmp_path / "out" / "adaptive_overlap.json").read_text())
    assert state["targets"] == {f"im{i}": 3 for i in range(5)}

    # settings that cannot work are refused before Toloka is asked anything
    bad = run_step_process(handle, tmp_path / "in", tmp_path / "bad", "--max_overlap", "1")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        f"error: --max_overlap 1 is below the pool's overlap 2 ({tmp_path / 'in' / 'pool.csv'}); "
        "use at least 2, or none for a fixed overlap")


def test_timeout_keeps_what_was_collected_and_fails_with_one_line(toloka, tmp_path):
    handle, client, project_id = toloka
    make_pool(client, project_id, tmp_path / "in", n_tasks=2, overlap=1, open_pool=False)  # never finishes
    started = time.monotonic()
    proc = run_step_process(handle, tmp_path / "in", tmp_path / "out", "--timeout_hours", "0.0004")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: wait_pool: timed out after 0.0004 h") and "re-run" in lines[-1]
    assert len([line for line in lines if line.startswith("error:")]) == 1
    assert time.monotonic() - started < 20
    assert pd.read_csv(tmp_path / "out" / "answers.csv").empty
    assert json.loads((tmp_path / "out" / "wait_summary.json").read_text())["timed_out"] is True


@pytest.mark.parametrize("pool_csv, message", [
    ("pool_id,role,project_id,tasks,overlap,reward_per_assignment\n1,detection_pool,1,2,1,0.01\n",
     "missing column(s) estimated_cost"),
    ("pool_id,role,project_id,tasks,overlap,reward_per_assignment,estimated_cost\n1,verification_pool,1,2,1,0.01,1\n",
     "no row with role 'detection'"),
    ("pool_id,role,project_id,tasks,overlap,reward_per_assignment,estimated_cost\n1,detection_pool,1,two,1,0.01,1\n",
     "row 2, field 'tasks': 'two' is not a number"),
])
def test_bad_pool_csv_fails_with_one_line(tmp_path, capsys, pool_csv, message):
    import importlib.util

    from crowdboxes.cnvrg.stepkit import run_step

    spec = importlib.util.spec_from_file_location("step_wait_pool", STEP)
    step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step)
    (tmp_path / "pool.csv").write_text(pool_csv)
    (tmp_path / "tasks.csv").write_text("task_id,pool_id,image_id,url\n")
    (tmp_path / "images.csv").write_text("image_id,file_name,url,width,height,sha256\n")
    code = run_step(step.main, ["--toloka_env", "http://127.0.0.1:9", "--token_env", TOKEN_ENV,
                                "--pool_csv", str(tmp_path / "pool.csv"), "--tasks_csv", str(tmp_path / "tasks.csv"),
                                "--images_csv", str(tmp_path / "images.csv"), "--output_dir", str(tmp_path / "out")])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
