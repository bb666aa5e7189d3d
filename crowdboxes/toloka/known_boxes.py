"""Control (golden) images with known boxes, mixed into the detection pool as ordinary tasks.

Toloka's own GoldenSet compares answers by exact match, which is useless for rectangles, so the
drawings on control images are scored here: boxes are matched one-to-one by
:func:`crowdboxes.geometry.match_boxes`, the evaluation's own matcher (the most pairs with IoU >= 0.5, then
the largest total IoU), so a worker is banned by the same rule that scores the results. A drawing's score is its F1
(:math:`F_1 = 2TP / (2TP + FP + FN)`; an empty drawing of an empty image scores 1). A worker's
control score is the mean F1 over their control drawings; workers under the threshold are banned.

Control CSV (``--control_csv``): one row per known box with columns ``url, width, height, label,
x, y, w, h`` (pixels) and optionally ``image_id``; an image without signs is one row with empty
``label, x, y, w, h``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attr
import numpy as np
import pandas as pd

from crowdboxes.artifacts import CONTROL, read_csv
from crowdboxes.geometry import MATCH_IOU, BoxesLike, as_boxes, match_boxes, normalized_to_pixels
from crowdboxes.errors import CrowdboxesError

logger = logging.getLogger(__name__)

#: Labels of a drawing or of known boxes, in box order (None: no label).
Labels = Sequence[str | None]


@attr.s(frozen=True, auto_attribs=True)
class DrawingScore:
    """One drawing against the known boxes: true / false positives, misses, and the mean IoU of the matches."""

    tp: int
    fp: int
    fn: int
    mean_iou: float

    @property
    def f1(self) -> float:
        """2TP / (2TP + FP + FN); 1 for an empty drawing of an image without signs."""
        denom = 2 * self.tp + self.fp + self.fn
        return 1.0 if denom == 0 else 2 * self.tp / denom


def score_drawing(drawn: BoxesLike, truth: BoxesLike, iou_threshold: float = MATCH_IOU,
                  drawn_labels: Labels | None = None, true_labels: Labels | None = None) -> DrawingScore:
    """TP/FP/FN of one drawing against the known boxes (pixels, (x, y, w, h)).

    With both label sequences given, a drawn box only matches a known box of the same label.
    """
    a, b = as_boxes(drawn), as_boxes(truth)
    matches = match_boxes(a, b, iou_threshold, drawn_labels, true_labels)
    tp = len(matches.pred)
    mean_iou = float(matches.iou.mean()) if tp else 0.0
    return DrawingScore(tp=tp, fp=len(a) - tp, fn=len(b) - tp, mean_iou=mean_iou)


def outlines_to_pixels(outlines: Sequence[Any] | None, width: float,
                       height: float) -> tuple[np.ndarray, list[str | None]]:
    """Toloka image-annotation rectangles (normalised) -> (pixel boxes, labels); other shapes ignored."""
    rects = [o for o in (outlines or []) if isinstance(o, dict) and o.get("shape", "rectangle") == "rectangle"]
    boxes = [[float(o["left"]), float(o["top"]), float(o["width"]), float(o["height"])] for o in rects]
    return normalized_to_pixels(boxes, width, height), [o.get("label") for o in rects]


# ---------------------------------------------------------------------------------------------

@attr.s(auto_attribs=True)
class ControlSet:
    """Known boxes by control image url: ``{url: (width, height, boxes (n,4), labels)}``."""

    images: dict[str, tuple[float, float, np.ndarray, list[str | None]]] = attr.Factory(dict)
    image_ids: dict[str, str] = attr.Factory(dict)
    """The image id of each control url (the CSV's ``image_id``, else ``control-<n>``)."""

    def __contains__(self, url: object) -> bool:
        return url in self.images

    def __len__(self) -> int:
        return len(self.images)

    def score(self, url: str, outlines: Sequence[Any] | None, match_labels: bool = False) -> DrawingScore:
        """Score a drawing (Toloka outlines) of control image ``url``; labels must agree with ``match_labels``."""
        width, height, boxes, labels = self.images[url]
        drawn, drawn_labels = outlines_to_pixels(outlines, width, height)
        if match_labels:
            return score_drawing(drawn, boxes, drawn_labels=drawn_labels, true_labels=labels)
        return score_drawing(drawn, boxes)


def load_control_csv(path: str | os.PathLike[str]) -> ControlSet:
    """Read the control CSV; CrowdboxesError naming the file, row and field of a bad value."""
    path = Path(path)
    frame = read_csv(path, CONTROL)
    control = ControlSet()
    rows: dict[str, tuple[float, float, list[list[float]], list[str | None]]] = {}  # url -> boxes as read
    for row_no, row in enumerate(frame.itertuples(index=False), start=2):
        url = str(row.url).strip() if isinstance(row.url, str) else ""
        if not url.startswith(("http://", "https://")):
            raise CrowdboxesError(f"{path}: row {row_no}, field 'url': {row.url!r} is not an http(s) URL")
        try:
            width, height = float(row.width), float(row.height)
        except (TypeError, ValueError):
            width = height = float("nan")
        if not (width > 0 and height > 0):
            raise CrowdboxesError(f"{path}: row {row_no}, fields 'width'/'height': need positive sizes")
        entry = rows.setdefault(url, (width, height, [], []))
        if any(pd.isna(getattr(row, f)) for f in ("x", "y", "w", "h")):
            continue  # an image without signs
        try:
            box = [float(row.x), float(row.y), float(row.w), float(row.h)]
        except (TypeError, ValueError):
            raise CrowdboxesError(f"{path}: row {row_no}, fields x/y/w/h: not numbers") from None
        if box[2] <= 0 or box[3] <= 0:
            raise CrowdboxesError(f"{path}: row {row_no}, fields 'w'/'h': box size must be positive")
        entry[2].append(box)
        entry[3].append(None if pd.isna(row.label) else str(row.label))
        if "image_id" in frame.columns and not pd.isna(row.image_id):
            control.image_ids[url] = str(row.image_id)
    control.images = {u: (w, h, as_boxes(b), lab) for u, (w, h, b, lab) in rows.items()}
    for url in control.images:
        control.image_ids.setdefault(url, f"control-{len(control.image_ids) + 1}")
    return control


def control_from_truth(coco: dict[str, Any], url_for_file: Callable[[str], str]) -> ControlSet:
    """A ControlSet from a COCO ground truth (crowdboxes.evaluation.truth format); ``url_for_file(file_name)``."""
    control = ControlSet()
    anns: dict[Any, list[dict[str, Any]]] = {}
    for ann in coco.get("annotations", []):
        anns.setdefault(ann["image_id"], []).append(ann)
    names = {c["id"]: c["name"] for c in coco.get("categories", [])}
    for image in coco["images"]:
        url = url_for_file(image["file_name"])
        rows = anns.get(image["id"], [])
        control.images[url] = (float(image["width"]), float(image["height"]),
                               as_boxes([a["bbox"] for a in rows]), [names.get(a.get("category_id")) for a in rows])
        control.image_ids[url] = str(image["id"])
    return control


def create_control_tasks(client: Any, pool_id: str, control: ControlSet, overlap: int,
                         image_field: str = "image") -> pd.DataFrame:
    """Add control images to the detection pool as ordinary tasks; returns task_id, pool_id, image_id, url.

    ``overlap`` should be high (e.g. the expected number of drawers) so that most drawers meet a
    control image early; they are issued like any other task. The URL goes in the detection project's
    image input field ``image_field``.
    """
    from toloka.client import Task

    tasks = [Task(pool_id=str(pool_id), input_values={image_field: url}, overlap=int(overlap)) for url in control.images]
    if not tasks:
        return pd.DataFrame(columns=["task_id", "pool_id", "image_id", "url", "kind"])
    created = client.create_tasks(tasks, allow_defaults=False, open_pool=False)  # keep our overlap
    rows = [{"task_id": t.id, "pool_id": str(pool_id), "image_id": control.image_ids[t.input_values[image_field]],
             "url": t.input_values[image_field], "kind": "control"} for t in created.items.values()]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------

@attr.s(auto_attribs=True)
class ControlScorer:
    """Per-worker control scores and the ban decision (crowd-kit style: fit, fitted attrs end in ``_``).

    A worker is banned once they have ``min_tasks`` scored control drawings and their mean F1 is
    below ``threshold``, or after ``max_hopeless`` hopeless drawings: nothing matched and either
    something was drawn (random boxes) or two or more signs were missed (an empty answer on a busy
    image). That is what spammers do on every image; a careful worker has an occasional hopeless
    drawing (a slipped rectangle) but not two, and missing one sign alone only counts through the mean.
    """

    threshold: float = 0.4
    min_tasks: int = 2
    max_hopeless: int = 2
    scores_: pd.DataFrame = attr.ib(init=False, factory=lambda: pd.DataFrame(columns=["f1", "n", "hopeless"]))

    def fit(self, drawings: pd.DataFrame) -> "ControlScorer":
        """``drawings``: columns ``worker, f1, tp, fp, fn`` (one row per scored control drawing)."""
        if drawings.empty:
            self.scores_ = pd.DataFrame(columns=["f1", "n", "hopeless"])
            return self
        hopeless = (drawings["tp"] == 0) & ((drawings["fp"] >= 1) | (drawings["fn"] >= 2))
        grouped = drawings.assign(hopeless=hopeless).groupby("worker")
        self.scores_ = pd.DataFrame({"f1": grouped["f1"].mean(), "n": grouped.size(),
                                     "hopeless": grouped["hopeless"].sum()})
        return self

    def banned(self) -> list[str]:
        """Sorted ids of the workers to ban (rule in the class docstring)."""
        s = self.scores_
        if s.empty:
            return []
        bad = ((s["n"] >= self.min_tasks) & (s["f1"] < self.threshold)) | (s["hopeless"] >= self.max_hopeless)
        return sorted(str(w) for w in s.index[bad])
