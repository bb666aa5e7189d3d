"""SageMaker Ground Truth's bounding-box consolidation, as documented: IoU clustering + majority + average."""

from __future__ import annotations

import attr
import numpy as np

from .base import BaseBoxAggregator
from .utils import PreparedAnswers, agreement_skills, aggregated_boxes, majority_label, cluster_boxes

__all__ = ["IoUClustering"]


@attr.s
class IoUClustering(BaseBoxAggregator):
    r"""IoU clustering across workers, the consolidation of Amazon SageMaker Ground Truth (``ACS-BoundingBox``).

    The documented algorithm "finds the most similar boxes from different workers based on the Jaccard index
    (IoU) and averages them". Its thresholds are not public; this is the common faithful reading (also
    Lean Crowdsourcing's "simple" mode and BDC's MV baseline):

    1. Per image, group boxes of different workers whose IoU is at least ``iou_thr``, at most one box per
       worker per group (``utils.cluster_boxes``: greedy, seeded by the box most workers agree with).
    2. Keep a group when its support $s$ (workers in the group) is at least ``min_support`` of the $K$ workers
       who answered the image: $s / K \ge$ ``min_support`` (with the default 0.5, a tie such as 2 of 4 is kept).
    3. Box = the plain mean of the members' corners; class = majority of the members' labels (a tie goes to
       the alphabetically first label); ``score`` $= s / K$.

    Images that every worker left empty produce no box. Workers get ``skills_`` = F1 of their boxes against
    the kept groups (``utils.agreement_skills``); no worker weighting is used.

    Examples:
        >>> import pandas as pd
        >>> from crowdboxes.aggregation import IoUClustering
        >>> answers = pd.DataFrame({"image_id": ["a"] * 3, "worker": ["w1", "w2", "w3"], "x": [10, 12, 11],
        ...                         "y": [10, 10, 10], "w": [20, 20, 20], "h": [20, 20, 20],
        ...                         "label": ["stop", "stop", "yield"]})
        >>> IoUClustering().fit_predict(answers)[["image_id", "label", "x", "score", "support"]]
          image_id label     x  score  support
        0        a  stop  11.0    1.0        3
    """

    iou_thr: float = attr.ib(default=0.5)
    """Minimum IoU for two workers' boxes to be the same object."""

    min_support: float = attr.ib(default=0.5)
    """Minimum share of the image's workers that must have drawn the object."""

    def _fit_prepared(self, prep: PreparedAnswers) -> None:
        cluster, nc = cluster_boxes(prep, self.iou_thr)
        support = np.bincount(cluster, minlength=nc)
        obj_image = np.zeros(nc, dtype=np.int64)
        obj_image[cluster] = prep.image
        share = support / prep.n_seen[obj_image]
        keep = share >= self.min_support - 1e-12
        corners = np.column_stack([prep.boxes[:, 0], prep.boxes[:, 1], prep.boxes[:, 0] + prep.boxes[:, 2],
                                   prep.boxes[:, 1] + prep.boxes[:, 3]])
        mean: np.ndarray = np.column_stack([np.bincount(cluster, weights=corners[:, k], minlength=nc)
                                            for k in range(4)])
        mean /= support[:, None]
        boxes = np.column_stack([mean[:, 0], mean[:, 1], mean[:, 2] - mean[:, 0], mean[:, 3] - mean[:, 1]])
        label, _ = majority_label(cluster, prep.label, nc, len(prep.label_names))
        self.boxes_ = aggregated_boxes(prep, obj_image[keep], label[keep], boxes[keep], share[keep], support[keep])
        self.skills_ = agreement_skills(prep, keep[cluster], np.bincount(obj_image[keep], minlength=prep.n_images))
