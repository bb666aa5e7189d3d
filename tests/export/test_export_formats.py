"""Export's formats read back by independent readers: pycocotools (COCO, loadRes, COCOeval), xml.etree (VOC,
CVAT), plain parsing (YOLO), datumaro when installed; each compared with the boxes.csv it came from."""

from __future__ import annotations

import io
import json
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

SIGNED = ("https://bucket.s3.amazonaws.com/scenes/a.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
          "&X-Amz-Credential=AKIAEXAMPLEKEY%2F20261126&X-Amz-Expires=604800&X-Amz-Signature=deadbeef")
IMAGES = ("image_id,file_name,url,width,height,sha256\n"
          f"a,scenes/a.jpg,{SIGNED},640,480,aaa\n"
          "b,scenes/b.jpg,http://s3/b.jpg,800,600,bbb\n"
          "c,scenes/c.png,http://s3/c.png,320,240,ccc\n")
# full-precision scores, a fractional box, two boxes on one image, nothing on c
BOXES = ("image_id,label,x,y,w,h,score,support\n"
         "a,stop,10,20,30,40,0.912345678901234,3\n"
         "a,parking,100.5,50.25,20,21.125,0.2000000000000001,1\n"
         "b,speed_limit,0,0,80,60,0.75,2\n"
         "b,speed_limit,700,500,100,100,0.013,1\n")
SIZES = {"a": (640, 480), "b": (800, 600), "c": (320, 240)}
FILES = {"a": "scenes/a.jpg", "b": "scenes/b.jpg", "c": "scenes/c.png"}


@pytest.fixture()
def export(tmp_path, run_step_in_process):
    """Run Export in this process (not published) with ``extra`` params; returns the output folder."""
    (tmp_path / "boxes.csv").write_text(BOXES)
    (tmp_path / "images.csv").write_text(IMAGES)

    def go(*extra: str, out: str = "out", expect: int = 0):
        args = ["--boxes_csv", str(tmp_path / "boxes.csv"), "--images_csv", str(tmp_path / "images.csv"),
                "--wait_summary", "none", "--dataset", "none", "--min_score", "0",
                "--output_dir", str(tmp_path / out), *extra]
        proc = run_step_in_process("export.py", args)
        assert proc.returncode == expect, proc.stderr
        return tmp_path / out if expect == 0 else proc
    return go


def expected() -> list[tuple[str, str, float, float, float, float, float]]:
    """boxes.csv as (image_id, label, x, y, w, h, score), sorted."""
    boxes = pd.read_csv(io.StringIO(BOXES), dtype={"image_id": str})
    return sorted((r.image_id, r.label, r.x, r.y, r.w, r.h, r.score) for r in boxes.itertuples())


def test_coco_and_detections_load_in_pycocotools_and_evaluate(export):
    out = export()
    gt = COCO(str(out / "annotations.coco.json"))
    keys = {img["id"]: img["image_key"] for img in gt.imgs.values()}
    names = {c["id"]: c["name"] for c in gt.cats.values()}
    anns = gt.loadAnns(gt.getAnnIds())
    assert all(a["segmentation"] == [] for a in anns)
    assert sorted((keys[a["image_id"]], names[a["category_id"]], *a["bbox"], a["score"]) for a in anns) == expected()
    assert {img["file_name"] for img in gt.imgs.values()} == set(FILES.values())

    listed = json.loads((out / "detections.json").read_text())
    assert isinstance(listed, list) and {tuple(sorted(d)) for d in listed} == {
        ("bbox", "category_id", "image_id", "score")}
    dt = gt.loadRes(str(out / "detections.json"))
    got = sorted((keys[d["image_id"]], names[d["category_id"]], *d["bbox"], d["score"])
                 for d in dt.loadAnns(dt.getAnnIds()))
    assert got == expected()  # scores equal boxes.csv's floats exactly: full precision

    # the pair evaluates: detections identical to the ground truth match it one to one, so AP = AR = 1
    evaluation = COCOeval(gt, dt, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0) and evaluation.stats[8] == pytest.approx(1.0)


