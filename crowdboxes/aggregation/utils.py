"""Helpers shared by the box aggregators: input validation, clipping, grouping by image, matching across workers.

Everything here works on whole arrays: answers are sorted by (image, worker, input row) once, images are then
contiguous slices described by ``offsets`` (image ``g`` owns rows ``offsets[g]:offsets[g+1]``), and per-image
work is done with ``np.bincount`` / sorting over all images at once instead of a Python loop per image.
"""

from __future__ import annotations

from collections.abc import Callable

import attr
import numpy as np
import pandas as pd

from crowdboxes.geometry import clip_to_image

__all__ = [
    "ANSWER_COLUMNS",
    "MISSED_SIGNS_ROUND",
    "Problem",
    "PreparedAnswers",
    "prepare_answers",
    "first_round",
    "paired_iou",
    "candidate_pairs",
    "cluster_boxes",
    "group_offsets",
    "majority_label",
    "agreement_skills",
    "aggregated_boxes",
    "empty_aggregated_boxes",
]

ANSWER_COLUMNS = ("image_id", "worker", "x", "y", "w", "h", "label")
#: ``round`` value of the drawings of a missed-sign task (the worker saw the current boxes, added what is missing);
#: any other value, or no ``round`` column, means a first-round drawing.
MISSED_SIGNS_ROUND = "missed_signs"
BOX_COLUMNS = ("image_id", "label", "x", "y", "w", "h", "score", "support")
_COORDS = ("x", "y", "w", "h")
#: A rejected input row: ``(0-based row number in the answers frame, reason)``.
Problem = tuple[int, str]


@attr.s(slots=True)
class PreparedAnswers:
    """Valid answer boxes as arrays, sorted by (image, worker, input row).

    ``image`` / ``worker`` / ``label`` are integer codes into ``image_names`` / ``worker_names`` /
    ``label_names`` (labels sorted by name, so "first label" in a tie rule means alphabetically first).
    ``seen_image`` / ``seen_worker`` list every (image, worker) pair that answered the image, including workers
    who drew nothing (rows rejected as problems do not count); ``n_seen[g]`` is how many workers answered
    image ``g``. ``later`` (per box) and ``seen_later`` (per seen pair) flag the missed-sign round
    (``round == "missed_signs"``); a worker with first-round rows on an image counts as a first-round answer.
    """

    image: np.ndarray = attr.ib()
    worker: np.ndarray = attr.ib()
    boxes: np.ndarray = attr.ib()  # (n, 4) pixels x, y, w, h, clipped when image sizes were given
    label: np.ndarray = attr.ib()
    row: np.ndarray = attr.ib()  # 0-based position of the box in the input frame
    offsets: np.ndarray = attr.ib()  # (n_images + 1,) box offsets per image
    image_names: pd.Index = attr.ib()
    worker_names: pd.Index = attr.ib()
    label_names: np.ndarray = attr.ib()
    seen_image: np.ndarray = attr.ib()
    seen_worker: np.ndarray = attr.ib()
    n_seen: np.ndarray = attr.ib()
    problems: list[Problem] = attr.ib()
    later: np.ndarray = attr.ib(factory=lambda: np.zeros(0, dtype=bool))
    seen_later: np.ndarray = attr.ib(factory=lambda: np.zeros(0, dtype=bool))

    @property
    def n_boxes(self) -> int:
        """Valid boxes."""
        return len(self.image)

    @property
    def n_images(self) -> int:
        """Images answered by at least one worker (with or without a box)."""
        return len(self.image_names)

    @property
    def n_workers(self) -> int:
        """Workers with at least one usable answer."""
        return len(self.worker_names)


def _problem(problems: list[Problem], rows: np.ndarray, mask: np.ndarray,
             reason: str | Callable[[np.ndarray], list[str]]) -> np.ndarray:
    """Record ``reason`` (a string or a per-row array of strings) for the rows in ``mask``; returns ``mask``."""
    if mask.any():
        idx = np.flatnonzero(mask)
        reasons = [reason] * len(idx) if isinstance(reason, str) else reason(idx)
        problems.extend(zip(rows[idx].tolist(), reasons))
    return mask


