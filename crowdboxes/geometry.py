"""Box geometry shared by the crowd simulator, the aggregators and the evaluation.

Boxes are ``(x, y, w, h)`` in pixels, origin top-left (COCO convention); arrays have shape ``(n, 4)``.
"""

from __future__ import annotations

import numpy as np


def as_boxes(boxes) -> np.ndarray:
    """``boxes`` as a float64 array of shape (n, 4)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def to_corners(boxes) -> np.ndarray:
    """(x, y, w, h) -> (x1, y1, x2, y2)."""
    b = as_boxes(boxes)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]])


def from_corners(corners) -> np.ndarray:
    """(x1, y1, x2, y2) -> (x, y, w, h)."""
    c = as_boxes(corners)
    return np.column_stack([c[:, 0], c[:, 1], c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]])


def iou_matrix(a, b) -> np.ndarray:
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


def clip_to_image(boxes, width: float, height: float) -> np.ndarray:
    """Boxes cut to the image rectangle [0, width] x [0, height]; fully outside ones get zero size."""
    c = to_corners(boxes)
    c[:, [0, 2]] = np.clip(c[:, [0, 2]], 0, width)
    c[:, [1, 3]] = np.clip(c[:, [1, 3]], 0, height)
    return from_corners(c)


def normalized_to_pixels(boxes, width: float, height: float) -> np.ndarray:
    """Toloka image-annotation rectangles (0..1 of the image) to pixels."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] *= width
    b[:, [1, 3]] *= height
    return b


def pixels_to_normalized(boxes, width: float, height: float) -> np.ndarray:
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] /= width
    b[:, [1, 3]] /= height
    return b
