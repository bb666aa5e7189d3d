"""The toloka-kit streaming glue of the verification loop: observers whose cursors survive a restart,
and the supervisor that watches budget, progress, stalls and the deadline once per pipeline iteration.

This module imports toloka-kit at import time; :func:`crowdboxes.toloka.verification.runner.run_verification_loop`
imports it only when it runs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from toloka.client import structure, unstructure  # type: ignore[attr-defined]  # exported; not in its stubs
from toloka.client.search_requests import AssignmentSearchRequest
from toloka.streaming import AssignmentsObserver
from toloka.streaming.observer import BaseObserver

from crowdboxes.toloka.spending import BudgetGuard, money_spent
from crowdboxes.toloka.verification.loop import VerificationLoop
from crowdboxes.toloka.verification.stalls import StallWatch

logger = logging.getLogger(__name__)


class DeadlineReached(Exception):
    """Raised by the supervisor inside the pipeline when the loop's deadline has passed."""


class ResumableAssignmentsObserver(AssignmentsObserver):
    """AssignmentsObserver whose cursors are saved/restored as plain JSON
    (:class:`crowdboxes.toloka.verification.state.CursorStorage`)."""

    def cursor_states(self) -> dict[str, Any]:
        """Each event type's cursor: its search request and the ids it has seen."""
        out = {}
        for event_type, consumer in self._callbacks.items():
            request, _prev, seen = consumer.cursor._get_state()  # type: ignore[attr-defined]  # no public API
            out[event_type.value] = {"request": unstructure(request), "seen_ids": sorted(seen)}
        return out

    def inject(self, injection: Any) -> None:
        if not isinstance(injection, dict):
            return
        for event_type, consumer in self._callbacks.items():
            state = injection.get(event_type.value)
            if state:
                request = structure(state["request"], AssignmentSearchRequest)
                consumer.cursor._set_state((request, None, set(state["seen_ids"])))  # type: ignore[attr-defined]


class Supervisor(BaseObserver):
    """Budget, progress, completion, stalls and deadline, once per pipeline iteration.

    ``deadline`` is a ``time.monotonic()`` value (None: no deadline); past it the supervisor raises
    :class:`DeadlineReached`, which ends the pipeline. ``polls`` counts the iterations.
    """

    def __init__(self, loop: VerificationLoop, guard: BudgetGuard | None, progress: Any,
                 watches: dict[str, StallWatch], deadline: float | None) -> None:
        super().__init__(name="supervisor")
        self.loop, self.guard, self.progress, self.watches, self.deadline = loop, guard, progress, watches, deadline
        self.polls = 0

    async def __call__(self) -> None:
        self.polls += 1
        loop, ledger = self.loop, self.loop.ledger
        if self.guard is not None and not ledger.budget_stopped and self.guard.check():
            ledger.budget_stopped = True
            ledger.save()
        report(loop, self.guard, self.progress)
        if loop.complete() or ledger.budget_stopped:
            close_open_pools(loop.client, loop.pool_ids)
        else:
            for watch in self.watches.values():
                if watch.check() and watch.kind == "verification" and loop.give_up_extra_verdicts():
                    ledger.save()
                    watch.since, watch.warned = watch.clock(), False  # a new wait from here
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineReached()

    def inject(self, injection: Any) -> None:
        pass  # nothing to restore: the ledger holds the state


def is_deadline(exc: BaseException) -> bool:
    """Whether ``exc`` is (or wraps, as the Pipeline wraps callback errors) a :class:`DeadlineReached`."""
    if isinstance(exc, DeadlineReached):
        return True
    inner = getattr(exc, "exceptions", None) or []
    return any(is_deadline(e) for e in inner)


def anything_open(client: Any, pool_ids: list[str]) -> bool:
    """Whether a pool is open or a worker is still at an assignment in one."""
    for pool_id in pool_ids:
        if client.get_pool(pool_id).is_open():
            return True
        if client.find_assignments(pool_id=pool_id, status=["ACTIVE"], limit=1).items:
            return True
    return False


def close_open_pools(client: Any, pool_ids: list[str]) -> None:
    """Close the pools that are open; a failure is logged and the others are still closed."""
    for pool_id in pool_ids:
        try:
            if client.get_pool(pool_id).is_open():
                client.close_pool(pool_id)
        except Exception as exc:
            logger.warning("cannot close pool %s: %s", pool_id, type(exc).__name__)


def report(loop: VerificationLoop, guard: BudgetGuard | None, progress: Any) -> float:
    """Show images done, decisions and money spent (``progress.update`` or a log line); returns the spend."""
    if guard is not None:
        spent = guard.spent_
    else:
        try:
            spent = money_spent(loop.client, loop.pool_ids)
        except Exception:  # a progress line must not end the loop
            spent = 0.0
    status = loop.image_status()
    done = sum(s != "pending" for s in status.values())
    counts = loop.counts()
    if progress is not None:
        progress.total, progress.unit = len(status), "images done"  # the loop counts images, not answers
        progress.update(done, counts, spent, "budget_stopped" if loop.ledger.budget_stopped else "running")
    else:
        logger.info("images %d/%d done, accepted %d, rejected %d, spent $%.2f, banned %d", done, len(status),
                    counts["accepted"], counts["rejected"], spent, counts["banned"])
    return spent
