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
import threading
from contextlib import contextmanager
from decimal import Decimal, ROUND_HALF_UP
from pathlib import Path

from crowdboxes.local_toloka import db
from crowdboxes.local_toloka.db import Clock, fmt_ts, parse_ts, utcnow
from crowdboxes.local_toloka.exceptions import DoesNotExist, ValidationError


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


def _num(value):
    """Decimal -> int or float for JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


@functools.lru_cache(maxsize=65536)
def _loads_cached(text: str):
    return json.loads(text)


def _doc(text: str | None) -> dict:
    """Parse a stored JSON object; memoised because listings re-read the same task docs over and over.
    Returns a shallow copy: renderers only set top-level keys."""
    return dict(_loads_cached(text or "{}"))


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_num)


def correctness_weight(known_solution: dict) -> float:
    """A known solution's ``correctness_weight``, 1 when unset."""
    weight = known_solution.get("correctness_weight")
    return float(1 if weight is None else weight)


def solution_weight(answer: dict, known_solutions) -> float:
    """Score of one answer: the best ``correctness_weight`` among the known solutions it matches (every
    field a solution lists equal; fields left out are not checked), 0 if none. Scores control tasks
    (golden statistics) and training tasks."""
    answer = answer or {}
    weights = [correctness_weight(ks) for ks in known_solutions or []
               if all(answer.get(k) == v for k, v in (ks.get("output_values") or {}).items())]
    return max(weights, default=0.0)


def offered_to(rows, user_id):
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

    def __init__(self, table, id_column, id_kind, exact, ranges, sorts, default_limit, max_limit):
        self.table, self.id_column, self.id_kind = table, id_column, id_kind
        self.exact, self.ranges, self.sorts = exact, ranges, sorts
        self.default_limit, self.max_limit = default_limit, max_limit


def _convert(param: str, raw: str, kind: str):
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


def build_search(spec: SearchSpec, params: dict, extra_where=(), extra_args=()):
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


def _id_ranges(col="id", kind="int", created="created"):
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


def _int_or_missing(value, what):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DoesNotExist(f"{what} {value!r} does not exist") from None


class CoreMixin:
    """Connection, transactions, meta/counters, time and the requester (``Backend.__init__``)."""

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
        self._fragments = {}  # assignment seq -> (what it shows, its JSON); see find_assignments
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
    def transaction(self):
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

    def close(self):
        with self.lock:
            self.conn.close()

    def _meta(self, key):
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key, value):
        self.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                          "excluded.value", (key, value))

    def _next(self, name: str, count: int = 1) -> int:
        """Reserve ``count`` consecutive numbers of counter ``name``; returns the first."""
        row = self.conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        first = (row[0] if row else 0) + 1
        self.conn.execute("INSERT INTO counters(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET "
                          "value = excluded.value", (name, first + count - 1))
        return first

    def _search(self, spec: SearchSpec, params: dict, render, extra_where=(), extra_args=()):
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

    def _notify(self):
        self.changed.set()

    # ---- requester --------------------------------------------------------------------------------

    def balance(self) -> Decimal:
        return Decimal(self._meta("balance"))

    def get_requester(self) -> dict:
        with self.transaction():
            return {"id": OWNER["id"], "balance": _num(self.balance()), "public_name": {"EN": "Local requester"},
                    "company": {"id": OWNER["company_id"], "superintendent_id": OWNER["id"]}}

    def set_balance(self, value) -> dict:
        with self.transaction():
            self._set_meta("balance", str(Decimal(str(value))))
            self._notify()
            return self.get_requester()

    def reserved_funds(self) -> Decimal:
        """Cost of work issued or submitted but not yet paid for."""
        rows = self.conn.execute("SELECT cost FROM assignments WHERE paid = 0 AND status IN ('ACTIVE', 'SUBMITTED')")
        return sum((Decimal(r[0]) for r in rows), Decimal(0))

