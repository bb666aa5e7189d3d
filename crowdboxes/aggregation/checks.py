r"""Per-box checks folded into LeanEM's posterior: checker accuracies by EM, verdicts by Bayes.

A check is one worker's verdict on one output box (checks.csv of Wait Pool's box-check round, ``worker_id``
renamed ``worker``): ``image_id, x, y, w, h, label, worker, verdict, right_label``, ``verdict`` one of
``yes`` (a tight box of a sign of the named class), ``no_sign``, ``loose`` (a sign, but not tightly boxed) and
``wrong_class`` (a tight box of a sign of another class, ``right_label`` naming it).

**Matching.** A check refers to the candidate object of its image whose box has the highest IoU with the
checked box, if that IoU is at least 0.5 (the label need not agree: the check may be of a runner-up class).
A check that matches no candidate, or has an unknown verdict, a bad box, no worker, or a label nobody drew, is
skipped and listed in ``problems`` (0-based row of the checks frame, reason).

**States.** The checked box (candidate $c$ under label $k$) is in one of four states, with the prior from the
model ($p_c$ existence, $q_{ck}$ class posterior, $\ell_c$ the probability that the box is loose, LeanEM's
*Output*):

* $T$ (a real sign of class $k$, boxed within IoU 0.5): $p_c\,(1 - \ell_c)\,q_{ck}$;
* $W$ (a real sign of another class, boxed tightly): $p_c\,(1 - \ell_c)\,(1 - q_{ck})$;
* $L$ (on a sign, but not tightly boxed): $p_c\,\ell_c + (1 - p_c)\,\phi$;
* $N$ (no sign): $(1 - p_c)(1 - \phi)$.

$\phi$ is the share of false candidates that lie loosely on a sign: a sign boxed far off (a gross
misplacement, or a second box of a sign beside its real one) is a false candidate to the existence model, yet
a checker sees a sign under it. Without $\phi$ a "loose" verdict on a lone box could only be a checker's
error, and would raise the box's score.

**Checkers.** Checker $j$ answers "yes" without looking with probability $\pi_j$ (its lazy rate: the bias
toward "yes" of checkers who accept whatever they are shown); otherwise it reports the true state
($T \to$ yes, $W \to$ wrong_class, $L \to$ loose, $N \to$ no_sign) with accuracy $a_j$, else picks one of
the three other verdicts with weights $\beta$ for "yes" (``yes_bias``) and 1 for each other:

$$P(v \mid s) = \pi_j [v = \text{yes}] + (1 - \pi_j)\Big(a_j [v = s] + (1 - a_j)\,[v \ne s]\,
\frac{w_v}{\sum_{v' \ne s} w_{v'}}\Big),\qquad w_{\text{yes}} = \beta,\; w_{\text{other}} = 1.$$

For $\pi_j = 0$, $\beta = 2$: given $T$, each wrong verdict has $(1 - a_j)/3$; given $N$, "yes" has
$(1 - a_j)/2$ and loose and wrong_class $(1 - a_j)/4$ each. With one check per box a one-coin checker who
always says "yes" looks accurate (its "yes" makes the boxes it checks look right); $\pi_j$ separates it, since
its "yes" rate does not follow the prior of the boxes it is shown.

**EM.** Alternate: the posterior of each checked box's state, $P(s \mid v) \propto P(s) \prod_i P(v_i \mid s)$;
then, per check $i$ of checker $j$ on box $g$, the share of a lazy "yes"
$z_i = [v_i = \text{yes}]\sum_s P(s \mid v_g)\,\pi_j / P(v_i \mid s)$ and of an attentive true verdict
$r_i = P(s = v_i \mid v_g)\,(1 - \pi_j)\,a_j / P(v_i \mid s = v_i)$, and
$a_j = \frac{\alpha + \sum_i r_i}{\alpha + \beta_a + \sum_i (1 - z_i)}$,
$\pi_j = \frac{\alpha_\pi + \sum_i z_i}{\alpha_\pi + \beta_\pi + n_j}$,
$\phi = \frac{\alpha_\phi + \sum_g P(L \mid v_g)\,(1 - p_g)\phi / P_g(L)}{\alpha_\phi + \beta_\phi + \sum_g (1 - p_g)}$
(Beta priors of means ``accuracy_prior``, ``lazy_prior``, ``misplaced_prior``, each of strength
``strength``), until no parameter moves by more than 1e-6 (at most 100 rounds).

**Scores.** The checked box's new score is $P(T \mid v)$. The candidate's other classes share
$P(W \mid v)$ as $r_{k'} \propto (q_{ck'} + 10^{-3}) \prod_{j:\,\text{wrong\_class}} P(\text{right\_label}_j
\mid k')$ with $P(\text{right\_label} = k' \mid k') = a_j$ and $(1 - a_j)/(K - 2)$ for each other class;
each becomes (or updates) an output box under class $k'$ with score $P(W \mid v)\,r_{k'}$, at the same place.
A ``right_label`` that no answer carries adds no class (the model has no posterior for it); verdicts compare
case-insensitively.
The candidate's existence becomes $P(T \mid v) + P(W \mid v) + P(L \mid v)\,p_c\ell_c / P(L)$ (the image risk
uses it: a sign boxed far off is still a false candidate). A candidate checked under two
labels takes its other classes from the label with more checks; each checked label keeps its own $P(T)$.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .utils import PreparedAnswers, Problem, group_offsets, paired_iou

__all__ = ["CHECK_COLUMNS", "VERDICTS", "Folded", "empty_checkers", "fold_checks", "unmatched_checks",
           "state_posterior"]

CHECK_COLUMNS = ("image_id", "x", "y", "w", "h", "label", "worker", "verdict")
#: Verdicts in state order: T, W, L, N.
VERDICTS = ("yes", "wrong_class", "loose", "no_sign")
MATCH_IOU = 0.5
_N_ITER = 100


class Folded(NamedTuple):
    """What :func:`fold_checks` returns: output rows (candidate, class code, score) and the rest."""

    obj: np.ndarray
    label: np.ndarray
    score: np.ndarray
    existence: np.ndarray
    checkers: pd.DataFrame
    problems: list[Problem]


def empty_checkers() -> pd.DataFrame:
    """A ``checkers_`` frame without rows."""
    return pd.DataFrame({"accuracy": pd.Series(dtype=np.float64), "lazy": pd.Series(dtype=np.float64),
                         "checks": pd.Series(dtype=np.int64)}).rename_axis("worker")


def confusion(accuracy: np.ndarray, yes_bias: float, lazy: np.ndarray | None = None) -> np.ndarray:
    """$P(v \\mid s)$ per checker: shape (checkers, 4 states, 4 verdicts), states and verdicts in VERDICTS order;
    ``lazy`` = $\\pi_j$ per checker (None: 0)."""
    weights = np.array([yes_bias, 1.0, 1.0, 1.0])
    wrong = np.tile(weights, (4, 1))
    np.fill_diagonal(wrong, 0.0)
    wrong /= wrong.sum(axis=1, keepdims=True)
    acc = np.asarray(accuracy, dtype=np.float64)[:, None, None]
    out: np.ndarray = acc * np.eye(4)[None] + (1 - acc) * wrong[None]
    if lazy is not None:
        pi = np.asarray(lazy, dtype=np.float64)[:, None, None]
        out = pi * np.eye(4)[0][None, None, :] + (1 - pi) * out
    return out


def state_posterior(prior: np.ndarray, group: np.ndarray, verdict: np.ndarray, checker: np.ndarray,
                    accuracy: np.ndarray, yes_bias: float, lazy: np.ndarray | None = None) -> np.ndarray:
    """$P(s \\mid v)$ per checked box: ``prior`` (boxes, 4); check i is on box ``group[i]`` by ``checker[i]``."""
    like = confusion(accuracy, yes_bias, lazy)[checker, :, verdict]  # (checks, 4 states)
    log_post = np.log(np.maximum(prior, 1e-300))
    for s in range(4):
        log_post[:, s] += np.bincount(group, weights=np.log(np.maximum(like[:, s], 1e-300)), minlength=len(prior))
    log_post -= log_post.max(axis=1, keepdims=True)
    post: np.ndarray = np.exp(log_post)
    post /= post.sum(axis=1, keepdims=True)
    return post


def _valid_rows(checks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[Problem]]:
    """Boxes and verdict codes of the checks, and the rows that cannot be used (problems, by row)."""
    missing = [c for c in CHECK_COLUMNS if c not in checks.columns]
    if missing:
        raise ValueError(f"checks lack column(s) {', '.join(missing)}; need {', '.join(CHECK_COLUMNS)}")
    n = len(checks)
    problems: list[Problem] = []
    boxes = np.column_stack([pd.to_numeric(checks[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                             for c in ("x", "y", "w", "h")]) if n else np.zeros((0, 4))
    verdict_text = checks["verdict"].astype(str).str.strip().str.lower().to_numpy()
    code = np.array([VERDICTS.index(v) if v in VERDICTS else -1 for v in verdict_text], dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    for row in range(n):
        if pd.isna(checks["image_id"].iloc[row]):
            reason = "missing image id"
        elif pd.isna(checks["worker"].iloc[row]):
            reason = "missing worker id"
        elif code[row] < 0:
            reason = f"unknown verdict {checks['verdict'].iloc[row]!r}"
        elif not (np.isfinite(boxes[row]).all() and boxes[row, 2] > 0 and boxes[row, 3] > 0):
            reason = "bad box"
        else:
            continue
        ok[row] = False
        problems.append((row, reason))
    return boxes, np.where(ok, code, -1), problems


def unmatched_checks(checks: pd.DataFrame) -> list[Problem]:
    """Every row of ``checks`` as a problem (there was no output box to match it to)."""
    _, code, problems = _valid_rows(checks)
    problems += [(int(r), "no output box of its image matches it") for r in np.flatnonzero(code >= 0)]
    return sorted(problems)


def _match(checks: pd.DataFrame, boxes: np.ndarray, usable: np.ndarray, prep: PreparedAnswers,
           obj_image: np.ndarray, obj_boxes: np.ndarray, problems: list[Problem]) -> np.ndarray:
    """The candidate of each check (-1 when none of its image has IoU >= 0.5 with it)."""
    matched = np.full(len(checks), -1, dtype=np.int64)
    # ids compare as text: checks.csv is read as text, the answers' ids may be numbers (a truth's ids)
    image = pd.Index(prep.image_names.astype(str)).get_indexer(pd.Index(checks["image_id"].astype(str)))
    offsets = group_offsets(obj_image, prep.n_images)
    for row in np.flatnonzero(usable):
        g = image[row]
        lo, hi = (offsets[g], offsets[g + 1]) if g >= 0 else (0, 0)
        if hi > lo:
            iou = paired_iou(np.repeat(boxes[row][None], hi - lo, axis=0), obj_boxes[lo:hi])
            best = int(iou.argmax())
            if iou[best] >= MATCH_IOU:
                matched[row] = lo + best
                continue
        problems.append((int(row), "no output box of its image matches it"))
    return matched


def fold_checks(checks: pd.DataFrame, prep: PreparedAnswers, obj_image: np.ndarray, obj_boxes: np.ndarray,
                p: np.ndarray, q: np.ndarray, loose: np.ndarray, obj: np.ndarray, label: np.ndarray,
                score: np.ndarray, accuracy_prior: float = 0.85, strength: float = 10.0,
                yes_bias: float = 2.0, lazy_prior: float = 0.0, misplaced_prior: float = 0.0) -> Folded:
    """New output rows and scores after the checks (module docstring).

    Args:
        checks: ``image_id, x, y, w, h, label, worker, verdict`` and optionally ``right_label``.
        prep: the answers the candidates come from (image and label codes).
        obj_image, obj_boxes, p, q, loose: per candidate (sorted by image): image code, box (x, y, w, h),
            existence, class posterior (candidates x classes), probability of a loose box.
        obj, label, score: the output rows before the checks (candidate, class code, score).
        accuracy_prior, strength: the Beta prior on a checker's accuracy.
        yes_bias: weight of "yes" among a checker's wrong verdicts.
        lazy_prior: prior mean of a checker's lazy-"yes" rate $\\pi_j$ (strength ``strength``; 0 = none).
        misplaced_prior: prior mean of $\\phi$, the share of false candidates that lie loosely on a sign
            (strength ``strength``; 0 = none).
    """
    boxes, code, problems = _valid_rows(checks)
    names = list(prep.label_names)
    label_code = np.array([names.index(str(v)) if str(v) in names else -1 for v in checks["label"]], dtype=np.int64)
    usable = code >= 0
    for row in np.flatnonzero(usable & (label_code < 0)):
        problems.append((int(row), f"label {checks['label'].iloc[row]!r} is not among the answers' labels"))
    usable &= label_code >= 0
    cand = _match(checks, boxes, usable, prep, obj_image, obj_boxes, problems)
    used = np.flatnonzero(cand >= 0)
    existence = p.copy()
    if not len(used):
        return Folded(obj, label, score, existence, empty_checkers(), sorted(problems))

    # one checked box per (candidate, checked label)
    key = cand[used] * len(names) + label_code[used]
    boxes_key, group = np.unique(key, return_inverse=True)
    g_cand, g_lab = boxes_key // len(names), boxes_key % len(names)
    checker_codes, checker_names = pd.factorize(pd.Series(checks["worker"].to_numpy()[used]).astype(str), sort=True)
    checker = np.asarray(checker_codes, dtype=np.int64)
    verdict = code[used]
    qk = q[g_cand, g_lab]
    pc, lc = p[g_cand], loose[g_cand]
    tight = pc * (1 - lc)

    n_checks = np.bincount(checker, minlength=len(checker_names)).astype(np.float64)
    alpha, beta = accuracy_prior * strength, (1 - accuracy_prior) * strength
    alpha_l, beta_l = lazy_prior * strength, (1 - lazy_prior) * strength
    alpha_m, beta_m = misplaced_prior * strength, (1 - misplaced_prior) * strength
    accuracy = np.full(len(checker_names), accuracy_prior)
    lazy = np.full(len(checker_names), lazy_prior)
    phi = misplaced_prior
    said_yes = verdict == 0
    for _ in range(_N_ITER):
        prior = np.column_stack([tight * qk, tight * (1 - qk), pc * lc + (1 - pc) * phi, (1 - pc) * (1 - phi)])
        post = state_posterior(prior, group, verdict, checker, accuracy, yes_bias, lazy)
        # per check: P(v | s), then the shares of the lazy "yes" and of the attentive right verdict
        like = confusion(accuracy, yes_bias, lazy)[checker, :, verdict]
        per_state = post[group] / np.maximum(like, 1e-300)
        lazy_share = lazy[checker] * said_yes * per_state.sum(axis=1)
        right = (1 - lazy[checker]) * accuracy[checker] * post[group, verdict] / np.maximum(
            like[np.arange(len(verdict)), verdict], 1e-300)
        attentive = np.bincount(checker, weights=1 - lazy_share, minlength=len(accuracy))
        new = (alpha + np.bincount(checker, weights=right, minlength=len(accuracy))) / (alpha + beta + attentive)
        new_lazy = (alpha_l + np.bincount(checker, weights=lazy_share, minlength=len(lazy))) / (
            alpha_l + beta_l + n_checks)
        # the loose state's share that is a false candidate (a sign boxed far off), over the false mass
        false_loose = post[:, 2] * (1 - pc) * phi / np.maximum(prior[:, 2], 1e-300)
        new_phi = float((alpha_m + false_loose.sum()) / (alpha_m + beta_m + (1 - pc).sum()))
        moved = max(float(np.abs(new - accuracy).max()), float(np.abs(new_lazy - lazy).max()), abs(new_phi - phi))
        accuracy, lazy, phi = new, new_lazy, new_phi
        if moved <= 1e-6:
            break
    prior = np.column_stack([tight * qk, tight * (1 - qk), pc * lc + (1 - pc) * phi, (1 - pc) * (1 - phi)])
    post = state_posterior(prior, group, verdict, checker, accuracy, yes_bias, lazy)
    false_loose = post[:, 2] * (1 - pc) * phi / np.maximum(prior[:, 2], 1e-300)

    # other classes of a candidate share P(W): its class posterior times the checkers' right_label evidence
    nl = len(names)
    right = checks["right_label"].to_numpy()[used] if "right_label" in checks.columns else np.full(len(used), None)
    right_code = np.array([names.index(str(v)) if isinstance(v, str) and v in names else -1 for v in right],
                          dtype=np.int64)
    log_r = np.log(q[g_cand] + 1e-3)
    log_r[np.arange(len(g_cand)), g_lab] = -np.inf
    says = (verdict == VERDICTS.index("wrong_class")) & (right_code >= 0) & (right_code != g_lab[group])
    if nl > 2 and says.any():
        a = accuracy[checker[says]]
        hit, miss_ = np.log(np.maximum(a, 1e-12)), np.log(np.maximum((1 - a) / (nl - 2), 1e-12))
        for i, g, k in zip(range(len(a)), group[says], right_code[says]):
            finite = np.isfinite(log_r[g])
            log_r[g, finite] += miss_[i]
            log_r[g, k] += hit[i] - miss_[i]
    top = log_r.max(axis=1, keepdims=True)
    r = np.where(np.isfinite(log_r), np.exp(log_r - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = r.sum(axis=1, keepdims=True)
    r = np.divide(r, total, out=np.zeros_like(r), where=total > 0)  # one class only: nothing to share

    # rows: every (candidate, class) already output, plus right_label classes of checked candidates
    extra_c = g_cand[group[says]] if nl > 1 else np.zeros(0, dtype=np.int64)
    extra_k = right_code[says] if nl > 1 else np.zeros(0, dtype=np.int64)
    rows = np.unique(np.concatenate([obj * nl + label, extra_c * nl + extra_k, boxes_key]))
    pos = {int(r_): i for i, r_ in enumerate(rows)}
    old = dict(zip((obj * nl + label).tolist(), score.tolist()))
    new_score = np.array([old.get(int(r_), 0.0) for r_ in rows])
    # primary checked label of a candidate: the one with most checks (then the first)
    per_group = np.bincount(group, minlength=len(boxes_key))
    order = np.lexsort((-per_group, g_cand))
    primary = order[np.r_[True, g_cand[order][1:] != g_cand[order][:-1]]]
    for g in primary:
        c = int(g_cand[g])
        existence[c] = 1 - post[g, 3] - false_loose[g]
        for k in range(nl):
            at = pos.get(c * nl + k)
            if at is not None and k != g_lab[g]:
                new_score[at] = post[g, 1] * r[g, k]
    for g in range(len(boxes_key)):
        new_score[pos[int(boxes_key[g])]] = post[g, 0]
    checkers = pd.DataFrame({"accuracy": accuracy, "lazy": lazy, "checks": n_checks.astype(np.int64)},
                            index=pd.Index(checker_names, name="worker"))
    return Folded(rows // nl, rows % nl, new_score, existence, checkers, sorted(problems))
