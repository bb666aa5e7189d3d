"""crowdboxes.evaluation.truth: COCO truth I/O, frames, Pascal VOC conversion and the lookup index."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from helpers_paths import REAL_DATA
from crowdboxes.classes import class_by_name, coco_categories
from crowdboxes.cnvrg.stepkit import StepError
from crowdboxes.evaluation.truth import (
    TruthIndex, images_frame, load_coco, truth_boxes, voc_folder_to_coco, write_coco,
)


def small_coco() -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80, "sha256": "ab" * 32},
            {"id": 2, "file_name": "sub/b.jpg", "width": 50, "height": 40, "sha256": "cd" * 32},
            {"id": 3, "file_name": "empty.jpg", "width": 10, "height": 10, "sha256": "ef" * 32},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 6], "area": 30, "iscrowd": 0,
             "occluded": True, "visible": 0.5},
            {"id": 3, "image_id": 2, "category_id": 10, "bbox": [1.5, 2, 3, 4], "area": 12, "iscrowd": 0},
        ],
        "categories": coco_categories(),
    }


def test_write_then_load_round_trips_and_is_byte_stable(tmp_path):
    coco = small_coco()
    path = write_coco(coco, tmp_path / "t" / "truth.coco.json")
    assert load_coco(path) == coco
    first = path.read_bytes()
    write_coco(load_coco(path), path)
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["truth.coco.json"]  # no temp files left


def test_write_coco_is_atomic_on_failure(tmp_path):
    path = tmp_path / "truth.coco.json"
    write_coco(small_coco(), path)
    before = path.read_bytes()
    bad = small_coco()
    bad["annotations"][0]["bbox"] = [1, 2, float("nan"), 4]
    with pytest.raises(StepError, match=r"annotations\[0\].*bbox"):
        write_coco(bad, path)
    unserialisable = small_coco()
    unserialisable["info"] = {"x": object()}
    with pytest.raises(TypeError):
        write_coco(unserialisable, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truth.coco.json"]


def test_frames_have_the_contract_columns_and_values():
    coco = small_coco()
    images = images_frame(coco)
    assert list(images.columns) == ["image_id", "file_name", "width", "height", "sha256"]
    assert images["file_name"].tolist() == ["a.jpg", "sub/b.jpg", "empty.jpg"]
    boxes = truth_boxes(coco)
    assert list(boxes.columns) == ["image_id", "file_name", "label", "x", "y", "w", "h"]
    assert boxes["label"].tolist() == ["stop", "speed_limit", "traffic_light"]
    assert boxes["file_name"].tolist() == ["a.jpg", "a.jpg", "sub/b.jpg"]
    assert boxes.loc[2, ["x", "y", "w", "h"]].tolist() == [1.5, 2.0, 3.0, 4.0]
    assert boxes["x"].dtype == np.float64
    empty = truth_boxes({"images": [], "annotations": []})
    assert list(empty.columns) == list(boxes.columns) and len(empty) == 0


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.pop("images"), "'images' is missing"),
    (lambda c: c["images"][1].pop("width"), r"images\[1\] lacks field 'width'"),
    (lambda c: c["images"][0].update(height=0), r"images\[0\] \(id 1\): width/height"),
    (lambda c: c["annotations"][2].update(image_id=99), r"annotations\[2\]: image_id 99"),
    (lambda c: c["annotations"][1].update(bbox=[1, 2, 3]), r"annotations\[1\]: bbox"),
    (lambda c: c["annotations"][0].update(bbox=[1, 2, -3, 4]), r"annotations\[0\].*negative"),
])
def test_load_coco_names_the_bad_entry(tmp_path, mutate, message):
    coco = small_coco()
    mutate(coco)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(StepError, match=message):
        load_coco(path)


def test_load_coco_missing_and_malformed_files(tmp_path):
    with pytest.raises(StepError, match="does not exist"):
        load_coco(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(StepError, match="broken.json: not valid JSON"):
        load_coco(tmp_path / "broken.json")


def test_truth_index_by_sha_by_name_and_by_url_basename():
    index = TruthIndex(small_coco())
    width, height, rows = index.lookup(sha256="AB" * 32)
    assert (width, height) == (100, 80)
    assert rows["label"].tolist() == ["stop", "speed_limit"]
    assert index.lookup(file_name="sub/b.jpg")[2]["label"].tolist() == ["traffic_light"]
    # a URL or a prefixed key ends in the base name
    assert index.lookup(file_name="https://s3.local/bucket/prefix/b.jpg?X-Amz-Signature=1")[:2] == (50, 40)
    # content wins over the name; an unknown hash falls back to the name
    assert index.lookup(sha256="cd" * 32, file_name="a.jpg")[:2] == (50, 40)
    assert index.lookup(sha256="00" * 32, file_name="a.jpg")[:2] == (100, 80)
    width, height, rows = index.lookup(file_name="empty.jpg")
    assert (width, height) == (10, 10) and len(rows) == 0 and "label" in rows.columns
    # the upload step stores images as <prefix><sha256>.<ext>
    assert index.lookup(file_name=f"http://127.0.0.1:9000/b/p/{'cd' * 32}.jpg?X-Amz-Expires=60")[:2] == (50, 40)
    assert index.lookup(file_name=f"{'00' * 32}.jpg") is None
    assert index.lookup(sha256="00" * 32) is None
    assert index.lookup(file_name="other.jpg") is None
    assert index.lookup() is None
    assert len(index) == 3


def _write_voc(folder, stem, size, objects, image_size=None):
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    w, h = image_size or size
    Image.new("RGB", (w, h), (40, 90, 140)).save(folder / "images" / f"{stem}.png")
    objs = "".join(
        f"<object><name>{name}</name><occluded>{occ}</occluded><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for name, b, occ in objects)
    (folder / "annotations" / f"{stem}.xml").write_text(
        f"<annotation><folder>images</folder><filename>{stem}.png</filename><size><width>{size[0]}</width>"
        f"<height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>")


def test_voc_inclusive_boxes_become_coco_pixels(tmp_path):
    _write_voc(tmp_path, "road10", (40, 30), [("stop", (5, 6, 14, 25), 0), ("trafficlight", (30, 20, 40, 30), 1)])
    _write_voc(tmp_path, "road2", (20, 20), [], image_size=(24, 22))  # stale <size>: the file wins
    coco = voc_folder_to_coco(tmp_path)
    assert [im["file_name"] for im in coco["images"]] == ["road2.png", "road10.png"]  # natural order
    road2, road10 = coco["images"]
    assert (road2["width"], road2["height"]) == (24, 22)
    assert road10["sha256"] == hashlib.sha256((tmp_path / "images" / "road10.png").read_bytes()).hexdigest()
    stop, light = coco["annotations"]
    assert stop["bbox"] == [5, 6, 10, 20] and stop["area"] == 200
    assert stop["category_id"] == class_by_name("stop").id and stop["occluded"] is False
    # xmax=40 on a 40-wide image is one pixel past the edge: cut to the image
    assert light["bbox"] == [30, 20, 10, 10] and light["occluded"] is True
    assert light["category_id"] == class_by_name("traffic_light").id
    assert all(a["image_id"] == road10["id"] for a in coco["annotations"])


def test_voc_unknown_label_and_missing_image_are_named(tmp_path):
    _write_voc(tmp_path, "road1", (40, 30), [("bicycle", (1, 1, 5, 5), 0)])
    with pytest.raises(StepError, match=r"road1.xml object 1: label 'bicycle'"):
        voc_folder_to_coco(tmp_path)
    os.unlink(tmp_path / "images" / "road1.png")
    with pytest.raises(StepError, match=r"road1.xml: image 'road1.png' not found"):
        voc_folder_to_coco(tmp_path)
    with pytest.raises(StepError, match="no Pascal VOC"):
        voc_folder_to_coco(tmp_path / "images")


@pytest.fixture(scope="module")
def real_coco():
    if not (REAL_DATA / "annotations").is_dir():
        pytest.skip(f"real sample {REAL_DATA} is absent")
    return voc_folder_to_coco(REAL_DATA)


def test_real_sample_converts_with_its_documented_counts(real_coco, tmp_path):
    assert len(real_coco["images"]) == 160
    counts = truth_boxes(real_coco)["label"].value_counts().to_dict()
    # README of the sample: speedlimit 135, crosswalk 87, trafficlight 75, stop 13
    assert counts == {"speed_limit": 135, "pedestrian_crossing": 87, "traffic_light": 75, "stop": 13}
    images = images_frame(real_coco)
    boxes = truth_boxes(real_coco).merge(images[["image_id", "width", "height"]], on="image_id")
    assert (boxes.x >= 0).all() and (boxes.y >= 0).all()
    assert (boxes.x + boxes.w <= boxes.width).all() and (boxes.y + boxes.h <= boxes.height).all()
    assert (boxes.w >= 1).all() and (boxes.h >= 1).all()
    assert images["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    # road104: speedlimit xmin 48 ymin 14 xmax 344 ymax 345 (inclusive)
    road104 = boxes[boxes.file_name == "road104.png"]
    assert road104[["x", "y", "w", "h"]].values.tolist() == [[48, 14, 297, 332]]
    index = TruthIndex(load_coco(write_coco(real_coco, tmp_path / "real.coco.json")))
    digest = hashlib.sha256((REAL_DATA / "images" / "road104.png").read_bytes()).hexdigest()
    width, height, rows = index.lookup(sha256=digest)
    assert (width, height) == (400, 364) and rows["label"].tolist() == ["speed_limit"]


def test_missing_categories_are_filled_in_without_touching_the_callers_dict(tmp_path):
    coco = small_coco()
    del coco["categories"]
    write_coco(coco, tmp_path / "t.json")
    assert "categories" not in coco
    loaded = load_coco(tmp_path / "t.json")
    assert loaded["categories"] == coco_categories()
    assert truth_boxes(loaded)["label"].tolist() == ["stop", "speed_limit", "traffic_light"]
