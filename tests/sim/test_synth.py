"""Synthetic scenes: boxes sit on the signs' pixels, the class mix is followed, output is
deterministic per seed, empty scenes exist, and bad input fails with one line and exit code 2."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import chi2

from helpers_paths import REPO_ROOT
from crowdboxes import cli
from crowdboxes.classes import CLASS_NAMES, class_by_name
from crowdboxes.sim.generate import SynthOptions, generate, parse_class_weights, scene_spec
from crowdboxes.sim.scene import render_scene
from crowdboxes.sim.signs import render_sign
from crowdboxes.evaluation.truth import images_frame, load_coco, truth_boxes

SMALL = dict(width=320, height=240)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    options = SynthOptions(count=30, seed=11, empty_share=0.1, **SMALL)
    generate(out, options, jobs=2)
    return out, options


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_output_files_and_truth_agree(small_set):
    out, options = small_set
    coco = load_coco(out / "truth.coco.json")
    images = images_frame(coco)
    assert len(images) == 30
    assert sorted(p.name for p in out.glob("*.jpg")) == sorted(images.file_name)
    for row in images.itertuples():
        data = (out / row.file_name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.size == (row.width, row.height) == (320, 240)
    csv = pd.read_csv(out / "truth.csv")
    assert list(csv.columns) == ["file_name", "label", "x", "y", "w", "h"]
    boxes = truth_boxes(coco)
    assert csv.values.tolist() == boxes[["file_name", "label", "x", "y", "w", "h"]].astype(
        {c: int for c in "xywh"}).values.tolist()
    assert {c["name"] for c in coco["categories"]} == set(CLASS_NAMES)
    for ann in coco["annotations"]:
        assert ann["iscrowd"] == 0 and ann["area"] == ann["bbox"][2] * ann["bbox"][3]
        assert 0 <= ann["visible"] <= 1 and ann["occluded"] == (ann["visible"] < 0.98)


def test_every_box_lies_inside_its_image_and_sizes_span_the_range(small_set):
    out, _ = small_set
    big = SynthOptions(count=40, seed=3, empty_share=0.0)  # default 800x600 for the size range
    sizes = []
    for i in range(big.count):
        spec, rng = scene_spec(big, i)
        sizes += [max(s.w, s.h) for s in render_scene(spec, rng)[1]]
    sizes = np.array(sizes)
    assert sizes.min() >= 11 and sizes.max() <= 0.4 * 600 + 1
    assert (sizes < 20).sum() >= 10 and (sizes > 120).sum() >= 5  # both tiny and large signs occur
    boxes = truth_boxes(load_coco(out / "truth.coco.json"))
    assert len(boxes) > 40
    assert (boxes.x >= 0).all() and (boxes.y >= 0).all()
    assert (boxes.x + boxes.w <= 320).all() and (boxes.y + boxes.h <= 240).all()
    assert (boxes[["w", "h"]] >= 3).all().all()
    # true boxes never overlap one another inside an image
    for _, group in boxes.groupby("image_id"):
        b = group[["x", "y", "w", "h"]].to_numpy()
        for i in range(len(b)):
            for j in range(i + 1, len(b)):
                assert (b[i, 0] + b[i, 2] <= b[j, 0] or b[j, 0] + b[j, 2] <= b[i, 0]
                        or b[i, 1] + b[i, 3] <= b[j, 1] or b[j, 1] + b[j, 3] <= b[i, 1])


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int32)


def test_boxes_are_where_the_sign_pixels_are():
    """Draw each scene twice, with and without the sign plates: the pixels that change are the
    plates. Each true box must hold them, reach them on all four sides, and for partly hidden signs
    the changed share must follow the recorded visible fraction."""
    options = SynthOptions(count=40, seed=5, **SMALL)
    checked = hidden = 0
    for i in range(options.count):
        spec, rng = scene_spec(options, i)
        with_plates, signs = render_scene(spec, rng)
        spec, rng = scene_spec(options, i)
        without, same = render_scene(spec, rng, plates=False)
        assert [(s.x, s.y, s.w, s.h) for s in same] == [(s.x, s.y, s.w, s.h) for s in signs]
        difference = np.abs(_decode(with_plates) - _decode(without)).sum(axis=2)
        changed = difference > 60
        faint = difference > 24  # also dark plates on dark walls, for the visible share
        pad = 6
        for s in signs:
            box = np.zeros_like(changed)
            box[s.y:s.y + s.h, s.x:s.x + s.w] = True
            near = np.zeros_like(changed)
            near[max(s.y - pad, 0):s.y + s.h + pad, max(s.x - pad, 0):s.x + s.w + pad] = True
            for other in signs:  # a neighbour's own pixels are not this box's business
                if other is not s:
                    near[max(other.y - pad, 0):other.y + other.h + pad,
                         max(other.x - pad, 0):other.x + other.w + pad] = False
            smear = np.zeros_like(changed)  # blur and JPEG may spill a plate 2 px past its edge
            smear[max(s.y - 2, 0):s.y + s.h + 2, max(s.x - 2, 0):s.x + s.w + 2] = True
            inside = (changed & box).sum()
            ring = (changed & near & ~smear).sum()
            assert inside > 0 and ring <= 0.05 * inside + 3, (i, s, inside, ring)
            ys, xs = np.nonzero(changed & box)
            tol = max(2, round(0.08 * max(s.w, s.h)))
            if s.visible == 1.0:
                checked += 1
                assert xs.min() - s.x <= tol and s.x + s.w - 1 - xs.max() <= tol, (i, s)
                assert ys.min() - s.y <= tol and s.y + s.h - 1 - ys.max() <= tol, (i, s)
            shape = (np.asarray(render_sign(s.label, s.w, s.h, np.random.default_rng(0)).getchannel("A")) >= 128)
            share = (faint[s.y:s.y + s.h, s.x:s.x + s.w] & shape).sum() / shape.sum()
            # small plates measure roughly (JPEG, colours close to the background); large ones closely
            if max(s.w, s.h) >= 40:
                assert abs(share - s.visible) <= 0.1, (i, s, share)
                hidden += s.visible < 0.9
            else:
                assert -0.25 <= share - s.visible <= 0.3, (i, s, share)
    assert checked >= 40 and hidden >= 4


def test_scene_look_matches_the_class(small_set):
    """Red signs are red, blue ones blue, priority road yellow, traffic lights dark: the class
    drawn is the class written."""
    out, _ = small_set
    coco = load_coco(out / "truth.coco.json")
    boxes = truth_boxes(coco)
    boxes["visible"] = [a["visible"] for a in coco["annotations"]]
    pictures = {}
    seen = collections.Counter()
    for b in boxes[(boxes.w >= 14) & (boxes.visible == 1.0)].itertuples():
        if b.file_name not in pictures:
            pictures[b.file_name] = _decode((out / b.file_name).read_bytes())
        seen[b.label] += 1
        patch = pictures[b.file_name][int(b.y):int(b.y + b.h), int(b.x):int(b.x + b.w)].reshape(-1, 3)
        r, g, bl = patch[:, 0], patch[:, 1], patch[:, 2]
        red = ((r > g + 60) & (r > bl + 60)).mean()
        blue = ((bl > r + 50) & (bl > g + 20)).mean()
        yellow = ((r > bl + 80) & (g > bl + 60)).mean()
        if b.label in ("stop", "no_entry"):
            assert red > 0.35, b
        elif b.label in ("yield", "warning", "speed_limit"):
            assert red > 0.12, b
        elif b.label in ("parking", "mandatory", "pedestrian_crossing"):
            assert blue > 0.25, b
        elif b.label == "priority_road":
            assert yellow > 0.05, b
        elif b.label == "traffic_light":
            assert np.median(patch.sum(axis=1)) < 3 * 110, b
    assert len(seen) >= 8


def test_class_mix_follows_the_weights(tmp_path):
    weights = parse_class_weights("stop=3, yield=1,speed_limit=2,traffic_light=0.5")
    assert weights["parking"] == 0 and weights["stop"] == 3
    options = SynthOptions(count=1500, seed=21, weights=tuple(weights.items()))
    counts = collections.Counter(label for i in range(options.count) for label in scene_spec(options, i)[0].labels)
    used = [n for n, w in weights.items() if w > 0]
    assert set(counts) == set(used)
    total = sum(counts.values())
    expected = np.array([weights[n] for n in used]) / sum(weights[n] for n in used) * total
    observed = np.array([counts[n] for n in used])
    statistic = ((observed - expected) ** 2 / expected).sum()
    assert statistic < chi2.ppf(0.999, len(used) - 1), (observed, expected)
    # and what is written is what was planned
    small = SynthOptions(count=12, seed=21, weights=tuple(weights.items()), **SMALL)
    coco = generate(tmp_path, small, jobs=1)
    written = truth_boxes(coco).groupby("image_id")["label"].apply(list).to_dict()
    for i in range(small.count):
        assert written.get(i + 1, []) == scene_spec(small, i)[0].labels


def test_a_skewed_mix_is_not_uniform():
    # a check that the chi-square test above can fail: a 10:1 mix is far from equal weights
    options = SynthOptions(count=400, seed=2, weights=tuple(parse_class_weights("stop=10,yield=1").items()))
    counts = collections.Counter(label for i in range(options.count) for label in scene_spec(options, i)[0].labels)
    assert counts["stop"] > 6 * counts["yield"]


def test_same_seed_same_bytes_whatever_the_jobs_and_other_seed_differs(tmp_path):
    options = SynthOptions(count=8, seed=99, **SMALL)
    generate(tmp_path / "a", options, jobs=1)
    generate(tmp_path / "b", options, jobs=2)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and len(a) == 10
    generate(tmp_path / "c", SynthOptions(count=8, seed=100, **SMALL), jobs=2)
    c = _files(tmp_path / "c")
    assert sum(a[n] != c[n] for n in a if n.endswith(".jpg")) == 8
    # scene i does not depend on how many scenes were asked for
    generate(tmp_path / "d", SynthOptions(count=3, seed=99, **SMALL), jobs=1)
    d = _files(tmp_path / "d")
    assert all(d[n] == a[n] for n in d if n.endswith(".jpg"))
    # rerunning into a folder with more scenes removes the stale ones
    generate(tmp_path / "a", SynthOptions(count=3, seed=99, **SMALL), jobs=1)
    assert _files(tmp_path / "a") == d


def test_empty_scenes_exist_and_follow_the_share(small_set, tmp_path):
    out, _ = small_set
    coco = load_coco(out / "truth.coco.json")
    with_signs = {a["image_id"] for a in coco["annotations"]}
    empty = [im for im in coco["images"] if im["id"] not in with_signs]
    assert len(empty) == 3  # 30 scenes x 0.1
    none = generate(tmp_path / "none", SynthOptions(count=6, seed=1, empty_share=0.0, **SMALL), jobs=1)
    assert len({a["image_id"] for a in none["annotations"]}) == 6
    assert all(1 <= n <= 6 for n in collections.Counter(a["image_id"] for a in none["annotations"]).values())
    allempty = generate(tmp_path / "all", SynthOptions(count=4, seed=1, empty_share=1.0, **SMALL), jobs=1)
    assert allempty["annotations"] == [] and len(allempty["images"]) == 4


@pytest.mark.parametrize("argv, message", [
    (["--count", "-1"], "--count -1: must be 0 or more"),
    (["--count", "two"], "invalid int value: 'two'"),
    (["--classes", "stop=1,bicycle=2"], "unknown sign class 'bicycle'"),
    (["--classes", "stop=x"], "weight 'x' of 'stop' is not a number"),
    (["--classes", "stop=0"], "at least one class needs a weight > 0"),
    (["--empty-share", "1.5"], "--empty-share 1.5: must be between 0 and 1"),
    (["--width", "50"], "at least 128 px"),
    (["--jobs", "0"], "--jobs 0: must be 1 or more"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = cli.main(["synth", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "out" / "truth.coco.json").exists()


def test_unwritable_output_folder_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = subprocess.run([sys.executable, "-m", "crowdboxes", "synth", "--count", "2", "--out",
                             str(blocker / "synth")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot create output folder {blocker / 'synth'}"), result.stderr


def test_cli_writes_the_folder_and_reports(tmp_path):
    result = subprocess.run([sys.executable, "-m", "crowdboxes", "synth", "--count", "5", "--seed", "4",
                             "--width", "200", "--height", "150", "--classes", "stop=1,parking=1",
                             "--empty-share", "0.2", "--jobs", "2", "--out", str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "wrote 5 scenes" in result.stdout and "1 scenes without signs" in result.stdout
    coco = json.loads((tmp_path / "truth.coco.json").read_text())
    assert {a["category_id"] for a in coco["annotations"]} <= {class_by_name("stop").id,
                                                                class_by_name("parking").id}
    assert coco["info"]["seed"] == 4 and "date" not in json.dumps(coco["info"])
