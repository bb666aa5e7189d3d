"""decisions.csv applied to Toloka: accept or reject each assignment with its public comment, once.

Each decision reads the assignment first, so a re-run (or a run after ``kill -9``) does nothing twice:

* already in the requested status: *skipped* and counted (an earlier run, or a hand in Toloka's interface);
* SUBMITTED and still inside the review period: accepted (``accept_assignment``) or rejected
  (``reject_assignment``, which Toloka refuses without a public comment);
* REJECTED and asked to be accepted within :data:`APPEAL_DAYS` of the rejection (the worker's appeal period,
  in which Toloka lets a requester change a rejection): accepted, and paid then;
* anything else is *refused*, one line each, and the run goes on: SUBMITTED past the review period (the
  pool's ``auto_accept_period_day`` after submission, when Toloka accepts by itself), ACCEPTED (by hand or
  by that auto-accept) asked to be rejected, REJECTED past the appeal period, not SUBMITTED yet, unknown.

Money: an accepted assignment releases ``reward + fee`` (:func:`crowdboxes.toloka.pricing.assignment_price`) to
its worker and Toloka; a rejected one keeps it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crowdboxes.artifacts import DECISIONS, read_csv
from crowdboxes.credentials import redact
from crowdboxes.decisions.policy import ACCEPT, REJECT
from crowdboxes.errors import CrowdboxesError
from crowdboxes.toloka.collection.snapshots import enum_value, iso, now_utc, utc_naive
from crowdboxes.toloka.pricing import assignment_price
from crowdboxes.toloka.client import toloka_refusal

TARGET = {ACCEPT: "ACCEPTED", REJECT: "REJECTED"}
APPEAL_DAYS = 9  # Toloka: a rejection may be changed to an acceptance within 9 days (the worker's appeal)
MAX_PUBLIC_COMMENT = 2048  # characters Toloka takes in a public comment


@dataclass(frozen=True)
class Decision:
    """One row of decisions.csv: ``row`` is its line in the file (header = 1)."""

    assignment_id: str
    decision: str  # accept | reject
    comment: str
    row: int


def read_decisions(path: str | Path) -> list[Decision]:
    """decisions.csv, checked: an id, ``accept`` or ``reject`` (any case), a comment on every rejection (Toloka
    refuses a rejection without one), no assignment twice with different decisions (the same one twice counts
    once). CrowdboxesError naming the file, row and field."""
    frame = read_csv(path, DECISIONS, dtype=str).fillna("")
    seen: dict[str, Decision] = {}
    for number, (aid, decision, comment) in enumerate(
            zip(frame["assignment_id"], frame["decision"], frame["comment"]), start=2):
        aid, decision, comment = str(aid).strip(), str(decision).strip().lower(), str(comment).strip()
        if not aid:
            raise CrowdboxesError(f"{path}: row {number}, field 'assignment_id' is empty")
        if decision not in TARGET:
            raise CrowdboxesError(f"{path}: row {number}, field 'decision': {decision!r} is not accept or reject")
        if decision == REJECT and not comment:
            raise CrowdboxesError(f"{path}: row {number}, field 'comment' is empty: a rejection needs a public "
                                  "comment that tells the worker why")
        if len(comment) > MAX_PUBLIC_COMMENT:
            raise CrowdboxesError(f"{path}: row {number}, field 'comment': {len(comment)} characters, Toloka takes "
                                  f"at most {MAX_PUBLIC_COMMENT}")
        earlier = seen.get(aid)
        if earlier is not None and earlier.decision != decision:
            raise CrowdboxesError(f"{path}: row {number}, field 'decision': assignment {aid} is to {decision} here "
                                  f"and to {earlier.decision} on row {earlier.row}")
        seen.setdefault(aid, Decision(aid, decision, comment, number))
    return list(seen.values())


@dataclass
class DecisionsSummary:
    """What a run did (``artifacts.DECISIONS_SUMMARY``): counts, money, and one line per refusal."""

    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    refused: int = 0
    released_usd: float = 0.0  # reward + fee of the assignments this run accepted
    kept_usd: float = 0.0  # reward + fee of the assignments this run rejected
    skipped_accepted_usd: float = 0.0  # of skipped ones already ACCEPTED (paid before this run)
    refusals: list[str] = field(default_factory=list)
    skips: list[str] = field(default_factory=list)
    decided: list[str] = field(default_factory=list)  # ids this run accepted or rejected (for decisions.sync)

    def as_dict(self) -> dict[str, Any]:
        """The summary JSON (money rounded to 1/10000 USD)."""
        return {"accepted": self.accepted, "rejected": self.rejected, "skipped": self.skipped,
                "refused": self.refused, "released_usd": round(self.released_usd, 4),
                "kept_usd": round(self.kept_usd, 4), "skipped_accepted_usd": round(self.skipped_accepted_usd, 4),
                "refusals": self.refusals, "skips": self.skips[:1000]}

    def line(self) -> str:
        """One line for the log."""
        return (f"decide: accepted {self.accepted} (${self.released_usd:.4f} released), rejected {self.rejected} "
                f"(${self.kept_usd:.4f} kept), skipped {self.skipped} (already decided so), refused {self.refused}")


def review_deadline(assignment: Any, pool: Any) -> dt.datetime | None:
    """When Toloka accepts ``assignment`` by itself (naive UTC): submitted + the pool's review period in days;
    None when the pool accepts at submission or the assignment is not submitted."""
    return review_end(assignment.submitted, pool)


def review_end(submitted_at: dt.datetime | str | None, pool: Any) -> dt.datetime | None:
    """The end of the review period of work submitted at ``submitted_at`` in ``pool`` (:func:`review_deadline`)."""
    submitted = utc_naive(submitted_at)
    if submitted is None or getattr(pool, "auto_accept_solutions", True) is not False:
        return None
    return submitted + dt.timedelta(days=float(pool.auto_accept_period_day or 21))


class DecisionApplier:
    """Applies decisions one by one (:meth:`apply`); pools are read once each. ``now`` (naive UTC) is the
    clock the review period is checked against."""

    def __init__(self, client: Any, now: Callable[[], dt.datetime] = now_utc) -> None:
        self.client, self.now = client, now
        self.pools: dict[str, Any] = {}
        self.summary = DecisionsSummary()

    def _pool(self, pool_id: str) -> Any:
        if pool_id not in self.pools:
            self.pools[pool_id] = self.client.get_pool(pool_id)
        return self.pools[pool_id]

    def _refuse(self, decision: Decision, why: str) -> None:
        self.summary.refused += 1
        self.summary.refusals.append(f"assignment {decision.assignment_id} (row {decision.row}): cannot "
                                     f"{decision.decision}: {why}")

    def _skip(self, decision: Decision, assignment: Any) -> None:
        self.summary.skipped += 1
        status = TARGET[decision.decision]
        when = iso(getattr(assignment, status.lower()))
        self.summary.skips.append(f"assignment {decision.assignment_id}: already {status} at {when}")
        if status == "ACCEPTED":
            self.summary.skipped_accepted_usd += assignment_price(float(assignment.reward or 0))

    def _conflict(self, decision: Decision, assignment: Any, status: str) -> str:
        """Why an assignment in ``status`` (not SUBMITTED, not the requested one) cannot be decided."""
        if status == "ACCEPTED":
            accepted = utc_naive(assignment.accepted)
            pool = self._pool(str(assignment.pool_id))
            deadline = review_deadline(assignment, pool)
            if deadline is not None and accepted is not None and accepted >= deadline - dt.timedelta(seconds=1):
                return (f"past the review period: Toloka accepted it at {iso(accepted)}, when the review period "
                        f"(submitted {iso(assignment.submitted)} + {pool.auto_accept_period_day} days) ended")
            if deadline is None and assignment.submitted is not None and assignment.accepted == assignment.submitted:
                return (f"already ACCEPTED at {iso(accepted)}: the pool accepts work when it is submitted "
                        "(auto_accept_solutions; launch with --auto_accept false to review by hand)")
            return (f"already ACCEPTED at {iso(accepted)}, by hand or by Toloka at the end of the review period "
                    "(accepted work is paid and cannot be rejected)")
        if status == "REJECTED":
            return (f"REJECTED at {iso(assignment.rejected)}, more than {APPEAL_DAYS} days ago: past the appeal "
                    "period, in which Toloka lets a rejection be changed")
        return f"it is {status}, not SUBMITTED (only submitted work can be reviewed)"

    def apply(self, decision: Decision) -> None:
        """Apply one decision (see the module docs); never raises for a refusal, only for a broken connection."""
        from toloka.client.exceptions import DoesNotExistApiError, IncorrectActionsApiError, ValidationApiError

        try:
            assignment = self.client.get_assignment(decision.assignment_id)
        except DoesNotExistApiError:
            self._refuse(decision, "no such assignment on this Toloka")
            return
        status = str(enum_value(assignment.status))
        target = TARGET[decision.decision]
        if status == target:
            self._skip(decision, assignment)
            return
        now = utc_naive(self.now())
        rejected = utc_naive(assignment.rejected) if status == "REJECTED" else None
        appeal = rejected is not None and now is not None and now < rejected + dt.timedelta(days=APPEAL_DAYS)
        if status != "SUBMITTED" and not (appeal and decision.decision == ACCEPT):
            self._refuse(decision, self._conflict(decision, assignment, status))
            return
        deadline = review_deadline(assignment, self._pool(str(assignment.pool_id)))
        if status == "SUBMITTED" and deadline is not None and now is not None and now >= deadline:
            self._refuse(decision, f"past the review period: it ended at {iso(deadline)}; Toloka accepts it")
            return
        try:
            if decision.decision == ACCEPT:
                done = self.client.accept_assignment(decision.assignment_id, decision.comment)
            else:
                done = self.client.reject_assignment(decision.assignment_id, decision.comment)
        except ValidationApiError as exc:  # e.g. a comment Toloka does not take: this decision only
            self._refuse(decision, toloka_refusal(exc))
            return
        except IncorrectActionsApiError as exc:
            # someone (a hand in Toloka, an auto-accept) got there between the read and the action
            again = self.client.get_assignment(decision.assignment_id)
            now_status = str(enum_value(again.status))
            if now_status == target:
                self._skip(decision, again)
            else:
                self._refuse(decision, f"{toloka_refusal(exc)}; it is {now_status}")
            return
        price = assignment_price(float(done.reward if done.reward is not None else assignment.reward or 0))
        self.summary.decided.append(decision.assignment_id)
        if decision.decision == ACCEPT:
            self.summary.accepted += 1
            self.summary.released_usd += price
        else:
            self.summary.rejected += 1
            self.summary.kept_usd += price


def apply_decisions(client: Any, decisions: Iterable[Decision],
                    now: Callable[[], dt.datetime] = now_utc) -> DecisionsSummary:
    """Apply every decision in order (:class:`DecisionApplier`); the summary. A failure other than a refusal
    (the network, the token) raises after what was done so far is on Toloka: a re-run skips it."""
    applier = DecisionApplier(client, now)
    for decision in decisions:
        try:
            applier.apply(decision)
        except CrowdboxesError:
            raise
        except Exception as exc:
            s = applier.summary
            raise CrowdboxesError(
                f"decide: stopped at assignment {decision.assignment_id} (row {decision.row}): {type(exc).__name__}: "
                f"{redact(str(exc)).splitlines()[0] if str(exc) else ''} (done so far: accepted {s.accepted}, "
                f"rejected {s.rejected}, skipped {s.skipped}, refused {s.refused}; a re-run skips them)") from None
    return applier.summary

