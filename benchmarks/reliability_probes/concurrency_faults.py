"""Groups ``concurrency`` and ``faults``.

* concurrency: two runs of one job at once must make each object once: two Create Project runs with one
  project key; two Launch Pool runs on one job's artifacts; a second Wait Pool started during a verify run;
  two whole flows of one job; two demos in one workdir (distinct run tags, state and servers).
* faults: the whole flow (overlap mode, 5 drawers: a steadier AP50) under the local Toloka's fault
  injection (30 % 5xx; 50 % 5xx in streaks of up to 8; a 2 requests/s rate limit; 300 ms latency per
  request; 30 % of writes made but their replies lost, so the client's retry repeats them) completes, makes
  nothing twice, collects every drawing it bought and scores an AP50 within :data:`AP50_NOISE` of the clean
  run's; verify mode completes under the lost replies too; and verify mode under 30 % 5xx takes at most
  :data:`TIME_RATIO` times the clean verify run's wall time.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from .world import ROOT, Job, Probe, World, last_line, step_pid, verdict, wait_until

GROUP_CONC = "concurrency"
GROUP_FAULTS = "faults"
# AP50 of 10-image runs at 5 drawers moves from run to run with the live crowd's scheduling: clean runs alone
# scored 0.85-0.96, and a run under a rate limit with every drawing collected 0.77 against a clean 0.96.
# Answers lost to a fault are caught exactly by the drawings count; this bound only catches a broken result.
AP50_NOISE = 0.25
FAULT_OVERLAP = 5
# Two runs started together race only while both are between "look up" and "create": 150 ms per request
# widens that window, so a missing lease shows as duplicates instead of passing by timing luck
RACE_LATENCY_MS = 150
TIME_RATIO = 2.0
PROFILES: dict[str, dict[str, float]] = {
    "30% 5xx": {"error_rate": 0.3}, "50% 5xx, streaks of 8": {"error_rate": 0.5, "max_streak": 8},
    "rate limit 2/s": {"rate_limit": 2}, "latency 300 ms": {"latency_ms": 300},
    # writes that Toloka made but whose reply was lost: the client's retry repeats them
    "30% lost replies": {"lost_reply_rate": 0.3}}


def _counted(job: Job, lost_replies: bool) -> dict[str, int]:
    """The job's objects. With ``lost_replies`` (a create that Toloka made and whose reply was lost is made
    again by the client's retry), an extra object the flow archived at once while empty, or an extra skill
    it left unused, is all the flow can do about it, and is not counted as a duplicate."""
    objects = job.objects()
    if lost_replies:
        objects["projects"] -= objects["archived_projects"]
        objects["pools"] -= objects["empty_archived_pools"]
        objects["skills"] = min(objects["skills"], 3)
    return objects


def _once(job: Job, pools: int, *, lost_replies: bool = False) -> list[str]:
    objects = _counted(job, lost_replies)
    problems = []
    expected = {"projects": 4, "skills": 3, "pools": pools}
    for kind, n in expected.items():
        if objects[kind] > n:
            problems.append(f"{objects[kind]} {kind} (one run makes {n})")
    if job.duplicate_tasks():
        problems.append(f"{job.duplicate_tasks()} duplicate tasks")
    return problems


def _extra(job: Job, pools: int, *, lost_replies: bool = False) -> int:
    objects = _counted(job, lost_replies)
    return (max(0, objects["projects"] - 4) + max(0, objects["skills"] - 3) + max(0, objects["pools"] - pools)
            + job.duplicate_tasks())


def _step(job: Job, slug: str, out: Path, **params: str) -> subprocess.Popen[str]:
    world = job.world
    argv = [sys.executable, str(ROOT / "steps" / f"{slug}.py"), "--toloka_env", job.params["toloka_env"],
            "--token_env", "toloka_token", "--output_dir", str(out)]
    for key, value in params.items():
        argv += [f"--{key}", value]
    return subprocess.Popen(argv, cwd=ROOT, env=world.env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _both(procs: list[subprocess.Popen[str]], world: World, timeout: float = 240) -> list[int]:
    codes = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        world.outputs.append(out)
        codes.append(proc.returncode)
    return codes


def two_create_projects(world: World) -> Probe:
    started = time.monotonic()
    job = world.new_job()
    world.faults(latency_ms=RACE_LATENCY_MS)
    try:
        procs = [_step(job, "create_project", job.folder / f"cp{i}", config_dir="configs", project_key=job.key)
                 for i in (1, 2)]
        codes = _both(procs, world)
    finally:
        world.faults()
    problems = _once(job, 0) + ([] if 0 in codes else [f"both runs failed (exits {codes})"])
    return verdict(GROUP_CONC, "two Create Project at once", problems, f"exits {codes}; each object once",
                   duplicates=_extra(job, 0), seconds=time.monotonic() - started)


def two_launch_pools(world: World) -> Probe:
    started = time.monotonic()
    job = world.new_job()
    first = job.run(only="Upload Images", timeout=120)
    if first.returncode == 0:
        first = job.run(only="Create Project", timeout=120)
    try:
        projects, images = job.output("create_project") / "projects.csv", job.output("upload_images") / "images.csv"
    except (KeyError, OSError, ValueError):
        return Probe(GROUP_CONC, "two Launch Pool at once", "skipped", f"no artifacts: {last_line(first.stdout)}")
    before = job.objects()
    # two Launch Pool runs of this job at once, each in a fresh folder, before any pool exists
    params = {"projects_csv": str(projects), "images_csv": str(images), "config_dir": "configs", "mode": "overlap",
              "reward": "0.05", "overlap": "3", "budget": "none", "batch_size": "3"}
    world.faults(latency_ms=RACE_LATENCY_MS)
    try:
        codes = _both([_step(job, "launch_pool", job.folder / f"lp{i}", **params) for i in (1, 2)], world)
    finally:
        world.faults()
    problems = _once(job, 1) + ([] if 0 in codes else [f"both runs failed (exits {codes})"])
    return verdict(GROUP_CONC, "two Launch Pool at once", problems,
                   f"exits {codes}; objects {before} -> {job.objects()}", duplicates=_extra(job, 1),
                   seconds=time.monotonic() - started)


def second_wait_pool(world: World) -> Probe:
    from .world import MAX_ATTEMPTS

    started = time.monotonic()
    job = world.new_job("verify")
    world.crowd(paused=True)
    try:
        runner = job.start()
        if not wait_until(lambda: step_pid(runner.pid, "wait_pool") is not None, 180, 0.05):
            job.finish(runner, 10)
            return Probe(GROUP_CONC, "second Wait Pool during a verify run", "skipped", "Wait Pool never started")
        world.crowd(paused=False, speed=min(world.speed, 60.0))
        second = job.start(only="Wait Pool")
        first_done, second_done = job.finish(runner, 300), job.finish(second, 300)
    finally:
        world.crowd(paused=False, speed=world.speed)
    codes = [first_done.returncode, second_done.returncode]
    drawn, accepted = job.drawings()
    problems = _once(job, 2) + ([] if 0 in codes else ["both runs failed"])
    if any(n > MAX_ATTEMPTS for n in drawn.values()):
        problems.append(f"up to {max(drawn.values())} drawings per image (max_attempts {MAX_ATTEMPTS})")
    if any(n > 1 for n in accepted.values()):
        problems.append(f"{sum(n > 1 for n in accepted.values())} images with 2+ ACCEPTED drawings")
    over = max(0.0, job.spent() - job.plan())
    if over:
        problems.append(f"${job.spent():.2f} against a plan of ${job.plan():.2f}")
    return verdict(GROUP_CONC, "second Wait Pool during a verify run", problems,
                   f"exits {codes}; ${job.spent():.2f} of ${job.plan():.2f}", duplicates=_extra(job, 2),
                   over_usd=over, seconds=time.monotonic() - started)


def two_flows(world: World) -> Probe:
    started = time.monotonic()
    job = world.new_job()
    twin = Job(world, job.key, "overlap", job.overlap, job.data, {})
    twin.runs = job.folder / "runs-twin"
    twin.runs.mkdir(parents=True, exist_ok=True)
    twin.params["s3_prefix"] = job.params["s3_prefix"]
    world.faults(latency_ms=RACE_LATENCY_MS)
    try:
        codes = [done.returncode for done in (job.finish(p, 300) for p in [job.start(), twin.start()])]
    finally:
        world.faults()
    problems = _once(job, 1) + ([] if 0 in codes else ["both flows failed"])
    over = max(0.0, job.spent() - job.plan())
    if over:
        problems.append(f"${job.spent():.2f} against one run's plan of ${job.plan():.2f}")
    return verdict(GROUP_CONC, "two whole flows of one job at once", problems, f"exits {codes}; each object once",
                   duplicates=_extra(job, 1), over_usd=over, seconds=time.monotonic() - started)


def two_demos(world: World) -> Probe:
    started = time.monotonic()
    workdir = world.work / "two-demos"
    command = [sys.executable, "-m", "crowdboxes", "demo", "--count", "4", "--overlap", "3", "--speed",
               str(world.speed), "--workdir", str(workdir), "--workers", "20"]
    procs = [subprocess.Popen(command, cwd=ROOT, env=world.env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for _ in (1, 2)]
    codes = _both(procs, world, 300)
    states = sorted((workdir / "toloka-state").glob("*/toloka.sqlite3"))
    problems = [] if codes == [0, 0] else [f"exits {codes}"]
    if len(states) != 2:
        problems.append(f"{len(states)} server states for two demos")
    tags = {json.loads(p.read_text()).get("run_tag") for p in (workdir / "logs").glob("*/last_demo.json")}
    if len(tags) != 2:
        problems.append(f"{len(tags)} run tags for two demos")
    import sqlite3

    duplicates = 0
    for state in states:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as conn:
            projects = conn.execute("SELECT COUNT(*) FROM projects").fetchone()[0]
            pools = conn.execute("SELECT COUNT(*) FROM pools").fetchone()[0]
        duplicates += max(0, projects - 4) + max(0, pools - 1)
    if duplicates:
        problems.append(f"{duplicates} extra projects/pools on one demo's server")
    return verdict(GROUP_CONC, "two demos in one workdir", problems, "two tags, two servers, each object once",
                   duplicates=duplicates, seconds=time.monotonic() - started)


def concurrency(world: World, quick: bool) -> list[Probe]:
    probes = [two_create_projects(world)]
    if not quick:
        probes += [two_launch_pools(world), second_wait_pool(world), two_flows(world), two_demos(world)]
    return probes


# ------------------------------------------------------------------ faults

def _flow_under(world: World, mode: str, faults: dict[str, float],
                clean: dict[str, Job] | None = None) -> tuple[Job, float, float | None, str]:
    """A whole flow with ``faults`` set: (job, wall seconds, AP50 or None, failure line). Without faults,
    the finished run of that mode in ``clean`` (the re-runs group's) is reused when there is one."""
    from crowdboxes.evaluation.metrics import evaluate_coco_files

    if not faults and clean is not None and mode in clean:
        job, wall = clean[mode], float(getattr(clean[mode], "wall"))
    else:
        job = world.new_job(mode, overlap=FAULT_OVERLAP if mode == "overlap" else None)
        world.faults(**faults)
        started, calls = time.monotonic(), world.requests()
        try:
            done = job.run(timeout=480)
        finally:
            world.faults()
        wall = time.monotonic() - started
        job.calls = tuple(b - a for a, b in zip(calls, world.requests()))  # type: ignore[attr-defined]
        job.wait = job.wait_seconds()  # type: ignore[attr-defined]
        if done.returncode != 0:
            return job, wall, None, last_line(done.stdout)
        job.wall = wall  # type: ignore[attr-defined]
    coco = job.output("export") / "annotations.coco.json"
    ap50 = float(evaluate_coco_files(str(coco), str(world.scenes / "truth.coco.json"))["AP50"])
    return job, wall, ap50, ""


def faults(world: World, quick: bool, clean_runs: dict[str, Job]) -> list[Probe]:
    probes = []
    clean, clean_wall, clean_ap50, failure = _flow_under(world, "overlap", {})
    if clean_ap50 is None:
        return [Probe(GROUP_FAULTS, "clean baseline", "skipped", f"the clean flow failed: {failure}")]
    profiles = {"30% 5xx": PROFILES["30% 5xx"]} if quick else PROFILES
    for name, settings in profiles.items():
        job, wall, ap50, failure = _flow_under(world, "overlap", settings)
        problems = [f"the flow failed: {failure}"] if ap50 is None else []
        if ap50 is not None and ap50 < clean_ap50 - AP50_NOISE:
            problems.append(f"AP50 {ap50:.3f} against {clean_ap50:.3f} clean")
        if ap50 is not None and _drawings(job) != world.count * FAULT_OVERLAP:
            problems.append(f"{_drawings(job)} drawings in answers.csv, {world.count * FAULT_OVERLAP} bought")
        problems += _once(job, 1, lost_replies="lost_reply_rate" in settings)
        over = max(0.0, job.spent() - job.plan())
        if over:
            problems.append(f"${job.spent():.2f} against a plan of ${job.plan():.2f}")
        probes.append(verdict(GROUP_FAULTS, f"overlap flow under {name}", problems,
                              f"AP50 {ap50 or 0:.3f} vs {clean_ap50:.3f} clean; {wall:.0f} s vs {clean_wall:.0f} s",
                              duplicates=_extra(job, 1, lost_replies="lost_reply_rate" in settings),
                              over_usd=over, seconds=wall,
                              extra={"ap50": ap50, "clean_ap50": clean_ap50, "wall": wall, "clean_wall": clean_wall}))
    if not quick:
        probes.append(_verify_under_lost_replies(world))
    clean_job, verify_clean, ok_clean, failure_clean = _flow_under(world, "verify", {}, clean_runs)
    job, verify_faulty, ok_faulty, failure = _flow_under(world, "verify", PROFILES["30% 5xx"])
    name = "verify flow time, 30% 5xx vs clean"
    if ok_clean is None or ok_faulty is None:
        probes.append(Probe(GROUP_FAULTS, name, "failed", f"a verify flow failed: {failure_clean or failure}"))
    else:
        ratio = verify_faulty / verify_clean
        waits = (float(getattr(job, "wait", "nan")), float(getattr(clean_job, "wait", "nan")))
        calls = getattr(job, "calls", (0, 0)), getattr(clean_job, "calls", (0, 0))
        detail = (f"{ratio:.2f}x ({verify_faulty:.0f} s vs {verify_clean:.0f} s; Wait Pool {waits[0]:.0f} s vs "
                  f"{waits[1]:.0f} s; {calls[0][0]} API requests, {calls[0][1]} of them injected 5xx, vs "
                  f"{calls[1][0]})")
        problems = [] if ratio <= TIME_RATIO else [f"{detail}, target {TIME_RATIO:g}x"]
        probes.append(verdict(GROUP_FAULTS, name, problems, detail, seconds=verify_faulty,
                              extra={"ratio": ratio, "wait_seconds": waits}))
    return probes


def _drawings(job: Job) -> int:
    """The drawings (assignments) in Wait Pool's answers.csv."""
    with open(job.output("wait_pool") / "answers.csv", newline="", encoding="utf-8") as fh:
        return len({row["assignment_id"] for row in csv.DictReader(fh)})


def _verify_under_lost_replies(world: World) -> Probe:
    """Verify mode makes the most writes (verification tasks, accepts and rejects, skills, overlaps): under
    30 % lost replies it completes, makes nothing twice and spends no more than its plan."""
    name = "verify flow under 30% lost replies"
    job, wall, ap50, failure = _flow_under(world, "verify", PROFILES["30% lost replies"])
    problems = [f"the flow failed: {failure}"] if ap50 is None else []
    problems += _once(job, 2, lost_replies=True)
    over = max(0.0, job.spent() - job.plan())
    if over:
        problems.append(f"${job.spent():.2f} against a plan of ${job.plan():.2f}")
    objects = job.objects()
    return verdict(GROUP_FAULTS, name, problems,
                   f"{wall:.0f} s; ${job.spent():.2f} of a ${job.plan():.2f} plan; extra objects archived empty: "
                   f"{objects['archived_projects']} project(s), {objects['empty_archived_pools']} pool(s)",
                   duplicates=_extra(job, 2, lost_replies=True), over_usd=over, seconds=wall)
