"""Sync (issue 15, item 5): statuses changed outside the flow reach answers.csv.

A Wait Pool of a pool launched with ``--auto_accept false`` completes with every drawing SUBMITTED and marks
the pool finished on Toloka. Then the requester accepts one assignment and rejects another by hand (toloka-kit's
``accept_assignment``/``reject_assignment``, a PATCH of ``/assignments/{id}``, as Toloka's interface does), and
the review period ends, so Toloka accepts the rest by itself. A Wait Pool re-run (the same folder, whose journal
holds the old SUBMITTED snapshots, or a fresh one) shows each new status in answers.csv and wait_summary.json,
and buys nothing.

The local Toloka runs in this process on a ManualClock (helpers_rounds); the step runs in this process too
and talks to it over real HTTP.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from crowdboxes.artifacts import ANSWERS, WAIT_SUMMARY
from crowdboxes.toloka.collection.snapshots import iso
from helpers_rounds import DAY_REAL_SECONDS, Local, local_fixture, project_from_config

TOKEN_ENV = "SYNC_WAIT_TEST_TOKEN"
N_IMAGES = 4
OVERLAP = 2
REVIEW_DAYS = 1

# a local Toloka served over HTTP in this process: seconds per test, so not in make test-fast
pytestmark = pytest.mark.server


local = local_fixture(TOKEN_ENV)


def review_job(local: Local, folder: Path) -> str:
    """A drawing pool with ``--auto_accept false``, drawn by the crowd until Toloka closed it, and the
    pool/tasks/images CSVs Launch Pool would have written to ``folder``; the pool id."""
    from toloka.client import Pool, Task

    client = local.client
    project_id = project_from_config(client, "detection_project.json")
    pool_id = client.create_pool(Pool.structure({
        "project_id": project_id, "private_name": "drawing", "reward_per_assignment": 0.02,
        "assignment_max_duration_seconds": 600, "auto_accept_solutions": False,
        "auto_accept_period_day": REVIEW_DAYS,
        "will_expire": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)).isoformat(),
        "defaults": {"default_overlap_for_new_task_suites": OVERLAP, "default_overlap_for_new_tasks": OVERLAP},
        "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}})).id
    urls = [f"http://127.0.0.1:9/sync/im{i}.jpg" for i in range(N_IMAGES)]
    created = client.create_tasks([Task(pool_id=pool_id, input_values={"image": u}) for u in urls],
                                  allow_defaults=True, open_pool=True)
    by_url = {t.input_values["image"]: t.id for t in created.items.values()}
    folder.mkdir(parents=True, exist_ok=True)
    images = pd.DataFrame({"image_id": [f"im{i}" for i in range(N_IMAGES)], "url": urls, "width": 200.0,
                           "height": 100.0, "file_name": [f"im{i}.jpg" for i in range(N_IMAGES)],
                           "sha256": "0" * 64})
    images.to_csv(folder / "images.csv", index=False)
    pd.DataFrame({"task_id": [by_url[u] for u in urls], "pool_id": pool_id, "image_id": images["image_id"],
                  "url": urls}).to_csv(folder / "tasks.csv", index=False)
    pd.DataFrame([{"pool_id": pool_id, "role": "detection_pool", "project_id": project_id, "tasks": N_IMAGES,
                   "overlap": OVERLAP, "reward_per_assignment": 0.02, "estimated_cost": 0.026 * N_IMAGES * OVERLAP,
                   "mode": "overlap"}]).to_csv(folder / "pool.csv", index=False)
    for _ in range(400):
        local.step(1)
        if client.get_pool(pool_id).status.value == "CLOSED":
            break
    assert client.get_pool(pool_id).status.value == "CLOSED"
    assert len(list(client.get_assignments(pool_id=pool_id, status=["SUBMITTED"]))) == N_IMAGES * OVERLAP
    return pool_id


def wait_args(local: Local, folder: Path, out: Path) -> list[str]:
    return ["--toloka_env", local.backend.base_url, "--token_env", TOKEN_ENV, "--pool_csv", str(folder / "pool.csv"),
            "--tasks_csv", str(folder / "tasks.csv"), "--images_csv", str(folder / "images.csv"),
            "--projects_csv", "none", "--output_dir", str(out), "--poll_seconds", "0.05", "--timeout_hours", "0.02",
            "--cursor_lag_seconds", "0", "--budget", "none", "--lease_wait_seconds", "0"]


def statuses_in(out: Path) -> dict[str, str]:
    """answers.csv's status of each assignment (every row of one assignment has the same one)."""
    answers = pd.read_csv(ANSWERS.path(out), dtype={"assignment_id": str, "status": str})
    per_assignment = answers.groupby("assignment_id")["status"].agg(set)
    assert (per_assignment.map(len) == 1).all()
    return {aid: next(iter(s)) for aid, s in per_assignment.items()}


