"""Scale: the whole flow on the local Toloka for 1,000 / 10,000 / 100,000 synthetic images, step by step.

For each size N (``--sizes``), one run of ``traffic_signs_annotation.yaml`` as the demo runs it
(``crowdboxes.demo``: local S3, the local Toloka with its simulated crowd, the local flow runner), on N
small synthetic scenes (``crowdboxes synth --width/--height``), overlap 3 (the flow's default), no rounds.
Per step it prints:

* ``wall s``: the step's wall time, as the runner measures it (process start to exit);
* ``peak MB``: the peak resident memory of the step's process, from GNU time (``/usr/bin/time -f %M``:
  the kernel's ``ru_maxrss`` of the step process and the children it waited for);
* Toloka API calls by endpoint: the local Toloka's own counters (``GET /_local/stats``) read before and
  after the step (the runner runs one step at a time, and the crowd itself makes no HTTP calls);
* ``calls/1k``: API calls per 1,000 images.

Polling is in crowd time. The local Toloka's crowd works ``--speed`` simulated seconds per real second
(a suite due ``seconds_for(...)`` after issue is submitted ``seconds_for(...) / speed`` real seconds later),
so Wait Pool's default ``--poll_seconds 60`` on Toloka is ``60 / speed`` real seconds here; the bench
passes that (``--crowd-poll-seconds`` to change the 60). The number of polls then equals what the flow
would make on Toloka with a crowd as fast as the simulated one. The crowd is ``--workers`` strong (default
one worker per 25 images, at least 40): a real pool of 100,000 images draws far more than the demo's 40
workers, and the number of polls is the crowd's working time over the poll interval.

The crowd must keep pace for that: the bench prints how busy the simulated workers were (about 55 % when
the local Toloka keeps up) and lowers ``--speed`` for big runs (200, or 500,000 / N above 2,500 images).

The end: the local Toloka's state (tasks, assignments by status, the crowd's hours, busy share and lag, from
its SQLite file) and its peak memory (``VmHWM`` of the server process), and the total. ``--trace`` also logs
every Toloka request of the steps with the crowdboxes code that made it. ``--json FILE`` writes everything.

Usage: ``python benchmarks/bench_scale.py --sizes 1000`` (about 1.5 minutes on 2 cores); ``--sizes 1000,10000``
(about 9 minutes with the scenes); ``--sizes 1000,10000,100000`` (the default; the 100,000 run alone is over an
hour on 2 cores, bound by the simulated crowd); ``--keep DIR`` keeps the scenes and runs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crowdboxes.cnvrg.flow import Task, load_flow  # noqa: E402
from crowdboxes.cnvrg.runner import FlowRunner, TaskResult  # noqa: E402
from crowdboxes.demo import DEMO_BUCKET, FAKE_AWS, FLOW_YAML, create_bucket, start_server  # noqa: E402

GNU_TIME = "/usr/bin/time"
DEFAULT_POLL_SECONDS = 60.0  # Wait Pool's --poll_seconds default (steps/wait_pool.py), in crowd time
TARGET_CALLS_PER_1K = 30
TARGET_PEAK_MB = 2048
# --trace: a sitecustomize put on the steps' PYTHONPATH logs every Toloka request with the crowdboxes code
# that made it (innermost and outermost crowdboxes frames), one TSV line per request
TRACE_SITE = """
import os, sys, traceback
import httpx
_path = os.environ["BENCH_SCALE_TRACE"]
_send = httpx.Client.send
def _where():
    frames = [f for f in traceback.extract_stack()[:-2] if "/crowdboxes/" in f.filename]
    name = lambda f: f"{f.filename.split('/crowdboxes/', 1)[1]}:{f.lineno} {f.name}"
    return (name(frames[-1]), name(frames[0])) if frames else ("-", "-")
def send(self, request, *args, **kwargs):
    inner, outer = _where()
    with open(_path, "a") as out:
        out.write(f"{os.environ.get('CNVRG_JOB_NAME', '-')}\\t{request.method}\\t{request.url.path}\\t{request.url.query.decode()}\\t{inner}\\t{outer}\\n")
    return _send(self, request, *args, **kwargs)
httpx.Client.send = send
"""


class LocalTolokaStats:
    """The local Toloka's per-endpoint request counters (``GET /_local/stats``)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url.rstrip("/"), token

    def requests(self) -> Counter[str]:
        """Requests so far by ``METHOD endpoint`` (the admin endpoints left out)."""
        request = urllib.request.Request(f"{self.url}/_local/stats", headers={"Authorization": f"OAuth {self.token}"})
        with urllib.request.urlopen(request, timeout=60) as reply:
            counts = json.loads(reply.read())["requests"]
        return Counter({k: int(v) for k, v in counts.items() if " local_" not in k})


