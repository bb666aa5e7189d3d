"""Streaming readers: a completed pool stays open until the clients following it have read its end.

toloka-kit's streaming cursors ask for ``GET /assignments?pool_id=..&<field>_gte=..&<field>_lte=now-lag``
(lag 60 s by default) and a ``Pipeline`` stops once a pool is closed with no ACTIVE assignment. Toloka
closes a completed pool within seconds; the local Toloka, whose crowd finishes a pool in seconds of
real time, would close it before a lagging cursor's window reached the last submission, and a default
Pipeline would see nothing. So:

* a *streaming reader* is a ``(pool_id, time field)`` pair (fields: created, submitted, accepted,
  rejected, skipped, expired) that asked for ``GET /assignments`` with ``pool_id`` and
  ``<field>_lte`` within the last :data:`READER_TTL` of real time; its *position* is the largest
  ``_lte`` it asked for (a reader back after expiring starts from its new value). Readers live in
  the ``readers`` table (written at most every second, and before any hold is decided), so they
  survive a restart;
* a pool that has become complete closes (``COMPLETED``) only when, besides Toloka's
  ``auto_close_after_complete_delay_seconds``, every live reader's position is at or past the
  largest value of its field over the pool's assignments (a field no assignment has yet holds
  nothing); a reader of ``accepted`` or ``rejected`` that read in the last :data:`REVIEW_WAIT_WINDOW`
  also waits while the pool has SUBMITTED assignments, whose review is an event still to come (a
  Pipeline that accepts what it is shown reads its own acceptances before it stops);
* a pool that completes before anyone streams it waits ``first_reader_seconds`` (``Backend`` argument,
  default 90 s of real time) for a first reader: on Toloka a crowd takes minutes, so a Pipeline started
  from the next notebook cell still finds the pool open; a reader who comes in that window holds it as
  above, and a pool nobody streams closes when the window ends, or as soon as a client asks for its
  status (``GET /pools/{id}``): a Pipeline reads assignments before it checks the pool, so a status
  read from a client that is no reader is a plain wait loop, which needs no hold;
* ``reader_hold_seconds`` (``Backend`` argument, real seconds, default 600) caps the hold: no pool
  stays open longer than that after it became complete (and never closes before Toloka's delay);
  0 disables holding (Toloka-literal instant completion, for tests that want it);
* the requester's own close, expiry and a short balance are never held.

The read that moves the last reader past the end closes the pool in the same request, so a Pipeline's
next ``should_resume`` sees it CLOSED at once.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, parse_ts
from crowdboxes.local_toloka.models.base import ASSIGNMENT_TIME_FIELDS, CoreMixin, ObjectId, Params


READER_TTL = dt.timedelta(minutes=10)
DEFAULT_READER_HOLD_SECONDS = 600.0
DEFAULT_FIRST_READER_SECONDS = 90.0
REVIEW_FIELDS = ("accepted", "rejected")
# A reader of reviews waits for SUBMITTED assignments only while it keeps reading (a default Pipeline reads
# every 60 s): a reader that stopped (a killed step) must not keep a completed pool open until it expires.
REVIEW_WAIT_WINDOW = dt.timedelta(seconds=90)
PERSIST_EVERY = dt.timedelta(seconds=1)  # a reader's row is rewritten at most this often (and before a hold)


class ReadersMixin(CoreMixin):
    """Streaming readers of pools and the hold they put on closing a completed pool."""

    reader_hold_seconds = DEFAULT_READER_HOLD_SECONDS
    first_reader_seconds = DEFAULT_FIRST_READER_SECONDS

    def _reader_memory(self) -> dict:
        """``{(pool_id, field): {"position", "seen", "saved"}}``: readers as last seen by this process; the
        ``readers`` table gets them at most every :data:`PERSIST_EVERY` (listings are the hot path) and
        always before a hold is decided."""
        memory: dict[Any, dict[str, Any]] | None = self.__dict__.get("_readers_memory")
        if memory is None:
            memory = {}
            self._readers_memory = memory
        return memory

    def _note_readers(self, params: Params, now: dt.datetime | None = None) -> None:
        """Record the ``<field>_lte`` reads of one ``GET /assignments`` (already validated by the search)."""
        if params.get("pool_id") in (None, ""):
            return
        reads = [(field, fmt_ts(parse_ts(params[f"{field}_lte"]))) for field in ASSIGNMENT_TIME_FIELDS
                 if params.get(f"{field}_lte") not in (None, "")]
        if not reads:
            return
        pool_id = int(params["pool_id"])
        now = now or self.now()
        stamp, live_since, stale = fmt_ts(now), fmt_ts(now - READER_TTL), fmt_ts(now - PERSIST_EVERY)
        memory, dirty = self._reader_memory(), False
        for field, position in reads:
            entry = memory.get((pool_id, field))
            if entry is None:
                row = self.conn.execute("SELECT position, seen FROM readers WHERE pool_id = ? AND field = ?",
                                        (pool_id, field)).fetchone()
                entry = memory[(pool_id, field)] = {"position": row[0] if row else None,
                                                    "seen": row[1] if row else None,
                                                    "saved": row[1] if row else None}
            if entry["seen"] is None or entry["seen"] < live_since:  # new, or back after expiring
                entry["position"] = position
            else:
                entry["position"] = max(entry["position"], position)
            entry["seen"] = stamp
            dirty = dirty or entry["saved"] is None or entry["saved"] < stale
        pool = self.conn.execute("SELECT id, complete_at, completed FROM pools WHERE id = ? AND status = 'OPEN' AND "
                                 "complete_at IS NOT NULL", (pool_id,)).fetchone()
        if dirty and pool is None:
            self._flush_readers(pool_id)
        if pool is not None:  # a completed pool held for its readers: this read may be the one it waits for
            self._close_completed(pool, now)

    def _flush_readers(self, pool_id: ObjectId | None = None) -> None:
        """Write the readers seen since their last write to the ``readers`` table."""
        changed = [(key, entry) for key, entry in self._reader_memory().items()
                   if entry["seen"] != entry["saved"] and (pool_id is None or key[0] == pool_id)]
        if not changed:
            return
        self.conn.executemany(
            "INSERT INTO readers(pool_id, field, position, seen) VALUES(?, ?, ?, ?) ON CONFLICT(pool_id, field) "
            "DO UPDATE SET position = excluded.position, seen = excluded.seen",
            [(key[0], key[1], entry["position"], entry["seen"]) for key, entry in changed])
        for _, entry in changed:
            entry["saved"] = entry["seen"]

    def _readers_behind(self, pool_id: int, now: dt.datetime) -> list:
        """Live readers of the pool whose position is before the last event of their field:
        ``[(field, position, seen)]``."""
        self._flush_readers(pool_id)

        def pending_reviews() -> bool:  # SUBMITTED assignments: their acceptance or rejection is an event still to come
            return self.conn.execute("SELECT 1 FROM assignments WHERE pool_id = ? AND status = 'SUBMITTED' LIMIT 1",
                                     (pool_id,)).fetchone() is not None

        behind = []
        for field, position, seen in self.conn.execute(
                "SELECT field, position, seen FROM readers WHERE pool_id = ? AND seen >= ?",
                (pool_id, fmt_ts(now - READER_TTL))).fetchall():
            if field not in ASSIGNMENT_TIME_FIELDS:
                continue
            last = self.conn.execute(f"SELECT MAX({field}) FROM assignments WHERE pool_id = ?", (pool_id,)).fetchone()[0]
            reviewing = field in REVIEW_FIELDS and seen >= fmt_ts(now - REVIEW_WAIT_WINDOW)
            if (last is not None and position < last) or (reviewing and pending_reviews()):
                behind.append((field, position, seen))
        return behind

    def _has_readers(self, pool_id: int, now: dt.datetime) -> bool:
        return self.conn.execute("SELECT 1 FROM readers WHERE pool_id = ? AND seen >= ? LIMIT 1",
                                 (pool_id, fmt_ts(now - READER_TTL))).fetchone() is not None

    def _first_reader_deadline(self, pool_row: sqlite3.Row) -> dt.datetime:
        completed = parse_ts(pool_row["completed"] or pool_row["complete_at"])
        return min(completed + dt.timedelta(seconds=float(self.first_reader_seconds)), self._hold_deadline(pool_row))

    def _status_read_ends_first_reader_wait(self, pool_row: sqlite3.Row, now: dt.datetime) -> bool:
        """Close a completed pool that waits only for a first reader, because a non-reader asked for its
        status; True if it closed."""
        if pool_row["status"] != "OPEN" or not pool_row["complete_at"] or parse_ts(pool_row["complete_at"]) > now:
            return False
        if self._has_readers(pool_row["id"], now):
            return False
        self._close_pool(pool_row["id"], "COMPLETED")
        self._notify()
        return True

    def _held(self, pool_row: sqlite3.Row, now: dt.datetime) -> bool:
        """Whether streaming readers (present, or a first one still awaited) keep a completed pool open."""
        if self.reader_hold_seconds <= 0 or now >= self._hold_deadline(pool_row):
            return False
        if self._readers_behind(pool_row["id"], now):
            return True
        return now < self._first_reader_deadline(pool_row) and not self._has_readers(pool_row["id"], now)

    def _hold_deadline(self, pool_row: sqlite3.Row) -> dt.datetime:
        """When the hold of a completed pool ends at the latest (``completed + reader_hold_seconds``)."""
        completed = parse_ts(pool_row["completed"] or pool_row["complete_at"])
        return completed + dt.timedelta(seconds=float(self.reader_hold_seconds))

    def _close_completed(self, pool_row: sqlite3.Row, now: dt.datetime) -> bool:
        """Close a completed OPEN pool (``COMPLETED``) unless Toloka's delay or a reader still holds it."""
        if parse_ts(pool_row["complete_at"]) > now:
            return False
        if self._held(pool_row, now):
            return False
        self._close_pool(pool_row["id"], "COMPLETED")
        self._notify()
        return True

    def _held_wakeup(self, pool_row: sqlite3.Row, now: dt.datetime) -> dt.datetime:
        """The next time a held pool may close without a new read: its cap or a reader's expiry."""
        times = [self._hold_deadline(pool_row)]
        times += [parse_ts(seen) + READER_TTL for _, _, seen in self._readers_behind(pool_row["id"], now)]
        if not self._has_readers(pool_row["id"], now):
            times.append(self._first_reader_deadline(pool_row))
        return min(times)

    def streaming_readers(self, pool_id: ObjectId | None = None) -> list:
        """Live readers (for tests and ``/_local``): ``[{pool_id, field, position, seen}]``."""
        now = self.now()
        with self.transaction():
            self._flush_readers()
            sql = "SELECT pool_id, field, position, seen FROM readers WHERE seen >= ?"
            args: list[Any] = [fmt_ts(now - READER_TTL)]
            if pool_id is not None:
                sql += " AND pool_id = ?"
                args.append(int(pool_id))
            return [{"pool_id": str(r[0]), "field": r[1], "position": parse_ts(r[2]), "seen": parse_ts(r[3])}
                    for r in self.conn.execute(sql + " ORDER BY pool_id, field", args)]
