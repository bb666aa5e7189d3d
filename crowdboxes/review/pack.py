"""``python -m crowdboxes review``: pack the riskiest images with their boxes as a CVAT task.

The ``--top`` first rows of Aggregate Boxes' images_review.csv (riskiest first: ``risk`` is the expected
number of wrong, missing or mislabelled boxes on the image) go into ``<output_dir>/review/``
(:data:`crowdboxes.artifacts.REVIEW_TASK`), replaced whole on each run:

* ``annotations.xml``: CVAT for images 1.1, written by Export's own CVAT writer
  (:func:`crowdboxes.export.formats.write_cvat`) from the COCO document of the boxes with
  ``score >= --min_score`` (Export's default 0.5): each box carries its ``score`` (a declared, immutable
  text attribute). Low-score candidates are not packed: whatever box is in the XML when the reviewer
  exports it is taken as right, so a candidate left untouched would silently become a true box.
* ``images/<file_name>``: the image files, read from ``--images_dir`` by images.csv's ``file_name``, else
  downloaded from its ``url``; either way the bytes must have images.csv's sha256.
* ``images.zip``: the same files named by ``file_name``, what CVAT's "Create a new task" takes as one upload;
  the frame names are then the XML's image names.
* ``labels.json``: the labels in CVAT's "Raw" label format, to paste when creating the task (CVAT imports
  annotations only for labels the task already has).
* ``review.json``: what was packed: each image's ``image_id``, ``file_name``, ``risk`` and box count, the
  class names, ``min_score``, and the path and sha256 of boxes.csv and images.csv, which
  ``import-corrections`` checks before merging.

Every file is a function of the inputs only (no time stamps), so a re-run packs the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from crowdboxes.artifacts import BOXES, IMAGES, IMAGES_REVIEW, REVIEW_TASK, read_csv, require_numeric
from crowdboxes.cnvrg.stepkit import DefaultsHelpFormatter, StepArgumentParser, output_dir
from crowdboxes.errors import CrowdboxesError
from crowdboxes.export import annotations as ex
from crowdboxes.export import formats as fm
from crowdboxes.files import sha256_file, write_text_atomic
from crowdboxes.params import none_or_value
from crowdboxes.steps.export import MAX_WARNINGS, read_wait_summary

REVIEW_JSON = "review.json"
ANNOTATIONS_XML = "annotations.xml"
IMAGES_FOLDER = "images"
IMAGES_ZIP = "images.zip"
LABELS_JSON = "labels.json"
REVIEW_FORMAT = "crowdboxes review 1"
DOWNLOAD_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class PackOptions:
    """``review``'s params (None = the word none; meanings in :func:`build_parser`)."""

    boxes_csv: str
    images_csv: str
    images_review: str | None
    images_dir: str
    wait_summary: str | None
    top: int
    min_score: float
    output_dir: str | None


def review_csv_path(options: PackOptions) -> Path:
    """``--images_review``, else images_review.csv beside boxes.csv (Aggregate Boxes writes both)."""
    if options.images_review is not None:
        return Path(options.images_review)
    return IMAGES_REVIEW.path(Path(options.boxes_csv).parent)


def riskiest(review: pd.DataFrame, images: pd.DataFrame, top: int, review_path: Path,
             images_path: str) -> pd.DataFrame:
    """images.csv's rows of the ``top`` riskiest images (by decreasing ``risk``, ties in file order), with
    their ``risk``; CrowdboxesError naming a reviewed image that images.csv lacks."""
    ordered = review.assign(_row=range(len(review))).sort_values(["risk", "_row"], ascending=[False, True],
                                                                 kind="stable", na_position="last")
    chosen = ordered.head(top)
    known = images.drop_duplicates("image_id").set_index("image_id")
    missing = chosen.loc[~chosen["image_id"].isin(known.index)]
    if not missing.empty:
        row = int(missing["_row"].iloc[0])
        raise CrowdboxesError(f"{review_path}: row {row + 2}, field 'image_id': {missing['image_id'].iloc[0]!r} "
                              f"is not in {images_path}")
    picked = known.loc[chosen["image_id"].tolist()].reset_index()
    picked["risk"] = chosen["risk"].to_numpy()
    return picked


def image_bytes(row: Any, images_dir: Path) -> bytes:
    """The image's bytes from ``images_dir/<file_name>``, else from its URL; CrowdboxesError naming the image
    when neither gives the bytes whose sha256 images.csv recorded."""
    name = str(row.file_name)
    fm.relative_stem(name)  # an absolute name or one with '..' must not reach outside the folders
    local = images_dir / name
    if local.is_file():
        data = local.read_bytes()
        where = str(local)
    else:
        try:
            response = requests.get(str(row.url), timeout=DOWNLOAD_TIMEOUT_SECONDS)
            response.raise_for_status()
        except requests.RequestException as exc:
            # the URL may carry a presigned signature: name the image and the error's kind, not the URL
            detail = f"HTTP {exc.response.status_code}" if exc.response is not None else type(exc).__name__
            raise CrowdboxesError(f"image {row.image_id} ({name}): not in {images_dir} and its images.csv url "
                                  f"failed ({detail}; an expired presigned URL? pass --images_dir)") from None
        data = response.content
        where = "its images.csv url"
    digest = hashlib.sha256(data).hexdigest()  # images.csv's sha256 is of the file's bytes
    if digest != str(row.sha256):
        raise CrowdboxesError(f"image {row.image_id} ({name}): {where} has sha256 {digest[:16]}..., images.csv "
                              f"says {str(row.sha256)[:16]}... (a different file)")
    return data


