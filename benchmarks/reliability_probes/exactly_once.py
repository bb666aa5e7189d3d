"""Groups ``re-runs`` and ``kill points``: a step run again into a fresh folder, after a finished run or after
``kill -9`` part-way, must create nothing twice and spend nothing twice.

* re-runs: a whole flow in modes overlap and verify, then every step re-run alone (``flow run --only``, a
  fresh run folder, as cnvrg's UI re-runs a task): zero new Toloka objects, zero new money, zero new S3
  objects and dataset versions;
* kill points: the flow is started and its step is killed with SIGKILL once a server-side condition says it
  is ~30 % / ~60 % done (S3 objects uploaded, projects and skills made, tasks created, drawings submitted in
  overlap mode, verdicts submitted against one round of verifiers per image in verify mode);
  then the killed step is re-run alone (and, from Launch Pool on, the steps after it up to Wait Pool):
  nothing twice, no image over ``max_attempts``, at most one ACCEPTED drawing per image in verify mode,
  money within the plan, no accepted answer missing from answers.csv.
"""

from __future__ import annotations

import json
import os
import signal
import time

from .world import (MAX_ATTEMPTS, SLUGS, TITLES, VERIFIERS, Job, Probe, World, created_objects, diff, last_line,
                    step_pid, verdict, wait_until)

GROUP_RERUN = "re-runs"
GROUP_KILL = "kill points"


def finished_job(world: World, mode: str, cache: dict[str, Job]) -> tuple[Job | None, str]:
    """A job whose whole flow finished (one per mode and bench run, shared with the fault group's baseline)."""
    if mode in cache:
        return cache[mode], ""
    job = world.new_job(mode)
    started, calls = time.monotonic(), world.requests()
    done = job.run()
    job.wall = time.monotonic() - started  # type: ignore[attr-defined]
    job.calls = tuple(b - a for a, b in zip(calls, world.requests()))  # type: ignore[attr-defined]
    job.wait = job.wait_seconds()  # type: ignore[attr-defined]  # before a re-run replaces the latest Wait Pool
    if done.returncode != 0:
        return None, f"the first run failed: {last_line(done.stdout)}"
    cache[mode] = job
    return job, ""


def rerun_probes(world: World, modes: list[str], titles: list[str], cache: dict[str, Job]) -> list[Probe]:
    probes = []
    for mode in modes:
        job, problem = finished_job(world, mode, cache)
        # later steps first, so each re-run reads the first run's artifacts; then Export once more, after
        # the Wait Pool re-run: it must find its inputs unchanged
        order = [t for t in reversed(TITLES) if t in titles]
        order += ["Export"] if {"Export", "Wait Pool"} <= set(titles) else []
        for index, title in enumerate(order):
            name = f"{mode}: re-run {title}" + (" after the Wait Pool re-run" if index >= len(titles) else "")
            if job is None:
                probes.append(Probe(GROUP_RERUN, name, "skipped", problem))
                continue
            started = time.monotonic()
            before = world.snapshot()
            done = job.run(only=title, timeout=180)
            change = diff(before, world.snapshot())
            change.pop("writes", None)  # a re-run may read and refresh its lease: counted only as objects
            new = created_objects(change)
            problems = [] if done.returncode == 0 else [f"exit {done.returncode}: {last_line(done.stdout)}"]
            if change:
                problems.append("new " + ", ".join(f"{k} {v:+g}" for k, v in change.items()))
            if change.get("versions"):
                problems.append(_version_change(world))
            probes.append(verdict(GROUP_RERUN, name, problems, "nothing new on Toloka, S3 or the dataset store",
                                  duplicates=new, over_usd=max(0.0, change.get("usd", 0.0)),
                                  seconds=time.monotonic() - started))
    return probes


def _version_change(world: World) -> str:
    """Which files of the newest dataset version differ from the one before (their manifests' sha256)."""
    versions = sorted((p for p in (world.work / "datasets").glob("*/v*") if (p / "manifest.json").is_file()),
                      key=lambda p: p.stat().st_mtime)[-2:]
    if len(versions) < 2:
        return "a first version"
    old, new = ({f["name"]: f["sha256"] for f in json.loads((v / "manifest.json").read_text())["files"]}
                for v in versions)
    return "it differs in " + ", ".join(sorted(name for name in new if old.get(name) != new[name]))


def _progress(job: Job, title: str) -> float:
    """How far the step is, from the servers: 0..1."""
    world = job.world
    if title == "Upload Images":
        return len(world.s3_keys(f"rel/{job.key}/")) / world.count
    objects = job.objects()
    if title == "Create Project":
        return (objects["projects"] + objects["skills"]) / 7
    if title == "Launch Pool":
        return objects["tasks"] / world.count
    if job.mode == "overlap":
        drawn, _ = job.drawings()
        return sum(drawn.values()) / (world.count * job.overlap)
    # verify: verdicts bought, against one round of verifiers per image (the loop's ledger is busy by then)
    pool = job.pool_of("verification")
    verdicts = world.sql("SELECT COUNT(*) FROM assignments WHERE pool_id = ? AND status IN "
                         "('SUBMITTED','ACCEPTED','REJECTED')", (pool or -1,))[0][0]
    return verdicts / (world.count * VERIFIERS)


