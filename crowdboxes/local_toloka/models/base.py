"""Shared ground of the backend: constants, money, JSON helpers, searches, and the core mixin
(SQLite connection, transactions, meta and counters, time, the requester's balance).

Everything lives in SQLite (:mod:`crowdboxes.local_toloka.db`); every public method runs in one
transaction under one lock, so concurrent HTTP threads and the crowd's scheduler thread see
consistent state and a crash loses at most the call in flight. Objects go in and out as the JSON
dicts of the Toloka API (toloka-api.md section 6); errors are :mod:`..exceptions` classes carrying
Toloka's codes.

Money: accepting an assignment charges ``reward + max(0.3 * reward, 0.005)`` (Toloka's fee) to
the requester balance. Simulated durations (task work, review periods, close delays, restriction
lengths) are divided by ``speed`` (simulated seconds per real second); timestamps are real UTC.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crowdboxes.local_toloka import db
from crowdboxes.local_toloka.db import Clock, fmt_ts, parse_ts, utcnow
from crowdboxes.local_toloka.exceptions import DoesNotExist, ValidationError


Doc = dict[str, Any]
"""A Toloka API object as JSON (a pool, a task, a request body once checked to be an object)."""
Params = Mapping[str, Any]
"""A request's query parameters (strings from HTTP; tests also pass numbers)."""
ObjectId = int | str
"""An integer-keyed object's id (pool, project, skill, ...): ``str`` from the API, ``int`` from SQLite."""

FEE_RATE = Decimal("0.3")
MIN_FEE = Decimal("0.005")
MIN_REWARD = Decimal("0.005")
DEFAULT_BALANCE = Decimal("1000")
OWNER = {"id": "local0000000000000000000000000001", "myself": True, "company_id": "local-company"}
FIELD_TYPES = {"url", "string", "json", "boolean", "integer", "float", "file", "coordinates",
               "array_url", "array_string", "array_json", "array_boolean", "array_integer", "array_float",
               "array_file", "array_coordinates"}
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
COORD_RE = re.compile(r"^\s*-?\d+(\.\d+)?\s*,\s*-?\d+(\.\d+)?\s*$")
ASSIGNMENT_TIME_FIELDS = ("created", "submitted", "accepted", "rejected", "skipped", "expired")
TSV_STATUS = {"ACCEPTED": "APPROVED"}
MAX_BATCH = 100_000
MAX_OVERLAP = 30_000  # OpenAPI Defaults and Task.overlap maximum
# Days after a rejection during which the Toloker may appeal and the requester may still accept; a pool with
# a younger rejection cannot be archived (guide "Reviewing responses", API "Archive pool").
APPEAL_DAYS = 9
MAX_PUBLIC_COMMENT = 2048  # AssignmentPatchV1.public_comment


def golden_sql(alias: str = "") -> str:
    """SQL test for a control (golden) task: one with ``known_solutions`` (toloka-api.md 6.3)."""
    return f"(COALESCE(json_array_length({alias}{'.' if alias else ''}doc, '$.known_solutions'), 0) > 0)"


REAL_SQL = f"NOT {golden_sql()}"
SKILL_EDITABLE = ("name", "private_comment", "hidden", "public_name", "public_requester_description")
INLINE_BATCH = 2_000  # larger async batches are processed by a background thread


def fee_for(reward: Decimal) -> Decimal:
    return max(reward * FEE_RATE, MIN_FEE)


def cost_for(reward: Decimal) -> Decimal:
    """What one accepted assignment costs the requester: reward plus Toloka's fee."""
    return (reward + fee_for(reward)).quantize(Decimal("0.00001"), rounding=ROUND_HALF_UP)


def object_id(pool_id: int, seq: int) -> str:
    """Fixed width, so string order = creation order within a pool (toloka-api.md 0.3)."""
    return f"{int(pool_id):010x}--{seq:024x}"


def _num(value: Any) -> Any:
    """Decimal -> int or float for JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


@functools.lru_cache(maxsize=65536)
def _loads_cached(text: str) -> Any:
    return json.loads(text)


def _doc(text: str | None) -> Doc:
    """Parse a stored JSON object; memoised because listings re-read the same task docs over and over.
    Returns a shallow copy: renderers only set top-level keys."""
    return dict(_loads_cached(text or "{}"))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_num)


def correctness_weight(known_solution: Doc) -> float:
    """A known solution's ``correctness_weight``, 1 when unset."""
    weight = known_solution.get("correctness_weight")
    return float(1 if weight is None else weight)


