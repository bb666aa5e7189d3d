"""The contact sheet draws each true box in its class colour where the box is."""

from __future__ import annotations

import numpy as np
from PIL import Image

from crowdboxes import cli
from crowdboxes.sim.contact_sheet import PALETTE
from crowdboxes.classes import CLASS_NAMES
from crowdboxes.sim.generate import SynthOptions, generate
from crowdboxes.evaluation.truth import truth_boxes

GAP = 6


def test_sheet_layout_and_box_outlines(tmp_path):
    coco = generate(tmp_path / "scenes", SynthOptions(count=5, seed=8, width=200, height=150, empty_share=0.0),
                    jobs=1)
    out = tmp_path / "sheet.png"
    code = cli.main(["contact-sheet", "--truth", str(tmp_path / "scenes" / "truth.coco.json"), "--images",
                     str(tmp_path / "scenes"), "--out", str(out), "--count", "5", "--columns", "2",
                     "--tile-width", "200", "--colors", "0"])
    assert code == 0
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape == (3 * 150 + 4 * GAP, 2 * 200 + 3 * GAP, 3)
    boxes = truth_boxes(coco)
    occluded = [a["occluded"] for a in coco["annotations"]]
    hits = total = 0
    for b, hidden in zip(boxes.itertuples(), occluded):
        if hidden:
            continue  # dashed outline
        row, col = divmod(b.image_id - 1, 2)
        ox, oy = GAP + col * (200 + GAP), GAP + row * (150 + GAP)
        colour = PALETTE[CLASS_NAMES.index(b.label)]
        # middle of the left and right edges of the drawn rectangle (scale 1: x-1 .. x+w)
        mid = int(oy + b.y + b.h // 2)
        for x in (int(ox + b.x - 1), int(ox + b.x + b.w)):
            total += 1
            hits += tuple(sheet[mid, x]) == colour
    assert total >= 10 and hits >= 0.9 * total


def test_quantised_sheet_is_small_and_missing_image_is_one_line(tmp_path, capsys):
    generate(tmp_path / "scenes", SynthOptions(count=4, seed=8, width=200, height=150), jobs=1)
    out = tmp_path / "sheet.png"
    args = ["contact-sheet", "--truth", str(tmp_path / "scenes" / "truth.coco.json"), "--images",
            str(tmp_path / "scenes"), "--out", str(out)]
    assert cli.main(args) == 0
    with Image.open(out) as im:
        assert im.mode == "P"
    (tmp_path / "scenes" / "scene_00002.jpg").unlink()
    out.unlink()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scene_00002.jpg" in err and "does not exist" in err
    assert not out.exists()
