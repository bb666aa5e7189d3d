"""The Toloka tutorial's recipe: one worker draws every sign, other workers verify the drawing (OK/BAD)."""

from __future__ import annotations

import attr
import numpy as np
import pandas as pd

from .base import BaseBoxAggregator
from .utils import PreparedAnswers, aggregated_boxes, empty_aggregated_boxes, prepare_answers

__all__ = ["BestVerified"]


@attr.s
class BestVerified(BaseBoxAggregator):
    r"""Keep, per image, the whole drawing that the verifiers accepted with the most support.

    This is Toloka's road-sign object-detection tutorial: a detection pool with overlap 1, a verification
    pool asking "are all signs outlined correctly?" (OK/BAD per drawing), and a redraw by another worker
    when a drawing is rejected. The aggregator sees every drawing of an image and its verdicts:

    * a drawing's support is $s = \text{ok} / (\text{ok} + \text{bad})$ over its verification votes;
      its verdict is OK when $\text{ok} > \text{bad}$ (a tie is not OK);
    * the image's answer is the drawing with the highest $s$; ties go to more OK votes, then to the drawing
      whose first row comes first in the input;
    * with ``require_ok`` (default) an image whose best drawing is not OK gets no box (Toloka would send it to
      another drawer); otherwise the best drawing is used anyway;
    * every box of the chosen drawing gets ``score`` $= s$ and ``support`` 1 (one drawer). An accepted empty
      drawing yields no box: the verifiers agreed the image has no sign.

    Drawings without any verification vote are not eligible. ``skills_`` is a drawer's share of OK votes over
    all their drawings (NaN for a worker never verified).

    ``fit(answers, images=None, verifications=None)``: ``verifications`` has ``image_id, worker`` (the **drawer**
    judged) and either ``verdict`` (OK|BAD, one row per vote) or counts ``ok_votes, bad_votes``; ValueError
    when it is missing, since this method cannot work without it.
    """

    require_ok: bool = attr.ib(default=True)
    """Output nothing for an image whose best drawing was not accepted."""

    def fit(self, answers: pd.DataFrame, images: pd.DataFrame | None = None,
            verifications: pd.DataFrame | None = None) -> "BestVerified":
        """Fit on the drawings (``answers``, ``images`` as for every aggregator) and their ``verifications``."""
        if verifications is None:
            raise ValueError("best_verified needs verifications (image_id, worker, verdict or ok_votes/bad_votes)")
        self._votes = self._vote_counts(verifications)
        prep = prepare_answers(answers, images)
        self.problems_ = prep.problems
        self._fit_prepared(prep)
        return self

    def fit_predict(self, answers: pd.DataFrame, images: pd.DataFrame | None = None,
                    verifications: pd.DataFrame | None = None) -> pd.DataFrame:
        """Fit and return ``boxes_``."""
        return self.fit(answers, images, verifications).boxes_

    @staticmethod
    def _vote_counts(verifications: pd.DataFrame) -> pd.DataFrame:
        for col in ("image_id", "worker"):
            if col not in verifications.columns:
                raise ValueError(f"verifications lack column {col!r}")
        v = verifications
        if "ok_votes" in v.columns and "bad_votes" in v.columns:
            ok = pd.to_numeric(v["ok_votes"], errors="coerce").fillna(0)
            bad = pd.to_numeric(v["bad_votes"], errors="coerce").fillna(0)
        elif "verdict" in v.columns:
            verdict = v["verdict"].astype(str).str.upper()
            ok, bad = (verdict == "OK").astype(float), (verdict == "BAD").astype(float)
        else:
            raise ValueError("verifications need a verdict column or ok_votes and bad_votes")
        frame = pd.DataFrame({"image_id": v["image_id"].to_numpy(), "worker": v["worker"].to_numpy(),
                              "ok": ok.to_numpy(dtype=float), "bad": bad.to_numpy(dtype=float)})
        return frame.groupby(["image_id", "worker"], sort=False, as_index=False)[["ok", "bad"]].sum()

    def _fit_prepared(self, prep: PreparedAnswers) -> None:
        nw = prep.n_workers
        votes = self._votes
        i_code = prep.image_names.get_indexer(pd.Index(votes["image_id"]))
        w_code = prep.worker_names.get_indexer(pd.Index(votes["worker"]))
        known = (i_code >= 0) & (w_code >= 0)
        i_code, w_code = i_code[known], w_code[known]
        ok = votes["ok"].to_numpy()[known]
        bad = votes["bad"].to_numpy()[known]
        # only drawings that exist (the worker answered the image) are eligible
        seen_key = prep.seen_image * max(nw, 1) + prep.seen_worker
        key = i_code * max(nw, 1) + w_code
        eligible = np.isin(key, seen_key) & (ok + bad > 0)
        i_code, w_code, ok, bad, key = i_code[eligible], w_code[eligible], ok[eligible], bad[eligible], key[eligible]
        share = ok / (ok + bad)
        # first input row of each drawing, for the last tie rule (empty drawings have no box row: use +inf)
        first_row = pd.Series(prep.row).groupby(prep.image * max(nw, 1) + prep.worker).min()
        fr = first_row.reindex(key).to_numpy(dtype=float)
        fr = np.where(np.isnan(fr), np.inf, fr)
        order = np.lexsort((fr, -ok, -share, i_code))
        first = np.ones(len(order), dtype=bool)
        first[1:] = i_code[order][1:] != i_code[order][:-1]
        chosen = order[first]
        if self.require_ok:
            chosen = chosen[ok[chosen] > bad[chosen]]
        chosen_key = np.full(prep.n_images, -1, dtype=np.int64)
        chosen_share = np.zeros(prep.n_images)
        chosen_key[i_code[chosen]] = key[chosen]
        chosen_share[i_code[chosen]] = share[chosen]
        box_key = prep.image * max(nw, 1) + prep.worker
        take = box_key == chosen_key[prep.image]
        if take.any():
            self.boxes_ = aggregated_boxes(prep, prep.image[take], prep.label[take], prep.boxes[take],
                                      chosen_share[prep.image[take]], np.ones(int(take.sum()), dtype=np.int64))
        else:
            self.boxes_ = empty_aggregated_boxes()
        ok_w = np.bincount(w_code, weights=ok, minlength=nw)
        all_w = np.bincount(w_code, weights=ok + bad, minlength=nw)
        with np.errstate(invalid="ignore", divide="ignore"):
            skill = np.where(all_w > 0, ok_w / all_w, np.nan)
        self.skills_ = pd.Series(skill, index=prep.worker_names, name="skill").rename_axis("worker")