def on_toloka(local: Local, pool_id: str) -> dict[str, str]:
    return {a.id: a.status.value for a in local.client.get_assignments(pool_id=pool_id)}


def test_a_wait_pool_rerun_shows_hand_decisions_and_expired_reviews_and_buys_nothing(local, tmp_path,
                                                                                     run_step_in_process):
    folder = tmp_path / "launch"
    pool_id = review_job(local, folder)
    client = local.client

    first = run_step_in_process("wait_pool.py", wait_args(local, folder, tmp_path / "wait"))
    assert first.returncode == 0, first.stderr
    assert set(statuses_in(tmp_path / "wait").values()) == {"SUBMITTED"}
    summary = json.loads(WAIT_SUMMARY.path(tmp_path / "wait").read_text())
    assert summary["counts"]["pending_review"] == N_IMAGES * OVERLAP
    assert summary["images_accepted"] == 0 and summary["images_pending_review"] == N_IMAGES
    submitted = min(a.submitted for a in client.get_assignments(pool_id=pool_id))
    assert summary["review_ends_at"] == iso(submitted + dt.timedelta(days=REVIEW_DAYS))  # Toloka's days
    assert f"{N_IMAGES * OVERLAP} assignments await your review; Toloka accepts them by itself from " \
           f"{summary['review_ends_at']}" in first.stderr
    assert f"cnvrg_tag_pending_review: {N_IMAGES * OVERLAP}" in first.stdout
    bought = set(on_toloka(local, pool_id))

    # the requester decides two by hand in Toloka, outside the flow
    ids = sorted(bought)
    client.accept_assignment(ids[0], "good boxes")
    client.reject_assignment(ids[1], "sign B is not outlined")

    again = run_step_in_process("wait_pool.py", wait_args(local, folder, tmp_path / "wait"))  # the same folder
    assert again.returncode == 0, again.stderr
    assert "completed by an earlier run" in again.stderr
    assert statuses_in(tmp_path / "wait") == on_toloka(local, pool_id)
    assert statuses_in(tmp_path / "wait")[ids[0]] == "ACCEPTED" and statuses_in(tmp_path / "wait")[ids[1]] == "REJECTED"
    summary = json.loads(WAIT_SUMMARY.path(tmp_path / "wait").read_text())
    assert (summary["counts"]["accepted"], summary["counts"]["rejected"], summary["counts"]["pending_review"]) == (
        1, 1, N_IMAGES * OVERLAP - 2)

    # the review period ends: Toloka accepts what is left
    local.backend.clock.advance(2 * REVIEW_DAYS * DAY_REAL_SECONDS)
    local.step(1)
    expected = on_toloka(local, pool_id)
    assert sorted(expected.values()) == ["ACCEPTED"] * (N_IMAGES * OVERLAP - 1) + ["REJECTED"]
    for out in (tmp_path / "wait", tmp_path / "fresh"):
        rerun = run_step_in_process("wait_pool.py", wait_args(local, folder, out))
        assert rerun.returncode == 0, rerun.stderr
        assert statuses_in(out) == expected
        summary = json.loads(WAIT_SUMMARY.path(out).read_text())
        assert summary["counts"] == {"submitted": 8, "accepted": 7, "rejected": 1, "pending_review": 0,
                                     "task_answers": 7}
        assert summary["images_accepted"] == N_IMAGES and summary["images_pending_review"] == 0
        assert summary["review_ends_at"] is None
    assert ANSWERS.path(tmp_path / "wait").read_bytes() == ANSWERS.path(tmp_path / "fresh").read_bytes()
    # nothing bought on any re-run: the same assignments, the pool never re-opened
    assert set(on_toloka(local, pool_id)) == bought
    assert client.get_pool(pool_id).status.value == "CLOSED"
