"""Exactly once across re-runs, crashes and concurrent runs, through the real steps on the local Toloka.

cnvrg gives every run of a step a fresh output folder, so the state that makes Wait Pool exactly-once must
come back from Toloka: a finished verify-mode Wait Pool re-run into a new folder buys nothing and writes the
same answers; a run killed with ``kill -9`` mid-way and re-run into a new folder stays within max_attempts,
accepts at most one drawing per image and verifies each drawing once. Two runs of one job at the same time
(Create Project, Launch Pool, Wait Pool) make each object once.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading

import pandas as pd
import pytest

from crowdboxes.toloka.lease import LEASE_PREFIX, MetadataTarget, finished_key
from crowdboxes.toloka.pricing import assignment_price
from helpers_reliability import (MAX_ATTEMPTS, N_IMAGES, VERIFIERS, answers_text, bought, launch_job, start_world,
                                 summary, wait_for, write_images)

pytestmark = [pytest.mark.slow, pytest.mark.server]
SPLIT = 2  # the loop's extra verdicts for a split vote (verification.loop.SPLIT_VERIFIERS)


@pytest.fixture()
def world(tmp_path):
    with start_world(tmp_path) as handle:
        yield handle


def _plan_usd() -> float:
    """The most a 10-image verify job may cost: max_attempts drawings per image, each verified by
    ``VERIFIERS + SPLIT`` workers, at $0.02 per assignment plus Toloka's fee."""
    return N_IMAGES * MAX_ATTEMPTS * (assignment_price(0.02) + (VERIFIERS + SPLIT) * assignment_price(0.02))


def _check_exactly_once(state) -> None:
    assert max(state.drawings_per_image.values()) <= MAX_ATTEMPTS, state.drawings_per_image
    assert max(state.accepted_per_image.values()) <= 1, state.accepted_per_image
    assert len(state.verified_drawings) == len(set(state.verified_drawings)), "a drawing verified twice"
    assert state.spent <= _plan_usd() + 1e-9


def test_a_finished_verify_wait_rerun_into_a_fresh_folder_buys_nothing(world):
    job = launch_job(world, "rerun")
    with world.crowd_running():
        first = world.run("wait_pool", job.folder / "wait1", **world.wait_params(job))
    assert first.returncode == 0, first.stderr
    before = bought(world, job)
    assert before.drawings > N_IMAGES, first.stderr[-3000:]  # the bad drawers' images were redrawn: the case the old state got wrong
    _check_exactly_once(before)
    project = MetadataTarget(world.client, "project", job.detection_project)
    assert finished_key(job.detection) in project.read() and not any(k.startswith(LEASE_PREFIX) for k in project.read())
    started = world.client.get_pool(job.detection).last_started

    with world.crowd_running():
        again = world.run("wait_pool", job.folder / "wait2", **world.wait_params(job))
    assert again.returncode == 0, again.stderr
    assert "was completed by an earlier run" in again.stderr
    assert bought(world, job) == before
    assert answers_text(job.folder / "wait2") == answers_text(job.folder / "wait1")
    assert summary(job.folder / "wait2")["finished_earlier"]
    # the earlier run's times (kept on Toloka): Export sees the same inputs and publishes no new version
    times = ("first_started_at", "started_at", "finished_at", "duration_seconds")
    assert [summary(job.folder / "wait2")[k] for k in times] == [summary(job.folder / "wait1")[k] for k in times]
    assert world.client.get_pool(job.detection).last_started == started  # never re-opened

    # the same when the run that completed the pool died before marking it: the ledger comes back from Toloka
    project.update(lambda metadata: metadata.pop(finished_key(job.detection)))
    with world.crowd_running():
        rebuilt = world.run("wait_pool", job.folder / "wait3", **world.wait_params(job))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt from Toloka" in rebuilt.stderr
    assert bought(world, job) == before
    assert answers_text(job.folder / "wait3") == answers_text(job.folder / "wait1")
    assert world.client.get_pool(job.detection).last_started == started
    now = bought(world, job)
    print(f"\nre-run: {before.drawings} drawings, {before.verdicts} verdicts, ${before.spent:.4f}; after two "
          f"fresh-folder re-runs {now.drawings} drawings, {now.verdicts} verdicts, ${now.spent:.4f}")


