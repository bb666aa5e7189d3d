"""Adaptive overlap: one more drawer only for the images whose aggregated boxes are still uncertain.

Lean Crowdsourcing's online mode (Branson, Van Horn & Perona, CVPR 2017): instead of a fixed number of
drawers per image, start with a few, aggregate, and ask another worker only where the model expects
errors. :class:`~crowdboxes.aggregation.LeanEM` gives every image a ``risk`` (the expected number of
missed, spurious or mislabelled boxes in its output); an image whose answers are all in, whose risk is
above ``risk_threshold`` and whose overlap is below ``max_overlap`` gets its task overlap raised by one.

:func:`next_targets` is the rule (used by Wait Pool and by the aggregation benchmark alike);
:class:`AdaptiveOverlap` applies it to a live Toloka pool, restartably: the targets are written to
``artifacts.OVERLAP_STATE`` (adaptive_overlap.json) before Toloka is told, and a target is an absolute
overlap, so re-applying it after a crash changes nothing. (Not to be confused with control images, the
images of known boxes that score workers: :mod:`crowdboxes.toloka.known_boxes`.)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from crowdboxes.artifacts import OVERLAP_STATE
from crowdboxes.files import write_text_atomic
from crowdboxes.toloka.client import LIST_PAGE
from crowdboxes.toloka.collection.solutions import answers_frame
from crowdboxes.toloka.spending import BudgetGuard, grant

if TYPE_CHECKING:
    from toloka.client import TolokaClient

logger = logging.getLogger(__name__)


def next_targets(answers: pd.DataFrame, images: pd.DataFrame | None, targets: pd.Series, max_overlap: int,
                 risk_threshold: float) -> tuple[pd.Series, pd.DataFrame]:
    """Which images get one more drawer.

    Args:
        answers: ``image_id``, ``worker``, ``x, y, w, h, label`` of every answer collected so far
            (NaN box = the worker drew nothing), as for the aggregators.
        images: ``image_id, width, height`` or None.
        targets: the current overlap per image (index = image); an image is decided once it has this
            many answering workers.
        max_overlap: no image is raised beyond this.
        risk_threshold: raise when LeanEM's ``risk`` (expected wrong, missing or mislabelled boxes) is above it.

    Returns:
        ``(raised, risk)``: the new targets (``target + 1``) of the images to raise, and LeanEM's
        ``images_`` frame reindexed like ``targets`` (images nobody answered yet have NaN rows).
    """
    from crowdboxes.aggregation import LeanEM

    answered = answers.groupby("image_id")["worker"].nunique().reindex(targets.index).fillna(0).astype(int)
    if answers.empty:
        return targets.iloc[:0], pd.DataFrame(index=targets.index)
    model = LeanEM()
    model.fit(answers, images)
    risk = model.images_.reindex(targets.index)
    raise_ = (answered >= targets) & (targets < max_overlap) & (risk["risk"] > risk_threshold)
    return targets[raise_] + 1, risk


class AdaptiveOverlap:
    """Raises task overlaps of a live detection pool by :func:`next_targets` (one task per image).

    ``update(records)`` takes the assignments collected so far (non-rejected ones count), decides, patches
    the overlaps on Toloka and re-opens the pool if it closed because it was complete (a pool closed by
    hand, by expiry or for lack of balance stays closed and gets nothing more). ``expected_answers``
    is the sum of the targets, i.e. the answers the pool will deliver if nothing more is raised.
    A budget guard (:mod:`crowdboxes.toloka.spending`) is asked for every raise; without money left the image
    keeps its answers.
    """

    def __init__(self, client: TolokaClient, pool_id: str, tasks: pd.DataFrame, images: pd.DataFrame,
                 state_dir: str | os.PathLike[str], max_overlap: int, risk_threshold: float,
                 guard: BudgetGuard | None = None, unit_price: float = 0.0, output_field: str = "result") -> None:
        self.client, self.pool_id = client, str(pool_id)
        self.output_field = output_field  # the detection project's output (crowdboxes.toloka.fields)
        self.max_overlap, self.risk_threshold = int(max_overlap), float(risk_threshold)
        self.guard, self.unit_price = guard, float(unit_price)
        self.path = OVERLAP_STATE.path(state_dir)
        self.tasks, self.images_table = tasks, images
        self.task_by_image = dict(zip(tasks["image_id"].astype(str), tasks["task_id"].astype(str)))
        self.images = images[["image_id", "width", "height"]].astype({"image_id": str})
        self.raises = 0
        self.refused: set[str] = set()  # images the budget could not pay another drawing for
        self.decided: dict[str, int] = {}  # image -> answers it had when last decided (each count once)
        self.targets = self._load()

    def _load(self) -> pd.Series:
        if self.path.is_file():
            state = json.loads(self.path.read_text())
            if state.get("pool_id") == self.pool_id:
                self.raises = int(state.get("raises", 0))
                self.refused = set(state.get("refused_by_budget", []))
                targets = pd.Series(state["targets"], dtype=int)
                # a crash may have come between writing the last raises and telling Toloka: tell it again
                for image_id in state.get("last_raised", []):
                    self._apply(self.task_by_image[image_id], int(targets[image_id]))
                return targets
        overlap = {str(t.id): int(t.overlap or 0)
                   for t in self.client.get_tasks(pool_id=self.pool_id, batch_size=LIST_PAGE)}
        targets = pd.Series({image: overlap[task] for image, task in self.task_by_image.items() if task in overlap},
                            dtype=int)
        self._save(targets)
        return targets

    def _save(self, targets: pd.Series, last_raised: Iterable[str] = ()) -> None:
        write_text_atomic(self.path, json.dumps({
            "pool_id": self.pool_id, "max_overlap": self.max_overlap, "risk_threshold": self.risk_threshold,
            "raises": self.raises, "refused_by_budget": sorted(self.refused), "last_raised": list(last_raised),
            "targets": {k: int(v) for k, v in targets.items()}}, indent=1) + "\n")

    def _pool_may_grow(self) -> bool:
        """Open, or closed only because every task was done."""
        pool = self.client.get_pool(self.pool_id)
        if pool.is_open():
            return True
        reason = getattr(pool.last_close_reason, "value", pool.last_close_reason)
        return str(reason) == "COMPLETED"

    def _apply(self, task_id: str, overlap: int) -> None:
        """An absolute overlap (never a delta), so applying it twice changes nothing."""
        task = self.client.get_task(task_id)
        if int(task.overlap or 0) < overlap:
            self.client.patch_task_overlap_or_min(task_id, overlap=overlap, infinite_overlap=False)

    @property
    def expected_answers(self) -> int:
        """The answers the pool delivers if nothing more is raised: the sum of the targets."""
        return int(self.targets.sum())

    def update(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Decide on the images whose answers are all in (``records``: the collector's assignment
        snapshots); returns how many were raised now."""
        frame, _ = answers_frame(records, self.tasks, self.images_table, output_field=self.output_field)
        valid = frame[frame["status"].astype(str) != "REJECTED"]
        answers = valid.rename(columns={"worker_id": "worker"})
        answers = answers.assign(image_id=answers["image_id"].astype(str))
        answered = answers.groupby("image_id")["worker"].nunique()
        fresh = [image for image, target in self.targets.items()
                 if answered.get(image, 0) >= target and target < self.max_overlap and image not in self.refused
                 and self.decided.get(image) != answered.get(image)]
        if not fresh or not self._pool_may_grow():
            return 0  # nothing completed since the last decision, or the pool was stopped on purpose
        raised, _ = next_targets(answers, self.images, self.targets, self.max_overlap, self.risk_threshold)
        self.decided.update({image: int(answered[image]) for image in fresh})
        granted = []
        for image_id, target in raised[raised.index.isin(fresh)].items():
            if not grant(self.guard, self.unit_price):
                self.refused.add(image_id)
                continue
            granted.append((image_id, int(target)))
        if not granted:
            if self.refused:
                self._save(self.targets)
            return 0
        targets = self.targets.copy()
        for image_id, target in granted:
            targets[image_id] = target
        self.raises += len(granted)
        self._save(targets, [image_id for image_id, _ in granted])  # intent first: _load repairs a crash here
        self.targets = targets
        for image_id, target in granted:
            self._apply(self.task_by_image[image_id], target)
        if not self.client.get_pool(self.pool_id).is_open():
            self.client.open_pool(self.pool_id)
        logger.info("adaptive overlap: %d more drawings asked for", len(granted))
        return len(granted)
