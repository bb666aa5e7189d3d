"""answers.csv brought up to date with Toloka: each assignment's status as Toloka has it now.

A status can change after Wait Pool wrote answers.csv: ``decide`` decides, a requester accepts or rejects in
Toloka's interface (or with toloka-kit), Toloka accepts what is left when the review period ends. After applying
its decisions, ``decide`` re-reads every assignment of ``--answers`` and writes that file, with only the
``status`` column changed, to its ``--output_dir`` (a Wait Pool re-run does the same through its final rescan).

The assignments are listed per pool (answers.csv's ``pool_id``), 10,000 per request; an answers.csv without
that column is read one assignment at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from crowdboxes.artifacts import ANSWERS, read_csv, write_csv
from crowdboxes.toloka.client import LIST_PAGE
from crowdboxes.toloka.collection.snapshots import COLLECTED_STATUSES, enum_value


@dataclass
class SyncReport:
    """What the sync found: assignments read, status changes since the file was written, ids Toloka lacks."""

    source: str
    written: str
    assignments: int = 0
    changes: Counter[str] = field(default_factory=Counter)  # "SUBMITTED -> ACCEPTED": assignments
    changed_here: int = 0  # of the changes, the ones this decide run made
    missing: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        """Assignments whose status changed since the file was written."""
        return sum(self.changes.values())

    def as_dict(self) -> dict[str, Any]:
        """The ``answers_sync`` part of decisions_summary.json."""
        return {"source": self.source, "answers_csv": self.written, "assignments": self.assignments,
                "changed": self.changed, "changed_by_this_run": self.changed_here,
                "changed_outside": self.changed - self.changed_here, "changes": dict(sorted(self.changes.items())),
                "missing": self.missing[:100]}

    def line(self) -> str:
        """One line for the log."""
        changes = ", ".join(f"{change} {n}" for change, n in sorted(self.changes.items()))
        outside = self.changed - self.changed_here
        return (f"decide: answers.csv synced with Toloka: {self.assignments} assignments, {self.changed} changed since "
                f"{self.source} ({self.changed_here} by this run, {outside} outside it: by hand in Toloka or by the "
                f"end of the review period){': ' + changes if changes else ''}"
                f"{f'; {len(self.missing)} unknown to Toloka, kept as they were' if self.missing else ''}"
                f" -> {self.written}")


def current_statuses(client: Any, assignment_ids: Iterable[str], pool_ids: Iterable[str]) -> dict[str, str]:
    """Assignment id -> its status on Toloka now, for ``assignment_ids`` (those Toloka does not know are left out).

    ``pool_ids`` are listed first (one request per 10,000 assignments); an id not found there is read alone."""
    from toloka.client.exceptions import DoesNotExistApiError

    wanted = set(assignment_ids)
    statuses: dict[str, str] = {}
    for pool_id in sorted(set(pool_ids)):
        for assignment in client.get_assignments(pool_id=pool_id, status=list(COLLECTED_STATUSES),
                                                 batch_size=LIST_PAGE):
            if str(assignment.id) in wanted:
                statuses[str(assignment.id)] = str(enum_value(assignment.status))
    for assignment_id in sorted(wanted - set(statuses)):
        try:
            statuses[assignment_id] = str(enum_value(client.get_assignment(assignment_id).status))
        except DoesNotExistApiError:
            continue
    return statuses


def sync_answers(client: Any, answers_csv: str | Path, out: str | Path,
                 decided_here: Iterable[str] = ()) -> SyncReport:
    """Write ``answers_csv`` to ``out`` with each assignment's status read from Toloka now; what changed.

    ``decided_here``: the assignments this run accepted or rejected (the rest of the changes came from outside)."""
    frame = read_csv(answers_csv, ANSWERS, dtype=str)
    ids = frame["assignment_id"].dropna().astype(str)
    pools = frame["pool_id"].dropna().astype(str) if "pool_id" in frame.columns else pd.Series([], dtype=str)
    now = current_statuses(client, ids.unique(), pools[pools.str.strip() != ""].unique())
    report = SyncReport(source=str(answers_csv), written=str(ANSWERS.path(out)), assignments=int(ids.nunique()))
    before = dict(zip(ids, frame.loc[ids.index, "status"].astype(str).str.strip().str.upper()))
    decided = set(decided_here)
    for assignment_id, status in before.items():
        if assignment_id not in now:
            report.missing.append(assignment_id)
        elif now[assignment_id] != status:
            report.changes[f"{status} -> {now[assignment_id]}"] += 1
            report.changed_here += assignment_id in decided
    known = frame["assignment_id"].isin(list(now))
    frame.loc[known, "status"] = frame.loc[known, "assignment_id"].map(now)
    write_csv(frame, out, ANSWERS)
    return report
