"""An assignment as the journal records it: a JSON-able snapshot stamped with its last change.

Times are naive UTC (as Toloka sends them and toloka-kit reads them) and are written as fixed-width
ISO-8601 strings, so that comparing the strings compares the times.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from crowdboxes.toloka.client import plain_json

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


def is_newer(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether snapshot ``new`` replaces ``old`` of the same assignment (the later change wins)."""
    if old is None:
        return True
    if new["modified"] != old["modified"]:
        return bool(new["modified"] > old["modified"])
    return bool(new["status"] != old["status"])
