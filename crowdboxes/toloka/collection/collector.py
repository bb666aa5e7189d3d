"""The answer collector: every assignment of some pools, read incrementally into one journal.

:class:`AnswerCollector` keeps one :class:`~crowdboxes.toloka.collection.cursor.EventCursor` per pool
and event, and the newest snapshot of each assignment. It writes snapshots before the cursor moves
that found them, so a crash between the two only means fetching them again.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from crowdboxes.artifacts import WAIT_JOURNAL
from crowdboxes.toloka.collection import cursor as cursors
from crowdboxes.toloka.collection.cursor import EVENT_FIELDS, EventCursor
from crowdboxes.toloka.collection.journal import JOURNAL_VERSION, Journal
from crowdboxes.toloka.collection.snapshots import COLLECTED_STATUSES, Snapshot, is_newer, iso, now_utc, snapshot

if TYPE_CHECKING:
    from toloka.client import Assignment, TolokaClient


class AnswerCollector:
    """Assignments of ``pool_ids`` collected incrementally into a journal in ``state_dir``.

    ``snapshots`` maps assignment id -> its newest snapshot (a compact :class:`Snapshot`). ``poll()`` reads
    new events up to ``now - lag`` (Toloka's API is eventually consistent; toloka-kit uses a 60 s lag),
    ``rescan()`` reads every submitted assignment once more with no lag. A journal of other pools
    found in ``state_dir`` (a new launch into the same folder) is renamed aside, and collection starts afresh.
    ``now`` (naive UTC) is the clock the lag is counted from; tests pass a fixed one.
    """

    def __init__(self, client: TolokaClient, pool_ids: Iterable[str], state_dir: str | os.PathLike[str],
                 lag_seconds: float = 60.0, image_field: str = "image",
                 now: Callable[[], dt.datetime] = now_utc) -> None:
        self.client, self.now = client, now
        self.image_field = image_field  # the detection project's image input (crowdboxes.toloka.fields)
        self.pool_ids = [str(p) for p in pool_ids]
        self.lag = dt.timedelta(seconds=float(lag_seconds))
        self.journal = Journal(WAIT_JOURNAL.path(state_dir))
        self.snapshots: dict[str, Snapshot] = {}
        self.cursors = {(p, e): EventCursor(p, e) for p in self.pool_ids for e in EVENT_FIELDS}
        self.first_started: str | None = None
        self.resumed = False
        self._load()

    def _load(self) -> None:
        records = self.journal.read()  # streamed: one record in memory at a time
        header = next(records, None)
        if header is not None and (header.get("k") != "h" or header.get("version") != JOURNAL_VERSION
                                   or header.get("pool_ids") != self.pool_ids):
            records.close()
            # a journal of other pools (a new launch into the same folder): keep it aside, start fresh
            stale = self.journal.path.with_name(f"{self.journal.path.name}.{int(time.time())}.old")
            os.replace(self.journal.path, stale)
            header = None
        if header is None:
            self.first_started = iso(self.now())
            self.journal.append([{"k": "h", "version": JOURNAL_VERSION, "pool_ids": self.pool_ids,
                                  "started": self.first_started}])
            return
        self.resumed = True
        self.first_started = header.get("started")
        for rec in records:
            if rec.get("k") == "a":
                if is_newer(rec, self.snapshots.get(rec["id"])):
                    self.snapshots[rec["id"]] = Snapshot(rec)
            elif rec.get("k") == "c":
                cursor = EventCursor.from_record(rec)
                self.cursors[(cursor.pool_id, cursor.event)] = cursor

    def _merge(self, assignments: Iterable[Assignment]) -> tuple[list[dict[str, Any]], list[str]]:
        records, changed = [], []
        for assignment in assignments:
            rec = snapshot(assignment, self.image_field)
            if rec["pool_id"] not in self.pool_ids or rec["submitted"] is None:
                continue
            if is_newer(rec, self.snapshots.get(rec["id"])):
                self.snapshots[rec["id"]] = Snapshot(rec)
                records.append(rec)
                changed.append(rec["id"])
        return records, changed

    def poll(self, lag: dt.timedelta | None = None, events: Iterable[str] = EVENT_FIELDS) -> list[str]:
        """Read new events of every stream (or of the ``events`` streams only: the others keep their place
        and catch up at their next read); returns ids of assignments that are new or changed."""
        upper = self.now() - (self.lag if lag is None else lag)
        changed = []
        wanted = set(events)
        for cursor in self.cursors.values():
            if cursor.event not in wanted:
                continue
            before = cursor.record()
            saved = (cursor.time, set(cursor.seen), cursor.strictly_after)
            try:
                fetched = cursor.fetch(self.client, upper)
            except BaseException:
                # a page failed: forget the pages read before it, they are fetched again next time
                cursor.time, cursor.seen, cursor.strictly_after = saved
                raise
            records, ids = self._merge(fetched)
            changed += ids
            after = cursor.record()
            # snapshots first, then the cursor: a crash in between only means fetching them again
            self.journal.append(records + ([after] if after != before else []))
        return list(dict.fromkeys(changed))

    def rescan(self) -> list[str]:
        """Read all submitted/accepted/rejected assignments again (no lag) and merge the newest state."""
        changed = []
        for pool_id in self.pool_ids:
            batch = []
            for assignment in self.client.get_assignments(pool_id=pool_id, status=list(COLLECTED_STATUSES),
                                                          batch_size=cursors.BATCH_SIZE):
                batch.append(assignment)
                if len(batch) >= cursors.BATCH_SIZE:
                    records, ids = self._merge(batch)
                    self.journal.append(records)
                    changed += ids
                    batch = []
            records, ids = self._merge(batch)
            self.journal.append(records)
            changed += ids
        return list(dict.fromkeys(changed))

    # summaries of what was collected

    def records(self, pool_id: str | None = None) -> list[Snapshot]:
        """The newest snapshot of each assignment (of ``pool_id``, else of every pool), oldest submit first."""
        return sorted((r for r in self.snapshots.values() if pool_id is None or r["pool_id"] == str(pool_id)),
                      key=lambda r: (r["submitted"], r["id"]))

    def counts(self, pool_id: str | None = None) -> dict[str, int]:
        """Assignments by status, and ``task_answers``: the task answers of the ones not rejected."""
        recs = self.records(pool_id)
        statuses = [r["status"] for r in recs]
        return {"submitted": len(recs), "accepted": statuses.count("ACCEPTED"),
                "rejected": statuses.count("REJECTED"), "pending_review": statuses.count("SUBMITTED"),
                "task_answers": sum(len(r["tasks"]) for r in recs if r["status"] != "REJECTED")}
