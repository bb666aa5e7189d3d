"""Export's ``fiftyone`` format (crowdboxes.export.formats.write_fiftyone) read back by FiftyOne itself:
``fo.Dataset.from_dir(dataset_type=fo.types.FiftyOneImageDetectionDataset, ...)`` against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from crowdboxes.export import formats as fm

IMAGES = ("image_id,file_name,url,width,height,sha256\n"
          "a,scenes/a.jpg,https://bucket.s3.amazonaws.com/scenes/a.jpg,640,480,aaa\n"
          "b,other/a.jpg,http://s3/other/a.jpg,800,600,bbb\n"
          "c,scenes/c.png,http://s3/c.png,320,240,ccc\n")
# full-precision scores, fractional boxes, two boxes on one image, nothing on c; a and b share a base name
BOXES = ("image_id,label,x,y,w,h,score,support\n"
         "a,stop,10,20,30,40,0.912345678901234,3\n"
         "a,parking,100.5,50.25,20,21.125,0.2000000000000001,1\n"
         "b,speed_limit,0,0,80,60,0.75,2\n"
         "b,speed_limit,700,500,100,100,0.013,1\n")
SIZES = {"scenes/a.jpg": (640, 480), "other/a.jpg": (800, 600), "scenes/c.png": (320, 240)}


def _coco(tmp_path: Path, run_step_in_process) -> dict:
    """Export's COCO document of BOXES (min_score 0: every box) as a user's run writes it."""
    (tmp_path / "boxes.csv").write_text(BOXES)
    (tmp_path / "images.csv").write_text(IMAGES)
    proc = run_step_in_process("export.py", [
        "--boxes_csv", str(tmp_path / "boxes.csv"), "--images_csv", str(tmp_path / "images.csv"),
        "--wait_summary", "none", "--dataset", "none", "--min_score", "0", "--formats", "coco",
        "--output_dir", str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp_path / "out" / "annotations.coco.json").read_text())


def test_fiftyone_reads_the_export_back(tmp_path, run_step_in_process, fiftyone):
    fo = fiftyone
    coco = _coco(tmp_path, run_step_in_process)
    with fm.fresh_folder(tmp_path / "out" / "fiftyone") as staging:
        fm.write_fiftyone(coco, staging)
    labels_path = tmp_path / "out" / "fiftyone" / "labels.json"
    document = json.loads(labels_path.read_text())
    assert sorted(document["labels"]) == ["other/a", "scenes/a", "scenes/c"]  # relative, no extension
    images = tmp_path / "images"
    for name, size in SIZES.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(images / name)

    dataset = fo.Dataset.from_dir(dataset_type=fo.types.FiftyOneImageDetectionDataset, data_path=str(images),
                                  labels_path=str(labels_path), label_field="crowd", name="export-read-back")
    try:
        assert dataset.default_classes == [c["name"] for c in coco["categories"]]
        got = []
        for sample in dataset:
            name = Path(sample.filepath).relative_to(images).as_posix()
            width, height = SIZES[name]
            for d in sample.crowd.detections:
                x, y, w, h = d.bounding_box
                got.append((name, d.label, x * width, y * height, w * width, h * height, d.confidence))
        ids = {"a": "scenes/a.jpg", "b": "other/a.jpg"}
        want = [(ids[row.split(",")[0]], row.split(",")[1], *map(float, row.split(",")[2:7]))
                for row in BOXES.splitlines()[1:]]
        assert len(got) == len(want) == 4
        for g, w in zip(sorted(got), sorted(want)):
            assert g[:2] == w[:2]
            assert list(g[2:6]) == pytest.approx(list(w[2:6]), abs=1e-9)
            assert g[6] == w[6]  # the score survives at full precision
        empty = dataset.match(fo.ViewField("filepath").ends_with("c.png")).first()
        assert empty.crowd is None or empty.crowd.detections == []
    finally:
        dataset.delete()


def test_two_images_sharing_a_stem_are_refused(tmp_path, run_step_in_process):
    coco = _coco(tmp_path, run_step_in_process)
    coco["images"][2]["file_name"] = "scenes/a.png"
    with pytest.raises(fm.CrowdboxesError, match="would share the label file scenes/a"):
        fm.write_fiftyone(coco, tmp_path / "fo")


def test_formats_param_takes_fiftyone_only_when_named():
    assert "fiftyone" not in fm.parse_formats("all")
    assert fm.parse_formats("yolo,fiftyone") == ("coco", "yolo", "fiftyone")
    assert fm.parse_formats("all,fiftyone")[-1] == "fiftyone"


def test_export_step_writes_the_fiftyone_folder_when_named(tmp_path, run_step_in_process, fiftyone):
    """``--formats coco,fiftyone``: Export itself writes fiftyone/labels.json (also into formats.zip), and
    FiftyOne loads it; left out again, the folder goes."""
    import zipfile

    fo = fiftyone
    _coco(tmp_path, run_step_in_process)  # boxes.csv and images.csv in place
    args = ["--boxes_csv", str(tmp_path / "boxes.csv"), "--images_csv", str(tmp_path / "images.csv"),
            "--wait_summary", "none", "--dataset", "none", "--min_score", "0", "--output_dir", str(tmp_path / "out")]
    proc = run_step_in_process("export.py", [*args, "--formats", "coco,fiftyone"])
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert json.loads((out / "summary.json").read_text())["formats"]["fiftyone"] == "fiftyone"
    with zipfile.ZipFile(out / "formats.zip") as pack:
        assert pack.namelist() == ["fiftyone/labels.json"]
    images = tmp_path / "images"
    for name, size in SIZES.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(images / name)
    dataset = fo.Dataset.from_dir(dataset_type=fo.types.FiftyOneImageDetectionDataset, data_path=str(images),
                                  labels_path=str(out / "fiftyone" / "labels.json"), label_field="crowd")
    try:
        assert dataset.count("crowd.detections") == 4
        assert sorted(dataset.values("crowd.detections.confidence", unwind=True)) == sorted(
            float(row.split(",")[6]) for row in BOXES.splitlines()[1:])
    finally:
        dataset.delete()
    proc = run_step_in_process("export.py", [*args, "--formats", "coco"])
    assert proc.returncode == 0, proc.stderr
    assert not (out / "fiftyone").exists()
