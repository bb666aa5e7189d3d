"""The drawing kernel: what a simulated worker draws on an image with known boxes.

Parameters follow box-aggregation.md section 5.3 (see :mod:`crowdboxes.local_toloka.crowd`).
:func:`simulate_answers` is the vectorised bulk version (answers.csv rows) for the aggregation benchmark;
:func:`draw_boxes` runs the same kernel for one worker and one image, so both agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import numpy as np
import pandas as pd

from crowdboxes.local_toloka.crowd.classes import CLASS_NAMES, RELATED_CLASSES, RELATED_SHARE
from crowdboxes.local_toloka.crowd.matching import to_normalised
from crowdboxes.local_toloka.crowd.workers import WorkerProfile


# answers.csv columns (the product's ANSWERS contract; a test checks they agree)
ANSWER_COLUMNS = ("assignment_id", "task_id", "image_id", "worker_id", "status", "submitted_at", "label",
                  "x", "y", "w", "h")

SMALL_PX = 32.0  # sqrt(area) below this is COCO "small"
# The pixel floor was measured on ~640 px COCO images. A smaller image is enlarged on screen, so its floor
# in image pixels shrinks (down to half); a larger one is zoomed into, so it stays.
DISPLAY_PX = 640.0
DISPLAY_SCALE_RANGE = (0.5, 1.0)
RIGHT_BOTTOM_NOISE = 1.4  # right/bottom edges are ~40 % noisier (drag direction)
SMALL_GROSS_FACTOR = 2.5  # 4 % gross errors -> 10 % for small signs
HIDDEN_MISS_SLOPE = 2.5  # miss probability x (1 + 2.5 * hidden fraction)
OCCLUDED_HIDDEN = 0.2  # hidden fraction assumed for ``occluded`` without ``visible`` (-> x1.5)


# ----------------------------------------------------------------------------------- the drawing kernel

def _label_table(extra_labels: Iterable[Any] = ()) -> tuple[list[str], np.ndarray]:
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


def _random_rects(img_w: np.ndarray, img_h: np.ndarray, small_share: float | np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
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


def _drawn_for_true_boxes(true_xywh: np.ndarray, true_code: np.ndarray, hidden: np.ndarray, img_w: np.ndarray,
                          img_h: np.ndarray, worker: np.ndarray, params: dict[str, np.ndarray], confusion: np.ndarray,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _extra_boxes(assign_worker: np.ndarray, assign_w: np.ndarray, assign_h: np.ndarray, params: dict[str, np.ndarray],
                 n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _hidden_fraction(visible: Any, occluded: Any) -> np.ndarray:
    """Hidden fraction per sign from ``visible`` (0..1, may be NaN) and ``occluded`` flags."""
    occluded = np.asarray(occluded, dtype=bool)
    visible = np.asarray(visible, dtype=float)
    guess = np.where(occluded, OCCLUDED_HIDDEN, 0.0)
    return np.where(np.isfinite(visible), np.clip(1.0 - visible, 0.0, 1.0), guess)


def _annotation_hidden(annotations: Sequence[dict[str, Any]]) -> np.ndarray:
    return _hidden_fraction([np.nan if a.get("visible") is None else a["visible"] for a in annotations],
                            [bool(a.get("occluded", False)) for a in annotations]).reshape(-1)


def _as_truth(true_boxes: Any) -> tuple[np.ndarray, list[str], np.ndarray]:
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


def draw_boxes(profile: WorkerProfile, true_boxes: Any, width: float, height: float,
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


def normalised_rects(boxes_px: Sequence[Sequence[Any]], width: float, height: float) -> list[dict]:
    """``(x, y, w, h[, label])`` pixel boxes as ``{"left", "top", "width", "height"[, "label"]}`` in 0..1 of
    the image, cut to the image and rounded to 6 digits."""
    if not boxes_px:
        return []
    norm = to_normalised([b[:4] for b in boxes_px], width, height)
    out = []
    for (left, top, w, h), box in zip(norm, boxes_px):
        left, top = min(max(left, 0.0), 1.0), min(max(top, 0.0), 1.0)
        rect = {"left": round(left, 6), "top": round(top, 6),
                "width": round(min(w, 1.0 - left), 6), "height": round(min(h, 1.0 - top), 6)}
        if len(box) > 4 and box[4] is not None:
            rect["label"] = str(box[4])
        out.append(rect)
    return out


def to_image_annotation(boxes_px: Sequence[Sequence[Any]], width: float, height: float) -> list[dict]:
    """``(x, y, w, h, label)`` pixel boxes as Toloka ``field.image-annotation`` rectangles (0..1)."""
    return [{"shape": "rectangle", **rect} for rect in normalised_rects(boxes_px, width, height)]


# -------------------------------------------------------------------------------- bulk simulation

@attrs.frozen
class TruthArrays:
    """A COCO truth as arrays for the bulk simulators: images by position, annotations sorted by image."""

    image_ids: np.ndarray  # truth image ids (object), by position
    img_w: np.ndarray
    img_h: np.ndarray
    position: dict  # image id -> position; str(image id) too, so ids read back from CSV text still match
    labels: list  # label universe of the kernel (:func:`_label_table`)
    confusion: np.ndarray
    ann_img: np.ndarray  # position of each annotation's image (sorted)
    ann_xywh: np.ndarray
    ann_code: np.ndarray  # index into ``labels``
    ann_hidden: np.ndarray
    per_image: np.ndarray  # annotations per image position
    first_ann: np.ndarray  # index of each image's first annotation

    @classmethod
    def of(cls, truth_coco: dict) -> TruthArrays:
        images = truth_coco["images"]
        image_ids = np.array([im["id"] for im in images], dtype=object)
        position: dict[Any, int] = {str(im["id"]): i for i, im in enumerate(images)}
        position.update({im["id"]: i for i, im in enumerate(images)})
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
        per_image = np.bincount(ann_img[order], minlength=len(images))
        return cls(image_ids=image_ids, img_w=np.array([float(im["width"]) for im in images]),
                   img_h=np.array([float(im["height"]) for im in images]), position=position, labels=labels,
                   confusion=confusion, ann_img=ann_img[order], ann_xywh=ann_xywh[order], ann_code=ann_code[order],
                   ann_hidden=ann_hidden[order], per_image=per_image, first_ann=np.cumsum(per_image) - per_image)

    def positions(self, image_ids: Iterable[Any], where: str) -> np.ndarray:
        """Positions of ``image_ids`` (truth ids or their text); ValueError naming the first unknown one."""
        out = []
        for image_id in image_ids:
            at = self.position.get(image_id, self.position.get(str(image_id)))
            if at is None:
                raise ValueError(f"{where}: image {image_id!r} is not in the truth")
            out.append(at)
        return np.array(out, dtype=np.int64)


def _empty_answers() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=float if c in ("x", "y", "w", "h") else object) for c in ANSWER_COLUMNS})


def _bulk_drawings(t: TruthArrays, workforce: list[WorkerProfile], a_img: np.ndarray, a_worker: np.ndarray,
                   rng: np.random.Generator, ann_active: np.ndarray | None = None,
                   fp_share: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel over assignments ``(image position, worker index)``: ``(assignment, box, label code)`` per
    drawn box (code -1 and a NaN box: an assignment that drew nothing), sorted by assignment.

    ``ann_active``: the annotations the workers may draw (default all); ``fp_share`` scales false positives.
    """
    n_assign = len(a_img)
    params = _params(workforce)
    if fp_share != 1.0:
        params["fp_rate"] = params["fp_rate"] * fp_share
    # every (assignment, true box of its image) pair
    counts = t.per_image[a_img]
    p_assign = np.repeat(np.arange(n_assign), counts)
    offset = np.arange(len(p_assign)) - np.repeat(np.cumsum(counts) - counts, counts)
    p_ann = t.first_ann[a_img][p_assign] + offset
    if ann_active is not None:
        active = ann_active[p_ann]
        p_assign, p_ann = p_assign[active], p_ann[active]
    kept, boxes, codes = _drawn_for_true_boxes(
        t.ann_xywh[p_ann], t.ann_code[p_ann], t.ann_hidden[p_ann], t.img_w[a_img][p_assign],
        t.img_h[a_img][p_assign], a_worker[p_assign], params, t.confusion, rng)
    e_assign, e_boxes, e_codes = _extra_boxes(a_worker, t.img_w[a_img], t.img_h[a_img], params, len(CLASS_NAMES), rng)

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
    return row_assign[sort], np.round(row_boxes[sort], 2), row_codes[sort]


