"""LeanEM: crowd box aggregation with per-worker miss rate, false-positive rate and boundary sigma, fitted by EM."""

from __future__ import annotations

from typing import Literal, NamedTuple

import attr
import numpy as np
import pandas as pd

from .base import BaseBoxAggregator
from .utils import PreparedAnswers, aggregated_boxes, majority_label, cluster_boxes

__all__ = ["LeanEM"]

_TINY = 1e-12


class _EMResult(NamedTuple):
    """What :meth:`LeanEM._em` fitted (symbols of the class docstring)."""

    p: np.ndarray  # per object: existence posterior p_c
    mu: np.ndarray  # per object: corners x1, y1, x2, y2
    q: np.ndarray  # per object and class: P(y_c = k)
    obj_image: np.ndarray  # per object: image code
    miss: np.ndarray  # per worker: m_w
    fp: np.ndarray  # per worker: f_w
    sigma2: np.ndarray  # per worker: sigma_w^2
    acc: np.ndarray  # per worker: a_w
    pi: float  # prior that a candidate is real
    rho: np.ndarray  # class prior


@attr.s
class LeanEM(BaseBoxAggregator):
    r"""Lean-crowdsourcing-style EM over matched crowd boxes (the default aggregator).

    **Matching.** Per image, boxes of different workers with IoU $\ge$ ``iou_thr`` are grouped into candidate
    objects $c$, at most one box per worker per object (``utils.cluster_boxes``, class-agnostic: workers who
    disagree on the class still vote for the same object).

    **Model.** Worker $w$ has a miss rate $m_w$ (draws no box for a real object), a false-positive rate
    $f_w$ (has a box at a candidate that is not a real object), a boundary scale $\sigma_w$ (fraction of the
    object side) and a class accuracy $a_w$. Let $z_c \in \{0, 1\}$ say candidate $c$ is a real object
    (prior $\pi$), $S_c$ the workers with a box in $c$ and $A_c$ the other workers who answered the image:

    $$\operatorname{logit} P(z_c = 1) = \operatorname{logit}\pi
      + \sum_{w \in S_c} \log\frac{1 - m_w}{f_w} + \sum_{w \in A_c} \log\frac{m_w}{1 - f_w}
      + \log \sum_k \rho_k \prod_{b \in c} P(l_b \mid y_c = k) - \sum_{b \in c} \log u_{l_b}.$$

    A worker who misses most objects ($m_w \to 1$) thus barely counts against an object when silent, and one
    who draws junk ($f_w$ large) barely counts for it; the posterior $p_c$ is the box ``score``. The last
    two terms (``label_evidence``) compare the boxes' labels $l_b$ under a real sign (class prior $\rho$,
    worker label model below) with their distribution $u$ on false positives, so a lone box whose label is
    typical of junk counts less than one whose label is typical of real signs.

    Each box edge $e \in \{x_1, y_1, x_2, y_2\}$ of worker $w$ is $\mathcal{N}(\mu_{c,e},\, v_{w,c,e})$ with
    $v_{w,c,e} = \sigma_w^2 S_{c,e}^2 + \sigma_{px}^2$ ($S$ = the object's width for $x$ edges, height for
    $y$ edges; $\sigma_{px}$ = ``pixel_sigma``, the pixel floor of human boxes). The object is the
    precision-weighted mean $\mu_{c,e} = \sum_b \lambda_{b,e} e_b$, $\lambda_{b,e} \propto 1/v_{b,e}$.

    **EM, existence and labels.** Initialise $p_c$ = share of the image's workers with a box in $c$, then
    alternate until no $p_c$ moves by more than ``tol`` (at most ``n_iter`` rounds):

    * M-step (Beta priors of strength ``prior_strength`` around ``prior_miss`` / ``prior_fp``):
      $m_w = \frac{\alpha_m + \sum_{c \in A_w} p_c}{\alpha_m + \beta_m + \sum_{c \in S_w \cup A_w} p_c}$,
      $f_w = \frac{\alpha_f + \sum_{c \in S_w} (1 - p_c)}{\alpha_f + \beta_f + \sum_{c \in S_w \cup A_w}(1 - p_c)}$,
      $\pi = \frac{1 + \sum_c p_c}{2 + C}$; $a_w$ = $p$-weighted expected agreement of $w$'s labels with the
      class posterior (Beta prior 0.8, 2); $\rho_k \propto 1 + \sum_c p_c P(y_c = k)$;
      $u_k \propto 1 + \sum_{b: l_b = k} (1 - p_{c(b)})$.
    * E-step: $p_c$ from the first three terms of the formula above, and the class posterior
      $P(y_c = k) \propto \rho_k \prod_{b \in c} a_{w_b}^{[l_b = k]} ((1 - a_{w_b})/(K - 1))^{[l_b \ne k]}$
      (one-coin Dawid-Skene, i.e. a skill-weighted vote); ``label_method="dawid_skene"`` instead runs
      crowd-kit's ``DawidSkene`` on the kept objects' labels afterwards.

    The label terms join in one final E-step: letting them drive the rates too made the label model and the
    junk-label distribution feed each other and the scores over-confident (same AP, lower precision at 0.5).

    **EM, localisation.** Box positions do not enter $p$, so with $p$ fixed alternate until no $\sigma_w$
    moves by more than ``tol``: $\mu$ as above, and
    $\sigma_w^2 = \frac{\nu_0 \sigma_0^2 + \sum p_c \sum_e (r_{b,e}^2/(1 - \lambda_{b,e}) - \sigma_{px}^2)_+/S_{c,e}^2}
    {\nu_0 + 4\sum p_c}$ over $w$'s boxes in candidates with $\ge 2$ boxes ($r$ = residual to $\mu$; the
    $1-\lambda$ factor undoes the shrinkage of a residual towards a mean that contains the box itself;
    $\sigma_0$ = ``prior_sigma``, $\nu_0$ = ``sigma_strength``).

    **Output.** An object is output when $p_c \ge$ ``min_score`` (equality keeps it), with its most probable
    class and ``score`` $= p_c$. With ``label_alternatives`` it is also output under every other label that one
    of its boxes carries, with ``score`` $= p_c P(y_c = k)$ (the posterior that a sign *of that class* is
    there) when that reaches ``min_score``; since $P(y_c = k) \le 1/2$ for a non-winning class, this never
    happens for ``min_score`` $\ge 0.5$ (one box per object), while a ranked output (small ``min_score``)
    keeps the runner-up classes for AP, as class-aware detectors do.

    **Risk** (``images_``, for deciding where one more drawer pays off, as Lean Crowdsourcing's online mode
    does). Per image $t$ with answering workers $A_t$ and candidates $C_t$: the expected number of its real
    objects that every worker missed, $\max(\sum_{c \in C_t} p_c, \bar n) \cdot M_t / (1 - M_t)$ with
    $M_t = \prod_{w \in A_t} m_w$ and $\bar n$ the mean of $\sum_c p_c$ over images; the expected existence
    errors of the output at 0.5, $\sum_c \min(p_c, 1 - p_c)$; the expected class errors,
    $\sum_c p_c (1 - \max_k P(y_c = k))$. ``risk`` is their sum, the expected number of wrong, missing or
    mislabelled boxes.

    **Rules.** A class tie goes to the alphabetically first label. An image that every worker left empty yields
    no box and no evidence about the workers (there was nothing to miss and nothing drawn). Matching ties
    follow ``utils.cluster_boxes``. Rejected input rows (``problems_``) count neither as a box nor as an answer.
    ``skills_`` is the F1 of a worker's recall $1 - m_w$ and box precision $E[\text{real} \mid \text{box}]$
    (prior-smoothed, so always defined).

    S. Branson, G. Van Horn, P. Perona. Lean Crowdsourcing: Combining Humans and Machines in an Online System.
    *CVPR 2017*, 7474-7483. <https://doi.org/10.1109/CVPR.2017.647>

    Examples:
        >>> import pandas as pd
        >>> from crowdboxes.aggregation import LeanEM
        >>> answers = pd.DataFrame({"image_id": ["a"] * 3, "worker": ["w1", "w2", "w3"], "x": [10, 10, 10],
        ...                         "y": [10, 10, 10], "w": [20, 20, 20], "h": [20, 20, 20],
        ...                         "label": ["stop"] * 3})
        >>> LeanEM().fit_predict(answers)[["image_id", "label", "x", "y", "w", "h", "support"]]
          image_id label     x     y     w     h  support
        0        a  stop  10.0  10.0  20.0  20.0        3
    """

    iou_thr: float = attr.ib(default=0.5)
    """Minimum IoU for two workers' boxes to be candidates for the same object."""

    min_score: float = attr.ib(default=0.5)
    """Objects with posterior existence probability below this are not output."""

    n_iter: int = attr.ib(default=50)
    """The maximum number of EM iterations (per matching pass)."""

    tol: float = attr.ib(default=1e-4)
    """EM stops when no object's existence probability changes by more than this."""

    prior_miss: float = attr.ib(default=0.1)
    """Prior mean of a worker's miss rate (Lean Crowdsourcing's ``prob_fn_prior``)."""

    prior_fp: float = attr.ib(default=0.1)
    """Prior mean of a worker's false-positive rate (``prob_fp_prior``)."""

    prior_strength: float = attr.ib(default=5.0)
    """Pseudo-count of the Beta priors on miss and false-positive rates."""

    prior_sigma: float = attr.ib(default=0.05)
    """Prior boundary sigma, as a fraction of the object side."""

    sigma_strength: float = attr.ib(default=5.0)
    """Pseudo-count (degrees of freedom) of the prior on sigma."""

    pixel_sigma: float = attr.ib(default=1.0)
    """Pixel floor of edge noise, added in quadrature."""

    label_method: Literal["one_coin", "dawid_skene"] = attr.ib(default="one_coin")
    """``one_coin``: skill-weighted vote inside EM; ``dawid_skene``: crowd-kit DawidSkene on kept objects."""

    label_evidence: bool = attr.ib(default=True)
    """Let the labels vote on existence too (false positives' labels follow their own distribution $u$)."""

    label_alternatives: bool = attr.ib(default=True)
    """Also output an object under each other label one of its boxes carries, scored $p_c\\,P(y_c = k)$."""

    workers_: pd.DataFrame = attr.ib(init=False)
    """Per worker: ``miss_rate, fp_rate, sigma, label_accuracy, images, boxes``."""

    prior_: float = attr.ib(init=False)
    """Fitted prior probability that a candidate object is real."""

    n_iter_: int = attr.ib(init=False)
    """EM iterations run."""

    images_: pd.DataFrame = attr.ib(init=False)
    """Per image (index ``image_id``): ``workers, expected_objects, expected_missed, existence_risk, class_risk,
    risk`` (see *Risk*)."""

    def __attrs_post_init__(self) -> None:
        if self.label_method not in ("one_coin", "dawid_skene"):
            raise ValueError(f"label_method must be one_coin or dawid_skene, not {self.label_method!r}")

    # ----------------------------------------------------------------------------------------------- fitting
    def _fit_prepared(self, prep: PreparedAnswers) -> None:
        nw = prep.n_workers
        corners = np.column_stack([prep.boxes[:, 0], prep.boxes[:, 1], prep.boxes[:, 0] + prep.boxes[:, 2],
                                   prep.boxes[:, 1] + prep.boxes[:, 3]])
        self.n_iter_ = 0
        cluster, nc = cluster_boxes(prep, self.iou_thr)
        state = self._em(prep, corners, cluster, nc)
        p, mu, q = state.p, state.mu, state.q
        obj_image = state.obj_image
        support = np.bincount(cluster, minlength=nc)
        keep = p >= self.min_score
        if self.label_method == "dawid_skene":
            label = self._dawid_skene_labels(prep, cluster, nc, keep, q.argmax(axis=1))
        else:
            label = q.argmax(axis=1)  # argmax keeps the first maximum: the alphabetically first label
        boxes = np.column_stack([mu[:, 0], mu[:, 1], mu[:, 2] - mu[:, 0], mu[:, 3] - mu[:, 1]])
        obj, lab, sc = np.flatnonzero(keep), label[keep], p[keep]
        if self.label_alternatives and len(prep.label_names) > 1:
            # other labels some member drew, scored P(exists, class k) = p_c q_ck < p_c
            pairs = np.unique(cluster * len(prep.label_names) + prep.label)
            c_alt, k_alt = pairs // len(prep.label_names), pairs % len(prep.label_names)
            s_alt = p[c_alt] * q[c_alt, k_alt]
            alt = (k_alt != label[c_alt]) & (s_alt >= self.min_score)
            obj = np.concatenate([obj, c_alt[alt]])
            lab = np.concatenate([lab, k_alt[alt]])
            sc = np.concatenate([sc, s_alt[alt]])
        self.boxes_ = aggregated_boxes(prep, obj_image[obj], lab, boxes[obj], sc, support[obj])
        self.prior_ = state.pi

        a_p = 0.9 * self.prior_strength
        real = np.bincount(prep.worker, weights=p[cluster], minlength=nw)
        drawn = np.bincount(prep.worker, minlength=nw)
        precision = (a_p + real) / (self.prior_strength + drawn)
        recall = 1 - state.miss
        skill = 2 * precision * recall / np.maximum(precision + recall, _TINY)
        self.skills_ = pd.Series(skill, index=prep.worker_names, name="skill").rename_axis("worker")
        self.workers_ = pd.DataFrame({
            "miss_rate": state.miss, "fp_rate": state.fp, "sigma": np.sqrt(state.sigma2),
            "label_accuracy": state.acc, "images": np.bincount(prep.seen_worker, minlength=nw),
            "boxes": drawn}, index=prep.worker_names).rename_axis("worker")
        self.images_ = self._image_risk(prep, obj_image, p, q, state.miss)

    def _fit_without_boxes(self, prep: PreparedAnswers) -> None:
        super()._fit_without_boxes(prep)
        miss = np.full(prep.n_workers, self.prior_miss)
        self.images_ = self._image_risk(prep, np.zeros(0, dtype=np.int64), np.zeros(0), np.ones((0, 1)), miss)

    @staticmethod
    def _image_risk(prep: PreparedAnswers, obj_image: np.ndarray, p: np.ndarray, q: np.ndarray,
                    miss: np.ndarray) -> pd.DataFrame:
        """Expected errors per image in the output at ``min_score=0.5`` (formulas under *Risk*)."""
        ni = prep.n_images
        # P(every worker who answered the image missed one given object)
        all_miss = np.exp(np.bincount(prep.seen_image, weights=np.log(np.clip(miss, _TINY, 1.0))[prep.seen_worker],
                                      minlength=ni))
        found = np.bincount(obj_image, weights=p, minlength=ni)
        typical = found.mean() if ni else 0.0
        expected_missed = np.maximum(found, typical) * all_miss / np.maximum(1 - all_miss, _TINY)
        existence = np.bincount(obj_image, weights=np.minimum(p, 1 - p), minlength=ni)
        labels = np.bincount(obj_image, weights=p * (1 - q.max(axis=1)), minlength=ni) if len(p) else np.zeros(ni)
        return pd.DataFrame({
            "workers": prep.n_seen.astype(np.int64), "expected_objects": found, "expected_missed": expected_missed,
            "existence_risk": existence, "class_risk": labels, "risk": expected_missed + existence + labels},
            index=prep.image_names).rename_axis("image_id")

    def _em(self, prep: PreparedAnswers, corners: np.ndarray, cluster: np.ndarray, nc: int) -> _EMResult:
        """Existence and label EM, then localisation EM (both described in the class docstring)."""
        nw, ni, nl = prep.n_workers, prep.n_images, len(prep.label_names)
        bw = prep.worker
        obj_image = np.zeros(nc, dtype=np.int64)
        obj_image[cluster] = prep.image
        support = np.bincount(cluster, minlength=nc)
        multi = support[cluster] >= 2  # boxes whose residual says something about the worker
        s = self.prior_strength
        a_m, b_m = self.prior_miss * s, (1 - self.prior_miss) * s
        a_f, b_f = self.prior_fp * s, (1 - self.prior_fp) * s
        px2 = self.pixel_sigma ** 2

        p = np.clip(support / np.maximum(prep.n_seen[obj_image], 1), 0.05, 0.95)
        sigma2 = np.full(nw, self.prior_sigma ** 2)
        q = np.zeros((nc, nl))
        lab, _ = majority_label(cluster, prep.label, nc, nl)
        q[np.arange(nc), lab] = 1.0
        fake_labels = np.full(nl, 1.0 / nl)
        for it in range(self.n_iter):
            self.n_iter_ += 1
            # ---- M-step (existence and labels)
            pg = np.bincount(obj_image, weights=p, minlength=ni)
            fg = np.bincount(obj_image, weights=1 - p, minlength=ni)
            tot_real = np.bincount(prep.seen_worker, weights=pg[prep.seen_image], minlength=nw)
            tot_fake = np.bincount(prep.seen_worker, weights=fg[prep.seen_image], minlength=nw)
            p_box = p[cluster]
            hit = np.bincount(bw, weights=p_box, minlength=nw)
            junk = np.bincount(bw, minlength=nw) - hit
            miss = (a_m + np.maximum(tot_real - hit, 0)) / (a_m + b_m + tot_real)
            fp = (a_f + junk) / (a_f + b_f + tot_fake)
            pi = (1 + p.sum()) / (2 + nc)
            acc, rho = self._label_m_step(prep, cluster, nl, nw, p_box, p, q)
            fake_labels = (1 + np.bincount(prep.label, weights=1 - p_box, minlength=nl)) / (nl + (1 - p_box).sum())
            # ---- E-step
            q, label_llr = self._label_posterior(prep, cluster, nc, nl, acc, rho, fake_labels)
            p_new = self._existence(prep, cluster, obj_image, nc, miss, fp, pi, 0.0)
            change = np.abs(p_new - p).max() if nc else 0.0
            p = p_new
            if change <= self.tol:
                break
        if self.label_evidence:
            # labels enter the final posterior only: fitting the rates on them too let the label model and
            # the junk-label distribution feed each other and made the scores over-confident
            p = self._existence(prep, cluster, obj_image, nc, miss, fp, pi, label_llr)

        # ---- localisation: sigma_w <-> mu_c with the existence posteriors as weights (block coordinate ascent;
        # box positions do not enter p, so this block can run after the existence block has converged)
        side_b = np.maximum(np.column_stack([corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1]]), 1.0)
        ref = np.empty((nc, 4))
        ref[cluster] = corners
        delta = corners - ref[cluster]
        sigma2 = np.full(nw, self.prior_sigma ** 2)
        wgt = p[cluster] * multi
        mu, prec, psum = self._locate(ref, delta, cluster, nc, side_b, sigma2[bw], px2)
        side_b = self._sides(mu, cluster)
        for it in range(self.n_iter):
            new = self._sigma2(corners, cluster, bw, nw, mu, prec, psum, side_b, wgt, px2)
            mu, prec, psum = self._locate(ref, delta, cluster, nc, side_b, new[bw], px2)
            side_b = self._sides(mu, cluster)
            moved = np.abs(np.sqrt(new) - np.sqrt(sigma2)).max() if nw else 0.0
            sigma2 = new
            if moved <= self.tol:
                break
        return _EMResult(p=p, mu=mu, q=q, obj_image=obj_image, miss=miss, fp=fp, sigma2=sigma2, acc=acc,
                         pi=float(pi), rho=rho)

    # ------------------------------------------------------------------------------------------------ pieces
    @staticmethod
    def _existence(prep: PreparedAnswers, cluster: np.ndarray, obj_image: np.ndarray, nc: int, miss: np.ndarray,
                   fp: np.ndarray, pi: float, label_llr: np.ndarray | float) -> np.ndarray:
        """Posterior that each candidate is a real object (formula in the class docstring)."""
        ni = prep.n_images
        silent = np.log(np.maximum(miss, _TINY)) - np.log(np.maximum(1 - fp, _TINY))
        drew = np.log(np.maximum(1 - miss, _TINY)) - np.log(np.maximum(fp, _TINY))
        per_image = np.bincount(prep.seen_image, weights=silent[prep.seen_worker], minlength=ni)
        logit = (np.log(pi) - np.log1p(-pi) + per_image[obj_image] + label_llr
                 + np.bincount(cluster, weights=(drew - silent)[prep.worker], minlength=nc))
        posterior: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        return posterior

    @staticmethod
    def _sides(mu: np.ndarray, cluster: np.ndarray) -> np.ndarray:
        """Width and height of each box's object, at least 1 px."""
        sides: np.ndarray = np.maximum(np.column_stack([mu[:, 2] - mu[:, 0], mu[:, 3] - mu[:, 1]]), 1.0)
        per_box: np.ndarray = sides[cluster]
        return per_box

    @staticmethod
    def _locate(ref: np.ndarray, delta: np.ndarray, cluster: np.ndarray, nc: int, side_b: np.ndarray,
                s2_b: np.ndarray, px2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Precision-weighted object corners: ``(mu, prec per box edge, summed prec per object edge)``.

        Means are taken as ``ref + weighted mean of (corner - ref)`` with ``ref`` one member's corners, so
        identical boxes give back exactly that box (no rounding drift).
        """
        prec = 1.0 / (s2_b[:, None] * side_b[:, [0, 1, 0, 1]] ** 2 + px2)
        psum = np.empty((nc, 4))
        mu = np.empty((nc, 4))
        for k in range(4):
            psum[:, k] = np.bincount(cluster, weights=prec[:, k], minlength=nc)
            mu[:, k] = ref[:, k] + np.bincount(cluster, weights=prec[:, k] * delta[:, k], minlength=nc) / psum[:, k]
        return mu, prec, psum

    def _sigma2(self, corners: np.ndarray, cluster: np.ndarray, bw: np.ndarray, nw: int, mu: np.ndarray,
                prec: np.ndarray, psum: np.ndarray, side_b: np.ndarray, wgt: np.ndarray, px2: float) -> np.ndarray:
        """M-step for the boundary scale (formula in the class docstring); in place to spare memory."""
        lam = prec / psum[cluster]
        np.minimum(lam, 0.95, out=lam)
        np.subtract(1.0, lam, out=lam)
        r2 = corners - mu[cluster]
        np.square(r2, out=r2)
        r2 /= lam
        r2 -= px2
        np.maximum(r2, 0.0, out=r2)
        r2 /= np.square(side_b)[:, [0, 1, 0, 1]]
        frac2 = r2.sum(axis=1)
        num = np.bincount(bw, weights=wgt * frac2, minlength=nw)
        den = np.bincount(bw, weights=wgt, minlength=nw) * 4
        nu = self.sigma_strength
        return np.maximum((nu * self.prior_sigma ** 2 + num) / (nu + den), 0.005 ** 2)

    @staticmethod
    def _label_m_step(prep: PreparedAnswers, cluster: np.ndarray, nl: int, nw: int, wgt: np.ndarray, p: np.ndarray,
                      q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """M-step of the label model: per-worker accuracy $a_w$ and class prior $\\rho$ (class docstring)."""
        agree = q[cluster, prep.label]
        acc = (1.6 + np.bincount(prep.worker, weights=wgt * agree, minlength=nw)) / (
            2.0 + np.bincount(prep.worker, weights=wgt, minlength=nw))
        rho = (1.0 + (p[:, None] * q).sum(axis=0)) / (nl + p.sum())
        return acc, rho

    @staticmethod
    def _label_posterior(prep: PreparedAnswers, cluster: np.ndarray, nc: int, nl: int, acc: np.ndarray,
                         rho: np.ndarray, fake_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class posterior per object and the log-likelihood ratio of its labels, real vs false positive.

        Real: $\\sum_k \\rho_k \\prod_b P(l_b \\mid k)$ (one-coin); false positive: $\\prod_b u_{l_b}$.
        """
        if nl == 1:
            return np.ones((nc, 1)), np.zeros(nc)
        acc = np.clip(acc, 1e-6, 1 - 1e-6)
        wrong = np.log((1 - acc) / (nl - 1))
        bonus = np.log(acc) - wrong
        logq = np.bincount(cluster, weights=wrong[prep.worker], minlength=nc)[:, None] + np.log(rho)[None, :]
        logq += np.bincount(cluster * nl + prep.label, weights=bonus[prep.worker],
                            minlength=nc * nl).reshape(nc, nl)
        top = logq.max(axis=1, keepdims=True)
        q = np.exp(logq - top)
        total = q.sum(axis=1, keepdims=True)
        evidence = np.log(total[:, 0]) + top[:, 0]
        fake = np.bincount(cluster, weights=np.log(fake_labels)[prep.label], minlength=nc)
        return q / total, evidence - fake

    @staticmethod
    def _dawid_skene_labels(prep: PreparedAnswers, cluster: np.ndarray, nc: int, keep: np.ndarray,
                            fallback: np.ndarray) -> np.ndarray:
        """Class of each kept object by crowd-kit's DawidSkene over its boxes' labels; others keep ``fallback``."""
        from crowdkit.aggregation import DawidSkene

        label = fallback.copy()
        box_keep = keep[cluster]
        if not box_keep.any():
            return label
        # crowd-kit's "task" is the item labelled: here one object (a cluster of boxes)
        data = pd.DataFrame({"task": cluster[box_keep], "worker": prep.worker[box_keep],
                             "label": prep.label[box_keep]})
        agg = DawidSkene(n_iter=100).fit_predict(data)
        label[agg.index.to_numpy(dtype=np.int64)] = agg.to_numpy(dtype=np.int64)
        return label
