"""Collecting a pool's answers from Toloka incrementally, surviving crashes, and turning them into pixels.

The collector follows three event streams of one or more pools (``submitted``, ``accepted``,
``rejected``) with its own cursor per stream, like toloka-kit's ``AssignmentCursor``: a query
``<event>_gte=<cursor time>&<event>_lte=<now - lag>&sort=<event>,id`` and, at the cursor time,
a set of already seen ids. Every new assignment snapshot and every cursor move is appended to a
JSON-lines journal and fsynced before anything else happens, so a re-run after a crash starts
where the last run stopped and nothing already collected is fetched or lost twice.

An assignment's content (tasks, solutions, submit time) never changes after submission; its
status can (``SUBMITTED -> ACCEPTED | REJECTED``, ``REJECTED -> ACCEPTED``). Each snapshot is
stamped with its last modification time ``max(submitted, accepted, rejected)`` and the newest one
wins, which makes the outcome independent of the order the streams were read in. Before results
are written, :meth:`AnswerCollector.rescan` reads every submitted assignment of the pools once
more, so the final answers depend only on the server's final state, not on when a run crashed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crowdboxes.toloka.client import plain_json
from crowdboxes.artifacts import ANSWERS
from crowdboxes.toloka.quality import toloka_fee
from crowdboxes.cnvrg.metrics import cnvrg_linechart
from crowdboxes.cnvrg.stepkit import redact

JOURNAL_NAME = "wait_pool_journal.jsonl"
JOURNAL_VERSION = 1
EVENT_FIELDS = ("submitted", "accepted", "rejected")
COLLECTED_STATUSES = ("SUBMITTED", "ACCEPTED", "REJECTED")
DONE_CLOSE_REASONS = ("COMPLETED", "EXPIRED", "MANUAL")
BATCH_SIZE = 1000  # what toloka-kit's AssignmentCursor asks for

EPOCH = dt.datetime(1970, 1, 1)


# --------------------------------------------------------------------------------------------------
# times


def utc_naive(value) -> dt.datetime | None:
    """A datetime (or ISO string) as naive UTC, the way Toloka sends and toloka-kit reads it."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def iso(value) -> str | None:
    """Fixed-width ISO-8601 UTC with microseconds, so that these strings sort like the times."""
    value = utc_naive(value)
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------------------------------
# snapshots


def _enum_value(value):
    return getattr(value, "value", value)




