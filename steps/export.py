"""Export: COCO JSON, a flat CSV, YOLO, Pascal VOC, CVAT XML and a run summary, published as a dataset version.

Inputs:
  --boxes_csv     boxes.csv of Aggregate Boxes (image_id, label, x, y, w, h, score, support)
  --images_csv    images.csv of Upload Images (image_id, file_name, url, width, height, sha256)
  --wait_summary  wait_summary.json of Wait Pool (cost and timing, and the detection project's labels, which
                  become the COCO categories; ``none`` to leave them out: categories from crowdboxes/classes.py)
  --dataset       dataset to publish to (``none``: do not publish); on cnvrg through the cnvrgv2 SDK,
                  elsewhere a local store ``<dataset_root>/<dataset>/v<N>/``
  --dataset_root  local store root (default $CROWDBOXES_DATASETS or ./datasets)
  --min_score     drop boxes whose score is below this (0..1, default 0.5). A score is the probability that the
                  box is right (a sign of that class, boxed within IoU 0.5); boxes.csv keeps every candidate
                  down to 0.01, so 0 exports the whole ranked list (for AP, or to review the doubtful ones)
  --formats       comma list of coco, detections, yolo, voc, cvat, or all (default all five; coco is always
                  written); opt-in: fiftyone (a folder FiftyOne loads), e.g. all,fiftyone
  --truth         none (default), or a COCO file of the true boxes (a rehearsal, or a checked sample): the
                  report then shows AP, precision, recall and calibration against it
  --archive       none (default), pools or pools,projects: once the export is published, archive the job's pools
                  (wait_summary.json's pool_ids) and their projects on Toloka (--toloka_env, --token_env). Toloka
                  archives a pool only when closed with nothing ACTIVE or awaiting review, a project only when all
                  its pools are archived; what blocks is one warning line each, in archive_summary.json too
Outputs (in --output_dir):
  annotations.coco.json  COCO detection file (pixel bbox, area, category_id, score, support)
  annotations.csv        one row per box: image_id, file_name, url, width, height, label, category_id, x, y, w,
                         h, score, support (url: the images.csv URL without its query string, never presigned)
  detections.json        COCO results list (image_id, category_id, bbox, score) for pycocotools' loadRes
  yolo/                  labels/<file_name stem>.txt (class cx cy w h, normalised) and data.yaml (class names)
  voc/                   Pascal VOC Annotations/<stem>.xml (score as an attribute), ImageSets/Main/default.txt
  cvat/annotations.xml   CVAT for images 1.1, with score declared as a label attribute and set on each box
  formats.zip            yolo/, voc/ and cvat/ in one archive (a dataset version holds flat files)
  report.html            one self-contained page (no network): cost, score histogram and calibration, the
                         riskiest images (images_review.csv beside boxes.csv) with kept boxes, low-score
                         candidates and every worker's raw boxes (answers.csv beside wait_summary.json), workers
  summary.json           images, images with boxes, boxes per class, cost, cost per accepted image, wall time,
                         and where the dataset version went
  archive_summary.json   with --archive: pools and projects archived now, archived before, blocked (and why)
  stdout: cnvrg_tag_images, _images_with_boxes, _boxes, _cost_usd, _cost_per_image_usd, _dataset_version
Sample command:
  python steps/export.py --boxes_csv out/aggregate_boxes/boxes.csv --images_csv out/upload_images/images.csv \
      --wait_summary out/wait_pool/wait_summary.json --dataset road_signs_annotations --min_score 0.3 \
      --output_dir out/export
Troubleshooting:
  * "boxes.csv line N: image_id ... is not in images.csv": boxes and images come from different runs.
  * On cnvrg the dataset is created when missing; publishing needs the cnvrgv2 SDK, which the step image keeps in
    its own environment (/opt/cnvrg-sdk; elsewhere point $CROWDBOXES_CNVRG_PYTHON at a Python that has it).
    A failed publish leaves the files in the output folder.
  * "boxes.csv line N: unknown class ... (skipped; known: ...)": a label that is not one of the COCO
    categories (the detection project's labels recorded in wait_summary.json); the box is left out.
  * "images.csv: 'a/x.jpg' and 'a/x.png' would share the label file a/x": YOLO and VOC name a label file
    after the image's file name without its extension; rename one image.
  * "dataset name ...: use letters, digits, '-', '_' or '.'": pick a name cnvrg accepts as a dataset slug.
  * "blocked: pool N: 3 assignments SUBMITTED await review until ...": decide them (python -m crowdboxes
    decide) or wait for the review period to end, then run python -m crowdboxes archive --pool_csv pool.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crowdboxes.cnvrg.datasets import ROOT_ENV  # noqa: E402
from crowdboxes.cnvrg.stepkit import StepArgumentParser, run_step, step_parser  # noqa: E402
from crowdboxes.export.formats import DEFAULT_FORMATS  # noqa: E402
from crowdboxes.params import none_or_value  # noqa: E402
from crowdboxes.steps.export import ExportOptions, export  # noqa: E402


def build_parser() -> StepArgumentParser:
    """Export's params (the flow YAML passes each as ``--key value``; no Toloka token is used)."""
    parser = step_parser("export", "Export the aggregated boxes and publish them as a dataset version.")
    # --toloka_env/--token_env (step_parser's) are read only with --archive
    parser.add_argument("--boxes_csv", default="/input/aggregate_boxes/output/boxes.csv",
                        help="boxes.csv of Aggregate Boxes")
    parser.add_argument("--images_csv", default="/input/upload_images/output/images.csv",
                        help="images.csv of Upload Images")
    parser.add_argument("--wait_summary", type=none_or_value, default="/input/wait_pool/output/wait_summary.json",
                        help="wait_summary.json of Wait Pool: cost, timing, the project's labels (none: leave out)")
    parser.add_argument("--dataset", type=none_or_value, default="road_signs_annotations",
                        help="dataset to publish a new version of (none: do not publish)")
    parser.add_argument("--dataset_root", type=none_or_value, default=None,
                        help=f"local dataset store (default ${ROOT_ENV} or ./datasets)")
    parser.add_argument("--min_score", type=float, default=0.5,
                        help="drop boxes scored below this (0..1; a score is the probability the box is right; "
                             "0 keeps every ranked candidate)")
    parser.add_argument("--formats", default=DEFAULT_FORMATS,
                        help="comma list of coco, detections, yolo, voc, cvat, or all (coco is always written); "
                             "opt-in: fiftyone, e.g. all,fiftyone")
    parser.add_argument("--truth", type=none_or_value, default=None,
                        help="none, or a COCO file of the true boxes (images matched by file_name): report.html "
                             "then shows quality and calibration against it")
    parser.add_argument("--archive", default="none",
                        help="none, pools or pools,projects: after publishing, archive the job's pools (and their "
                             "projects) on Toloka; what blocks is a warning line each")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the params and run the step (:func:`crowdboxes.steps.export.export`)."""
    return export(ExportOptions(**vars(build_parser().parse_args(argv))))


if __name__ == "__main__":
    raise SystemExit(run_step(main))
