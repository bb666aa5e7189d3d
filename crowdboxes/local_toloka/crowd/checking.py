"""The per-box check: one box shown on its image, the worker says whether it tightly outlines a sign of its class.

**The true state** of a shown box (:func:`true_checks`), against the truth with the crowd's own matcher
(:func:`.matching.match`; for one box it pairs the true sign of highest IoU, if that IoU is at least
:data:`.judging.ON_OBJECT_IOU`):

* ``no_sign``: no true sign with IoU >= :data:`.judging.ON_OBJECT_IOU`;
* ``loose``: the paired sign's IoU < :data:`.judging.LOOSE_IOU`;
* ``wrong_class``: the box's label is not the paired sign's class (the right class is that sign's class);
* ``yes`` otherwise.

**The noise** (:func:`noisy_verdicts`, the same kernel online and in bulk): a worker gives the true state
with their ``verify_accuracy`` (careful ~0.9, sloppy ~0.75, small-misser ~0.85). An erring worker is biased
toward "yes": on a box whose true state is not ``yes`` they say ``yes`` with probability :data:`YES_BIAS`
(0.6), else one of the two other wrong answers uniformly; on a right box (true ``yes``) they pick one of the
three other answers uniformly. So a careful worker (accuracy 0.9) accepts a bad box with probability
0.1 x 0.6 = 0.06 and rejects a right one with probability 0.1. ``verifier_always_ok`` says ``yes`` to every
box, ``spammer_empty`` answers the first option (``yes`` in bulk), ``spammer_random`` picks uniformly.

**The right class** (:func:`right_labels`), asked when the answer is ``wrong_class``: the paired sign's true
class with the worker's ``class_accuracy`` when the box really has a wrong class, else (an error, or the
class was fine, or no sign) uniform over the classes other than the box's own and the true one;
``spammer_random`` picks any class.

Options are recognised by value or label text (:func:`check_options`, words in :data:`VERDICT_WORDS`,
compared ignoring case, spaces, ``_`` and ``-``), so a whole-image OK/BAD verification is no per-box check.
:func:`simulate_checks` is the bulk version for the aggregation benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from crowdboxes.local_toloka.crowd.boxes import TruthArrays
from crowdboxes.local_toloka.crowd.choices import MISSING, Labels, norm, options_of
from crowdboxes.local_toloka.crowd.judging import LOOSE_IOU, ON_OBJECT_IOU
from crowdboxes.local_toloka.crowd.matching import as_boxes, match
from crowdboxes.local_toloka.crowd.spec import OutputField, TaskModel
from crowdboxes.local_toloka.crowd.workers import WorkerProfile, pick_workers

CHECK_VERDICTS = ("yes", "no_sign", "loose", "wrong_class")
"""The per-box outcomes, in the order of their codes 0..3 (checks.csv ``verdict`` values)."""
YES, NO_SIGN, LOOSE, WRONG_CLASS = range(4)
YES_BIAS = 0.6  # an erring checker says "yes" with this probability (when "yes" is wrong)
VERDICT_WORDS: dict[str, tuple[str, ...]] = {
    "yes": ("yes", "ok", "correct", "tight", "good", "right", "true"),
    "no_sign": ("no_sign", "nothing", "not_a_sign", "no_object", "wrong_object", "empty", "not_sign"),
    "loose": ("loose", "not_tight", "loose_box", "too_loose", "inaccurate"),
    "wrong_class": ("wrong_class", "wrong_type", "wrong_label", "other_class", "other_type", "another_type"),
}
CHECK_COLUMNS = ("image_id", "box_id", "worker_id", "verdict", "right_label")


# ------------------------------------------------------------------------------ reading the spec

def check_options(field: OutputField) -> dict[str, Any] | None:
    """``{verdict: option value}`` when ``field``'s options name per-box outcomes (``yes`` and at least two
    of the other three), else None. An option matches by value, then by label, then by a label that starts
    with one of the words ("Yes, a tight outline")."""
    options = list(field.options)
    if len(options) < 3:
        return None
    words = sorted(((norm(w), v) for v, ws in VERDICT_WORDS.items() for w in ws), key=lambda x: -len(x[0]))
    found: dict[str, Any] = {}

    def claim(test: Any) -> None:
        for c in options:
            if c.value in found.values():
                continue
            for word, verdict in words:
                if verdict not in found and test(c, word):
                    found[verdict] = c.value
                    break

    claim(lambda c, w: norm(c.value) == w)
    claim(lambda c, w: bool(c.label) and norm(c.label) == w)
    claim(lambda c, w: bool(c.label) and norm(c.label).startswith(w))
    if "yes" not in found or len(found) < 3:
        return None
    return found


def check_fields(model: TaskModel, classes: Iterable[str],
                 label_map: Mapping | None = None) -> tuple[OutputField, dict[str, Any], OutputField | None] | None:
    """``(verdict field, {verdict: option}, right-class field or None)`` of a per-box check, else None.

    The right-class field is another choice whose options are classes: the one where most of ``classes``
    and the shown annotation's labels find an option.
    """
    verdict = next(((f, o) for f in model.outputs if (o := check_options(f)) is not None), None)
    if verdict is None:
        return None
    names = list(classes) + [str(c.value) for c in model.shown_labels]
    best, best_hits = None, 0
    for f in model.outputs:
        if f is verdict[0] or len(f.options) < 2:
            continue
        labels = Labels(f.options, label_map)
        hits = len({labels.find(n) for n in names} - {MISSING})
        if hits > best_hits:
            best, best_hits = f, hits
    return verdict[0], verdict[1], best


# ------------------------------------------------------------------------------ the truth and the noise

def true_checks(boxes_px: Any, box_labels: Sequence[Any], true_xywh: Any,
                true_labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(verdict codes, index of the paired true sign or -1)`` for boxes shown one at a time on one image.

    Each box is judged alone (:func:`.matching.match` of that one box with the signs); a box label of None
    is not compared.
    """
    boxes, true_xywh = as_boxes(boxes_px), as_boxes(true_xywh)
    codes = np.full(len(boxes), NO_SIGN, dtype=np.int64)
    paired = np.full(len(boxes), -1, dtype=np.int64)
    for i, box in enumerate(boxes):
        _, ti, ious = match(box[None, :], true_xywh, threshold=ON_OBJECT_IOU)
        if not len(ti):
            continue
        paired[i] = ti[0]
        label = box_labels[i]
        if ious[0] < LOOSE_IOU:
            codes[i] = LOOSE
        elif label is not None and str(label) != str(true_labels[ti[0]]):
            codes[i] = WRONG_CLASS
        else:
            codes[i] = YES
    return codes, paired


