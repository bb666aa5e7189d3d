"""Annotation modes on the local Toloka: quality, money and time of overlap, verify and overlap+verify.

For a fixed seed, every row is the whole flow (``python -m crowdboxes demo``: local S3, the local Toloka
with its simulated crowd, ``traffic_signs_annotation.yaml`` run by the local flow runner) on

* ``synth``: synthetic street scenes with their true boxes (``--count`` of them, seed ``--seed``);
* ``road``: the first ``--count`` photos of ``/work/shared/data/road-sign-detection`` (skipped when absent).

The crowd is the demo's: 40 workers in the default mix (10 % spammers, 20 % sloppy drawers, 5 % who say OK
to everything, ...) plus 20 who only take verification tasks (``--verification-workers``). Rows:

* ``overlap k=3`` / ``overlap k=5``: k drawers per image, boxes aggregated (lean_em); k=5 is the baseline;
* ``overlap adapt 2-5``: Wait Pool's adaptive overlap, 2 drawers per image and one more for each image whose
  aggregated boxes are still uncertain, up to 5;
* ``overlap 2-3+rounds``: 2 drawers per image, a third for the risky images (adaptive overlap up to 3), then
  Wait Pool's two rounds (``--rounds missed_signs,box_check``): a missed-sign task for the images the aggregate
  expects to have missed signs, and a per-box check of every box whose score is uncertain, each within its
  budget;
* ``verify``: one drawer per image, three verifiers per drawing, redraw of rejected drawings (at most 5
  drawings per image, the demo's default for this mode);
* ``overlap+verify k=3``: three drawers per image, each drawing verified (at most 3 tries per slot), aggregated.

Each row is scored with ``crowdboxes.evaluation.metrics.evaluate`` for the flow's method (lean_em) and, in the
verify modes, also for the mode's natural method ``best_verified`` (the accepted drawing as drawn, Toloka's
tutorial) on the same answers. Money is Toloka's own accounting: the local Toloka's charges (reward + fee
of every accepted assignment, every pool), checked against wait_pool's ``spent_usd``. "done" = images with
an accepted drawing. ``wall s`` is the whole flow (server start, six steps); ``wait s`` its Wait Pool
(the crowd starts when Launch Pool opens the pool, so a fast overlap run may be done before Wait Pool starts).

Usage: ``python benchmarks/bench_modes.py`` (40 images per dataset, about 8 minutes on 2 cores);
``--quick`` (6 synthetic images, three rows, about 75 s); ``--count``, ``--speed``, ``--datasets synth``,
``--keep DIR``, ``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crowdboxes.artifacts import read_frame_csv  # noqa: E402
from crowdboxes.evaluation.metrics import evaluate  # noqa: E402
from crowdboxes.evaluation.truth import images_frame, load_coco, truth_boxes  # noqa: E402

ROAD_DIR = Path("/work/shared/data/road-sign-detection")
BASELINE = "overlap k=5"
ROUNDS = "missed_signs,box_check"
# (row, --mode, --overlap, --max-overlap, --rounds)
ROWS = (("overlap k=3", "overlap", 3, None, None), ("overlap k=5", "overlap", 5, None, None),
        ("overlap adapt 2-5", "overlap", 2, 5, None), ("overlap 2-3+rounds", "overlap", 2, 3, ROUNDS),
        ("verify", "verify", 1, None, None), ("overlap+verify k=3", "overlap+verify", 3, None, None))


def run_demo(workdir: Path, dataset: str, mode: str, overlap: int, max_overlap: int | None, rounds: str | None,
             args, log_path: Path) -> dict:
    """One flow run; returns the paths it produced and its wall time."""
    command = [sys.executable, "-m", "crowdboxes", "demo", "--mode", mode, "--overlap", str(overlap),
               "--count", str(args.count), "--seed", str(args.seed), "--speed", str(args.speed),
               "--workdir", str(workdir), "--method", "lean_em"]
    if max_overlap is not None:
        command += ["--max-overlap", str(max_overlap)]
    if rounds is not None:
        command += ["--rounds", rounds]
    if dataset == "road":
        command += ["--images", str(ROAD_DIR)]
    states = workdir / "toloka-state"
    before = set(states.iterdir()) if states.is_dir() else set()
    started = time.monotonic()
    with open(log_path, "wb") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - started
    if done.returncode != 0:
        tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()][-1:]
        raise SystemExit(f"error: {dataset} {mode} k={overlap}: the demo failed (exit {done.returncode}: "
                         f"{tail[0] if tail else 'no output'}); log {log_path}")
    new_state = sorted(set(states.iterdir()) - before)
    latest = json.loads((workdir / "runs" / "latest.json").read_text())
    return {"wall": wall, "state": new_state[-1], "last": json.loads((workdir / "last_demo.json").read_text()),
            "out": {slug: Path(folder) / "output" for slug, folder in latest.items()}}


def toloka_charges(state_dir: Path) -> float:
    """USD the local Toloka charged (reward + fee per accepted assignment, every pool)."""
    with sqlite3.connect(f"file:{state_dir / 'toloka.sqlite3'}?mode=ro", uri=True) as conn:
        return float(sum((Decimal(r[0]) for r in conn.execute("SELECT amount FROM charges")), Decimal(0)))


def score_boxes(boxes_csv: Path, truth: dict) -> dict:
    """evaluate() of an aggregate_boxes output against the truth (images matched by sha256)."""
    pred = read_frame_csv(boxes_csv, dtype={"image_id": str})
    key = {str(r.image_id): str(r.sha256)[:16] for r in images_frame(truth).itertuples(index=False)}
    true = truth_boxes(truth)
    true["image_id"] = true["image_id"].astype(str).map(key)
    return evaluate(pred, true[["image_id", "label", "x", "y", "w", "h"]])


def rescore(run: dict, method: str, truth: dict, work: Path) -> dict:
    """Aggregate the run's Wait Pool answers again with ``method`` (the flow's own step) and score it."""
    out_dir = work / f"aggregate-{method}"
    argv = [sys.executable, str(ROOT / "steps" / "aggregate_boxes.py"), "--answers_csv",
            str(run["out"]["wait_pool"] / "answers.csv"), "--images_csv",
            str(run["out"]["upload_images"] / "images.csv"), "--method", method, "--output_dir", str(out_dir)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: aggregate_boxes --method {method}: {done.stderr.strip().splitlines()[-1:]}")
    return score_boxes(out_dir / "boxes.csv", truth)


def measure(dataset: str, row: str, mode: str, overlap: int, max_overlap: int | None, rounds: str | None, args,
            work: Path) -> list[dict]:
    log_path = work / f"{dataset}-{row.replace(' ', '_').replace('=', '').replace('+', '_')}.log"
    run = run_demo(work / dataset, dataset, mode, overlap, max_overlap, rounds, args, log_path)
    summary = json.loads((run["out"]["wait_pool"] / "wait_summary.json").read_text())
    truth = load_coco(run["last"]["truth"])
    money = toloka_charges(run["state"])
    if abs(money - float(summary.get("spent_usd", money))) > 0.011:
        print(f"note: {dataset} {row}: Toloka charged ${money:.3f}, wait_pool reported ${summary['spent_usd']:.3f}",
              file=sys.stderr)
    done = int(summary.get("images_accepted", summary.get("images_answered", 0)))
    base = {"dataset": dataset, "mode": row, "images": len(truth["images"]), "done": done, "spent": money,
            "per_image": money / done if done else float("nan"), "wall": run["wall"],
            "wait": float(summary.get("duration_seconds", float("nan")))}
    # the flow's own output (Export's COCO scored by the demo) with lean_em
    rows = [{**base, "method": "lean_em", **{k: run["last"][k] for k in ("AP", "AP50", "recall", "precision",
                                                                            "mean_iou")}}]
    if "verify" in mode:
        metrics = rescore(run, "best_verified", truth, work / f"{dataset}-{mode}")
        rows.append({**base, "method": "best_verified", **{k: metrics[k] for k in ("AP", "AP50", "recall",
                                                                                    "precision", "mean_iou")}})
    return rows


def print_table(frame: pd.DataFrame) -> None:
    header = (f"{'dataset':7} {'mode':18} {'method':13} {'AP':>6} {'AP50':>6} {'recall':>6} {'prec':>6} "
              f"{'mIoU':>6} {'done':>7} {'spent $':>8} {'$/image':>8} {'wall s':>7} {'wait s':>7}   "
              f"{'AP50 x':>6} {'$/img x':>7} {'wall x':>6}")
    print(header)
    print("-" * len(header))
    for dataset, group in frame.groupby("dataset", sort=False):
        base = group[(group["mode"] == BASELINE) & (group["method"] == "lean_em")]
        base = base.iloc[0] if len(base) else None
        for r in group.itertuples(index=False):
            ratios = ("", "", "") if base is None else (
                f"{r.AP50 / base.AP50:.2f}" if base.AP50 else "-",
                f"{r.per_image / base.per_image:.2f}" if base.per_image else "-",
                f"{r.wall / base.wall:.2f}")
            print(f"{r.dataset:7} {r.mode:18} {r.method:13} {r.AP:6.3f} {r.AP50:6.3f} {r.recall:6.3f} "
                  f"{r.precision:6.3f} {r.mean_iou:6.3f} {f'{r.done}/{r.images}':>7} {r.spent:8.3f} "
                  f"{r.per_image:8.4f} {r.wall:7.1f} {r.wait:7.1f}   {ratios[0]:>6} {ratios[1]:>7} {ratios[2]:>6}")
    print(f"ratios (x) against {BASELINE} with lean_em of the same dataset; money = the local Toloka's charges "
          f"(reward + fee of accepted assignments in every pool); done = images with an accepted drawing")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=None, help="images per dataset (default 40; --quick 6)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the scenes and the crowd")
    parser.add_argument("--speed", type=float, default=None,
                        help="crowd speed, simulated seconds per real second (default 300; --quick 1000)")
    parser.add_argument("--datasets", default="synth,road", help="comma-separated: synth, road")
    parser.add_argument("--quick", action="store_true",
                        help="6 synthetic images, rows overlap k=5, verify and overlap+verify only (~75 s)")
    parser.add_argument("--keep", default=None, help="keep the runs in this folder (default: a temp folder)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--rows", default=None,
                        help="comma list of rows to run (default all), e.g. 'overlap k=5,overlap 2-3+rounds'")
    args = parser.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",")] if args.rows else None
    args.count = args.count or (6 if args.quick else 40)
    args.speed = args.speed or (1000.0 if args.quick else 300.0)
    datasets = ["synth"] if args.quick else [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(datasets) - {"synth", "road"})
    if unknown:
        raise SystemExit(f"error: --datasets: unknown {', '.join(unknown)} (known: synth, road)")
    if "road" in datasets and not (ROAD_DIR / "annotations").is_dir():
        print(f"skipping road: {ROAD_DIR} is not present", file=sys.stderr)
        datasets.remove("road")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_modes-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = []
    try:
        for dataset in datasets:
            for row, mode, overlap, max_overlap, rounds in ROWS:
                if args.quick and row in ("overlap k=3", "overlap adapt 2-5"):
                    continue
                if args.rows and row not in args.rows:
                    continue
                print(f"[bench_modes] {dataset}: {row} ({args.count} images) ...", file=sys.stderr, flush=True)
                rows += measure(dataset, row, mode, overlap, max_overlap, rounds, args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    frame = pd.DataFrame(rows)
    print(f"\nmodes on the local Toloka: seed {args.seed}, {args.count} images per dataset, crowd speed "
          f"{args.speed:g}x, {time.monotonic() - started:.0f} s in all\n")
    print_table(frame)
    if args.json:
        Path(args.json).write_text(frame.to_json(orient="records", indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
