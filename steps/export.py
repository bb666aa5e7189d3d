"""Export: COCO JSON, a flat CSV and a summary of the run, published as a new dataset version.

Inputs:
  --boxes_csv     boxes.csv of Aggregate Boxes (image_id, label, x, y, w, h, score, support)
  --images_csv    images.csv of Upload Images (image_id, file_name, url, width, height, sha256)
  --wait_summary  wait_summary.json of Wait Pool (cost and timing, and the detection project's labels, which
                  become the COCO categories; ``none`` to leave them out: categories from crowdboxes/classes.py)
  --dataset       dataset to publish to (``none``: do not publish); on cnvrg through the cnvrgv2 SDK,
                  elsewhere a local store ``<dataset_root>/<dataset>/v<N>/``
  --dataset_root  local store root (default $CROWDBOXES_DATASETS or ./datasets)
  --min_score     drop boxes whose score is below this (0..1, default 0)
Outputs (in --output_dir):
  annotations.coco.json  COCO detection file (pixel bbox, area, category_id, score, support)
  annotations.csv        one row per box: image_id, file_name, url, width, height, label, category_id, x, y, w,
                         h, score, support
  summary.json           images, images with boxes, boxes per class, cost, cost per accepted image, wall time,
                         and where the dataset version went
  stdout: cnvrg_tag_images, _images_with_boxes, _boxes, _cost_usd, _cost_per_image_usd, _dataset_version
Sample command:
  python steps/export.py --boxes_csv out/aggregate_boxes/boxes.csv --images_csv out/upload_images/images.csv \
      --wait_summary out/wait_pool/wait_summary.json --dataset road_signs_annotations --min_score 0.3 \
      --output_dir out/export
Troubleshooting:
  * "boxes.csv line N: image_id ... is not in images.csv": boxes and images come from different runs.
  * On cnvrg the dataset is created when missing; publishing needs the cnvrgv2 SDK (extra ``cnvrg``).
    A failed publish leaves the three files in the output folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crowdboxes.export import annotations as ex  # noqa: E402
from crowdboxes.artifacts import BOXES, IMAGES, read_csv, require_numeric  # noqa: E402
from crowdboxes.cnvrg.datasets import ROOT_ENV, check_slug, publish  # noqa: E402
from crowdboxes.cnvrg.stepkit import StepError, none_or_value, output_dir, run_step, step_parser  # noqa: E402
from crowdboxes.files import atomic_path, read_json, write_text_atomic
from crowdboxes.cnvrg.metrics import cnvrg_tag

COCO_NAME, FLAT_NAME, SUMMARY_NAME = "annotations.coco.json", "annotations.csv", "summary.json"


def build_parser():
    parser = step_parser("export", "Export the aggregated boxes and publish them as a dataset version.")
    parser.add_argument("--boxes_csv", default="/input/aggregate_boxes/output/boxes.csv")
    parser.add_argument("--images_csv", default="/input/upload_images/output/images.csv")
    parser.add_argument("--wait_summary", type=none_or_value, default="/input/wait_pool/output/wait_summary.json")
    parser.add_argument("--dataset", type=none_or_value, default="road_signs_annotations")
    parser.add_argument("--dataset_root", type=none_or_value, default=None,
                        help=f"local dataset store (default ${ROOT_ENV} or ./datasets)")
    parser.add_argument("--min_score", type=float, default=0.0)
    return parser


def read_wait_summary(path) -> dict | None:
    if path is None:
        return None
    p = Path(path)
    data = read_json(p)
    if not isinstance(data, dict):
        raise StepError(f"{p}: expected a JSON object")
    if data.get("spent_usd") is not None and not isinstance(data["spent_usd"], (int, float)):
        raise StepError(f"{p}: field 'spent_usd': {data['spent_usd']!r} is not a number")
    return data


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.min_score <= 1.0:
        raise StepError(f"--min_score {args.min_score}: must be between 0 and 1")
    if args.dataset is not None:
        check_slug(args.dataset)
    out = output_dir(args.output_dir)
    boxes = read_csv(args.boxes_csv, BOXES, dtype={"image_id": str, "label": str})
    require_numeric(boxes, args.boxes_csv, ("x", "y", "w", "h", "score", "support"))
    images = read_csv(args.images_csv, IMAGES, dtype={"image_id": str, "sha256": str})
    require_numeric(images, args.images_csv, ("width", "height"))
    unknown = ~boxes["image_id"].isin(set(images["image_id"]))
    if unknown.any():
        row = int(unknown.to_numpy().nonzero()[0][0])
        raise StepError(f"{args.boxes_csv}: row {row + 2}, field 'image_id': {boxes['image_id'].iloc[row]!r} "
                        f"is not in {args.images_csv}")
    wait_summary = read_wait_summary(args.wait_summary)
    cats = ex.categories(ex.project_labels(wait_summary, args.wait_summary))
    kept, problems = ex.select_boxes(boxes, args.min_score, cats)
    for problem in problems[:20]:
        print(f"warning: {problem}", file=sys.stderr)
    coco = ex.coco_document(kept, images, cats=cats)
    with atomic_path(out / COCO_NAME) as tmp:
        tmp.write_text(json.dumps(coco, indent=1) + "\n", encoding="utf-8")
    with atomic_path(out / FLAT_NAME) as tmp:
        ex.flat_frame(kept, images, cats).to_csv(tmp, index=False)
    summary = ex.summary(kept, images, wait_summary, args.min_score)
    summary["dropped_low_score"] = int((boxes["score"] < args.min_score).sum())
    summary["dropped_unknown_class"] = len(problems)
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")

    files = [out / COCO_NAME, out / FLAT_NAME, out / SUMMARY_NAME]
    if args.dataset is not None:
        published = publish(args.dataset, files, root=args.dataset_root,
                            message=f"{summary['boxes']} boxes on {summary['images']} images")
        summary["dataset"] = published.as_dict()
        # the published summary cannot name its own version; the output copy does
        write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
        where = (f"dataset {published.slug} version {published.version} ({published.location})"
                 + ("" if published.created else ", unchanged"))
    else:
        where = "not published (--dataset none)"

    for line in ex.summary_lines(summary):
        print(line)
    print(f"export: {out / COCO_NAME}; {where}", flush=True)
    cnvrg_tag("images", summary["images"])
    cnvrg_tag("images_with_boxes", summary["images_with_boxes"])
    cnvrg_tag("boxes", summary["boxes"])
    if summary["cost_usd"] is not None:
        cnvrg_tag("cost_usd", summary["cost_usd"])
    if summary["cost_per_accepted_image_usd"] is not None:
        cnvrg_tag("cost_per_image_usd", summary["cost_per_accepted_image_usd"])
    if args.dataset is not None:
        cnvrg_tag("dataset_version", summary["dataset"]["version"])
    return 0


if __name__ == "__main__":
    raise SystemExit(run_step(main))
