"""Aggregation of crowd bounding boxes: one module per method, a registry, and ``get_aggregator``.

Methods (``get_aggregator(name, **params)``):

* ``lean_em`` (default, ours): worker reliability by EM without ground truth, precision-weighted boxes,
  every candidate ranked by a calibrated score (the probability that the box is a true positive); optional
  per-box checks (``checks``) and missed-sign additions (``round`` column) fold into the same posterior.
* ``iou_cluster``: SageMaker Ground Truth's consolidation (IoU clustering, majority, average).
* ``wbf``: Weighted Boxes Fusion (Solovyev et al.), class-aware as packaged or class-agnostic.
* ``best_verified``: the Toloka tutorial's "one drawer plus verifiers" (needs verification verdicts).
"""

from __future__ import annotations

from typing import Any

from .base import BaseBoxAggregator
from .best_verified import BestVerified
from .iou_cluster import IoUClustering
from .lean_em import LeanEM
from .wbf import WeightedBoxesFusion

__all__ = ["BaseBoxAggregator", "BestVerified", "IoUClustering", "LeanEM", "WeightedBoxesFusion", "METHODS",
           "DEFAULT_METHOD", "get_aggregator"]

METHODS: dict[str, type[BaseBoxAggregator]] = {
    "lean_em": LeanEM,
    "iou_cluster": IoUClustering,
    "wbf": WeightedBoxesFusion,
    "best_verified": BestVerified,
}
DEFAULT_METHOD = "lean_em"


def get_aggregator(name: str = DEFAULT_METHOD, **params: Any) -> BaseBoxAggregator:
    """A new aggregator called ``name`` built with ``params``; ValueError naming the known methods otherwise."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown aggregation method {name!r}; known: {', '.join(METHODS)}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for aggregation method {name!r}: {exc}") from None
