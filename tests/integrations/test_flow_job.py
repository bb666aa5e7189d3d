"""The FiftyOne backend's job runner (``flow_job``) without FiftyOne or mongod: one run of a job at a time, and
a start whose process died is seen as ``stopped``, not ``starting`` for ever. The jobs are for real Toloka
without a bucket, so a run that gets going fails at once, before reaching Toloka; a start that must stay in
``starting`` runs an "interpreter" that only sleeps."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from crowdboxes.errors import CrowdboxesError
from crowdboxes.integrations import flow_job
from crowdboxes.integrations.flow_job import JobSettings, job_status, prepare_job, start_job

NO_BUCKET = "toloka_env sandbox: give s3_bucket, the bucket Toloka's workers load the images from"


def _job(tmp_path: Path) -> Path:
    Image.new("RGB", (320, 240)).save(tmp_path / "photo.png")
    job = tmp_path / "job"
    prepare_job(job, JobSettings(project_key="k", toloka_env="sandbox"), ["stop"], [("s1", str(tmp_path / "photo.png"))])
    return job


def _sleeper(tmp_path: Path) -> str:
    """An executable that ignores its arguments and sleeps: a background start that never gets going."""
    path = tmp_path / "sleeper.sh"
    path.write_text("#!/bin/sh\nexec sleep 600\n")
    path.chmod(0o755)
    return str(path)


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120  # guards a hang only: the condition comes true within a second
    while not condition():
        assert time.monotonic() < deadline, "condition not met in 120 s"
        time.sleep(0.05)


def test_a_second_start_of_a_job_that_is_starting_is_refused_in_one_line(tmp_path):
    job = _job(tmp_path)
    pid = start_job(job, wait=False, python=_sleeper(tmp_path))
    try:
        recorded = (job / flow_job.STATUS).read_text()
        assert job_status(job)["status"] == "starting"
        refusals = []
        for start in (lambda: start_job(job, wait=False), lambda: start_job(job, wait=True),
                      lambda: flow_job.main([str(job)])):
            with pytest.raises(CrowdboxesError) as caught:
                start()
            refusals.append(str(caught.value))
        assert refusals == [f"{job}: this job is already starting (pid {pid}); wait for it to end, or stop that "
                            "process, before starting it again"] * 3
        assert (job / flow_job.STATUS).read_text() == recorded  # the refusals changed nothing
    finally:
        os.kill(pid, signal.SIGKILL)
    _wait_until(lambda: job_status(job)["status"] != "starting")  # a zombie until reaped: dead all the same
    assert {k: job_status(job)[k] for k in ("status", "pid", "parent_pid")} == {
        "status": "stopped", "pid": pid, "parent_pid": os.getpid()}
    with pytest.raises(CrowdboxesError, match="give s3_bucket"):  # a stopped job may start again
        start_job(job, wait=True)
    assert job_status(job)["status"] == "failed" and job_status(job)["error"] == NO_BUCKET


def test_a_background_start_whose_process_dies_at_once_is_stopped_while_its_starter_lives(tmp_path):
    job = _job(tmp_path)
    pid = start_job(job, wait=False, python=str(shutil.which("false")))
    _wait_until(lambda: job_status(job)["status"] != "starting")
    status = job_status(job)
    assert (status["status"], status["pid"], status["parent_pid"]) == ("stopped", pid, os.getpid())


def test_a_background_start_that_gets_going_takes_over_its_starting_record(tmp_path):
    job = _job(tmp_path)
    pid = start_job(job, wait=False)
    _wait_until(lambda: job_status(job)["status"] not in ("starting", "running"))
    status = job_status(job)
    assert (status["status"], status["pid"], status["error"]) == ("failed", pid, NO_BUCKET)


def test_a_job_that_cannot_be_started_says_why_and_is_failed_not_starting(tmp_path):
    job = _job(tmp_path)
    with pytest.raises(CrowdboxesError) as caught:
        start_job(job, wait=False, python=str(tmp_path / "no-such-python"))
    assert str(caught.value).startswith(f"cannot start {tmp_path / 'no-such-python'}: ")
    assert job_status(job)["status"] == "failed" and job_status(job)["error"] == str(caught.value)
