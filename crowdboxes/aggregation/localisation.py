"""LeanEM's localisation: object corners as precision-weighted means, the workers' boundary scale, and the chance
that an object's box is loose (formulas in LeanEM's docstring: *Model*, *EM, localisation*, *Output*)."""

from __future__ import annotations

import numpy as np

__all__ = ["sides", "locate", "sigma2_m_step", "loose_chance"]


def sides(mu: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Width and height of each box's object, at least 1 px."""
    wh: np.ndarray = np.maximum(np.column_stack([mu[:, 2] - mu[:, 0], mu[:, 3] - mu[:, 1]]), 1.0)
    per_box: np.ndarray = wh[cluster]
    return per_box


def locate(ref: np.ndarray, delta: np.ndarray, cluster: np.ndarray, nc: int, side_b: np.ndarray,
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


def sigma2_m_step(corners: np.ndarray, cluster: np.ndarray, bw: np.ndarray, nw: int, mu: np.ndarray,
                  prec: np.ndarray, psum: np.ndarray, side_b: np.ndarray, wgt: np.ndarray, px2: float,
                  prior_sigma: float, strength: float) -> np.ndarray:
    """M-step for the boundary scale $\\sigma_w^2$ (LeanEM's *EM, localisation*: prior ``prior_sigma`` with
    ``strength`` degrees of freedom); in place to spare memory."""
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
    out: np.ndarray = np.maximum((strength * prior_sigma ** 2 + num) / (strength + den), 0.005 ** 2)
    return out


def loose_chance(mu: np.ndarray, psum: np.ndarray, edge_dof: float) -> np.ndarray:
    """P(the object's box misses IoU 0.5 with the true one): one edge off by half the side inwards or a whole
    side outwards, under a Student-t posterior of each edge with ``edge_dof`` degrees of freedom (*Output*)."""
    from scipy.stats import t as student

    side = np.maximum(np.column_stack([mu[:, 2] - mu[:, 0], mu[:, 3] - mu[:, 1]]), 1.0)[:, [0, 1, 0, 1]]
    rel = np.sqrt(1.0 / psum) / side  # posterior sd of each edge as a fraction of its side
    tail = student.sf(0.5 / rel, edge_dof) + student.sf(1.0 / rel, edge_dof)
    loose: np.ndarray = np.minimum(tail.sum(axis=1), 1.0)
    return loose
