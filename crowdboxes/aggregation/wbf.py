"""Weighted Boxes Fusion (Solovyev, Wang & Gabruseva 2021) applied to crowd boxes, without ensemble-boxes."""

from __future__ import annotations

import attr
import numpy as np

from .base import BaseBoxAggregator
from .utils import PreparedAnswers, agreement_skills, aggregated_boxes, group_offsets, majority_label

__all__ = ["WeightedBoxesFusion"]


@attr.s
class WeightedBoxesFusion(BaseBoxAggregator):
    r"""Weighted Boxes Fusion over the workers of each image, as in ``ensemble_boxes.weighted_boxes_fusion``.

    Each worker is one "model" with weight 1 and every human box has score 1, so per image (and per label
    when ``class_aware``, the packaged behaviour):

    1. Boxes are visited in the package's order: by score, highest first; with equal scores its reversed
       ``argsort`` visits them last input row first.
    2. A box joins the fused box it overlaps most if that IoU is **greater** than ``iou_thr`` (default 0.55,
       the package's), otherwise it opens a new fused box. There is no one-box-per-worker rule.
    3. A fused box is the score-weighted mean of its members' corners (here the plain mean), recomputed after
       every join.
    4. ``conf_type="avg"``: score $= \bar s \cdot \min(K, n) / K$ with $n$ members and $K$ the number of
       workers who answered the image, i.e. $\min(n, K)/K$.

    Class-agnostic mode (``class_aware=False``) fuses all labels together and gives each fused box the
    majority label of its members (a tie goes to the alphabetically first label), which avoids splitting an
    object whose class the workers disagree on. Fused boxes with score below ``min_score`` are dropped (0 keeps
    the package's full output). ``skills_`` is each worker's F1 against the kept fused boxes.

    The per-image loop is inherently sequential, so images are bucketed by their number of boxes and the
    $t$-th box of every image in a bucket is fused at the same time.

    R. Solovyev, W. Wang, T. Gabruseva. Weighted boxes fusion: Ensembling boxes from different object detection
    models. *Image and Vision Computing* 107 (2021) 104117. <https://doi.org/10.1016/j.imavis.2021.104117>
    """

    iou_thr: float = attr.ib(default=0.55)
    """A box joins a fused box when their IoU is greater than this."""

    class_aware: bool = attr.ib(default=True)
    """Fuse per label (as packaged); False fuses all labels and votes on the class."""

    min_score: float = attr.ib(default=0.0)
    """Drop fused boxes scoring below this (0 = the package's output)."""

    def _fit_prepared(self, prep: PreparedAnswers) -> None:
        n = prep.n_boxes
        nl = len(prep.label_names)
        # groups = (image) or (image, label); visit order: last input row first (the package's tie order)
        group = prep.image * nl + prep.label if self.class_aware else prep.image.copy()
        order = np.lexsort((-prep.row, group))
        g_sorted = group[order]
        uniq, g_code = np.unique(g_sorted, return_inverse=True)
        offsets = group_offsets(g_code, len(uniq))
        sizes = np.diff(offsets)
        corners = np.column_stack([prep.boxes[:, 0], prep.boxes[:, 1], prep.boxes[:, 0] + prep.boxes[:, 2],
                                   prep.boxes[:, 1] + prep.boxes[:, 3]])[order]
        local = np.full(n, -1, dtype=np.int64)  # fused-box index within its group, per sorted box
        for size in np.unique(sizes):
            gs = np.flatnonzero(sizes == size)
            idx = offsets[gs][:, None] + np.arange(size)[None, :]  # (B, size) sorted-box positions
            local[idx] = self._fuse_bucket(corners[idx], self.iou_thr)
        # global fused-box ids: group offset + local index
        n_fused = np.zeros(len(uniq), dtype=np.int64)
        np.maximum.at(n_fused, g_code, local + 1)
        fused_start = np.concatenate([[0], np.cumsum(n_fused)[:-1]])
        cid_sorted = fused_start[g_code] + local
        cluster = np.empty(n, dtype=np.int64)
        cluster[order] = cid_sorted
        nc = int(n_fused.sum())

        support = np.bincount(cluster, minlength=nc)
        obj_image = np.zeros(nc, dtype=np.int64)
        obj_image[cluster] = prep.image
        corners = corners[np.argsort(order)]  # back to prep order
        mean: np.ndarray = np.column_stack([np.bincount(cluster, weights=corners[:, k], minlength=nc)
                                            for k in range(4)])
        mean /= support[:, None]
        boxes = np.column_stack([mean[:, 0], mean[:, 1], mean[:, 2] - mean[:, 0], mean[:, 3] - mean[:, 1]])
        k_workers = prep.n_seen[obj_image]
        score = np.minimum(support, k_workers) / k_workers
        label, _ = majority_label(cluster, prep.label, nc, nl)
        keep = score >= self.min_score
        self.boxes_ = aggregated_boxes(prep, obj_image[keep], label[keep], boxes[keep], score[keep],
                                  np.minimum(support, k_workers)[keep])
        self.skills_ = agreement_skills(prep, keep[cluster], np.bincount(obj_image[keep], minlength=prep.n_images))

    @staticmethod
    def _fuse_bucket(corners: np.ndarray, iou_thr: float) -> np.ndarray:
        """WBF for B groups of the same size at once; corners (B, m, 4) in visit order -> fused index (B, m)."""
        b, m, _ = corners.shape
        sums = np.zeros((b, m, 4))
        counts = np.zeros((b, m))
        n_open = np.zeros(b, dtype=np.int64)
        out = np.empty((b, m), dtype=np.int64)
        rows = np.arange(b)
        for t in range(m):
            box = corners[:, t, :]  # (B, 4)
            if t == 0:
                best = np.full(b, -1)
            else:
                fused = sums[:, :t] / np.maximum(counts[:, :t], 1)[..., None]  # (B, t, 4)
                ix = np.minimum(fused[..., 2], box[:, None, 2]) - np.maximum(fused[..., 0], box[:, None, 0])
                iy = np.minimum(fused[..., 3], box[:, None, 3]) - np.maximum(fused[..., 1], box[:, None, 1])
                inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
                area_f = (fused[..., 2] - fused[..., 0]) * (fused[..., 3] - fused[..., 1])
                area_b = ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))[:, None]
                union = area_f + area_b - inter
                with np.errstate(invalid="ignore", divide="ignore"):
                    iou = np.where(union > 0, inter / union, 0.0)
                iou[np.arange(t)[None, :] >= n_open[:, None]] = -1.0  # slots not opened yet
                arg = iou.argmax(axis=1)  # the package keeps the first best
                best = np.where(iou[rows, arg] > iou_thr, arg, -1)
            new = best < 0
            best = np.where(new, n_open, best)
            n_open += new
            sums[rows, best] += box
            counts[rows, best] += 1
            out[:, t] = best
        return out