def snapshot(assignment, image_field: str = "image") -> dict:
    """The parts of a toloka-kit ``Assignment`` the flow needs, as a JSON-able dict.

    Each task's image URL is read from the project's image input ``image_field`` and kept under the
    journal's key ``image`` whatever the project calls it (journals of earlier runs stay readable).
    """
    tasks = list(assignment.tasks or [])
    solutions = list(assignment.solutions or [])
    record = {
        "k": "a",
        "id": str(assignment.id),
        "pool_id": str(assignment.pool_id),
        "user_id": str(assignment.user_id),
        "status": str(_enum_value(assignment.status)),
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


def _newer(new: dict, old: dict | None) -> bool:
    if old is None:
        return True
    if new["modified"] != old["modified"]:
        return new["modified"] > old["modified"]
    return new["status"] != old["status"]


# --------------------------------------------------------------------------------------------------
# the journal


class Journal:
    """Append-only JSON lines, fsynced per batch; a torn last line (crash mid-write) is cut off on open."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        records, good_end, start = [], 0, 0
        while start < len(data):
            end = data.find(b"\n", start)
            if end < 0:
                break  # no newline: the write was interrupted
            try:
                records.append(json.loads(data[start:end]))
            except json.JSONDecodeError:
                break
            good_end = start = end + 1
        if good_end < len(data):
            with open(self.path, "r+b") as fh:  # drop the torn tail so later appends stay parseable
                fh.truncate(good_end)
                os.fsync(fh.fileno())
        return records

    def append(self, records: Iterable[dict]) -> None:
        lines = "".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in records)
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())


# --------------------------------------------------------------------------------------------------
# cursors


@dataclass
class EventCursor:
    """Position in one event stream of one pool: the last event time and the ids seen at it."""

    pool_id: str
    event: str
    time: dt.datetime | None = None
    seen: set[str] = field(default_factory=set)
    strictly_after: bool = False  # set after paging by id through one crowded timestamp

    def record(self) -> dict:
        return {"k": "c", "pool_id": self.pool_id, "event": self.event, "time": iso(self.time),
                "ids": sorted(self.seen), "strict": self.strictly_after}

    @classmethod
    def from_record(cls, rec: dict) -> "EventCursor":
        return cls(rec["pool_id"], rec["event"], utc_naive(rec["time"]), set(rec["ids"]), bool(rec["strict"]))

    def _advance(self, assignment) -> bool:
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

    def fetch(self, client, upper: dt.datetime) -> list:
        """New assignments whose event time is in [cursor, upper], oldest first."""
        found = []
        while True:
            params = {"pool_id": self.pool_id, f"{self.event}_lte": upper}
            if self.time is not None:
                params[f"{self.event}_gt" if self.strictly_after else f"{self.event}_gte"] = self.time
            result = client.find_assignments(sort=[self.event, "id"], limit=BATCH_SIZE, **params)
            items = list(result.items or [])
            new = [a for a in items if self._advance(a)]
            found += new
            if not result.has_more or not items:
                return found
            if not new:  # a full page at one timestamp: page through it by id, then go strictly after it
                found += self._page_timestamp(client, self.time)
                self.strictly_after = True

    def _page_timestamp(self, client, when: dt.datetime) -> list:
        found, last_id = [], max(self.seen) if self.seen else None
        while True:
            params = {"pool_id": self.pool_id, f"{self.event}_gte": when, f"{self.event}_lte": when}
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


# --------------------------------------------------------------------------------------------------
# the collector


class AnswerCollector:
    """Assignments of ``pool_ids`` collected incrementally into a journal in ``state_dir``.

    ``snapshots`` maps assignment id -> its newest snapshot. ``poll()`` reads new events up to
    ``now - lag`` (Toloka's API is eventually consistent; toloka-kit uses a 60 s lag),
    ``rescan()`` reads every submitted assignment once more with no lag.
    """

    def __init__(self, client, pool_ids: Iterable[str], state_dir: str | os.PathLike, lag_seconds: float = 60.0,
                 journal_name: str = JOURNAL_NAME, image_field: str = "image"):
        self.client = client
        self.image_field = image_field  # the detection project's image input (crowdboxes.toloka.fields)
        self.pool_ids = [str(p) for p in pool_ids]
        self.lag = dt.timedelta(seconds=float(lag_seconds))
        self.journal = Journal(Path(state_dir) / journal_name)
        self.snapshots: dict[str, dict] = {}
        self.cursors = {(p, e): EventCursor(p, e) for p in self.pool_ids for e in EVENT_FIELDS}
        self.first_started: str | None = None
        self.resumed = False
        self._load()

    def _load(self) -> None:
        records = self.journal.read()
        if records and (records[0].get("k") != "h" or records[0].get("version") != JOURNAL_VERSION
                        or records[0].get("pool_ids") != self.pool_ids):
            # a journal of other pools (a new launch into the same folder): keep it aside, start fresh
            stale = self.journal.path.with_name(f"{self.journal.path.name}.{int(time.time())}.old")
            os.replace(self.journal.path, stale)
            records = []
        if not records:
            self.first_started = iso(now_utc())
            self.journal.append([{"k": "h", "version": JOURNAL_VERSION, "pool_ids": self.pool_ids,
                                  "started": self.first_started}])
            return
        self.resumed = True
        self.first_started = records[0].get("started")
        for rec in records[1:]:
            if rec.get("k") == "a":
                if _newer(rec, self.snapshots.get(rec["id"])):
                    self.snapshots[rec["id"]] = rec
            elif rec.get("k") == "c":
                cursor = EventCursor.from_record(rec)
                self.cursors[(cursor.pool_id, cursor.event)] = cursor

    def _merge(self, assignments) -> tuple[list[dict], list[str]]:
        records, changed = [], []
        for assignment in assignments:
            rec = snapshot(assignment, self.image_field)
            if rec["pool_id"] not in self.pool_ids or rec["submitted"] is None:
                continue
            if _newer(rec, self.snapshots.get(rec["id"])):
                self.snapshots[rec["id"]] = rec
                records.append(rec)
                changed.append(rec["id"])
        return records, changed

    def poll(self, lag: dt.timedelta | None = None) -> list[str]:
        """Read new events of every stream; returns ids of assignments that are new or changed."""
        upper = now_utc() - (self.lag if lag is None else lag)
        changed = []
        for cursor in self.cursors.values():
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
                                                          batch_size=BATCH_SIZE):
                batch.append(assignment)
                if len(batch) >= BATCH_SIZE:
                    records, ids = self._merge(batch)
                    self.journal.append(records)
                    changed += ids
                    batch = []
            records, ids = self._merge(batch)
            self.journal.append(records)
            changed += ids
        return list(dict.fromkeys(changed))

    # summaries of what was collected

    def records(self, pool_id: str | None = None) -> list[dict]:
        return sorted((r for r in self.snapshots.values() if pool_id is None or r["pool_id"] == str(pool_id)),
                      key=lambda r: (r["submitted"], r["id"]))

    def counts(self, pool_id: str | None = None) -> dict:
        recs = self.records(pool_id)
        statuses = [r["status"] for r in recs]
        return {"submitted": len(recs), "accepted": statuses.count("ACCEPTED"),
                "rejected": statuses.count("REJECTED"), "pending_review": statuses.count("SUBMITTED"),
                "task_answers": sum(len(r["tasks"]) for r in recs if r["status"] != "REJECTED")}

    def spent_estimate(self, pool_id: str | None = None) -> tuple[float, float]:
        """(rewards, fees) in USD of the accepted assignments collected so far."""
        rewards = [r["reward"] for r in self.records(pool_id) if r["status"] == "ACCEPTED"]
        return round(sum(rewards), 6), round(sum(toloka_fee(x) for x in rewards if x > 0), 6)


# --------------------------------------------------------------------------------------------------
# pool state


def pool_state(client, pool_id: str, expected_answers: int | None, collected_answers: int) -> tuple[bool, str]:
    """(done, reason): closed as COMPLETED/EXPIRED/MANUAL (or archived), or no task has overlap left.

    The per-task check (one pass over the pool's tasks) runs only once enough answers were
    collected to make it plausible, so a poll of a busy pool costs one request here.
    """
    pool = client.get_pool(pool_id)
    status = str(_enum_value(pool.status))
    reason = str(_enum_value(pool.last_close_reason)) if pool.last_close_reason is not None else ""
    if status == "ARCHIVED" or (status == "CLOSED" and reason in DONE_CLOSE_REASONS):
        return True, f"{status} {reason}".strip()
    if expected_answers is not None and collected_answers >= expected_answers:
        active = client.find_assignments(pool_id=pool_id, status=["ACTIVE"], limit=1)
        if not active.items and all((t.remaining_overlap or 0) == 0 for t in client.get_tasks(pool_id=pool_id)):
            return True, f"{status} with no remaining tasks"
    return False, f"{status} {reason}".strip()


def spent_from_analytics(client, pool_id: str) -> float | None:
    """Toloka's ``spent_budget`` of a pool (rewards, without the fee); None if unavailable."""
    try:
        from toloka.client.analytics_request import SpentBudgetPoolAnalytics

        op = client.get_analytics([SpentBudgetPoolAnalytics(subject_id=str(pool_id))])
        op = client.wait_operation(op, timeout=dt.timedelta(seconds=60), disable_progress=True)
        result = op.details["value"][0]["result"]
        value = result.get("value") if isinstance(result, dict) else result
        return float(value)
    except Exception:  # analytics is a nicety: the estimate from accepted assignments stands in
        return None


# --------------------------------------------------------------------------------------------------
# progress


class Progress:
    """A tqdm bar on stderr (only on a terminal), else one line per poll; cnvrg line charts on stdout."""

    def __init__(self, total: int | None, label: str, stream=None, unit: str = "answers"):
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.bar = None
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=unit.split()[0], file=self.stream, dynamic_ncols=True)

    def percent(self, done: int) -> float:
        return round(min(100.0, 100.0 * done / self.total), 2) if self.total else 0.0

    def update(self, done: int, counts: dict, spent_usd: float, state: str) -> None:
        pct = self.percent(done)
        if self.bar is not None:
            self.bar.total, self.bar.unit = self.total, self.unit.split()[0]  # both may change mid-wait
            self.bar.n = min(done, self.total or done)
            self.bar.set_postfix(accepted=counts["accepted"], rejected=counts["rejected"],
                                 spent=f"${spent_usd:.2f}", state=state, refresh=False,
                                 **({"banned": counts["banned"]} if "banned" in counts else {}))
            self.bar.refresh()
        else:
            total = self.total if self.total is not None else "?"
            print(f"{self.label}: {done}/{total} {self.unit} ({pct:.1f}%), submitted {counts['submitted']}, "
                  f"accepted {counts['accepted']}, rejected {counts['rejected']}, spent ${spent_usd:.2f}, "
                  + (f"workers banned {counts['banned']}, " if "banned" in counts else "")
                  + f"pool {state}, {time.monotonic() - self.started:.0f} s", file=self.stream, flush=True)
        cnvrg_linechart("Progress", pct)
        cnvrg_linechart("Spent", round(spent_usd, 4))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


MAX_POLL_FAILURES = 10  # consecutive failed polls before the step gives up (the journal keeps everything)


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
    done: bool
    state: str
    polls: int


def wait_for_pool(client, pool_id: str, collector: AnswerCollector, progress: Progress, *,
                  poll_seconds: float, deadline: float | None, expected_answers: int | None,
                  sleep: Callable[[float], None] = time.sleep, controller=None) -> WaitOutcome:
    """Poll until the pool is done or ``deadline`` (a ``time.monotonic()`` value) passes.

    ``controller`` (:class:`crowdboxes.toloka.overlap.OverlapController`) may raise task overlaps as answers
    come in; the pool is done only when it has nothing more to ask for after a final rescan.
    """
    polls = failures = 0
    state = "unknown"
    while True:
        polls += 1
        try:
            collector.poll()
            if controller is not None and controller.update(collector.records(pool_id)):
                expected_answers = progress.total = controller.expected_answers
            counts = collector.counts(pool_id)
            done, state = pool_state(client, pool_id, expected_answers, counts["task_answers"])
            if done and controller is not None:
                # the last answers may be inside the cursor lag: decide on all of them before stopping
                collector.rescan()
                if controller.update(collector.records(pool_id)):
                    expected_answers = progress.total = controller.expected_answers
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
            rewards, fees = collector.spent_estimate(pool_id)
            progress.update(counts["task_answers"], counts, rewards + fees, state)
        if done:
            return WaitOutcome(True, state, polls)
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return WaitOutcome(False, state, polls)
        sleep(poll_seconds if remaining is None else min(poll_seconds, remaining))


# --------------------------------------------------------------------------------------------------
# answers.csv


def result_shapes(value) -> list:
    """The image-annotation output (``result`` in the shipped project) as a list of shapes (it is a JSON
    string in TSV exports)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if not isinstance(value, list):
        raise ValueError(f"result is {type(value).__name__}, expected a list of shapes")
    return value


def rectangle_pixels(shape: dict, width: float, height: float) -> tuple[str, float, float, float, float]:
    """One image-annotation rectangle (0..1 of the image) as (label, x, y, w, h) in pixels."""
    if not isinstance(shape, dict) or shape.get("shape") != "rectangle":
        kind = shape.get("shape") if isinstance(shape, dict) else type(shape).__name__
        raise ValueError(f"shape {kind!r} is not a rectangle")
    coords = []
    for key in ("left", "top", "width", "height"):
        value = shape.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"rectangle {key} is {value!r}")
        coords.append(float(value))
    left, top, w, h = coords
    return (str(shape.get("label") or ""), left * width, top * height, w * width, h * height)


def answers_frame(records: Iterable[dict], tasks: pd.DataFrame, images: pd.DataFrame,
                  output_field: str = "result") -> tuple[pd.DataFrame, list[str]]:
    """answers.csv rows of the collected assignments and a list of problems (skipped answers).

    One row per drawn rectangle; one row with empty label and box when a worker drew nothing.
    Tasks map to images by task id (tasks.csv), else by image URL (tasks.csv/images.csv). The shapes are
    read from the detection project's output field ``output_field`` (:class:`crowdboxes.toloka.fields.DetectionFields`).
    """
    image_by_task = dict(zip(tasks["task_id"].astype(str), tasks["image_id"].astype(str)))
    image_by_url = dict(zip(images["url"].astype(str), images["image_id"].astype(str)))
    image_by_url.update(zip(tasks["url"].astype(str), tasks["image_id"].astype(str)))
    size = {str(i): (float(w), float(h)) for i, w, h in zip(images["image_id"], images["width"], images["height"])}
    rows, problems = [], []
    for rec in sorted(records, key=lambda r: (r["submitted"], r["id"])):
        base = {"assignment_id": rec["id"], "worker_id": rec["user_id"], "status": rec["status"],
                "submitted_at": rec["submitted"], "pool_id": rec["pool_id"]}
        for task, output in zip(rec["tasks"], rec["outputs"]):
            image_id = image_by_task.get(str(task["id"])) or image_by_url.get(str(task.get("image")))
            if image_id is None or image_id not in size:
                problems.append(f"assignment {rec['id']}: task {task['id']} is not in tasks.csv/images.csv")
                continue
            width, height = size[image_id]
            row = dict(base, task_id=task["id"], image_id=image_id)
            try:
                shapes = result_shapes((output or {}).get(output_field))
            except (ValueError, json.JSONDecodeError) as exc:
                problems.append(f"assignment {rec['id']} task {task['id']}: unreadable {output_field}: {exc}")
                continue
            if not shapes:
                rows.append(dict(row, label=None, x=None, y=None, w=None, h=None))
            for number, shape in enumerate(shapes, start=1):
                try:
                    label, x, y, w, h = rectangle_pixels(shape, width, height)
                except ValueError as exc:
                    problems.append(f"assignment {rec['id']} task {task['id']} shape {number}: {exc}")
                    continue
                rows.append(dict(row, label=label, x=x, y=y, w=w, h=h))
    columns = list(ANSWERS.columns) + ["pool_id"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("x", "y", "w", "h"):
        frame[column] = frame[column].astype("float64")
    return frame, problems
