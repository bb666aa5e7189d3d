"""The CVAT round trip as a user meets it: ``python -m crowdboxes review`` packs the riskiest images, an
independent reader (datumaro) reads the task, a reviewer's edits are made in the XML, and
``python -m crowdboxes import-corrections`` merges them back; the re-exported COCO is read with pycocotools.

The aggregate output is hand-written (boxes.csv, images.csv, images_review.csv) so every expected box is
known; one packed image is only reachable by its URL, served on loopback by a thread of this test.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from crowdboxes.cli import main as cli_main

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZES = {"a": (100, 80), "b": (120, 90), "c": (90, 60), "d": (80, 80), "e": (110, 70)}
COLOURS = {"a": "red", "b": "green", "c": "blue", "d": "white", "e": "yellow"}
# image_id, label, x, y, w, h, score, support
BOXES = [
    ("a", "stop", 10, 10, 20, 20, 0.9, 3), ("a", "yield", 50, 40, 15, 15, 0.6, 2),
    ("a", "parking", 5, 50, 10, 10, 0.2, 1),  # a low-score candidate: not packed
    ("b", "stop", 1, 1, 10, 10, 0.95, 3), ("b", "yield", 30, 30, 10, 10, 0.3, 1),
    ("c", "stop", 20, 20, 10, 10, 0.4, 1),  # c has no kept box: the crowd may have missed its sign
    ("d", "parking", 3, 4, 20, 20, 0.8, 3),
    ("e", "yield", 10, 5, 30, 30, 0.7, 2), ("e", "stop", 40, 40, 20, 20, 0.55, 2),
]
# riskiest first, as Aggregate Boxes writes it; review --top 3 packs c, a, e
RISK = {"c": 1.4, "a": 0.7, "e": 0.5, "b": 0.2, "d": 0.1}


def _name(image_id: str) -> str:
    return f"scenes/{image_id}.png"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """No access log on the test's stderr (the refusals check it holds one line)."""


