"""The simulated crowd behind the local Toloka: workers who draw boxes and judge other workers' boxes.

Parameters follow box-aggregation.md section 5.3 (measured on real Toloka crowd boxes and the
literature). For a worker *w* and a true box of width *W* and height *H*:

* **Edge noise.** Each edge moves by :math:`\\varepsilon \\sim N(b_w s S,\\ \\sqrt{\\sigma_{px}^2 + (\\sigma_w S)^2})`
  with :math:`S = W` for x-edges, :math:`S = H` for y-edges, :math:`s = -1` for left/top and :math:`+1` for
  right/bottom (so :math:`b_w > 0` is a looser box), and the standard deviation times 1.4 on the right/bottom
  edges (the drag direction). :math:`\\sigma_{px} \\approx 1`-1.5 px is a pixel floor
  (measured on 640 px images; times the image's long side / 640 for smaller images, at least 0.5, because
  they are enlarged on screen);
  :math:`\\sigma_w \\sim U(0.012, 0.025)` for careful workers (Toloka's best-of-crowd is 0.017), 0.04-0.06 for
  sloppy ones; :math:`b_w \\sim N(0.01, 0.015)` (careful) or :math:`N(0.03, 0.02)` (sloppy).
* **Misses.** :math:`p_{miss,w} \\sim Beta(2, 18)` (mean 0.10), doubled for small boxes
  (:math:`\\sqrt{WH} < 32` px, the COCO "small" bucket), and times :math:`1 + 2.5 h` for a sign with a
  hidden fraction :math:`h` (annotation ``visible`` = 1 - h; ``occluded`` without it counts as h = 0.2,
  i.e. x1.5); the
  ``small_misser`` skips most small signs (0.5-0.8).
* **Gross errors** (box on the wrong object or wildly off, IoU < 0.5): 3-5 % of medium/large boxes,
  2.5 times that (about 10 %) for small ones.
* **False positives:** Poisson(:math:`\\lambda_w`) per image, :math:`\\lambda_w \\sim Gamma(1, 0.1)`; mostly
  small squares (sign-like clutter), some larger rectangles.
* **Class label:** correct with probability ~N(0.9, 0.05); a wrong label is mostly a related class
  (:data:`RELATED_CLASSES`).
* **Spammers:** ``spammer_empty`` submits nothing; ``spammer_random`` submits 1 + Poisson(2) random boxes;
  ``verifier_always_ok`` draws like a sloppy worker and says OK to every outline.
* **Verification** (:func:`judge_outlines`): the true verdict (BAD with a reason if a sign of at least
  :data:`NOTICEABLE_PX` is missed, an outline is on nothing, a box is loose, or a class is wrong) is given
  with the worker's accuracy (careful ~0.9, sloppy ~0.75); spammers answer at random.
* **Time** (:func:`seconds_for`): about 25 s per box drawn plus a look at the image, 3-9 s per
  verification; ``slow`` workers take 3 times as long, spammers a fraction.

:func:`simulate_answers` is the vectorised bulk version (answers.csv rows) for the aggregation benchmark;
:func:`draw_boxes` runs the same kernel for one worker and one image, so both agree by construction.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping

import attrs
import numpy as np
import pandas as pd

from crowdboxes.artifacts import ANSWERS
from crowdboxes.classes import CLASS_NAMES
from crowdboxes.geometry import normalized_to_pixels, pixels_to_normalized

KINDS = ("careful", "sloppy", "small_misser", "spammer_empty", "spammer_random", "verifier_always_ok", "slow")
DEFAULT_MIX = {"careful": 0.50, "sloppy": 0.20, "small_misser": 0.10, "spammer_empty": 0.05,
               "spammer_random": 0.05, "verifier_always_ok": 0.05, "slow": 0.05}

SMALL_PX = 32.0  # sqrt(area) below this is COCO "small"
# The pixel floor was measured on ~640 px COCO images. A smaller image is enlarged on screen, so its floor
# in image pixels shrinks (down to half); a larger one is zoomed into, so it stays.
DISPLAY_PX = 640.0
DISPLAY_SCALE_RANGE = (0.5, 1.0)
RIGHT_BOTTOM_NOISE = 1.4  # right/bottom edges are ~40 % noisier (drag direction)
SMALL_GROSS_FACTOR = 2.5  # 4 % gross errors -> 10 % for small signs
HIDDEN_MISS_SLOPE = 2.5  # miss probability x (1 + 2.5 * hidden fraction)
OCCLUDED_HIDDEN = 0.2  # hidden fraction assumed for ``occluded`` without ``visible`` (-> x1.5)
NOTICEABLE_PX = 20.0  # a verifier notices a missing sign whose shorter side is at least this
LOOSE_IOU = 0.5  # below this IoU with its sign an outline is "loose"
ON_OBJECT_IOU = 0.1  # an outline overlapping a sign this much is "on" it (else it is on nothing)
VERDICT_REASONS = ("missed_sign", "loose_box", "wrong_object", "wrong_class")

# Signs a worker plausibly mistakes for each other (shape and colour); 80 % of wrong labels stay here.
RELATED_CLASSES = {
    "stop": ("no_entry", "yield"),
    "yield": ("warning", "stop"),
    "speed_limit": ("no_entry", "stop"),
    "no_entry": ("stop", "speed_limit"),
    "priority_road": ("warning", "yield"),
    "pedestrian_crossing": ("warning", "parking", "mandatory"),
    "parking": ("mandatory", "pedestrian_crossing"),
    "mandatory": ("parking", "pedestrian_crossing"),
    "warning": ("yield", "pedestrian_crossing"),
    "traffic_light": ("warning",),
}
RELATED_SHARE = 0.8

# Seconds (section 5.3 cost model): drawing ~25 s per box, plus a look at the image; 3-9 s per judgement.
SECONDS_PER_BOX = 25.0
SECONDS_PER_IMAGE = 6.0
VERIFY_SECONDS = (3.0, 9.0)
EXPECTED_BOXES_PER_TASK = 1.5  # when the caller does not know how many boxes were drawn


@attrs.frozen
class WorkerProfile:
    """One simulated worker. Probabilities are per true box unless noted; noise is in px / fraction of side.

    Attributes:
        worker_id: stable id, ``w0001`` ...
        kind: one of :data:`KINDS`.
        sigma_px: pixel floor of the edge noise (sd, px).
        sigma_frac: edge-noise sd as a fraction of the side (:math:`\\sigma_w`).
        bias: looseness per edge as a fraction of the side (:math:`b_w`; positive = larger boxes).
        p_miss: probability to skip a medium/large sign; ``p_miss_small`` for a small one.
        gross_rate: probability of a gross error on a medium/large sign (x2.5 for small signs).
        fp_rate: Poisson rate of false-positive boxes per image.
        random_boxes: Poisson rate (+1) of random boxes per image (``spammer_random`` only; 0 = none).
        class_accuracy: probability of the correct class label.
        verify_accuracy: probability of giving the true verdict (0.5 = coin flip).
        always_ok: answers OK to every verification, whatever it sees.
        speed: time multiplier (1 normal, 3 slow, < 1 spammers).
    """

    worker_id: str
    kind: str
    sigma_px: float = 1.2
    sigma_frac: float = 0.02
    bias: float = 0.01
    p_miss: float = 0.1
    p_miss_small: float = 0.2
    gross_rate: float = 0.04
    fp_rate: float = 0.1
    random_boxes: float = 0.0
    class_accuracy: float = 0.9
    verify_accuracy: float = 0.9
    always_ok: bool = False
    speed: float = 1.0

    @property
    def draws(self) -> bool:
        """Whether this worker ever submits a box."""
        return self.p_miss < 1.0 or self.fp_rate > 0 or self.random_boxes > 0


def _kind_counts(n: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Exact counts for ``n`` workers (largest remainder), so small crowds keep the mix's shape."""
    unknown = sorted(set(mix) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown worker kind(s) {', '.join(unknown)} in the mix; known: {', '.join(KINDS)}")
    weights = {k: float(v) for k, v in mix.items()}
    if any(v < 0 or not np.isfinite(v) for v in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"worker mix {dict(mix)} must have non-negative shares with a positive sum")
    total = sum(weights.values())
    exact = {k: n * v / total for k, v in weights.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    # ties broken by the order of KINDS, so the result does not depend on the dict's order
    order = sorted(exact, key=lambda k: (-(exact[k] - counts[k]), KINDS.index(k)))
    for k in order[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def _draw_profile(worker_id: str, kind: str, rng: np.random.Generator) -> WorkerProfile:
    """Sample one worker's parameters for its kind (section 5.3 distributions)."""
    def clip(v, lo, hi):
        return float(np.clip(v, lo, hi))

    base = dict(
        sigma_px=float(rng.uniform(1.0, 1.5)),
        sigma_frac=float(rng.uniform(0.012, 0.025)),
        bias=clip(rng.normal(0.01, 0.015), -0.03, 0.05),
        p_miss=float(rng.beta(2, 18)),
        gross_rate=float(rng.uniform(0.03, 0.05)),
        fp_rate=float(rng.gamma(1.0, 0.1)),
        class_accuracy=clip(rng.normal(0.9, 0.05), 0.75, 1.0),
        verify_accuracy=clip(rng.normal(0.9, 0.03), 0.8, 0.98),
    )
    if kind in ("sloppy", "verifier_always_ok"):
        base.update(sigma_px=float(rng.uniform(1.2, 2.0)), sigma_frac=float(rng.uniform(0.04, 0.06)),
                    bias=clip(rng.normal(0.03, 0.02), -0.02, 0.08), p_miss=float(rng.beta(3, 12)),
                    gross_rate=float(rng.uniform(0.06, 0.10)), fp_rate=float(rng.gamma(1.0, 0.3)),
                    class_accuracy=clip(rng.normal(0.8, 0.05), 0.6, 0.95),
                    verify_accuracy=clip(rng.normal(0.75, 0.04), 0.65, 0.85))
    base["p_miss_small"] = min(0.95, 2.0 * base["p_miss"])
    if kind == "small_misser":
        base["p_miss_small"] = float(rng.uniform(0.5, 0.8))
        base["verify_accuracy"] = clip(rng.normal(0.85, 0.03), 0.75, 0.95)
    speed = 1.0
    if kind == "slow":
        speed = 3.0
    elif kind == "spammer_empty":
        base.update(p_miss=1.0, p_miss_small=1.0, fp_rate=0.0, verify_accuracy=0.5)
        speed = 0.3  # ~2 s to open a task and submit it empty: what Toloka's fast-response rules catch
    elif kind == "spammer_random":
        base.update(p_miss=1.0, p_miss_small=1.0, fp_rate=0.0, random_boxes=2.0, class_accuracy=0.0,
                    verify_accuracy=0.5)
        speed = 0.2
    elif kind == "verifier_always_ok":
        speed = 0.5
    return WorkerProfile(worker_id=worker_id, kind=kind, speed=speed, always_ok=kind == "verifier_always_ok",
                         **base)


def make_workforce(n: int, seed: int, mix: Mapping[str, float] | None = None) -> list[WorkerProfile]:
    """``n`` workers ``w0001``... with kinds in the proportions of ``mix`` (default :data:`DEFAULT_MIX`).

    Deterministic per ``(n, seed, mix)``; kinds are spread over the ids at random (by ``seed``).
    """
    if int(n) != n or n < 0:
        raise ValueError(f"number of workers must be a non-negative integer, got {n!r}")
    n = int(n)
    counts = _kind_counts(n, DEFAULT_MIX if mix is None else mix)
    kinds = [k for k in KINDS if k in counts for _ in range(counts[k])]
    rng = np.random.default_rng([int(seed), 0x5EED])
    kinds = [kinds[i] for i in rng.permutation(n)]
    width = max(4, len(str(n)))
    return [_draw_profile(f"w{i + 1:0{width}d}", kind, rng) for i, kind in enumerate(kinds)]


# ----------------------------------------------------------------------------------- the drawing kernel

def _label_table(extra_labels=()) -> tuple[list[str], np.ndarray]:
    """Label universe (known classes first, then any others in the truth) and its wrong-label matrix.

    Row *i* holds the probabilities of each wrong label given true label *i*: :data:`RELATED_SHARE` spread
    over the related classes, the rest over all other labels.
    """
    labels = list(CLASS_NAMES) + sorted({str(x) for x in extra_labels} - set(CLASS_NAMES))
    code = {name: i for i, name in enumerate(labels)}
    n = len(labels)
    confusion = np.zeros((n, n))
    for i, name in enumerate(labels):
        others = np.ones(n)
        others[i] = 0
        others /= others.sum() if others.sum() else 1
        related = [code[r] for r in RELATED_CLASSES.get(name, ()) if r in code]
        if related:
            near = np.zeros(n)
            near[related] = 1.0 / len(related)
            confusion[i] = RELATED_SHARE * near + (1 - RELATED_SHARE) * others
        else:
            confusion[i] = others
    return labels, confusion


def _sample_rows(prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row of the probability matrix ``prob`` (vectorised inverse CDF)."""
    cum = np.cumsum(prob, axis=1)
    u = rng.random(len(prob)) * cum[:, -1]
    return np.minimum((u[:, None] > cum).sum(axis=1), prob.shape[1] - 1)


def _params(workforce: list[WorkerProfile]) -> dict[str, np.ndarray]:
    fields = ("sigma_px", "sigma_frac", "bias", "p_miss", "p_miss_small", "gross_rate", "fp_rate",
              "random_boxes", "class_accuracy")
    return {f: np.array([getattr(w, f) for w in workforce], dtype=float) for f in fields}


def _random_rects(img_w: np.ndarray, img_h: np.ndarray, small_share, rng) -> np.ndarray:
    """One box per entry of ``img_w``/``img_h``, placed uniformly in its image: with probability
    ``small_share`` a small square of 10-36 px (sign-like clutter), else a 20-200 px rectangle with aspect
    0.5-2 (a random scribble)."""
    n = len(img_w)
    small = rng.random(n) < small_share
    side = np.where(small, rng.uniform(10, 36, n), rng.uniform(20, 200, n))
    aspect = np.where(small, rng.uniform(0.85, 1.15, n), np.exp(rng.uniform(np.log(0.5), np.log(2.0), n)))
    w = np.minimum(side * np.sqrt(aspect), img_w)
    h = np.minimum(side / np.sqrt(aspect), img_h)
    x = rng.random(n) * (img_w - w)
    y = rng.random(n) * (img_h - h)
    return np.column_stack([x, y, w, h])


def _drawn_for_true_boxes(true_xywh, true_code, hidden, img_w, img_h, worker, params, confusion, rng):
    """The kernel: for each (worker, true box) pair, whether it is drawn, the drawn box and its label.

    All arguments are per pair (``worker`` indexes ``params``; ``hidden`` is the occluded fraction of the
    sign). Returns ``(kept, boxes, codes)``.
    """
    n = len(true_xywh)
    x, y, w, h = (true_xywh[:, i] for i in range(4))
    p = {k: v[worker] for k, v in params.items()}
    small = np.sqrt(w * h) < SMALL_PX

    p_miss = np.where(small, p["p_miss_small"], p["p_miss"])
    p_miss = np.where(p_miss < 1, np.minimum(0.95, p_miss * (1 + HIDDEN_MISS_SLOPE * hidden)), p_miss)
    kept = rng.random(n) >= p_miss

    # edge noise: sd = sqrt(sigma_px^2 + (sigma_w * S)^2), x1.4 on right/bottom; mean = bias * S outwards.
    # the pixel floor is a screen/mouse limit, smaller in image pixels for images enlarged on screen
    floor = p["sigma_px"] * np.clip(np.maximum(img_w, img_h) / DISPLAY_PX, *DISPLAY_SCALE_RANGE)
    sx = np.sqrt(floor ** 2 + (p["sigma_frac"] * w) ** 2)
    sy = np.sqrt(floor ** 2 + (p["sigma_frac"] * h) ** 2)
    z = rng.standard_normal((n, 4))
    x1 = x - p["bias"] * w + z[:, 0] * sx
    y1 = y - p["bias"] * h + z[:, 1] * sy
    x2 = x + w + p["bias"] * w + z[:, 2] * sx * RIGHT_BOTTOM_NOISE
    y2 = y + h + p["bias"] * h + z[:, 3] * sy * RIGHT_BOTTOM_NOISE
    x1, x2 = np.minimum(x1, x2), np.maximum(x1, x2)
    y1, y2 = np.minimum(y1, y2), np.maximum(y1, y2)

    # gross errors: half the time a box on something else nearby, half the time a wildly loose box
    gross = rng.random(n) < np.minimum(0.5, np.where(small, SMALL_GROSS_FACTOR, 1.0) * p["gross_rate"])
    if gross.any():
        g = np.flatnonzero(gross)
        gw, gh = w[g], h[g]
        cx, cy = x[g] + gw / 2, y[g] + gh / 2
        shifted = rng.random(len(g)) < 0.5
        angle = rng.uniform(0, 2 * np.pi, len(g))
        dist = rng.uniform(0.8, 2.0, len(g)) * np.maximum(gw, gh)
        scale = np.where(shifted, 1.0, rng.uniform(1.8, 3.0, len(g)))
        nw, nh = gw * scale, gh * scale
        ncx = np.where(shifted, cx + dist * np.cos(angle), cx)
        ncy = np.where(shifted, cy + dist * np.sin(angle), cy)
        # keep the moved box inside the image (it is still "somewhere else" in most cases)
        ncx = np.clip(ncx, np.minimum(nw, img_w[g]) / 2, img_w[g] - np.minimum(nw, img_w[g]) / 2)
        ncy = np.clip(ncy, np.minimum(nh, img_h[g]) / 2, img_h[g] - np.minimum(nh, img_h[g]) / 2)
        x1[g], x2[g] = ncx - nw / 2, ncx + nw / 2
        y1[g], y2[g] = ncy - nh / 2, ncy + nh / 2

    # a drawn rectangle lies inside the image and is at least 1 px
    x1 = np.clip(x1, 0, np.maximum(img_w - 1, 0))
    y1 = np.clip(y1, 0, np.maximum(img_h - 1, 0))
    x2 = np.clip(np.maximum(x2, x1 + 1), 0, img_w)
    y2 = np.clip(np.maximum(y2, y1 + 1), 0, img_h)
    boxes = np.column_stack([x1, y1, x2 - x1, y2 - y1])

    codes = true_code.copy()
    wrong = rng.random(n) >= p["class_accuracy"]
    if wrong.any():
        codes[wrong] = _sample_rows(confusion[true_code[wrong]], rng)
    return kept, boxes, codes


def _extra_boxes(assign_worker, assign_w, assign_h, params, n_classes, rng):
    """False positives and spammers' random boxes per assignment: ``(assignment index, boxes, codes)``."""
    n_fp = rng.poisson(params["fp_rate"][assign_worker])
    rate = params["random_boxes"][assign_worker]
    n_rand = np.where(rate > 0, 1 + rng.poisson(rate), 0)
    counts = n_fp + n_rand
    owner = np.repeat(np.arange(len(assign_worker)), counts)
    # within an assignment: its FPs first (mostly small squares), then random boxes (mostly any size)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    is_fp = (np.arange(len(owner)) - first) < np.repeat(n_fp, counts)
    m = len(owner)
    boxes = _random_rects(assign_w[owner], assign_h[owner], np.where(is_fp, 0.8, 0.3), rng)
    codes = rng.integers(0, n_classes, m)
    return owner, boxes, codes


def _hidden_fraction(visible, occluded) -> np.ndarray:
    """Hidden fraction per sign from ``visible`` (0..1, may be NaN) and ``occluded`` flags."""
    occluded = np.asarray(occluded, dtype=bool)
    visible = np.asarray(visible, dtype=float)
    guess = np.where(occluded, OCCLUDED_HIDDEN, 0.0)
    return np.where(np.isfinite(visible), np.clip(1.0 - visible, 0.0, 1.0), guess)


def _annotation_hidden(annotations) -> np.ndarray:
    return _hidden_fraction([np.nan if a.get("visible") is None else a["visible"] for a in annotations],
                            [bool(a.get("occluded", False)) for a in annotations]).reshape(-1)


def _as_truth(true_boxes) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(xywh, labels, hidden fraction) from a frame with ``x, y, w, h, label[, occluded, visible]`` or
    ``(x, y, w, h, label)`` tuples."""
    if isinstance(true_boxes, pd.DataFrame):
        xywh = true_boxes[["x", "y", "w", "h"]].to_numpy(dtype=float)
        labels = true_boxes["label"].astype(str).tolist() if "label" in true_boxes else [CLASS_NAMES[0]] * len(xywh)
        n = len(xywh)
        occluded = (true_boxes["occluded"].fillna(False).astype(bool).to_numpy() if "occluded" in true_boxes
                    else np.zeros(n, bool))
        visible = (pd.to_numeric(true_boxes["visible"], errors="coerce").to_numpy(dtype=float)
                   if "visible" in true_boxes else np.full(n, np.nan))
        return xywh.reshape(-1, 4), labels, _hidden_fraction(visible, occluded).reshape(-1)
    rows = list(true_boxes or [])
    xywh = np.array([r[:4] for r in rows], dtype=float).reshape(-1, 4)
    labels = [str(r[4]) if len(r) > 4 and r[4] is not None else CLASS_NAMES[0] for r in rows]
    return xywh, labels, np.zeros(len(rows))


def draw_boxes(profile: WorkerProfile, true_boxes, width: float, height: float,
               rng: np.random.Generator) -> list[tuple[float, float, float, float, str]]:
    """What ``profile`` draws on an image of ``width`` x ``height`` px with ``true_boxes``.

    ``true_boxes``: a frame with ``x, y, w, h, label`` (optional ``occluded``, ``visible``) or ``(x, y, w, h, label)``
    tuples. Returns ``(x, y, w, h, label)`` pixel boxes: the true boxes it saw (noisy, possibly relabelled
    or grossly wrong), then its false positives / random boxes.
    """
    xywh, labels, hidden = _as_truth(true_boxes)
    table, confusion = _label_table(labels)
    code = {name: i for i, name in enumerate(table)}
    params = _params([profile])
    n = len(xywh)
    kept, boxes, codes = _drawn_for_true_boxes(
        xywh, np.array([code[x] for x in labels], dtype=int), hidden, np.full(n, float(width)),
        np.full(n, float(height)), np.zeros(n, int), params, confusion, rng)
    _, extra, extra_codes = _extra_boxes(np.zeros(1, int), np.array([float(width)]), np.array([float(height)]),
                                         params, len(CLASS_NAMES), rng)
    out = [(*map(float, b), table[c]) for b, c in zip(boxes[kept], codes[kept])]
    out += [(*map(float, b), table[c]) for b, c in zip(extra, extra_codes)]
    return out


# ---------------------------------------------------------------------------------------- verification

def true_verdict(outlines_px, true_boxes, width: float, height: float) -> tuple[str, str]:
    """What a perfect verifier answers for ``outlines_px`` (``(x, y, w, h[, label])`` px) on this image.

    BAD reasons, in this order: ``missed_sign`` (a true sign whose shorter side is at least
    :data:`NOTICEABLE_PX` has no outline on it), ``wrong_object`` (an outline on no sign), ``loose_box``
    (IoU with its sign < :data:`LOOSE_IOU`), ``wrong_class`` (the outline's label is not the sign's).
    Outlines are paired one-to-one with signs they overlap (IoU >= :data:`ON_OBJECT_IOU`).
    """
    from crowdboxes.evaluation import match_image

    true_xywh, true_labels, _ = _as_truth(true_boxes)
    rows = list(outlines_px or [])
    out_xywh = np.array([r[:4] for r in rows], dtype=float).reshape(-1, 4)
    out_labels = [r[4] if len(r) > 4 else None for r in rows]
    pi, ti, ious = match_image(out_xywh, true_xywh, threshold=ON_OBJECT_IOU)
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


def judge_outlines(profile: WorkerProfile, outlines_px, true_boxes, width: float, height: float,
                   rng: np.random.Generator) -> tuple[str, str]:
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


# ----------------------------------------------------------------------------------------------- time

def seconds_for(profile: WorkerProfile, n_tasks: int, rng: np.random.Generator, kind: str = "detection",
                n_boxes: int | None = None) -> float:
    """Working seconds ``profile`` needs for ``n_tasks`` tasks (a suite) of ``kind`` detection|verification.

    Detection: :data:`SECONDS_PER_IMAGE` per image plus :data:`SECONDS_PER_BOX` per box drawn (``n_boxes``
    in total; :data:`EXPECTED_BOXES_PER_TASK` per task when unknown). Verification: U(3, 9) s per judgement.
    Times ``profile.speed`` and a log-normal day-to-day factor (sd 0.25).
    """
    n_tasks = max(int(n_tasks), 0)
    if n_tasks == 0:
        return 0.0
    if kind == "verification":
        base = float(rng.uniform(*VERIFY_SECONDS, n_tasks).sum())
    elif kind == "detection":
        boxes = EXPECTED_BOXES_PER_TASK * n_tasks if n_boxes is None else max(int(n_boxes), 0)
        base = SECONDS_PER_IMAGE * n_tasks + SECONDS_PER_BOX * boxes
    else:
        raise ValueError(f"task kind {kind!r}: expected 'detection' or 'verification'")
    return float(base * profile.speed * np.exp(rng.normal(0.0, 0.25)))


# ------------------------------------------------------------------------------------ the online crowd

def _stable_int(*parts) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


class Crowd:
    """Answers tasks for the local Toloka: fetches the task's image, finds its truth, draws or judges.

    ``truth_index``: a :class:`crowdboxes.truth.TruthIndex` (or a COCO truth dict). Randomness is
    derived from ``(seed, worker, image URL, task input, n-th time this worker sees it)``, so answers do not
    depend on the order in which the scheduler hands out tasks.
    """

    FETCH_TIMEOUT = 5.0
    CACHE_SIZE = 4096

    def __init__(self, truth_index, seed: int = 0):
        from crowdboxes.truth import TruthIndex

        if truth_index is None:  # no ground truth: every image is "no sign here"
            truth_index = {"images": [], "annotations": []}
        self.truth = truth_index if isinstance(truth_index, TruthIndex) else TruthIndex(truth_index)
        self.seed = int(seed)
        # boxes_frame rows follow the COCO annotation order; ``occluded``/``visible`` are annotation keys
        annotations = self.truth.coco.get("annotations", [])
        self._hidden = _annotation_hidden(annotations)
        self._images: OrderedDict[str, tuple[str, int, int]] = OrderedDict()  # url -> (sha256, w, h)
        self._seen: dict[tuple, int] = {}
        self._lock = threading.Lock()

    # -- image loading
    def _fetch_bytes(self, url: str) -> bytes | None:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        try:
            if scheme == "file":
                with urllib.request.urlopen(url, timeout=self.FETCH_TIMEOUT) as response:  # noqa: S310 - file only
                    return response.read()
            if scheme in ("http", "https"):
                import requests

                with requests.Session() as session:
                    # a proxy from the environment must not swallow loopback requests (local S3, tests)
                    host = (urllib.parse.urlsplit(url).hostname or "").lower()
                    session.trust_env = host not in ("127.0.0.1", "localhost", "::1")
                    response = session.get(url, timeout=self.FETCH_TIMEOUT)
                    return response.content if response.status_code == 200 else None
        except Exception:  # any network/file failure means "the worker could not load the image"
            return None
        return None

    def image_info(self, url: str) -> tuple[str, int, int] | None:
        """``(sha256, width, height)`` of the image at ``url``; None if it does not load or decode.

        Successful loads are cached per URL (a failure is retried next time: it may be transient).
        """
        with self._lock:
            if url in self._images:
                self._images.move_to_end(url)
                return self._images[url]
        data = self._fetch_bytes(url)
        if not data:
            return None
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                image.load()  # a truncated file fails here, not in open()
                size = image.size
        except Exception:
            return None
        info = (hashlib.sha256(data).hexdigest(), int(size[0]), int(size[1]))
        with self._lock:
            self._images[url] = info
            while len(self._images) > self.CACHE_SIZE:
                self._images.popitem(last=False)
        return info

    def _truth_for(self, url: str, sha256: str):
        found = self.truth.lookup(sha256=sha256, file_name=url)
        if found is None:
            return None
        width, height, rows = found
        if "visible" not in rows.columns and len(self._hidden) == len(self.truth.boxes):
            rows = rows.assign(visible=1.0 - self._hidden[rows.index.to_numpy()])
        return float(width), float(height), rows

    def _rng(self, profile: WorkerProfile, task_input: dict) -> np.random.Generator:
        key = (profile.worker_id, json.dumps(task_input, sort_keys=True, default=str))
        with self._lock:
            nth = self._seen.get(key, 0)
            self._seen[key] = nth + 1
        return np.random.default_rng([self.seed, _stable_int(*key), nth])

    # -- answering
    def solve(self, profile: WorkerProfile, task_input: dict) -> dict | None:
        """``output_values`` of ``profile`` for a task, or None if the image cannot be loaded.

        A task with ``outlines`` is a verification (``{"verdict", "reason"}``), else a detection
        (``{"result": [rectangles normalised 0..1 with "label"]}``). An image the truth does not know has no
        signs as far as the crowd is concerned: detection says so with an empty list (no false positives
        either), verification judges the outlines against no signs.
        """
        url = str(task_input.get("image") or "")
        info = self.image_info(url) if url else None
        if info is None:
            return None
        sha256, img_w, img_h = info
        found = self._truth_for(url, sha256)
        rng = self._rng(profile, task_input)
        if "outlines" in task_input:
            width, height, rows = found if found is not None else (float(img_w), float(img_h), None)
            outlines = _parse_outlines(task_input["outlines"], width, height)
            verdict, reason = judge_outlines(profile, outlines, rows if rows is not None else [], width, height, rng)
            return {"verdict": verdict, "reason": reason}
        if found is None:
            return {"result": []}
        width, height, rows = found
        drawn = draw_boxes(profile, rows, width, height, rng)
        return {"result": to_image_annotation(drawn, width, height)}


def to_image_annotation(boxes_px, width: float, height: float) -> list[dict]:
    """``(x, y, w, h, label)`` pixel boxes as Toloka ``field.image-annotation`` rectangles (0..1)."""
    if not boxes_px:
        return []
    norm = pixels_to_normalized([b[:4] for b in boxes_px], width, height)
    out = []
    for (left, top, w, h), box in zip(norm, boxes_px):
        left, top = min(max(left, 0.0), 1.0), min(max(top, 0.0), 1.0)
        out.append({"shape": "rectangle", "left": round(left, 6), "top": round(top, 6),
                    "width": round(min(w, 1.0 - left), 6), "height": round(min(h, 1.0 - top), 6),
                    "label": str(box[4])})
    return out


def _parse_outlines(outlines, width: float, height: float) -> list[tuple]:
    """Rectangles of a verification task's ``outlines`` (list or JSON string) as pixel tuples."""
    if isinstance(outlines, str):
        try:
            outlines = json.loads(outlines) if outlines.strip() else []
        except json.JSONDecodeError:
            outlines = []
    rows = []
    for shape in outlines or []:
        if not isinstance(shape, dict) or shape.get("shape", "rectangle") != "rectangle":
            continue
        try:
            box = [float(shape[k]) for k in ("left", "top", "width", "height")]
        except (KeyError, TypeError, ValueError):
            continue
        rows.append((*normalized_to_pixels([box], width, height)[0], shape.get("label")))
    return rows


# -------------------------------------------------------------------------------- bulk simulation

def simulate_answers(truth_coco: dict, workforce: list[WorkerProfile], drawers_per_image: int,
                     seed: int) -> pd.DataFrame:
    """Detection answers of ``drawers_per_image`` distinct workers per truth image, as answers.csv rows.

    Columns :data:`crowdboxes.artifacts.ANSWERS` (pixels; ``image_id`` is the truth's image id;
    ``task_id`` one per image; ``status`` ACCEPTED). A worker who drew nothing has one row with empty
    ``label, x, y, w, h``. Vectorised over all (worker, true box) pairs.
    """
    n_workers = len(workforce)
    k = int(drawers_per_image)
    if k < 1 or k > n_workers:
        raise ValueError(f"drawers_per_image={drawers_per_image}: need 1..{n_workers} (the workforce size)")
    rng = np.random.default_rng([int(seed), 0xA11])
    images = truth_coco["images"]
    n_img = len(images)
    if n_img == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("x", "y", "w", "h") else object) for c in ANSWERS.columns})
    image_ids = np.array([im["id"] for im in images], dtype=object)
    img_w = np.array([float(im["width"]) for im in images])
    img_h = np.array([float(im["height"]) for im in images])
    position = {im["id"]: i for i, im in enumerate(images)}

    cats = {c["id"]: c["name"] for c in truth_coco.get("categories", [])}
    anns = truth_coco["annotations"]
    ann_labels = [cats.get(a["category_id"], str(a["category_id"])) for a in anns]
    labels, confusion = _label_table(ann_labels)
    code = {name: i for i, name in enumerate(labels)}
    ann_img = np.array([position[a["image_id"]] for a in anns], dtype=np.int64)
    ann_xywh = np.array([a["bbox"] for a in anns], dtype=float).reshape(-1, 4)
    ann_code = np.array([code[x] for x in ann_labels], dtype=np.int64)
    ann_hidden = _annotation_hidden(anns)
    order = np.argsort(ann_img, kind="stable")
    ann_img, ann_xywh, ann_code, ann_hidden = ann_img[order], ann_xywh[order], ann_code[order], ann_hidden[order]
    per_image = np.bincount(ann_img, minlength=n_img)
    first_ann = np.cumsum(per_image) - per_image

    # k distinct workers per image: the k smallest of n random keys
    keys = rng.random((n_img, n_workers))
    chosen = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < n_workers else np.tile(np.arange(n_workers), (n_img, 1))
    a_img = np.repeat(np.arange(n_img), k)
    a_worker = chosen.reshape(-1)
    n_assign = len(a_img)
    params = _params(workforce)

    # every (assignment, true box of its image) pair
    counts = per_image[a_img]
    p_assign = np.repeat(np.arange(n_assign), counts)
    offset = np.arange(len(p_assign)) - np.repeat(np.cumsum(counts) - counts, counts)
    p_ann = first_ann[a_img][p_assign] + offset
    kept, boxes, codes = _drawn_for_true_boxes(
        ann_xywh[p_ann], ann_code[p_ann], ann_hidden[p_ann], img_w[a_img][p_assign], img_h[a_img][p_assign],
        a_worker[p_assign], params, confusion, rng)
    e_assign, e_boxes, e_codes = _extra_boxes(a_worker, img_w[a_img], img_h[a_img], params, len(CLASS_NAMES), rng)

    row_assign = np.concatenate([p_assign[kept], e_assign])
    row_boxes = np.vstack([boxes[kept], e_boxes])
    row_codes = np.concatenate([codes[kept], e_codes])
    # assignments with no box at all still leave one row (the worker saw the image)
    drew = np.bincount(row_assign, minlength=n_assign) > 0
    empty = np.flatnonzero(~drew)
    row_assign = np.concatenate([row_assign, empty])
    row_boxes = np.vstack([row_boxes, np.full((len(empty), 4), np.nan)])
    row_codes = np.concatenate([row_codes, np.full(len(empty), -1)])
    sort = np.argsort(row_assign, kind="stable")
    row_assign, row_boxes, row_codes = row_assign[sort], np.round(row_boxes[sort], 2), row_codes[sort]

    label_arr = np.array(list(labels) + [None], dtype=object)
    worker_ids = np.array([w.worker_id for w in workforce], dtype=object)
    width = max(6, len(str(n_assign)))
    # submission times: each image's k answers arrive over the first hours of a pool, in assignment order
    start = pd.Timestamp("2026-01-01T08:00:00Z")
    offsets = np.sort(rng.uniform(0, 6 * 3600, n_assign))
    submitted = (start + pd.to_timedelta(offsets, unit="s")).strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3]
    submitted = np.asarray(submitted, dtype=object)
    assign_ids = np.char.add("a", np.char.zfill(np.arange(1, n_assign + 1).astype(str), width)).astype(object)
    task_ids = np.char.add("t", np.char.zfill(np.arange(1, n_img + 1).astype(str), width)).astype(object)
    frame = pd.DataFrame({
        "assignment_id": assign_ids[row_assign],
        "task_id": task_ids[a_img[row_assign]],
        "image_id": image_ids[a_img[row_assign]],
        "worker_id": worker_ids[a_worker[row_assign]],
        "status": "ACCEPTED",
        "submitted_at": submitted[row_assign],
        "label": label_arr[row_codes],
        "x": row_boxes[:, 0], "y": row_boxes[:, 1], "w": row_boxes[:, 2], "h": row_boxes[:, 3],
    })
    return frame[list(ANSWERS.columns)]
