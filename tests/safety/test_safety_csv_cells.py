"""Hostile file names stay text: Upload Images then Export with names a spreadsheet would run as formulas.

Every CSV the chain writes is read back with the ``csv`` module (what a spreadsheet import sees): no cell
begins with ``= + - @``, tab or CR. The product's own readers undo the escape, so Export names the very
files that are on disk.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from crowdboxes.artifacts import FLAT_EXPORT, IMAGES, REJECTED_IMAGES, Contract, read_csv, read_images, write_csv
from crowdboxes.files import FORMULA_STARTS, escape_cell, unescape_cell
from helpers_s3 import FAKE_AWS_ENV, start_local_s3

BUCKET = "hostile-names"
# The HYPERLINK name holds "/": on disk it is folders, and its file_name (relative, as Upload Images writes it)
# is the normalised path '=HYPERLINK("http:/x","y").jpg', which still begins with "=".
HOSTILE = [str(Path(n)) for n in ("=1+2.jpg", "+1+1.jpg", "@SUM(1+1).jpg", "-2.jpg", '=HYPERLINK("http://x","y").jpg',
                                  "'quoted.jpg")]


def _image(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def _cells(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _formula_cells(path: Path) -> list[str]:
    return [cell for row in _cells(path) for cell in row if cell[:1] in FORMULA_STARTS]


def test_escape_is_reversible_and_only_touches_text_cells(tmp_path):
    for text in HOSTILE + ["\tx", "\rx", "''", "'", "", "plain.jpg", "a=b"]:
        assert unescape_cell(escape_cell(text)) == text
        assert escape_cell(text)[:1] not in FORMULA_STARTS
    assert escape_cell("a=b") == "a=b" and escape_cell("'q") == "''q"
    frame = pd.DataFrame({"image_id": ["-1", "b"], "file_name": HOSTILE[:2], "url": ["http://s/a", "http://s/b"],
                          "width": [-3.5, 2.0], "height": [-7, 3], "sha256": ["'x", "y"]})
    write_csv(frame, tmp_path, IMAGES)
    rows = _cells(IMAGES.path(tmp_path))
    assert rows[1] == ["'-1", "'=1+2.jpg", "http://s/a", "-3.5", "-7", "''x"]  # numbers stay numbers
    back = read_csv(IMAGES.path(tmp_path), IMAGES, dtype={"image_id": str, "sha256": str})
    pd.testing.assert_frame_equal(back, frame)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with start_local_s3(tmp_path_factory.mktemp("s3"), buckets=[BUCKET]) as store:
        yield store


def test_upload_then_export_with_hostile_names(tmp_path, s3, run_step):
    dataset = tmp_path / "road_signs"
    dataset.mkdir()
    for seed, name in enumerate(HOSTILE):
        (dataset / name).parent.mkdir(parents=True, exist_ok=True)
        _image(dataset / name, seed)
    (dataset / "=cmd|' \\C calc'!A0.jpg").write_text("not an image")  # a hostile name in rejected_images.csv
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CNVRG_"))}, **FAKE_AWS_ENV,
           "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path / "home")}
    upload = tmp_path / "upload"
    done = run_step("upload_images.py", ["--images_dir", str(dataset), "--s3_bucket", BUCKET, "--s3_prefix", "p/",
                                         "--s3_endpoint_url", s3.url, "--output_dir", str(upload)], env, timeout=120)
    assert done.returncode == 0, done.stderr
    images = read_images(IMAGES.path(upload))
    assert sorted(images["file_name"]) == sorted(HOSTILE)  # the reader gives the names back exactly

    by_name = dict(zip(images["file_name"], images["image_id"]))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image_id,label,x,y,w,h,score,support\n"
                     + "".join(f"{by_name[n]},stop,1,2,10,12,0.9,3\n" for n in HOSTILE))
    export = tmp_path / "export"
    done = run_step("export.py", ["--boxes_csv", str(boxes), "--images_csv", str(IMAGES.path(upload)),
                                  "--wait_summary", "none", "--dataset", "hostile", "--dataset_root",
                                  str(tmp_path / "datasets"), "--output_dir", str(export), "--min_score", "0",
                                  "--formats", "coco,yolo"], env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    written = sorted(upload.glob("*.csv")) + sorted(export.glob("*.csv"))
    assert {p.name for p in written} >= {"images.csv", "rejected_images.csv", "annotations.csv"}
    for path in written:
        assert _formula_cells(path) == [], path
    rejected = read_csv(REJECTED_IMAGES.path(upload), REJECTED_IMAGES)
    assert rejected["file_name"].tolist() == ["=cmd|' \\C calc'!A0.jpg"]

    # Export names the files that are on disk: in the flat CSV (read back), in COCO and in the YOLO labels
    flat = read_csv(FLAT_EXPORT.path(export), Contract(FLAT_EXPORT.file_name, ("file_name",)))
    assert sorted(flat["file_name"]) == sorted(HOSTILE)
    assert all((dataset / name).is_file() for name in flat["file_name"])
    coco = json.loads((export / "annotations.coco.json").read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == sorted(HOSTILE)
    labels = {p.relative_to(export / "yolo" / "labels").with_suffix("") for p in
              (export / "yolo" / "labels").rglob("*.txt")}
    assert labels == {Path(n).with_suffix("") for n in HOSTILE}
