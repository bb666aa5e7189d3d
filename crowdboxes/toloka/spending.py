"""Money: what was spent, a cost estimate before launch, and a guard that keeps spending under the cap.

**Money spent** has one definition, :func:`money_spent`: USD, reward plus Toloka's fee, of the
paid-or-payable assignments (SUBMITTED and ACCEPTED; rejected ones are not paid) of the given pools,
counted on Toloka. :func:`recorded_cost` is the same figure from collected assignment records, for
when Toloka is not asked; :func:`toloka_spent_budget` is Toloka's own analytics figure (rewards
only, no fee), a cross-check and never the definition.

Prices come from :mod:`crowdboxes.toloka.pricing` (reward + Toloka fee per assignment, i.e. per
task suite). Two mechanisms because polling alone cannot bound the bill (between two polls a busy
crowd takes many suites):

* **Reservation** (exact): every assignment Toloka may still issue is a unit of an existing task's
  overlap, and with verification each drawing also brings ``verifiers`` verification assignments.
  ``reserved = sum(overlap) * (drawing price + verifiers * verification price)``. At start the
  overlaps of not-yet-issued tasks are cut (newest first) until ``reserved <= cap``; a redraw is
  only granted if one more unit still fits. So Toloka can never issue more than the cap pays for.
* **Measurement** (safety net): ``check()`` counts what is owed (SUBMITTED and ACCEPTED
  assignments; rejected ones are not paid) plus what is in progress (ACTIVE), and closes every
  pool as soon as ``owed + in progress + price of the next suite > cap`` — for spending the
  reservation cannot see (e.g. a pool rule that raises overlaps by itself).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attr

from crowdboxes.errors import CrowdboxesError
from crowdboxes.toloka.client import LIST_PAGE
from crowdboxes.toloka.pricing import assignment_price, toloka_fee

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

    def as_dict(self) -> dict[str, float]:
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
            raise CrowdboxesError("verification_reward is needed when the mode verifies")
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
    """A pool the guard watches and its reward per assignment (USD, without the fee)."""

    pool_id: str
    reward: float

    @property
    def price(self) -> float:
        return assignment_price(self.reward)


def _count_assignments(client: Any, pool_id: str, statuses: Iterable[str]) -> int:
    return sum(1 for _ in client.get_assignments(pool_id=pool_id, status=list(statuses), batch_size=LIST_PAGE))


def _assignments_cost(client: Any, pool_ids: Iterable[str], rewards: Mapping[str, float] | None,
                      statuses: Iterable[str]) -> float:
    total = 0.0
    for pool_id in dict.fromkeys(str(p) for p in pool_ids):
        reward = (rewards or {}).get(pool_id)
        if reward is None:
            reward = float(client.get_pool(pool_id).reward_per_assignment)
        total += _count_assignments(client, pool_id, statuses) * assignment_price(reward)
    return total


def money_spent(client: Any, pool_ids: Iterable[str], rewards: Mapping[str, float] | None = None) -> float:
    """USD spent on ``pool_ids``: reward plus Toloka's fee of every paid-or-payable assignment.

    Paid-or-payable is SUBMITTED (review or auto-accept will pay it) and ACCEPTED; rejected, expired
    and skipped assignments cost nothing. Counted on Toloka, so it includes work not collected yet.
    ``rewards`` (pool id -> reward per assignment) saves one pool read per pool when the caller knows
    them; a pool missing from it is read from Toloka. Each pool id counts once.
    """
    return _assignments_cost(client, pool_ids, rewards, PAID_STATUSES)


def recorded_cost(records: Iterable[Mapping[str, Any]]) -> tuple[float, float]:
    """``(rewards, fees)`` in USD of the paid-or-payable assignments among collected records.

    The :func:`money_spent` figure (``rewards + fees``) computed offline from assignment records
    (``status`` and ``reward`` keys, as :mod:`crowdboxes.toloka.collection` keeps them), so it covers
    only what was collected. A record with no reward (0) adds no fee either.
    """
    paid = [float(r["reward"] or 0.0) for r in records if r["status"] in PAID_STATUSES]
    return round(sum(paid), 6), round(sum(toloka_fee(x) for x in paid if x > 0), 6)


def toloka_spent_budget(client: Any, pool_id: str) -> float | None:
    """Toloka's ``spent_budget`` analytics of a pool (rewards, without the fee); None if unavailable.

    A cross-check for reports, not the definition of money spent (:func:`money_spent`).
    """
    try:
        from toloka.client.analytics_request import SpentBudgetPoolAnalytics

        op = client.get_analytics([SpentBudgetPoolAnalytics(subject_id=str(pool_id))])
        op = client.wait_operation(op, timeout=dt.timedelta(seconds=60), disable_progress=True)
        result = op.details["value"][0]["result"]
        value = result.get("value") if isinstance(result, dict) else result
        return None if value is None else float(value)
    except Exception:  # analytics is a nicety: money_spent stands in
        return None


@attr.s(auto_attribs=True)
class BudgetGuard:
    """Stops spending at ``cap`` USD across ``pools``.

    ``check()`` measures :func:`money_spent` on Toloka (exact and fee included, unlike the
    ``spent_budget`` analytics which excludes the fee), and closes all pools when the next suite would
    cross the cap. After it has fired, ``stopped`` stays true so callers never re-open a pool.
    """

    client: Any
    cap: float | None
    pools: list[PoolPrice] = attr.Factory(list)
    stopped: bool = False
    spent_: float = 0.0
    committed_: float = 0.0
    reserved_: float = 0.0
    trimmed_: list[str] = attr.Factory(list)
    reserving: bool = False  # set by reserve(): then only a real overshoot closes the pools

    def add_pool(self, pool_id: str, reward: float) -> None:
        if all(p.pool_id != str(pool_id) for p in self.pools):
            self.pools.append(PoolPrice(str(pool_id), float(reward)))

    @property
    def max_suite_price(self) -> float:
        return max((p.price for p in self.pools), default=0.0)

    def measure(self) -> tuple[float, float]:
        """(spent, committed) in USD: :func:`money_spent` of the pools, and the assignments in progress."""
        rewards = {p.pool_id: p.reward for p in self.pools}
        spent = money_spent(self.client, rewards, rewards)
        committed = _assignments_cost(self.client, rewards, rewards, COMMITTED_STATUSES)
        self.spent_, self.committed_ = spent, committed
        return spent, committed

    def would_exceed(self, spent: float, committed: float) -> bool:
        if self.cap is None:
            return False
        headroom = 0.0 if self.reserving else self.max_suite_price
        return spent + committed + headroom > self.cap + 1e-9

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


def slot_price(detection_reward: float, verifiers: int = 0, verification_reward: float | None = None,
               tasks_per_verification_suite: int = 1) -> float:
    """What one drawing slot (one unit of a detection task's overlap) can cost, verification included."""
    price = assignment_price(detection_reward)
    if verifiers and verification_reward is not None:
        price += verifiers * assignment_price(verification_reward) / max(1, tasks_per_verification_suite)
    return price


def reserve(client: Any, guard: BudgetGuard, pool_id: str, unit_price: float, control_price: float | None = None,
            is_control: Callable[[Any], bool] = lambda task: False, cut: bool = True) -> float:
    """Reserve the cap for every assignment the detection pool may still issue; cut the rest.

    Reads every task of ``pool_id``: ``issued = overlap - remaining_overlap`` units are already
    spent or in progress and always count; units not issued yet are kept in creation order while
    they fit under ``guard.cap``, and the overlap of the first task that no longer fits (and all
    after it) is lowered to what was issued (``patch_task_overlap_or_min``). Returns the reserved
    amount (also ``guard.reserved_``); the cut task ids go to ``guard.trimmed_``.
    """
    tasks = list(client.get_tasks(pool_id=pool_id, batch_size=LIST_PAGE))
    prices = [control_price if (control_price is not None and is_control(t)) else unit_price for t in tasks]
    issued = [int(t.overlap or 0) - int(t.remaining_overlap if t.remaining_overlap is not None else t.overlap or 0)
              for t in tasks]
    reserved = sum(max(0, i) * p for i, p in zip(issued, prices))
    for task, n_issued, price in zip(tasks, issued, prices):
        remaining = int(task.overlap or 0) - max(0, n_issued)
        if remaining <= 0:
            continue
        fits = remaining if guard.cap is None else int((guard.cap - reserved + 1e-9) // price)
        keep = max(0, min(remaining, fits))
        reserved += keep * price
        if keep < remaining and cut:
            client.patch_task_overlap_or_min(task.id, overlap=max(0, n_issued) + keep, infinite_overlap=False)
            guard.trimmed_.append(str(task.id))
    guard.reserved_ = reserved
    guard.reserving = True
    return reserved


def grant(guard: BudgetGuard | None, price: float) -> bool:
    """Reserve one more slot (a redraw) if it fits under the cap."""
    if guard is None or guard.cap is None:
        return True
    if guard.stopped or guard.reserved_ + price > guard.cap + 1e-9:
        return False
    guard.reserved_ += price
    return True


def reserve_pool(client: Any, pool_id: str, cap: float | None, detection_reward: float, *, verifiers: int = 0,
                 verification_reward: float | None = None, control_urls: Iterable[str] = (),
                 image_field: str = "image") -> BudgetGuard:
    """Cut the detection pool's overlaps to what ``cap`` pays for, drawing + its verification
    included; call it before the pool is opened (launch), and the loop calls it again at start.

    Control images cost a drawing only (they are scored, not verified).
    """
    guard = BudgetGuard(client, cap)
    guard.add_pool(pool_id, detection_reward)
    controls = set(control_urls)
    reserve(client, guard, pool_id, slot_price(detection_reward, verifiers, verification_reward),
            control_price=slot_price(detection_reward),
            is_control=lambda task: (task.input_values or {}).get(image_field) in controls)
    return guard