def _traits(profiles: Sequence[WorkerProfile]) -> dict[str, np.ndarray]:
    kind = np.array([p.kind for p in profiles], dtype=object)
    return {"accuracy": np.array([p.verify_accuracy for p in profiles], dtype=float),
            "class_accuracy": np.array([p.class_accuracy for p in profiles], dtype=float),
            "always_yes": np.array([bool(p.always_ok) for p in profiles], dtype=bool) | (kind == "spammer_empty"),
            "random": kind == "spammer_random"}


def noisy_verdicts(profiles: Sequence[WorkerProfile], true_codes: Any, rng: np.random.Generator) -> np.ndarray:
    """What each worker answers (codes into :data:`CHECK_VERDICTS`) for a box whose true state is
    ``true_codes`` (one per worker); the noise model in the module docstring."""
    true_codes = np.asarray(true_codes, dtype=np.int64)
    n = len(true_codes)
    t = _traits(profiles)
    right, yes_bias, uniform = rng.random(n), rng.random(n), rng.integers(0, 4, n)
    pick, half = rng.integers(0, 3, n), rng.integers(0, 2, n)
    # an error on a non-"yes" box: "yes", else one of the two other wrong answers (codes 1..3 minus the truth)
    other = 1 + half
    other = other + (other >= true_codes)
    wrong = np.where(true_codes == YES, 1 + pick, np.where(yes_bias < YES_BIAS, YES, other))
    out = np.where(right < t["accuracy"], true_codes, wrong)
    out = np.where(t["random"], uniform, out)
    return np.where(t["always_yes"], YES, out)


