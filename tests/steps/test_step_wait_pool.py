"""Wait Pool as a user meets the step: against the local Toloka (a subprocess, real files), killed and
resumed, timed out, with adaptive overlap; and its one-line failures (in process, with a stand-in client).

The collection logic itself (cursors, journal, pixels, the wait loop) is tested in tests/toloka/test_collection.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from toloka.client import Pool, Project, Task

from crowdboxes.artifacts import ANSWERS, COCO_EXPORT, EXPORT_SUMMARY, OVERLAP_STATE, WAIT_JOURNAL, WAIT_SUMMARY
from crowdboxes.cnvrg.runner import parse_linechart
from helpers_collection import IMAGES, TASKS, FlakyApi, make_assignment
from helpers_local_toloka import start_local_toloka

REPO = Path(__file__).resolve().parents[2]
STEP = "wait_pool.py"
TOKEN = "wait-pool-test-token-4242"
TOKEN_ENV = "G_WAIT_POOL_TOKEN"
# the helpers' deterministic crowd: "good" workers draw this rectangle, every 4th worker ("bad") nothing
GOOD = (0.1, 0.2, 0.3, 0.4)


def test_step_writes_collected_answers_when_the_wait_breaks(tmp_path, monkeypatch, run_step_in_process):
    """The step's main with a stand-in client whose token is revoked after the first poll."""
    from toloka.client.exceptions import AuthenticationApiError

    import crowdboxes.steps.wait_pool
    import crowdboxes.toloka.client
    import crowdboxes.toloka.lease

    def revoked(message):
        return AuthenticationApiError(status_code=401, code="AUTHENTICATION_ERROR", message=message)

    api = FlakyApi([make_assignment(i, submitted_s=i) for i in (1, 2, 3)], fail_calls=set(range(5, 50)),
                   error=revoked)
    monkeypatch.setattr(crowdboxes.toloka.client, "connect", lambda env, token_env: api)
    # the stand-in has no pool metadata: no lease, no finished marker (tests/reliability covers them)
    monkeypatch.setattr(crowdboxes.toloka.lease, "job_lease", lambda *args, **kwargs: contextlib.nullcontext())
    monkeypatch.setattr(crowdboxes.steps.wait_pool, "finished_marker", lambda project, pool_id, **counts: None)
    TASKS.to_csv(tmp_path / "tasks.csv", index=False)
    IMAGES.to_csv(tmp_path / "images.csv", index=False)
    (tmp_path / "pool.csv").write_text("pool_id,role,project_id,tasks,overlap,reward_per_assignment,estimated_cost\n"
                                       "7,detection_pool,1,2,3,0.01,0.09\n")
    done = run_step_in_process(STEP, ["--toloka_env", "http://127.0.0.1:9", "--pool_csv", str(tmp_path / "pool.csv"),
                                      "--tasks_csv", str(tmp_path / "tasks.csv"), "--images_csv",
                                      str(tmp_path / "images.csv"), "--output_dir", str(tmp_path / "out"),
                                      "--poll_seconds", "0.01", "--cursor_lag_seconds", "0"])
    assert done.returncode == 2
    err = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "AuthenticationApiError" in err[0] and "3 assignments collected so far" in err[0]
    answers = pd.read_csv(ANSWERS.path(tmp_path / "out"))
    assert len(answers) == 3 and set(answers["image_id"]) == {"img1"}


