"""The position in one event stream (``submitted``, ``accepted`` or ``rejected``) of one pool.

Like toloka-kit's ``AssignmentCursor``: the last event time read, and the ids already seen at that
time, so that a query from that time on (``<event>_gte``) returns nothing twice. A full page of
assignments sharing one timestamp is paged through by id, after which the cursor reads strictly
after that time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crowdboxes.toloka.client import LIST_PAGE
from crowdboxes.toloka.collection.snapshots import iso, utc_naive

if TYPE_CHECKING:
    from toloka.client import Assignment, TolokaClient

EVENT_FIELDS = ("submitted", "accepted", "rejected")
BATCH_SIZE = LIST_PAGE  # assignments per request (toloka-kit's AssignmentCursor asks for 1,000)


@dataclass
class EventCursor:
    """Position in one event stream of one pool: the last event time and the ids seen at it."""

    pool_id: str
    event: str
    time: dt.datetime | None = None
    seen: set[str] = field(default_factory=set)
    strictly_after: bool = False  # set after paging by id through one crowded timestamp

    def record(self) -> dict[str, Any]:
        """The cursor as a journal record (``k: c``)."""
        return {"k": "c", "pool_id": self.pool_id, "event": self.event, "time": iso(self.time),
                "ids": sorted(self.seen), "strict": self.strictly_after}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> EventCursor:
        """The cursor a journal record describes."""
        return cls(rec["pool_id"], rec["event"], utc_naive(rec["time"]), set(rec["ids"]), bool(rec["strict"]))

    def _advance(self, assignment: Assignment) -> bool:
        """Move past ``assignment``; False if it was seen already."""
        when = utc_naive(getattr(assignment, self.event))
        if when is None:
            return False
        if self.time is not None and (when < self.time or (when == self.time and
                                                          (self.strictly_after or assignment.id in self.seen))):
            return False
        if self.time is None or when > self.time:
            self.time, self.seen, self.strictly_after = when, set(), False
        self.seen.add(str(assignment.id))
        return True

    def fetch(self, client: TolokaClient, upper: dt.datetime) -> list[Assignment]:
        """New assignments whose event time is in [cursor, upper], oldest first."""
        found: list[Assignment] = []
        while True:
            params: dict[str, Any] = {"pool_id": self.pool_id, f"{self.event}_lte": upper}
            if self.time is not None:
                params[f"{self.event}_gt" if self.strictly_after else f"{self.event}_gte"] = self.time
            result = client.find_assignments(sort=[self.event, "id"], limit=BATCH_SIZE, **params)
            items = list(result.items or [])
            new = [a for a in items if self._advance(a)]
            found += new
            if not result.has_more or not items:
                return found
            if not new:
                if self.time is None:  # a page of assignments without the event time: nothing to move past
                    return found
                # a full page at one timestamp: page through it by id, then go strictly after it
                found += self._page_timestamp(client, self.time)
                self.strictly_after = True

    def _page_timestamp(self, client: TolokaClient, when: dt.datetime) -> list[Assignment]:
        found: list[Assignment] = []
        last_id = max(self.seen) if self.seen else None
        while True:
            params: dict[str, Any] = {"pool_id": self.pool_id, f"{self.event}_gte": when, f"{self.event}_lte": when}
            if last_id is not None:
                params["id_gt"] = last_id
            result = client.find_assignments(sort=["id"], limit=BATCH_SIZE, **params)
            items = list(result.items or [])
            for a in items:
                if str(a.id) not in self.seen:
                    self.seen.add(str(a.id))
                    found.append(a)
            if not result.has_more or not items:
                return found
            last_id = items[-1].id