class MeasuredRunner(FlowRunner):
    """The local flow runner, each step under GNU time and between two reads of the Toloka counters."""

    def __init__(self, *args: Any, stats: LocalTolokaStats, measure_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats, self.measure_dir = stats, measure_dir
        self.steps: list[dict[str, Any]] = []

    def build_command(self, task: Task, mounts: dict[str, Path], datasets: dict[str, Path],
                      parent_tags: dict[str, dict[str, str]]) -> list[str]:
        argv = super().build_command(task, mounts, datasets, parent_tags)
        return [GNU_TIME, "-f", "%M", "-o", str(self.measure_dir / f"{task.slug}.time"), *argv]

    def _execute(self, task: Task, argv: list[str], env: dict[str, str], workdir: Path) -> TaskResult:
        before = self.stats.requests()
        result = super()._execute(task, argv, env, workdir)
        calls = self.stats.requests() - before
        lines = (self.measure_dir / f"{task.slug}.time").read_text().split()
        self.steps.append({"step": task.title, "status": result.status, "wall_s": result.seconds,
                           "peak_mb": round(int(lines[-1]) / 1024, 1) if lines else None,
                           "calls": sum(calls.values()), "calls_by_endpoint": dict(calls.most_common())})
        return result


def _server_peak_mb(marker: str) -> float | None:
    """VmHWM (peak RSS) of the running process whose command line holds ``marker`` (the Toloka's state dir)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            continue
    return None


def _toloka_state(state_dir: Path, workers: int, speed: float) -> dict[str, Any]:
    """Tasks and assignments by status in the local Toloka's SQLite state, and how well the simulated crowd
    kept pace: ``crowd_hours`` from the first issue to the last submission (real span x speed), ``busy``
    the share of that the workers spent working (their planned simulated seconds over workers x span),
    ``late_s`` the mean real seconds a submission came after it was due (the server's lag)."""
    with sqlite3.connect(f"file:{state_dir / 'toloka.sqlite3'}?mode=ro", uri=True) as conn:
        tasks = conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM assignments GROUP BY status").fetchall())
        span, work, late = conn.execute(
            "SELECT (julianday(MAX(submitted)) - julianday(MIN(created))) * 86400, SUM(sim_seconds), "
            "AVG((julianday(submitted) - julianday(due)) * 86400) FROM assignments WHERE submitted IS NOT NULL"
        ).fetchone()
    crowd = (span or 0.0) * speed
    return {"tasks": int(tasks), "assignments": {str(k): int(v) for k, v in statuses.items()},
            "crowd_hours": round(crowd / 3600, 2), "busy": round((work or 0.0) / (workers * crowd), 2) if crowd else None,
            "late_s": round(late or 0.0, 2)}


def _scenes(work: Path, count: int, args: argparse.Namespace) -> Path:
    """``crowdboxes synth`` scenes (kept across runs in ``work/scenes``)."""
    folder = work / "scenes" / f"seed{args.seed}-n{count}-{args.width}x{args.height}"
    if not (folder / "truth.coco.json").is_file():
        staging = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "crowdboxes", "synth", "--count", str(count), "--seed", str(args.seed),
                        "--width", str(args.width), "--height", str(args.height), "--jobs", str(args.synth_jobs),
                        "--out", str(staging)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        os.rename(staging, folder)
    return folder


def run_size(count: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One whole flow on ``count`` images; its per-step measurements."""
    scenes = _scenes(work, count, args)
    tag = f"n{count}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"
    run_root = work / tag
    state_dir, logs, runs = run_root / "toloka-state", run_root / "logs", run_root / "runs"
    for folder in (state_dir, logs, runs):
        folder.mkdir(parents=True, exist_ok=True)
    workers = args.workers or max(40, count // 25)
    speed = args.speed or min(200.0, 500_000 / count)
    poll_real = args.crowd_poll_seconds / speed
    token = f"local-{secrets.token_hex(16)}"
    # PYTHONPATH: the steps import this checkout's crowdboxes, whatever the venv's editable install points at
    env = {**os.environ, **FAKE_AWS, "toloka_token": token, "CROWDBOXES_DATASETS": str(run_root / "datasets"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    with ExitStack() as stack:
        s3_url = start_server(stack, "local S3", ["local-s3", "--port", "0"], env, logs / "s3.ready",
                              logs / "local_s3.log")
        create_bucket(s3_url)
        toloka_url = start_server(
            stack, "local Toloka",
            ["local-toloka", "serve", "--host", "127.0.0.1", "--port", "0", "--state", str(state_dir),
             "--token-env", "toloka_token", "--ground-truth", str(scenes / "truth.coco.json"), "--seed",
             str(args.seed), "--workers", str(workers), "--verification-workers", "0", "--speed", str(speed),
             "--balance", str(1000 + count * args.overlap)],  # $1 per assignment: the flow's $0.05 + fee, with room
            env, logs / "toloka.ready", logs / "local_toloka.log", timeout=600)
        overrides = {"toloka_env": toloka_url, "s3_endpoint_url": s3_url, "s3_bucket": DEMO_BUCKET,
                     "s3_prefix": f"scale/{tag}/", "mode": "overlap", "overlap": str(args.overlap),
                     "max_overlap": "none", "rounds": "none", "method": "lean_em", "budget": "none",
                     "poll_seconds": f"{poll_real:.6g}", "project_key": f"scale-{tag}",
                     "truth": str(scenes / "truth.coco.json")}
        saved_env = dict(os.environ)
        os.environ.update(env)
        if args.trace:
            site = logs / "trace_site"
            site.mkdir(exist_ok=True)
            (site / "sitecustomize.py").write_text(TRACE_SITE)
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
            os.environ["BENCH_SCALE_TRACE"] = str(logs / "calls.tsv")
        try:
            with open(logs / "flow.log", "w", encoding="utf-8") as log:
                runner = MeasuredRunner(load_flow(FLOW_YAML), project_dir=ROOT, runs_dir=runs,
                                        data={"road_signs": scenes}, overrides=[f"{k}={v}" for k, v in
                                                                                overrides.items()],
                                        out=log, err=log, stats=LocalTolokaStats(toloka_url, token),
                                        measure_dir=logs)
                report = runner.run()
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
        server_mb = _server_peak_mb(str(state_dir))
    wall = time.monotonic() - started
    if not report.ok:
        raise SystemExit(f"error: {count} images: {report.failure_line()}")
    summary = json.loads((Path(next(r.workdir for r in report.results if r.slug == "wait_pool")) / "output"
                          / "wait_summary.json").read_text())
    total = Counter[str]()
    for step in runner.steps:
        total.update(step["calls_by_endpoint"])
    return {"images": count, "overlap": args.overlap, "workers": workers, "speed": speed,
            "poll_seconds_crowd": args.crowd_poll_seconds, "poll_seconds_real": poll_real,
            "polls": summary.get("polls"), "wait_crowd_hours": round(summary.get("duration_seconds", 0) * speed / 3600, 2),
            "wall_s": round(wall, 1), "steps": runner.steps, "calls": sum(total.values()),
            "calls_per_1k": round(sum(total.values()) * 1000 / count, 1), "calls_by_endpoint": dict(total.most_common()),
            "server_peak_mb": server_mb, "toloka": _toloka_state(state_dir, workers, speed), "run_dir": str(run_root),
            **({"callers": _callers(logs / "calls.tsv")} if args.trace else {})}


def _callers(trace: Path) -> dict[str, list[list[Any]]]:
    """Per step, the code that made the Toloka requests: [count, METHOD path, innermost, outermost crowdboxes frame]."""
    found: dict[str, Counter[tuple[str, str, str]]] = {}
    for line in trace.read_text().splitlines() if trace.is_file() else []:
        step, method, path, _query, inner, outer = line.split("\t")
        path = "/".join("*" if any(c.isdigit() for c in part) else part for part in path.split("/"))
        found.setdefault(step, Counter())[(f"{method} {path}", inner, outer)] += 1
    return {step: [[n, *key] for key, n in counts.most_common()] for step, counts in found.items()}


def print_run(run: dict[str, Any]) -> None:
    """One size's table: per step, then the total."""
    n = run["images"]
    print(f"\n{n} images, overlap {run['overlap']}, {run['workers']} workers at {run['speed']:g}x, poll "
          f"{run['poll_seconds_crowd']:g} s crowd time ({run['poll_seconds_real']:.3g} s real): {run['polls']} polls "
          f"over {run['wait_crowd_hours']:.1f} crowd hours of Wait Pool; flow {run['wall_s']:.0f} s; local Toloka peak "
          f"{run['server_peak_mb']} MB; its state: {run['toloka']}")
    if (run["toloka"]["busy"] or 0) < 0.45:
        print(f"note: the simulated crowd was busy {run['toloka']['busy']:.0%} of the time (about 55 % when the local "
              "Toloka keeps pace): it fell behind, so the wait and its polls are longer than the crowd's; use a lower "
              "--speed")
    print(f"{'step':16} {'wall s':>8} {'peak MB':>8} {'calls':>7} {'calls/1k':>8}  calls by endpoint")
    for s in run["steps"]:
        by = ", ".join(f"{k.split(' ', 1)[1]} {v}" for k, v in s["calls_by_endpoint"].items())
        print(f"{s['step']:16} {s['wall_s']:8.1f} {s['peak_mb']:8.0f} {s['calls']:7d} "
              f"{s['calls'] * 1000 / n:8.1f}  {by}")
    print(f"{'total':16} {sum(s['wall_s'] for s in run['steps']):8.1f} "
          f"{max(s['peak_mb'] or 0 for s in run['steps']):8.0f} {run['calls']:7d} {run['calls_per_1k']:8.1f}")
    for step, rows in run.get("callers", {}).items():
        print(f"  {step}: who calls (--trace)")
        for count, request, inner, outer in rows[:12]:
            print(f"    {count:6d}  {request:38} {inner}  <- {outer}")


def print_verdict(runs: list[dict[str, Any]]) -> None:
    """The targets: calls per 1,000 images, peak memory per step, time growth from the smaller to the bigger."""
    for run in runs:
        peak = max(s["peak_mb"] or 0 for s in run["steps"])
        print(f"{run['images']:>7} images: {run['calls_per_1k']:.1f} calls/1k "
              f"({'meets' if run['calls_per_1k'] <= TARGET_CALLS_PER_1K else 'misses'} <= {TARGET_CALLS_PER_1K}), "
              f"peak step {peak:.0f} MB ({'meets' if peak < TARGET_PEAK_MB else 'misses'} < {TARGET_PEAK_MB})")
    for a, b in zip(runs, runs[1:]):
        for name in [s["step"] for s in a["steps"]]:
            ta = next(s["wall_s"] for s in a["steps"] if s["step"] == name)
            tb = next((s["wall_s"] for s in b["steps"] if s["step"] == name), None)
            if tb is not None and ta > 0:
                ratio = tb / ta
                print(f"  {name:16} {a['images']} -> {b['images']}: time x{ratio:.1f} for x{b['images'] / a['images']:g} "
                      f"images")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma list of image counts")
    parser.add_argument("--overlap", type=int, default=3, help="drawers per image (default 3, the flow's)")
    parser.add_argument("--width", type=int, default=256, help="scene width in pixels (small: default 256)")
    parser.add_argument("--height", type=int, default=192, help="scene height in pixels (default 192)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speed", type=float, default=None,
                        help="crowd speed, simulated seconds per real second (default 200 up to 2,500 images, then "
                             "500,000 / images: the local Toloka answers about 165 drawings per real second on 2 "
                             "cores, and a crowd that falls behind stretches the wait and so the polls)")
    parser.add_argument("--workers", type=int, default=None,
                        help="simulated crowd size (default: one per 25 images, at least 40)")
    parser.add_argument("--crowd-poll-seconds", type=float, default=DEFAULT_POLL_SECONDS,
                        help="Wait Pool's poll interval in crowd time (default 60, the flow's); the step gets "
                             "this / --speed real seconds")
    parser.add_argument("--synth-jobs", type=int, default=1, help="processes generating scenes (default 1)")
    parser.add_argument("--trace", action="store_true",
                        help="log every Toloka request of the steps with the crowdboxes code that made it")
    parser.add_argument("--keep", default=None, help="keep scenes and runs in this folder (default: a temp folder)")
    parser.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not Path(GNU_TIME).is_file():
        raise SystemExit(f"error: {GNU_TIME} (GNU time) is needed for the peak memory of each step")
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="bench_scale-"))
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    runs = []
    try:
        for count in sizes:
            print(f"[bench_scale] {count} images ...", file=sys.stderr, flush=True)
            runs.append(run_size(count, args, work))
            print_run(runs[-1])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ntargets (commit {commit}, {time.strftime('%Y-%m-%d', time.gmtime())}):")
    print_verdict(runs)
    if args.json:
        Path(args.json).write_text(json.dumps({"commit": commit, "date": time.strftime("%Y-%m-%d", time.gmtime()),
                                               "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