def solution_weight(answer: Doc | None, known_solutions: Iterable[Doc] | None) -> float:
    """Score of one answer: the best ``correctness_weight`` among the known solutions it matches (every
    field a solution lists equal; fields left out are not checked), 0 if none. Scores control tasks
    (golden statistics) and training tasks."""
    answer = answer or {}
    weights = [correctness_weight(ks) for ks in known_solutions or []
               if all(answer.get(k) == v for k, v in (ks.get("output_values") or {}).items())]
    return max(weights, default=0.0)


def offered_to(rows: Iterable[tuple[int, str]], user_id: str) -> Iterator[tuple[int, Doc]]:
    """``(seq, doc)`` of the rows ``(seq, doc JSON)`` that ``user_id`` may get: not reserved for other
    workers (``reserved_for``) and not closed to them (``unavailable_for``); lazily, in row order."""
    for seq, doc in rows:
        doc = json.loads(doc)
        if doc.get("reserved_for") and user_id not in doc["reserved_for"]:
            continue
        if user_id in (doc.get("unavailable_for") or []):
            continue
        yield seq, doc


class RawJSON(str):
    """A response body that already is JSON text (sent as is)."""


JSON_ENCODER = json.JSONEncoder(default=_num, check_circular=False, separators=(",", ":"))


# --------------------------------------------------------------------------------------------------
# Search: filters, ranges, sorting, pagination (toloka-api.md section 2)
# --------------------------------------------------------------------------------------------------

class SearchSpec:
    """What one resource's list endpoint accepts. Columns are ``(sql expression, kind)``."""

    def __init__(self, table: str, id_column: str, id_kind: str, exact: dict[str, tuple[str, Any]],
                 ranges: dict[str, tuple[str, str]], sorts: dict[str, str], default_limit: int,
                 max_limit: int) -> None:
        self.table, self.id_column, self.id_kind = table, id_column, id_kind
        self.exact, self.ranges, self.sorts = exact, ranges, sorts
        self.default_limit, self.max_limit = default_limit, max_limit


def _convert(param: str, raw: Any, kind: str) -> Any:
    try:
        if kind == "int":
            return int(raw)
        if kind == "ts":
            return fmt_ts(parse_ts(raw))
        if kind == "bool":
            if raw.lower() not in {"true", "false"}:
                raise ValueError(raw)
            return raw.lower() == "true"
        return str(raw)
    except (ValueError, TypeError, OverflowError):
        expected = {"int": "INTEGER_EXPECTED", "ts": "INVALID_DATE_TIME_SYNTAX"}.get(kind, "INVALID_VALUE")
        raise ValidationError.field(param, expected, f"Invalid value {raw!r}") from None


def build_search(spec: SearchSpec, params: Params, extra_where: Sequence[str] = (),
                 extra_args: Sequence[Any] = ()) -> tuple[str, list[Any], int]:
    """SQL for a search request: ``(sql, args, limit)``; fetch ``limit + 1`` rows to know has_more."""
    where, args = list(extra_where), list(extra_args)
    for name, raw in params.items():
        if name in ("sort", "limit") or raw is None:
            continue
        if name in spec.exact:
            expr, kind = spec.exact[name]
            if kind == "list":
                values = [v for v in str(raw).split(",") if v]
                if not values:
                    raise ValidationError.field(name, "VALUE_REQUIRED", "Empty value")
                where.append(f"{expr} IN ({','.join('?' * len(values))})")
                args += values
            elif callable(kind):
                clause, clause_args = kind(raw)
                where.append(clause)
                args += clause_args
            else:
                where.append(f"{expr} = ?")
                args.append(_convert(name, raw, kind))
            continue
        field, _, op = name.rpartition("_")
        if field in spec.ranges and op in {"gt", "gte", "lt", "lte"}:
            expr, kind = spec.ranges[field]
            sql_op = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            # A null time never satisfies a range (toloka-api.md 0.6).
            where.append(f"({expr} IS NOT NULL AND {expr} {sql_op} ?)")
            args.append(_convert(name, raw, kind))
            continue
        # Unknown parameters are ignored, like the real API ignores unknown query keys.
    order = []
    sort = params.get("sort")
    if sort:
        for key in str(sort).split(","):
            key = key.strip()
            desc = key.startswith("-")
            field = key.lstrip("-+")
            if field not in spec.sorts:
                raise ValidationError.field("sort", "VALUE_NOT_ALLOWED",
                                            f"Cannot sort by {field!r}; allowed: {sorted(spec.sorts)}")
            expr = spec.sorts[field]
            # SQLite puts NULLs first ascending and last descending, like null-as-'' (toloka-kit's mock)
            order.append(f"{expr} {'DESC' if desc else 'ASC'}")
    order.append(f"{spec.id_column} ASC")
    limit = spec.default_limit
    if params.get("limit") not in (None, ""):
        limit = _convert("limit", params["limit"], "int")
        if limit < 1:
            raise ValidationError.field("limit", "VALUE_LESS_THAN_MIN", "limit must be at least 1", [1])
        if limit > spec.max_limit:
            raise ValidationError.field("limit", "VALUE_GREATER_THAN_MAX",
                                        f"limit must be at most {spec.max_limit}", [spec.max_limit])
    sql = f"SELECT * FROM {spec.table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY " + ", ".join(order) + " LIMIT ?"
    args.append(limit + 1)
    return sql, args, limit


