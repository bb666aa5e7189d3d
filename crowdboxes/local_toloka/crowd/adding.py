"""The missed-sign task: a worker sees an image with boxes already drawn (read-only) and adds what is missing.

A true sign counts as **covered** when the crowd's own matcher (:func:`.matching.match`, one-to-one) pairs
it with a shown shape at IoU >= :data:`.judging.ON_OBJECT_IOU`; the worker draws only the uncovered signs,
with the ordinary drawing kernel (:func:`.boxes.draw_boxes`: misses, edge noise, gross errors, labels), and
false positives at :data:`ADDITION_FP_SHARE` of the worker's usual rate (someone looking for what others
missed scans the image once more instead of drawing every sign-like thing; a guess, not a measurement).
Spammers keep their behaviour (``spammer_empty`` adds nothing, ``spammer_random`` draws random boxes). When
nothing is missing a careful worker submits an empty drawing.

:func:`draw_additions` is one worker on one image (the online task); :func:`simulate_additions` the bulk
version for the aggregation benchmark, on the same kernel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np
import pandas as pd

from crowdboxes.local_toloka.crowd.boxes import (
    ANSWER_COLUMNS, TruthArrays, _answer_frame, _as_truth, _bulk_drawings, _empty_answers, draw_boxes)
from crowdboxes.local_toloka.crowd.judging import ON_OBJECT_IOU
from crowdboxes.local_toloka.crowd.matching import as_boxes, match
from crowdboxes.local_toloka.crowd.workers import WorkerProfile, pick_workers

ADDITION_FP_SHARE = 0.3  # false positives per image in a missed-sign task, as a share of the worker's rate
ADDITIONS_ROUND = "missed_signs"  # the ``round`` of simulated additions in answers.csv
ADDITIONS_START = "2026-01-01T14:00:00Z"  # after simulate_answers' 6 hours of drawings


def covered_signs(true_xywh: Any, shown_xywh: Any) -> np.ndarray:
    """Boolean mask of the true signs a shown shape covers (one-to-one, IoU >= :data:`ON_OBJECT_IOU`)."""
    true_xywh = as_boxes(true_xywh)
    covered = np.zeros(len(true_xywh), bool)
    _, ti, _ = match(as_boxes(shown_xywh), true_xywh, threshold=ON_OBJECT_IOU)
    covered[ti] = True
    return covered


def draw_additions(profile: WorkerProfile, true_boxes: Any, shown_px: Any, width: float, height: float,
                   rng: np.random.Generator) -> list[tuple[float, float, float, float, str]]:
    """What ``profile`` adds on an image with ``true_boxes`` when ``shown_px`` (``(x, y, w, h[, label])`` px)
    are already drawn: the kernel on the uncovered signs, false positives at :data:`ADDITION_FP_SHARE`."""
    xywh, _, _ = _as_truth(true_boxes)
    shown = [tuple(s)[:4] for s in (shown_px or [])]
    missing = ~covered_signs(xywh, shown)
    if isinstance(true_boxes, pd.DataFrame):
        rest: Any = true_boxes.iloc[np.flatnonzero(missing)]
    else:
        rest = [b for b, m in zip(list(true_boxes or []), missing) if m]
    adder = attrs.evolve(profile, fp_rate=profile.fp_rate * ADDITION_FP_SHARE)
    return draw_boxes(adder, rest, width, height, rng)


def simulate_additions(truth_coco: dict, workforce: list[WorkerProfile], shown: pd.DataFrame,
                       image_ids: Iterable[Any], seed: int,
                       exclude: Mapping[Any, Iterable[Any]] | None = None) -> pd.DataFrame:
    """Missed-sign answers: one new worker per image of ``image_ids`` adds what ``shown`` does not cover.

    ``shown``: the boxes drawn read-only on the images, columns ``image_id, x, y, w, h[, label]`` (pixels).
    ``exclude``: image id -> worker ids who may not take that image (its drawers); ids compare as text.
    Returns answers.csv rows (:data:`.boxes.ANSWER_COLUMNS`) plus ``round`` = ``missed_signs``, one
    assignment per listed image (repeats ignored); a worker who added nothing leaves one row with empty
    ``label, x, y, w, h``, as in :func:`.boxes.simulate_answers`. Assignment ids ``ma000001``..., task ids
    ``mt`` + the image's position. Deterministic for ``seed``.
    """
    wanted = list(dict.fromkeys(image_ids))
    if not wanted:
        return _empty_answers().assign(round=pd.Series(dtype=object))
    rng = np.random.default_rng([int(seed), 0xADD])
    t = TruthArrays.of(truth_coco)
    a_img = t.positions(wanted, "simulate_additions")
    banned_by_image = {str(k): {str(w) for w in v} for k, v in (exclude or {}).items()}
    banned = [banned_by_image.get(str(i), set()) for i in wanted]
    a_worker = pick_workers(workforce, 1, banned, rng, "simulate_additions", wanted)[:, 0]

    # which true signs are already covered by the shown boxes
    active = np.ones(len(t.ann_xywh), bool)
    if len(shown):
        shown_img = np.array([str(i) for i in shown["image_id"]], dtype=object)
        shown_xywh = shown[["x", "y", "w", "h"]].to_numpy(dtype=float)
        for image_id, pos in zip(wanted, a_img):
            first, n = t.first_ann[pos], t.per_image[pos]
            mine = shown_xywh[shown_img == str(image_id)]
            if n and len(mine):
                active[first:first + n] = ~covered_signs(t.ann_xywh[first:first + n], mine)
    drawn = _bulk_drawings(t, workforce, a_img, a_worker, rng, ann_active=active, fp_share=ADDITION_FP_SHARE)
    frame = _answer_frame(t, workforce, a_img, a_worker, drawn, rng, prefix="m", start=ADDITIONS_START)
    frame["round"] = ADDITIONS_ROUND
    return frame[[*ANSWER_COLUMNS, "round"]]
