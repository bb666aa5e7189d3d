"""The base class of every box aggregator (crowd-kit style: attrs, ``fit`` / ``fit_predict``, fitted ``*_``)."""

from __future__ import annotations

import attr
import pandas as pd
from crowdkit.aggregation.utils import named_series_attrib

from .utils import PreparedAnswers, Problem, empty_aggregated_boxes, prepare_answers

__all__ = ["BaseBoxAggregator"]


@attr.s
class BaseBoxAggregator:
    """A base class for aggregators that merge several workers' bounding boxes per image.

    Input contract (``fit``):

    * ``answers``: a long ``pandas.DataFrame`` with one row per drawn box: ``image_id``, ``worker``,
      ``x, y, w, h`` (pixels, origin top-left) and ``label`` (class name). A row whose four coordinates are NaN
      means the worker saw the image and drew nothing; it counts as that worker's "no object here" vote.
    * ``images`` (optional): ``image_id, width, height``. Boxes are clipped to the image, and rows of unknown
      images are rejected.

    Rows that cannot be used (NaN in some coordinates, negative or zero size, unknown image id, a box outside
    the image, a box without a label) are skipped and listed in ``problems_``; ``fit`` never raises on them.

    Attributes:
        boxes_ (DataFrame): aggregated boxes ``image_id, label, x, y, w, h, score, support``, sorted by image then
            score (highest first). ``score`` is in [0, 1] and ranks boxes for AP; ``support`` is the number of
            workers whose box was merged into this one. Images with no box do not appear.
        skills_ (Series): a worker's quality in [0, 1] (or NaN without evidence), indexed by ``worker``.
        problems_ (list): ``(row_number, reason)`` for every rejected input row; ``row_number`` is the 0-based
            position in ``answers``.
    """

    boxes_: pd.DataFrame = attr.ib(init=False)
    """Aggregated boxes: ``image_id, label, x, y, w, h, score, support``."""

    skills_: "pd.Series" = named_series_attrib(name="skill")
    """Workers' skills, indexed by ``worker``."""

    problems_: list[Problem] = attr.ib(init=False)
    """``(row_number, reason)`` of every rejected input row."""

    def fit(self, answers: pd.DataFrame, images: pd.DataFrame | None = None) -> "BaseBoxAggregator":
        """Fit the aggregator.

        Args:
            answers: ``image_id, worker, x, y, w, h, label`` (extra columns are ignored).
            images: optional ``image_id, width, height``.

        Returns:
            BaseBoxAggregator: self.
        """
        prep = prepare_answers(answers, images)
        self.problems_ = prep.problems
        if prep.n_boxes == 0:
            self._fit_without_boxes(prep)
            return self
        self._fit_prepared(prep)
        return self

    def fit_predict(self, answers: pd.DataFrame, images: pd.DataFrame | None = None) -> pd.DataFrame:
        """Fit and return ``boxes_``."""
        return self.fit(answers, images).boxes_

    def _fit_prepared(self, prep: PreparedAnswers) -> None:
        """Set ``boxes_`` and ``skills_`` from validated answers with at least one box."""
        raise NotImplementedError()

    def _fit_without_boxes(self, prep: PreparedAnswers) -> None:
        """Nobody drew anything: no boxes and no evidence about anyone."""
        self.boxes_ = empty_aggregated_boxes()
        self.skills_ = pd.Series(float("nan"), index=prep.worker_names, dtype=float,
                                 name="skill").rename_axis("worker")
