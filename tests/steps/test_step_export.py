"""Export: COCO validity (pycocotools), flat CSV, summary numbers, dataset versions, one-line failures."""

from __future__ import annotations

import json
import os
import sys
import threading
import types
from pathlib import Path

import pandas as pd
import pytest
from pycocotools.coco import COCO

from crowdboxes.cnvrg import datasets
from crowdboxes.cnvrg.stepkit import StepError
from crowdboxes.steps.export import read_wait_summary

IMAGES = ("image_id,file_name,url,width,height,sha256\n"
          "a,scenes/a.jpg,http://s3/a.jpg,640,480,aaa\n"
          "b,scenes/b.jpg,http://s3/b.jpg,800,600,bbb\n"
          "c,scenes/c.jpg,http://s3/c.jpg,320,240,ccc\n")
BOXES = ("image_id,label,x,y,w,h,score,support\n"
         "a,stop,10,20,30,40,0.9,3\n"
         "a,parking,100.5,50,20,20,0.2,1\n"
         "b,speed_limit,0,0,80,60,0.75,2\n")
WAIT = {"spent_usd": 0.39, "counts": {"submitted": 9, "accepted": 8, "rejected": 1}, "images_answered": 4,
        "images_accepted": 3,
        "duration_seconds": 120.0, "first_started_at": "2026-11-23T09:00:00.000000Z"}


def clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNVRG_") and k != datasets.ROOT_ENV}
    env["HOME"] = str(tmp_path / "home")  # no ~/.cnvrg config: publish locally
    return env


def _args(tmp_path: Path, extra: tuple, boxes: str, images: str, wait: dict, out: str) -> list[str]:
    (tmp_path / "boxes.csv").write_text(boxes)
    (tmp_path / "images.csv").write_text(images)
    (tmp_path / "wait_summary.json").write_text(json.dumps(wait))
    args = {"--boxes_csv": tmp_path / "boxes.csv", "--images_csv": tmp_path / "images.csv",
            "--wait_summary": tmp_path / "wait_summary.json", "--dataset": "road_signs_annotations",
            "--dataset_root": tmp_path / "datasets", "--output_dir": tmp_path / out, "--min_score": "0"}
    for key, value in zip(extra[::2], extra[1::2]):
        args[key] = value
    return [str(x) for kv in args.items() for x in kv]


@pytest.fixture()
def run(tmp_path, run_step):
    """The step as cnvrg runs it (a subprocess, publishing locally); returns (process, output folder)."""
    def go(*extra, boxes=BOXES, images=IMAGES, wait=WAIT, out="out"):
        args = _args(tmp_path, extra, boxes, images, wait, out)
        return run_step("export.py", args, clean_env(tmp_path), timeout=60, cwd=tmp_path), tmp_path / out
    return go


@pytest.fixture()
def run_in_process(tmp_path, run_step_in_process):
    """The step's main in this process, for failures (nothing is published)."""
    def go(*extra, boxes=BOXES, images=IMAGES, wait=WAIT, out="out"):
        return run_step_in_process("export.py", _args(tmp_path, extra, boxes, images, wait, out)), tmp_path / out
    return go


def test_coco_loads_in_pycocotools_and_matches_boxes(tmp_path, run):
    proc, out = run()
    assert proc.returncode == 0, proc.stderr
    coco_path = out / "annotations.coco.json"
    gt = COCO(str(coco_path))  # as ground truth
    assert sorted(gt.getImgIds()) == [1, 2, 3]
    assert gt.imgs[1]["file_name"] == "scenes/a.jpg" and gt.imgs[2]["width"] == 800
    assert gt.imgs[3]["sha256"] == "ccc" and gt.imgs[1]["url"] == "http://s3/a.jpg"
    assert gt.imgs[1]["image_key"] == "a"
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())][:3] == ["stop", "yield", "speed_limit"]
    anns = gt.loadAnns(gt.getAnnIds())
    # image a: highest score first; category ids from classes.py (stop 1, parking 7, speed_limit 3)
    assert [(a["image_id"], a["category_id"], a["bbox"], a["area"], a["score"], a["support"]) for a in anns] == [
        (1, 1, [10, 20, 30, 40], 1200, 0.9, 3), (1, 7, [100.5, 50, 20, 20], 400, 0.2, 1),
        (2, 3, [0, 0, 80, 60], 4800, 0.75, 2)]
    results = gt.loadRes(json.loads(coco_path.read_text())["annotations"])  # as detection results
    assert len(results.getAnnIds()) == 3

    flat = pd.read_csv(out / "annotations.csv")
    assert flat[["image_id", "file_name", "label", "category_id", "w"]].values.tolist() == [
        ["a", "scenes/a.jpg", "stop", 1, 30.0], ["a", "scenes/a.jpg", "parking", 7, 20.0],
        ["b", "scenes/b.jpg", "speed_limit", 3, 80.0]]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3 and summary["images_with_boxes"] == 2 and summary["boxes"] == 3
    assert summary["boxes_per_class"] == {"parking": 1, "speed_limit": 1, "stop": 1}
    assert summary["cost_usd"] == 0.39 and summary["cost_per_accepted_image_usd"] == pytest.approx(0.13)
    assert summary["crowd_wait_seconds"] == 120.0 and summary["wall_time_seconds"] > 0
    assert summary["dataset"]["kind"] == "local" and summary["dataset"]["version"] == "1"
    assert "cnvrg_tag_boxes: 3" in proc.stdout and "cnvrg_tag_dataset_version: 1" in proc.stdout
    assert "cost: $0.3900, per accepted image: $0.1300" in proc.stdout


