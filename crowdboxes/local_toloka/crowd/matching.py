"""The crowd's own geometry: IoU, one-to-one matching, normalised <-> pixel boxes.

Written for the simulator alone (it must not share the product's idea of a right answer). Boxes are
``(x, y, w, h)`` rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment


def as_boxes(boxes: Any) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def iou_matrix(a: Any, b: Any) -> np.ndarray:
    """Pairwise IoU of ``(x, y, w, h)`` boxes, shape ``(len(a), len(b))``; 0 where the union is empty."""
    a, b = as_boxes(a), as_boxes(b)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None, :]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None, :]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2], 0, None) * np.clip(a[:, 3], 0, None)
    area_b = np.clip(b[:, 2], 0, None) * np.clip(b[:, 3], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match(pred_xywh: Any, true_xywh: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one pairs ``(pred_index, true_index, iou)`` with IoU >= ``threshold``.

    The assignment maximises the number of such pairs first and their total IoU second (a pair is worth
    more than any sum of IoUs), so one good pair is never traded for two ineligible ones.
    """
    empty = (np.empty(0, int), np.empty(0, int), np.empty(0, float))
    pred, true = as_boxes(pred_xywh), as_boxes(true_xywh)
    if len(pred) == 0 or len(true) == 0:
        return empty
    iou = iou_matrix(pred, true)
    eligible = iou >= threshold
    if not eligible.any():
        return empty
    worth = np.where(eligible, iou + (min(iou.shape) + 1.0), 0.0)
    rows, cols = linear_sum_assignment(worth, maximize=True)
    keep = eligible[rows, cols]
    return rows[keep], cols[keep], iou[rows[keep], cols[keep]]


def to_pixels(boxes: Any, width: float, height: float) -> np.ndarray:
    """Boxes in fractions of the image (Toloka's image-annotation 0..1) to pixels."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] *= width
    b[:, [1, 3]] *= height
    return b


def to_normalised(boxes: Any, width: float, height: float) -> np.ndarray:
    """Pixel boxes to fractions of the image."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] /= width
    b[:, [1, 3]] /= height
    return b
