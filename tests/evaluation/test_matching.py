"""The one box matcher (crowdboxes.geometry.match_boxes): the evaluation and the known-box scoring that bans
workers count the same true positives, by hand and on random boxes."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from crowdboxes.evaluation.metrics import evaluate
from crowdboxes.geometry import iou_matrix, match_boxes, pixels_to_normalized
from crowdboxes.toloka.known_boxes import ControlSet, score_drawing

# IoU of two 100 x 100 boxes shifted by d along x: (100 - d) / (100 + d)
TRUE = [(50, 0, 100, 100), (80, 0, 100, 100)]
DRAWN = [(50, 0, 100, 100), (20, 0, 100, 100)]
# drawn 0 vs true 0: 1; drawn 0 vs true 1 and drawn 1 vs true 0: 70/130 = 7/13; drawn 1 vs true 1: 40/160 = 1/4


def _total_iou_matches(pred, true, threshold=0.5):
    """The rule the known-box scoring used before: maximise the total IoU, then drop pairs under the threshold."""
    iou = iou_matrix(pred, true)
    rows, cols = linear_sum_assignment(-iou)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if iou[i, j] >= threshold]


def test_hand_case_where_max_total_iou_loses_a_match():
    assert iou_matrix(DRAWN, TRUE) == pytest.approx(np.array([[1, 7 / 13], [7 / 13, 1 / 4]]))
    # total IoU: 1 + 1/4 = 1.25 beats 7/13 + 7/13 = 1.08, but only one of its pairs reaches 0.5
    assert _total_iou_matches(DRAWN, TRUE) == [(0, 0)]
    matches = match_boxes(DRAWN, TRUE)
    assert sorted(zip(matches.pred.tolist(), matches.true.tolist())) == [(0, 1), (1, 0)]
    assert matches.iou == pytest.approx([7 / 13, 7 / 13])
    # ... and both users of the matcher count two true positives
    score = score_drawing(DRAWN, TRUE)
    assert (score.tp, score.fp, score.fn) == (2, 0, 0) and score.mean_iou == pytest.approx(7 / 13)
    frame = lambda boxes: pd.DataFrame([("a", "stop", *b) for b in boxes], columns=["image_id", "label", "x", "y",
                                                                                     "w", "h"])
    result = evaluate(frame(DRAWN), frame(TRUE))
    assert result["recall"] == 1.0 and result["mean_iou"] == pytest.approx(7 / 13)


def test_more_matches_beat_more_total_iou_and_labels_must_agree():
    matches = match_boxes([(5, 0, 10, 10)], [(0, 0, 10, 10), (8, 0, 10, 10)], iou_threshold=0.0)
    assert (matches.pred.tolist(), matches.true.tolist()) == ([0], [1])  # 70/130 > 50/150
    assert len(match_boxes([(0, 0, 10, 10)], [(0, 0, 10, 10)], 0.5, ["stop"], ["yield"]).pred) == 0
    assert len(match_boxes([(0, 0, 10, 10)], [(0, 0, 10, 10)], 0.5, [None], [None]).pred) == 1
    empty = match_boxes([], [(0, 0, 10, 10)])
    assert empty.pred.dtype == np.int64 and len(empty.iou) == 0


def _random_boxes(rng, n, width, height):
    size = rng.uniform(20, 60, (n, 2))
    corner = rng.uniform(0, 1, (n, 2)) * (np.array([width, height]) - size)
    return np.column_stack([corner, size])


def test_known_box_scoring_and_evaluation_agree_on_random_boxes():
    """Crowded random scenes (many overlapping boxes, so the matching rule matters), scored twice: through the
    known-box path that bans workers (Toloka outlines -> ControlSet.score) and through evaluate()."""
    rng = np.random.default_rng(11)
    width, height, labels = 120.0, 90.0, np.array(["stop", "yield"])
    control = ControlSet()
    drawings, pred_rows, true_rows = {}, [], []
    differs = []
    for trial in range(300):
        url = f"https://img/{trial}.jpg"
        true = _random_boxes(rng, int(rng.integers(0, 7)), width, height)
        # drawings: jittered copies of most true boxes plus a few random extras
        near = true[rng.random(len(true)) < 0.85]
        near = near + rng.normal(0, 10, near.shape)
        drawn = np.vstack([near, _random_boxes(rng, int(rng.integers(0, 3)), width, height)])
        drawn[:, 2:] = np.maximum(drawn[:, 2:], 2.0)
        true_labels = list(labels[rng.integers(0, 2, len(true))])
        drawn_labels = list(labels[rng.integers(0, 2, len(drawn))])
        control.images[url] = (width, height, true, true_labels)
        rects = pixels_to_normalized(drawn, width, height)
        drawings[url] = [{"shape": "rectangle", "left": r[0], "top": r[1], "width": r[2], "height": r[3],
                          "label": lab} for r, lab in zip(rects, drawn_labels)]
        true_rows += [(url, lab, *b) for b, lab in zip(true, true_labels)]
        pred_rows += [(url, lab, *b) for b, lab in zip(drawn, drawn_labels)]
        matches = match_boxes(drawn, true)
        if _total_iou_matches(drawn, true) != sorted(zip(matches.pred.tolist(), matches.true.tolist())):
            differs.append(url)
    columns = ["image_id", "label", "x", "y", "w", "h"]
    pred, truth = pd.DataFrame(pred_rows, columns=columns), pd.DataFrame(true_rows, columns=columns)
    images = list(control.images)
    assert len(differs) >= 5  # scenes where the old rule (maximise total IoU) matches other pairs

    for match_labels, suffix in ((True, ""), (False, "_agnostic")):
        scores = {url: control.score(url, drawings[url], match_labels=match_labels) for url in images}
        # per image, evaluate() on that image alone: where the old rule differed, and every 10th scene
        for url in sorted(set(differs) | set(images[::10])):
            s = scores[url]
            one = evaluate(pred[pred.image_id == url], truth[truth.image_id == url], images=[url])
            n_true = s.tp + s.fn
            assert one["n_pred"] == s.tp + s.fp and one["n_true"] == n_true
            tp = round(one[f"recall{suffix}"] * n_true) if n_true else 0
            assert tp == s.tp, (url, match_labels)
            if s.tp:
                assert one[f"mean_iou{suffix}"] == pytest.approx(s.mean_iou), (url, match_labels)
        # all images at once: the same true positives and the same total IoU
        total = evaluate(pred, truth, images=images)
        tp = sum(s.tp for s in scores.values())
        assert round(total[f"recall{suffix}"] * len(truth)) == tp
        assert total[f"mean_iou{suffix}"] * tp == pytest.approx(sum(s.tp * s.mean_iou for s in scores.values()))