def test_min_score_filters_and_dataset_versions_increment(tmp_path, run):
    proc, _ = run()
    assert proc.returncode == 0, proc.stderr
    proc, out = run("--min_score", "0.5", out="out2")
    assert proc.returncode == 0, proc.stderr
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert [a["score"] for a in coco["annotations"]] == [0.9, 0.75]
    store = datasets.LocalDatasetStore(tmp_path / "datasets")
    assert store.versions("road_signs_annotations") == [1, 2]
    v2 = store.path("road_signs_annotations", 2)
    assert sorted(p.name for p in v2.iterdir()) == ["annotations.coco.json", "annotations.csv", "detections.json",
                                                   "formats.zip", "manifest.json", "report.html", "summary.json"]
    assert (v2 / "annotations.coco.json").read_bytes() == (out / "annotations.coco.json").read_bytes()
    manifest = store.manifest("road_signs_annotations", 2)
    assert manifest["version"] == 2 and [f["name"] for f in manifest["files"]][0] == "annotations.coco.json"
    assert json.loads((out / "summary.json").read_text())["dropped_low_score"] == 1


def test_dataset_none_does_not_publish(tmp_path, run):
    proc, out = run("--dataset", "none", "--wait_summary", "none")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "datasets").exists()
    assert json.loads((out / "summary.json").read_text())["cost_usd"] is None


@pytest.mark.parametrize("change, message", [
    ({"boxes": BOXES.replace("score,", "")}, "boxes.csv: missing column(s) score"),
    ({"images": IMAGES.replace(",sha256", "")}, "images.csv: missing column(s) sha256"),
    ({"boxes": BOXES + "zz,stop,1,1,2,2,0.5,1\n"}, "boxes.csv: row 5, field 'image_id': 'zz' is not in"),
    ({"boxes": BOXES.replace("0.75", "high")}, "row 4, field 'score': 'high' is not a number"),
    # JSON has no Infinity: an infinite coordinate fails in one line instead of an invalid COCO file
    ({"boxes": BOXES.replace("100.5", "inf")}, "boxes.csv: row 3, field 'x': inf is not a finite number"),
    ({"boxes": BOXES.replace("30,40", "30,-Infinity")}, "boxes.csv: row 2, field 'h': -inf is not a finite number"),
    ({"boxes": BOXES.replace("0,0,80", "nan,0,80")}, "boxes.csv: row 4, field 'x': "),
    ({"images": IMAGES.replace("800,600", "0,600")}, "images.csv: row 3, field 'width': 0 is not a positive number"),
    ({"images": IMAGES.replace("320,240", "320,inf")},
     "images.csv: row 4, field 'height': inf is not a positive number"),
    ({"wait": {**WAIT, "spent_usd": float("nan")}}, "field 'spent_usd': nan is not a number"),
])
def test_bad_inputs_fail_with_one_line(change, message, run_in_process):
    proc, out = run_in_process(**change)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (out / "annotations.coco.json").exists()


def test_missing_input_file_is_named(tmp_path, run_in_process):
    proc, _ = run_in_process("--wait_summary", tmp_path / "nowhere.json")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: input file {tmp_path / 'nowhere.json'} does not exist"]


def test_unknown_class_is_skipped_with_a_warning(tmp_path, run):
    proc, out = run(boxes=BOXES + "b,unicorn,1,1,5,5,0.8,2\n")
    assert proc.returncode == 0, proc.stderr
    assert "boxes.csv line 5: unknown class 'unicorn'" in proc.stderr
    assert json.loads((out / "summary.json").read_text())["boxes"] == 3


