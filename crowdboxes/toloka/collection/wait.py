"""Polling a detection pool until it is done, collecting its answers on the way.

A pool is done when it was closed as COMPLETED, EXPIRED or MANUAL (or archived), or when no task has
overlap left. With :class:`~crowdboxes.toloka.overlap.AdaptiveOverlap` the pool is done only when
that has nothing more to ask for after a final rescan. A failing poll is tried again (up to
:data:`MAX_POLL_FAILURES` in a row): the journal keeps everything collected meanwhile.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crowdboxes.credentials import redact
from crowdboxes.toloka.collection.collector import AnswerCollector
from crowdboxes.toloka.collection.cursor import EVENT_FIELDS
from crowdboxes.toloka.collection.progress import Progress
from crowdboxes.toloka.collection.snapshots import enum_value
from crowdboxes.toloka.spending import recorded_cost

if TYPE_CHECKING:
    from toloka.client import TolokaClient

    from crowdboxes.toloka.overlap import AdaptiveOverlap

DONE_CLOSE_REASONS = ("COMPLETED", "EXPIRED", "MANUAL")
MAX_POLL_FAILURES = 10  # consecutive failed polls before the step gives up (the journal keeps everything)
# Requests per poll. Every poll reads the new submissions (one listing from the ``submitted`` cursor); the
# ``accepted`` and ``rejected`` streams (status changes of answers already collected, which the final rescan
# reads anyway) and the pool itself (closed by expiry or by hand) only every FULL_POLL_EVERY-th poll, at every
# poll once the answers are all in (when the pool is about to complete), and at the deadline (a pool closed
# since the last full poll is done, not timed out). A poll of a busy pool is then 1.3 requests on average
# instead of 4: at the default 60 s, 78 requests per hour of crowd work.
FULL_POLL_EVERY = 10
STATUS_EVENTS = tuple(e for e in EVENT_FIELDS if e != "submitted")  # the status changes: accepted, rejected


def pool_state(client: TolokaClient, pool_id: str, expected_answers: int | None,
               collected_answers: int) -> tuple[bool, str]:
    """(done, reason): closed as COMPLETED/EXPIRED/MANUAL (or archived), or no task has overlap left.

    The per-task check (one pass over the pool's tasks) runs only once enough answers were
    collected to make it plausible, so a poll of a busy pool costs one request here.
    """
    from crowdboxes.toloka.client import LIST_PAGE

    pool = client.get_pool(pool_id)
    status = str(enum_value(pool.status))
    reason = str(enum_value(pool.last_close_reason)) if pool.last_close_reason is not None else ""
    if status == "ARCHIVED" or (status == "CLOSED" and reason in DONE_CLOSE_REASONS):
        return True, f"{status} {reason}".strip()
    if expected_answers is not None and collected_answers >= expected_answers:
        active = client.find_assignments(pool_id=pool_id, status=["ACTIVE"], limit=1)
        if not active.items and all((t.remaining_overlap or 0) == 0
                                    for t in client.get_tasks(pool_id=pool_id, batch_size=LIST_PAGE)):
            return True, f"{status} with no remaining tasks"
    return False, f"{status} {reason}".strip()


def _transient(exc: Exception) -> bool:
    """Worth another poll: not a rejected token, a missing pool or a refused action."""
    try:
        from toloka.client.exceptions import (AccessDeniedApiError, AuthenticationApiError, DoesNotExistApiError,
                                              ValidationApiError)
    except ImportError:  # pragma: no cover - toloka-kit is a dependency
        return True
    return not isinstance(exc, (AccessDeniedApiError, AuthenticationApiError, DoesNotExistApiError,
                                ValidationApiError))


@dataclass
class WaitOutcome:
    """How a wait ended: ``done`` (False: the deadline came first), the pool's last state, polls made."""

    done: bool
    state: str
    polls: int


def wait_for_pool(client: TolokaClient, pool_id: str, collector: AnswerCollector, progress: Progress, *,
                  poll_seconds: float, deadline: float | None, expected_answers: int | None,
                  sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                  adaptive: AdaptiveOverlap | None = None) -> WaitOutcome:
    """Poll until the pool is done or ``deadline`` (a ``clock()`` value, by default ``time.monotonic()``) passes.

    ``adaptive`` may raise task overlaps as answers come in; the pool is done only when it has nothing
    more to ask for after a final rescan. The status streams and the pool are read at every
    :data:`FULL_POLL_EVERY`-th poll, at every poll once the answers are all in, and at the last poll, the one
    at the deadline (see there).
    """
    polls = failures = 0
    state = "unknown"
    while True:
        polls += 1
        last = deadline is not None and clock() >= deadline
        try:
            full = (polls - 1) % FULL_POLL_EVERY == 0 or last
            collector.poll(events=EVENT_FIELDS if full else ("submitted",))
            if adaptive is not None and adaptive.update(collector.records(pool_id)):
                expected_answers = progress.total = adaptive.expected_answers
            counts = collector.counts(pool_id)
            if not full and (expected_answers is None or counts["task_answers"] >= expected_answers):
                full = True  # all answers are in and the pool is about to complete: its status changes too
                collector.poll(events=STATUS_EVENTS)
                counts = collector.counts(pool_id)
            if full:
                done, state = pool_state(client, pool_id, expected_answers, counts["task_answers"])
            else:
                done = False
            if done and adaptive is not None:
                # the last answers may be inside the cursor lag: decide on all of them before stopping
                collector.rescan()
                if adaptive.update(collector.records(pool_id)):
                    expected_answers = progress.total = adaptive.expected_answers
                    done, state = False, "re-opened for more drawings"
                counts = collector.counts(pool_id)
            failures = 0
        except Exception as exc:
            # toloka-kit already retried this request; a longer outage should not end a 48-hour wait
            failures += 1
            if failures >= MAX_POLL_FAILURES or not _transient(exc):
                raise
            print(f"warning: poll {polls} failed ({type(exc).__name__}: {redact(str(exc)).splitlines()[0][:200]}); "
                  f"{failures} in a row, trying again in {poll_seconds:g} s", file=sys.stderr, flush=True)
            done = False
        else:
            # money spent as collected so far (offline: a poll costs no extra pass over the assignments)
            progress.update(counts["task_answers"], counts, sum(recorded_cost(collector.records(pool_id))), state)
        if done:
            return WaitOutcome(True, state, polls)
        if last:
            return WaitOutcome(False, state, polls)
        remaining = None if deadline is None else deadline - clock()
        # past the deadline already: the next poll, at once, is the last one and reads the pool
        sleep(poll_seconds if remaining is None else max(0.0, min(poll_seconds, remaining)))
