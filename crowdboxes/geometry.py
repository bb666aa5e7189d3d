"""Box geometry shared by the crowd simulator, the aggregators, the known-box scoring and the evaluation.

Boxes are ``(x, y, w, h)`` in pixels, origin top-left (COCO convention); arrays have shape ``(n, 4)``.
:func:`match_boxes` is the one box matcher of the package: the evaluation's matched precision / recall / IoU
and the known-box (control) scoring that bans workers both call it, so they can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

#: Anything :func:`as_boxes` accepts: an (n, 4) array, a list of 4-sequences, an empty list.
BoxesLike = npt.ArrayLike
#: The IoU a matched pair needs by default (PASCAL VOC's and COCO's AP50 threshold).
MATCH_IOU = 0.5


def as_boxes(boxes: BoxesLike) -> np.ndarray:
    """``boxes`` as a float64 array of shape (n, 4)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def to_corners(boxes: BoxesLike) -> np.ndarray:
    """(x, y, w, h) -> (x1, y1, x2, y2)."""
    b = as_boxes(boxes)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]])


def from_corners(corners: BoxesLike) -> np.ndarray:
    """(x1, y1, x2, y2) -> (x, y, w, h)."""
    c = as_boxes(corners)
    return np.column_stack([c[:, 0], c[:, 1], c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]])


def iou_matrix(a: BoxesLike, b: BoxesLike) -> np.ndarray:
    """Pairwise IoU, shape (len(a), len(b)); 0 where a union is empty.

    IoU(A, B) = |A ∩ B| / (|A| + |B| - |A ∩ B|).
    """
    ca, cb = to_corners(a), to_corners(b)
    ix1 = np.maximum(ca[:, None, 0], cb[None, :, 0])
    iy1 = np.maximum(ca[:, None, 1], cb[None, :, 1])
    ix2 = np.minimum(ca[:, None, 2], cb[None, :, 2])
    iy2 = np.minimum(ca[:, None, 3], cb[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(ca[:, 2] - ca[:, 0], 0, None) * np.clip(ca[:, 3] - ca[:, 1], 0, None)
    area_b = np.clip(cb[:, 2] - cb[:, 0], 0, None) * np.clip(cb[:, 3] - cb[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def clip_to_image(boxes: BoxesLike, width: float | np.ndarray, height: float | np.ndarray) -> np.ndarray:
    """Boxes cut to the image rectangle [0, width] x [0, height]; fully outside ones get zero size."""
    c = to_corners(boxes)
    c[:, [0, 2]] = np.clip(c[:, [0, 2]], 0, width)
    c[:, [1, 3]] = np.clip(c[:, [1, 3]], 0, height)
    return from_corners(c)


def normalized_to_pixels(boxes: BoxesLike, width: float, height: float) -> np.ndarray:
    """Toloka image-annotation rectangles (0..1 of the image) to pixels."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] *= width
    b[:, [1, 3]] *= height
    return b


def pixels_to_normalized(boxes: BoxesLike, width: float, height: float) -> np.ndarray:
    """Pixels to Toloka image-annotation rectangles (0..1 of the image)."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] /= width
    b[:, [1, 3]] /= height
    return b


class BoxMatches(NamedTuple):
    """The matched pairs of :func:`match_boxes`: ``pred[k]`` is matched to ``true[k]`` with IoU ``iou[k]``."""

    pred: np.ndarray
    """Indices into the predicted (drawn) boxes, int."""
    true: np.ndarray
    """Indices into the true (known) boxes, int."""
    iou: np.ndarray
    """IoU of each matched pair, float, all at least the threshold."""


def _no_matches() -> BoxMatches:
    return BoxMatches(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))


def match_boxes(pred: BoxesLike, true: BoxesLike, iou_threshold: float = MATCH_IOU,
                pred_labels: Sequence[Any] | np.ndarray | None = None,
                true_labels: Sequence[Any] | np.ndarray | None = None) -> BoxMatches:
    """One-to-one matching of one image's predicted boxes to its true boxes, as the evaluation counts TPs.

    A pair is *eligible* when its IoU is at least ``iou_threshold`` and, when both label sequences are given,
    the labels are equal. Among all one-to-one assignments the result has the most eligible pairs and, among
    those, the largest sum of IoUs; only eligible pairs are returned. (Maximising the total IoU alone is
    wrong here: it can trade one eligible pair for two ineligible ones, e.g. pick IoUs 1.0 + 0.25 over
    0.54 + 0.54 and count one true positive instead of two.)

    Solved as one Hungarian assignment with gain ``IoU + B`` on eligible pairs and 0 elsewhere, where the
    bonus ``B = min(n_pred, n_true) + 1`` exceeds any sum of IoUs, so the pair count dominates.

    Returns:
        :class:`BoxMatches` with the pairs ordered by predicted index.
    """
    a, b = as_boxes(pred), as_boxes(true)
    if len(a) == 0 or len(b) == 0:
        return _no_matches()
    iou = iou_matrix(a, b)
    eligible = iou >= iou_threshold
    if pred_labels is not None and true_labels is not None:
        # object arrays: labels may be strings, integers or None (an unlabelled known box)
        eligible &= np.asarray(pred_labels, dtype=object)[:, None] == np.asarray(true_labels, dtype=object)[None, :]
    if not eligible.any():
        return _no_matches()
    bonus = min(iou.shape) + 1.0
    rows, cols = linear_sum_assignment(-np.where(eligible, iou + bonus, 0.0))
    keep = eligible[rows, cols]
    rows, cols = rows[keep].astype(np.int64), cols[keep].astype(np.int64)
    return BoxMatches(rows, cols, iou[rows, cols].astype(np.float64))