def cvat_labels(cats: list[dict]) -> list[dict[str, Any]]:
    """The classes in CVAT's "Raw" label format, each with the immutable text attribute ``score``."""
    return [{"name": str(c["name"]), "type": "rectangle",
             "attributes": [{"name": "score", "mutable": False, "input_type": "text", "default_value": "",
                             "values": [""]}]} for c in cats]


def pack(options: PackOptions) -> Path:
    """Write the review folder (see the module docstring); its path."""
    if options.top < 1:
        raise CrowdboxesError(f"--top {options.top}: must be at least 1")
    if not 0.0 <= options.min_score <= 1.0:
        raise CrowdboxesError(f"--min_score {options.min_score}: must be between 0 and 1")
    boxes = read_csv(options.boxes_csv, BOXES, dtype={"image_id": str, "label": str})
    require_numeric(boxes, options.boxes_csv, ("x", "y", "w", "h", "score", "support"))
    images = read_csv(options.images_csv, IMAGES, dtype={"image_id": str, "file_name": str, "sha256": str,
                                                          "url": str})
    require_numeric(images, options.images_csv, ("width", "height"))
    review_path = review_csv_path(options)
    review = read_csv(review_path, IMAGES_REVIEW, dtype={"image_id": str, "file_name": str})
    require_numeric(review, review_path, ("risk",), allow_empty=True)
    if review.empty:
        raise CrowdboxesError(f"{review_path}: no images to review")
    wait_summary = read_wait_summary(options.wait_summary)
    chosen = riskiest(review, images, options.top, review_path, options.images_csv)
    cats = ex.categories(ex.project_labels(wait_summary, options.wait_summary))
    mine = boxes[boxes["image_id"].isin(set(chosen["image_id"]))]
    kept, problems = ex.select_boxes(mine, options.min_score, cats)
    for problem in problems[:MAX_WARNINGS]:
        print(f"warning: {problem}", file=sys.stderr)
    coco = ex.coco_document(kept, chosen, description=f"crowdboxes review: {len(chosen)} riskiest images",
                            cats=cats)
    images_dir = Path(options.images_dir)
    files = {str(row.file_name): image_bytes(row, images_dir) for row in chosen.itertuples(index=False)}
    counts = kept["image_id"].value_counts()
    record = {
        "format": REVIEW_FORMAT,
        "boxes_csv": str(Path(options.boxes_csv).resolve()),
        "boxes_sha256": sha256_file(options.boxes_csv),
        "images_csv": str(Path(options.images_csv).resolve()),
        "images_sha256": sha256_file(options.images_csv),
        "images_review_csv": str(review_path.resolve()),
        "min_score": options.min_score,
        "top": options.top,
        "classes": [str(c["name"]) for c in cats],
        "images": [{"image_id": str(row.image_id), "file_name": str(row.file_name),
                    "risk": None if pd.isna(row.risk) or math.isinf(float(row.risk)) else float(row.risk),
                    "boxes": int(counts.get(row.image_id, 0))} for row in chosen.itertuples(index=False)],
    }
    target = REVIEW_TASK.path(output_dir(options.output_dir))
    with fm.fresh_folder(target) as staging:
        for name, data in files.items():
            path = staging / IMAGES_FOLDER / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        fm.zip_paths(staging / IMAGES_FOLDER, sorted(files), staging / IMAGES_ZIP)
        fm.write_cvat(coco, staging / ANNOTATIONS_XML)
        write_text_atomic(staging / LABELS_JSON, json.dumps(cvat_labels(cats), indent=1) + "\n")
        write_text_atomic(staging / REVIEW_JSON, json.dumps(record, indent=1) + "\n")
    print(f"review: {len(chosen)} riskiest images, {len(kept)} boxes (score >= {options.min_score}) -> {target}")
    print(f"in CVAT: create a task with the labels of {target / LABELS_JSON} (Raw), upload "
          f"{target / IMAGES_ZIP}, then Upload annotations {target / ANNOTATIONS_XML} as 'CVAT 1.1'")
    return target


def build_parser() -> StepArgumentParser:
    """``review``'s params; ``--help`` shows each default."""
    parser = StepArgumentParser(prog="python -m crowdboxes review", formatter_class=DefaultsHelpFormatter,
                                description="Pack the riskiest images with their boxes as a CVAT task to correct.")
    parser.add_argument("--boxes_csv", default="/input/aggregate_boxes/output/boxes.csv",
                        help="boxes.csv of Aggregate Boxes")
    parser.add_argument("--images_csv", default="/input/upload_images/output/images.csv",
                        help="images.csv of Upload Images (file names, urls, sha256)")
    parser.add_argument("--images_review", type=none_or_value, default=None,
                        help="images_review.csv of Aggregate Boxes (none: the one beside --boxes_csv)")
    parser.add_argument("--images_dir", default="/data/road_signs",
                        help="the images folder Upload Images read; an image missing there is downloaded from "
                             "its images.csv url")
    parser.add_argument("--wait_summary", type=none_or_value, default=None,
                        help="wait_summary.json of Wait Pool: the project's labels become the classes "
                             "(none: the classes of crowdboxes/classes.py), as in Export")
    parser.add_argument("--top", type=int, default=50, help="how many of the riskiest images to pack")
    parser.add_argument("--min_score", type=float, default=0.5,
                        help="show the boxes scored at least this (Export's threshold)")
    parser.add_argument("--output_dir", default=None,
                        help=f"the task folder is <output_dir>/{REVIEW_TASK.file_name} "
                             "(default: $CNVRG_OUTPUT_DIR or ./output)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the params and pack (:func:`pack`)."""
    args = build_parser().parse_args(argv)
    pack(PackOptions(**vars(args)))
    return 0