def prepare_answers(answers: pd.DataFrame, images: pd.DataFrame | None = None) -> PreparedAnswers:
    """Validate ``answers`` and turn them into sorted arrays; bad rows become ``problems``, never exceptions.

    Args:
        answers: long frame with ``image_id, worker, x, y, w, h, label``; a row whose four coordinates are all
            NaN means "the worker saw the image and drew nothing".
        images: optional frame with ``image_id, width, height``; when given, boxes are clipped to the image and
            answers for images not listed are rejected as unknown image ids.

    Returns:
        PreparedAnswers. ``problems`` lists ``(row_number, reason)`` with ``row_number`` the 0-based position in
        ``answers`` (add 2 for the line of a CSV file with a header), sorted by row.

    Raises:
        ValueError: only for a missing column (a schema error, not a row error).
    """
    missing = [c for c in ANSWER_COLUMNS if c not in answers.columns]
    if missing:
        raise ValueError(f"answers lack column(s) {', '.join(missing)}; need {', '.join(ANSWER_COLUMNS)}")
    n = len(answers)
    rows = np.arange(n)
    problems: list[Problem] = []
    image = answers["image_id"].to_numpy()
    worker = answers["worker"].to_numpy()
    bad = _problem(problems, rows, pd.isna(image), "missing image id")
    bad |= _problem(problems, rows, pd.isna(worker) & ~bad, "missing worker id")

    sizes = None
    if images is not None:
        for col in ("image_id", "width", "height"):
            if col not in images.columns:
                raise ValueError(f"images lack column {col!r}; need image_id, width, height")
        images = images.drop_duplicates("image_id", keep="first")
        known = pd.Index(images["image_id"])
        pos = known.get_indexer(pd.Index(image))
        unknown = (pos < 0) & ~bad
        if unknown.any():
            _problem(problems, rows, unknown, lambda idx: [f"unknown image id {image[r]!r}" for r in idx])
        bad |= unknown
        width = pd.to_numeric(images["width"], errors="coerce").to_numpy(dtype=np.float64)
        height = pd.to_numeric(images["height"], errors="coerce").to_numpy(dtype=np.float64)
        sizes = (pos, width, height)

    seen = ~bad  # rows of a known image by a known worker; narrowed to usable rows below
    coords = np.empty((n, 4), dtype=np.float64)
    nonnum = np.zeros(n, dtype=bool)
    for k, col in enumerate(_COORDS):
        raw = answers[col]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        m = seen & np.isnan(num) & raw.notna().to_numpy() & ~nonnum
        _problem(problems, rows, m, f"non-numeric {col}")
        nonnum |= m
        coords[:, k] = num
    bad |= nonnum
    nan = np.isnan(coords)
    empty = nan.all(axis=1) & ~nonnum
    partial = seen & ~bad & nan.any(axis=1) & ~empty
    _problem(problems, rows, partial,
             lambda idx: [f"NaN in {', '.join(c for c, m in zip(_COORDS, nan[r]) if m)}" for r in idx])
    bad |= partial
    live = seen & ~nan.any(axis=1)
    bad |= _problem(problems, rows, live & ~np.isfinite(coords).all(axis=1), "infinite coordinate")
    live &= ~bad
    bad |= _problem(problems, rows, live & ((coords[:, 2] < 0) | (coords[:, 3] < 0)), "negative width or height")
    live &= ~bad
    bad |= _problem(problems, rows, live & ((coords[:, 2] == 0) | (coords[:, 3] == 0)), "zero-size box")
    live &= ~bad
    label = answers["label"].to_numpy()
    bad |= _problem(problems, rows, live & pd.isna(label), "box without a label")
    live &= ~bad

    if sizes is not None:
        pos, width, height = sizes
        p = pos[live]
        wi, hi = width[p], height[p]
        ok_size = np.isfinite(wi) & np.isfinite(hi) & (wi > 0) & (hi > 0)
        # Only images with a usable size are clipped; the rest keep the boxes as drawn.
        idx = np.flatnonzero(live)[ok_size]
        if len(idx):
            clipped = _clip_many(coords[idx], wi[ok_size], hi[ok_size])
            coords[idx] = clipped
            outside = np.zeros(n, dtype=bool)
            outside[idx] = (clipped[:, 2] <= 0) | (clipped[:, 3] <= 0)
            bad |= _problem(problems, rows, outside, "box outside the image")
            live &= ~outside

    # A worker answered an image when it has a usable box or an explicit "nothing" row there; rejected rows
    # say nothing (they are neither a vote for nor against an object). Empty images still get a code.
    seen = live | (empty & ~bad)
    image_codes, image_names = pd.factorize(pd.Series(image[seen]), sort=False)
    worker_codes, worker_names = pd.factorize(pd.Series(worker[seen]), sort=False)
    i_all = np.full(n, -1, dtype=np.int64)
    w_all = np.full(n, -1, dtype=np.int64)
    i_all[seen] = image_codes
    w_all[seen] = worker_codes
    n_images, n_workers = len(image_names), len(worker_names)

    if "round" in answers.columns:
        later_all = answers["round"].astype(str).str.strip().to_numpy() == MISSED_SIGNS_ROUND
    else:
        later_all = np.zeros(n, dtype=bool)
    pair, pair_of_row = np.unique(i_all[seen] * max(n_workers, 1) + w_all[seen], return_inverse=True)
    seen_image = pair // max(n_workers, 1)
    seen_worker = pair % max(n_workers, 1)
    # a pair is a missed-sign answer only when none of its rows is a first-round drawing
    seen_later = np.bincount(pair_of_row, weights=(~later_all[seen]).astype(np.float64), minlength=len(pair)) == 0
    n_seen = np.bincount(seen_image, minlength=n_images)

    bi, bw = i_all[live], w_all[live]
    label_codes, label_names = pd.factorize(pd.Series(label[live]).astype(str), sort=True)
    brow = rows[live]
    order = np.lexsort((brow, bw, bi))
    bi, bw, brow = bi[order], bw[order], brow[order]
    boxes = coords[live][order]
    label_codes = np.asarray(label_codes, dtype=np.int64)[order]
    later = later_all[live][order]
    offsets = group_offsets(bi, n_images)
    problems.sort(key=lambda p: p[0])
    return PreparedAnswers(image=bi, worker=bw, boxes=boxes, label=label_codes, row=brow, offsets=offsets,
                           image_names=pd.Index(image_names), worker_names=pd.Index(worker_names),
                           label_names=np.asarray(label_names, dtype=object), seen_image=seen_image,
                           seen_worker=seen_worker, n_seen=n_seen, problems=problems, later=later,
                           seen_later=seen_later)