def _answer_frame(t: TruthArrays, workforce: list[WorkerProfile], a_img: np.ndarray, a_worker: np.ndarray,
                  drawn: tuple[np.ndarray, np.ndarray, np.ndarray], rng: np.random.Generator, *, prefix: str = "",
                  start: str = "2026-01-01T08:00:00Z") -> pd.DataFrame:
    """answers.csv rows of :func:`_bulk_drawings`' output. Ids: ``{prefix}a000001`` per assignment,
    ``{prefix}t000001`` per distinct image; submissions spread over 6 hours from ``start``."""
    row_assign, row_boxes, row_codes = drawn
    n_assign = len(a_img)
    label_arr = np.array(list(t.labels) + [None], dtype=object)
    worker_ids = np.array([w.worker_id for w in workforce], dtype=object)
    width = max(6, len(str(n_assign)))
    # submission times: each image's answers arrive over the first hours of a pool, in assignment order
    offsets = np.sort(rng.uniform(0, 6 * 3600, n_assign))
    submitted = (pd.Timestamp(start) + pd.to_timedelta(offsets, unit="s")).strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3]
    submitted = np.asarray(submitted, dtype=object)
    assign_ids = np.char.add(prefix + "a", np.char.zfill(np.arange(1, n_assign + 1).astype(str), width)).astype(object)
    task_ids = np.char.add(prefix + "t", np.char.zfill(np.arange(1, len(t.image_ids) + 1).astype(str),
                                                       width)).astype(object)
    frame = pd.DataFrame({
        "assignment_id": assign_ids[row_assign],
        "task_id": task_ids[a_img[row_assign]],
        "image_id": t.image_ids[a_img[row_assign]],
        "worker_id": worker_ids[a_worker[row_assign]],
        "status": "ACCEPTED",
        "submitted_at": submitted[row_assign],
        "label": label_arr[row_codes],
        "x": row_boxes[:, 0], "y": row_boxes[:, 1], "w": row_boxes[:, 2], "h": row_boxes[:, 3],
    })
    return frame[list(ANSWER_COLUMNS)]