def right_labels(profiles: Sequence[WorkerProfile], true_idx: Any, shown_idx: Any, n_labels: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The class index each worker names as right (for a ``wrong_class`` answer): ``true_idx`` (-1: none)
    with ``class_accuracy`` when it differs from the box's ``shown_idx``, else uniform over the other
    classes (``spammer_random``: over all)."""
    true_idx, shown_idx = np.asarray(true_idx, dtype=np.int64), np.asarray(shown_idx, dtype=np.int64)
    n = len(true_idx)
    t = _traits(profiles)
    knows, u = rng.random(n), rng.random(n)
    real = (true_idx >= 0) & (true_idx != shown_idx) & ~t["random"]
    # uniform over the labels minus the box's own and the true one: draw among the rest, then step over the
    # excluded indices in ascending order (-1: nothing excluded)
    a = np.where(t["random"], -1, shown_idx)
    b = np.where(t["random"] | (true_idx == shown_idx), -1, true_idx)
    both = (a >= 0) & (b >= 0)
    e1 = np.where(both, np.minimum(a, b), np.maximum(a, b))
    e2 = np.where(both, np.maximum(a, b), -1)
    room = np.maximum(n_labels - (e1 >= 0) - (e2 >= 0), 1)
    pick = np.minimum((u * room).astype(np.int64), room - 1)
    pick = pick + ((e1 >= 0) & (pick >= e1))
    pick = np.minimum(pick + ((e2 >= 0) & (pick >= e2)), n_labels - 1)
    return np.where(real & (knows < t["class_accuracy"]), true_idx, pick)


# ------------------------------------------------------------------------------ the online task

def answer_check(profile: WorkerProfile, fields: tuple[OutputField, dict[str, Any], OutputField | None],
                 outlines: Sequence[Sequence[Any]], true_xywh: Any, true_labels: Sequence[str],
                 labels: Labels | None, rng: np.random.Generator) -> dict[str, Any]:
    """``{verdict field: option[, right-class field: option]}`` of ``profile`` for the first of ``outlines``
    (pixel ``(x, y, w, h, truth class or None)``); ``labels`` maps truth classes to the right-class options."""
    field, options, right_field = fields
    box = outlines[0] if outlines else (0.0, 0.0, 0.0, 0.0, None)
    codes, paired = true_checks([box[:4]], [box[4] if len(box) > 4 else None], true_xywh, true_labels)
    said = CHECK_VERDICTS[int(noisy_verdicts([profile], codes, rng)[0])]
    if profile.kind == "spammer_empty":
        return {field.name: options_of(field)[0]}
    if said not in options:  # the view lacks this outcome: "yes" (the bias), else another "no"
        nos = [v for v in CHECK_VERDICTS[1:] if v in options]
        said = "yes" if rng.random() < YES_BIAS or not nos else nos[int(rng.integers(len(nos)))]
    answer = {field.name: options[said]}
    if said == "wrong_class" and right_field is not None and labels is not None and labels.values:
        def index(cls: Any) -> int:
            value = labels.find(cls) if cls is not None else MISSING
            return labels.values.index(value) if value is not MISSING else -1

        true_cls = true_labels[paired[0]] if paired[0] >= 0 else None
        shown_cls = box[4] if len(box) > 4 else None
        pick = right_labels([profile], [index(true_cls)], [index(shown_cls)], len(labels.values), rng)[0]
        answer[right_field.name] = labels.values[int(pick)]
    return answer


# ------------------------------------------------------------------------------ bulk

def simulate_checks(truth_coco: dict, workforce: list[WorkerProfile], boxes: pd.DataFrame, checkers: int,
                    seed: int, exclude: Mapping[Any, Iterable[Any]] | None = None) -> pd.DataFrame:
    """Per-box checks: ``checkers`` distinct workers answer each row of ``boxes`` by the noise model above.

    ``boxes``: columns ``image_id, box_id, x, y, w, h, label`` (pixels; labels are the truth's class names).
    ``exclude``: image id -> worker ids who may not check boxes of that image; ids compare as text.
    Returns columns :data:`CHECK_COLUMNS`, ``checkers`` rows per box in box order; ``verdict`` in
    :data:`CHECK_VERDICTS`, ``right_label`` a class name with ``wrong_class``, else None (empty in a CSV).
    Deterministic for ``seed``; ValueError if an image has fewer than ``checkers`` eligible workers.
    """
    rng = np.random.default_rng([int(seed), 0xC4EC])
    k = int(checkers)
    if not len(boxes):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CHECK_COLUMNS})
    t = TruthArrays.of(truth_coco)
    image_ids = boxes["image_id"].tolist()
    pos = t.positions(image_ids, "simulate_checks")
    xywh = boxes[["x", "y", "w", "h"]].to_numpy(dtype=float)
    box_labels = [None if pd.isna(v) else str(v) for v in boxes["label"]]
    categories = [c["name"] for c in sorted(truth_coco.get("categories", []), key=lambda c: c["id"])]
    universe = list(dict.fromkeys([*categories, *t.labels])) if categories else list(t.labels)
    code = {name: i for i, name in enumerate(universe)}

    true_code = np.full(len(boxes), NO_SIGN, dtype=np.int64)
    true_cls = np.full(len(boxes), -1, dtype=np.int64)
    for p in np.unique(pos):  # one matcher call per box, grouped by image
        rows = np.flatnonzero(pos == p)
        first, n = t.first_ann[p], t.per_image[p]
        names = [t.labels[c] for c in t.ann_code[first:first + n]]
        codes, paired = true_checks(xywh[rows], [box_labels[r] for r in rows], t.ann_xywh[first:first + n], names)
        true_code[rows] = codes
        true_cls[rows] = [code[names[j]] if j >= 0 else -1 for j in paired]

    banned_by_image = {str(key): {str(w) for w in v} for key, v in (exclude or {}).items()}
    banned = [banned_by_image.get(str(i), set()) for i in image_ids]
    chosen = pick_workers(workforce, k, banned, rng, "simulate_checks", image_ids).reshape(-1)
    row_box = np.repeat(np.arange(len(boxes)), k)
    profiles = [workforce[i] for i in chosen]
    said = noisy_verdicts(profiles, true_code[row_box], rng)
    shown_idx = np.array([code.get(box_labels[b], -1) if box_labels[b] is not None else -1 for b in row_box])
    named = right_labels(profiles, true_cls[row_box], shown_idx, len(universe), rng)
    universe_arr = np.array(universe + [None], dtype=object)
    return pd.DataFrame({
        "image_id": boxes["image_id"].to_numpy(dtype=object)[row_box],
        "box_id": boxes["box_id"].to_numpy(dtype=object)[row_box],
        "worker_id": np.array([w.worker_id for w in profiles], dtype=object),
        "verdict": np.array(CHECK_VERDICTS, dtype=object)[said],
        "right_label": np.where(said == WRONG_CLASS, universe_arr[named], None),
    })[list(CHECK_COLUMNS)]


__all__ = ["CHECK_COLUMNS", "CHECK_VERDICTS", "VERDICT_WORDS", "YES_BIAS", "answer_check", "check_fields",
           "check_options", "noisy_verdicts", "right_labels", "simulate_checks", "true_checks"]
