"""Judging shown work: what a worker answers when asked whether shapes drawn on an image are right.

:func:`true_verdict` is what a perfect verifier says (BAD with a reason if a sign of at least
:data:`NOTICEABLE_PX` is missed, a shape is on nothing, a box is loose, or a class is wrong);
:func:`judge_outlines` gives it with the worker's ``verify_accuracy`` (careful ~0.9, sloppy ~0.75, spammers
0.5 = a coin); ``always_ok`` workers say OK to everything. Shapes come in Toloka's image-annotation format
(:func:`parse_shapes`): rectangles, polygons (judged by their bounding box) and points (on a sign when inside
its box).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from crowdboxes.local_toloka.crowd.boxes import _as_truth
from crowdboxes.local_toloka.crowd.matching import match, to_pixels
from crowdboxes.local_toloka.crowd.workers import WorkerProfile


NOTICEABLE_PX = 20.0  # a verifier notices a missing sign whose shorter side is at least this
LOOSE_IOU = 0.5  # below this IoU with its sign an outline is "loose"
ON_OBJECT_IOU = 0.1  # an outline overlapping a sign this much is "on" it (else it is on nothing)
VERDICT_REASONS = ("missed_sign", "loose_box", "wrong_object", "wrong_class")


def true_verdict(outlines_px: Sequence[Sequence[Any]], true_boxes: Any, width: float, height: float) -> tuple[str, str]:
    """What a perfect verifier answers for ``outlines_px`` (``(x, y, w, h[, label])`` px) on this image.

    BAD reasons, in this order: ``missed_sign`` (a true sign whose shorter side is at least
    :data:`NOTICEABLE_PX` has no outline on it), ``wrong_object`` (an outline on no sign), ``loose_box``
    (IoU with its sign < :data:`LOOSE_IOU`), ``wrong_class`` (the outline's label is not the sign's).
    Outlines are paired one-to-one with signs they overlap (IoU >= :data:`ON_OBJECT_IOU`).
    """
    true_xywh, true_labels, _ = _as_truth(true_boxes)
    rows = list(outlines_px or [])
    out_xywh = np.array([r[:4] for r in rows], dtype=float).reshape(-1, 4)
    out_labels = [r[4] if len(r) > 4 else None for r in rows]
    pi, ti, ious = match(out_xywh, true_xywh, threshold=ON_OBJECT_IOU)
    covered = np.zeros(len(true_xywh), bool)
    covered[ti] = True
    noticeable = np.minimum(true_xywh[:, 2], true_xywh[:, 3]) >= NOTICEABLE_PX
    if (noticeable & ~covered).any():
        return "BAD", "missed_sign"
    if len(pi) < len(out_xywh):
        return "BAD", "wrong_object"
    if (ious < LOOSE_IOU).any():
        return "BAD", "loose_box"
    if any(out_labels[p] is not None and str(out_labels[p]) != true_labels[t] for p, t in zip(pi, ti)):
        return "BAD", "wrong_class"
    return "OK", ""


def judge_outlines(profile: WorkerProfile, outlines_px: Sequence[Sequence[Any]], true_boxes: Any, width: float,
                   height: float, rng: np.random.Generator) -> tuple[str, str]:
    """``(verdict, reason)`` of ``profile`` for ``outlines_px`` drawn on the image with ``true_boxes``.

    The worker gives :func:`true_verdict` with probability ``verify_accuracy``, else the opposite (a BAD
    then gets a random reason); ``always_ok`` workers say OK regardless; reason is "" for OK.
    """
    if profile.always_ok:
        return "OK", ""
    verdict, reason = true_verdict(outlines_px, true_boxes, width, height)
    if rng.random() < profile.verify_accuracy:
        return verdict, reason
    if verdict == "OK":
        return "BAD", VERDICT_REASONS[int(rng.integers(len(VERDICT_REASONS)))]
    return "OK", ""


def shape_list(value: Any) -> list[dict] | None:
    """``value`` as a list of image-annotation shapes (a list, or JSON text of one, of dicts with a
    ``shape`` key, or rectangles without it); None if it is not one. An empty list is a list."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, list):
        return None
    if not value:
        return []
    if all(isinstance(s, dict) and ("shape" in s or {"left", "top", "width", "height"} <= set(s)) for s in value):
        return value
    return None


def parse_shapes(shapes: Any, width: float, height: float, true_boxes: Any = None,
                 label_of: Callable[[Any], Any] | None = None) -> list[tuple]:
    """Shapes (list or JSON text) as pixel ``(x, y, w, h, label)`` tuples for :func:`true_verdict`.

    Rectangles as drawn; a polygon by its points' bounding box; a point becomes the box of the first true
    sign it lies in (a point on a sign is right however it is placed), else a 1 px box (on nothing).
    ``label_of`` maps a shape's label to the truth's class name (default: unchanged). Unreadable shapes are
    left out.
    """
    if isinstance(shapes, str):
        shapes = shape_list(shapes) or []
    true_xywh = _as_truth(true_boxes)[0] if true_boxes is not None else np.empty((0, 4))
    rows = []
    for shape in shapes or []:
        if not isinstance(shape, dict):
            continue
        kind = str(shape.get("shape", "rectangle"))
        try:
            if kind == "rectangle":
                box = to_pixels([[float(shape[k]) for k in ("left", "top", "width", "height")]], width, height)[0]
            elif kind == "polygon":
                pts = np.array([[float(p["left"]), float(p["top"])] for p in shape["points"]], dtype=float)
                if not len(pts):
                    continue
                lo, hi = pts.min(axis=0), pts.max(axis=0)
                box = to_pixels([[lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]], width, height)[0]
            elif kind == "point":
                px, py = float(shape["left"]) * width, float(shape["top"]) * height
                inside = np.flatnonzero((true_xywh[:, 0] <= px) & (px <= true_xywh[:, 0] + true_xywh[:, 2])
                                        & (true_xywh[:, 1] <= py) & (py <= true_xywh[:, 1] + true_xywh[:, 3]))
                box = true_xywh[inside[0]] if len(inside) else np.array([px, py, 1.0, 1.0])
            else:
                continue
        except (KeyError, TypeError, ValueError):
            continue
        label = shape.get("label")
        if label is not None and label_of is not None:
            label = label_of(label)
        rows.append((*map(float, box), label))
    return rows

