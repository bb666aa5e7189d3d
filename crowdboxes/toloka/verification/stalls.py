"""Stall warnings of the verification loop: :class:`StallWatch` (one line when work waits and nobody works)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from crowdboxes.toloka.verification.loop import VerificationLoop


class StallWatch:
    """Says, in one line, when work waits in a pool and no worker has taken a task there for a while.

    Toloka shows no error when nobody is left who may take a pool's tasks; the pool just stays open.
    In ``verification``: drawings wait for verdicts, but the pool's filter excludes everyone holding the
    drawer skill, and in a small or private crowd every worker may soon have drawn. In ``detection``:
    images wait for another drawing, but a worker draws an image only once and banned workers draw
    nothing, so a high overlap with many redraws can use up the crowd. Activity is a new assignment in
    the pool (or a new entry in the ledger) or an ACTIVE one. The warning is printed once per stall
    (again after workers came back and left again).
    """

    def __init__(self, loop: VerificationLoop, kind: str, stall_seconds: float, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.loop, self.kind, self.stall_seconds, self.clock = loop, kind, float(stall_seconds), clock
        self.stream = stream
        self.last: tuple[int, str | None] | None = None
        self.since = clock()
        self.warned = False
        self.warnings = 0

    @property
    def pool_id(self) -> str:
        return self.loop.verification_pool_id if self.kind == "verification" else self.loop.detection_pool_id

    def _seen(self) -> int:
        return len(self.loop.ledger.votes if self.kind == "verification" else self.loop.ledger.assignments)

    def waiting(self) -> int:
        """Verification: drawings whose task exists and lacks verdicts. Detection: unresolved images with
        nothing under review, i.e. waiting for a drawing."""
        ledger = self.loop.ledger
        if self.kind == "verification":
            return sum(1 for it in ledger.items.values()
                       if it["kind"] == "verify" and it.get("vtask_id") and not it.get("decided")
                       and ledger.assignments.get(it["assignment_id"], {}).get("outcome") is None)
        reviewing = {it["task_id"] for it in ledger.items.values()
                     if ledger.assignments.get(it["assignment_id"], {}).get("outcome") is None}
        return sum(1 for task, state in self.loop.image_status().items()
                   if state == "pending" and task not in reviewing)

    def check(self) -> str | None:
        """The warning line if a stall has just lasted ``stall_seconds``, else None."""
        now = self.clock()
        client, pool_id = self.loop.client, self.pool_id
        newest = client.find_assignments(pool_id=pool_id, sort=["-created"], limit=1).items
        marker = (self._seen(), newest[0].id if newest else None)
        waiting = self.waiting() if marker == self.last else 0
        if waiting and client.find_assignments(pool_id=pool_id, status=["ACTIVE"], limit=1).items:
            waiting = 0  # someone is at work
        if not waiting:
            self.last, self.since, self.warned = marker, now, False
            return None
        if self.warned or now - self.since < self.stall_seconds:
            return None
        self.warned = True
        self.warnings += 1
        seconds = now - self.since
        idle = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
        ledger = self.loop.ledger
        if self.kind == "verification":
            line = (f"warning: verification pool {pool_id}: {waiting} drawings wait for verdicts but no verifier "
                    f"has taken a task for {idle}; its filter excludes the {len(ledger.drawers)} workers who drew "
                    f"(drawer skill), so the crowd may have nobody left to verify: widen the pool's filter or "
                    f"lower --verifiers")
        else:
            line = (f"warning: detection pool {pool_id}: {waiting} images wait for another drawing but no drawer "
                    f"has taken a task for {idle}; a worker draws an image only once and {len(ledger.banned)} "
                    f"workers are banned, so the crowd may have nobody left to draw them: lower --overlap or "
                    f"--max_attempts, or widen the pool's filter")
        print(line, file=self.stream or sys.stderr, flush=True)
        return line
