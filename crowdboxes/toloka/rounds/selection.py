"""What each round sends to Toloka: the images and boxes at risk, those already sent, and what the budget allows.

All pure functions of data frames, so the rules are tested by hand-computed cases (tests/toloka/test_rounds.py).

* **Missed signs**: LeanEM's ``images_.expected_missed`` (the expected number of real signs every drawer of
  the image missed) above the threshold, most at risk first.
* **Box checks**: output boxes with ``check_low <= score <= check_high``, most uncertain first, i.e. by
  :math:`|p - 1/2|` ascending (ties: image id, then box id).
* **Already sent** (the exactly-once rule, read from the round pool's tasks on Toloka): an image with a task;
  a box whose ``box_id`` has a task, or whose IoU with a box of a task on the same image is at least
  :data:`CHECKED_IOU` (re-aggregation after more answers may move a box slightly; it was checked).
* **Budget**: Toloka pays per assignment (one suite of ``tasks_per_suite`` tasks) ``overlap`` times, so a pool
  holding :math:`n` tasks costs at most :math:`\\lceil n / s \\rceil \\cdot o \\cdot (r + \\text{fee}(r))`. The
  tasks already in the pool count first; a new task is taken only while the whole pool still fits the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crowdboxes.geometry import iou_matrix
from crowdboxes.toloka.rounds.keys import box_key

CHECKED_IOU = 0.7  # a box this close to an already checked box of its image counts as checked
BOX_COLUMNS = ["image_id", "box_id", "label", "x", "y", "w", "h"]


def at_risk_images(risk: pd.DataFrame, threshold: float) -> list[str]:
    """Images (``risk`` = LeanEM ``images_``, index image id) with ``expected_missed > threshold``, most first."""
    if risk.empty or "expected_missed" not in risk.columns:
        return []
    frame = pd.DataFrame({"image_id": risk.index.astype(str), "missed": risk["expected_missed"].to_numpy(float)})
    frame = frame[frame["missed"] > threshold]
    return frame.sort_values(["missed", "image_id"], ascending=[False, True], kind="stable")["image_id"].tolist()


def with_box_ids(boxes: pd.DataFrame) -> pd.DataFrame:
    """``boxes`` (image_id, label, x, y, w, h, ...) with a ``box_id`` column (:func:`box_key`)."""
    ids = [box_key(i, lab, x, y, w, h) for i, lab, x, y, w, h in
           zip(boxes["image_id"], boxes["label"], boxes["x"], boxes["y"], boxes["w"], boxes["h"])]
    return boxes.assign(image_id=boxes["image_id"].astype(str), box_id=pd.Series(ids, index=boxes.index, dtype=object))


def uncertain_boxes(boxes: pd.DataFrame, low: float, high: float) -> pd.DataFrame:
    """Boxes with ``low <= score <= high`` and their ``box_id``, most uncertain (score nearest 0.5) first.

    One rectangle is checked once: LeanEM outputs a candidate under its runner-up labels too, at the same place,
    and only the best-scored label of a place is sent (a wrong_class verdict names the right class anyway).
    """
    boxes = with_box_ids(boxes)
    boxes = boxes.sort_values("score", ascending=False, kind="stable")
    boxes = boxes[~boxes.duplicated(["image_id", "x", "y", "w", "h"], keep="first")]
    picked = boxes[(boxes["score"] >= low) & (boxes["score"] <= high)]
    picked = picked.assign(_doubt=(picked["score"] - 0.5).abs())
    picked = picked.sort_values(["_doubt", "image_id", "box_id"], kind="stable")
    return picked.drop(columns="_doubt").reset_index(drop=True)


def not_checked(candidates: pd.DataFrame, existing: pd.DataFrame, iou: float = CHECKED_IOU) -> pd.Series:
    """True for the candidates with no task yet: box id unknown to ``existing`` and IoU below ``iou`` with each
    of ``existing``'s boxes of the same image and label (both frames: ``image_id, box_id, label, x, y, w, h``;
    the rule :func:`aliases` uses to credit the old answers to the current box)."""
    fresh = ~candidates["box_id"].isin(set(existing["box_id"]))
    for (image_id, label), group in candidates[fresh].groupby(["image_id", "label"]):
        theirs = existing[(existing["image_id"] == image_id) & (existing["label"] == label)]
        if theirs.empty:
            continue
        overlap = iou_matrix(group[["x", "y", "w", "h"]].to_numpy(float), theirs[["x", "y", "w", "h"]].to_numpy(float))
        fresh.loc[group.index[(overlap >= iou).any(axis=1)]] = False
    return fresh


def aliases(existing: pd.DataFrame, current: pd.DataFrame, iou: float = CHECKED_IOU) -> dict[str, str]:
    """Box id of a task -> the current box it counts for, when that box id is no longer in ``current``: the
    current box of the same image and label with the highest IoU, if at least ``iou`` (the rule that made
    :func:`not_checked` treat the current box as checked)."""
    out: dict[str, str] = {}
    gone = existing[~existing["box_id"].isin(set(current["box_id"]))].dropna(subset=["x", "y", "w", "h"])
    for (image_id, label), group in gone.groupby(["image_id", "label"]):
        theirs = current[(current["image_id"] == image_id) & (current["label"] == label)]
        if theirs.empty:
            continue
        overlap = iou_matrix(group[["x", "y", "w", "h"]].to_numpy(float), theirs[["x", "y", "w", "h"]].to_numpy(float))
        for row, box_id in enumerate(group["box_id"]):
            best = int(np.argmax(overlap[row]))
            if overlap[row, best] >= iou:
                out[str(box_id)] = str(theirs["box_id"].iloc[best])
    return out


def pool_cost(n_tasks: int, overlap: int, tasks_per_suite: int, price: float) -> float:
    """USD the pool costs at most when it holds ``n_tasks`` tasks: ``ceil(n / s) * overlap * price``."""
    return math.ceil(n_tasks / max(1, tasks_per_suite)) * max(0, overlap) * price


def affordable(n_existing: int, n_wanted: int, *, overlap: int, tasks_per_suite: int, price: float,
               budget: float | None) -> int:
    """How many of ``n_wanted`` new tasks fit: the largest ``n`` with ``pool_cost(n_existing + n) <= budget``."""
    if budget is None:
        return n_wanted
    n = 0
    while n < n_wanted and pool_cost(n_existing + n + 1, overlap, tasks_per_suite, price) <= budget + 1e-9:
        n += 1
    return n


@dataclass(frozen=True)
class RoundPlan:
    """What a round does now: ``new`` items to create tasks for, in order; how many were ``already`` in the
    pool; how many the budget ``skipped``."""

    new: pd.DataFrame
    already: int
    skipped: int


def plan_images(at_risk: list[str], existing_images: set[str], *, overlap: int, tasks_per_suite: int,
                price: float, budget: float | None, n_existing_tasks: int) -> RoundPlan:
    """The missed-sign round's plan: the at-risk images without a task, cut to the budget."""
    wanted = [i for i in at_risk if i not in existing_images]
    n = affordable(n_existing_tasks, len(wanted), overlap=overlap, tasks_per_suite=tasks_per_suite, price=price,
                   budget=budget)
    return RoundPlan(pd.DataFrame({"image_id": wanted[:n]}, dtype=object), len(at_risk) - len(wanted),
                     len(wanted) - n)


def plan_boxes(candidates: pd.DataFrame, existing: pd.DataFrame, *, overlap: int, tasks_per_suite: int,
               price: float, budget: float | None, n_existing_tasks: int) -> RoundPlan:
    """The check round's plan: the uncertain boxes not checked yet (:func:`not_checked`), cut to the budget."""
    fresh = not_checked(candidates, existing) if len(candidates) else pd.Series([], dtype=bool)
    wanted = candidates[fresh.to_numpy(bool)] if len(candidates) else candidates
    n = affordable(n_existing_tasks, len(wanted), overlap=overlap, tasks_per_suite=tasks_per_suite, price=price,
                   budget=budget)
    return RoundPlan(wanted.iloc[:n].reset_index(drop=True), int(len(candidates) - len(wanted)), len(wanted) - n)


def empty_boxes() -> pd.DataFrame:
    """An empty frame of :data:`BOX_COLUMNS` (no task in the pool yet)."""
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("image_id", "box_id", "label") else np.float64)
                         for c in BOX_COLUMNS})