@pytest.mark.parametrize("pool_csv, message", [
    ("pool_id,role,project_id,tasks,overlap,reward_per_assignment\n1,detection_pool,1,2,1,0.01\n",
     "missing column(s) estimated_cost"),
    ("pool_id,role,project_id,tasks,overlap,reward_per_assignment,estimated_cost\n1,verification_pool,1,2,1,0.01,1\n",
     "no row with role 'detection'"),
    ("pool_id,role,project_id,tasks,overlap,reward_per_assignment,estimated_cost\n1,detection_pool,1,two,1,0.01,1\n",
     "row 2, field 'tasks': 'two' is not a number"),
    ("pool_id,role,project_id,tasks,overlap,reward_per_assignment,estimated_cost,mode\n"
     "1,detection,1,2,1,0.01,1,overlap+verify\n2,verification,1,2,3,0.01,1,\n3,box_check,4,0,1,0.01,0.5,\n",
     "the box_check round(s) run in mode overlap only, not in mode overlap+verify"),
    # an unknown mode is refused (it used to run as overlap); Toloka is never asked (a closed port here)
    ("pool_id,role,project_id,tasks,overlap,reward_per_assignment,estimated_cost,mode\n"
     "1,detection,1,2,1,0.01,1,bogus\n",
     "pool.csv: row 2, field 'mode': mode 'bogus' is not a mode; choose one of"),
])
def test_bad_pool_csv_fails_with_one_line(tmp_path, run_step_in_process, pool_csv, message):
    (tmp_path / "pool.csv").write_text(pool_csv)
    (tmp_path / "tasks.csv").write_text("task_id,pool_id,image_id,url\n")
    IMAGES.to_csv(tmp_path / "images.csv", index=False)
    done = run_step_in_process(STEP, ["--toloka_env", "http://127.0.0.1:9", "--token_env", TOKEN_ENV,
                                      "--pool_csv", str(tmp_path / "pool.csv"), "--tasks_csv",
                                      str(tmp_path / "tasks.csv"), "--images_csv", str(tmp_path / "images.csv"),
                                      "--output_dir", str(tmp_path / "out")])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize("param, value, message", [
    ("--timeout_hours", "-1", "--timeout_hours -1.0: must be positive (none: wait forever)"),
    ("--timeout_hours", "0", "--timeout_hours 0.0: must be positive"),
    ("--lease_wait_seconds", "-5", "--lease_wait_seconds -5.0: must be 0 or more"),
    ("--poll_seconds", "-1", "--poll_seconds '-1' must be at least 0.01"),
    ("--poll_seconds", "nan", "--poll_seconds 'nan'"),
])
def test_impossible_waits_fail_with_one_line_before_toloka_is_asked(tmp_path, run_step_in_process, param, value,
                                                                   message):
    (tmp_path / "pool.csv").write_text("pool_id,role,project_id,tasks,overlap,reward_per_assignment,estimated_cost\n"
                                       "7,detection_pool,1,2,3,0.01,0.09\n")
    TASKS.to_csv(tmp_path / "tasks.csv", index=False)
    IMAGES.to_csv(tmp_path / "images.csv", index=False)
    done = run_step_in_process(STEP, ["--toloka_env", "http://127.0.0.1:9", "--token_env", TOKEN_ENV,
                                      "--pool_csv", str(tmp_path / "pool.csv"), "--tasks_csv",
                                      str(tmp_path / "tasks.csv"), "--images_csv", str(tmp_path / "images.csv"),
                                      "--output_dir", str(tmp_path / "out"), param, value])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: {message}"] or (len(lines) == 1 and message in lines[0]), lines


# ------------------------------------------------------------------ end to end against the local Toloka

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


def step_args(handle, folder: Path, out: Path, *extra) -> list[str]:
    """Wait Pool's params for the pool ``make_pool`` wrote to ``folder``: poll twice a second, 3 min at most."""
    return ["--toloka_env", handle.url, "--token_env", TOKEN_ENV,
            "--pool_csv", str(folder / "pool.csv"), "--tasks_csv", str(folder / "tasks.csv"),
            "--images_csv", str(folder / "images.csv"), "--projects_csv", "none", "--output_dir", str(out),
            "--poll_seconds", "0.5", "--timeout_hours", "0.05", "--verdict_method", "majority", "--verifiers", "3",
            "--max_attempts", "3", "--budget", "none", *extra]


