"""Aggregate Boxes: merge the workers' rectangles of each image into one set of boxes.

Uses the answers of SUBMITTED and ACCEPTED assignments (REJECTED ones are ignored), clips boxes to
the image (images.csv) and runs ``crowdboxes.aggregation.get_aggregator(--method)``. Rows the
aggregator cannot use (a box without a label, zero size, outside the image...) are reported as
warnings with their answers.csv line and skipped; they never stop the step.

Inputs:
  --answers_csv  answers.csv of Wait Pool (pixels; a row with an empty box = the worker drew nothing)
  --images_csv   images.csv of Upload Images (image_id, width, height)
  --method       auto (default) | lean_em | iou_cluster | wbf | best_verified (whatever the registry offers);
                 auto = best_verified when Wait Pool ran mode verify (its wait_summary.json beside answers.csv
                 says so: one accepted drawing per image leaves LeanEM nothing to compare, the verdicts rank
                 the boxes), else lean_em
  --verifications_csv  verifications.csv of Wait Pool for best_verified (``none``: the one beside answers.csv)
Outputs (in --output_dir):
  boxes.csv    image_id, label, x, y, w, h, score, support (pixels; score in [0, 1])
  workers.csv  worker_id, answers (images answered), skill, then boxes, empty_answers, rejected_assignments
               and the method's own per-worker estimates (lean_em: miss_rate, fp_rate, sigma, label_accuracy)
  stdout: cnvrg_tag_boxes, cnvrg_tag_images_with_boxes, cnvrg_tag_workers, cnvrg_tag_problem_rows
Sample command:
  python steps/aggregate_boxes.py --answers_csv out/wait_pool/answers.csv \
      --images_csv out/upload_images/images.csv --method iou_cluster --output_dir out/aggregate_boxes
Troubleshooting:
  * "unknown aggregation method": the line lists the valid names.
  * "warning: answers.csv line N: ...": that answer was skipped; the rest is aggregated.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from crowdboxes.artifacts import (ANSWERS, BOXES, IMAGES, VERIFICATIONS, WORKERS, read_csv,  # noqa: E402
                                  require_numeric, write_csv)
from crowdboxes.cnvrg.stepkit import StepError, output_dir, run_step, step_parser  # noqa: E402
from crowdboxes.cnvrg.metrics import cnvrg_tag  # noqa: E402
from crowdboxes.files import read_json  # noqa: E402

USED_STATUSES = ("SUBMITTED", "ACCEPTED")
KNOWN_STATUSES = USED_STATUSES + ("REJECTED",)
MAX_WARNINGS = 20


def build_parser():
    parser = step_parser("aggregate_boxes", "Aggregate the crowd's boxes per image.")
    parser.add_argument("--answers_csv", default="/input/wait_pool/output/answers.csv")
    parser.add_argument("--images_csv", default="/input/upload_images/output/images.csv")
    parser.add_argument("--method", default="auto")
    parser.add_argument("--verifications_csv", default="none",
                        help="verifications.csv of Wait Pool, for methods that use verdicts (best_verified); "
                             "none = the file beside --answers_csv")
    return parser


def read_verifications(path, answers: pd.DataFrame) -> pd.DataFrame:
    """Votes per drawing as the aggregators take them: ``task`` (image), ``worker`` (the drawer), ok/bad votes."""
    frame = read_csv(path, VERIFICATIONS, dtype={"image_id": str, "assignment_id": str, "worker_id": str})
    require_numeric(frame, path, ("ok_votes", "bad_votes"))
    if "kind" in frame.columns:  # control tasks are scored against known boxes, not voted on
        frame = frame[frame["kind"].astype(str) != "control"]
    drawer = dict(zip(answers["assignment_id"], answers["worker_id"]))
    return pd.DataFrame({"task": frame["image_id"].to_numpy(),
                         "worker": [drawer.get(a, w) for a, w in zip(frame["assignment_id"], frame["worker_id"])],
                         "ok_votes": frame["ok_votes"].to_numpy(), "bad_votes": frame["bad_votes"].to_numpy()})


def read_answers(path) -> pd.DataFrame:
    frame = read_csv(path, ANSWERS, dtype={"assignment_id": str, "task_id": str, "image_id": str,
                                           "worker_id": str, "status": str, "label": str})
    require_numeric(frame, path, ("x", "y", "w", "h"), allow_empty=True)
    status = frame["status"].astype(str).str.strip().str.upper()
    bad = ~status.isin(KNOWN_STATUSES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise StepError(f"{path}: row {row + 2}, field 'status': {frame['status'].iloc[row]!r} is not one of "
                        f"{', '.join(KNOWN_STATUSES)}")
    frame["status"] = status
    return frame


def workers_frame(answers: pd.DataFrame, used: pd.DataFrame, skills: pd.Series,
                  model: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per worker: images answered, skill, boxes drawn, empty answers, rejected assignments, and the
    aggregator's own per-worker estimates (``workers_``, e.g. lean_em's miss/false-positive rates)."""
    has_box = used[["x", "y", "w", "h"]].notna().all(axis=1)
    per_worker = pd.DataFrame({
        "answers": used.groupby("worker_id")[["assignment_id", "image_id"]].apply(
            lambda g: len(g.drop_duplicates())),
        "boxes": has_box.groupby(used["worker_id"]).sum(),
        "empty_answers": (~has_box).groupby(used["worker_id"]).sum(),
    })
    rejected = answers[answers["status"] == "REJECTED"].groupby("worker_id")["assignment_id"].nunique()
    workers = pd.Index(sorted(set(answers["worker_id"].astype(str))), name="worker_id")
    out = per_worker.reindex(workers)
    out["skill"] = skills.reindex(workers).astype(float)
    out["rejected_assignments"] = rejected.reindex(workers).fillna(0).astype(int)
    for column in ("answers", "boxes", "empty_answers"):
        out[column] = out[column].fillna(0).astype(int)
    out = out[["answers", "skill", "boxes", "empty_answers", "rejected_assignments"]]
    if isinstance(model, pd.DataFrame) and not model.empty:
        extra = model.drop(columns=[c for c in model.columns if c in out.columns or c == "images"])
        extra.index = extra.index.astype(str)
        out = out.join(extra, how="left")
    return out.reset_index()