@pytest.fixture()
def remote(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A loopback HTTP server of a folder (where images.csv's URLs point): (folder, base URL)."""
    folder = tmp_path / "remote"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def run_dir(tmp_path: Path, remote: tuple[Path, str]) -> Path:
    """The aggregate output and the images: every image in images/ except e, which only its URL serves."""
    from PIL import Image

    folder, base = remote
    rows = []
    for image_id, size in SIZES.items():
        target = (folder if image_id == "e" else tmp_path / "images") / _name(image_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, COLOURS[image_id]).save(target)
        rows.append((image_id, _name(image_id), f"{base}/{_name(image_id)}", *size,
                     hashlib.sha256(target.read_bytes()).hexdigest()))
    agg = tmp_path / "aggregate"
    agg.mkdir()
    pd.DataFrame(rows, columns=["image_id", "file_name", "url", "width", "height", "sha256"]).to_csv(
        tmp_path / "images.csv", index=False)
    pd.DataFrame(BOXES, columns=["image_id", "label", "x", "y", "w", "h", "score", "support"]).to_csv(
        agg / "boxes.csv", index=False)
    pd.DataFrame([(i, _name(i), r, 0.0, 0.0, 0, None) for i, r in RISK.items()],
                 columns=["image_id", "file_name", "risk", "expected_missed", "expected_spurious", "n_boxes",
                          "min_score"]).to_csv(agg / "images_review.csv", index=False)
    return tmp_path


def _review_args(run_dir: Path, top: int = 3) -> list[str]:
    return ["review", "--top", str(top), "--boxes_csv", str(run_dir / "aggregate" / "boxes.csv"),
            "--images_csv", str(run_dir / "images.csv"), "--images_dir", str(run_dir / "images"),
            "--output_dir", str(run_dir / "packed")]


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    """``python -m crowdboxes <args>`` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "crowdboxes", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)


def _in_process(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """The same command in this process (the refusals): exit code and stderr."""
    code = cli_main(args)
    return code, capsys.readouterr().err


def _edit(xml: Path, target: Path) -> None:
    """A reviewer's session in CVAT, then its 'CVAT for images 1.1' export: on a, the yield box deleted and
    the stop box relabelled no_entry; on c, a stop box drawn (no score attribute, source manual); on e, the
    yield box moved by (+2, +1)."""
    root = ET.parse(xml).getroot()
    images = {image.get("name"): image for image in root.iter("image")}
    a = images[_name("a")]
    for box in list(a.iter("box")):
        if box.get("label") == "yield":
            a.remove(box)
        else:
            box.set("label", "no_entry")
    ET.SubElement(images[_name("c")], "box", label="stop", source="manual", occluded="0", xtl="21", ytl="19",
                  xbr="32", ybr="31", z_order="0")
    for box in images[_name("e")].iter("box"):
        if box.get("label") == "yield":
            box.attrib.update(xtl="12", ytl="6", xbr="42", ybr="36")
    target.write_text(ET.tostring(root, encoding="unicode"), encoding="utf-8")


def _import_args(run_dir: Path, xml: Path, out: str = "corrected") -> list[str]:
    return ["import-corrections", str(xml), "--review_dir", str(run_dir / "packed" / "review"),
            "--output_dir", str(run_dir / out)]


def test_review_packs_the_riskiest_images_with_their_kept_boxes(run_dir: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    proc = _cli(_review_args(run_dir))
    assert proc.returncode == 0, proc.stderr
    task = run_dir / "packed" / "review"
    record = json.loads((task / "review.json").read_text())
    assert [i["image_id"] for i in record["images"]] == ["c", "a", "e"]
    assert [i["boxes"] for i in record["images"]] == [0, 2, 2] and record["min_score"] == 0.5
    assert record["boxes_sha256"] == hashlib.sha256((run_dir / "aggregate" / "boxes.csv").read_bytes()).hexdigest()
    # e came from its URL, the others from --images_dir: the same bytes either way
    assert (task / "images" / _name("e")).read_bytes() == (run_dir / "remote" / _name("e")).read_bytes()
    with zipfile.ZipFile(task / "images.zip") as pack:
        assert sorted(pack.namelist()) == [_name("a"), _name("c"), _name("e")]
    labels = json.loads((task / "labels.json").read_text())
    assert labels[0]["name"] == "stop" and labels[0]["attributes"][0]["name"] == "score"
    dm = pytest.importorskip("datumaro")
    with caplog.at_level("WARNING"):
        dataset = dm.Dataset.import_from(str(task), "cvat")
        names = dataset.categories()[dm.AnnotationType.label]
        got = sorted((item.id, names[b.label].name, *map(float, b.get_bbox()), float(b.attributes["score"]))
                     for item in dataset for b in item.annotations if b.type == dm.AnnotationType.bbox)
    assert "undeclared" not in caplog.text  # score is a declared attribute: datumaro keeps it
    assert got == [("scenes/a", "stop", 10.0, 10.0, 20.0, 20.0, 0.9), ("scenes/a", "yield", 50.0, 40.0, 15.0, 15.0, 0.6),
                   ("scenes/e", "stop", 40.0, 40.0, 20.0, 20.0, 0.55), ("scenes/e", "yield", 10.0, 5.0, 30.0, 30.0, 0.7)]
    assert sorted(item.id for item in dataset) == ["scenes/a", "scenes/c", "scenes/e"]
    assert all(item.media.has_data for item in dataset)  # datumaro finds every image in images/
    # a re-run packs the same bytes
    before = {p.relative_to(task): p.read_bytes() for p in task.rglob("*") if p.is_file()}
    assert _cli(_review_args(run_dir)).returncode == 0
    assert {p.relative_to(task): p.read_bytes() for p in task.rglob("*") if p.is_file()} == before


def test_import_corrections_merges_the_review_and_exports_again(run_dir: Path) -> None:
    from pycocotools.coco import COCO

    assert _cli(_review_args(run_dir)).returncode == 0
    edited = run_dir / "cvat_export.xml"
    _edit(run_dir / "packed" / "review" / "annotations.xml", edited)
    # what CVAT downloads: a zip of annotations.xml and images/
    download = run_dir / "task_export.zip"
    with zipfile.ZipFile(download, "w") as pack:
        pack.write(edited, "annotations.xml")
        for image in sorted((run_dir / "packed" / "review" / "images").rglob("*.png")):
            pack.write(image, f"images/{image.relative_to(run_dir / 'packed' / 'review' / 'images')}")
    # the crowd's files moved since packing (packed on cnvrg, merged elsewhere): --boxes_csv says where
    (run_dir / "aggregate").rename(run_dir / "moved")
    proc = _cli([*_import_args(run_dir, download), "--boxes_csv", str(run_dir / "moved" / "boxes.csv")])
    assert proc.returncode == 0, proc.stderr
    out = run_dir / "corrected"
    boxes = pd.read_csv(out / "boxes.csv", dtype={"image_id": str})
    assert list(boxes.columns) == ["image_id", "label", "x", "y", "w", "h", "score", "support", "source"]
    rows = [tuple(r) for r in boxes.itertuples(index=False)]
    assert rows == [  # the crowd's rows of b and d as they were, then c, a, e in review order
        ("b", "stop", 1, 1, 10, 10, 0.95, 3, "crowd"), ("b", "yield", 30, 30, 10, 10, 0.3, 1, "crowd"),
        ("d", "parking", 3, 4, 20, 20, 0.8, 3, "crowd"),
        ("c", "stop", 21, 19, 11, 12, 1.0, 1, "review"), ("a", "no_entry", 10, 10, 20, 20, 1.0, 1, "review"),
        ("e", "yield", 12, 6, 30, 30, 1.0, 1, "review"), ("e", "stop", 40, 40, 20, 20, 1.0, 1, "review")]
    coco = COCO(str(out / "annotations.coco.json"))
    got = sorted((coco.imgs[a["image_id"]]["file_name"], coco.cats[a["category_id"]]["name"], *a["bbox"], a["score"])
                 for a in coco.dataset["annotations"])
    assert got == sorted([  # Export at 0.5: b's yield (0.3) stays out; a's parking candidate is gone
        (_name("a"), "no_entry", 10, 10, 20, 20, 1.0), (_name("b"), "stop", 1, 1, 10, 10, 0.95),
        (_name("c"), "stop", 21, 19, 11, 12, 1.0), (_name("d"), "parking", 3, 4, 20, 20, 0.8),
        (_name("e"), "stop", 40, 40, 20, 20, 1.0), (_name("e"), "yield", 12, 6, 30, 30, 1.0)])
    assert (out / "cvat" / "annotations.xml").is_file() and (out / "summary.json").is_file()


def test_import_corrections_is_idempotent(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert _cli(_review_args(run_dir)).returncode == 0
    edited = run_dir / "cvat_export.xml"
    _edit(run_dir / "packed" / "review" / "annotations.xml", edited)
    out = run_dir / "corrected"

    def files() -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    assert _in_process(_import_args(run_dir, edited), capsys)[0] == 0
    first = files()
    assert _in_process(_import_args(run_dir, edited), capsys)[0] == 0
    second = files()
    assert sorted(first) == sorted(second)
    # every file the same bytes, COCO's info.date_created (the corrected file's time) included
    assert first == second  # boxes.csv, COCO, detections.json, yolo/, voc/, cvat/, formats.zip, report.html, ...
    assert {"boxes.csv", "detections.json", "report.html", "summary.json", "cvat/annotations.xml"} <= set(first)


def _refused(args: list[str], capsys: pytest.CaptureFixture) -> str:
    code, err = _in_process(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_import_corrections_refuses_in_one_line(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert _in_process(_review_args(run_dir), capsys)[0] == 0
    packed = run_dir / "packed" / "review" / "annotations.xml"
    text = packed.read_text()
    bad = run_dir / "bad.xml"

    # an image that was not packed: b is not among the riskiest three
    bad.write_text(text.replace(f'name="{_name("e")}"', f'name="{_name("b")}"'))
    line = next(n for n, t in enumerate(text.splitlines(), 1) if f'name="{_name("e")}"' in t)
    assert _refused(_import_args(run_dir, bad), capsys) == (
        f"error: {bad}: line {line}: image '{_name('b')}' was not packed for this review (not in its review.json)")

    # a label that is not a class
    bad.write_text(text.replace('label="yield"', 'label="unicorn"', 1))
    line = next(n for n, t in enumerate(text.splitlines(), 1) if 'label="yield"' in t)
    assert _refused(_import_args(run_dir, bad), capsys).startswith(
        f"error: {bad}: line {line}, image '{_name('a')}': label 'unicorn' is not a class (classes: stop, yield, ")

    # malformed XML: a <box> left open on line 6; expat stops at the '<' that starts line 7
    lines = text.splitlines()
    lines.insert(5, "<box label='stop' xtl='1'")
    bad.write_text("\n".join(lines))
    assert _refused(_import_args(run_dir, bad), capsys).startswith(f"error: {bad}: line 7: malformed XML (")

    # boxes.csv changed after packing
    crowd = run_dir / "aggregate" / "boxes.csv"
    crowd.write_text(crowd.read_text() + "d,stop,1,1,5,5,0.9,2\n")
    message = _refused(_import_args(run_dir, packed), capsys)
    assert message == (f"error: boxes.csv {crowd.resolve()} changed since it was packed for review (sha256 differs "
                       f"from {run_dir / 'packed' / 'review' / 'review.json'}); pack the review again from the new file")
    assert not (run_dir / "corrected").exists()  # nothing was written by any refusal


def test_review_names_an_image_it_cannot_get(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    (run_dir / "remote" / _name("e")).unlink()
    message = _refused(_review_args(run_dir), capsys)
    assert message == (f"error: image e ({_name('e')}): not in {run_dir / 'images'} and its images.csv url failed "
                       "(HTTP 404; an expired presigned URL? pass --images_dir)")
    assert not (run_dir / "packed" / "review").exists()


ANSWERS = "assignment_id,task_id,image_id,worker_id,status,submitted_at,label,x,y,w,h\n" + "".join([
    # image a: three workers agree on a stop sign; image b: one worker of three drew a yield sign
    "as1,t1,a,w1,ACCEPTED,2026-11-23T09:00:00Z,stop,10,10,20,20\n",
    "as2,t1,a,w2,ACCEPTED,2026-11-23T09:00:01Z,stop,12,10,20,20\n",
    "as3,t1,a,w3,ACCEPTED,2026-11-23T09:00:02Z,stop,11,10,20,20\n",
    "as4,t2,b,w1,ACCEPTED,2026-11-23T09:00:03Z,yield,30,20,16,16\n",
    "as5,t2,b,w2,ACCEPTED,2026-11-23T09:00:04Z,,,,,\n",
    "as6,t2,b,w3,ACCEPTED,2026-11-23T09:00:05Z,,,,,\n",
])


def test_round_trip_from_the_real_aggregate_boxes_step(run_dir: Path, run_step, tmp_path: Path) -> None:
    """Aggregate Boxes' own boxes.csv and images_review.csv (its default method, which ranks images by risk),
    packed at --min_score 0 (every candidate) and sent back unedited: the reviewed image's box becomes a score
    1.0 box at the same place, the other image keeps its crowd row."""
    images = pd.read_csv(run_dir / "images.csv").head(2)  # a and b, both in images/
    images.to_csv(tmp_path / "two_images.csv", index=False)
    (tmp_path / "answers.csv").write_text(ANSWERS)
    agg = tmp_path / "real_aggregate"
    proc = run_step("aggregate_boxes.py", ["--answers_csv", str(tmp_path / "answers.csv"), "--images_csv",
                                           str(tmp_path / "two_images.csv"),
                                           "--output_dir", str(agg)], {"PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    crowd = pd.read_csv(agg / "boxes.csv", dtype={"image_id": str})
    riskiest = pd.read_csv(agg / "images_review.csv", dtype={"image_id": str})["image_id"].iloc[0]
    assert riskiest == "b"  # one worker of three drew its only box; a's stop sign has three drawings
    assert crowd.set_index("image_id").loc["b", "score"] < 0.5  # a low-score candidate: --min_score 0 packs it
    proc = _cli(["review", "--top", "1", "--min_score", "0", "--boxes_csv", str(agg / "boxes.csv"), "--images_csv",
                 str(tmp_path / "two_images.csv"), "--images_dir", str(run_dir / "images"), "--output_dir",
                 str(tmp_path / "packed")])
    assert proc.returncode == 0, proc.stderr
    task = tmp_path / "packed" / "review"
    assert [i["image_id"] for i in json.loads((task / "review.json").read_text())["images"]] == [riskiest]
    proc = _cli(["import-corrections", str(task / "annotations.xml"), "--review_dir", str(task), "--output_dir",
                 str(tmp_path / "corrected"), "--min_score", "0"])
    assert proc.returncode == 0, proc.stderr
    merged = pd.read_csv(tmp_path / "corrected" / "boxes.csv", dtype={"image_id": str})
    mine, others = merged[merged["image_id"] == riskiest], merged[merged["image_id"] != riskiest]
    assert set(mine["source"]) == {"review"} and set(mine["score"]) == {1.0}
    assert sorted(map(tuple, mine[["label", "x", "y", "w", "h"]].to_numpy().tolist())) == sorted(
        map(tuple, crowd.loc[crowd["image_id"] == riskiest, ["label", "x", "y", "w", "h"]].to_numpy().tolist()))
    assert others.drop(columns="source").reset_index(drop=True).equals(
        crowd[crowd["image_id"] != riskiest].reset_index(drop=True))


# What CVAT 2.x writes on "Export task dataset -> CVAT for images 1.1" (abridged from its XML format docs):
# meta with ids, dates, segments and owner; boxes with rotation and attributes, or with none at all.
CVAT_EXPORT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>42</id><name>crowdboxes review</name><size>2</size><mode>annotation</mode><overlap>0</overlap>
      <created>2026-11-26 10:00:00.000000+00:00</created>
      <labels><label><name>stop</name><color>#fa3253</color><type>rectangle</type><attributes>
        <attribute><name>score</name><mutable>False</mutable><input_type>text</input_type>
          <default_value></default_value><values></values></attribute></attributes></label></labels>
      <segments><segment><id>7</id><start>0</start><stop>1</stop><url>https://cvat/?id=7</url></segment></segments>
      <owner><username>me</username><email>me@example.com</email></owner>
    </task>
    <dumped>2026-11-26 11:00:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="scenes/a.png" width="100" height="80">
    <box label="stop" source="manual" occluded="0" xtl="10.50" ytl="10.00" xbr="30.25" ybr="30.00" z_order="0"
         rotation="0.0">
      <attribute name="score">0.9</attribute>
    </box>
    <box label="stop" source="manual" occluded="1" xtl="1" ytl="2" xbr="5" ybr="9" z_order="0">
    </box>
  </image>
  <image id="1" name="scenes/c.png" width="90" height="60">
  </image>
</annotations>
"""


def test_the_reader_takes_cvat_s_own_export_and_refuses_what_it_cannot_merge(tmp_path: Path) -> None:
    from crowdboxes.errors import CrowdboxesError
    from crowdboxes.review.cvat_xml import CvatBox, read_cvat_images

    def line(needle: str) -> int:
        """The 1-based line of CVAT_EXPORT where ``needle`` is (where the element's start tag begins)."""
        return next(n for n, text in enumerate(CVAT_EXPORT.splitlines(), 1) if needle in text)

    a, c, first, second = (line('name="scenes/a.png"'), line('name="scenes/c.png"'), line('occluded="0"'),
                           line('occluded="1"'))
    path = tmp_path / "annotations.xml"
    path.write_text(CVAT_EXPORT)
    name, images = read_cvat_images(path)
    assert name == str(path)
    assert [(i.name, i.line) for i in images] == [("scenes/a.png", a), ("scenes/c.png", c)]
    # x = xtl, y = ytl, w = xbr - xtl, h = ybr - ytl; the second box has no score attribute at all
    assert images[0].boxes == [CvatBox("stop", 10.5, 10.0, 19.75, 20.0, first), CvatBox("stop", 1, 2, 4, 7, second)]
    assert images[1].boxes == []
    refusals = {
        'rotation="0.0"': ('rotation="30"', f"line {first}, image 'scenes/a.png': <box> is rotated by 30 degrees"),
        '<image id="1" name="scenes/c.png" width="90" height="60">': (
            '<image id="1" name="scenes/c.png" width="90" height="60"><polygon label="stop" points="1,1;5,5;1,5"/>',
            f"line {c}, image 'scenes/c.png': <polygon> is not a box"),
        'xbr="5"': ('xbr="1"', f"line {second}, image 'scenes/a.png': <box> has no area"),
        '<version>1.1</version>': ('<track id="0" label="stop"></track>', "line 3: <track> is the 'CVAT for video'"),
    }
    for old, (new, message) in refusals.items():
        path.write_text(CVAT_EXPORT.replace(old, new))
        with pytest.raises(CrowdboxesError) as caught:
            read_cvat_images(path)
        assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)


@pytest.mark.parametrize("command", ["review", "import-corrections"])
def test_help_shows_every_default(command: str, capsys: pytest.CaptureFixture) -> None:
    import importlib

    from crowdboxes.cli import COMMANDS

    assert cli_main(["--help"]) == 0
    assert COMMANDS[command][1] in capsys.readouterr().out  # listed with its one-line help
    with pytest.raises(SystemExit) as done:
        cli_main([command, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    parser = importlib.import_module(COMMANDS[command][0]).build_parser()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 7 and text.count("(default: ") == len(options)
    for default in (["--top TOP how many of the riskiest images to pack (default: 50)", "(default: 0.5)"]
                    if command == "review" else ["(default: output/review)", "(default: 0.5)"]):
        assert default in text