def _id_ranges(col: str = "id", kind: str = "int", created: str = "created") -> dict[str, tuple[str, str]]:
    return {"id": (col, kind), "created": (created, "ts")}


PROJECTS = SearchSpec("projects", "id", "int", {"status": ("status", "str")}, _id_ranges(),
                      {"id": "id", "created": "created", "public_name": "json_extract(doc, '$.public_name')",
                       "private_comment": "json_extract(doc, '$.private_comment')"}, 20, 300)
POOLS = SearchSpec("pools", "id", "int", {"status": ("status", "str"), "project_id": ("project_id", "int")},
                   {**_id_ranges(), "last_started": ("last_started", "ts")},
                   {"id": "id", "created": "created", "last_started": "last_started"}, 20, 300)
SKILLS = SearchSpec("skills", "id", "int", {"name": ("name", "str")}, _id_ranges(),
                    {"id": "id", "created": "created"}, 20, 100)
TASKS = SearchSpec("tasks", "id", "str", {"pool_id": ("pool_id", "int"), "overlap": ("overlap", "int")},
                   {"id": ("id", "str"), "created": ("created", "ts"), "overlap": ("overlap", "int")},
                   {"id": "id", "created": "created"}, 50, 100_000)
ASSIGNMENTS = SearchSpec(
    "assignments", "id", "str",
    {"status": ("status", "list"), "pool_id": ("pool_id", "int"), "task_suite_id": ("task_suite_id", "str"),
     "user_id": ("user_id", "str"),
     "task_id": ("", lambda raw: ("seq IN (SELECT at.assignment_seq FROM assignment_tasks at JOIN tasks t "
                                  "ON t.seq = at.task_seq WHERE t.id = ?)", [str(raw)]))},
    {"id": ("id", "str"), **{f: (f, "ts") for f in ASSIGNMENT_TIME_FIELDS}},
    {"id": "id", **{f: f for f in ASSIGNMENT_TIME_FIELDS}}, 50, 100_000)
USER_SKILLS = SearchSpec("user_skills", "id", "int", {"user_id": ("user_id", "str"), "skill_id": ("skill_id", "int")},
                         {**_id_ranges(), "modified": ("modified", "ts")},
                         {"id": "id", "created": "created", "modified": "modified"}, 50, 1000)
RESTRICTIONS = SearchSpec("restrictions", "id", "int",
                          {"scope": ("scope", "str"), "user_id": ("user_id", "str"),
                           "project_id": ("project_id", "int"), "pool_id": ("pool_id", "int")},
                          _id_ranges(), {"id": "id", "created": "created"}, 50, 500)
OPERATIONS = SearchSpec("operations", "seq", "int", {"type": ("type", "str"), "status": ("status", "str")},
                        {"submitted": ("submitted", "ts")}, {"id": "seq", "submitted": "submitted"}, 50, 500)


