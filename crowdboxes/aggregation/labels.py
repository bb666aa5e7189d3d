"""LeanEM's label model: one-coin worker accuracies, the class prior, the class posterior and the labels' vote
on existence (formulas in LeanEM's docstring, *EM, existence and labels*), and the Dawid-Skene alternative."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .utils import PreparedAnswers

__all__ = ["label_m_step", "label_posterior", "dawid_skene_labels"]


def label_m_step(prep: PreparedAnswers, cluster: np.ndarray, nl: int, nw: int, wgt: np.ndarray, p: np.ndarray,
                 q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """M-step of the label model: per-worker accuracy $a_w$ and class prior $\\rho$ (LeanEM's docstring)."""
    agree = q[cluster, prep.label]
    acc = (1.6 + np.bincount(prep.worker, weights=wgt * agree, minlength=nw)) / (
        2.0 + np.bincount(prep.worker, weights=wgt, minlength=nw))
    rho = (1.0 + (p[:, None] * q).sum(axis=0)) / (nl + p.sum())
    return acc, rho


def label_posterior(prep: PreparedAnswers, cluster: np.ndarray, nc: int, nl: int, acc: np.ndarray,
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


def dawid_skene_labels(prep: PreparedAnswers, cluster: np.ndarray, nc: int, keep: np.ndarray,
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
