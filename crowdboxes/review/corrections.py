"""``python -m crowdboxes import-corrections CVAT.xml``: merge a CVAT review back and export again.

Input: the XML CVAT exports ("CVAT for images 1.1", the XML or the zip CVAT downloads) from the task
``review`` packed, after the reviewer added, deleted, moved or relabelled boxes, and the review folder (its
review.json says what was packed, and where boxes.csv and images.csv were; ``--boxes_csv`` and
``--images_csv`` point elsewhere when the files moved, e.g. packed on cnvrg and merged on a laptop).

The merge, into ``--output_dir``:

* ``boxes.csv`` (:data:`crowdboxes.artifacts.BOXES`, plus the column
  :data:`crowdboxes.artifacts.CORRECTED_BOXES_SOURCE`): every image of the XML is a reviewed image and its
  boxes are exactly the XML's boxes (``score`` 1.0: a person checked them; ``support`` 1: one reviewer;
  source ``review``), whatever the crowd had there, low-score candidates included; every other image keeps
  the crowd's rows unchanged (source ``crowd``, or the source they already had when boxes.csv is itself a
  merged one). Crowd rows come first in their boxes.csv order, then the reviewed boxes by review.json's
  image order and the XML's box order, so a re-run writes the same bytes.
* the export files: Export's library function (:func:`crowdboxes.steps.export.export`) run on that
  boxes.csv and the packed images.csv, with Export's params (``--min_score``, ``--formats``, ``--dataset``,
  ...), so the folder holds what Export writes.

Refused in one line before anything is written: boxes.csv changed since packing (its sha256 differs from
review.json's), an XML image that was not packed (or appears twice), a box label that is not one of the
packed classes, malformed XML (with its line; see :mod:`crowdboxes.review.cvat_xml`), and an output
folder that holds the crowd's own boxes.csv. A packed image missing from the XML (deleted in CVAT) keeps
the crowd's boxes, with a warning.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from crowdboxes.artifacts import BOXES, CORRECTED_BOXES_SOURCE, REVIEW_TASK, read_csv, require_numeric, write_csv
from crowdboxes.cnvrg.metrics import one_line
from crowdboxes.cnvrg.stepkit import DefaultsHelpFormatter, StepArgumentParser, output_dir
from crowdboxes.credentials import DEFAULT_TOKEN_ENV
from crowdboxes.errors import CrowdboxesError
from crowdboxes.export.formats import DEFAULT_FORMATS
from crowdboxes.files import read_json_object, sha256_file
from crowdboxes.params import none_or_value
from crowdboxes.review.cvat_xml import CvatImage, read_cvat_images
from crowdboxes.review.pack import REVIEW_FORMAT, REVIEW_JSON
from crowdboxes.steps.export import ExportOptions, export

REVIEW_SCORE = 1.0  # a box a person checked or drew
REVIEW_SUPPORT = 1  # one reviewer
CROWD, REVIEW = "crowd", "review"


@dataclass(frozen=True)
class CorrectionOptions:
    """``import-corrections``' params (None = the word none; meanings in :func:`build_parser`)."""

    cvat_xml: str
    review_dir: str
    output_dir: str | None
    boxes_csv: str | None
    images_csv: str | None
    wait_summary: str | None
    dataset: str | None
    dataset_root: str | None
    min_score: float
    formats: str
    truth: str | None


def read_review(review_dir: str | Path) -> dict[str, Any]:
    """review.json of a folder ``review`` packed; CrowdboxesError when it is absent or not ours."""
    path = Path(review_dir) / REVIEW_JSON
    record = read_json_object(path, "review")
    if record.get("format") != REVIEW_FORMAT:
        raise CrowdboxesError(f"{path}: not written by 'python -m crowdboxes review' (format {record.get('format')!r})")
    for key in ("boxes_csv", "boxes_sha256", "images_csv", "images_sha256", "classes", "images"):
        if key not in record:
            raise CrowdboxesError(f"{path}: field {key!r} is missing")
    return record