def test_yolo_labels_match_boxes_csv(export):
    out = export()
    data = yaml.safe_load((out / "yolo" / "data.yaml").read_text())
    names = data["names"]
    assert data["nc"] == len(names) and names[0] == "stop"
    got = []
    for image_id, file_name in FILES.items():
        width, height = SIZES[image_id]
        text = (out / "yolo" / "labels" / Path(file_name).with_suffix(".txt")).read_text()
        for line in text.splitlines():
            k, cx, cy, w, h = line.split()
            cx, cy, w, h = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
            got.append((image_id, names[int(k)], cx - w / 2, cy - h / 2, w, h))
        if image_id == "c":
            assert text == ""  # an image without boxes still has its (empty) label file
    want = [row[:6] for row in expected()]
    assert len(got) == len(want)
    for g, w in zip(sorted(got), want):
        assert g[:2] == w[:2] and g[2:] == pytest.approx(w[2:], abs=1e-6 * 800)  # 6 decimals of the size


def test_voc_xml_matches_boxes_csv(export):
    out = export()
    got = []
    for image_id, file_name in FILES.items():
        root = ET.parse(out / "voc" / "Annotations" / Path(file_name).with_suffix(".xml")).getroot()
        assert root.findtext("path") == file_name and root.findtext("filename") == Path(file_name).name
        assert (int(root.findtext("size/width")), int(root.findtext("size/height"))) == SIZES[image_id]
        for obj in root.iter("object"):
            x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            score = {a.findtext("name"): a.findtext("value") for a in obj.iter("attribute")}["score"]
            got.append((image_id, obj.findtext("name"), x0, y0, x1 - x0, y1 - y0, float(score)))
    assert sorted(got) == expected()
    listed = (out / "voc" / "ImageSets" / "Main" / "default.txt").read_text().split()
    assert listed == ["scenes/a", "scenes/b", "scenes/c"]


