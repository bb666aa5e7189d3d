"""LeanEM: crowd box aggregation with per-worker miss rate, false-box rate and boundary sigma, fitted by EM."""

from __future__ import annotations

from typing import Literal, NamedTuple

import attr
import numpy as np
import pandas as pd

from .base import BaseBoxAggregator
from .checks import empty_checkers, fold_checks, unmatched_checks
from .evidence import TINY as _TINY
from .evidence import Evidence as _Evidence
from .labels import dawid_skene_labels, label_m_step, label_posterior
from .localisation import locate, loose_chance, sides, sigma2_m_step
from .utils import (PreparedAnswers, Problem, aggregated_boxes, candidate_pairs, cluster_boxes, first_round,
                    majority_label)

__all__ = ["LeanEM"]

#: IoU from which a first-round box counts as marking the same sign as a shown box (*Missed-sign round*).
SHOWN_OVERLAP_IOU = 0.1


def _expit(logit: np.ndarray) -> np.ndarray:
    """The logistic function, clipped so that a posterior never rounds to exactly 0 or 1."""
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(logit, -30.0, 30.0)))
    return out


class _EMResult(NamedTuple):
    """What :meth:`LeanEM._em` fitted (symbols of the class docstring)."""

    p: np.ndarray  # per object: existence posterior p_c
    mu: np.ndarray  # per object: corners x1, y1, x2, y2
    q: np.ndarray  # per object and class: P(y_c = k)
    obj_image: np.ndarray  # per object: image code
    miss: np.ndarray  # per worker: m_w
    fp: np.ndarray  # per worker: lambda_w (false boxes per image)
    sigma2: np.ndarray  # per worker: sigma_w^2
    acc: np.ndarray  # per worker: a_w
    kappa: float  # coincidence rate of a false candidate
    nu: float  # real objects per image
    rho: np.ndarray  # class prior
    loose: np.ndarray  # per object: P(IoU with the true box < 0.5)
    shown: np.ndarray  # per object: has a first-round box (shown to a missed-sign worker)
    visible: np.ndarray  # per size group: h_g