def step_env() -> dict[str, str]:
    return {**os.environ, TOKEN_ENV: TOKEN}


@pytest.fixture()
def wait_step(run_step):
    """Run Wait Pool as cnvrg does (a subprocess, run in ``folder``); its output never shows the token."""
    def run(handle, folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        proc = run_step(STEP, step_args(handle, folder, out, *extra), step_env(), timeout=60, cwd=folder)
        assert TOKEN not in proc.stdout + proc.stderr
        return proc
    return run


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


def test_small_pool_end_to_end(toloka, tmp_path, wait_step, run_step):
    handle, client, project_id = toloka
    pool_id, images = make_pool(client, project_id, tmp_path / "in", n_tasks=6, overlap=2)
    proc = wait_step(handle, tmp_path / "in", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    answers = pd.read_csv(ANSWERS.path(tmp_path / "out"), dtype={"assignment_id": str, "worker_id": str})
    assert list(answers.columns[:11]) == list(ANSWERS.columns)
    assert len(answers) == 12  # 6 images x overlap 2, one row each (one box or nothing)
    assert rows_of(answers) == expected_rows(client, pool_id, images)
    assert answers.loc[answers["worker_id"] == "f04", "label"].isna().all()  # the "bad" worker drew nothing
    summary = json.loads(WAIT_SUMMARY.path(tmp_path / "out").read_text())
    assert summary["counts"]["submitted"] == 12 and summary["counts"]["accepted"] == 12
    assert summary["counts"]["rejected"] == 0 and summary["timed_out"] is False
    assert summary["spent_usd"] == pytest.approx(12 * (0.01 + 0.005))
    assert summary["pool_ids"] == {"detection": pool_id} and summary["images_answered"] == 6
    assert summary["images_accepted"] == 6
    charts = [parse_linechart(line) for line in proc.stdout.splitlines()]
    progress = [point for name, point in filter(None, charts) if name == "Progress"]
    assert progress and progress[-1]["value"] == 100.0  # x = minutes since the start, never going back
    assert [p["key"] for p in progress] == sorted(p["key"] for p in progress)
    assert "cnvrg_tag_submitted: 12" in proc.stdout and "cnvrg_linechart_Spent key: " in proc.stdout
    assert any("answers (" in line for line in proc.stderr.splitlines())  # the progress line without a TTY

    # downstream, as the flow chains them: aggregate, then export; each image gets the good workers' box
    agg = run_step("aggregate_boxes.py", ["--answers_csv", str(ANSWERS.path(tmp_path / "out")), "--images_csv",
                                          str(tmp_path / "in" / "images.csv"), "--method", "iou_cluster",
                                          "--output_dir", str(tmp_path / "agg")], os.environ, timeout=60)
    assert agg.returncode == 0, agg.stderr
    exp = run_step("export.py", ["--boxes_csv", str(tmp_path / "agg" / "boxes.csv"), "--images_csv",
                                 str(tmp_path / "in" / "images.csv"), "--wait_summary",
                                 str(WAIT_SUMMARY.path(tmp_path / "out")), "--dataset", "signs", "--dataset_root",
                                 str(tmp_path / "ds"), "--output_dir", str(tmp_path / "export")],
                   {k: v for k, v in os.environ.items() if not k.startswith("CNVRG_")}, timeout=60)
    assert exp.returncode == 0, exp.stderr
    coco = json.loads(COCO_EXPORT.path(tmp_path / "export").read_text())
    drew = answers.dropna(subset=["label"]).groupby("image_id")["worker_id"].nunique()
    by_file = {im["image_key"]: im for im in coco["images"]}
    got = {next(k for k, im in by_file.items() if im["id"] == a["image_id"]): a for a in coco["annotations"]}
    assert sorted(got) == sorted(drew.index)
    for image_id, a in got.items():
        w, h = by_file[image_id]["width"], by_file[image_id]["height"]
        assert a["bbox"] == pytest.approx([GOOD[0] * w, GOOD[1] * h, GOOD[2] * w, GOOD[3] * h], abs=1e-3)
        assert a["category_id"] == 1 and a["support"] == drew[image_id] and a["score"] == drew[image_id] / 2
    summary = json.loads(EXPORT_SUMMARY.path(tmp_path / "export").read_text())
    assert summary["cost_usd"] == pytest.approx(0.18) and summary["cost_per_accepted_image_usd"] == 0.03
    assert (tmp_path / "ds" / "signs" / "v1" / "annotations.coco.json").is_file()


def test_killed_mid_way_resumes_to_the_same_answers(toloka, tmp_path, wait_step):
    handle, client, project_id = toloka
    folder = tmp_path / "in"
    pool_id, images = make_pool(client, project_id, folder, n_tasks=12, overlap=2, auto_accept=False,
                                open_pool=False)
    out = tmp_path / "interrupted"
    # a Popen, not the run_step fixture: this run is killed while it waits
    proc = subprocess.Popen([sys.executable, str(REPO / "steps" / STEP), *step_args(handle, folder, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=step_env(), cwd=folder)
    journal = WAIT_JOURNAL.path(out)
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

    resumed = wait_step(handle, folder, out)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    fresh = wait_step(handle, folder, tmp_path / "uninterrupted")
    assert fresh.returncode == 0, fresh.stderr
    a = ANSWERS.path(out).read_bytes()
    assert a == ANSWERS.path(tmp_path / "uninterrupted").read_bytes()
    answers = pd.read_csv(ANSWERS.path(out), dtype={"assignment_id": str, "worker_id": str})
    assert rows_of(answers) == expected_rows(client, pool_id, images)
    assert (answers["status"] == "REJECTED").sum() == 2 and len(answers) == 24
    summary = json.loads(WAIT_SUMMARY.path(out).read_text())
    assert summary["counts"] == {"submitted": 24, "accepted": 22, "rejected": 2, "pending_review": 0,
                                 "task_answers": 22}
    assert summary["spent_usd"] == pytest.approx(22 * 0.015)
    rejected_only = set(answers.loc[answers["status"] == "REJECTED", "image_id"]) - set(
        answers.loc[answers["status"] == "ACCEPTED", "image_id"])
    assert summary["images_accepted"] == 12 - len(rejected_only)


def test_adaptive_overlap_reopens_the_closed_pool_until_every_image_has_its_raised_overlap(toloka, tmp_path, wait_step):
    # risk threshold 0: every image whose answers are all in is uncertain enough, so each one is raised from 2
    # to the maximum 3, one drawing at a time; the pool closes when the first round is done and must be re-opened
    handle, client, project_id = toloka
    pool_id, images = make_pool(client, project_id, tmp_path / "in", n_tasks=5, overlap=2)
    proc = wait_step(handle, tmp_path / "in", tmp_path / "out", "--max_overlap", "3",
                            "--risk_threshold", "0")
    assert proc.returncode == 0, proc.stderr
    answers = pd.read_csv(ANSWERS.path(tmp_path / "out"), dtype={"assignment_id": str, "worker_id": str})
    assert answers.groupby("image_id")["worker_id"].nunique().to_dict() == {f"im{i}": 3 for i in range(5)}
    assert rows_of(answers) == expected_rows(client, pool_id, images)
    assert {t.overlap for t in client.get_tasks(pool_id=pool_id)} == {3}
    summary = json.loads(WAIT_SUMMARY.path(tmp_path / "out").read_text())
    assert summary["adaptive_overlap"] == {"max_overlap": 3, "risk_threshold": 0.0, "raises": 5,
                                           "refused_by_budget": 0, "mean_overlap": 3.0}
    assert summary["counts"]["submitted"] == 15 and summary["timed_out"] is False
    state = json.loads(OVERLAP_STATE.path(tmp_path / "out").read_text())
    assert state["targets"] == {f"im{i}": 3 for i in range(5)}

    # re-run from cnvrg's UI (a fresh folder), even with a higher --max_overlap: the pool is marked finished on
    # Toloka, so nothing more is bought and the same answers are written
    again = wait_step(handle, tmp_path / "in", tmp_path / "again", "--max_overlap", "4", "--risk_threshold", "0")
    assert again.returncode == 0, again.stderr
    assert f"pool {pool_id} was completed by an earlier run" in again.stderr
    assert {t.overlap for t in client.get_tasks(pool_id=pool_id)} == {3}
    assert len(list(client.get_assignments(pool_id=pool_id))) == 15
    assert ANSWERS.path(tmp_path / "again").read_text() == ANSWERS.path(tmp_path / "out").read_text()

    # settings that cannot work are refused before Toloka is asked anything
    bad = wait_step(handle, tmp_path / "in", tmp_path / "bad", "--max_overlap", "1")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        f"error: --max_overlap 1 is below the pool's overlap 2 ({tmp_path / 'in' / 'pool.csv'}); "
        "use at least 2, or none for a fixed overlap")


def test_timeout_keeps_what_was_collected_and_fails_with_one_line(toloka, tmp_path, wait_step):
    handle, client, project_id = toloka
    make_pool(client, project_id, tmp_path / "in", n_tasks=2, overlap=1, open_pool=False)  # never finishes
    # the step ends by itself (wait_step's 60 s process timeout would fail a step that waits on)
    proc = wait_step(handle, tmp_path / "in", tmp_path / "out", "--timeout_hours", "0.0004")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: wait_pool: timed out after 0.0004 h") and "re-run" in lines[-1]
    assert len([line for line in lines if line.startswith("error:")]) == 1
    assert pd.read_csv(ANSWERS.path(tmp_path / "out")).empty
    assert json.loads(WAIT_SUMMARY.path(tmp_path / "out").read_text())["timed_out"] is True


# ------------------------------------------------------------------ the missed-sign and check rounds (mode overlap)

ROUND_HEADER = "pool_id,role,project_id,tasks,overlap,reward_per_assignment,estimated_cost,mode\n"


def test_both_rounds_run_after_the_drawings_and_a_rerun_creates_and_pays_nothing_twice(tmp_path,
                                                                                      run_step_in_process):
    """The step in this process against a local Toloka served from a thread (helpers_rounds: a deterministic
    crowd stepped from a thread on a manual clock; the step waits on the pools' states, not on time)."""
    from toloka.client import Task

    from crowdboxes.artifacts import CHECKS
    from crowdboxes.toloka.spending import money_spent
    from helpers_rounds import TOKEN as LOCAL_TOKEN, pool_from_config, project_from_config, start_local

    folder = tmp_path / "in"
    folder.mkdir()
    with start_local(tmp_path) as local:
        client = local.client
        detection_project = project_from_config(client, "detection_project.json")
        detection = pool_from_config(client, detection_project, None, reward=0.01, overlap=2)
        urls = [f"http://127.0.0.1:9/rounds/im{i}.jpg" for i in range(6)]
        created = client.create_tasks([Task(pool_id=detection, input_values={"image": u}) for u in urls],
                                      allow_defaults=True, open_pool=True)
        by_url = {t.input_values["image"]: t.id for t in created.items.values()}
        images = pd.DataFrame({"image_id": [f"im{i}" for i in range(6)], "file_name": [f"im{i}.jpg" for i in range(6)],
                               "url": urls, "width": 200, "height": 100, "sha256": ["0" * 64] * 6})
        images.to_csv(folder / "images.csv", index=False)
        pd.DataFrame({"task_id": [by_url[u] for u in urls], "pool_id": detection, "image_id": images["image_id"],
                      "url": urls}).to_csv(folder / "tasks.csv", index=False)
        missed = pool_from_config(client, project_from_config(client, "missed_signs_project.json"),
                                  "missed_signs_pool.json")
        check = pool_from_config(client, project_from_config(client, "box_check_project.json"),
                                 "box_check_pool.json")
        (folder / "pool.csv").write_text(ROUND_HEADER + f"{detection},detection,{detection_project},6,2,0.01,0.18,"
                                         f"overlap\n{missed},missed_signs,0,0,1,0.02,0.5,\n"
                                         f"{check},box_check,0,0,1,0.02,0.5,\n")
        args = ["--toloka_env", client.url, "--token_env", TOKEN_ENV, "--pool_csv", str(folder / "pool.csv"),
                "--tasks_csv", str(folder / "tasks.csv"), "--images_csv", str(folder / "images.csv"),
                "--projects_csv", "none", "--poll_seconds", "0.05", "--cursor_lag_seconds", "0",
                "--missed_threshold", "0", "--check_low", "0.01", "--check_high", "0.99",
                "--timeout_hours", "0.5"]  # a hang guard: the crowd thread steps a manual clock
        with local.crowd_running():
            first = run_step_in_process(STEP, [*args, "--output_dir", str(tmp_path / "out")],
                                        {TOKEN_ENV: LOCAL_TOKEN})
        assert first.returncode == 0, first.stderr
        summary = json.loads(WAIT_SUMMARY.path(tmp_path / "out").read_text())
        rounds = summary["rounds"]
        assert rounds["missed_signs"]["tasks_created"] == 6 == len(list(client.get_tasks(pool_id=missed)))
        assert rounds["box_check"]["tasks_created"] == len(list(client.get_tasks(pool_id=check))) > 0
        assert summary["pool_ids"] == {"detection": detection, "missed_signs": missed, "box_check": check}
        assert summary["spent_usd"] == pytest.approx(money_spent(client, [detection, missed, check]))
        assert summary["spent_usd"] == pytest.approx(
            0.18 + rounds["missed_signs"]["spent_usd"] + rounds["box_check"]["spent_usd"])
        answers = pd.read_csv(ANSWERS.path(tmp_path / "out"))
        assert set(answers["round"]) <= {"drawing", "missed_signs"}
        # each missed-sign answer is one row per addition (one empty row for none), kept or, by a drawer, dropped
        assert (answers["round"] == "missed_signs").sum() + rounds["missed_signs"]["dropped_drawer_rows"] >= 6
        assert answers.loc[answers["round"] == "drawing", "assignment_id"].nunique() == 12  # 6 images x overlap 2
        checks = pd.read_csv(CHECKS.path(tmp_path / "out"))
        c = rounds["box_check"]  # a check by a drawer of the image is paid but dropped (no independent evidence)
        assert len(checks) == c["check_rows"] == c["tasks_created"] - c["dropped_drawer_checks"]
        assert "wait_pool round missed_signs" in first.stderr and "wait_pool round box_check" in first.stderr
        assert "wait_pool: round missed_signs: 6 tasks (6 new, 0 skipped for budget), 6 answers" in first.stderr
        assert "cnvrg_tag_box_check_tasks: " in first.stdout

        # a re-run into a fresh folder: the pools are done, nothing is created or paid again
        with local.crowd_running():
            again = run_step_in_process(STEP, [*args, "--output_dir", str(tmp_path / "again")],
                                        {TOKEN_ENV: LOCAL_TOKEN})
        assert again.returncode == 0, again.stderr
        later = json.loads(WAIT_SUMMARY.path(tmp_path / "again").read_text())
        assert later["rounds"]["missed_signs"]["tasks_created"] == later["rounds"]["box_check"]["tasks_created"] == 0
        assert later["spent_usd"] == summary["spent_usd"]
        assert ANSWERS.path(tmp_path / "again").read_bytes() == ANSWERS.path(tmp_path / "out").read_bytes()
        assert CHECKS.path(tmp_path / "again").read_bytes() == CHECKS.path(tmp_path / "out").read_bytes()
