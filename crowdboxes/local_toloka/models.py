"""Backend of the local Toloka: state, rules and status transitions, callable without HTTP.

Everything lives in SQLite (:mod:`.db`); every public method runs in one transaction under one
lock, so concurrent HTTP threads and the crowd's scheduler thread see consistent state and a
crash loses at most the call in flight. Objects go in and out as the JSON dicts of the Toloka API
(toloka-api.md section 6); errors are :mod:`.exceptions` classes carrying Toloka's codes.

Money: accepting an assignment charges ``reward + max(0.3 * reward, 0.005)`` (Toloka's fee) to
the requester balance. Simulated durations (task work, review periods, close delays, restriction
lengths) are divided by ``speed`` (simulated seconds per real second); timestamps are real UTC.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import random
import re
import threading
import uuid
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from crowdboxes.local_toloka import db
from crowdboxes.local_toloka.db import fmt_ts, out_ts, parse_ts, utcnow
from crowdboxes.local_toloka.exceptions import (DoesNotExist, IncorrectAction, TolokaError, ValidationError,
                                                field_error, inappropriate_status)

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


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------

def _require_object(body, what="body"):
    if not isinstance(body, dict):
        raise ValidationError.field(what, "OBJECT_EXPECTED", "A JSON object is expected")
    return body


def _decimal(body, key, *, required=True, minimum=None):
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError.field(key, "VALUE_REQUIRED", "Value must be present and not equal to null")
        return None
    if isinstance(value, bool):
        raise ValidationError.field(key, "FLOAT_EXPECTED", "A number is expected")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError.field(key, "FLOAT_EXPECTED", "A number is expected") from None
    if minimum is not None and number < minimum:
        raise ValidationError.field(key, "VALUE_LESS_THAN_MIN", f"Value must be at least {minimum}", [str(minimum)])
    return number


def _integer(body, key, *, required=True, minimum=None, maximum=None, path=None):
    path = path or key
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError.field(path, "VALUE_REQUIRED", "Value must be present and not equal to null")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or int(value) != value:
        raise ValidationError.field(path, "INTEGER_EXPECTED", "An integer is expected")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValidationError.field(path, "VALUE_LESS_THAN_MIN", f"Value must be at least {minimum}", [minimum])
    if maximum is not None and value > maximum:
        raise ValidationError.field(path, "VALUE_GREATER_THAN_MAX", f"Value must be at most {maximum}", [maximum])
    return value


def _string(body, key, *, required=True):
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError.field(key, "VALUE_REQUIRED", "Value must be present and not equal to null")
        return None
    if not isinstance(value, str):
        raise ValidationError.field(key, "STRING_EXPECTED", "A string is expected")
    return value


def _timestamp(body, key, *, required=True):
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError.field(key, "VALUE_REQUIRED", "Value must be present and not equal to null")
        return None
    try:
        return parse_ts(value)
    except (ValueError, TypeError):
        raise ValidationError.field(key, "INVALID_DATE_TIME_SYNTAX", f"Invalid date-time {value!r}") from None


def validate_value(spec: dict, value) -> dict | None:
    """One input/output value against its FieldSpec: None if fine, else ``{code, message}``."""
    kind = str(spec.get("type", "")).lower()
    if kind.startswith("array_"):
        if not isinstance(value, list):
            return field_error("ARRAY_EXPECTED", "An array is expected")
        for item in value:
            problem = validate_value({**spec, "type": kind[len("array_"):]}, item)
            if problem:
                return problem
        return None
    if kind == "url":
        if not isinstance(value, str) or not URL_RE.match(value):
            return field_error("INVALID_URL_SYNTAX", f"Invalid URL {str(value)[:80]!r}")
    elif kind in {"string", "file"}:
        if not isinstance(value, str):
            return field_error("STRING_EXPECTED", "A string is expected")
        allowed = spec.get("allowed_values")
        if allowed and value not in allowed:
            return field_error("VALUE_NOT_ALLOWED", f"Value {value!r} is not one of {allowed}", allowed)
        if spec.get("min_length") is not None and len(value) < spec["min_length"]:
            return field_error("STRING_LENGTH_LESS_THAN_MIN", "String is too short", [spec["min_length"]])
        if spec.get("max_length") is not None and len(value) > spec["max_length"]:
            return field_error("STRING_LENGTH_GREATER_THAN_MAX", "String is too long", [spec["max_length"]])
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or int(value) != value:
            return field_error("INTEGER_EXPECTED", "An integer is expected")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return field_error("FLOAT_EXPECTED", "A number is expected")
    elif kind == "boolean":
        if not isinstance(value, bool):
            return field_error("BOOLEAN_EXPECTED", "A boolean is expected")
    elif kind == "coordinates":
        if not isinstance(value, str) or not COORD_RE.match(value):
            return field_error("INVALID_COORDINATES_SYNTAX", "Coordinates 'lat,lon' are expected")
    if kind in {"integer", "float"}:
        if spec.get("min_value") is not None and value < spec["min_value"]:
            return field_error("VALUE_LESS_THAN_MIN", "Value is too small", [spec["min_value"]])
        if spec.get("max_value") is not None and value > spec["max_value"]:
            return field_error("VALUE_GREATER_THAN_MAX", "Value is too large", [spec["max_value"]])
    return None


def validate_input_values(input_spec: dict, values, prefix="input_values") -> dict:
    """Per-field errors keyed ``input_values.<field>`` (empty dict when valid)."""
    if not isinstance(values, dict):
        return {prefix: field_error("OBJECT_EXPECTED", "input_values must be an object")}
    errors = {}
    for name, spec in input_spec.items():
        value = values.get(name)
        if value is None:
            if spec.get("required", True):
                errors[f"{prefix}.{name}"] = field_error("VALUE_REQUIRED",
                                                         "Value must be present and not equal to null")
            continue
        problem = validate_value(spec, value)
        if problem:
            errors[f"{prefix}.{name}"] = problem
    for name in values:
        if name not in input_spec:
            errors[f"{prefix}.{name}"] = field_error("VALUE_NOT_ALLOWED", f"Field {name!r} is not in the input spec")
    return errors


def project_difference(old: dict, new: dict) -> str:
    """Toloka's level of a project edit: ``EQUAL``, ``NON_BREAKING_CHANGE`` or ``BREAKING_CHANGE``
    (the data specification changed, so existing pools stay on the old version)."""
    strip = lambda d: {k: v for k, v in d.items() if k not in {"id", "status", "created", "owner"}}  # noqa: E731
    if strip(old) == strip(new):
        return "EQUAL"
    old_spec, new_spec = old.get("task_spec") or {}, new.get("task_spec") or {}
    if any(old_spec.get(part) != new_spec.get(part) for part in ("input_spec", "output_spec")) \
            or old.get("assignments_issuing_type", "AUTOMATED") != new.get("assignments_issuing_type", "AUTOMATED"):
        return "BREAKING_CHANGE"
    return "NON_BREAKING_CHANGE"


def _compare(left, operator: str, right) -> bool:
    """A QC condition or filter comparison; None only equals None."""
    op = str(operator).upper()
    if op == "EQ":
        return left == right
    if op == "NE":
        return left != right
    if left is None or right is None:
        return False
    try:
        left_n, right_n = float(left), float(right)
    except (TypeError, ValueError):
        left_n, right_n = str(left), str(right)
    return {"GT": left_n > right_n, "GTE": left_n >= right_n, "LT": left_n < right_n,
            "LTE": left_n <= right_n}.get(op, False)


# --------------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------------

class Backend:
    """The whole local Toloka state. Thread safe: one RLock, one SQLite connection."""

    def __init__(self, state_dir, *, balance: Decimal | float | str | None = None, speed: float = 60.0):
        self.state_dir = state_dir
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
        return utcnow()

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

    # ---- projects ---------------------------------------------------------------------------------

    def _project_row(self, project_id):
        try:
            pid = int(project_id)
        except (TypeError, ValueError):
            raise DoesNotExist(f"Project {project_id!r} does not exist") from None
        row = self.conn.execute("SELECT * FROM projects WHERE id = ?", (pid,)).fetchone()
        if row is None:
            raise DoesNotExist(f"Project {project_id} does not exist")
        return row

    @staticmethod
    def _render_project(row) -> dict:
        doc = json.loads(row["doc"])
        doc.update(id=str(row["id"]), status=row["status"], created=out_ts(row["created"]), owner=OWNER)
        return doc

    def _validate_project(self, body):
        _require_object(body)
        _string(body, "public_name")
        spec = body.get("task_spec")
        if not isinstance(spec, dict):
            raise ValidationError.field("task_spec", "VALUE_REQUIRED", "Value must be present and not equal to null")
        for part in ("input_spec", "output_spec"):
            fields = spec.get(part)
            if not isinstance(fields, dict):
                raise ValidationError.field(f"task_spec.{part}", "VALUE_REQUIRED", "An object of field specs is required")
            for name, field in fields.items():
                if not isinstance(field, dict) or str(field.get("type", "")).lower() not in FIELD_TYPES:
                    raise ValidationError.field(f"task_spec.{part}.{name}.type", "UNKNOWN_ENUM_VALUE",
                                                f"Unknown field type {field.get('type') if isinstance(field, dict) else field!r}")
        view = spec.get("view_spec")
        if not isinstance(view, dict) or "type" not in view:
            raise ValidationError.field("task_spec.view_spec", "VALUE_REQUIRED", "view_spec with a type is required")
        issuing = body.get("assignments_issuing_type", "AUTOMATED")
        if issuing not in {"AUTOMATED", "MAP_SELECTOR"}:
            raise ValidationError.field("assignments_issuing_type", "UNKNOWN_ENUM_VALUE", f"Unknown value {issuing!r}")

    def create_project(self, body) -> dict:
        self._validate_project(body)
        with self.transaction():
            doc = {k: v for k, v in body.items() if k not in {"id", "status", "created", "owner"}}
            doc.setdefault("assignments_issuing_type", "AUTOMATED")
            now = fmt_ts(self.now())
            cur = self.conn.execute("INSERT INTO projects(status, created, doc) VALUES('ACTIVE', ?, ?)",
                                    (now, _dumps(doc)))
            return self._render_project(self._project_row(cur.lastrowid))

    def update_project(self, project_id, body) -> dict:
        """PUT: replace the project (all fields; ``id``/``status``/``created``/``owner`` are read-only).

        A change of the data specification (``input_spec``, ``output_spec``) is a breaking change in
        Toloka: every pool that exists at that moment keeps the spec it had (tasks uploaded to it are
        still checked against it, its results list its fields), later edits do not reach it, and only
        new pools get the new spec (guide "Input and output data"; toloka-kit
        ``check_update_project_for_major_version_change``). Other edits reach every pool at once.
        """
        self._validate_project(body)
        with self.transaction():
            row = self._project_row(project_id)
            if row["status"] == "ARCHIVED":
                raise inappropriate_status(["ACTIVE"], "PROJECT_INAPPROPRIATE_STATUS")
            old = json.loads(row["doc"])
            doc = {k: v for k, v in body.items() if k not in {"id", "status", "created", "owner"}}
            doc.setdefault("assignments_issuing_type", "AUTOMATED")
            if project_difference(old, doc) == "BREAKING_CHANGE":
                for (pool_id,) in self.conn.execute("SELECT id FROM pools WHERE project_id = ?", (row["id"],)):
                    if self._meta(f"pool_task_spec:{pool_id}") is None:
                        self._set_meta(f"pool_task_spec:{pool_id}", _dumps(old["task_spec"]))
            self.conn.execute("UPDATE projects SET doc = ? WHERE id = ?", (_dumps(doc), row["id"]))
            return self._render_project(self._project_row(row["id"]))

    def check_project_update(self, project_id, body) -> dict:
        """``POST /staging/projects/{id}/check``: what ``update_project`` would be, without applying it."""
        self._validate_project(body)
        with self.transaction():
            old = json.loads(self._project_row(project_id)["doc"])
            doc = {k: v for k, v in body.items() if k not in {"id", "status", "created", "owner"}}
            doc.setdefault("assignments_issuing_type", "AUTOMATED")
            return {"differenceLevel": project_difference(old, doc)}

    def pool_task_spec(self, pool_row) -> dict:
        """The task spec a pool works with: its project's, or the one it was pinned to by a breaking change."""
        pinned = self._meta(f"pool_task_spec:{pool_row['id']}")
        if pinned is not None:
            return json.loads(pinned)
        return json.loads(self._project_row(pool_row["project_id"])["doc"])["task_spec"]

    def get_project(self, project_id) -> dict:
        with self.transaction():
            return self._render_project(self._project_row(project_id))

    def find_projects(self, params) -> dict:
        return self._search(PROJECTS, params, lambda rows: [self._render_project(r) for r in rows])

    def archive_project(self, project_id) -> dict:
        with self.transaction():
            row = self._project_row(project_id)
            if row["status"] == "ACTIVE":
                open_pools = self.conn.execute("SELECT COUNT(*) FROM pools WHERE project_id = ? AND status != 'ARCHIVED'",
                                               (row["id"],)).fetchone()[0]
                if open_pools:
                    raise IncorrectAction("Project has pools that are not archived", {"pools": open_pools},
                                          code="UNARCHIVED_POOLS_CONFLICT")
                self.conn.execute("UPDATE projects SET status = 'ARCHIVED' WHERE id = ?", (row["id"],))
            return self._finished_operation("PROJECT.ARCHIVE", {"project_id": str(row["id"])}, {})

    # ---- skills -----------------------------------------------------------------------------------

    @staticmethod
    def _render_skill(row) -> dict:
        doc = json.loads(row["doc"])
        doc.update(id=str(row["id"]), name=row["name"], created=out_ts(row["created"]), owner=OWNER)
        return doc

    def create_skill(self, body) -> dict:
        _require_object(body)
        name = _string(body, "name")
        with self.transaction():
            doc = {k: v for k, v in body.items() if k not in {"id", "created", "owner"}}
            doc.setdefault("hidden", True)
            doc.setdefault("training", False)
            doc.setdefault("deprecated", False)
            doc.setdefault("global", False)
            cur = self.conn.execute("INSERT INTO skills(name, created, doc) VALUES(?, ?, ?)",
                                    (name, fmt_ts(self.now()), _dumps(doc)))
            return self._render_skill(self._skill_row(cur.lastrowid))

    def _skill_row(self, skill_id):
        try:
            sid = int(skill_id)
        except (TypeError, ValueError):
            raise DoesNotExist(f"Skill {skill_id!r} does not exist") from None
        row = self.conn.execute("SELECT * FROM skills WHERE id = ?", (sid,)).fetchone()
        if row is None:
            raise DoesNotExist(f"Skill {skill_id} does not exist")
        return row

    def update_skill(self, skill_id, body) -> dict:
        """PUT: "changes the name, comment, and access to the skill" (OpenAPI); other fields keep their values."""
        _require_object(body)
        name = _string(body, "name")
        with self.transaction():
            row = self._skill_row(skill_id)
            doc = json.loads(row["doc"])
            for key in SKILL_EDITABLE:
                if body.get(key) is None:
                    doc.pop(key, None)
                else:
                    doc[key] = body[key]
            doc["hidden"] = bool(body.get("hidden", True))
            doc["name"] = name
            self.conn.execute("UPDATE skills SET name = ?, doc = ? WHERE id = ?", (name, _dumps(doc), row["id"]))
            return self._render_skill(self._skill_row(row["id"]))

    def get_skill(self, skill_id) -> dict:
        with self.transaction():
            return self._render_skill(self._skill_row(skill_id))

    def find_skills(self, params) -> dict:
        return self._search(SKILLS, params, lambda rows: [self._render_skill(r) for r in rows])

    # ---- pools ------------------------------------------------------------------------------------

    def _pool_row(self, pool_id):
        try:
            pid = int(pool_id)
        except (TypeError, ValueError):
            raise DoesNotExist(f"Pool {pool_id!r} does not exist") from None
        row = self.conn.execute("SELECT * FROM pools WHERE id = ?", (pid,)).fetchone()
        if row is None:
            raise DoesNotExist(f"Pool {pool_id} does not exist")
        return row

    @staticmethod
    def _render_pool(row) -> dict:
        doc = json.loads(row["doc"])
        doc.update(id=str(row["id"]), project_id=str(row["project_id"]), status=row["status"],
                   created=out_ts(row["created"]), owner=OWNER)
        if row["last_started"]:
            doc["last_started"] = out_ts(row["last_started"])
        return doc

    def _validate_pool(self, body) -> dict:
        _require_object(body)
        doc = {k: v for k, v in body.items()
               if k not in {"id", "status", "created", "owner", "last_started", "last_stopped", "last_close_reason", "type"}}
        if body.get("type") == "TRAINING":
            raise ValidationError.field("type", "VALUE_NOT_ALLOWED", "Training pools are not supported")
        if body.get("project_id") is None:
            raise ValidationError.field("project_id", "VALUE_REQUIRED", "Value must be present and not equal to null")
        try:
            project = self._project_row(body["project_id"])
        except DoesNotExist:
            raise ValidationError.field("project_id", "ENTITY_DOES_NOT_EXIST",
                                        f"Project {body['project_id']} does not exist") from None
        if project["status"] != "ACTIVE":
            raise inappropriate_status(["ACTIVE"], "PROJECT_INAPPROPRIATE_STATUS")
        doc["project_id"] = str(project["id"])
        _string(body, "private_name")
        _decimal(body, "reward_per_assignment", minimum=MIN_REWARD)
        _integer(body, "assignment_max_duration_seconds", minimum=60)
        _timestamp(body, "will_expire")
        defaults = body.get("defaults")
        if not isinstance(defaults, dict):
            raise ValidationError.field("defaults", "VALUE_REQUIRED", "Value must be present and not equal to null")
        _integer(defaults, "default_overlap_for_new_task_suites", minimum=1,
                 path="defaults.default_overlap_for_new_task_suites")
        _integer(defaults, "default_overlap_for_new_tasks", required=False, minimum=1,
                 path="defaults.default_overlap_for_new_tasks")
        _integer(body, "auto_accept_period_day", required=False, minimum=1, maximum=21)
        _integer(body, "auto_close_after_complete_delay_seconds", required=False, minimum=0, maximum=259200)
        _integer(body, "priority", required=False, minimum=0, maximum=100)
        mixer = body.get("mixer_config")
        if mixer is not None:
            if not isinstance(mixer, dict):
                raise ValidationError.field("mixer_config", "OBJECT_EXPECTED", "An object is expected")
            for key in ("real_tasks_count", "golden_tasks_count", "training_tasks_count"):
                _integer(mixer, key, minimum=0, path=f"mixer_config.{key}")
            if mixer["real_tasks_count"] + mixer["golden_tasks_count"] + mixer["training_tasks_count"] < 1:
                raise ValidationError.field("mixer_config.real_tasks_count", "VALUE_LESS_THAN_MIN",
                                            "A task suite needs at least one task", [1])
            for kind in ("real", "golden", "training"):
                _integer(mixer, f"min_{kind}_tasks_count", required=False, minimum=0,
                         maximum=mixer[f"{kind}_tasks_count"], path=f"mixer_config.min_{kind}_tasks_count")
        flt = body.get("filter")
        if flt is not None:
            self._check_filter(flt, "filter")
        qc = body.get("quality_control") or {"configs": []}
        if not isinstance(qc, dict) or not isinstance(qc.get("configs", []), list):
            raise ValidationError.field("quality_control.configs", "ARRAY_EXPECTED", "An array is expected")
        for i, cfg in enumerate(qc.get("configs", [])):
            collector = cfg.get("collector_config") if isinstance(cfg, dict) else None
            if not isinstance(collector, dict) or "type" not in collector:
                raise ValidationError.field(f"quality_control.configs[{i}].collector_config", "VALUE_REQUIRED",
                                            "collector_config with a type is required")
            collector.setdefault("uuid", str(uuid.uuid4()))
            for j, rule in enumerate(cfg.get("rules", [])):
                if not isinstance(rule, dict) or not isinstance(rule.get("action"), dict) \
                        or "type" not in rule["action"]:
                    raise ValidationError.field(f"quality_control.configs[{i}].rules[{j}].action", "VALUE_REQUIRED",
                                                "An action with a type is required")
        qc.setdefault("configs", [])
        doc["quality_control"] = qc
        doc.setdefault("auto_accept_solutions", True)
        doc.setdefault("auto_accept_period_day", 21)
        doc.setdefault("auto_close_after_complete_delay_seconds", 0)
        doc.setdefault("priority", 0)
        doc.setdefault("may_contain_adult_content", False)
        doc.setdefault("assignments_issuing_config", {"issue_task_suites_in_creation_order": False})
        doc.setdefault("speed_quality_balance", {"type": "TOP_PERCENTAGE_BY_QUALITY", "percent": 100})
        doc["type"] = "REGULAR"
        return doc

    def _check_filter(self, node, path):
        if not isinstance(node, dict):
            raise ValidationError.field(path, "OBJECT_EXPECTED", "A filter object is expected")
        if "and" in node or "or" in node:
            key = "and" if "and" in node else "or"
            if not isinstance(node[key], list):
                raise ValidationError.field(f"{path}.{key}", "ARRAY_EXPECTED", "An array is expected")
            for i, child in enumerate(node[key]):
                self._check_filter(child, f"{path}.{key}[{i}]")
            return
        for key in ("category", "key", "operator"):
            if key not in node:
                raise ValidationError.field(f"{path}.{key}", "VALUE_REQUIRED", "Filter condition needs " + key)

    def create_pool(self, body) -> dict:
        with self.transaction():
            doc = self._validate_pool(body)
            now = fmt_ts(self.now())
            project_id = int(doc.pop("project_id"))
            cur = self.conn.execute("INSERT INTO pools(project_id, status, created, doc) VALUES(?, 'CLOSED', ?, ?)",
                                    (project_id, now, _dumps(doc)))
            return self._render_pool(self._pool_row(cur.lastrowid))

    def get_pool(self, pool_id) -> dict:
        with self.transaction():
            return self._render_pool(self._pool_row(pool_id))

    def find_pools(self, params) -> dict:
        return self._search(POOLS, params, lambda rows: [self._render_pool(r) for r in rows])

    def update_pool(self, pool_id, body) -> dict:
        """PUT: replace the editable settings (not while archived)."""
        with self.transaction():
            row = self._pool_row(pool_id)
            if row["status"] == "ARCHIVED":
                raise inappropriate_status(["OPEN", "CLOSED"], "POOL_INAPPROPRIATE_STATUS")
            body = dict(_require_object(body))
            body.setdefault("project_id", str(row["project_id"]))
            if str(body["project_id"]) != str(row["project_id"]):
                raise ValidationError.field("project_id", "VALUE_NOT_ALLOWED", "A pool cannot move to another project")
            old = json.loads(row["doc"])
            doc = self._validate_pool(body)
            doc.pop("project_id")
            for keep in ("last_close_reason", "last_stopped"):
                if keep in old:
                    doc[keep] = old[keep]
            self.conn.execute("UPDATE pools SET doc = ? WHERE id = ?", (_dumps(doc), row["id"]))
            self._notify()
            return self._render_pool(self._pool_row(row["id"]))

    def patch_pool(self, pool_id, body) -> dict:
        """PATCH: only ``priority`` is patchable in the API."""
        with self.transaction():
            row = self._pool_row(pool_id)
            body = _require_object(body)
            priority = _integer(body, "priority", minimum=0, maximum=100)
            doc = json.loads(row["doc"])
            doc["priority"] = priority
            self.conn.execute("UPDATE pools SET doc = ? WHERE id = ?", (_dumps(doc), row["id"]))
            return self._render_pool(self._pool_row(row["id"]))

    def _pool_doc(self, row) -> dict:
        return json.loads(row["doc"])

    def _save_pool_doc(self, pool_id, doc):
        self.conn.execute("UPDATE pools SET doc = ? WHERE id = ?", (_dumps(doc), pool_id))

    def _open_pool(self, row):
        """Open a CLOSED pool (raises the API's errors); no-op when already open."""
        if row["status"] == "OPEN":
            return False
        if row["status"] != "CLOSED":
            raise inappropriate_status(["CLOSED"])
        project = self._project_row(row["project_id"])
        if project["status"] != "ACTIVE":
            raise inappropriate_status(["ACTIVE"], "PROJECT_INAPPROPRIATE_STATUS")
        doc = self._pool_doc(row)
        if not doc.get("mixer_config"):
            raise IncorrectAction("Pool has no mixer_config; tasks cannot be mixed into task suites",
                                  code="MIXER_CONFIG_REQUIRED")
        tasks = self.conn.execute("SELECT COUNT(*) FROM tasks WHERE pool_id = ?", (row["id"],)).fetchone()[0]
        if not tasks:
            raise IncorrectAction("Pool contains no tasks. Operation is not allowed", code="EMPTY_POOL")
        if parse_ts(doc["will_expire"]) <= self.now():
            raise ValidationError.field("will_expire", "DATE_OUT_OF_RANGE", "Pool expiration date is in the past")
        cost = cost_for(Decimal(str(doc["reward_per_assignment"])))
        if self.balance() - self.reserved_funds() < cost:
            raise IncorrectAction("Not enough money on the balance to open the pool",
                                  {"balance": _num(self.balance()), "required": _num(cost)}, code="NOT_ENOUGH_BALANCE")
        now = fmt_ts(self.now())
        doc.pop("last_close_reason", None)
        self.conn.execute("UPDATE pools SET status = 'OPEN', last_started = ?, complete_at = NULL, doc = ? WHERE id = ?",
                          (now, _dumps(doc), row["id"]))
        self._notify()
        return True

    def _close_pool(self, pool_id, reason: str):
        row = self._pool_row(pool_id)
        doc = self._pool_doc(row)
        doc["last_close_reason"] = reason
        doc["last_stopped"] = out_ts(fmt_ts(self.now()))
        self.conn.execute("UPDATE pools SET status = 'CLOSED', complete_at = NULL, doc = ? WHERE id = ?",
                          (_dumps(doc), row["id"]))

    def open_pool(self, pool_id):
        """``None`` when already open (HTTP 204), else the finished POOL.OPEN operation."""
        with self.transaction():
            row = self._pool_row(pool_id)
            if row["status"] == "OPEN":
                return None
            self._open_pool(row)
            return self._finished_operation("POOL.OPEN", {"pool_id": str(row["id"])})

    def close_pool(self, pool_id, reason="MANUAL"):
        with self.transaction():
            row = self._pool_row(pool_id)
            if row["status"] == "CLOSED":
                return None
            if row["status"] != "OPEN":
                raise inappropriate_status(["OPEN"])
            self._close_pool(row["id"], reason)
            kind = "POOL.CLOSE"
            return self._finished_operation(kind, {"pool_id": str(row["id"])})

    def clone_pool(self, pool_id) -> dict:
        """An empty CLOSED pool with the same settings in the same project (POOL.CLONE operation)."""
        with self.transaction():
            row = self._pool_row(pool_id)
            doc = self._pool_doc(row)
            for key in ("last_close_reason", "last_stopped"):
                doc.pop(key, None)
            for cfg in doc.get("quality_control", {}).get("configs", []):
                cfg.get("collector_config", {})["uuid"] = str(uuid.uuid4())
            cur = self.conn.execute("INSERT INTO pools(project_id, status, created, doc) VALUES(?, 'CLOSED', ?, ?)",
                                    (row["project_id"], fmt_ts(self.now()), _dumps(doc)))
            return self._finished_operation("POOL.CLONE", {"pool_id": str(row["id"])}, {"pool_id": str(cur.lastrowid)})

    def archive_pool(self, pool_id):
        with self.transaction():
            row = self._pool_row(pool_id)
            if row["status"] == "ARCHIVED":
                return None
            if row["status"] != "CLOSED":
                raise inappropriate_status(["CLOSED"])
            self.conn.execute("UPDATE pools SET status = 'ARCHIVED' WHERE id = ?", (row["id"],))
            return self._finished_operation("POOL.ARCHIVE", {"pool_id": str(row["id"])})

    # ---- operations -------------------------------------------------------------------------------

    def _finished_operation(self, kind, parameters, details=None, op_id=None) -> dict:
        now = out_ts(fmt_ts(self.now()))
        op = {"id": op_id or str(uuid.uuid4()), "type": kind, "status": "SUCCESS", "submitted": now,
              "started": now, "finished": now, "progress": 100, "parameters": parameters}
        if details is not None:
            op["details"] = details
        self.conn.execute("INSERT INTO operations(id, type, status, submitted, doc, log) VALUES(?, ?, ?, ?, ?, '[]')",
                          (op["id"], kind, "SUCCESS", fmt_ts(self.now()), _dumps(op)))
        return op

    def get_operation(self, op_id) -> dict:
        with self.transaction():
            row = self.conn.execute("SELECT doc FROM operations WHERE id = ?", (str(op_id),)).fetchone()
            if row is None:
                raise DoesNotExist(f"Operation {op_id} does not exist")
            op = json.loads(row[0])
            op.pop("_progress", None)
            return op

    def get_operation_log(self, op_id) -> list:
        with self.transaction():
            row = self.conn.execute("SELECT log FROM operations WHERE id = ?", (str(op_id),)).fetchone()
            if row is None:
                raise DoesNotExist(f"Operation {op_id} does not exist")
            return json.loads(row[0] or "[]")

    def find_operations(self, params) -> dict:
        def render(rows):
            ops = [json.loads(r["doc"]) for r in rows]
            for op in ops:
                op.pop("_progress", None)
            return ops
        return self._search(OPERATIONS, params, render)

    # ---- tasks ------------------------------------------------------------------------------------

    @staticmethod
    def _render_task(row) -> dict:
        doc = _doc(row["doc"])
        doc.update(id=row["id"], pool_id=str(row["pool_id"]), created=out_ts(row["created"]))
        if row["infinite"]:
            doc.update(overlap=None, infinite_overlap=True)
        else:
            doc.update(overlap=row["overlap"], infinite_overlap=False,
                       remaining_overlap=max(row["overlap"] - row["issued"], 0))
        doc.setdefault("reserved_for", [])
        doc.setdefault("unavailable_for", [])
        return doc

    def _task_row(self, task_id):
        row = self.conn.execute("SELECT * FROM tasks WHERE id = ?", (str(task_id),)).fetchone()
        if row is None:
            raise DoesNotExist(f"Task {task_id} does not exist")
        return row

    def get_task(self, task_id) -> dict:
        with self.transaction():
            return self._render_task(self._task_row(task_id))

    def find_tasks(self, params) -> dict:
        return self._search(TASKS, params, lambda rows: [self._render_task(r) for r in rows])

    def patch_task(self, task_id, body, *, overlap_or_min=False) -> dict:
        with self.transaction():
            row = self._task_row(task_id)
            body = _require_object(body)
            infinite = bool(body.get("infinite_overlap"))
            doc = json.loads(row["doc"])
            # PATCH also makes control tasks from regular ones or edits their answers and hints (OpenAPI)
            for key in ("baseline_solutions", "known_solutions", "message_on_unknown_solution"):
                if key in body:
                    if body[key] is None:
                        doc.pop(key, None)
                    else:
                        doc[key] = body[key]
            if infinite:
                self.conn.execute("UPDATE tasks SET infinite = 1, doc = ? WHERE seq = ?", (_dumps(doc), row["seq"]))
            elif "overlap" in body or overlap_or_min:
                overlap = _integer(body, "overlap", minimum=0 if overlap_or_min else 1)
                if overlap_or_min:
                    overlap = max(overlap, row["issued"])
                self.conn.execute("UPDATE tasks SET overlap = ?, infinite = 0, doc = ? WHERE seq = ?",
                                  (overlap, _dumps(doc), row["seq"]))
            else:
                self.conn.execute("UPDATE tasks SET doc = ? WHERE seq = ?", (_dumps(doc), row["seq"]))
            self._notify()
            return self._render_task(self._task_row(task_id))

    def _prepare_task(self, item, pools, allow_defaults):
        """Validate one task; returns ``(row values, errors)``."""
        if not isinstance(item, dict):
            return None, {"task": field_error("OBJECT_EXPECTED", "A task object is expected")}
        if item.get("pool_id") is None:
            return None, {"pool_id": field_error("VALUE_REQUIRED", "Value must be present and not equal to null")}
        key = str(item["pool_id"])
        if key not in pools:
            try:
                pool = self._pool_row(key)
                pools[key] = (pool, self._pool_doc(pool), {"task_spec": self.pool_task_spec(pool)})
            except DoesNotExist:
                pools[key] = None
        if pools[key] is None:
            return None, {"pool_id": field_error("ENTITY_DOES_NOT_EXIST", f"Pool {key} does not exist")}
        pool, pool_doc, project_doc = pools[key]
        if pool["status"] == "ARCHIVED":
            return None, {"pool_id": field_error("POOL_INAPPROPRIATE_STATUS", f"Pool {key} is archived")}
        errors = validate_input_values(project_doc["task_spec"]["input_spec"], item.get("input_values"))
        infinite = bool(item.get("infinite_overlap"))
        overlap = None
        defaults = pool_doc.get("defaults", {})
        if not infinite:
            if allow_defaults or item.get("overlap") is None:
                # Toloka falls back to the suites default when the tasks default is unset (toloka-api.md 4.5).
                overlap = defaults.get("default_overlap_for_new_tasks") or defaults.get(
                    "default_overlap_for_new_task_suites") or 1
            else:
                overlap = item.get("overlap")
                if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
                    errors["overlap"] = field_error("VALUE_LESS_THAN_MIN", "overlap must be an integer >= 1", [1])
        if errors:
            return None, errors
        doc = {k: v for k, v in item.items()
               if k not in {"id", "pool_id", "created", "overlap", "infinite_overlap", "remaining_overlap", "__item_idx"}}
        return (pool["id"], overlap or 0, 1 if infinite else 0, doc), None

    def _insert_tasks(self, prepared):
        """Insert validated tasks; returns their ids in order."""
        if not prepared:
            return []
        first = self._next("object", len(prepared))
        now = fmt_ts(self.now())
        rows, ids = [], []
        for offset, (pool_id, overlap, infinite, doc) in enumerate(prepared):
            seq = first + offset
            task_id = object_id(pool_id, seq)
            ids.append(task_id)
            rows.append((seq, task_id, pool_id, now, overlap, infinite, _dumps(doc)))
        self.conn.executemany("INSERT INTO tasks(seq, id, pool_id, created, overlap, infinite, doc) "
                              "VALUES(?, ?, ?, ?, ?, ?, ?)", rows)
        self._notify()
        return ids

    def create_tasks(self, body, params: dict):
        """POST /tasks. Returns ``(status, json)``; async mode answers with a TASK.BATCH_CREATE operation."""
        async_mode = str(params.get("async_mode", "false")).lower() == "true"
        allow_defaults = str(params.get("allow_defaults", "false")).lower() == "true"
        skip_invalid = str(params.get("skip_invalid_items", "false")).lower() == "true"
        open_pool = str(params.get("open_pool", "false")).lower() == "true"
        single = isinstance(body, dict)
        items = [body] if single else body
        if body is None:
            items = []
        if not isinstance(items, list):
            raise ValidationError.field("body", "ARRAY_EXPECTED", "A task object or an array of tasks is expected")
        if len(items) > MAX_BATCH:
            raise ValidationError.field("body", "ARRAY_SIZE_GREATER_THAN_MAX",
                                        f"At most {MAX_BATCH} tasks per request", [MAX_BATCH])
        if async_mode:
            return 202, self._start_batch_create(items, params, allow_defaults, skip_invalid, open_pool)
        with self.transaction():
            pools, prepared, errors, where = {}, [], {}, []
            for idx, item in enumerate(items):
                values, problem = self._prepare_task(item, pools, allow_defaults)
                if problem:
                    errors[str(idx)] = problem
                else:
                    prepared.append(values)
                    where.append(str(idx))
            if errors and (single or not skip_invalid):
                raise ValidationError("Validation failed", errors["0"] if single else errors)
            ids = self._insert_tasks(prepared)
            if open_pool:
                for pool_id in {p[0] for p in prepared}:
                    try:
                        self._open_pool(self._pool_row(pool_id))
                    except TolokaError:
                        pass
            tasks = {row["id"]: self._render_task(row) for row in self._tasks_by_ids(ids)}
            if single:
                return 201, tasks[ids[0]]
            return 201, {"items": {idx: tasks[tid] for idx, tid in zip(where, ids)}, "validation_errors": errors}

    def _tasks_by_ids(self, ids):
        rows = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows += self.conn.execute(f"SELECT * FROM tasks WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return rows

    def _start_batch_create(self, items, params, allow_defaults, skip_invalid, open_pool) -> dict:
        op_id = str(params.get("operation_id") or uuid.uuid4())
        with self.transaction():
            if self.conn.execute("SELECT 1 FROM operations WHERE id = ?", (op_id,)).fetchone():
                raise IncorrectAction(f"Operation {op_id} already exists", {"operation_id": op_id},
                                      code="OPERATION_ALREADY_EXISTS")
            now = out_ts(fmt_ts(self.now()))
            op = {"id": op_id, "type": "TASK.BATCH_CREATE", "status": "RUNNING", "submitted": now, "started": now,
                  "progress": 0,
                  "parameters": {"open_pool": open_pool, "allow_defaults": allow_defaults,
                                 "skip_invalid_items": skip_invalid},
                  "details": {"total_count": len(items), "valid_count": 0, "not_valid_count": 0,
                              "success_count": 0, "failed_count": 0}}
            self.conn.execute("INSERT INTO operations(id, type, status, submitted, doc, request, log) "
                              "VALUES(?, ?, 'RUNNING', ?, ?, ?, '[]')",
                              (op_id, op["type"], fmt_ts(self.now()), _dumps(op), _dumps(items)))
        if len(items) <= INLINE_BATCH:
            return self._run_batch_create(op_id)
        threading.Thread(target=self._run_batch_create, args=(op_id,), name=f"batch-{op_id[:8]}", daemon=True).start()
        return op

    def _resume_operations(self):
        """Finish batch creations a crash interrupted; chunks already committed are not redone."""
        rows = self.conn.execute("SELECT id FROM operations WHERE status = 'RUNNING' AND type = 'TASK.BATCH_CREATE'")
        for (op_id,) in rows.fetchall():
            self._run_batch_create(op_id)

    def _run_batch_create(self, op_id) -> dict:
        """Create the tasks of a TASK.BATCH_CREATE operation, ``INLINE_BATCH`` items per transaction.

        Progress (items done, log so far) is committed with each chunk, so other requests are served in
        between and a restart continues where the crash stopped. Without ``skip_invalid_items`` a
        validation pass over all items runs first: one bad item means nothing is created.
        """
        with self.transaction():
            row = self.conn.execute("SELECT * FROM operations WHERE id = ?", (op_id,)).fetchone()
            op = json.loads(row["doc"])
            if op["status"] != "RUNNING":
                return op
            items = json.loads(row["request"])
            params = op["parameters"]
            state = op.pop("_progress", None) or {"done": 0, "valid": 0, "pools": [], "checked": False}
            log = json.loads(row["log"] or "[]")

        def echo_of(idx, item):
            return item if isinstance(item, dict) else {"__item_idx": str(idx)}

        if not state["checked"] and not params["skip_invalid_items"]:
            with self.transaction():
                pools, bad = {}, []
                for idx, item in enumerate(items):
                    _, problem = self._prepare_task(item, pools, params["allow_defaults"])
                    if problem:
                        bad.append({"type": "TASK_VALIDATE", "success": False, "input": echo_of(idx, item),
                                    "output": problem})
                if bad:
                    op.update(status="FAIL", progress=100, finished=out_ts(fmt_ts(self.now())),
                              details={"total_count": len(items), "valid_count": len(items) - len(bad),
                                       "not_valid_count": len(bad), "success_count": 0, "failed_count": len(items)})
                    self.conn.execute("UPDATE operations SET status = 'FAIL', doc = ?, log = ?, request = NULL "
                                      "WHERE id = ?", (_dumps(op), _dumps(bad), op_id))
                    return op
        state["checked"] = True
        while True:
            with self.transaction():
                start = state["done"]
                chunk = items[start:start + INLINE_BATCH]
                pools, prepared, echoes = {}, [], []
                for idx, item in enumerate(chunk, start):
                    values, problem = self._prepare_task(item, pools, params["allow_defaults"])
                    if problem:
                        log.append({"type": "TASK_VALIDATE", "success": False, "input": echo_of(idx, item),
                                    "output": problem})
                    else:
                        prepared.append(values)
                        echoes.append(echo_of(idx, item))
                for echo, task_id in zip(echoes, self._insert_tasks(prepared)):
                    log.append({"type": "TASK_CREATE", "success": True, "input": echo, "output": {"task_id": task_id}})
                state["done"] = start + len(chunk)
                state["valid"] += len(prepared)
                state["pools"] = sorted(set(state["pools"]) | {p[0] for p in prepared})
                finished = state["done"] >= len(items)
                if finished:
                    if params["open_pool"]:
                        for pool_id in state["pools"]:
                            entry = {"type": "POOL_OPEN", "input": {"pool_id": str(pool_id)}}
                            try:
                                self._open_pool(self._pool_row(pool_id))
                                log.append({**entry, "success": True, "output": {}})
                            except TolokaError as exc:
                                log.append({**entry, "success": False, "output": exc.body()})
                    invalid = len(items) - state["valid"]
                    op.update(status="SUCCESS", progress=100, finished=out_ts(fmt_ts(self.now())),
                              details={"total_count": len(items), "valid_count": state["valid"],
                                       "not_valid_count": invalid, "success_count": state["valid"],
                                       "failed_count": invalid})
                    self.conn.execute("UPDATE operations SET status = 'SUCCESS', doc = ?, log = ?, request = NULL "
                                      "WHERE id = ?", (_dumps(op), _dumps(log), op_id))
                    return op
                op["progress"] = int(100 * state["done"] / len(items))
                self.conn.execute("UPDATE operations SET doc = ?, log = ? WHERE id = ?",
                                  (_dumps({**op, "_progress": state}), _dumps(log), op_id))

    # ---- assignments ------------------------------------------------------------------------------

    def _assignment_row(self, assignment_id):
        row = self.conn.execute("SELECT * FROM assignments WHERE id = ?", (str(assignment_id),)).fetchone()
        if row is None:
            raise DoesNotExist(f"Assignment {assignment_id} does not exist")
        return row

    def _assignment_links(self, rows) -> dict:
        """``{assignment seq: [task rows with pos/output]}`` for ``rows``, in suite order."""
        seqs = [r["seq"] for r in rows]
        links = {}
        for start in range(0, len(seqs), 500):
            chunk = seqs[start:start + 500]
            for link in self.conn.execute(
                    f"SELECT at.assignment_seq, at.pos, at.output, t.* FROM assignment_tasks at JOIN tasks t "
                    f"ON t.seq = at.task_seq WHERE at.assignment_seq IN ({','.join('?' * len(chunk))}) "
                    f"ORDER BY at.assignment_seq, at.pos", chunk):
                links.setdefault(link["assignment_seq"], []).append(link)
        return links

    def _render_assignment(self, row, tasks) -> dict:
        doc = _doc(row["doc"])
        doc.update(id=row["id"], task_suite_id=row["task_suite_id"], pool_id=str(row["pool_id"]),
                   user_id=row["user_id"], status=row["status"], owner=OWNER,
                   tasks=[self._render_task(t) for t in tasks])
        for field in ASSIGNMENT_TIME_FIELDS:
            if row[field]:
                doc[field] = out_ts(row[field])
        if row["status"] in {"SUBMITTED", "ACCEPTED", "REJECTED"}:
            doc["solutions"] = [{"output_values": _doc(t["output"])} for t in tasks]
        return doc

    def _render_assignments(self, rows) -> list:
        if not rows:
            return []
        links = self._assignment_links(rows)
        return [self._render_assignment(row, links.get(row["seq"], [])) for row in rows]

    def get_assignment(self, assignment_id) -> dict:
        with self.transaction():
            return self._render_assignments([self._assignment_row(assignment_id)])[0]

    def find_assignments(self, params) -> dict:
        """The search as JSON text (:class:`RawJSON`): listings are the hot path of every observer, so each
        assignment's JSON is cached until anything it shows (status, times, tasks' overlap, outputs) changes."""
        if not any(params.get(k) for k in ("pool_id", "task_id", "task_suite_id")):
            raise ValidationError.field("pool_id", "VALUE_REQUIRED", "One of pool_id, task_id, task_suite_id is required")
        sql, args, limit = build_search(ASSIGNMENTS, params)
        with self.transaction():
            rows = self.conn.execute(sql, args).fetchall()
            has_more = len(rows) > limit
            rows = rows[:limit]
            links = self._assignment_links(rows) if rows else {}
            parts = []
            cache = self._fragments
            for row in rows:
                tasks = links.get(row["seq"], [])
                key = (tuple(row), tuple((t["seq"], t["overlap"], t["issued"], t["infinite"], t["doc"], t["output"])
                                         for t in tasks))
                hit = cache.get(row["seq"])
                if hit is None or hit[0] != key:
                    if len(cache) > 100_000:
                        cache.clear()
                    hit = (key, JSON_ENCODER.encode(self._render_assignment(row, tasks)))
                    cache[row["seq"]] = hit
                parts.append(hit[1])
        return RawJSON('{"items":[' + ",".join(parts) + '],"has_more":' + ("true" if has_more else "false") + "}")

    def patch_assignment(self, assignment_id, body) -> dict:
        body = _require_object(body)
        status = body.get("status")
        if status not in {"ACCEPTED", "REJECTED"}:
            raise ValidationError.field("status", "VALUE_NOT_ALLOWED", "status must be ACCEPTED or REJECTED",
                                        ["ACCEPTED", "REJECTED"])
        comment = body.get("public_comment")
        if status == "REJECTED" and not (isinstance(comment, str) and comment.strip()):
            raise ValidationError.field("public_comment", "VALUE_REQUIRED", "A rejection needs a public_comment")
        with self.transaction():
            row = self._assignment_row(assignment_id)
            allowed = {"ACCEPTED": ("SUBMITTED", "REJECTED"), "REJECTED": ("SUBMITTED",)}[status]
            if row["status"] not in allowed:
                raise inappropriate_status(list(allowed))
            if status == "ACCEPTED":
                if not self._accept(row, comment):
                    raise IncorrectAction("Not enough money on the balance to accept the assignment",
                                          {"balance": _num(self.balance()), "required": _num(Decimal(row["cost"]))},
                                          code="NOT_ENOUGH_BALANCE")
            else:
                self._reject(row, comment)
            return self._render_assignments([self._assignment_row(assignment_id)])[0]

    def _accept(self, row, comment=None, at: str | None = None) -> bool:
        """SUBMITTED/REJECTED -> ACCEPTED and pay; False (nothing changed) when the balance is short."""
        cost = Decimal(row["cost"])
        if not row["paid"]:
            if self.balance() < cost:
                return False
            self._set_meta("balance", str(self.balance() - cost))
            self.conn.execute("INSERT INTO charges(pool_id, assignment_id, amount, created) VALUES(?, ?, ?, ?)",
                              (row["pool_id"], row["id"], str(cost), fmt_ts(self.now())))
        previous = row["status"]
        doc = json.loads(row["doc"])
        if comment is not None:
            doc["public_comment"] = comment
        # Instant auto-accept shares the submit stamp (as in the real API); anything later is "now", so a
        # streaming cursor that already moved past the submit time still sees the acceptance.
        accepted = at or fmt_ts(self.now())
        self.conn.execute("UPDATE assignments SET status = 'ACCEPTED', accepted = ?, paid = 1, auto_accept_at = NULL, "
                          "doc = ? WHERE seq = ?", (accepted, _dumps(doc), row["seq"]))
        self._quality_control(row["pool_id"], row["user_id"], "ACCEPT_AFTER_REJECT" if previous == "REJECTED" else "ACCEPT",
                              self._assignment_row(row["id"]))
        return True

    def _reject(self, row, comment):
        doc = json.loads(row["doc"])
        doc["public_comment"] = comment
        self.conn.execute("UPDATE assignments SET status = 'REJECTED', rejected = ?, auto_accept_at = NULL, doc = ? "
                          "WHERE seq = ?", (fmt_ts(self.now()), _dumps(doc), row["seq"]))
        self._quality_control(row["pool_id"], row["user_id"], "REJECT", self._assignment_row(row["id"]))

    # ---- assignments TSV (get_assignments_df) -------------------------------------------------------

    def assignments_tsv(self, pool_id, params) -> str:
        statuses = [s for s in str(params.get("status") or "APPROVED").split(",") if s]
        unknown = set(statuses) - {"ACTIVE", "SUBMITTED", "APPROVED", "REJECTED", "SKIPPED", "EXPIRED"}
        if unknown:
            raise ValidationError.field("status", "UNKNOWN_ENUM_VALUE", f"Unknown status {sorted(unknown)}")
        fields = [f for f in str(params.get("field") or "ASSIGNMENT:link,ASSIGNMENT:assignment_id,ASSIGNMENT:worker_id,"
                                  "ASSIGNMENT:status,ASSIGNMENT:started").split(",") if f]
        db_status = ["ACCEPTED" if s == "APPROVED" else s for s in statuses]
        with self.transaction():
            pool = self._pool_row(pool_id)
            project = {"task_spec": self.pool_task_spec(pool)}
            where, args = [f"pool_id = ? AND status IN ({','.join('?' * len(db_status))})"], [pool["id"], *db_status]
            for param, op in (("startTimeFrom", ">="), ("startTimeTo", "<=")):
                if params.get(param):
                    where.append(f"created {op} ?")
                    args.append(_convert(param, params[param], "ts"))
            rows = self.conn.execute(f"SELECT * FROM assignments WHERE {' AND '.join(where)} ORDER BY id", args).fetchall()
            assignments = self._render_assignments(rows)
            has_golden = self.conn.execute(f"SELECT 1 FROM tasks WHERE pool_id = ? AND {golden_sql()} LIMIT 1",
                                           (pool["id"],)).fetchone() is not None
        inputs = list(project["task_spec"]["input_spec"])
        outputs = list(project["task_spec"]["output_spec"])
        # GOLDEN:<output> holds a control task's (first) known solution; empty on general tasks
        golden = outputs if has_golden else []
        header = [f"INPUT:{n}" for n in inputs] + [f"OUTPUT:{n}" for n in outputs] + [f"GOLDEN:{n}" for n in golden]
        header += fields
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
        writer.writerow(header)

        def cell(value):
            if value is None:
                return ""
            if isinstance(value, (dict, list, bool)):
                return json.dumps(value)
            return value

        for a in assignments:
            solutions = a.get("solutions") or [{}] * len(a["tasks"])
            for task, solution in zip(a["tasks"], solutions):
                out = solution.get("output_values", {}) if solution else {}
                meta = {"link": f"{self.base_url}/task/{a['pool_id']}/{a['task_suite_id']}",
                        "assignment_id": a["id"], "worker_id": a["user_id"],
                        "status": TSV_STATUS.get(a["status"], a["status"]), "started": a.get("created"),
                        "task_id": task["id"], "task_suite_id": a["task_suite_id"], "reward": a.get("reward")}
                for field in ASSIGNMENT_TIME_FIELDS[1:]:
                    meta[field] = a.get(field)
                line = [cell(task["input_values"].get(n)) for n in inputs] + [cell(out.get(n)) for n in outputs]
                known = ((task.get("known_solutions") or [{}])[0] or {}).get("output_values") or {}
                line += [cell(known.get(n)) for n in golden]
                line += [cell(meta.get(f.split(":", 1)[1] if ":" in f else f)) for f in fields]
                writer.writerow(line)
        return buf.getvalue()

    # ---- user skills --------------------------------------------------------------------------------

    @staticmethod
    def _render_user_skill(row) -> dict:
        doc = json.loads(row["doc"])
        exact = Decimal(str(doc["exact_value"]))
        return {"id": str(row["id"]), "skill_id": str(row["skill_id"]), "user_id": row["user_id"],
                "value": int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)), "exact_value": _num(exact),
                "created": out_ts(row["created"]), "modified": out_ts(row["modified"])}

    def _set_user_skill(self, skill_id, user_id, value) -> int:
        now = fmt_ts(self.now())
        exact = Decimal(str(value)).quantize(Decimal("0.00001"))
        self.conn.execute(
            "INSERT INTO user_skills(skill_id, user_id, created, modified, doc) VALUES(?, ?, ?, ?, ?) "
            "ON CONFLICT(skill_id, user_id) DO UPDATE SET modified = excluded.modified, doc = excluded.doc",
            (int(skill_id), user_id, now, now, _dumps({"exact_value": str(exact)})))
        return self.conn.execute("SELECT id FROM user_skills WHERE skill_id = ? AND user_id = ?",
                                 (int(skill_id), user_id)).fetchone()[0]

    def set_user_skill(self, body) -> dict:
        body = _require_object(body)
        value = _decimal(body, "value", minimum=Decimal(0))
        if value > 100:
            raise ValidationError.field("value", "VALUE_GREATER_THAN_MAX", "Value must be at most 100", [100])
        user_id = _string(body, "user_id")
        with self.transaction():
            if body.get("skill_id") is None:
                raise ValidationError.field("skill_id", "VALUE_REQUIRED", "Value must be present and not equal to null")
            try:
                skill = self._skill_row(body["skill_id"])
            except DoesNotExist:
                raise ValidationError.field("skill_id", "ENTITY_DOES_NOT_EXIST",
                                            f"Skill {body['skill_id']} does not exist") from None
            row_id = self._set_user_skill(skill["id"], user_id, value)
            self._notify()
            return self._render_user_skill(self.conn.execute("SELECT * FROM user_skills WHERE id = ?", (row_id,)).fetchone())

    def get_user_skill(self, user_skill_id) -> dict:
        with self.transaction():
            row = self.conn.execute("SELECT * FROM user_skills WHERE id = ?", (_int_or_missing(user_skill_id, "User skill"),)).fetchone()
            if row is None:
                raise DoesNotExist(f"User skill {user_skill_id} does not exist")
            return self._render_user_skill(row)

    def delete_user_skill(self, user_skill_id):
        with self.transaction():
            cur = self.conn.execute("DELETE FROM user_skills WHERE id = ?", (_int_or_missing(user_skill_id, "User skill"),))
            if not cur.rowcount:
                raise DoesNotExist(f"User skill {user_skill_id} does not exist")
            self._notify()

    def find_user_skills(self, params) -> dict:
        return self._search(USER_SKILLS, params, lambda rows: [self._render_user_skill(r) for r in rows])

    def user_skill_values(self) -> dict:
        """``{user_id: {skill_id(str): exact value(float)}}`` for the crowd's filters."""
        out = {}
        for row in self.conn.execute("SELECT skill_id, user_id, doc FROM user_skills"):
            out.setdefault(row["user_id"], {})[str(row["skill_id"])] = float(json.loads(row["doc"])["exact_value"])
        return out

    # ---- user restrictions ---------------------------------------------------------------------------

    @staticmethod
    def _render_restriction(row) -> dict:
        doc = json.loads(row["doc"])
        doc.update(id=str(row["id"]), user_id=row["user_id"], scope=row["scope"], created=out_ts(row["created"]))
        if row["will_expire"]:
            doc["will_expire"] = out_ts(row["will_expire"])
        if row["project_id"] is not None:
            doc["project_id"] = str(row["project_id"])
        if row["pool_id"] is not None:
            doc["pool_id"] = str(row["pool_id"])
        return doc

    def _add_restriction(self, user_id, scope, *, project_id=None, pool_id=None, will_expire=None, comment=None):
        doc = {"private_comment": comment} if comment else {}
        cur = self.conn.execute(
            "INSERT INTO restrictions(user_id, scope, project_id, pool_id, created, will_expire, doc) "
            "VALUES(?, ?, ?, ?, ?, ?, ?)",
            (user_id, scope, project_id, pool_id, fmt_ts(self.now()),
             fmt_ts(will_expire) if will_expire else None, _dumps(doc)))
        self._notify()
        return cur.lastrowid

    def set_user_restriction(self, body) -> dict:
        body = _require_object(body)
        user_id = _string(body, "user_id")
        scope = body.get("scope")
        if scope not in {"ALL_PROJECTS", "PROJECT", "POOL", "SYSTEM"}:
            raise ValidationError.field("scope", "UNKNOWN_ENUM_VALUE", f"Unknown scope {scope!r}")
        if scope == "SYSTEM":
            raise IncorrectAction("System restrictions cannot be set by a requester", code="SYSTEM_SCOPE_MODIFICATION")
        will_expire = _timestamp(body, "will_expire", required=False)
        with self.transaction():
            project_id = pool_id = None
            if scope == "PROJECT":
                if body.get("project_id") is None:
                    raise ValidationError.field("project_id", "VALUE_REQUIRED", "project_id is required")
                project_id = self._project_row(body["project_id"])["id"]
            if scope == "POOL":
                if body.get("pool_id") is None:
                    raise ValidationError.field("pool_id", "VALUE_REQUIRED", "pool_id is required")
                pool_id = self._pool_row(body["pool_id"])["id"]
            rid = self._add_restriction(user_id, scope, project_id=project_id, pool_id=pool_id,
                                        will_expire=will_expire, comment=body.get("private_comment"))
            return self._render_restriction(self.conn.execute("SELECT * FROM restrictions WHERE id = ?", (rid,)).fetchone())

    def get_user_restriction(self, restriction_id) -> dict:
        with self.transaction():
            row = self.conn.execute("SELECT * FROM restrictions WHERE id = ?",
                                    (_int_or_missing(restriction_id, "User restriction"),)).fetchone()
            if row is None:
                raise DoesNotExist(f"User restriction {restriction_id} does not exist")
            return self._render_restriction(row)

    def delete_user_restriction(self, restriction_id):
        with self.transaction():
            cur = self.conn.execute("DELETE FROM restrictions WHERE id = ?",
                                    (_int_or_missing(restriction_id, "User restriction"),))
            if not cur.rowcount:
                raise DoesNotExist(f"User restriction {restriction_id} does not exist")
            self._notify()

    def find_user_restrictions(self, params) -> dict:
        return self._search(RESTRICTIONS, params, lambda rows: [self._render_restriction(r) for r in rows])

    def active_restrictions(self) -> dict:
        """``{user_id: [(scope, project_id, pool_id)]}`` still in force."""
        now = fmt_ts(self.now())
        out = {}
        for row in self.conn.execute("SELECT user_id, scope, project_id, pool_id FROM restrictions "
                                     "WHERE will_expire IS NULL OR will_expire > ?", (now,)):
            out.setdefault(row["user_id"], []).append((row["scope"], row["project_id"], row["pool_id"]))
        return out

    # ---- analytics ------------------------------------------------------------------------------------

    def analytics(self, body) -> dict:
        if not isinstance(body, list) or not body:
            raise ValidationError.field("body", "ARRAY_EXPECTED", "An array of analytics requests is expected")
        if len(body) > 10:
            raise ValidationError.field("body", "ARRAY_SIZE_GREATER_THAN_MAX", "At most 10 requests", [10])
        with self.transaction():
            results = []
            for i, request in enumerate(body):
                if not isinstance(request, dict) or request.get("subject") != "POOL":
                    raise ValidationError.field(f"[{i}].subject", "VALUE_NOT_ALLOWED", "Only subject POOL is supported")
                try:
                    pool = self._pool_row(request.get("subject_id"))
                except DoesNotExist:
                    raise ValidationError.field(f"[{i}].subject_id", "ENTITY_DOES_NOT_EXIST",
                                                f"Pool {request.get('subject_id')} does not exist") from None
                results.append({"result": self._pool_metric(pool, request.get("name"), i, request),
                                "request": request, "finished": out_ts(fmt_ts(self.now()))})
            return self._finished_operation("ANALYTICS", {"value": body}, {"value": results})

    def _pool_metric(self, pool, name, i, request):
        pid = pool["id"]
        count = lambda status: self.conn.execute(  # noqa: E731
            "SELECT COUNT(*) FROM assignments WHERE pool_id = ? AND status = ?", (pid, status)).fetchone()[0]
        if name == "completion_percentage":
            total, remaining = self.conn.execute(
                "SELECT COALESCE(SUM(overlap), 0), COALESCE(SUM(MAX(overlap - issued, 0)), 0) FROM tasks "
                f"WHERE pool_id = ? AND infinite = 0 AND {REAL_SQL}", (pid,)).fetchone()
            active = self.conn.execute("SELECT COUNT(*) FROM assignment_tasks at JOIN assignments a ON "
                                       "a.seq = at.assignment_seq JOIN tasks t ON t.seq = at.task_seq WHERE "
                                       f"a.pool_id = ? AND a.status = 'ACTIVE' AND t.infinite = 0 AND NOT "
                                       f"{golden_sql('t')}", (pid,)).fetchone()[0]
            value = int(100 * (total - remaining - active) / total) if total else 0
            return {"type": "NORMAL", "value": max(0, min(100, value)), "infinite": False, "approximate": False}
        if name == "estimated_assignments_count":
            remaining = self.conn.execute("SELECT COALESCE(SUM(MAX(overlap - issued, 0)), 0) FROM tasks "
                                          f"WHERE pool_id = ? AND infinite = 0 AND {REAL_SQL}", (pid,)).fetchone()[0]
            per = max(1, json.loads(pool["doc"]).get("mixer_config", {}).get("real_tasks_count", 1))
            return {"type": "NORMAL", "value": -(-remaining // per), "infinite": False, "approximate": True}
        simple = {"submitted_assignments_count": "SUBMITTED", "skipped_assignments_count": "SKIPPED",
                  "rejected_assignments_count": "REJECTED", "approved_assignments_count": "ACCEPTED",
                  "expired_assignments_count": "EXPIRED"}
        if name in simple:
            return count(simple[name])
        if name == "real_tasks_count":  # general tasks only, control tasks are not the pool's work
            return self.conn.execute(f"SELECT COUNT(*) FROM tasks WHERE pool_id = ? AND {REAL_SQL}",
                                     (pid,)).fetchone()[0]
        if name == "spent_budget":  # rewards paid, excluding Toloka's fee (toloka-kit's docstring)
            return _num(sum((Decimal(str(_loads_cached(r[0])["reward"])) for r in self.conn.execute(
                "SELECT doc FROM assignments WHERE pool_id = ? AND paid = 1", (pid,))), Decimal(0)))
        if name in {"unique_workers_count", "unique_submitters_count"}:
            cond = "" if name == "unique_workers_count" else " AND submitted IS NOT NULL"
            return self.conn.execute(f"SELECT COUNT(DISTINCT user_id) FROM assignments WHERE pool_id = ?{cond}",
                                     (pid,)).fetchone()[0]
        if name == "avg_submit_assignment_millis":
            rows = self.conn.execute("SELECT created, submitted FROM assignments WHERE pool_id = ? AND submitted "
                                     "IS NOT NULL", (pid,)).fetchall()
            if not rows:
                return 0
            return int(sum((parse_ts(r[1]) - parse_ts(r[0])).total_seconds() * 1000 for r in rows) / len(rows))
        if name == "active_workers_by_filter_count":
            return getattr(self, "workforce_size", 0)
        raise ValidationError.field(f"[{i}].name", "UNKNOWN_ENUM_VALUE", f"Unknown analytics name {name!r}")

    # ---- quality control --------------------------------------------------------------------------------

    def _quality_control(self, pool_id, user_id, event, asg_row):
        """Run the pool's QC rules for one worker after ``event`` (SUBMIT, ACCEPT, REJECT, ...)."""
        pool = self._pool_row(pool_id)
        doc = self._pool_doc(pool)
        for cfg in doc.get("quality_control", {}).get("configs", []):
            collector = cfg.get("collector_config", {})
            kind = collector.get("type")
            params = collector.get("parameters") or {}
            stats_list = self._collector_stats(kind, params, pool, user_id, event, asg_row)
            for uid, stats in stats_list:
                for rule in cfg.get("rules", []):
                    conditions = rule.get("conditions", [])
                    if conditions and all(_compare(stats.get(c.get("key")), c.get("operator"), c.get("value"))
                                          for c in conditions):
                        self._apply_action(rule["action"], pool, uid, stats, asg_row)

    def _collector_stats(self, kind, params, pool, user_id, event, asg_row):
        pid = pool["id"]
        reviewed = {"ACCEPT", "REJECT", "ACCEPT_AFTER_REJECT"}
        if kind == "ASSIGNMENT_SUBMIT_TIME" and event == "SUBMIT":
            history = params.get("history_size") or 10 ** 9
            threshold = float(params.get("fast_submit_threshold_seconds", 0))
            rows = self.conn.execute("SELECT sim_seconds FROM assignments WHERE pool_id = ? AND user_id = ? AND "
                                     "submitted IS NOT NULL ORDER BY submitted DESC, seq DESC LIMIT ?",
                                     (pid, user_id, history)).fetchall()
            fast = sum(1 for r in rows if r[0] is not None and r[0] < threshold)
            return [(user_id, {"total_submitted_count": len(rows), "fast_submitted_count": fast})]
        if kind == "ANSWER_COUNT" and event == "SUBMIT":
            n = self.conn.execute("SELECT COUNT(*) FROM assignments WHERE pool_id = ? AND user_id = ? AND submitted "
                                  "IS NOT NULL", (pid, user_id)).fetchone()[0]
            return [(user_id, {"assignments_accepted_count": n})]
        if kind == "ACCEPTANCE_RATE" and event in reviewed:
            acc, rej = self.conn.execute(
                "SELECT SUM(status = 'ACCEPTED'), SUM(status = 'REJECTED') FROM assignments WHERE pool_id = ? "
                "AND user_id = ?", (pid, user_id)).fetchone()
            acc, rej = acc or 0, rej or 0
            total = acc + rej
            return [(user_id, {"total_assignments_count": total, "accepted_assignments_count": acc,
                               "rejected_assignments_count": rej,
                               "accepted_assignments_rate": 100.0 * acc / total if total else 0.0,
                               "rejected_assignments_rate": 100.0 * rej / total if total else 0.0})]
        if kind == "ASSIGNMENTS_ASSESSMENT" and event in reviewed:
            counts = self.conn.execute(
                "SELECT SUM(status = 'SUBMITTED'), SUM(status = 'ACCEPTED'), SUM(status = 'REJECTED') FROM assignments "
                "WHERE task_suite_id = ?", (asg_row["task_suite_id"],)).fetchone()
            pending, acc, rej = (c or 0 for c in counts)
            return [(user_id, {"assessment_event": event, "pending_assignments_count": pending,
                               "accepted_assignments_count": acc, "rejected_assignments_count": rej,
                               "total_assignments_count": pending + acc + rej})]
        if kind == "SKIPPED_IN_ROW_ASSIGNMENTS" and event == "SKIP":
            rows = self.conn.execute("SELECT status FROM assignments WHERE pool_id = ? AND user_id = ? AND status != "
                                     "'ACTIVE' ORDER BY seq DESC LIMIT 1000", (pid, user_id)).fetchall()
            in_row = 0
            for r in rows:
                if r[0] != "SKIPPED":
                    break
                in_row += 1
            return [(user_id, {"skipped_in_row_count": in_row})]
        if kind == "MAJORITY_VOTE" and event == "SUBMIT":
            return self._majority_stats(pid, params, asg_row)
        if kind == "GOLDEN_SET" and event == "SUBMIT":
            return self._golden_stats(pid, params, user_id, asg_row)
        return []

    def _majority_stats(self, pid, params, asg_row):
        """Majority vote per task once ``answer_threshold`` answers agree; stats for every voter involved.

        A worker's answer counts (newest first, up to ``history_size``) only on tasks with a majority;
        it is correct when it equals the majority answer (ties: no majority yet).
        """
        threshold = int(params.get("answer_threshold", 2))
        history = params.get("history_size") or 10 ** 9
        voters = [r[0] for r in self.conn.execute(
            "SELECT DISTINCT a.user_id FROM assignment_tasks me JOIN assignment_tasks at ON at.task_seq = me.task_seq "
            "JOIN assignments a ON a.seq = at.assignment_seq WHERE me.assignment_seq = ? AND a.submitted IS NOT NULL",
            (asg_row["seq"],))]
        if not voters:
            return []
        marks = ",".join("?" * len(voters))
        rows = self.conn.execute(
            f"SELECT at.task_seq, a.user_id, at.output, a.submitted, a.seq FROM assignment_tasks at JOIN assignments a "
            f"ON a.seq = at.assignment_seq WHERE a.submitted IS NOT NULL AND at.task_seq IN (SELECT at2.task_seq FROM "
            f"assignment_tasks at2 JOIN assignments a2 ON a2.seq = at2.assignment_seq WHERE a2.pool_id = ? AND "
            f"a2.user_id IN ({marks}) AND a2.submitted IS NOT NULL)", (pid, *voters)).fetchall()
        votes, answers = {}, {}
        for task_seq, uid, output, submitted, seq in rows:
            key = json.dumps(_loads_cached(output or "{}"), sort_keys=True)
            tally = votes.setdefault(task_seq, {})
            tally[key] = tally.get(key, 0) + 1
            answers.setdefault(uid, []).append((submitted, seq, task_seq, key))
        majority = {}
        for task_seq, tally in votes.items():
            best, n = max(tally.items(), key=lambda kv: kv[1])
            if n >= threshold and list(tally.values()).count(n) == 1:
                majority[task_seq] = best
        out = []
        for uid in sorted(voters):
            total = correct = 0
            for _, _, task_seq, key in sorted(answers.get(uid, []), reverse=True):
                if task_seq not in majority:
                    continue
                total += 1
                correct += key == majority[task_seq]
                if total >= history:
                    break
            if total:
                out.append((uid, {"total_answers_count": total, "correct_answers_rate": 100.0 * correct / total,
                                  "incorrect_answers_rate": 100.0 * (total - correct) / total}))
        return out

    def _golden_stats(self, pid, params, user_id, asg_row=None):
        """GOLDEN_SET statistics of ``user_id`` in the pool, after a suite with control tasks.

        Each control-task answer is compared with the task's ``known_solutions`` by exact match on the
        output fields a solution lists (fields left out are not checked); it scores the highest
        ``correctness_weight`` (default 1) among the solutions it matches, 0 if none. Over the worker's
        newest ``history_size`` control answers (all when unset):
        ``golden_set_answers_count = total_answers_count = n`` and
        ``golden_set_correct_answers_rate = correct_answers_rate = 100 * sum(score) / n``
        (incorrect = 100 - correct). Training tasks are not emulated, so both rates coincide.
        """
        if asg_row is not None and not self.conn.execute(
                f"SELECT 1 FROM assignment_tasks at JOIN tasks t ON t.seq = at.task_seq WHERE at.assignment_seq = ? "
                f"AND {golden_sql('t')} LIMIT 1", (asg_row["seq"],)).fetchone():
            return []  # no control answer in this suite: nothing new to count
        history = params.get("history_size") or None
        rows = self.conn.execute(
            "SELECT at.output, t.doc FROM assignment_tasks at JOIN assignments a ON a.seq = at.assignment_seq "
            f"JOIN tasks t ON t.seq = at.task_seq WHERE a.pool_id = ? AND a.user_id = ? AND a.submitted IS NOT NULL "
            f"AND {golden_sql('t')} ORDER BY a.submitted DESC, a.seq DESC, at.pos LIMIT ?",
            (pid, user_id, -1 if history is None else int(history))).fetchall()
        if not rows:
            return []
        score = 0.0
        for output, task_doc in rows:
            answer = _loads_cached(output or "{}")
            weights = [float(ks.get("correctness_weight", 1) if ks.get("correctness_weight") is not None else 1)
                       for ks in _loads_cached(task_doc).get("known_solutions") or []
                       if all(answer.get(k) == v for k, v in (ks.get("output_values") or {}).items())]
            score += max(weights, default=0.0)
        n = len(rows)
        rate = 100.0 * score / n
        return [(user_id, {"total_answers_count": n, "golden_set_answers_count": n,
                           "golden_set_correct_answers_rate": rate, "golden_set_incorrect_answers_rate": 100 - rate,
                           "correct_answers_rate": rate, "incorrect_answers_rate": 100 - rate})]

    def _apply_action(self, action, pool, user_id, stats, asg_row):
        kind = action.get("type")
        params = action.get("parameters") or {}
        if kind in {"RESTRICTION", "RESTRICTION_V2"}:
            scope = params.get("scope", "PROJECT")
            if kind == "RESTRICTION":
                days = params.get("duration_days")
                length = None if days is None else float(days) * 86400
            else:
                unit = params.get("duration_unit", "DAYS")
                per = {"MINUTES": 60, "HOURS": 3600, "DAYS": 86400}.get(unit)
                length = None if per is None or params.get("duration") is None else float(params["duration"]) * per
            project_id = pool["project_id"] if scope == "PROJECT" else None
            pool_id = pool["id"] if scope == "POOL" else None
            existing = self.conn.execute(
                "SELECT 1 FROM restrictions WHERE user_id = ? AND scope = ? AND COALESCE(project_id, -1) = ? AND "
                "COALESCE(pool_id, -1) = ? AND (will_expire IS NULL OR will_expire > ?)",
                (user_id, scope, project_id if project_id is not None else -1, pool_id if pool_id is not None else -1,
                 fmt_ts(self.now()))).fetchone()
            if not existing:
                expire = None if length is None else self.now() + self.sim_to_real(length)
                self._add_restriction(user_id, scope, project_id=project_id, pool_id=pool_id, will_expire=expire,
                                      comment=params.get("private_comment"))
        elif kind == "SET_SKILL":
            self._set_user_skill(params["skill_id"], user_id, params.get("skill_value", 0))
        elif kind == "SET_SKILL_FROM_OUTPUT_FIELD":
            value = stats.get(params.get("from_field"))
            if value is not None:
                self._set_user_skill(params["skill_id"], user_id, max(0.0, min(100.0, float(value))))
        elif kind == "CHANGE_OVERLAP":
            delta = int(params.get("delta", 1))
            self.conn.execute(f"UPDATE tasks SET overlap = overlap + ? WHERE infinite = 0 AND {REAL_SQL} AND seq IN "
                              "(SELECT task_seq FROM assignment_tasks WHERE assignment_seq = ?)", (delta, asg_row["seq"]))
            if params.get("open_pool"):
                row = self._pool_row(pool["id"])
                if row["status"] == "CLOSED":
                    try:
                        self._open_pool(row)
                    except TolokaError:
                        pass
            self._notify()
        elif kind in {"REJECT_ALL_ASSIGNMENTS", "APPROVE_ALL_ASSIGNMENTS"}:
            rows = self.conn.execute("SELECT * FROM assignments WHERE pool_id = ? AND user_id = ? AND status = "
                                     "'SUBMITTED'", (pool["id"], user_id)).fetchall()
            for row in rows:
                if kind == "REJECT_ALL_ASSIGNMENTS":
                    self._reject(row, params.get("public_comment") or "Rejected by quality control")
                else:
                    self._accept(row)

    # ---- the crowd's side (called by the scheduler) ---------------------------------------------------

    def open_pools(self) -> list:
        """OPEN pools as ``(row, doc, project_id)``, by priority then id."""
        rows = self.conn.execute("SELECT * FROM pools WHERE status = 'OPEN'").fetchall()
        out = [(r, self._pool_doc(r)) for r in rows]
        out.sort(key=lambda rd: (-int(rd[1].get("priority") or 0), rd[0]["id"]))
        return out

    def busy_workers(self) -> set:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT user_id FROM assignments WHERE status = 'ACTIVE'")}

    def available_tasks(self, pool_id, user_id, limit, *, golden: bool = False) -> list:
        """Up to ``limit`` tasks ``[(seq, doc)]`` of the pool that ``user_id`` may get next, in creation
        order: overlap left (or infinite), never seen by them, not reserved for others or closed to them.
        General tasks by default, control tasks with ``golden=True`` (``limit=None``: all of them)."""
        kind = golden_sql() if golden else REAL_SQL
        rows = self.conn.execute(
            f"SELECT seq, doc FROM tasks WHERE pool_id = ? AND (infinite = 1 OR overlap > issued) AND {kind} AND "
            "seq NOT IN (SELECT task_seq FROM assignment_tasks WHERE pool_id = ? AND user_id = ?) ORDER BY seq "
            "LIMIT ?", (pool_id, pool_id, user_id, -1 if limit is None else limit * 4)).fetchall()
        out = []
        for seq, doc in rows:
            doc = json.loads(doc)
            if doc.get("reserved_for") and user_id not in doc["reserved_for"]:
                continue
            if user_id in (doc.get("unavailable_for") or []):
                continue
            out.append((seq, doc))
            if limit is not None and len(out) == limit:
                break
        return out

    def suite_tasks(self, pool_row, pool_doc, user_id) -> list:
        """The next task suite ``[(seq, doc)]`` for ``user_id`` by the pool's ``mixer_config``, or ``[]``.

        Toloka's smart mixing (OpenAPI ``MixerConfig``; guide "Control tasks"):

        * ``real_tasks_count`` general tasks; fewer only down to ``min_real_tasks_count`` (default: all
          of them), below that only with ``force_last_assignment`` (default true, as in Toloka);
        * ``golden_tasks_count`` control tasks (tasks with ``known_solutions``), picked at random among
          those the worker has not seen: each control task is shown to a worker once, so a worker who has
          done them all gets no more suites. A suite needs at least ``min_golden_tasks_count`` (default:
          all ``golden_tasks_count``) of them, also in the last suite; a pool that asks for control tasks
          and has none assigns nothing. Control tasks use their own overlap (usually infinite) and never
          count as the pool's remaining work;
        * control tasks sit at random places in the suite unless ``shuffle_tasks_in_task_suite`` is false.
        Training tasks (training pools) are not emulated; ``training_tasks_count`` is ignored.
        """
        mixer = pool_doc.get("mixer_config") or {}
        n_real = int(mixer.get("real_tasks_count") or 0)
        n_golden = int(mixer.get("golden_tasks_count") or 0)
        if n_real == 0 and n_golden == 0:
            n_real = 1  # training-only mixers: the training tasks are not emulated, general ones are served
        min_real = n_real if mixer.get("min_real_tasks_count") is None else int(mixer["min_real_tasks_count"])
        min_golden = n_golden if mixer.get("min_golden_tasks_count") is None else int(mixer["min_golden_tasks_count"])
        real = self.available_tasks(pool_row["id"], user_id, n_real) if n_real else []
        # force_last_assignment is true unless set false (OpenAPI MixerConfig default; toloka-kit doc)
        if n_real and (not real or (len(real) < min_real and mixer.get("force_last_assignment") is False)):
            return []
        golden = []
        if n_golden:
            candidates = self.available_tasks(pool_row["id"], user_id, None, golden=True)
            if len(candidates) < min_golden:
                return []
            # deterministic per worker and suite, so a replayed run mixes the same way
            rng = random.Random(f"{pool_row['id']}:{user_id}:{real[0][0] if real else 0}:{len(candidates)}")
            golden = rng.sample(candidates, min(n_golden, len(candidates)))
            if not real and not golden:
                return []
            if mixer.get("shuffle_tasks_in_task_suite", True):
                suite = list(real)
                for task in golden:
                    suite.insert(rng.randint(0, len(suite)), task)
                return suite
        return real + golden

    def issue_suite(self, pool_row, pool_doc, user_id, tasks) -> str:
        """Create an ACTIVE assignment of ``tasks`` (``[(seq, doc)]``) for ``user_id``; returns its id."""
        first = self._next("object", 2)
        suite_id = object_id(pool_row["id"], first)
        seq = first + 1
        asg_id = object_id(pool_row["id"], seq)
        reward = Decimal(str(pool_doc["reward_per_assignment"]))
        doc = {"reward": _num(reward), "mixed": True, "automerged": False}
        self.conn.execute(
            "INSERT INTO assignments(seq, id, pool_id, task_suite_id, user_id, status, created, cost, doc) "
            "VALUES(?, ?, ?, ?, ?, 'ACTIVE', ?, ?, ?)",
            (seq, asg_id, pool_row["id"], suite_id, user_id, fmt_ts(self.now()), str(cost_for(reward)), _dumps(doc)))
        self.conn.executemany("INSERT INTO assignment_tasks(assignment_seq, pos, task_seq, pool_id, user_id) "
                              "VALUES(?, ?, ?, ?, ?)",
                              [(seq, pos, t[0], pool_row["id"], user_id) for pos, t in enumerate(tasks)])
        self.conn.executemany("UPDATE tasks SET issued = issued + 1 WHERE seq = ?", [(t[0],) for t in tasks])
        return asg_id

    def unplanned_active(self) -> list:
        """ACTIVE assignments whose answers are not decided yet (new, or interrupted by a restart)."""
        rows = self.conn.execute("SELECT a.id, a.user_id, a.pool_id, a.created FROM assignments a WHERE "
                                 "a.status = 'ACTIVE' AND a.plan IS NULL ORDER BY a.seq").fetchall()
        out = []
        for row in rows:
            inputs = [json.loads(t[0]).get("input_values", {}) for t in self.conn.execute(
                "SELECT t.doc FROM assignment_tasks at JOIN tasks t ON t.seq = at.task_seq WHERE at.assignment_seq = "
                "(SELECT seq FROM assignments WHERE id = ?) ORDER BY at.pos", (row["id"],))]
            pool_doc = self._pool_doc(self._pool_row(row["pool_id"]))
            out.append({"id": row["id"], "user_id": row["user_id"], "pool_id": row["pool_id"],
                        "created": parse_ts(row["created"]), "inputs": inputs,
                        "max_seconds": int(pool_doc["assignment_max_duration_seconds"])})
        return out

    def set_plan(self, assignment_id, outcome: str, outputs, sim_seconds: float, due: dt.datetime):
        with self.transaction():
            self.conn.execute("UPDATE assignments SET plan = ?, sim_seconds = ?, due = ? WHERE id = ? AND "
                              "status = 'ACTIVE'",
                              (_dumps({"outcome": outcome, "outputs": outputs}), sim_seconds, fmt_ts(due), assignment_id))

    def finish_due(self, now: dt.datetime) -> int:
        """Submit, expire or skip the ACTIVE assignments whose time has come."""
        rows = self.conn.execute("SELECT * FROM assignments WHERE status = 'ACTIVE' AND due IS NOT NULL AND due <= ? "
                                 "ORDER BY due, seq", (fmt_ts(now),)).fetchall()
        for row in rows:
            plan = json.loads(row["plan"])
            outcome = plan["outcome"]
            stamp = fmt_ts(self.now())
            if outcome == "SUBMIT":
                for pos, output in enumerate(plan["outputs"]):
                    self.conn.execute("UPDATE assignment_tasks SET output = ? WHERE assignment_seq = ? AND pos = ?",
                                      (_dumps(output), row["seq"], pos))
                pool_doc = self._pool_doc(self._pool_row(row["pool_id"]))
                auto_at = stamp if pool_doc.get("auto_accept_solutions", True) else fmt_ts(
                    self.now() + self.sim_to_real(float(pool_doc.get("auto_accept_period_day") or 21) * 86400))
                self.conn.execute("UPDATE assignments SET status = 'SUBMITTED', submitted = ?, auto_accept_at = ? "
                                  "WHERE seq = ?", (stamp, auto_at, row["seq"]))
                fresh = self._assignment_row(row["id"])
                self._quality_control(row["pool_id"], row["user_id"], "SUBMIT", fresh)
                fresh = self._assignment_row(row["id"])
                if fresh["status"] == "SUBMITTED" and fresh["auto_accept_at"] == stamp:
                    self._accept(fresh, at=stamp)
            else:
                column = "expired" if outcome == "EXPIRE" else "skipped"
                status = "EXPIRED" if outcome == "EXPIRE" else "SKIPPED"
                self.conn.execute(f"UPDATE assignments SET status = ?, {column} = ? WHERE seq = ?",
                                  (status, stamp, row["seq"]))
                # The suite goes back to the pool (toloka-api.md 6.5).
                self.conn.execute("UPDATE tasks SET issued = MAX(issued - 1, 0) WHERE seq IN "
                                  "(SELECT task_seq FROM assignment_tasks WHERE assignment_seq = ?)", (row["seq"],))
                if outcome == "SKIP":
                    self._quality_control(row["pool_id"], row["user_id"], "SKIP", self._assignment_row(row["id"]))
        return len(rows)

    def auto_accept_due(self, now: dt.datetime) -> int:
        rows = self.conn.execute("SELECT * FROM assignments WHERE status = 'SUBMITTED' AND auto_accept_at IS NOT NULL "
                                 "AND auto_accept_at <= ? ORDER BY auto_accept_at, seq", (fmt_ts(now),)).fetchall()
        done = 0
        for row in rows:
            if self._accept(row):
                done += 1
            else:
                # Out of money: close the pool; the assignment waits for a top-up.
                pool = self._pool_row(row["pool_id"])
                if pool["status"] == "OPEN":
                    self._close_pool(pool["id"], "NOT_ENOUGH_BALANCE")
        return done

    def close_finished_pools(self, now: dt.datetime):
        """Expire pools past will_expire; close pools whose every task is done (after the delay)."""
        for row in self.conn.execute("SELECT * FROM pools WHERE status = 'OPEN'").fetchall():
            doc = self._pool_doc(row)
            if parse_ts(doc["will_expire"]) <= now:
                self._close_pool(row["id"], "EXPIRED")
                continue
            # control tasks (often infinite overlap) never keep a pool open once its general tasks are done
            general = int((doc.get("mixer_config") or {}).get("real_tasks_count") or 0) > 0
            left = self.conn.execute("SELECT 1 FROM tasks WHERE pool_id = ? AND (infinite = 1 OR overlap > issued) "
                                     f"{'AND ' + REAL_SQL if general else ''} LIMIT 1", (row["id"],)).fetchone()
            active = self.conn.execute("SELECT 1 FROM assignments WHERE pool_id = ? AND status = 'ACTIVE' LIMIT 1",
                                       (row["id"],)).fetchone()
            if left or active:
                if row["complete_at"]:
                    self.conn.execute("UPDATE pools SET complete_at = NULL WHERE id = ?", (row["id"],))
                continue
            if not row["complete_at"]:
                delay = float(doc.get("auto_close_after_complete_delay_seconds") or 0)
                at = now + self.sim_to_real(delay)
                self.conn.execute("UPDATE pools SET complete_at = ? WHERE id = ?", (fmt_ts(at), row["id"]))
                if at > now:
                    continue
            elif parse_ts(row["complete_at"]) > now:
                continue
            self._close_pool(row["id"], "COMPLETED")

    def can_afford(self, pool_doc, reserved: Decimal | None = None) -> bool:
        reserved = self.reserved_funds() if reserved is None else reserved
        return self.balance() - reserved >= cost_for(Decimal(str(pool_doc["reward_per_assignment"])))

    def close_for_balance(self, pool_id):
        self._close_pool(pool_id, "NOT_ENOUGH_BALANCE")

    def next_wakeup(self):
        """The earliest pending due/auto-accept/close time, for the scheduler's sleep."""
        times = [self.conn.execute("SELECT MIN(due) FROM assignments WHERE status = 'ACTIVE'").fetchone()[0],
                 self.conn.execute("SELECT MIN(auto_accept_at) FROM assignments WHERE status = 'SUBMITTED'").fetchone()[0],
                 self.conn.execute("SELECT MIN(complete_at) FROM pools WHERE status = 'OPEN'").fetchone()[0]]
        times = [parse_ts(t) for t in times if t]
        return min(times) if times else None


def _int_or_missing(value, what):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DoesNotExist(f"{what} {value!r} does not exist") from None