@pytest.mark.parametrize("at", [0.3, 0.6])
def test_kill_9_mid_way_then_a_rerun_into_a_fresh_folder_stays_within_plan(world, at):
    job = launch_job(world, "killed")
    proc = world.start("wait_pool", job.folder / "wait1", **world.wait_params(job))
    decided = lambda: sum(a.status.value in ("ACCEPTED", "REJECTED")  # noqa: E731
                          for a in world.assignments(job.detection))
    # the crowd moves one step at a time, and stands still once the share is decided: the wait cannot finish
    # before the kill, whatever the machine's load
    wait_for(lambda: decided() >= N_IMAGES * at or world.step() or proc.poll() is not None, timeout=180,
             what=f"{at:.0%} decided")
    assert proc.poll() is None, "the wait finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    at_kill = bought(world, job)
    with world.crowd_running():
        rerun = world.run("wait_pool", job.folder / "wait2", **world.wait_params(job))
    assert rerun.returncode == 0, rerun.stderr
    assert "rebuilt from Toloka" in rerun.stderr
    after = bought(world, job)
    _check_exactly_once(after)
    assert set(after.accepted_per_image) == set(pd.read_csv(job.tasks_csv, dtype=str)["image_id"])
    answers = pd.read_csv(job.folder / "wait2" / "answers.csv", dtype=str)
    assert set(answers["assignment_id"]) == {a.id for a in world.assignments(job.detection)
                                            if a.status.value in ("SUBMITTED", "ACCEPTED", "REJECTED")}
    print(f"\nkill -9 at {at:.0%}: at the kill {at_kill.drawings} drawings ${at_kill.spent:.4f}; after the re-run "
          f"{after.drawings} drawings, {after.verdicts} verdicts, ${after.spent:.4f} (plan ${_plan_usd():.2f})")


