"""The ``disagree`` policy: reject an assignment whose boxes disagree with the aggregate, accept the rest.

The aggregate is boxes.csv of Aggregate Boxes, kept at ``score >= min_score`` (Export's threshold). Each drawing
of an assignment (its rows of answers.csv for one image) is matched one-to-one to the image's kept boxes by
:func:`crowdboxes.geometry.match_boxes`, the evaluation's matcher, at IoU 0.5 with equal labels. Over the
assignment's images

.. math:: F_1 = \\frac{2\\,TP}{2\\,TP + FP + FN}

(1 when nothing was drawn on images where nothing is kept), as :class:`crowdboxes.toloka.known_boxes.DrawingScore`
scores a control drawing. Below ``threshold`` the assignment is rejected. Its comment names what disagreed by
class: signs missed (kept boxes left unmatched), boxes where the aggregate has no sign (drawn boxes left
unmatched), and wrong classes (an unmatched drawn box that matches an unmatched kept box when labels are
ignored: one error, not a miss plus a stray box).

Only first-round drawings are judged (rows whose ``round`` is empty or ``drawing``), and only SUBMITTED
assignments get a decision: the others are decided already.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crowdboxes.artifacts import BOXES, DECISIONS, read_csv, require_finite, require_numeric
from crowdboxes.errors import CrowdboxesError
from crowdboxes.geometry import MATCH_IOU, as_boxes, match_boxes
from crowdboxes.toloka.known_boxes import DrawingScore

ACCEPT, REJECT = "accept", "reject"
POLICIES = ("disagree",)
MAX_COMMENT = 1000  # characters of a public comment (Toloka's limit is larger; a worker reads this)


@dataclass
class Disagreement:
    """One assignment against the aggregate: TP/FP/FN summed over its images, and what disagreed by class."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    images: int = 0
    missed: Counter[str] = field(default_factory=Counter)  # kept boxes nobody in this assignment drew
    extra: Counter[str] = field(default_factory=Counter)  # drawn boxes where the aggregate has no sign
    wrong: Counter[tuple[str, str]] = field(default_factory=Counter)  # (drawn label, kept label)

    @property
    def f1(self) -> float:
        """The assignment's F1 over all its images (:class:`DrawingScore`'s)."""
        return DrawingScore(self.tp, self.fp, self.fn, 0.0).f1

    def add(self, drawn: np.ndarray, drawn_labels: Sequence[str], kept: np.ndarray, kept_labels: Sequence[str],
            iou: float = MATCH_IOU) -> None:
        """Score one drawing (pixels, (x, y, w, h)) against the image's kept boxes and add it in."""
        self.images += 1
        pairs = match_boxes(drawn, kept, iou, drawn_labels, kept_labels)
        lone_drawn = sorted(set(range(len(drawn))) - set(pairs.pred.tolist()))
        lone_kept = sorted(set(range(len(kept))) - set(pairs.true.tolist()))
        self.tp += len(pairs.pred)
        self.fp += len(lone_drawn)
        self.fn += len(lone_kept)
        # a wrong class: a lone drawn box over a lone kept box (labels ignored); named once, as such
        relabel = match_boxes(drawn[lone_drawn], kept[lone_kept], iou)
        for i, j in zip(relabel.pred.tolist(), relabel.true.tolist()):
            self.wrong[(drawn_labels[lone_drawn[i]], kept_labels[lone_kept[j]])] += 1
        drawn_wrong = {lone_drawn[i] for i in relabel.pred.tolist()}
        kept_wrong = {lone_kept[j] for j in relabel.true.tolist()}
        self.extra.update(drawn_labels[i] for i in lone_drawn if i not in drawn_wrong)
        self.missed.update(kept_labels[j] for j in lone_kept if j not in kept_wrong)


