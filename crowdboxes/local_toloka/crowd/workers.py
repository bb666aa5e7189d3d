"""Simulated workers: kinds, their parameters (box-aggregation.md section 5.3) and a workforce.

See :mod:`crowdboxes.local_toloka.crowd` for what each parameter does to a drawing, a judgement, a choice
or a text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np


KINDS = ("careful", "sloppy", "small_misser", "spammer_empty", "spammer_random", "verifier_always_ok", "slow")
DEFAULT_MIX = {"careful": 0.50, "sloppy": 0.20, "small_misser": 0.10, "spammer_empty": 0.05,
               "spammer_random": 0.05, "verifier_always_ok": 0.05, "slow": 0.05}


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
    def clip(v: Any, lo: Any, hi: Any) -> float:
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



def pick_workers(workforce: list[WorkerProfile], k: int, banned: list[set[str]], rng: np.random.Generator,
                 where: str, names: list[Any]) -> np.ndarray:
    """``k`` distinct workforce indices per item, uniformly at random, none of them in ``banned[item]``
    (worker ids as text); shape ``(len(banned), k)``. ValueError naming the first item (``names``) that has
    fewer than ``k`` eligible workers."""
    n_items, n_workers = len(banned), len(workforce)
    if k < 1 or k > n_workers:
        raise ValueError(f"{where}: {k} workers per item asked; need 1..{n_workers} (the workforce size)")
    keys = rng.random((n_items, n_workers))
    worker_ids = np.array([str(w.worker_id) for w in workforce], dtype=object)
    for i, ban in enumerate(banned):
        if ban:
            keys[i, np.isin(worker_ids, list(ban))] = 2.0  # keys are < 1: a banned worker comes last
    chosen = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < n_workers else np.tile(np.arange(n_workers),
                                                                                         (n_items, 1))
    short = (np.take_along_axis(keys, chosen, axis=1) >= 2.0).any(axis=1)
    if short.any():
        raise ValueError(f"{where}: fewer than {k} eligible workers for {names[int(np.flatnonzero(short)[0])]!r} "
                         f"(the others are excluded)")
    return chosen