def first_round(prep: PreparedAnswers) -> PreparedAnswers:
    """The first-round part of ``prep`` (missed-sign rows and answers left out), with the same image, worker
    and label codes: what the model saw when the missed-sign round was chosen and drawn."""
    later = prep.later if len(prep.later) == prep.n_boxes else np.zeros(prep.n_boxes, dtype=bool)
    seen_later = prep.seen_later if len(prep.seen_later) == len(prep.seen_image) else np.zeros(0, dtype=bool)
    keep, pairs = ~later, ~seen_later if len(seen_later) else np.ones(len(prep.seen_image), dtype=bool)
    image = prep.image[keep]
    return PreparedAnswers(image=image, worker=prep.worker[keep], boxes=prep.boxes[keep], label=prep.label[keep],
                           row=prep.row[keep], offsets=group_offsets(image, prep.n_images),
                           image_names=prep.image_names, worker_names=prep.worker_names,
                           label_names=prep.label_names, seen_image=prep.seen_image[pairs],
                           seen_worker=prep.seen_worker[pairs],
                           n_seen=np.bincount(prep.seen_image[pairs], minlength=prep.n_images), problems=[],
                           later=np.zeros(len(image), dtype=bool), seen_later=np.zeros(int(pairs.sum()), dtype=bool))


