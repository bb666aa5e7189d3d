"""Money: a cost estimate before launch and a guard that closes the pools at the budget cap.

Prices come from :mod:`crowdboxes.quality_settings` (reward + Toloka fee per assignment, i.e. per
task suite). The guard counts what is already owed (SUBMITTED and ACCEPTED assignments; a
rejected assignment is not paid) plus what is committed (ACTIVE assignments: a worker who took a
suite is paid if they submit and we accept). It closes every pool as soon as
``owed + committed + price of the next suite > cap``, so the final bill stays within one suite's
price of the cap even if a few suites are handed out between two checks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import attr

from crowdboxes.quality_settings import assignment_price

logger = logging.getLogger(__name__)

PAID_STATUSES = ("SUBMITTED", "ACCEPTED")
COMMITTED_STATUSES = ("ACTIVE",)


@attr.s(frozen=True, auto_attribs=True)
class CostEstimate:
    """Expected spend in USD, fees included, with the counts it is made of."""

    detection_assignments: float
    detection_cost: float
    verification_assignments: float
    verification_cost: float
    redraw_assignments: float
    redraw_cost: float

    @property
    def total(self) -> float:
        return self.detection_cost + self.verification_cost + self.redraw_cost

    def as_dict(self) -> dict:
        out = attr.asdict(self)
        out["total"] = self.total
        return out


def estimate_cost(n_tasks: int, overlap: int, reward: float, tasks_per_suite: int = 1, mode: str = "overlap",
                  verifiers: int = 3, verification_reward: float | None = None,
                  verification_tasks_per_suite: int = 1, reject_rate: float = 0.2,
                  max_attempts: int = 3) -> CostEstimate:
    """Expected cost of a pool (and its verification round) before launch.

    Detection: ``ceil(n_tasks / tasks_per_suite) * overlap`` assignments at ``reward + fee``.
    Verification (modes with verify): every drawn image is judged by ``verifiers`` workers, in
    suites of ``verification_tasks_per_suite`` images. Redraws: a drawing is rejected with
    probability ``reject_rate``; each rejection triggers one more drawing (and its verification)
    until ``max_attempts`` drawings of the image, so the expected number of extra drawings per
    first drawing is :math:`\\sum_{k=1}^{A-1} r^k`.
    """
    suites = math.ceil(n_tasks / max(1, tasks_per_suite))
    det_assignments = float(suites * overlap)
    det_cost = det_assignments * assignment_price(reward)
    ver_assignments = ver_cost = redraw_assignments = redraw_cost = 0.0
    if "verify" in mode:
        if verification_reward is None:
            raise ValueError("verification_reward is needed when the mode verifies")
        ver_price = assignment_price(verification_reward)
        extra_per_drawing = sum(reject_rate ** k for k in range(1, max(1, max_attempts)))
        drawn_images = n_tasks * overlap
        redraw_images = drawn_images * extra_per_drawing
        # A redraw is one task re-issued; Toloka pays per suite, so it costs a whole suite.
        redraw_assignments = redraw_images
        redraw_cost = redraw_images * assignment_price(reward)
        ver_assignments = (drawn_images + redraw_images) * verifiers / max(1, verification_tasks_per_suite)
        ver_cost = ver_assignments * ver_price
    return CostEstimate(det_assignments, det_cost, ver_assignments, ver_cost, redraw_assignments, redraw_cost)


@attr.s(auto_attribs=True)
class PoolPrice:
    pool_id: str
    reward: float

    @property
    def price(self) -> float:
        return assignment_price(self.reward)


def _count_assignments(client, pool_id: str, statuses: Iterable[str]) -> int:
    return sum(1 for _ in client.get_assignments(pool_id=pool_id, status=list(statuses)))


@attr.s(auto_attribs=True)
class BudgetGuard:
    """Stops spending at ``cap`` USD across ``pools``.

    ``check()`` counts assignments on Toloka (the count is exact and includes the fee, unlike the
    ``spent_budget`` analytics which excludes it), and closes all pools when the next suite would
    cross the cap. After it has fired, ``stopped`` stays true so callers never re-open a pool.
    """

    client: object
    cap: float | None
    pools: list[PoolPrice] = attr.Factory(list)
    stopped: bool = False
    spent_: float = 0.0
    committed_: float = 0.0

    def add_pool(self, pool_id: str, reward: float) -> None:
        if all(p.pool_id != str(pool_id) for p in self.pools):
            self.pools.append(PoolPrice(str(pool_id), float(reward)))

    @property
    def max_suite_price(self) -> float:
        return max((p.price for p in self.pools), default=0.0)

    def measure(self) -> tuple[float, float]:
        """(spent, committed) in USD: paid-or-payable assignments, and assignments in progress."""
        spent = committed = 0.0
        for pool in self.pools:
            spent += _count_assignments(self.client, pool.pool_id, PAID_STATUSES) * pool.price
            committed += _count_assignments(self.client, pool.pool_id, COMMITTED_STATUSES) * pool.price
        self.spent_, self.committed_ = spent, committed
        return spent, committed

    def would_exceed(self, spent: float, committed: float) -> bool:
        return self.cap is not None and spent + committed + self.max_suite_price > self.cap + 1e-9

    def check(self) -> bool:
        """Measure; close every pool if the cap is (about to be) reached. True once stopped."""
        if self.cap is None or not self.pools:
            return self.stopped
        spent, committed = self.measure()
        if not self.stopped and self.would_exceed(spent, committed):
            self.stopped = True
            logger.warning("budget cap $%.4f reached (spent $%.4f, in progress $%.4f): closing pools",
                           self.cap, spent, committed)
            self.close_pools()
        return self.stopped

    def close_pools(self) -> None:
        for pool in self.pools:
            try:
                if self.client.get_pool(pool.pool_id).is_open():
                    self.client.close_pool(pool.pool_id)
            except Exception as exc:  # keep closing the others; the next check retries
                logger.warning("could not close pool %s: %s", pool.pool_id, type(exc).__name__)
                self.stopped = True

    def may_spend(self, n_suites: int = 1, pool_id: str | None = None) -> bool:
        """Whether ``n_suites`` more suites fit under the cap (used before re-opening for a redraw)."""
        if self.stopped:
            return False
        if self.cap is None:
            return True
        price = next((p.price for p in self.pools if p.pool_id == str(pool_id)), self.max_suite_price)
        return self.spent_ + self.committed_ + n_suites * price <= self.cap + 1e-9