def kill_probe(world: World, mode: str, title: str, point: float) -> Probe:
    name = f"{mode}: kill -9 {title} at {point:.0%}"
    slug = SLUGS[title]
    started = time.monotonic()
    # Create Project and Launch Pool take a second: 150 ms per request lets a poll see them half-way.
    # Wait Pool: the crowd waits until the step runs, then works slowly enough to be caught half-way.
    slow = title in ("Create Project", "Launch Pool")
    extra = {"batch_size": "3"} if title == "Launch Pool" else {}
    extra.update({"max_workers": "1"} if title == "Upload Images" else {})
    job = world.new_job(mode, overrides=extra)
    if title == "Wait Pool":
        world.crowd(paused=True)
    runner = job.start()
    killed_at = None
    try:
        if slow and not wait_until(lambda: step_pid(runner.pid, slug) is not None, 120, 0.05):
            return Probe(GROUP_KILL, name, "skipped", f"the flow never reached {title}: "
                         f"{last_line(job.finish(runner, 30).stdout)}")
        if slow:
            world.faults(latency_ms=150)
        if title == "Wait Pool":
            if not wait_until(lambda: step_pid(runner.pid, slug) is not None, 120, 0.05):
                return Probe(GROUP_KILL, name, "skipped", f"the flow never reached {title}")
            world.crowd(paused=False, speed=min(world.speed, 40.0))
        while killed_at is None:
            pid = step_pid(runner.pid, slug)
            progress = _progress(job, title)
            if progress >= point and pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed_at = progress
            elif runner.poll() is not None or (pid is None and progress >= point):
                break
            time.sleep(0.01)
        first = job.finish(runner, 240)
    finally:
        world.faults()
        world.crowd(paused=False, speed=world.speed)
    if killed_at is None:
        return Probe(GROUP_KILL, name, "skipped", f"the step ended before {point:.0%} ({last_line(first.stdout)})")
    after_kill = {"objects": job.objects(), "s3": len(world.s3_keys(f"rel/{job.key}/"))}
    last = {"Upload Images": "Upload Images", "Create Project": "Create Project"}.get(title, "Wait Pool")
    again = job.run_from(title, last=last, timeout=300)
    problems = [] if again.returncode == 0 else [f"the re-run failed: {last_line(again.stdout)}"]
    objects = job.objects()
    duplicates = job.duplicate_tasks()
    lost = over = 0.0
    if title == "Upload Images":
        duplicates += max(0, len(world.s3_keys(f"rel/{job.key}/")) - world.count)
    elif title == "Create Project":
        duplicates += max(0, objects["projects"] - 4) + max(0, objects["skills"] - 3)
    else:
        duplicates += max(0, objects["projects"] - 4) + max(0, objects["skills"] - 3)
        duplicates += max(0, objects["pools"] - (2 if "verify" in mode else 1))
        drawn, accepted = job.drawings()
        over_attempts = sum(1 for n in drawn.values() if n > MAX_ATTEMPTS * job.overlap) if "verify" in mode else 0
        twice = sum(1 for n in accepted.values() if n > job.overlap) if "verify" in mode else 0
        over = max(0.0, job.spent() - job.plan())
        lost = job.lost_answers() if again.returncode == 0 else 0
        if over_attempts:
            problems.append(f"{over_attempts} images over max_attempts (up to {max(drawn.values())} drawings)")
        if twice:
            problems.append(f"{twice} images with more than one ACCEPTED drawing")
        if over:
            problems.append(f"${job.spent():.2f} against a plan of ${job.plan():.2f}")
        if lost:
            problems.append(f"{int(lost)} accepted answers missing from answers.csv")
    if duplicates:
        problems.insert(0, f"{duplicates} duplicate objects ({objects})")
    return verdict(GROUP_KILL, name, problems, f"killed at {killed_at:.0%} (then {after_kill}); re-run made "
                   "nothing twice", duplicates=duplicates, lost=int(lost), over_usd=over,
                   seconds=time.monotonic() - started)


KILLS = [("overlap", "Upload Images"), ("overlap", "Create Project"), ("overlap", "Launch Pool"),
         ("overlap", "Wait Pool"), ("verify", "Wait Pool")]


def kill_probes(world: World, quick: bool) -> list[Probe]:
    cases = [("verify", "Wait Pool", 0.6)] if quick else [(m, t, p) for m, t in KILLS for p in (0.3, 0.6)]
    return [kill_probe(world, mode, title, point) for mode, title, point in cases]


def reruns(world: World, quick: bool, cache: dict[str, Job]) -> list[Probe]:
    if quick:
        return rerun_probes(world, ["verify"], ["Wait Pool"], cache)
    return rerun_probes(world, ["overlap", "verify"], list(TITLES), cache)