def test_cvat_xml_declares_score_and_matches_boxes_csv(export):
    out = export()
    root = ET.parse(out / "cvat" / "annotations.xml").getroot()
    assert root.findtext("version") == "1.1"
    labels = root.findall("meta/task/labels/label")
    assert labels and all([a.findtext("name") for a in label.findall("attributes/attribute")] == ["score"]
                          for label in labels)
    declared = {label.findtext("name") for label in labels}
    by_name = {v: k for k, v in FILES.items()}
    got = []
    for image in root.iter("image"):
        image_id = by_name[image.get("name")]
        assert (int(image.get("width")), int(image.get("height"))) == SIZES[image_id]
        for box in image.iter("box"):
            assert box.get("label") in declared
            x0, y0, x1, y1 = (float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
            score = {a.get("name"): a.text for a in box.iter("attribute")}["score"]
            got.append((image_id, box.get("label"), x0, y0, x1 - x0, y1 - y0, float(score)))
    assert sorted(got) == expected()
    assert sorted(image.get("name") for image in root.iter("image")) == sorted(FILES.values())


def test_no_presigned_url_in_any_export(export):
    out = export()
    texts = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with zipfile.ZipFile(out / "formats.zip") as pack:
        texts.update({f"formats.zip:{n}": pack.read(n) for n in pack.namelist()})
        assert {n.split("/")[0] for n in pack.namelist()} == {"yolo", "voc", "cvat"}
    leaks = [name for name, data in texts.items() if b"X-Amz" in data or b"AKIA" in data]
    assert leaks == []
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert coco["images"][0]["url"] == "https://bucket.s3.amazonaws.com/scenes/a.jpg"
    assert pd.read_csv(out / "annotations.csv")["url"].iloc[0] == "https://bucket.s3.amazonaws.com/scenes/a.jpg"


def test_formats_param_chooses_and_removes_what_was_left_out(export):
    out = export()
    assert (out / "yolo").is_dir() and (out / "cvat" / "annotations.xml").is_file()
    export("--formats", "yolo")
    assert (out / "annotations.coco.json").is_file() and (out / "yolo" / "data.yaml").is_file()
    assert not (out / "detections.json").exists() and not (out / "voc").exists()
    assert not (out / "cvat" / "annotations.xml").exists()
    with zipfile.ZipFile(out / "formats.zip") as pack:
        assert {n.split("/")[0] for n in pack.namelist()} == {"yolo"}
    assert json.loads((out / "summary.json").read_text())["formats"] == {"coco": "annotations.coco.json",
                                                                        "yolo": "yolo"}
    export("--formats", "coco")
    assert not (out / "formats.zip").exists() and not (out / "yolo").exists()
    export("--formats", "all")
    assert (out / "voc" / "labelmap.txt").is_file() and (out / "detections.json").is_file()
    proc = export("--formats", "coco,shapefile", out="bad", expect=2)
    assert proc.stderr.strip().splitlines() == [
        "error: --formats 'coco,shapefile': use a comma list of coco, detections, yolo, voc, cvat, or all; "
        "opt-in: fiftyone"]


def test_two_images_that_would_share_a_label_file_fail_with_one_line(export, tmp_path):
    out = export()
    (tmp_path / "images.csv").write_text(IMAGES.replace("scenes/c.png", "scenes/a.png"))
    proc = export(expect=2)
    assert proc.stderr.strip().splitlines() == [
        "error: images.csv: 'scenes/a.jpg' and 'scenes/a.png' would share the label file scenes/a; "
        "give the images different names"]
    assert (out / "yolo" / "labels" / "scenes" / "c.txt").is_file()  # the earlier export is left whole


# datumaro (a dev dependency) finds images by name: the tests give it blank images of the right sizes.
def _images(folder: Path) -> None:
    from PIL import Image

    for image_id, file_name in FILES.items():
        path = folder / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", SIZES[image_id]).save(path)


def _datumaro_boxes(dm, dataset) -> list[tuple]:
    labels = dataset.categories()[dm.AnnotationType.label]
    return sorted((Path(item.id).name, labels[a.label].name, *a.get_bbox(), a.attributes.get("score"))
                  for item in dataset for a in item.annotations if a.type == dm.AnnotationType.bbox)


def _want(with_score: bool = True) -> list[tuple]:
    return sorted((i, label, x, y, w, h, *((s,) if with_score else ()))
                  for i, label, x, y, w, h, s in expected())


@pytest.mark.parametrize("fmt", ["coco_instances", "voc_detection", "cvat", "yolo"])
def test_datumaro_reads_every_format(fmt, export, tmp_path, caplog):
    dm = pytest.importorskip("datumaro")
    out = export()
    if fmt == "coco_instances":  # datumaro wants annotations/<task>_<subset>.json beside images/
        root = tmp_path / "dm_coco"
        (root / "annotations").mkdir(parents=True)
        shutil.copy(out / "annotations.coco.json", root / "annotations" / "instances_default.json")
        _images(root / "images")
    else:
        root = out / {"voc_detection": "voc", "cvat": "cvat", "yolo": "yolo"}[fmt]
        if fmt != "voc_detection":
            _images(root / "images")
    with caplog.at_level("WARNING"):
        dataset = dm.Dataset.import_from(str(root), fmt)
        got = _datumaro_boxes(dm, dataset)
    assert "segmentation" not in caplog.text and "undeclared" not in caplog.text
    if fmt == "yolo":  # datumaro's YOLO reader has no score; it reads labels/<subset>/ (here: scenes)
        got = [g[:-1] for g in got]
    want = _want(with_score=fmt != "yolo")  # item ids are the file stems, here equal to the image ids
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[:2] == w[:2]
        # datumaro keeps coordinates as float32, and its COCO reader rounds them to 2 decimals
        assert [float(v) for v in g[2:6]] == pytest.approx(list(w[2:6]), abs=1e-2)
        if fmt != "yolo":
            assert float(g[6]) == w[6]  # the score survives, at full precision