def resolve_method(method: str, answers_csv) -> str:
    """``auto``: best_verified after Wait Pool's mode verify, lean_em otherwise (see the module docstring)."""
    if method.strip().lower() != "auto":
        return method
    summary = Path(answers_csv).with_name("wait_summary.json")
    data = read_json(summary, "wait summary") if summary.is_file() else None
    mode = data.get("mode") if isinstance(data, dict) else None
    return "best_verified" if mode == "verify" else "lean_em"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from crowdboxes.aggregation import get_aggregator

    args.method = resolve_method(args.method, args.answers_csv)
    try:
        aggregator = get_aggregator(args.method)
    except ValueError as exc:
        raise StepError(f"--method: {exc}") from None
    out = output_dir(args.output_dir)
    answers = read_answers(args.answers_csv)
    images = require_numeric(read_csv(args.images_csv, IMAGES, dtype={"image_id": str}), args.images_csv,
                             ("width", "height"))
    used = answers[answers["status"].isin(USED_STATUSES)]
    frame = pd.DataFrame({"task": used["image_id"].to_numpy(), "worker": used["worker_id"].to_numpy(),
                          "x": used["x"].to_numpy(), "y": used["y"].to_numpy(), "w": used["w"].to_numpy(),
                          "h": used["h"].to_numpy(),
                          "label": used["label"].to_numpy(dtype=object, na_value=None)})
    image_frame = pd.DataFrame({"task": images["image_id"], "width": images["width"], "height": images["height"]})
    fit_options = {}
    if "verifications" in inspect.signature(aggregator.fit).parameters:
        path = (Path(args.answers_csv).with_name(VERIFICATIONS.file_name)
                if args.verifications_csv.strip().lower() in ("", "none") else Path(args.verifications_csv))
        if not path.is_file():
            raise StepError(f"--method {args.method} needs the verification verdicts: {path} does not exist "
                            f"(run Wait Pool with --mode verify or overlap+verify, or pick another method)")
        fit_options["verifications"] = read_verifications(path, answers)
    try:
        aggregator.fit(frame, image_frame, **fit_options)
    except ValueError as exc:  # a schema problem the method reports (row problems never raise)
        raise StepError(f"--method {args.method}: {exc}") from None

    csv_lines = used.index.to_numpy() + 2  # header is line 1
    problems = sorted(aggregator.problems_)
    for row, reason in problems[:MAX_WARNINGS]:
        print(f"warning: {args.answers_csv} line {int(csv_lines[row])}: {reason} (skipped)", file=sys.stderr)
    if len(problems) > MAX_WARNINGS:
        print(f"warning: {len(problems) - MAX_WARNINGS} more skipped rows in {args.answers_csv}", file=sys.stderr)

    boxes = aggregator.boxes_.rename(columns={"task": "image_id"})
    boxes = boxes[list(BOXES.columns) + [c for c in boxes.columns if c not in BOXES.columns]]
    write_csv(boxes, out, BOXES)
    workers = workers_frame(answers, used, aggregator.skills_, getattr(aggregator, "workers_", None))
    write_csv(workers, out, WORKERS)

    cnvrg_tag("boxes", len(boxes))
    cnvrg_tag("images_with_boxes", boxes["image_id"].nunique())
    cnvrg_tag("workers", len(workers))
    cnvrg_tag("problem_rows", len(problems))
    print(f"aggregate_boxes ({args.method}): {len(used)} answer rows of {used['worker_id'].nunique()} workers "
          f"on {used['image_id'].nunique()} images -> {len(boxes)} boxes on {boxes['image_id'].nunique()} images"
          f" ({len(answers) - len(used)} rejected rows ignored, {len(problems)} skipped)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_step(main))
