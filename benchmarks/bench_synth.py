"""Synthetic scene generation speed: one worker (baseline) against all cores, side by side.

Target: 500 scenes of 800x600 in under 30 s on 2 cores. Each configuration runs in a fresh
process so that peak memory (``ru_maxrss`` of the parent and of its largest worker) belongs to it.
CPU seconds (parent + workers) show the work done whatever else the machine is busy with.

    .venv/bin/python benchmarks/bench_synth.py [--count 500] [--width 800 --height 600] [--jobs 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 30.0

_CHILD = """
import json, resource, sys, time
from crowdboxes.sim.generate import SynthOptions, generate
count, width, height, jobs, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
start = time.perf_counter()
coco = generate(out, SynthOptions(count=count, seed=7, width=width, height=height), jobs=jobs)
seconds = time.perf_counter() - start
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print(json.dumps({"seconds": seconds, "signs": len(coco["annotations"]),
                  "cpu_seconds": sum(u.ru_utime + u.ru_stime for u in usage),
                  "parent_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run(count: int, width: int, height: int, jobs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as out:
        result = subprocess.run([sys.executable, "-c", _CHILD, str(count), str(width), str(height), str(jobs), out],
                                cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        size = sum(p.stat().st_size for p in Path(out).iterdir())
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row.update(jobs=jobs, mb_on_disk=size / 2**20)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--jobs", default=f"1,{os.cpu_count() or 1}",
                        help="comma-separated worker counts; the first is the baseline")
    args = parser.parse_args()
    jobs_list = list(dict.fromkeys(int(j) for j in args.jobs.split(",")))
    print(f"synthetic scenes: {args.count} x {args.width}x{args.height}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = [run(args.count, args.width, args.height, jobs) for jobs in jobs_list]
    base = rows[0]["seconds"]
    header = (f"{'jobs':>4} | {'seconds':>8} | {'scenes/s':>8} | {'speed-up vs 1st':>15} | {'target s':>8} | "
              f"{'meets':>5} | {'CPU s':>6} | {'peak parent MB':>14} | {'peak worker MB':>14} | {'MB on disk':>10} | signs")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['jobs']:>4} | {row['seconds']:>8.2f} | {args.count / row['seconds']:>8.1f} | "
              f"{base / row['seconds']:>15.2f} | {TARGET_SECONDS:>8.0f} | "
              f"{'yes' if row['seconds'] < TARGET_SECONDS else 'NO':>5} | {row['cpu_seconds']:>6.1f} | "
              f"{row['parent_mb']:>14.0f} | "
              f"{row['child_mb']:>14.0f} | {row['mb_on_disk']:>10.1f} | {row['signs']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