def check_unchanged(path: str, recorded: str, what: str, review_json: Path) -> None:
    """CrowdboxesError when the file at ``path`` is gone or its sha256 is no longer ``recorded``."""
    if not Path(path).is_file():
        raise CrowdboxesError(f"{what} {path} (recorded in {review_json}) does not exist")
    if sha256_file(path) != recorded:
        raise CrowdboxesError(f"{what} {path} changed since it was packed for review (sha256 differs from "
                              f"{review_json}); pack the review again from the new file")


def reviewed_images(record: dict[str, Any], cvat: list[CvatImage], xml: str) -> dict[str, CvatImage]:
    """image_id -> its corrected image; CrowdboxesError for an unpacked or repeated image or an unknown label."""
    packed = {str(item["file_name"]): str(item["image_id"]) for item in record["images"]}
    classes = [str(c) for c in record["classes"]]
    seen: dict[str, CvatImage] = {}
    for image in cvat:
        if image.name not in packed:
            raise CrowdboxesError(f"{xml}: line {image.line}: image {image.name!r} was not packed for this review "
                                  f"(not in its {REVIEW_JSON})")
        if packed[image.name] in seen:
            raise CrowdboxesError(f"{xml}: line {image.line}: image {image.name!r} appears twice "
                                  f"(first at line {seen[packed[image.name]].line})")
        for box in image.boxes:
            if box.label not in classes:
                raise CrowdboxesError(f"{xml}: line {box.line}, image {image.name!r}: label {box.label!r} is not a "
                                      f"class (classes: {', '.join(classes)})")
        seen[packed[image.name]] = image
    return seen


def merge(crowd: pd.DataFrame, record: dict[str, Any], corrected: dict[str, CvatImage]) -> pd.DataFrame:
    """boxes.csv with the reviewed images' boxes replaced (see the module docstring)."""
    kept = crowd.loc[~crowd["image_id"].isin(set(corrected))].copy()
    if CORRECTED_BOXES_SOURCE not in kept.columns:
        kept[CORRECTED_BOXES_SOURCE] = CROWD
    kept[CORRECTED_BOXES_SOURCE] = kept[CORRECTED_BOXES_SOURCE].fillna(CROWD)
    rows = [{"image_id": image_id, "label": box.label, "x": box.x, "y": box.y, "w": box.w, "h": box.h,
             "score": REVIEW_SCORE, "support": REVIEW_SUPPORT, CORRECTED_BOXES_SOURCE: REVIEW}
            for image_id in (str(item["image_id"]) for item in record["images"]) if image_id in corrected
            for box in corrected[image_id].boxes]
    review = pd.DataFrame(rows, columns=["image_id", *BOXES.columns[1:], CORRECTED_BOXES_SOURCE])
    if kept.empty:  # concat of an empty frame would make every column object-typed
        return review.reindex(columns=kept.columns)
    return pd.concat([kept, review], ignore_index=True)[list(kept.columns)]


