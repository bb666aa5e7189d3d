"""Aggregators on the real Road Sign Detection boxes with a simulated crowd, scored against the true boxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from crowdboxes.aggregation import get_aggregator
from crowdboxes.evaluation.metrics import evaluate

ROAD = Path("/work/shared/data/road-sign-detection")


@pytest.fixture(scope="module")
def road():
    if not (ROAD / "annotations").is_dir():
        pytest.skip(f"{ROAD} absent")
    from crowdboxes.local_toloka import crowd
    from crowdboxes.evaluation.truth import images_frame, truth_boxes, voc_folder_to_coco

    coco = voc_folder_to_coco(ROAD)
    mix = dict(crowd.DEFAULT_MIX, spammer_empty=0.05, spammer_random=0.05)
    team = crowd.make_workforce(40, seed=1, mix=mix)
    answers = crowd.simulate_answers(coco, team, 3, seed=1).rename(columns={"worker_id": "worker"})
    images = images_frame(coco)
    return answers, images, truth_boxes(coco), images["image_id"]


def test_lean_em_ranks_best_on_real_geometry_with_three_drawers(road):
    answers, images, truth, ids = road
    ap = {}
    for name, params in (("lean_em", {"min_score": 0.0}), ("iou_cluster", {}), ("wbf", {}),
                         ("wbf", {"class_aware": False})):
        boxes = get_aggregator(name, **params).fit_predict(answers, images)
        assert get_aggregator(name, **params).fit(answers, images).problems_ == []
        ap[(name, params.get("class_aware", True))] = evaluate(boxes, truth, images=ids)["AP"]
    ours = ap.pop(("lean_em", True))
    assert ours > max(ap.values()) + 0.01, (ours, ap)


def test_lean_em_output_at_half_is_precise_and_every_box_inside_its_image(road):
    answers, images, truth, ids = road
    ranked = get_aggregator("lean_em").fit_predict(answers, images)
    assert (ranked["score"] >= 0.01).all() and (ranked["score"] < 1).all()
    assert ranked["score"].duplicated().mean() < 0.01  # scores rank: (almost) no ties
    boxes = ranked[ranked["score"] >= 0.5]
    assert not boxes.duplicated(["image_id", "x", "y", "w", "h"]).any()
    size = images.set_index("image_id").loc[boxes["image_id"]]
    assert (boxes["x"].to_numpy() >= 0).all() and (boxes["y"].to_numpy() >= 0).all()
    assert ((boxes["x"] + boxes["w"]).to_numpy() <= size["width"].to_numpy() + 1e-9).all()
    assert ((boxes["y"] + boxes["h"]).to_numpy() <= size["height"].to_numpy() + 1e-9).all()
    result = evaluate(boxes, truth, images=ids)
    assert result["precision"] > 0.8 and result["recall"] > 0.75