def _by_class(counts: Counter[str]) -> str:
    return ", ".join(f"{label} x{n}" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _signs(n: int) -> str:
    return f"{n} sign{'s' if n != 1 else ''}"


def comment_for(d: Disagreement, threshold: float, rejected: bool) -> str:
    """The public comment: for a rejection, what disagreed by class; for an acceptance, a thank-you."""
    if not rejected:
        return f"Accepted: your boxes agree with the other workers' (F1 {d.f1:.2f}). Thank you."
    parts = []
    if d.missed:
        parts.append(f"missed {_signs(sum(d.missed.values()))} ({_by_class(d.missed)})")
    if d.wrong:
        wrong = ", ".join(f"{drawn} drawn where it is {kept}" + (f" x{n}" if n > 1 else "")
                          for (drawn, kept), n in sorted(d.wrong.items()))
        parts.append(f"wrong class on {_signs(sum(d.wrong.values()))} ({wrong})")
    if d.extra:
        n = sum(d.extra.values())
        parts.append(f"{n} box{'es' if n != 1 else ''} where there is no sign ({_by_class(d.extra)})")
    what = "; ".join(parts) or "the boxes do not overlap the signs closely enough (IoU below 0.5)"
    text = (f"Rejected: your boxes disagree with the other workers' on {d.images} image"
            f"{'s' if d.images != 1 else ''} (F1 {d.f1:.2f}, below {threshold:.2f}): {what}.")
    return text if len(text) <= MAX_COMMENT else text[:MAX_COMMENT - 3] + "..."


def _box_array(rows: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    drawn = rows.dropna(subset=["x", "y", "w", "h"])
    return as_boxes(drawn[["x", "y", "w", "h"]].to_numpy(dtype=float)), [str(v) for v in drawn["label"]]


def drawing_rows(answers: pd.DataFrame) -> pd.DataFrame:
    """answers.csv's first-round drawings (``round`` empty or ``drawing``; a file without ``round`` holds only those)."""
    if "round" not in answers.columns:
        return answers
    rounds = answers["round"]
    return answers[rounds.isna() | (rounds.astype(str).str.strip().isin(("", "drawing")))]


def read_kept_boxes(path: str | Path, min_score: float) -> pd.DataFrame:
    """boxes.csv's boxes with ``score >= min_score``; CrowdboxesError naming a bad row and field."""
    boxes = read_csv(path, BOXES, dtype={"image_id": str, "label": str})
    require_numeric(boxes, path, ("x", "y", "w", "h", "score"))
    require_finite(boxes, path, ("x", "y", "w", "h", "score"))
    return boxes[boxes["score"] >= min_score]


def disagreements(answers: pd.DataFrame, kept: pd.DataFrame) -> dict[str, Disagreement]:
    """Assignment id -> its :class:`Disagreement` with the kept boxes, for every assignment in ``answers``."""
    kept_by_image = {str(image): _box_array(rows) for image, rows in kept.groupby("image_id")}
    none: tuple[np.ndarray, list[str]] = (as_boxes([]), [])
    out: dict[str, Disagreement] = {}
    for (assignment, image), rows in answers.groupby(["assignment_id", "image_id"], sort=True):
        drawn, drawn_labels = _box_array(rows)
        truth, truth_labels = kept_by_image.get(str(image), none)
        out.setdefault(str(assignment), Disagreement()).add(drawn, drawn_labels, truth, truth_labels)
    return out


def disagree_policy(answers: pd.DataFrame, kept: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """decisions.csv rows (``artifacts.DECISIONS``, then ``worker_id, f1, tp, fp, fn``) for the SUBMITTED
    assignments of ``answers`` (read by :func:`crowdboxes.steps.aggregate_boxes.read_answers`): reject below
    ``threshold``, accept the rest, oldest submission first."""
    if not 0.0 <= threshold <= 1.0:
        raise CrowdboxesError(f"--threshold {threshold}: must be between 0 and 1 (an F1 against the aggregate)")
    drawings = drawing_rows(answers)
    pending = drawings[drawings["status"] == "SUBMITTED"]
    scored = disagreements(pending, kept)
    order = pending.drop_duplicates("assignment_id").sort_values(["submitted_at", "assignment_id"])
    rows = []
    for assignment, worker in zip(order["assignment_id"].astype(str), order["worker_id"].astype(str)):
        d = scored[assignment]
        rejected = d.f1 < threshold
        rows.append({"assignment_id": assignment, "decision": REJECT if rejected else ACCEPT,
                     "comment": comment_for(d, threshold, rejected), "worker_id": worker, "f1": round(d.f1, 4),
                     "tp": d.tp, "fp": d.fp, "fn": d.fn})
    return pd.DataFrame(rows, columns=[*DECISIONS.columns, "worker_id", "f1", "tp", "fp", "fn"])
