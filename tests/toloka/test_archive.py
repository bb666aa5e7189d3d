"""``python -m crowdboxes archive`` on the local Toloka over real HTTP: refused while work is open, active or
awaiting review (one line per object saying what blocks), done after, idempotent.

The server runs in this process on a ManualClock with helpers_rounds' deterministic crowd; the pool waits for
the requester's review (auto_accept_solutions false), as Launch Pool makes it with ``--auto_accept false``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from crowdboxes.artifacts import ARCHIVE_SUMMARY, POOL, PROJECTS, write_csv
from crowdboxes.cli import main as cli_main
from helpers_rounds import TOKEN, Local, project_from_config, start_local

TOKEN_ENV = "ARCHIVE_TEST_TOKEN"
N_IMAGES = 3


@pytest.fixture()
def local(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with start_local(tmp_path) as handle:
        yield handle


def job(local: Local, tmp_path: Path, review_days: int = 7) -> tuple[str, str, Path, Path]:
    """A project and an open review pool of N_IMAGES tasks (overlap 1); (project, pool, pool.csv, projects.csv)."""
    from toloka.client import Pool, Task

    client = local.client
    project_id = project_from_config(client, "detection_project.json")
    pool = client.create_pool(Pool.structure({
        "project_id": project_id, "private_name": "drawing", "reward_per_assignment": 0.02,
        "assignment_max_duration_seconds": 600, "auto_accept_solutions": False, "auto_accept_period_day": review_days,
        "will_expire": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)).isoformat(),
        "defaults": {"default_overlap_for_new_task_suites": 1, "default_overlap_for_new_tasks": 1},
        "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}}))
    client.create_tasks([Task(pool_id=pool.id, input_values={"image": f"http://127.0.0.1:9/a/im{i}.jpg"})
                         for i in range(N_IMAGES)], allow_defaults=True, open_pool=True)
    pool_csv = write_csv(pd.DataFrame([{"pool_id": pool.id, "role": "detection", "project_id": project_id,
                                        "tasks": N_IMAGES, "overlap": 1, "reward_per_assignment": 0.02,
                                        "estimated_cost": 0.078}]), tmp_path / "launch", POOL)
    projects_csv = write_csv(pd.DataFrame([{"role": "detection", "toloka_id": project_id, "key": "k",
                                            "name": "p"}]), tmp_path / "create", PROJECTS)
    return project_id, pool.id, pool_csv, projects_csv


def archive(local: Local, out: Path, *args: str) -> int:
    return cli_main(["archive", "--toloka_env", local.backend.base_url, "--token_env", TOKEN_ENV,
                     "--output_dir", str(out), *args])


def blocked_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("blocked: ")]


def status(local: Local, kind: str, object_id: str) -> str:
    getter = local.client.get_pool if kind == "pool" else local.client.get_project
    return str(getter(object_id).status.value)


def test_archive_is_refused_while_open_and_awaiting_review_and_done_after(local, tmp_path, capsys):
    project_id, pool_id, pool_csv, projects_csv = job(local, tmp_path)
    out = tmp_path / "archive"
    args = ("--pool_csv", str(pool_csv), "--projects_csv", str(projects_csv))

    assert archive(local, out, *args) == 1
    assert blocked_lines(capsys) == [f"blocked: pool {pool_id}: OPEN: close it (or let it complete) first",
                                     f"blocked: project {project_id}: 1 pool not archived: {pool_id} (OPEN)"]

    for _ in range(200):  # the crowd draws every image; the completed pool closes, its work awaits review
        local.step(1)
        if status(local, "pool", pool_id) == "CLOSED":
            break
    submitted = list(local.client.get_assignments(pool_id=pool_id, status=["SUBMITTED"]))
    assert len(submitted) == N_IMAGES
    until = (max(a.submitted for a in submitted) + dt.timedelta(days=7)).date().isoformat()
    assert archive(local, out, *args) == 1
    assert blocked_lines(capsys) == [
        f"blocked: pool {pool_id}: {N_IMAGES} assignments SUBMITTED await review until {until} (decide them: "
        "python -m crowdboxes decide; or wait for Toloka to accept them then)",
        f"blocked: project {project_id}: 1 pool not archived: {pool_id} (CLOSED)"]
    assert (status(local, "pool", pool_id), status(local, "project", project_id)) == ("CLOSED", "ACTIVE")

    for assignment in submitted:  # the review, done
        local.client.accept_assignment(assignment.id, "ok")
    assert archive(local, out, *args) == 0
    assert (status(local, "pool", pool_id), status(local, "project", project_id)) == ("ARCHIVED", "ARCHIVED")
    summary = json.loads(ARCHIVE_SUMMARY.path(out).read_text())
    assert (summary["archived"], summary["already_archived"], summary["blocked"]) == (
        [f"pool {pool_id}", f"project {project_id}"], [], [])

    # idempotent: a re-run finds both archived and asks nothing of Toloka
    assert archive(local, out, *args) == 0
    summary = json.loads(ARCHIVE_SUMMARY.path(out).read_text())
    assert (summary["archived"], summary["already_archived"]) == ([], [f"pool {pool_id}", f"project {project_id}"])


def test_archive_is_refused_while_a_worker_is_on_an_assignment(local, tmp_path, capsys):
    _, pool_id, pool_csv, _ = job(local, tmp_path)
    for _ in range(50):  # workers take suites; close the pool while they are on them
        local.scheduler.step()
        if list(local.client.get_assignments(pool_id=pool_id, status=["ACTIVE"])):
            break
    active = len(list(local.client.get_assignments(pool_id=pool_id, status=["ACTIVE"])))
    assert active > 0
    local.client.close_pool(pool_id)
    out = tmp_path / "archive"
    assert archive(local, out, "--pool_csv", str(pool_csv)) == 1
    line, = blocked_lines(capsys)
    assert line.startswith(f"blocked: pool {pool_id}: {active} assignment{'s' if active > 1 else ''} ACTIVE "
                           "(workers are on them)")
    assert status(local, "pool", pool_id) == "CLOSED"
    assert json.loads(ARCHIVE_SUMMARY.path(out).read_text())["blocked"] == [line.removeprefix("blocked: ")]


def test_archive_param_is_checked(local, tmp_path, capsys):
    from crowdboxes.errors import CrowdboxesError
    from crowdboxes.toloka.archive import parse_archive

    assert [parse_archive(v) for v in ("none", "pools", "projects,pools")] == [(False, False), (True, False),
                                                                                (True, True)]
    with pytest.raises(CrowdboxesError, match="a project is archived only after its pools; use pools,projects"):
        parse_archive("projects")
    with pytest.raises(CrowdboxesError, match="use one of none, pools, pools,projects"):
        parse_archive("all")


def test_a_pool_with_a_fresh_rejection_waits_for_the_appeal_period(local, tmp_path, capsys):
    _, pool_id, pool_csv, _ = job(local, tmp_path)
    for _ in range(200):
        local.step(1)
        if status(local, "pool", pool_id) == "CLOSED":
            break
    first, *rest = local.client.get_assignments(pool_id=pool_id, status=["SUBMITTED"])
    local.client.reject_assignment(first.id, "No sign outlined.")
    for assignment in rest:
        local.client.accept_assignment(assignment.id, "ok")
    out = tmp_path / "archive"
    assert archive(local, out, "--pool_csv", str(pool_csv)) == 1
    line, = blocked_lines(capsys)
    rejected = local.client.get_assignment(first.id).rejected
    assert line.startswith(f"blocked: pool {pool_id}: Toloka refused (THERE_IS_REJECTED_ASSIGNMENT")
    assert line.endswith(f"its last rejection was at {rejected.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}: Toloka archives "
                         "a pool 9 days after its last rejection (the worker may appeal until then)")
    local.backend.clock.advance(1.0)  # 9 days are 0.78 s at speed 1e6
    assert archive(local, out, "--pool_csv", str(pool_csv)) == 0
    assert status(local, "pool", pool_id) == "ARCHIVED"
