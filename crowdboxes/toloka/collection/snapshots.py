"""An assignment as the journal records it: a JSON-able snapshot stamped with its last change.

Times are naive UTC (as Toloka sends them and toloka-kit reads them) and are written as fixed-width
ISO-8601 strings, so that comparing the strings compares the times. In memory the collector holds each
snapshot as a :class:`Snapshot`, about a fifth of the dict's size (Wait Pool holds every assignment of a pool).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from crowdboxes.toloka.client import plain_json
from crowdboxes.toloka.collection.journal import compact_json

if TYPE_CHECKING:
    from toloka.client import Assignment

# statuses of assignments that were submitted (the ones the collector keeps)
COLLECTED_STATUSES = ("SUBMITTED", "ACCEPTED", "REJECTED")


def utc_naive(value: dt.datetime | str | None) -> dt.datetime | None:
    """A datetime (or ISO string) as naive UTC, the way Toloka sends and toloka-kit reads it."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def iso(value: dt.datetime | str | None) -> str | None:
    """Fixed-width ISO-8601 UTC with microseconds, so that these strings sort like the times."""
    value = utc_naive(value)
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_utc() -> dt.datetime:
    """The current time as naive UTC."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def enum_value(value: Any) -> Any:
    """An enum member's value (toloka-kit's statuses and close reasons), anything else unchanged."""
    return getattr(value, "value", value)


def snapshot(assignment: Assignment, image_field: str = "image") -> dict[str, Any]:
    """The parts of a toloka-kit ``Assignment`` the flow needs, as a JSON-able dict.

    Each task's image URL is read from the project's image input ``image_field`` and kept under the
    journal's key ``image`` whatever the project calls it (journals of earlier runs stay readable).
    """
    tasks = list(assignment.tasks or [])
    solutions = list(assignment.solutions or [])
    record: dict[str, Any] = {
        "k": "a",
        "id": str(assignment.id),
        "pool_id": str(assignment.pool_id),
        "user_id": str(assignment.user_id),
        "status": str(enum_value(assignment.status)),
        "reward": float(assignment.reward or 0),
        "submitted": iso(assignment.submitted),
        "accepted": iso(assignment.accepted),
        "rejected": iso(assignment.rejected),
        "tasks": [{"id": str(t.id) if t.id is not None else None,
                   "image": plain_json((t.input_values or {}).get(image_field))} for t in tasks],
        "outputs": [plain_json(dict(s.output_values or {})) if s is not None else None for s in solutions],
    }
    record["modified"] = max(t for t in (record["submitted"], record["accepted"], record["rejected"], "") if t)
    return record


def is_newer(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether snapshot ``new`` replaces ``old`` of the same assignment (the later change wins)."""
    if old is None:
        return True
    if new["modified"] != old["modified"]:
        return bool(new["modified"] > old["modified"])
    return bool(new["status"] != old["status"])


class Snapshot(Mapping[str, Any]):
    """A journal record of :func:`snapshot`, held compactly: the same keys and values, read like the dict.

    The task list and the outputs (the nested part, most of a dict's size) are kept as their compact JSON
    text and parsed on each read; ids, statuses and pool ids are interned, so a worker's id or a pool's id
    is stored once. About 0.8 KB per assignment against 3.7-4.6 KB as a dict: Wait Pool holds every
    assignment of its pools (300,000 for 100,000 images at overlap 3).
    """

    __slots__ = ("id", "pool_id", "user_id", "status", "reward", "submitted", "accepted", "rejected", "modified",
                 "_tasks", "_outputs")
    KEYS = ("k", "id", "pool_id", "user_id", "status", "reward", "submitted", "accepted", "rejected", "modified",
            "tasks", "outputs")

    def __init__(self, record: Mapping[str, Any]) -> None:
        for key in ("id", "pool_id", "user_id", "status"):
            setattr(self, key, sys.intern(str(record[key])))
        self.reward = float(record["reward"])
        self.submitted, self.accepted, self.rejected = record["submitted"], record["accepted"], record["rejected"]
        # the newest time: the same string object as one of the three, not a copy
        self.modified = next((t for t in (self.submitted, self.accepted, self.rejected) if t == record["modified"]),
                             record["modified"])
        self._tasks = compact_json(record["tasks"])
        self._outputs = compact_json(record["outputs"])

    def __getitem__(self, key: str) -> Any:
        if key == "k":
            return "a"
        if key == "tasks":
            return json.loads(self._tasks)
        if key == "outputs":
            return json.loads(self._outputs)
        if key in self.KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)

    def __repr__(self) -> str:
        return f"Snapshot({dict(self)!r})"
