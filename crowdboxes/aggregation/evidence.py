"""Who drew and who was silent at each LeanEM candidate: the existence log-odds of its *Model* (lean_em.py)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .utils import PreparedAnswers

__all__ = ["TINY", "Evidence"]

TINY = 1e-12


class Evidence(NamedTuple):
    """Who drew and who was silent at each candidate, as the existence posterior needs it (fixed during EM).

    ``counts[b]`` is 0 for a missed-sign worker's box at a candidate that was shown to it (its silence there is
    no evidence, so its box there is not a "drew instead of silent" either); ``asked[c]`` is the number of
    workers whose answer at ``c`` is evidence (first-round workers of the image, plus missed-sign workers when
    ``c`` was not shown).
    """

    prep: PreparedAnswers
    cluster: np.ndarray
    nc: int
    obj_image: np.ndarray
    shown: np.ndarray
    counts: np.ndarray
    asked: np.ndarray
    support: np.ndarray
    group: np.ndarray  # per candidate: its size group (0 = smallest)

    @staticmethod
    def build(prep: PreparedAnswers, cluster: np.ndarray, nc: int, obj_image: np.ndarray,
              group: np.ndarray | None = None, shown_box: np.ndarray | None = None) -> "Evidence":
        """Shown candidates, per-box counts and per-candidate asked workers of ``prep``'s clustering;
        ``shown_box`` flags the first-round boxes the missed-sign worker saw (None: all of them)."""
        later = prep.later if len(prep.later) == prep.n_boxes else np.zeros(prep.n_boxes, dtype=bool)
        was_shown = ~later if shown_box is None else ~later & shown_box
        shown = np.bincount(cluster, weights=was_shown.astype(np.float64), minlength=nc) > 0
        counts = (~(later & shown[cluster])).astype(np.float64)
        ni = prep.n_images
        first = np.bincount(prep.seen_image, weights=(~prep.seen_later).astype(np.float64), minlength=ni)
        second = np.bincount(prep.seen_image, weights=prep.seen_later.astype(np.float64), minlength=ni)
        asked = first[obj_image] + np.where(shown, 0.0, second[obj_image])
        group = np.zeros(nc, dtype=np.int64) if group is None else group
        return Evidence(prep, cluster, nc, obj_image, shown, counts, asked, np.bincount(cluster, minlength=nc),
                         group)

    def logit(self, miss: np.ndarray, lam: np.ndarray, kappa: float, nu: float,
              visible: np.ndarray | None = None) -> np.ndarray:
        """log-odds real : false of every candidate (class docstring, *Model*); ``visible`` = $h_g$ per size
        group (all 1 when None)."""
        prep, cluster, nc = self.prep, self.cluster, self.nc
        ni = prep.n_images
        bw = prep.worker
        h = np.ones(int(self.group.max(initial=0)) + 1) if visible is None else visible
        silent = np.zeros(nc)
        drew = np.zeros(nc)
        for g in range(len(h)):
            mine = self.group == g
            hit_wg = np.clip((1 - miss) * h[g], TINY, 1 - 1e-12)
            log_m, log_hit = np.log1p(-hit_wg), np.log(hit_wg)
            by_pair = log_m[prep.seen_worker]
            first = np.bincount(prep.seen_image, weights=by_pair * ~prep.seen_later, minlength=ni)
            second = np.bincount(prep.seen_image, weights=by_pair * prep.seen_later, minlength=ni)
            box_in = mine[cluster]
            silent[mine] = (first[self.obj_image] + np.where(self.shown, 0.0, second[self.obj_image])
                            - np.bincount(cluster, weights=self.counts * log_m[bw] * box_in, minlength=nc))[mine]
            drew[mine] = np.bincount(cluster, weights=log_hit[bw] * box_in, minlength=nc)[mine]
        makers = np.bincount(cluster, weights=lam[bw], minlength=nc)
        quiet = np.maximum(self.asked - np.bincount(cluster, weights=self.counts, minlength=nc), 0.0)
        kappa = float(np.clip(kappa, TINY, 1 - 1e-9))
        logit: np.ndarray = (np.log(nu) + drew + silent - np.log(np.maximum(makers, TINY))
                             - (self.support - 1) * np.log(kappa) - quiet * np.log1p(-kappa))
        return logit