def test_local_store_skips_unchanged_and_numbers_concurrent_writers(tmp_path):
    store = datasets.LocalDatasetStore(tmp_path / "ds")
    f = tmp_path / "a.json"
    f.write_text("1")
    assert store.latest("x") is None
    assert store.put_files("x", [f]) == 1
    assert store.put_files("x", [f]) == 1  # identical content: no new version
    results = []

    def writer(n):
        g = tmp_path / f"w{n}" / "a.json"
        g.parent.mkdir()
        g.write_text(f"writer {n}")
        results.append(datasets.LocalDatasetStore(tmp_path / "ds").put_files("x", [g]))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [2, 3, 4, 5, 6, 7] and store.latest("x") == 7
    assert not [p for p in (tmp_path / "ds" / "x").iterdir() if p.name.startswith(".")]
    with pytest.raises(StepError, match="dataset name '../up'"):
        store.put_files("../up", [f])


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.ROOT_ENV, str(tmp_path / "envroot"))
    assert datasets.LocalDatasetStore().root == tmp_path / "envroot"
    monkeypatch.delenv(datasets.ROOT_ENV)
    assert datasets.LocalDatasetStore().root == Path("datasets")


def test_on_cnvrg_publishes_through_the_sdk(tmp_path, monkeypatch):
    """With cnvrg's job variables set, publish() calls cnvrgv2 the documented way (stub SDK: no server)."""
    calls = []

    class Dataset:
        def __init__(self, slug, exists):
            self.slug, self.exists = slug, exists

        def reload(self):
            if not self.exists:
                raise RuntimeError("not found")

        def put_files(self, paths, message=""):
            calls.append(("put_files", self.slug, paths, message, os.getcwd()))
            return "sha1abc"

    class Datasets:
        def get(self, slug):
            return Dataset(slug, exists=False)

        def create(self, name):
            calls.append(("create", name))
            return Dataset(name, exists=True)

    fake = types.ModuleType("cnvrgv2")
    fake.Cnvrg = lambda: types.SimpleNamespace(datasets=Datasets())
    monkeypatch.setitem(sys.modules, "cnvrgv2", fake)
    monkeypatch.setenv("CNVRG_URL", "https://app.cnvrg.io")
    monkeypatch.setenv("CNVRG_TOKEN", "tok")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("annotations.coco.json", "summary.json"):
        (out / name).write_text("{}")
    cwd = os.getcwd()
    published = datasets.publish("road_signs_annotations", [out / "annotations.coco.json", out / "summary.json"],
                                 root=tmp_path / "ds", message="m")
    assert os.getcwd() == cwd
    assert calls == [("create", "road_signs_annotations"),
                     ("put_files", "road_signs_annotations", ["annotations.coco.json", "summary.json"], "m",
                      str(out.resolve()))]
    assert published.kind == "cnvrg" and published.version == "sha1abc"
    assert not (tmp_path / "ds").exists()


def test_on_cnvrg_detection(tmp_path):
    assert datasets.on_cnvrg({"CNVRG_URL": "u", "CNVRG_JWT_TOKEN": "t"}, home=tmp_path)
    assert not datasets.on_cnvrg({"CNVRG_URL": "u"}, home=tmp_path)
    (tmp_path / ".cnvrg").mkdir()
    (tmp_path / ".cnvrg" / "cnvrg.config").write_text("token: x")
    assert datasets.on_cnvrg({}, home=tmp_path)


def test_wait_summary_must_be_an_object_with_a_numeric_cost(tmp_path):
    assert read_wait_summary(None) is None
    path = tmp_path / "wait_summary.json"
    path.write_text("[1]")
    with pytest.raises(StepError, match="expected a JSON object"):
        read_wait_summary(path)
    path.write_text(json.dumps({"spent_usd": "lots"}))
    with pytest.raises(StepError, match="field 'spent_usd': 'lots' is not a number"):
        read_wait_summary(path)
    path.write_text(json.dumps(WAIT))
    assert read_wait_summary(str(path)) == WAIT


def test_export_writes_and_publishes_a_self_contained_report_and_names_it(tmp_path, run):
    proc, out = run("--min_score", "0.5", out="out_report")
    assert proc.returncode == 0, proc.stderr
    page = (out / "report.html").read_text()
    assert f"report: {out / 'report.html'}" in proc.stdout
    assert "<section" in page and "http://" not in page and "https://" not in page  # no network: URLs never appear


