"""Make ``img/report.png``, the README's screenshot of ``report.html``, from a real small demo run.

Runs ``python -m crowdboxes demo --count N --workdir W`` (unless ``--reuse`` finds a run there already),
reads that run's step outputs through ``W/runs/latest.json``, writes ``report.html`` with
:func:`crowdboxes.export.report.write_report` (truth from the demo's scenes) and screenshots it in headless
Chromium (Debian's ``chromium``).

    .venv/bin/python benchmarks/make_report_screenshot.py --workdir /tmp/report-demo --out img/report.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from crowdboxes.artifacts import (ANSWERS, BOXES, IMAGES, IMAGES_REVIEW, QC_SUMMARY, WAIT_SUMMARY, WORKERS,
                                  read_frame_csv)
from crowdboxes.evaluation.truth import load_coco, truth_boxes
from crowdboxes.export.report import render_in_chromium, write_report


def run_demo(workdir: Path, count: int) -> None:
    """The demo flow; its last step may fail (the report needs only Aggregate Boxes' outputs)."""
    done = subprocess.run([sys.executable, "-m", "crowdboxes", "demo", "--count", str(count), "--workdir",
                           str(workdir)], check=False)
    print(f"demo exited {done.returncode}", file=sys.stderr)


def make_report(workdir: Path, report: Path) -> Path:
    """report.html from the latest run under ``workdir``."""
    latest = json.loads((workdir / "runs" / "latest.json").read_text())
    out = {step: Path(folder) / "output" for step, folder in latest.items()}
    run = json.loads((Path(latest["aggregate_boxes"]).parent / "run.json").read_text())
    scenes = Path(run["tasks"][0]["workdir"])  # the dataset task: the demo's scenes and their truth
    qc = QC_SUMMARY.path(out["wait_pool"])
    read = {"dtype": {"image_id": str, "worker_id": str}}
    return write_report(
        report,
        boxes=read_frame_csv(BOXES.path(out["aggregate_boxes"]), **read),
        images=read_frame_csv(IMAGES.path(out["upload_images"]), **read),
        answers=read_frame_csv(ANSWERS.path(out["wait_pool"]), **read),
        workers=read_frame_csv(WORKERS.path(out["aggregate_boxes"]), **read),
        review=read_frame_csv(IMAGES_REVIEW.path(out["aggregate_boxes"]), **read),
        wait_summary=json.loads(WAIT_SUMMARY.path(out["wait_pool"]).read_text()),
        truth=truth_boxes(load_coco(scenes / "truth.coco.json")),
        banned=json.loads(qc.read_text()).get("banned_workers") if qc.is_file() else None,
        image_dir=scenes,
        title=f"crowdboxes report: demo run {run['run_id']}",
    )


def shrink(png: Path) -> None:
    """Cut blank rows left below the page, and store 256 colours (a third of the bytes, for the repository)."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as opened:
        picture = opened.convert("RGB")
    pixels = np.asarray(picture, dtype=np.int16)
    varied = np.flatnonzero((np.abs(pixels - pixels[-1:, :1]).max(axis=2) > 8).any(axis=1))
    if len(varied) and varied[-1] + 1 < picture.height:
        picture = picture.crop((0, 0, picture.width, int(varied[-1]) + 1))
    picture.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crowdboxes-report-demo"))
    parser.add_argument("--count", type=int, default=8, help="demo images (default 8)")
    parser.add_argument("--reuse", action="store_true", help="use the run already in --workdir")
    parser.add_argument("--out", type=Path, default=Path("img/report.png"), help="default img/report.png")
    parser.add_argument("--window", default="1200,2400", help="width,height in px (default 1200,2400)")
    args = parser.parse_args(argv)
    if not (args.reuse and (args.workdir / "runs" / "latest.json").is_file()):
        run_demo(args.workdir, args.count)
    report = make_report(args.workdir, args.workdir / "report.html")
    width, height = (int(v) for v in args.window.split(","))
    render_in_chromium(report, screenshot=args.out, window=(width, height))
    shrink(args.out)
    print(f"report: {report}\nscreenshot: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
