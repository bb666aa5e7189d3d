"""Wait Pool's memory at 10,000 and 100,000 images: what the answer collector holds, before and after.

Wait Pool keeps the newest snapshot of every assignment of its pool (``AnswerCollector.snapshots``) and at
the end turns them into answers.csv (``answers_frame``). At 100,000 images and overlap 3 that is 300,000
assignments. The whole-flow bench (``bench_scale.py``) cannot run 100,000 images on 2 cores in reasonable
time (the simulated crowd is the bound), so this bench measures Wait Pool's collection directly:

* ``collect``: a fresh collector reads every assignment of the pool (``rescan()``, Wait Pool's last read, which
  pages through the pool with no lag), writes its journal, and writes answers.csv from what it holds;
* ``resume``: a second collector on the same folder loads that journal (Wait Pool re-run after a kill) and
  writes answers.csv again.

Each phase runs in its own process and prints its peak resident memory (``ru_maxrss``), wall time, and the
answers.csv rows. The assignments are synthetic toloka-kit ``Assignment`` objects as the local Toloka makes
them (1-3 rectangles each, Toloka-length ids and S3 image URLs), handed out one at a time by a stand-in for
``TolokaClient.get_assignments`` (toloka-kit holds one page of ``client.LIST_PAGE`` more, about 100 MB at
10,000 per page). The same phases run on a baseline commit (``--baseline``, default the last commit before
the compact snapshots) from a temporary git worktree, side by side, with the ratio.

Usage: ``python benchmarks/bench_wait_memory.py`` (10,000 and 100,000 images, about 10 minutes on 2 cores);
``--sizes 10000`` for a quick look; ``--baseline none`` to measure the working tree only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "c0d0193"  # the last commit that kept snapshots as dicts and answers rows as dicts

# Runs in a child process with the code under test first on sys.path; uses only APIs both versions have.
CHILD = r'''
import datetime as dt, hashlib, json, random, resource, sys, time
from pathlib import Path
import pandas as pd
from toloka.client import Assignment
import crowdboxes
from crowdboxes.toloka.collection.collector import AnswerCollector
from crowdboxes.toloka.collection.solutions import answers_frame

phase, images, overlap, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
POOL = "40000017"
T0 = dt.datetime(2026, 11, 27)
LABELS = ("stop", "give_way", "speed_limit", "no_entry", "pedestrian_crossing")

def url(i): return f"https://crowdboxes-demo.s3.eu-central-1.amazonaws.com/runs/rel-4f2a9c/images/scene_{i:06d}.jpg"
def task_id(i): return f"{i:010x}--61ae9c3e6ff2e8407cd80d{i % 997:03x}"

class Pages:
    """TolokaClient.get_assignments for one pool of ``images`` tasks at ``overlap``, built as they are read."""
    def get_assignments(self, pool_id, status=None, batch_size=None, **_):
        rng = random.Random(7)
        for n in range(images * overlap):
            i = n // overlap
            boxes = [{"shape": "rectangle", "label": rng.choice(LABELS), "left": round(rng.random() * 0.8, 6),
                      "top": round(rng.random() * 0.8, 6), "width": round(0.05 + rng.random() * 0.1, 6),
                      "height": round(0.05 + rng.random() * 0.1, 6)} for _ in range(rng.randint(1, 3))]
            at = T0 + dt.timedelta(seconds=n)
            yield Assignment.structure({
                "id": f"{n:010x}--61ae9c3e6ff2e8407cd80d0f", "task_suite_id": f"{n:010x}--61ae9c3e6ff2e8407cd80d10",
                "pool_id": POOL, "user_id": f"{rng.randrange(4000):032x}", "status": "ACCEPTED", "reward": 0.05,
                "tasks": [{"id": task_id(i), "pool_id": POOL, "input_values": {"image": url(i)}}],
                "solutions": [{"output_values": {"result": boxes}}],
                "created": (at - dt.timedelta(seconds=90)).isoformat(), "submitted": at.isoformat(),
                "accepted": (at + dt.timedelta(seconds=600)).isoformat()})

started = time.monotonic()
ids = [f"scene_{i:06d}" for i in range(images)]
image_table = pd.DataFrame({"image_id": ids, "url": [url(i) for i in range(images)], "width": 256, "height": 192})
tasks = pd.DataFrame({"task_id": [task_id(i) for i in range(images)], "image_id": ids,
                      "url": image_table["url"]})
collector = AnswerCollector(Pages(), [POOL], folder, lag_seconds=0)
if phase == "collect":
    collector.rescan()
frame, problems = answers_frame(collector.records(POOL), tasks, image_table)
answers = folder / f"answers-{phase}.csv"
frame.to_csv(answers, index=False)
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.monotonic() - started, "rows": len(frame),
                  "assignments": len(collector.snapshots), "problems": len(problems),
                  "code": crowdboxes.__file__, "answers_sha256": hashlib.sha256(answers.read_bytes()).hexdigest()}))
'''


def run_phase(code_root: Path, phase: str, images: int, overlap: int, folder: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    done = subprocess.run([sys.executable, "-c", CHILD, phase, str(images), str(overlap), str(folder)],
                          env=env, cwd=code_root, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{phase} at {images} images failed under {code_root}:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not str(result.pop("code")).startswith(str(code_root)):  # the venv's editable install must not win
        raise SystemExit(f"{phase} imported crowdboxes from outside {code_root}")
    return dict(result)


def measure(code_root: Path, images: int, overlap: int, work: Path) -> dict[str, dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix=f"wait-{images}-", dir=work))
    return {phase: run_phase(code_root, phase, images, overlap, folder) for phase in ("collect", "resume")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma list of image counts")
    parser.add_argument("--overlap", type=int, default=3, help="assignments per image (default 3, the flow's)")
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with, or 'none'")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-wait-memory-") as tmp:
        work = Path(tmp)
        roots = {"after": ROOT}
        if args.baseline != "none":
            roots["before"] = work / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(roots["before"]),
                            args.baseline], check=True)
        try:
            for images in sizes:
                for code, root in sorted(roots.items(), reverse=True):  # before first
                    for phase, got in measure(root, images, args.overlap, work).items():
                        results.append({"images": images, "code": code, "phase": phase, **got})
                        print(f"  {images:,} images, {code}, {phase}: {got['peak_mb']:,.0f} MB peak, "
                              f"{got['seconds']:.0f} s", file=sys.stderr, flush=True)
        finally:
            if "before" in roots:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(roots["before"])],
                               check=False)
    print(f"\nWait Pool's collection, overlap {args.overlap}; before = {args.baseline}, after = working tree\n")
    print("| images | assignments | phase | code | peak MB | s | answers rows | peak ratio after/before |")
    print("|---:|---:|---|---|---:|---:|---:|---:|")
    for row in results:
        before = next((r for r in results if r["images"] == row["images"] and r["phase"] == row["phase"]
                       and r["code"] == "before"), None)
        ratio = f"{float(row['peak_mb']) / float(before['peak_mb']):.2f}" if before and row["code"] == "after" else ""
        print(f"| {row['images']:,} | {int(row['assignments']):,} | {row['phase']} | {row['code']} | "
              f"{float(row['peak_mb']):,.0f} | {float(row['seconds']):.0f} | {int(row['rows']):,} | {ratio} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    # the same answers.csv from every version and phase: compactness must not change a byte of it
    hashes: dict[int, set[str]] = {}
    for row in results:
        hashes.setdefault(int(str(row["images"])), set()).add(str(row["answers_sha256"]))
    differing = [images for images, found in hashes.items() if len(found) > 1]
    print(f"\nanswers.csv identical across versions and phases: {'no, at ' + str(differing) if differing else 'yes'}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
