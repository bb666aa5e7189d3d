"""Calibration of scored boxes (evaluation/calibration.py) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from crowdboxes.evaluation.calibration import calibration, right_boxes

COLS = ["image_id", "label", "x", "y", "w", "h"]
TRUE = pd.DataFrame([("a", "stop", 0.0, 0.0, 10.0, 10.0), ("a", "yield", 50.0, 50.0, 10.0, 10.0)], columns=COLS)


def pred(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLS + ["score"])


CASE = pred(("a", "stop", 0, 0, 10, 10, 0.9),  # right
            ("a", "stop", 0, 0, 10, 10, 0.8),  # a duplicate: the true stop sign is taken
            ("a", "yield", 0, 0, 10, 10, 0.3),  # the wrong class
            ("a", "yield", 51, 50, 10, 10, 0.6),  # IoU 90/110 = 0.82: right
            ("b", "stop", 0, 0, 10, 10, 0.6))  # no sign on b


def test_right_boxes_follow_coco_greedy_matching():
    assert right_boxes(CASE, TRUE).tolist() == [True, False, False, True, False]


def test_higher_score_takes_the_true_box_even_when_looser():
    got = right_boxes(pred(("a", "stop", 3, 0, 10, 10, 0.5), ("a", "stop", 4, 0, 10, 10, 0.9)), TRUE)
    # IoU 70/130 = 0.54 and 60/140 = 0.43: the 0.9 box is looser than 0.5, so the 0.5 box is right
    assert got.tolist() == [True, False]
    got = right_boxes(pred(("a", "stop", 0, 0, 10, 10, 0.5), ("a", "stop", 3, 0, 10, 10, 0.9)), TRUE)
    assert got.tolist() == [False, True]  # the 0.9 box (IoU 0.54) matches first


def test_ece_and_tied_share_by_hand():
    result = calibration(CASE, TRUE)
    # bins: 0.9 right (|1 - .9|), 0.8 wrong (.8), 0.3 wrong (.3), two at 0.6 with one right (|.5 - .6|)
    assert result.ece == pytest.approx((0.1 + 0.8 + 0.3) / 5 + 2 / 5 * 0.1)
    assert result.tied_share == pytest.approx(2 / 5)
    bins = result.bins
    assert bins["low"].iloc[6] == pytest.approx(0.6)
    assert bins["boxes"].iloc[6] == 2 and bins["right_share"].iloc[6] == 0.5
    assert bins["boxes"].sum() == 5 and math.isnan(bins["mean_score"].iloc[0])


def test_edges_empty_and_extreme_scores():
    result = calibration(pred(("a", "stop", 0, 0, 10, 10, 1.0), ("a", "yield", 50, 50, 10, 10, 0.0)), TRUE)
    assert result.bins["boxes"].iloc[-1] == 1 and result.bins["boxes"].iloc[0] == 1  # 1.0 in the last bin
    assert result.ece == pytest.approx(0.5)  # right at 1.0 (0) and right at 0.0 (1), half each
    empty = calibration(pred(), TRUE)
    assert math.isnan(empty.ece) and empty.tied_share == 0.0
    assert right_boxes(CASE, TRUE.iloc[:0]).tolist() == [False] * 5
    assert not np.isnan(calibration(CASE, TRUE, bins=4).ece)
