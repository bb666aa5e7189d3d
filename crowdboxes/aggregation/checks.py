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
* $L$ (a real sign, loosely boxed): $p_c\,\ell_c$;
* $N$ (no sign): $1 - p_c$.

**Checkers.** Checker $j$ reports the true state ($T \to$ yes, $W \to$ wrong_class, $L \to$ loose,
$N \to$ no_sign) with accuracy $a_j$; otherwise it picks one of the three other verdicts with weights
$\beta$ for "yes" (``yes_bias``) and 1 for each other, so a careless checker leans towards "yes":

$$P(v \mid s) = a_j [v = s] + (1 - a_j)\,[v \ne s]\,\frac{w_v}{\sum_{v' \ne s} w_{v'}},\qquad
w_{\text{yes}} = \beta,\; w_{\text{other}} = 1.$$

For $\beta = 2$: given $T$, each wrong verdict has $(1 - a_j)/3$; given $N$, "yes" has $(1 - a_j)/2$ and
loose and wrong_class $(1 - a_j)/4$ each.

**EM.** Alternate: the posterior of each checked box's state, $P(s \mid v) \propto P(s) \prod_j P(v_j \mid s)$;
and $a_j = \frac{\alpha + \sum_{\text{checks of } j} P(s = v_j \mid v)}{\alpha + \beta_a + n_j}$ (Beta prior of
mean ``accuracy_prior`` and strength $\alpha + \beta_a$ = ``strength``), until no $a_j$ moves by more than
1e-6 (at most 100 rounds).

**Scores.** The checked box's new score is $P(T \mid v)$. The candidate's other classes share
$P(W \mid v)$ as $r_{k'} \propto (q_{ck'} + 10^{-3}) \prod_{j:\,\text{wrong\_class}} P(\text{right\_label}_j
\mid k')$ with $P(\text{right\_label} = k' \mid k') = a_j$ and $(1 - a_j)/(K - 2)$ for each other class;
each becomes (or updates) an output box under class $k'$ with score $P(W \mid v)\,r_{k'}$, at the same place.
A ``right_label`` that no answer carries adds no class (the model has no posterior for it); verdicts compare
case-insensitively.
The candidate's existence becomes $1 - P(N \mid v)$ (the image risk uses it). A candidate checked under two
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
    return pd.DataFrame({"accuracy": pd.Series(dtype=np.float64),
                         "checks": pd.Series(dtype=np.int64)}).rename_axis("worker")


def confusion(accuracy: np.ndarray, yes_bias: float) -> np.ndarray:
    """$P(v \\mid s)$ per checker: shape (checkers, 4 states, 4 verdicts), states and verdicts in VERDICTS order."""
    weights = np.array([yes_bias, 1.0, 1.0, 1.0])
    wrong = np.tile(weights, (4, 1))
    np.fill_diagonal(wrong, 0.0)
    wrong /= wrong.sum(axis=1, keepdims=True)
    acc = np.asarray(accuracy, dtype=np.float64)[:, None, None]
    out: np.ndarray = acc * np.eye(4)[None] + (1 - acc) * wrong[None]
    return out


def state_posterior(prior: np.ndarray, group: np.ndarray, verdict: np.ndarray, checker: np.ndarray,
                    accuracy: np.ndarray, yes_bias: float) -> np.ndarray:
    """$P(s \\mid v)$ per checked box: ``prior`` (boxes, 4); check i is on box ``group[i]`` by ``checker[i]``."""
    like = confusion(accuracy, yes_bias)[checker, :, verdict]  # (checks, 4 states)
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
                yes_bias: float = 2.0) -> Folded:
    """New output rows and scores after the checks (module docstring).

    Args:
        checks: ``image_id, x, y, w, h, label, worker, verdict`` and optionally ``right_label``.
        prep: the answers the candidates come from (image and label codes).
        obj_image, obj_boxes, p, q, loose: per candidate (sorted by image): image code, box (x, y, w, h),
            existence, class posterior (candidates x classes), probability of a loose box.
        obj, label, score: the output rows before the checks (candidate, class code, score).
        accuracy_prior, strength: the Beta prior on a checker's accuracy.
        yes_bias: weight of "yes" among a checker's wrong verdicts.
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
    tight = p[g_cand] * (1 - loose[g_cand])
    prior = np.column_stack([tight * qk, tight * (1 - qk), p[g_cand] * loose[g_cand], 1 - p[g_cand]])

    n_checks = np.bincount(checker, minlength=len(checker_names)).astype(np.float64)
    alpha, beta = accuracy_prior * strength, (1 - accuracy_prior) * strength
    accuracy = np.full(len(checker_names), accuracy_prior)
    for _ in range(_N_ITER):
        post = state_posterior(prior, group, verdict, checker, accuracy, yes_bias)
        agree = post[group, verdict]
        new = (alpha + np.bincount(checker, weights=agree, minlength=len(accuracy))) / (alpha + beta + n_checks)
        moved = float(np.abs(new - accuracy).max())
        accuracy = new
        if moved <= 1e-6:
            break
    post = state_posterior(prior, group, verdict, checker, accuracy, yes_bias)

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
        existence[c] = 1 - post[g, 3]
        for k in range(nl):
            at = pos.get(c * nl + k)
            if at is not None and k != g_lab[g]:
                new_score[at] = post[g, 1] * r[g, k]
    for g in range(len(boxes_key)):
        new_score[pos[int(boxes_key[g])]] = post[g, 0]
    checkers = pd.DataFrame({"accuracy": accuracy, "checks": n_checks.astype(np.int64)},
                            index=pd.Index(checker_names, name="worker"))
    return Folded(rows // nl, rows % nl, new_score, existence, checkers, sorted(problems))