@attr.s
class LeanEM(BaseBoxAggregator):
    r"""Lean-crowdsourcing-style EM over matched crowd boxes (the default aggregator).

    **Matching.** Per image, boxes of different workers with IoU $\ge$ ``iou_thr`` are grouped into candidate
    objects $c$, at most one box per worker per object (``utils.cluster_boxes``, class-agnostic: workers who
    disagree on the class still vote for the same object).

    **Model.** Per image, real objects are a Poisson process of intensity $\nu$; worker $w$ outlines each real
    one of size group $g$ with probability $(1 - m_w)\,h_g$ ($m_w$ its miss rate; $h_g$ the chance that an
    object of that size is visible to a worker at all, $h = 1$ for the group of the largest candidates,
    ``size_groups``: small signs are missed by everyone more often, so silence at them says less) and adds
    false boxes (junk, gross misplacements) at a rate of $\lambda_w$ per image; another worker's box
    coincides with a false box with probability $\kappa$. For candidate $c$ with workers $S_c$ who drew it
    and $A_c$ those whose silence there is evidence (see *Missed-sign round*), the posterior odds that it is
    real are those of the two ways to produce it:

    $$\operatorname{logit} P(z_c = 1) = \tau \Big[\log\nu + \sum_{w \in S_c} \log((1 - m_w) h_{g_c})
      + \sum_{w \in A_c \setminus S_c} \log(1 - (1 - m_w) h_{g_c}) - \log \sum_{w \in S_c} \lambda_w
      - (|S_c| - 1)\log\kappa - |A_c \setminus S_c| \log(1 - \kappa) + E^{\text{label}}_c\Big].$$

    A silent worker thus counts against an object by how rarely it misses, and a false box needs one maker
    (the one most prone to junk) plus coincidences; unlike a per-candidate false-positive rate, the rates
    stay identifiable with 2 or 3 workers per image. The label term $E^{\text{label}}_c$ (``label_evidence``)
    compares the boxes' labels $l_b$ under a real sign (class prior $\rho$, worker label model below),
    $\log \sum_k \rho_k \prod_{b \in c} P(l_b \mid y_c = k)$, with their distribution $u$ on false boxes,
    $\sum_{b \in c} \log u_{l_b}$. With ``shape_evidence`` (off by default) a similar term compares the
    candidate's size and aspect under real and false candidates (quintile histograms weighted by $p_c$).
    $\tau$ (``temper``) tempers the log-odds for correlated errors (1 = none).

    Each box edge $e \in \{x_1, y_1, x_2, y_2\}$ of worker $w$ is $\mathcal{N}(\mu_{c,e},\, v_{w,c,e})$ with
    $v_{w,c,e} = \sigma_w^2 S_{c,e}^2 + \sigma_{px}^2$ ($S$ = the object's width for $x$ edges, height for
    $y$ edges; $\sigma_{px}$ = ``pixel_sigma``, the pixel floor of human boxes). The object is the
    precision-weighted mean $\mu_{c,e} = \sum_b \lambda_{b,e} e_b$, $\lambda_{b,e} \propto 1/v_{b,e}$, with
    posterior precision $P_{c,e} = \sum_{b \in c} 1/v_{b,e}$.

    **EM, existence and labels.** Initialise $p_c$ = share of the image's workers with a box in $c$, then
    alternate until no $p_c$ moves by more than ``tol`` (at most ``n_iter`` rounds):

    * M-step, with priors of strength $s$ = ``prior_strength`` (pseudo-answers) around ``prior_miss``,
      ``prior_fp`` and ``prior_coincidence``:
      with $v_{wc} = h_{g_c} m_w / (1 - h_{g_c}(1 - m_w))$ the probability that a silent $w$ could see a real
      $c$ (latent visibility), $m_w = \frac{s\,\bar m + \sum_{c \in A_w \setminus S_w} p_c v_{wc}}
      {s + \sum_{c \in S_w} p_c + \sum_{c \in A_w \setminus S_w} p_c v_{wc}}$ ($A_w$: candidates where
      $w$'s answer is evidence) and $h_g = \frac{1 + \sum_{w} [\sum_{c \in S_w, g} p_c
      + \sum_{c \in A_w \setminus S_w, g} p_c v_{wc}]}{1 + \sum_w \sum_{c \in A_w, g} p_c}$ (started at 0.8:
      1 is a fixed point);
      $\lambda_w = \frac{s\,\bar\lambda + \sum_{c \in S_w} (1 - p_c)\,\lambda_w / \sum_{v \in S_c}\lambda_v}
      {s + n_w}$ ($n_w$ images answered; a false candidate's maker is $w$ with odds $\lambda_w$);
      $\kappa = \frac{s\bar\kappa + \sum_c (1 - p_c)(|S_c| - 1)}{s + \sum_c (1 - p_c)(|A_c| - 1)}$;
      $\nu = \frac{1 + \sum_c p_c}{1 + \sum_t (1 - M_t)}$ ($M_t$ below: undetected objects are not
      candidates); $a_w$ = $p$-weighted expected agreement of $w$'s labels with the class posterior (Beta
      prior 0.8, 2); $\rho_k \propto 1 + \sum_c p_c P(y_c = k)$; $u_k \propto 1 + \sum_{b: l_b = k} (1 - p_{c(b)})$.
    * E-step: $p_c$ from the formula above without the label term, and the class posterior
      $q_{ck} = P(y_c = k) \propto \rho_k \prod_{b \in c} a_{w_b}^{[l_b = k]} ((1 - a_{w_b})/(K - 1))^{[l_b \ne k]}$
      (one-coin Dawid-Skene, i.e. a skill-weighted vote); ``label_method="dawid_skene"`` instead runs
      crowd-kit's ``DawidSkene`` on the likely objects' labels afterwards.

    The label terms join in one final E-step: letting them drive the rates too made the label model and the
    junk-label distribution feed each other and the scores over-confident.

    *Honest priors.* With two workers per image a lone box is either the other worker's miss or this one's
    junk, and the data cannot say which (only the priors do). ``prior_miss`` 0.2 and ``prior_fp`` 0.2 false
    boxes per image are close to what the model fits where it is identified (5 workers per image on the
    benchmark's crowds: careful workers miss 15-20 % of signs, counting gross misplacements, and add about
    0.25 false boxes per image), with a strength of 10 answers so that a worker seen on a dozen images is
    still mostly judged by its own answers.

    **EM, localisation.** Box positions do not enter $p$, so with $p$ fixed alternate until no $\sigma_w$
    moves by more than ``tol``: $\mu$ as above, and
    $\sigma_w^2 = \frac{\nu_0 \sigma_0^2 + \sum p_c \sum_e (r_{b,e}^2/(1 - \lambda_{b,e}) - \sigma_{px}^2)_+/S_{c,e}^2}
    {\nu_0 + 4\sum p_c}$ over $w$'s boxes in candidates with $\ge 2$ boxes ($r$ = residual to $\mu$; the
    $1-\lambda$ factor undoes the shrinkage of a residual towards a mean that contains the box itself;
    $\sigma_0$ = ``prior_sigma``, $\nu_0$ = ``sigma_strength``).

    **Output.** Every candidate is output under its most probable class $\hat k$, and (``label_alternatives``)
    under every other label one of its boxes carries, as class-aware detectors do. The ``score`` of the box
    of $c$ under class $k$ is the probability that it is a true positive at AP50 (a real object of class $k$,
    boxed within IoU 0.5):

    $$\text{score}_{ck} = p_c\; q_{ck}\; (1 - \ell_c),\qquad
      \ell_c = \min\Big(1, \sum_e \big[\bar F_{\nu_e}(\tfrac{1}{2} S_{c,e} \sqrt{P_{c,e}})
      + \bar F_{\nu_e}(S_{c,e} \sqrt{P_{c,e}})\big]\Big),$$

    $\ell_c$ the probability that the box is loose: one edge off by half the side inwards or a whole side
    outwards (each alone brings IoU to 0.5), under a Student-t posterior of the edge with $\nu_e$ =
    ``edge_dof`` degrees of freedom ($\bar F$ its upper tail): the Gaussian posterior above with an uncertain
    scale (workers' sigmas fitted from few boxes, correlated looseness, gross errors) integrated out, so the
    tail is heavy and the term never rounds away. The product never reaches 1 (the logit is clipped at 30),
    and two candidates tie only with identical boxes and voters. Boxes with ``score`` $\ge$ ``min_score``
    are output (default 0.01: the ranked candidates; Export's ``--min_score`` decides what a user keeps).

    **Missed-sign round.** Answer rows with ``round == "missed_signs"`` come from a worker who saw the image
    with the current boxes drawn and was asked to add only what is missing. Their boxes cluster like any
    others. A candidate is *shown* when it has a first-round box that the worker saw: the model refits the
    first-round answers alone (what Wait Pool fitted when it chose and drew the round) and a first-round box is
    shown when its candidate there scored at least ``shown_min_score`` (the boxes the task draws), or when it
    overlaps such a box with IoU $\ge$ 0.1 (``SHOWN_OVERLAP_IOU``: a sign already marked, even loosely, is not
    redrawn). At a shown candidate the missed-sign worker's silence is no evidence (it is not in $A_c$, and its
    miss-rate M-step leaves those candidates out); at any other candidate, a lone low-scored box included, it
    counts like a drawer's: the worker looked for unmarked signs there and drew none. Its miss rate enters the
    image risk (it looked for missed signs). ``shown_min_score=None`` counts every first-round box as shown.

    **Checks** (``fit(..., checks=...)``): per-box verdicts of the check round, folded in by
    :func:`crowdboxes.aggregation.checks.fold_checks` (states T/W/L/N with prior $p_c (1 - \ell_c) q_{ck}$,
    $p_c (1 - \ell_c)(1 - q_{ck})$, $p_c \ell_c + (1 - p_c)\phi$, $(1 - p_c)(1 - \phi)$, $\phi$ the share of
    false candidates that lie loosely on a sign, prior mean ``misplaced_prior``; checker accuracies and lazy
    "yes" rates by EM with Beta priors of means ``checker_accuracy`` and ``checker_lazy`` and strength
    ``checker_strength``, errors leaning to "yes" by ``checker_yes_bias``). A checked box's score becomes
    $P(T \mid \text{verdicts})$; checks that match no candidate are skipped and listed in ``checks_problems_``
    (``checks_skipped_`` counts them).

    **Risk** (``images_``, for deciding where one more drawer pays off, as Lean Crowdsourcing's online mode
    does). Per image $t$ with answering workers $A_t$ and candidates $C_t$: the expected number of its real
    objects that every worker missed, $\max(\sum_{c \in C_t} p_c, \bar n) \cdot M_t / (1 - M_t)$ with
    $M_t = \frac{1}{G}\sum_g \prod_{w \in A_t} (1 - (1 - m_w) h_g)$ (missed-sign workers included) and
    $\bar n$ the mean of $\sum_c p_c$ over images; the expected existence errors of the output at 0.5,
    $\sum_c \min(p_c, 1 - p_c)$; the expected class errors, $\sum_c p_c (1 - \max_k P(y_c = k))$. ``risk``
    is their sum, the expected number of wrong, missing or mislabelled boxes. With checks, $p_c$ of a checked
    candidate is its existence after the checks (``checks.fold_checks``).

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

    min_score: float = attr.ib(default=0.01)
    """Output boxes whose score (probability of being a true positive) is below this are not output."""

    n_iter: int = attr.ib(default=50)
    """The maximum number of EM iterations (per matching pass)."""

    tol: float = attr.ib(default=1e-4)
    """EM stops when no object's existence probability changes by more than this."""

    prior_miss: float = attr.ib(default=0.2)
    """Prior mean of a worker's miss rate (Lean Crowdsourcing's ``prob_fn_prior``)."""

    prior_fp: float = attr.ib(default=0.2)
    """Prior mean of a worker's false boxes per image, $\\lambda_w$ (Lean Crowdsourcing's ``prob_fp_prior``)."""

    prior_coincidence: float = attr.ib(default=0.05)
    """Prior mean of $\\kappa$, the chance that another worker's box coincides with a false box."""

    temper: float = attr.ib(default=1.0)
    """Tempering $\\tau$ of the existence log-odds (1 = the model as is; below 1 = less confident)."""

    edge_dof: float = attr.ib(default=3.0)
    """Degrees of freedom $\\nu_e$ of the Student-t posterior of a box edge (localisation term of the score)."""

    prior_strength: float = attr.ib(default=10.0)
    """Pseudo-count of the priors on the miss, false-box and coincidence rates (answers' worth of evidence)."""

    prior_sigma: float = attr.ib(default=0.05)
    """Prior boundary sigma, as a fraction of the object side."""

    sigma_strength: float = attr.ib(default=5.0)
    """Pseudo-count (degrees of freedom) of the prior on sigma."""

    pixel_sigma: float = attr.ib(default=1.0)
    """Pixel floor of edge noise, added in quadrature."""

    shown_min_score: float | None = attr.ib(default=0.5)
    """The score from which a first-round box was shown to a missed-sign worker (Wait Pool shows the boxes the
    output keeps at 0.5); None: every first-round box counts as shown (*Missed-sign round*)."""

    checker_accuracy: float = attr.ib(default=0.85)
    """Prior mean of a checker's accuracy $a_j$ (*Checks*)."""

    checker_strength: float = attr.ib(default=10.0)
    """Pseudo-count of the Beta prior on a checker's accuracy."""

    checker_yes_bias: float = attr.ib(default=2.0)
    """Weight of "yes" among a checker's wrong verdicts, relative to each other wrong verdict (*Checks*)."""

    checker_lazy: float = attr.ib(default=0.1)
    """Prior mean of a checker's lazy-"yes" rate $\\pi_j$ (answers "yes" without looking; *Checks*)."""

    misplaced_prior: float = attr.ib(default=0.2)
    """Prior mean of $\\phi$, the share of false candidates that lie loosely on a sign (*Checks*)."""

    label_method: Literal["one_coin", "dawid_skene"] = attr.ib(default="one_coin")
    """``one_coin``: skill-weighted vote inside EM; ``dawid_skene``: crowd-kit DawidSkene on kept objects."""

    label_evidence: bool = attr.ib(default=True)
    """Let the labels vote on existence too (false positives' labels follow their own distribution $u$)."""

    size_groups: int = attr.ib(default=3)
    """Candidates are cut into this many size groups (quantiles); a smaller group's objects may be invisible to
    a worker ($h_g$, *Model*); 1 = every object as visible as the largest."""

    shape_evidence: bool = attr.ib(default=False)
    """Let the candidates' size and aspect vote on existence too (false boxes have their own shapes)."""

    label_alternatives: bool = attr.ib(default=True)
    """Also output an object under each other label one of its boxes carries, scored $p_c\\,P(y_c = k)$."""

    workers_: pd.DataFrame = attr.ib(init=False)
    """Per worker: ``miss_rate, fp_rate`` (false boxes per image, $\\lambda_w$), ``sigma, label_accuracy, images,
    boxes``."""

    prior_: float = attr.ib(init=False)
    """Share of the candidate objects that are real (mean existence posterior)."""

    checkers_: pd.DataFrame = attr.ib(init=False)
    """Per checker (index ``worker``): ``accuracy, lazy, checks`` (``checks.fold_checks``); empty without checks."""

    checks_problems_: list[Problem] = attr.ib(init=False)
    """``(row_number, reason)`` of every check row not used (no output box of its image matches it, bad row)."""

    checks_skipped_: int = attr.ib(init=False)
    """How many check rows were skipped (``len(checks_problems_)``)."""

    _checks: pd.DataFrame | None = attr.ib(init=False, default=None, repr=False)

    n_iter_: int = attr.ib(init=False)
    """EM iterations run."""

    images_: pd.DataFrame = attr.ib(init=False)
    """Per image (index ``image_id``): ``workers, expected_objects, expected_missed, existence_risk, class_risk,
    risk`` (see *Risk*)."""

    def __attrs_post_init__(self) -> None:
        if self.label_method not in ("one_coin", "dawid_skene"):
            raise ValueError(f"label_method must be one_coin or dawid_skene, not {self.label_method!r}")

    # ----------------------------------------------------------------------------------------------- fitting
    def fit(self, answers: pd.DataFrame, images: pd.DataFrame | None = None,
            checks: pd.DataFrame | None = None) -> "LeanEM":
        """Fit the model; ``checks`` (optional) are per-box verdicts folded into the scores (*Checks*).

        Args:
            answers: ``image_id, worker, x, y, w, h, label`` and optionally ``round`` (``missed_signs`` rows
                come from a missed-sign task).
            images: optional ``image_id, width, height``.
            checks: optional ``image_id, x, y, w, h, label, worker, verdict, right_label``.

        Returns:
            LeanEM: self.
        """
        self._checks = checks
        try:
            super().fit(answers, images)
        finally:
            self._checks = None
        return self

    def fit_predict(self, answers: pd.DataFrame, images: pd.DataFrame | None = None,
                    checks: pd.DataFrame | None = None) -> pd.DataFrame:
        """Fit and return ``boxes_``."""
        return self.fit(answers, images, checks).boxes_

    def _fit_prepared(self, prep: PreparedAnswers) -> None:
        nw = prep.n_workers
        corners = np.column_stack([prep.boxes[:, 0], prep.boxes[:, 1], prep.boxes[:, 0] + prep.boxes[:, 2],
                                   prep.boxes[:, 1] + prep.boxes[:, 3]])
        self.n_iter_ = 0
        shown_box = self._shown_boxes(prep, corners)
        self.n_iter_ = 0  # the first-round fit above does not count
        cluster, nc = cluster_boxes(prep, self.iou_thr)
        state = self._em(prep, corners, cluster, nc, shown_box)
        p, mu, q = state.p, state.mu, state.q
        obj_image = state.obj_image
        support = np.bincount(cluster, minlength=nc)
        if self.label_method == "dawid_skene":
            label = dawid_skene_labels(prep, cluster, nc, p >= 0.5, q.argmax(axis=1))
            q = q.copy()
            q[np.arange(nc), label] = np.maximum(q[np.arange(nc), label], q.max(axis=1))
        else:
            label = q.argmax(axis=1)  # argmax keeps the first maximum: the alphabetically first label
        boxes = np.column_stack([mu[:, 0], mu[:, 1], mu[:, 2] - mu[:, 0], mu[:, 3] - mu[:, 1]])
        tight = p * (1 - state.loose)  # P(a real object, boxed within IoU 0.5)
        obj, lab = np.arange(nc), label
        if self.label_alternatives and len(prep.label_names) > 1:
            # other labels some member drew: P(real, tight, class k) < the winner's
            pairs = np.unique(cluster * len(prep.label_names) + prep.label)
            c_alt, k_alt = pairs // len(prep.label_names), pairs % len(prep.label_names)
            alt = k_alt != label[c_alt]
            obj = np.concatenate([obj, c_alt[alt]])
            lab = np.concatenate([lab, k_alt[alt]])
        sc = tight[obj] * q[obj, lab]
        if self._checks is not None:
            folded = fold_checks(self._checks, prep, obj_image, boxes, p, q, state.loose, obj, lab, sc,
                                 accuracy_prior=self.checker_accuracy, strength=self.checker_strength,
                                 yes_bias=self.checker_yes_bias, lazy_prior=self.checker_lazy,
                                 misplaced_prior=self.misplaced_prior)
            obj, lab, sc = folded.obj, folded.label, folded.score
            self.checkers_ = folded.checkers
            self.checks_problems_ = folded.problems
            p = folded.existence
        else:
            self.checkers_ = empty_checkers()
            self.checks_problems_ = []
        self.checks_skipped_ = len(self.checks_problems_)
        keep = sc >= self.min_score
        obj, lab, sc = obj[keep], lab[keep], sc[keep]
        self.boxes_ = aggregated_boxes(prep, obj_image[obj], lab, boxes[obj], sc, support[obj])
        self.prior_ = float(p.mean())

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
        self.images_ = self._image_risk(prep, obj_image, p, q, state.miss, state.visible)

    def _fit_without_boxes(self, prep: PreparedAnswers) -> None:
        super()._fit_without_boxes(prep)
        self.checkers_ = empty_checkers()
        self.checks_problems_ = [] if self._checks is None else unmatched_checks(self._checks)
        self.checks_skipped_ = len(self.checks_problems_)
        miss = np.full(prep.n_workers, self.prior_miss)
        self.images_ = self._image_risk(prep, np.zeros(0, dtype=np.int64), np.zeros(0), np.ones((0, 1)), miss)

    @staticmethod
    def _image_risk(prep: PreparedAnswers, obj_image: np.ndarray, p: np.ndarray, q: np.ndarray,
                    miss: np.ndarray, visible: np.ndarray | None = None) -> pd.DataFrame:
        """Expected errors per image in the output at ``min_score=0.5`` (formulas under *Risk*)."""
        ni = prep.n_images
        # P(every worker who answered the image missed one given object)
        # (the mean over size groups: an object of group g is missed by w with 1 - (1 - m_w) h_g)
        all_miss = np.zeros(ni)
        groups = np.ones(1) if visible is None else visible
        for h in groups:
            log_miss = np.log(np.clip(1 - (1 - miss) * h, _TINY, 1.0))[prep.seen_worker]
            all_miss += np.exp(np.bincount(prep.seen_image, weights=log_miss, minlength=ni)) / len(groups)
        found = np.bincount(obj_image, weights=p, minlength=ni)
        typical = found.mean() if ni else 0.0
        expected_missed = np.maximum(found, typical) * all_miss / np.maximum(1 - all_miss, _TINY)
        existence = np.bincount(obj_image, weights=np.minimum(p, 1 - p), minlength=ni)
        labels = np.bincount(obj_image, weights=p * (1 - q.max(axis=1)), minlength=ni) if len(p) else np.zeros(ni)
        return pd.DataFrame({
            "workers": prep.n_seen.astype(np.int64), "expected_objects": found, "expected_missed": expected_missed,
            "existence_risk": existence, "class_risk": labels, "risk": expected_missed + existence + labels},
            index=prep.image_names).rename_axis("image_id")

    def _shown_boxes(self, prep: PreparedAnswers, corners: np.ndarray) -> np.ndarray | None:
        """Per box: a first-round box whose candidate the first-round model scored at least ``shown_min_score``
        (what a missed-sign worker was shown); None without missed-sign rows (*Missed-sign round*)."""
        later = prep.later if len(prep.later) == prep.n_boxes else np.zeros(prep.n_boxes, dtype=bool)
        if not later.any() or self.shown_min_score is None:
            return None
        sub = first_round(prep)
        cluster, nc = cluster_boxes(sub, self.iou_thr)
        state = self._em(sub, corners[~later], cluster, nc)
        score = state.p * (1 - state.loose) * state.q.max(axis=1, initial=0.0)
        first = score[cluster] >= self.shown_min_score
        # a box overlapping a shown one marks the same sign for the worker, even when loose: not redrawn
        i, j, _ = candidate_pairs(sub.offsets, sub.boxes, np.arange(sub.n_boxes), SHOWN_OVERLAP_IOU)
        first[i[first[j]]] = True
        shown = np.zeros(prep.n_boxes, dtype=bool)
        shown[~later] = first
        return shown

    def _em(self, prep: PreparedAnswers, corners: np.ndarray, cluster: np.ndarray, nc: int,
            shown_box: np.ndarray | None = None) -> _EMResult:
        """Existence and label EM, then localisation EM (both described in the class docstring)."""
        nw, ni, nl = prep.n_workers, prep.n_images, len(prep.label_names)
        bw = prep.worker
        obj_image = np.zeros(nc, dtype=np.int64)
        obj_image[cluster] = prep.image
        support = np.bincount(cluster, minlength=nc)
        multi = support[cluster] >= 2  # boxes whose residual says something about the worker
        group = self._size_groups(corners, cluster, nc)
        n_groups = int(group.max(initial=0)) + 1
        ev = _Evidence.build(prep, cluster, nc, obj_image, group, shown_box)
        visible = np.append(np.full(n_groups - 1, 0.8), 1.0)  # h = 1 would be a fixed point of the EM
        s = self.prior_strength
        a_m, b_m = self.prior_miss * s, (1 - self.prior_miss) * s
        a_k, b_k = self.prior_coincidence * s, (1 - self.prior_coincidence) * s
        px2 = self.pixel_sigma ** 2
        images_of = np.bincount(prep.seen_worker, minlength=nw).astype(np.float64)
        first_pair = ~prep.seen_later

        p = np.clip(support / np.maximum(prep.n_seen[obj_image], 1), 0.05, 0.95)
        lam = np.full(nw, self.prior_fp)
        q = np.zeros((nc, nl))
        lab, _ = majority_label(cluster, prep.label, nc, nl)
        q[np.arange(nc), lab] = 1.0
        label_llr: np.ndarray | float = 0.0
        miss = np.full(nw, self.prior_miss)
        kappa, nu = self.prior_coincidence, 1.0
        acc = np.full(nw, 0.8)
        rho = np.full(nl, 1.0 / nl)
        for it in range(self.n_iter):
            self.n_iter_ += 1
            # ---- M-step (existence and labels)
            p_box = p[cluster]
            # per size group g: real mass a worker could have drawn (tot), drew (hit), and the silent share that
            # was visible to it, P(visible | silent, real) = h_g m_w / (1 - h_g (1 - m_w))  (latent visibility)
            seen_drawn = np.zeros(nw)
            seen_silent = np.zeros(nw)
            vis_num = np.zeros(n_groups)
            vis_den = np.zeros(n_groups)
            for g in range(n_groups):
                mine = group == g
                pg = np.bincount(obj_image, weights=p * mine, minlength=ni)
                pg_new = np.bincount(obj_image, weights=p * (mine & ~ev.shown), minlength=ni)  # missed-sign view
                tot = np.bincount(prep.seen_worker, weights=np.where(prep.seen_later, pg_new[prep.seen_image],
                                                                     pg[prep.seen_image]), minlength=nw)
                hit_g = np.bincount(bw, weights=p_box * ev.counts * mine[cluster], minlength=nw)
                silent_g = np.maximum(tot - hit_g, 0.0)
                hw = visible[g] * (1 - miss)
                v = visible[g] * miss / np.maximum(1 - hw, _TINY)
                seen_drawn += hit_g
                seen_silent += silent_g * v
                vis_num[g] = hit_g.sum() + (silent_g * v).sum()
                vis_den[g] = tot.sum()
            miss = (a_m + seen_silent) / (a_m + b_m + seen_drawn + seen_silent)
            # the largest objects are always visible (h = 1), which pins the scale of h against m_w
            visible = np.append((1 + vis_num[:-1]) / (1 + vis_den[:-1]), 1.0)
            # a false candidate is made by one of its workers, w with odds lambda_w
            share = lam[bw] / np.bincount(cluster, weights=lam[bw], minlength=nc)[cluster]
            made = np.bincount(bw, weights=(1 - p_box) * share, minlength=nw)
            lam = (self.prior_fp * s + made) / (s + images_of)
            fake = 1 - p
            kappa = (a_k + (fake * (support - 1)).sum()) / (a_k + b_k + (fake * np.maximum(ev.asked - 1, 0)).sum())
            all_miss = np.zeros(ni)  # M_t over the first-round workers (class docstring, *Risk*)
            for h in visible:
                log_miss = np.log(np.clip(1 - (1 - miss) * h, _TINY, 1.0))[prep.seen_worker] * first_pair
                all_miss += np.exp(np.bincount(prep.seen_image, weights=log_miss, minlength=ni)) / n_groups
            nu = (1 + p.sum()) / (1 + (1 - all_miss).sum())
            acc, rho = label_m_step(prep, cluster, nl, nw, p_box, p, q)
            fake_labels = (1 + np.bincount(prep.label, weights=1 - p_box, minlength=nl)) / (nl + (1 - p_box).sum())
            # ---- E-step
            q, label_llr = label_posterior(prep, cluster, nc, nl, acc, rho, fake_labels)
            p_new = _expit(self.temper * ev.logit(miss, lam, kappa, nu, visible))
            change = np.abs(p_new - p).max() if nc else 0.0
            p = p_new
            if change <= self.tol:
                break
        if self.label_evidence:
            # labels enter the final posterior only: fitting the rates on them too let the label model and
            # the junk-label distribution feed each other and made the scores over-confident
            p = _expit(self.temper * (ev.logit(miss, lam, kappa, nu, visible) + label_llr
                                      + self._shape_llr(corners, cluster, nc, p)))

        # ---- localisation: sigma_w <-> mu_c with the existence posteriors as weights (block coordinate ascent;
        # box positions do not enter p, so this block can run after the existence block has converged)
        side_b = np.maximum(np.column_stack([corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1]]), 1.0)
        ref = np.empty((nc, 4))
        ref[cluster] = corners
        delta = corners - ref[cluster]
        sigma2 = np.full(nw, self.prior_sigma ** 2)
        wgt = p[cluster] * multi
        mu, prec, psum = locate(ref, delta, cluster, nc, side_b, sigma2[bw], px2)
        side_b = sides(mu, cluster)
        for it in range(self.n_iter):
            new = sigma2_m_step(corners, cluster, bw, nw, mu, prec, psum, side_b, wgt, px2, self.prior_sigma,
                                self.sigma_strength)
            mu, prec, psum = locate(ref, delta, cluster, nc, side_b, new[bw], px2)
            side_b = sides(mu, cluster)
            moved = np.abs(np.sqrt(new) - np.sqrt(sigma2)).max() if nw else 0.0
            sigma2 = new
            if moved <= self.tol:
                break
        loose = loose_chance(mu, psum, self.edge_dof)
        return _EMResult(p=p, mu=mu, q=q, obj_image=obj_image, miss=miss, fp=lam, sigma2=sigma2, acc=acc,
                         kappa=float(kappa), nu=float(nu), rho=rho, loose=loose, shown=ev.shown,
                         visible=visible)

    def _size_groups(self, corners: np.ndarray, cluster: np.ndarray, nc: int) -> np.ndarray:
        """Size group of each candidate: quantiles (``size_groups`` of them) of the mean log side of its boxes."""
        if self.size_groups <= 1 or nc < 2 * self.size_groups:
            return np.zeros(nc, dtype=np.int64)
        side = np.log(np.maximum(corners[:, 2:] - corners[:, :2], 1e-6)).mean(axis=1)
        mean = np.bincount(cluster, weights=side, minlength=nc) / np.bincount(cluster, minlength=nc)
        edges = np.quantile(mean, np.arange(1, self.size_groups) / self.size_groups)
        groups: np.ndarray = np.searchsorted(edges, mean, side="right").astype(np.int64)
        return groups

    def _shape_llr(self, corners: np.ndarray, cluster: np.ndarray, nc: int, p: np.ndarray) -> np.ndarray:
        """log P(shape | real) / P(shape | false) of each candidate (class docstring, *Model*).

        Shape = (log side, log aspect) of the candidate's mean box, each cut at its quintiles over all
        candidates; the two histograms are weighted by $p_c$ and $1 - p_c$, smoothed by one pseudo-count a cell.
        """
        if not self.shape_evidence or nc < 2:
            return np.zeros(nc)
        size = np.maximum(corners[:, 2:] - corners[:, :2], 1e-6)
        n = np.bincount(cluster, minlength=nc)
        mean = np.column_stack([np.bincount(cluster, weights=np.log(size[:, k]), minlength=nc) / n for k in (0, 1)])
        feats = (mean[:, 0] + mean[:, 1]) / 2, mean[:, 0] - mean[:, 1]
        cell = np.zeros(nc, dtype=np.int64)
        for f in feats:
            edges = np.quantile(f, [0.2, 0.4, 0.6, 0.8])
            cell = cell * 5 + np.searchsorted(edges, f, side="right")
        real = 1 + np.bincount(cell, weights=p, minlength=25)
        fake = 1 + np.bincount(cell, weights=1 - p, minlength=25)
        llr: np.ndarray = (np.log(real / real.sum()) - np.log(fake / fake.sum()))[cell]
        return llr