def simulate_answers(truth_coco: dict, workforce: list[WorkerProfile], drawers_per_image: int,
                     seed: int) -> pd.DataFrame:
    """Detection answers of ``drawers_per_image`` distinct workers per truth image, as answers.csv rows.

    Columns :data:`ANSWER_COLUMNS` (answers.csv) (pixels; ``image_id`` is the truth's image id;
    ``task_id`` one per image; ``status`` ACCEPTED). A worker who drew nothing has one row with empty
    ``label, x, y, w, h``. Vectorised over all (worker, true box) pairs.
    """
    n_workers = len(workforce)
    k = int(drawers_per_image)
    if k < 1 or k > n_workers:
        raise ValueError(f"drawers_per_image={drawers_per_image}: need 1..{n_workers} (the workforce size)")
    rng = np.random.default_rng([int(seed), 0xA11])
    n_img = len(truth_coco["images"])
    if n_img == 0:
        return _empty_answers()
    t = TruthArrays.of(truth_coco)
    # k distinct workers per image: the k smallest of n random keys
    keys = rng.random((n_img, n_workers))
    chosen = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < n_workers else np.tile(np.arange(n_workers), (n_img, 1))
    a_img = np.repeat(np.arange(n_img), k)
    a_worker = chosen.reshape(-1)
    drawn = _bulk_drawings(t, workforce, a_img, a_worker, rng)
    return _answer_frame(t, workforce, a_img, a_worker, drawn, rng)