def _clip_many(boxes: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """``geometry.clip_to_image`` for boxes of many images at once: (n, 1) bounds broadcast per box."""
    return clip_to_image(boxes, np.asarray(width, dtype=np.float64)[:, None],
                         np.asarray(height, dtype=np.float64)[:, None])


def group_offsets(sorted_codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Offsets of each group in an array sorted by group code: group g is ``[off[g], off[g+1])``."""
    off = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(sorted_codes, minlength=n_groups), out=off[1:])
    return off


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of boxes ``a[k]`` and ``b[k]`` (both (n, 4) x, y, w, h); 0 where the union is empty."""
    ix = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    iy = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def candidate_pairs(offsets: np.ndarray, boxes: np.ndarray, worker: np.ndarray, iou_thr: float,
                    chunk_pairs: int = 4_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs (i, j) of boxes of the same image, from different workers, with IoU >= ``iou_thr``.

    Pairs are generated per image from ``offsets`` in chunks of about ``chunk_pairs`` so that memory stays
    bounded; returns ``(i, j, iou)`` with both directions present.
    """
    sizes = np.diff(offsets)
    multi = np.flatnonzero(sizes >= 2)
    if not len(multi):
        e = np.empty(0, dtype=np.int64)
        return e, e, np.empty(0)
    cost = np.cumsum(sizes[multi].astype(np.int64) ** 2)
    out_i, out_j, out_v = [], [], []
    start = 0
    while start < len(multi):
        base = cost[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(cost, base + chunk_pairs, side="right")))
        g = multi[start:stop]
        gs, gn = offsets[g], sizes[g]
        box_start = np.repeat(gs, gn)  # per box of the chunk: its image start and size
        box_n = np.repeat(gn, gn)
        box_idx = box_start + (np.arange(gn.sum()) - np.repeat(np.cumsum(gn) - gn, gn))
        i = np.repeat(box_idx, box_n)
        k = np.arange(len(i)) - np.repeat(np.cumsum(box_n) - box_n, box_n)
        j = np.repeat(box_start, box_n) + k
        keep = (i < j) & (worker[i] != worker[j])
        i, j = i[keep], j[keep]
        v = paired_iou(boxes[i], boxes[j])
        keep = v >= iou_thr
        out_i += [i[keep], j[keep]]
        out_j += [j[keep], i[keep]]
        out_v += [v[keep], v[keep]]
        start = stop
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_v)


def cluster_boxes(prep: PreparedAnswers, iou_thr: float = 0.5) -> tuple[np.ndarray, int]:
    """Group the boxes of each image into objects, at most one box per worker per object.

    Greedy, all images at once, one object per image per round:

    1. Among boxes not yet grouped, link i-j when they come from different workers and IoU >= ``iou_thr``;
       for every (box i, other worker w) keep only w's best box (highest IoU, then earliest input row).
    2. Per image, the seed is the box linked to the most workers, ties broken by the larger sum of IoUs to
       those boxes, then by the earliest input row.
    3. The seed and each linked worker's best box form one object; repeat until no links remain.
    4. Every box left alone is an object of its own (support 1).

    Returns:
        ``(cluster, n_clusters)``: the object id of every box of ``prep`` (ids are dense, 0..n_clusters-1,
        ordered by image then creation round).
    """
    n = prep.n_boxes
    cluster = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return cluster, 0
    i, j, v = candidate_pairs(prep.offsets, prep.boxes, prep.worker, iou_thr)
    wj = prep.worker[j]
    # Sorted once by (i, worker of j, -IoU, row of j): the first pair of each (i, worker) run is that worker's
    # best box for i; boolean filtering keeps the order, so rounds never re-sort the pairs.
    order = np.lexsort((prep.row[j], -v, wj, i))
    i, j, v, wj = i[order], j[order], v[order], wj[order]
    while len(i):
        first = np.ones(len(i), dtype=bool)
        first[1:] = (i[1:] != i[:-1]) | (wj[1:] != wj[:-1])
        fi, fj, fv = i[first], j[first], v[first]
        deg = np.bincount(fi, minlength=n)
        ious = np.bincount(fi, weights=fv, minlength=n)
        starts = np.ones(len(fi), dtype=bool)
        starts[1:] = fi[1:] != fi[:-1]
        cand = fi[starts]  # fi is sorted, so this is np.unique(fi)
        # per image: max degree, then max IoU sum, then min row -> the last after an ascending lexsort
        o = np.lexsort((-prep.row[cand], ious[cand], deg[cand], prep.image[cand]))
        cand = cand[o]
        last = np.ones(len(cand), dtype=bool)
        last[:-1] = prep.image[cand[1:]] != prep.image[cand[:-1]]
        seeds = cand[last]
        is_seed = np.zeros(n, dtype=bool)
        is_seed[seeds] = True
        m = is_seed[fi]
        members, of_seed = fj[m], fi[m]
        cluster[seeds] = seeds  # provisional: the seed's box index names the object
        cluster[members] = of_seed
        taken = is_seed
        taken[members] = True
        keep = ~(taken[i] | taken[j])
        i, j, v, wj = i[keep], j[keep], v[keep], wj[keep]
    alone = cluster < 0
    cluster[alone] = np.flatnonzero(alone)
    # dense ids in box order (so by image): the k-th distinct seed index becomes k
    is_id = np.zeros(n, dtype=bool)
    is_id[cluster] = True
    rank = np.cumsum(is_id) - 1
    return rank[cluster], int(is_id.sum())


def majority_label(cluster: np.ndarray, label: np.ndarray, n_clusters: int, n_labels: int,
                   weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(Weighted) vote of the boxes' labels per object; ties go to the label that sorts first.

    Returns ``(label_code, share)`` per object, share = winning votes / all votes.
    """
    votes = np.bincount(cluster * n_labels + label, weights=weight,
                        minlength=n_clusters * n_labels).reshape(n_clusters, n_labels)
    best = votes.argmax(axis=1)  # argmax returns the first maximum: the alphabetically first label
    total = votes.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, votes[np.arange(n_clusters), best] / total, 0.0)
    return best, share


def agreement_skills(prep: PreparedAnswers, kept_box: np.ndarray, objects_per_image: np.ndarray) -> pd.Series:
    """A worker's F1 against the consensus, for aggregators without a worker model.

    ``kept_box[b]`` says box b is part of an output object; ``objects_per_image[g]`` counts output objects of
    image g. Precision = kept boxes / drawn boxes; recall = kept boxes / output objects on the images the worker
    answered. A worker who drew nothing where objects were found gets 0; one who only saw images without
    objects and drew nothing gets NaN (no evidence either way).
    """
    nw = prep.n_workers
    drawn = np.bincount(prep.worker, minlength=nw).astype(np.float64)
    kept = np.bincount(prep.worker, weights=kept_box.astype(np.float64), minlength=nw)
    expected = np.bincount(prep.seen_worker, weights=np.asarray(objects_per_image, dtype=np.float64)[prep.seen_image],
                           minlength=nw)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(drawn > 0, kept / drawn, np.nan)
        recall = np.where(expected > 0, np.minimum(kept / expected, 1.0), np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(np.isnan(precision) & np.isnan(recall), np.nan, f1)
    f1 = np.where(np.isnan(precision) & (recall == 0), 0.0, f1)  # drew nothing where there was something
    f1 = np.where(np.isnan(recall) & (precision == 0), 0.0, f1)  # drew only boxes nobody confirmed
    return pd.Series(f1, index=prep.worker_names, name="skill").rename_axis("worker")


def aggregated_boxes(prep: PreparedAnswers, image: np.ndarray, label: np.ndarray, boxes: np.ndarray,
                     score: np.ndarray, support: np.ndarray) -> pd.DataFrame:
    """The ``boxes_`` frame from per-object arrays (codes), sorted by image then score (highest first)."""
    order = np.lexsort((-score, image))
    return pd.DataFrame({
        "image_id": np.asarray(prep.image_names)[image[order]] if len(order) else np.empty(0, dtype=object),
        "label": prep.label_names[label[order]] if len(order) else np.empty(0, dtype=object),
        "x": boxes[order, 0], "y": boxes[order, 1], "w": boxes[order, 2], "h": boxes[order, 3],
        "score": score[order].astype(np.float64), "support": support[order].astype(np.int64),
    })


def empty_aggregated_boxes() -> pd.DataFrame:
    """A ``boxes_`` frame without rows, with the columns' dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("image_id", "label") else
                                      (np.int64 if c == "support" else np.float64)) for c in BOX_COLUMNS})