def _together(starts: list) -> list[subprocess.CompletedProcess]:
    """Start the processes at the same moment (a barrier), wait for both."""
    barrier = threading.Barrier(len(starts))
    procs: list = [None] * len(starts)

    def go(index: int) -> None:
        barrier.wait()
        procs[index] = starts[index]()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(starts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


@pytest.mark.parametrize("machines", ["one machine", "two machines"])
def test_two_create_project_and_launch_pool_runs_at_once_make_each_object_once(world, machines):
    """Two flows of one job at once. On one machine the lock file queues them; on two (separate lock
    folders) the lease on Toloka does."""
    key = "race-" + machines.split()[0]
    folder = world.tmp / key
    images_csv = folder / "images.csv"
    write_images(images_csv)
    envs = [{"CROWDBOXES_LOCK_DIR": str(folder / f"locks{i if machines == 'two machines' else ''}")}
            for i in range(2)]
    world.gate.on = True  # both runs' creates meet at the server when both reach them
    made = _together([lambda i=i: world.create_project(folder / f"create{i}", key, envs[i]) for i in range(2)])
    assert [m.returncode for m in made] == [0, 0], [m.stderr for m in made]
    if machines == "two machines":  # both created the detection project; the higher id was archived at once
        archived = r"detection_project: \d+ already existed .*: archived"
        assert world.gate.met >= 2 and any(re.search(archived, m.stdout + m.stderr) for m in made)
    ids = [pd.read_csv(folder / f"create{i}" / "projects.csv", dtype=str) for i in range(2)]
    assert ids[0]["toloka_id"].tolist() == ids[1]["toloka_id"].tolist()
    active = [p for p in world.client.get_projects(status="ACTIVE") if (p.private_comment or "").startswith(
        f"crowdboxes:{key}:")]
    assert len(active) == 4 and len({p.private_comment for p in active}) == 4
    skills = [s for s in world.client.get_skills() if (s.private_comment or "").startswith(f"crowdboxes:{key}:")]
    assert len(skills) == 3

    projects_csv = folder / "create0" / "projects.csv"
    params = world.launch_params(projects_csv, images_csv)
    launched = _together([lambda i=i: world.start("launch_pool", folder / f"launch{i}", envs[i], **params)
                          for i in range(2)])
    assert [r.returncode for r in launched] == [0, 0], [r.stderr for r in launched]
    detection_project = ids[0].set_index("role").loc["detection_project", "toloka_id"]
    pools = [p for p in world.client.get_pools(project_id=detection_project) if p.status.value != "ARCHIVED"]
    assert len(pools) == 1
    assert len(world.tasks(pools[0].id)) == N_IMAGES
    world.gate.on = False
    verification_project = ids[0].set_index("role").loc["verification_project", "toloka_id"]
    assert len([p for p in world.client.get_pools(project_id=verification_project)
                if p.status.value != "ARCHIVED"]) == 1


def test_a_second_wait_pool_during_a_verify_run_waits_or_refuses_and_duplicates_nothing(world):
    job = launch_job(world, "twowaits")
    project = MetadataTarget(world.client, "project", job.detection_project)
    # the crowd stands still until both later runs have met the first one's lease
    first = world.start("wait_pool", job.folder / "wait1", **world.wait_params(job))
    wait_for(lambda: any(k.startswith(LEASE_PREFIX) for k in project.read()) or first.poll() is not None,
             what="the first run's lease")
    refused = world.run("wait_pool", job.folder / "wait_refused", **world.wait_params(job, lease_wait_seconds=0))
    elsewhere = world.run("wait_pool", job.folder / "wait_elsewhere", env={"CROWDBOXES_LOCK_DIR": str(world.tmp / "m2")},
                          **world.wait_params(job, lease_wait_seconds=0))  # another machine: only Toloka's lease
    second = world.start("wait_pool", job.folder / "wait2", **world.wait_params(job, lease_wait_seconds=300))
    with world.crowd_running():
        out, err = first.communicate(timeout=180)
        assert first.returncode == 0, err
        out2, err2 = second.communicate(timeout=180)
    for run, says in ((refused, "holds the lock"), (elsewhere, "is leased to another run")):
        assert run.returncode == 2
        lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and says in lines[0] and "until" in lines[0], run.stderr
    assert second.returncode == 0, err2
    assert "was completed by an earlier run" in err2  # it waited, then found the pool done
    state = bought(world, job)
    _check_exactly_once(state)
    assert set(state.verified_drawings) <= {a.id for a in world.assignments(job.detection)}
    assert answers_text(job.folder / "wait2") == answers_text(job.folder / "wait1")


@pytest.mark.parametrize("streak", [1, 2])
def test_lost_replies_to_writes_leave_one_live_object_each_and_a_rerun_buys_nothing(world, streak):
    """Every write's reply is lost ``streak`` times in a row and then answered (the local Toloka's
    ``lost_reply_rate``, at most ``max_streak`` faults in a row), so the client's retries make each create
    ``streak + 1`` times: the creates converge on one object each (every extra empty project and pool is
    archived at once, an extra skill is left unused), tasks and verdicts are not doubled, and the whole job
    (verify mode: the most writes) stays within plan; a re-run into a fresh folder buys nothing."""
    faults = world.gate.app.faults
    faults.update(lost_reply_rate=1, max_streak=streak)
    key = f"lostreplies{streak}"
    try:
        job = launch_job(world, key)
        with world.crowd_running():
            waited = world.run("wait_pool", job.folder / "wait1", **world.wait_params(job))
    finally:
        faults.update(lost_reply_rate=0, max_streak=3)
    assert waited.returncode == 0, waited.stderr
    assert world.gate.app.stats_snapshot()["injected_faults"].get("503", 0) > 10
    made = [p for p in world.client.get_projects() if (p.private_comment or "").startswith(f"crowdboxes:{key}:")]
    live = [p for p in made if p.status.value == "ACTIVE"]
    assert len(live) == 4 and len({p.private_comment for p in live}) == 4
    assert len(made) >= 4 * (streak + 1), len(made)  # each project was made streak + 1 times
    for project in live:
        assert len([p for p in world.client.get_pools(project_id=project.id) if p.status.value != "ARCHIVED"
                    and p.type is None]) <= 1, project.private_comment
    assert sorted(t.input_values["image"] for t in world.tasks(job.detection)) == sorted(
        pd.read_csv(job.images_csv, dtype=str)["url"])
    first = bought(world, job)
    _check_exactly_once(first)
    with world.crowd_running():
        again = world.run("wait_pool", job.folder / "wait2", **world.wait_params(job))
    assert again.returncode == 0, again.stderr
    assert bought(world, job) == first