def _int_or_missing(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DoesNotExist(f"{what} {value!r} does not exist") from None


class CoreMixin:
    """Connection, transactions, meta/counters, time and the requester (``Backend.__init__``)."""

    if TYPE_CHECKING:
        # The mixins call each other's methods (pools' row helpers from work, tasks, trainings...). Each
        # method one mixin calls and another defines is declared here, for the type checker only: the
        # Backend's real method (found first in its MRO) must keep this signature.
        def _accept(self, row: sqlite3.Row, comment: str | None = None, at: str | None = None) -> bool: ...
        def _active_project(self, body: Any) -> sqlite3.Row: ...
        def _add_restriction(self, user_id: str, scope: str, *, project_id: ObjectId | None = None,
                             pool_id: ObjectId | None = None, will_expire: dt.datetime | None = None,
                             comment: str | None = None) -> int | None: ...
        def _archive_row(self, row: sqlite3.Row, kind: str, parameters: Doc,
                         code: str = "INAPPROPRIATE_STATUS") -> Doc | None: ...
        def _assignment_row(self, assignment_id: str) -> sqlite3.Row: ...
        def _batch_pool(self, item: Any, pools: dict[Any, Any], kind: str) -> tuple[Any, Doc | None]: ...
        def _check_new_operation(self, op_id: str) -> None: ...
        def _check_openable(self, row: sqlite3.Row, code: str = "INAPPROPRIATE_STATUS") -> None: ...
        def _clone_row(self, row: sqlite3.Row, kind: str, parameters: Doc, new_key: str) -> dict: ...
        def _close_pool(self, pool_id: ObjectId, reason: str) -> None: ...
        def _close_row(self, row: sqlite3.Row, reason: str, kind: str, parameters: Doc,
                       code: str = "INAPPROPRIATE_STATUS") -> Doc | None: ...
        def _finished_operation(self, kind: str, parameters: Doc, details: Doc | None = None,
                                op_id: str | None = None) -> dict: ...
        def _has_task_suites(self, pool_id: ObjectId) -> bool: ...
        def _mark_open(self, row: sqlite3.Row, doc: Doc) -> None: ...
        def _note_readers(self, params: Params, now: dt.datetime | None = None) -> None: ...
        def _open_pools_of(self, pool_ids: Iterable[ObjectId], log: list[Any] | None = None) -> None: ...
        def _open_row(self, row: sqlite3.Row, kind: str, parameters: Doc) -> Doc | None: ...
        def _pool_doc(self, row: sqlite3.Row) -> dict: ...
        def _pool_row(self, pool_id: Any) -> sqlite3.Row: ...
        def _project_row(self, project_id: Any) -> sqlite3.Row: ...
        def _quality_control(self, pool_id: ObjectId, user_id: str, event: str, asg_row: sqlite3.Row) -> None: ...
        def _reject(self, row: sqlite3.Row, comment: str | None) -> None: ...
        @staticmethod
        def _render_pool(row: sqlite3.Row) -> dict: ...
        @staticmethod
        def _render_task(row: sqlite3.Row) -> dict: ...
        def _replace_doc(self, row: sqlite3.Row, doc: Doc) -> None: ...
        def _replacement_body(self, row: sqlite3.Row, body: Any, what: str) -> dict: ...
        def _resume_operations(self) -> None: ...
        def _set_user_skill(self, skill_id: ObjectId, user_id: str, value: Any) -> int: ...
        def _skill_row(self, skill_id: Any) -> sqlite3.Row: ...
        def _status_read_ends_first_reader_wait(self, pool_row: sqlite3.Row, now: dt.datetime) -> bool: ...
        def _task_row(self, task_id: str) -> sqlite3.Row: ...
        def create_skill(self, body: Any) -> dict: ...
        def pool_task_spec(self, pool_row: sqlite3.Row) -> dict: ...

        # Methods that trainings, task suites and attachments extend through super(): declared here so
        # that every override is checked against one signature (the real ones are in pools, tasks, work).
        def _validate_pool(self, body: Any) -> Doc: ...
        def update_pool(self, pool_id: ObjectId, body: Any) -> Doc: ...
        def patch_pool(self, pool_id: ObjectId, body: Any) -> Doc: ...
        def clone_pool(self, pool_id: ObjectId) -> Doc: ...
        def open_pool(self, pool_id: ObjectId) -> Doc | None: ...
        def close_pool(self, pool_id: ObjectId, reason: str = "MANUAL") -> Doc | None: ...
        def archive_pool(self, pool_id: ObjectId) -> Doc | None: ...
        def _open_pool(self, row: sqlite3.Row) -> bool: ...
        def find_pools(self, params: Params) -> Doc: ...
        def _prepare_task(self, item: Any, pools: dict[Any, Any],
                          allow_defaults: bool) -> tuple[Any, Doc | None]: ...
        def patch_task(self, task_id: str, body: Any, *, overlap_or_min: bool = False) -> Doc: ...
        def open_pools(self) -> list[tuple[sqlite3.Row, Doc]]: ...
        def available_tasks(self, pool_id: ObjectId, user_id: str, limit: int | None, *,
                            golden: bool = False) -> list[tuple[int, Doc]]: ...
        def suite_tasks(self, pool_row: sqlite3.Row, pool_doc: Doc, user_id: str) -> list[tuple[int, Doc]]: ...
        def issue_suite(self, pool_row: sqlite3.Row, pool_doc: Doc, user_id: str,
                        tasks: list[tuple[int, Doc]]) -> str: ...
        def can_afford(self, pool_doc: Doc, reserved: Decimal | None = None) -> bool: ...
        def finish_due(self, now: dt.datetime) -> int: ...

    def __init__(self, state_dir: str | Path, *, balance: Decimal | float | str | None = None, speed: float = 60.0,
                 reader_hold_seconds: float = 600.0, first_reader_seconds: float = 90.0,
                 clock: Clock = utcnow) -> None:
        """``clock``: where :meth:`now` reads the time (tests pass a :class:`~..db.ManualClock` and step it).
        ``reader_hold_seconds``: at most this many real seconds a completed pool stays open for its
        streaming readers (``models/readers.py``); 0 closes completed pools at once, as Toloka does.
        ``first_reader_seconds``: how long a completed pool that nobody streams yet waits for a first
        reader (within the same cap); 0 = not at all."""
        if float(reader_hold_seconds) < 0:
            raise ValueError("reader_hold_seconds must be >= 0")
        if float(first_reader_seconds) < 0:
            raise ValueError("first_reader_seconds must be >= 0")
        self.reader_hold_seconds = float(reader_hold_seconds)
        self.first_reader_seconds = float(first_reader_seconds)
        self.state_dir = state_dir
        self.clock = clock
        self.conn = db.connect(state_dir)
        self.lock = threading.RLock()
        self._depth = 0
        self.speed = float(speed)
        self.base_url = "http://127.0.0.1"
        self.changed = threading.Event()  # wakes the scheduler early after a state change
        # assignment seq -> (what it shows, its JSON); see find_assignments
        self._fragments: dict[int, tuple[Any, str]] = {}
        self.workforce_size = 0  # the crowd's size, set by the scheduler (analytics' active_workers)
        with self.transaction():
            if self._meta("balance") is None:
                self._set_meta("balance", str(Decimal(str(balance)) if balance is not None else DEFAULT_BALANCE))
            elif balance is not None and self._meta("balance_flag") != str(balance):
                # An explicit --balance on restart is applied once per distinct value.
                self._set_meta("balance", str(Decimal(str(balance))))
            if balance is not None:
                self._set_meta("balance_flag", str(balance))
        self._resume_operations()

    # ---- plumbing ---------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            outer = self._depth == 0
            if outer:
                self.conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self.conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self.conn.execute("ROLLBACK")
                raise
            else:
                self._depth -= 1
                if outer:
                    self.conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def _meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                          "excluded.value", (key, value))

    def _next(self, name: str, count: int = 1) -> int:
        """Reserve ``count`` consecutive numbers of counter ``name``; returns the first."""
        row = self.conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        first = (row[0] if row else 0) + 1
        self.conn.execute("INSERT INTO counters(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET "
                          "value = excluded.value", (name, first + count - 1))
        return first

    def _search(self, spec: SearchSpec, params: Params, render: Callable[[list[sqlite3.Row]], Any],
                extra_where: Sequence[str] = (), extra_args: Sequence[Any] = ()) -> Doc:
        sql, args, limit = build_search(spec, params, extra_where, extra_args)
        with self.transaction():
            rows = self.conn.execute(sql, args).fetchall()
            has_more = len(rows) > limit
            rows = rows[:limit]
            return {"items": render(rows), "has_more": has_more}

    def now(self) -> dt.datetime:
        """The backend's time (naive UTC): every timestamp and due time comes from here."""
        return self.clock()

    def sim_to_real(self, sim_seconds: float) -> dt.timedelta:
        return dt.timedelta(seconds=float(sim_seconds) / max(self.speed, 1e-9))

    def _notify(self) -> None:
        self.changed.set()

    # ---- requester --------------------------------------------------------------------------------

    def balance(self) -> Decimal:
        return Decimal(self._meta("balance"))

    def get_requester(self) -> Doc:
        with self.transaction():
            return {"id": OWNER["id"], "balance": _num(self.balance()), "public_name": {"EN": "Local requester"},
                    "company": {"id": OWNER["company_id"], "superintendent_id": OWNER["id"]}}

    def set_balance(self, value: Decimal | float | str) -> Doc:
        with self.transaction():
            self._set_meta("balance", str(Decimal(str(value))))
            self._notify()
            return self.get_requester()

    def reserved_funds(self) -> Decimal:
        """Cost of work issued or submitted but not yet paid for."""
        rows = self.conn.execute("SELECT cost FROM assignments WHERE paid = 0 AND status IN ('ACTIVE', 'SUBMITTED')")
        return sum((Decimal(r[0]) for r in rows), Decimal(0))