def test_a_truth_puts_quality_into_the_report_and_a_bad_one_fails_before_anything_is_written(tmp_path, run):
    truth = {"images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 100}],
             "categories": [{"id": 1, "name": "stop"}],
             "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 20, 20]}]}
    (tmp_path / "truth.coco.json").write_text(json.dumps(truth))
    proc, out = run("--truth", str(tmp_path / "truth.coco.json"), out="out_truth")
    assert proc.returncode == 0, proc.stderr
    page = (out / "report.html").read_text()
    assert "Quality against truth" in page and "<th>AP50</th>" in page
    (tmp_path / "bad.json").write_text("[1, 2]")
    proc, out = run("--truth", str(tmp_path / "bad.json"), out="out_bad")
    assert proc.returncode == 2 and not (out / "annotations.coco.json").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.json" in lines[0], lines


def test_a_rerun_with_identical_inputs_publishes_no_new_version(tmp_path, run):
    """COCO's date_created and summary.json's wall time come from the inputs (Wait Pool's finished_at), the
    content digest leaves out the dataset record, so only a change of content makes a version."""
    wait = {**WAIT, "finished_at": "2026-11-23T09:02:00Z"}
    first, out = run(wait=wait)
    assert first.returncode == 0, first.stderr
    again, out2 = run(wait=wait, out="out_again")
    assert again.returncode == 0, again.stderr
    store = datasets.LocalDatasetStore(tmp_path / "datasets")
    assert store.versions("road_signs_annotations") == [1]
    assert "dataset road_signs_annotations version 1" in again.stdout and ", unchanged" in again.stdout
    assert json.loads((out2 / "summary.json").read_text())["dataset"]["new_version"] is False
    coco = json.loads((out2 / "annotations.coco.json").read_text())
    assert coco["info"]["date_created"] == "2026-11-23T09:02:00Z"
    assert (out / "annotations.coco.json").read_bytes() == (out2 / "annotations.coco.json").read_bytes()
    summaries = [json.loads((o / "summary.json").read_text()) for o in (out, out2)]
    assert [s["wall_time_seconds"] for s in summaries] == [120.0, 120.0]  # 09:00 to 09:02
    changed, _ = run("--min_score", "0.5", wait=wait, out="out_changed")
    assert changed.returncode == 0, changed.stderr
    assert store.versions("road_signs_annotations") == [1, 2]
    assert store.manifest("road_signs_annotations", 2)["content_digest"] != \
        store.manifest("road_signs_annotations", 1)["content_digest"]


# ------------------------------------------------------------------ --archive (issue 15: archive when done)

ARCHIVE_TOKEN_ENV = "EXPORT_ARCHIVE_TEST_TOKEN"


def test_a_bad_archive_param_fails_before_anything_is_written(tmp_path, run_in_process):
    proc, out = run_in_process("--archive", "all")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --archive 'all': use one of none, pools, pools,projects"]
    proc, out = run_in_process("--archive", "pools")  # WAIT names no pools
    assert proc.returncode == 2 and not (out / "annotations.coco.json").exists()
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'wait_summary.json'}: field 'pool_ids' is "
                                                "missing or empty (needed by --archive)"]


def test_export_archives_the_finished_pools_and_projects_and_says_what_blocks(tmp_path, run_step_in_process):
    from toloka.client import Task

    from helpers_rounds import TOKEN, pool_from_config, project_from_config, start_local

    with start_local(tmp_path / "toloka") as local:
        client = local.client
        project_id = project_from_config(client, "detection_project.json")
        pools = [pool_from_config(client, project_id, None) for _ in range(2)]
        for pool_id in pools:
            client.create_tasks([Task(pool_id=pool_id, input_values={"image": "http://127.0.0.1:9/x/im0.jpg"})],
                                allow_defaults=True, open_pool=pool_id == pools[0])
        for _ in range(200):  # the first pool's work is done (auto-accepted)
            local.step(1)
            if client.get_pool(pools[0]).status.value == "CLOSED":
                break
        client.open_pool(pools[1])  # the second is open (the crowd does not move again)

        def export(pool_ids: dict, out: str):
            args = _args(tmp_path, ("--archive", "pools,projects", "--toloka_env", local.backend.base_url,
                                    "--token_env", ARCHIVE_TOKEN_ENV), BOXES, IMAGES, {**WAIT, "pool_ids": pool_ids},
                         out)
            return run_step_in_process("export.py", args, {ARCHIVE_TOKEN_ENV: TOKEN}), tmp_path / out

        proc, out = export({"detection": pools[0], "verification": pools[1]}, "blocked")
        assert proc.returncode == 0, proc.stderr  # the export stands; what blocks is a warning each
        assert (out / "annotations.coco.json").is_file()
        assert [line for line in proc.stderr.splitlines() if line.startswith("blocked:")] == [
            f"blocked: pool {pools[1]}: OPEN: close it (or let it complete) first",
            f"blocked: project {project_id}: 1 pool not archived: {pools[1]} (OPEN)"]
        assert client.get_pool(pools[0]).status.value == "ARCHIVED"
        summary = json.loads((out / "archive_summary.json").read_text())
        assert summary["archived"] == [f"pool {pools[0]}"] and len(summary["blocked"]) == 2

        client.close_pool(pools[1])
        proc, out = export({"detection": pools[0], "verification": pools[1]}, "done")
        assert proc.returncode == 0, proc.stderr
        assert "archive: 2 archived now" in proc.stdout and TOKEN not in proc.stdout + proc.stderr
        assert client.get_project(project_id).status.value == "ARCHIVED"
        assert json.loads((out / "archive_summary.json").read_text())["already_archived"] == [f"pool {pools[0]}"]
