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
  checks.csv   (no param) when Wait Pool's per-box check round wrote it beside answers.csv, lean_em folds the
               verdicts into the scores (REJECTED rows ignored; a check of no known box is warned about and
               skipped); other methods ignore it with one warning. answers.csv rows with round=missed_signs are
               a missed-sign round's additions (their drawers were shown the first-round boxes).
Outputs (in --output_dir):
  boxes.csv    image_id, label, x, y, w, h, score, support (pixels; score in [0, 1], full precision). lean_em
               keeps every candidate down to score 0.01, ranked: score is its probability of being a true
               positive (a real sign of that class, boxed within IoU 0.5); Export's --min_score decides what
               a user keeps
  workers.csv  worker_id, answers (images answered), skill, then boxes, empty_answers, rejected_assignments
               and the method's own per-worker estimates (lean_em: miss_rate, fp_rate, sigma, label_accuracy)
  images_review.csv  image_id, file_name, risk, expected_missed, expected_spurious, n_boxes, min_score: one row
               per image, the riskiest first (lean_em's expected wrong, missing or mislabelled boxes), to review
               the doubtful images first; n_boxes, min_score and expected_spurious are of the boxes scored >= 0.5
  stdout: cnvrg_tag_boxes, cnvrg_tag_images_with_boxes, cnvrg_tag_workers, cnvrg_tag_problem_rows (and with
          checks: cnvrg_tag_checks, cnvrg_tag_checks_skipped)
Sample command:
  python steps/aggregate_boxes.py --answers_csv out/wait_pool/answers.csv \
      --images_csv out/upload_images/images.csv --method iou_cluster --output_dir out/aggregate_boxes
Troubleshooting:
  * "unknown aggregation method": the line lists the valid names.
  * "warning: answers.csv line N: ...": that answer was skipped; the rest is aggregated.
  * "warning: .../checks.csv line N: no output box of its image matches it (skipped)": the check is of a box
    these answers do not produce (answers.csv changed after the check round); the other checks count.
  * "--method best_verified needs the verification verdicts: .../verifications.csv does not exist": that
    method ranks drawings by the verifiers' votes; run Wait Pool with --mode verify (or overlap+verify), give
    --verifications_csv, or pick another method.
  * "answers.csv: row N, field 'status': ... is not one of SUBMITTED, ACCEPTED, REJECTED": the file was
    edited by hand or comes from another tool; fix or drop that row.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crowdboxes.cnvrg.stepkit import StepArgumentParser, run_step, step_parser  # noqa: E402
from crowdboxes.steps.aggregate_boxes import AggregateBoxesOptions, aggregate_boxes  # noqa: E402


def build_parser() -> StepArgumentParser:
    """Aggregate Boxes' params (the flow YAML passes each as ``--key value``; no Toloka token is used)."""
    parser = step_parser("aggregate_boxes", "Aggregate the crowd's boxes per image.")
    parser.add_argument("--answers_csv", default="/input/wait_pool/output/answers.csv",
                        help="answers.csv of Wait Pool (one row per drawn box; an empty box = nothing drawn)")
    parser.add_argument("--images_csv", default="/input/upload_images/output/images.csv",
                        help="images.csv of Upload Images (image sizes, to clip the boxes)")
    parser.add_argument("--method", default="auto",
                        help="aggregation method (lean_em, iou_cluster, wbf, best_verified, ...); auto = "
                             "best_verified after Wait Pool's mode verify, else lean_em")
    parser.add_argument("--verifications_csv", default="none",
                        help="verifications.csv of Wait Pool, for methods that use verdicts (best_verified); "
                             "none = the file beside --answers_csv")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the params and run the step (:func:`crowdboxes.steps.aggregate_boxes.aggregate_boxes`)."""
    return aggregate_boxes(AggregateBoxesOptions(**vars(build_parser().parse_args(argv))))


if __name__ == "__main__":
    raise SystemExit(run_step(main))