def import_corrections(options: CorrectionOptions) -> int:
    """Check, merge, write boxes.csv, then run Export on it (see the module docstring)."""
    review_json = Path(options.review_dir) / REVIEW_JSON
    record = read_review(options.review_dir)
    boxes_csv = options.boxes_csv or record["boxes_csv"]
    check_unchanged(boxes_csv, record["boxes_sha256"], "boxes.csv", review_json)
    if options.images_csv is None:
        check_unchanged(record["images_csv"], record["images_sha256"], "images.csv", review_json)
    images_csv = options.images_csv or record["images_csv"]
    xml_name, cvat = read_cvat_images(options.cvat_xml)
    corrected = reviewed_images(record, cvat, xml_name)
    crowd = read_csv(boxes_csv, BOXES, dtype={"image_id": str, "label": str})
    require_numeric(crowd, boxes_csv, ("x", "y", "w", "h", "score", "support"))
    out = output_dir(options.output_dir)
    if BOXES.path(out).resolve() == Path(boxes_csv).resolve():
        raise CrowdboxesError(f"--output_dir {out} holds the crowd's boxes.csv; write the corrected one elsewhere")
    missing = [str(item["file_name"]) for item in record["images"] if str(item["image_id"]) not in corrected]
    if missing:
        print(one_line(f"warning: {len(missing)} packed image(s) not in {options.cvat_xml} keep the crowd's "
                       f"boxes: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"), file=sys.stderr)
    merged = merge(crowd, record, corrected)
    path = write_csv(merged, out, BOXES)
    # the corrections are as old as the reviewer's file: without a wait summary Export dates the COCO file
    # by boxes.csv's time, so a re-run of the same corrections writes the same bytes
    xml_time = Path(options.cvat_xml).stat().st_mtime
    os.utime(path, (xml_time, xml_time))
    reviewed = int((merged[CORRECTED_BOXES_SOURCE] == REVIEW).sum())
    print(f"corrections: {len(corrected)} reviewed images now hold {reviewed} boxes "
          f"(the crowd had {int(crowd['image_id'].isin(set(corrected)).sum())} rows there) -> {path}", flush=True)
    return export(ExportOptions(toloka_env="production", token_env=DEFAULT_TOKEN_ENV, output_dir=str(out),
                                boxes_csv=str(path), images_csv=str(images_csv), wait_summary=options.wait_summary,
                                dataset=options.dataset, dataset_root=options.dataset_root,
                                min_score=options.min_score, formats=options.formats, truth=options.truth))


def build_parser() -> StepArgumentParser:
    """``import-corrections``' params; ``--help`` shows each default."""
    parser = StepArgumentParser(prog="python -m crowdboxes import-corrections", formatter_class=DefaultsHelpFormatter,
                                description="Merge a corrected CVAT XML of a review back into boxes.csv and "
                                            "export again.")
    parser.add_argument("cvat_xml", help="the XML CVAT exported as 'CVAT for images 1.1' after the review, or "
                                         "the zip CVAT downloads (its annotations.xml is read)")
    parser.add_argument("--review_dir", default=str(REVIEW_TASK.path("output")),
                        help="the folder 'python -m crowdboxes review' packed (its review.json)")
    parser.add_argument("--output_dir", default=None,
                        help="where the new boxes.csv and the export files go (default: $CNVRG_OUTPUT_DIR or "
                             "./output; not the folder of the crowd's boxes.csv)")
    parser.add_argument("--boxes_csv", type=none_or_value, default=None,
                        help="the crowd's boxes.csv that was packed (none: the path recorded in review.json; "
                             "either way its sha256 must be the recorded one)")
    parser.add_argument("--images_csv", type=none_or_value, default=None,
                        help="images.csv for the export (none: the one recorded in review.json, checked unchanged)")
    parser.add_argument("--wait_summary", type=none_or_value, default=None,
                        help="wait_summary.json of Wait Pool, as Export takes it (cost, the project's labels)")
    parser.add_argument("--dataset", type=none_or_value, default=None,
                        help="dataset to publish the corrected export to, as Export does (none: do not publish)")
    parser.add_argument("--dataset_root", type=none_or_value, default=None,
                        help="local dataset store, as Export takes it (none: $CROWDBOXES_DATASETS or ./datasets)")
    parser.add_argument("--min_score", type=float, default=0.5,
                        help="Export's threshold for the crowd's boxes (reviewed boxes score 1.0)")
    parser.add_argument("--formats", default=DEFAULT_FORMATS,
                        help="Export's formats: comma list of coco, detections, yolo, voc, cvat, or all")
    parser.add_argument("--truth", type=none_or_value, default=None,
                        help="none, or a COCO file of the true boxes for the report, as Export takes it")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the params and run :func:`import_corrections`."""
    return import_corrections(CorrectionOptions(**vars(build_parser().parse_args(argv))))
