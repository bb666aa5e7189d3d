"""Do scores mean what they say? Expected calibration error and tied scores of a scored box output.

A box is *right* when COCO's AP50 counts it as a true positive: per image and label, boxes are taken in
score order (highest first) and each takes the unmatched true box of its label with the highest IoU, if that
IoU is at least 0.5. A calibrated score p is right with probability p.

* ``ece`` (expected calibration error): the boxes are put in ``bins`` equal-width score bins;
  $\\mathrm{ECE} = \\sum_b \\frac{n_b}{n} \\left|\\overline{\\text{right}}_b - \\overline{\\text{score}}_b\\right|$.
* ``tied_share``: the share of boxes whose score equals another box's score exactly (sorting them by score
  says nothing about their order).

Examples:
    >>> import pandas as pd
    >>> true = pd.DataFrame({"image_id": ["a"], "label": ["stop"], "x": [0.0], "y": [0.0], "w": [10.0], "h": [10.0]})
    >>> pred = pd.DataFrame({"image_id": ["a", "a"], "label": ["stop", "stop"], "x": [0.0, 50.0], "y": [0.0, 50.0],
    ...                      "w": [10.0, 10.0], "h": [10.0, 10.0], "score": [0.9, 0.2]})
    >>> result = calibration(pred, true)
    >>> round(result.ece, 3), result.tied_share
    (0.15, 0.0)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from crowdboxes.geometry import MATCH_IOU, iou_matrix

__all__ = ["Calibration", "calibration", "right_boxes"]


class Calibration(NamedTuple):
    """What :func:`calibration` measured."""

    ece: float
    """Expected calibration error (module docstring)."""
    tied_share: float
    """Share of boxes whose score equals another box's score."""
    bins: pd.DataFrame
    """Per score bin: ``low, high, boxes, mean_score, right_share``."""


def right_boxes(pred: pd.DataFrame, true: pd.DataFrame, iou_threshold: float = MATCH_IOU) -> np.ndarray:
    """Per row of ``pred``: whether COCO's greedy matching at ``iou_threshold`` counts it as a true positive."""
    right = np.zeros(len(pred), dtype=bool)
    if pred.empty or true.empty:
        return right
    truth = {key: g[["x", "y", "w", "h"]].to_numpy(dtype=float)
             for key, g in true.dropna(subset=["x"]).groupby(["image_id", "label"], sort=False)}
    positions = np.arange(len(pred))
    for key, group in pred.assign(_pos=positions).groupby(["image_id", "label"], sort=False):
        known = truth.get(key)
        if known is None:
            continue
        group = group.sort_values("score", ascending=False, kind="stable")
        ious = iou_matrix(group[["x", "y", "w", "h"]].to_numpy(dtype=float), known)
        taken = np.zeros(len(known), dtype=bool)
        for row, pos in enumerate(group["_pos"].to_numpy()):
            candidates = np.where(taken, -1.0, ious[row])
            best = int(candidates.argmax())
            if candidates[best] >= iou_threshold:
                taken[best] = True
                right[pos] = True
    return right


def calibration(pred: pd.DataFrame, true: pd.DataFrame, bins: int = 10) -> Calibration:
    """ECE, tied share and the reliability table of ``pred``'s ``score`` against ``true`` (module docstring)."""
    scores = pred["score"].to_numpy(dtype=float)
    right = right_boxes(pred, true)
    n = len(scores)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds [b / bins, (b + 1) / bins), the last one also 1.0 (floor, not a search in linspace's edges,
    # so 0.6 falls in [0.6, 0.7) although linspace's 0.6 is 0.6000000000000001)
    which = np.clip(np.floor(scores * bins).astype(np.int64), 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        mean_score = float(scores[mask].mean()) if count else float("nan")
        right_share = float(right[mask].mean()) if count else float("nan")
        if count:
            ece += count / n * abs(right_share - mean_score)
        rows.append({"low": edges[b], "high": edges[b + 1], "boxes": count, "mean_score": mean_score,
                     "right_share": right_share})
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    tied = float((counts[inverse] > 1).mean()) if n else 0.0
    return Calibration(ece=float(ece) if n else float("nan"), tied_share=tied, bins=pd.DataFrame(rows))
