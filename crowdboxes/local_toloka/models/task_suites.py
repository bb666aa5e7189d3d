"""Task suites (``/task-suites``): tasks the requester groups by hand, issued together as one assignment.

A created suite is a row of ``task_suites`` (id in the tasks' id space, ``object_id(pool, seq)``) and
its tasks are ordinary rows of ``tasks`` (so ``find_tasks``, assignments and the pool's remaining work
see them), linked by ``task_suite_tasks``. Every task of a suite carries the suite's overlap; the
suite's ``remaining_overlap`` is its tasks'. Toloka's smart mixing never takes a suite's tasks one by
one: :meth:`available_tasks` leaves them out, and :meth:`suite_tasks` hands a worker the first suite
they may take (highest ``issuing_order_override``, then creation order; not seen by them, overlap
left, ``reserved_for`` / ``unavailable_for``) before any mixed suite. The assignment's
``task_suite_id`` is the suite's id, ``mixed: false``. A pool holding only suites needs no
``mixer_config``.

The suites smart mixing made (one per assignment: its ``task_suite_id``, overlap 1) are task suites
too: ``GET /task-suites`` lists them with the created ones (``task_id`` finds the suites holding a
task, of either kind) and ``GET /task-suites/{id}`` answers for them, with ``mixed: true``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from decimal import Decimal
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, out_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist, ValidationError, field_error
from crowdboxes.local_toloka.models.base import (CoreMixin, Doc, ObjectId, Params, SearchSpec, _doc, _dumps, object_id,
                                                 offered_to)
from crowdboxes.local_toloka.models.tasks import _batch_items, _flag, _prepare_batch
from crowdboxes.local_toloka.models.trainings import known_solutions_errors
from crowdboxes.local_toloka.models.validation import _require_object, validate_input_values


MAX_OVERLAP = 30000
SUITE_TASK_FIELDS = ("input_values", "known_solutions", "message_on_unknown_solution", "origin_task_id")
SUITE_FIELDS = ("reserved_for", "unavailable_for", "issuing_order_override", "traits_all_of", "traits_any_of",
                "traits_none_of_any", "longitude", "latitude")
# created suites, and the suites smart mixing made (one per assignment, overlap 1): the search's "table"
ALL_SUITES = ("(SELECT seq, id, pool_id, created, overlap, infinite, doc, 0 AS mixed, NULL AS asg_seq FROM task_suites "
              "UNION ALL SELECT a.seq - 1, a.task_suite_id, a.pool_id, a.created, 1, 0, NULL, 1, a.seq "
              "FROM assignments a WHERE a.task_suite_id NOT IN (SELECT id FROM task_suites))")


def _task_filter(raw: Any) -> tuple[str, list[Any]]:
    return ("((mixed = 0 AND seq IN (SELECT m.suite_seq FROM task_suite_tasks m JOIN tasks t ON t.seq = m.task_seq "
            "WHERE t.id = ?)) OR (mixed = 1 AND asg_seq IN (SELECT at.assignment_seq FROM assignment_tasks at "
            "JOIN tasks t ON t.seq = at.task_seq WHERE t.id = ?)))", [str(raw), str(raw)])


TASK_SUITES = SearchSpec(
    ALL_SUITES, "id", "str",
    {"pool_id": ("pool_id", "int"), "overlap": ("overlap", "int"), "task_id": ("", _task_filter)},
    {"id": ("id", "str"), "created": ("created", "ts"), "overlap": ("overlap", "int")},
    {"id": "id", "created": "created"}, 50, 100_000)


def _overlap_value(value: Any, path: str, minimum: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or int(value) != value:
        raise ValidationError.field(path, "INTEGER_EXPECTED", "An integer is expected")
    if value < minimum:
        raise ValidationError.field(path, "VALUE_LESS_THAN_MIN", f"Value must be at least {minimum}", [minimum])
    if value > MAX_OVERLAP:
        raise ValidationError.field(path, "VALUE_GREATER_THAN_MAX", f"Value must be at most {MAX_OVERLAP}",
                                    [MAX_OVERLAP])
    return int(value)


def _bad_override(value: Any) -> bool:
    """An ``issuing_order_override`` that is not a number within +-99999.99999 (None is fine)."""
    if value is None:
        return False
    return isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or abs(float(value)) > 99999.99999


class TaskSuitesMixin(CoreMixin):
    """``/task-suites`` and the issuing of created suites."""

    # ---- rows and rendering ---------------------------------------------------------------------------

    def _suite_row(self, suite_id: str) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM task_suites WHERE id = ?", (str(suite_id),)).fetchone()
        if row is None:
            raise DoesNotExist(f"Task suite {suite_id} does not exist")
        return row

    def _suite_members(self, suite_seq: int) -> list:
        return self.conn.execute("SELECT t.* FROM task_suite_tasks m JOIN tasks t ON t.seq = m.task_seq "
                                 "WHERE m.suite_seq = ? ORDER BY m.pos", (suite_seq,)).fetchall()

    @staticmethod
    def _render_suite_task(task_row: sqlite3.Row) -> dict:
        doc = _doc(task_row["doc"])
        out = {k: doc[k] for k in SUITE_TASK_FIELDS if doc.get(k) is not None}
        out["id"] = task_row["id"]
        return out

    def _render_suite(self, row: sqlite3.Row) -> dict:
        doc = _doc(row["doc"])
        members = self._suite_members(row["seq"])
        out = {"id": row["id"], "pool_id": str(row["pool_id"]), "created": out_ts(row["created"]),
               "tasks": [self._render_suite_task(t) for t in members], "mixed": False, "automerged": False,
               "reserved_for": doc.get("reserved_for") or [], "unavailable_for": doc.get("unavailable_for") or []}
        out.update({k: doc[k] for k in SUITE_FIELDS if doc.get(k) is not None and k not in out})
        out.setdefault("issuing_order_override", 0)
        if row["infinite"]:
            out.update(overlap=None, infinite_overlap=True)
        else:
            issued = max((t["issued"] for t in members), default=0)
            out.update(overlap=row["overlap"], infinite_overlap=False,
                       remaining_overlap=max(row["overlap"] - issued, 0))
        return out

    def _render_mixed_suite(self, suite_id: str) -> dict | None:
        """A suite smart mixing made: what its (first) assignment shows."""
        row = self.conn.execute("SELECT * FROM assignments WHERE task_suite_id = ? ORDER BY seq LIMIT 1",
                                (str(suite_id),)).fetchone()
        if row is None:
            return None
        tasks = self.conn.execute("SELECT t.* FROM assignment_tasks at JOIN tasks t ON t.seq = at.task_seq "
                                  "WHERE at.assignment_seq = ? ORDER BY at.pos", (row["seq"],)).fetchall()
        return {"id": row["task_suite_id"], "pool_id": str(row["pool_id"]), "created": out_ts(row["created"]),
                "tasks": [self._render_suite_task(t) for t in tasks], "overlap": 1, "infinite_overlap": False,
                "remaining_overlap": 0, "mixed": True, "automerged": False, "reserved_for": [],
                "unavailable_for": [], "issuing_order_override": 0}

    # ---- the API ----------------------------------------------------------------------------------------

    def get_task_suite(self, suite_id: str) -> dict:
        with self.transaction():
            row = self.conn.execute("SELECT * FROM task_suites WHERE id = ?", (str(suite_id),)).fetchone()
            if row is not None:
                return self._render_suite(row)
            mixed = self._render_mixed_suite(suite_id)
            if mixed is None:
                raise DoesNotExist(f"Task suite {suite_id} does not exist")
            return mixed

    def find_task_suites(self, params: Params) -> dict:
        if not any(params.get(k) for k in ("pool_id", "task_id")):
            raise ValidationError.field("pool_id", "VALUE_REQUIRED", "One of pool_id, task_id is required")
        return self._search(TASK_SUITES, params, lambda rows: [
            self._render_mixed_suite(r["id"]) if r["mixed"] else self._render_suite(r) for r in rows])

    def _prepare_suite(self, item: Any, pools: dict[Any, Any], allow_defaults: bool) -> tuple[Any, Doc | None]:
        """Validate one suite: ``(values, None)`` or ``(None, errors)``."""
        found, problem = self._batch_pool(item, pools, "task suite")
        if problem:
            return None, problem
        pool, pool_doc, spec = found
        tasks = item.get("tasks")
        if not isinstance(tasks, list):
            return None, {"tasks": field_error("ARRAY_EXPECTED", "tasks must be an array")}
        if not tasks:
            return None, {"tasks": field_error("ARRAY_SIZE_LESS_THAN_MIN", "A task suite needs at least one task", [1])}
        training = pool_doc.get("type") == "TRAINING"
        errors = {}
        for i, task in enumerate(tasks):
            if not isinstance(task, dict):
                errors[f"tasks[{i}]"] = field_error("OBJECT_EXPECTED", "A task object is expected")
                continue
            errors.update(validate_input_values(spec["input_spec"], task.get("input_values"),
                                                prefix=f"tasks[{i}].input_values"))
            if task.get("baseline_solutions") is not None:
                errors[f"tasks[{i}].baseline_solutions"] = field_error(
                    "VALUE_NOT_ALLOWED", "baseline_solutions cannot be used in task suites")
            known = task.get("known_solutions")
            if known is not None and not isinstance(known, list):
                errors[f"tasks[{i}].known_solutions"] = field_error("ARRAY_EXPECTED", "An array is expected")
            elif training:
                errors.update(known_solutions_errors(known, f"tasks[{i}].known_solutions"))
        infinite = bool(item.get("infinite_overlap"))
        overlap = 0
        if not infinite:
            default = (pool_doc.get("defaults") or {}).get("default_overlap_for_new_task_suites")
            if item.get("overlap") is not None and not allow_defaults:
                try:
                    overlap = _overlap_value(item["overlap"], "overlap", 1)
                except ValidationError as exc:
                    errors.update(exc.payload)
            elif default:
                overlap = int(default)
            elif training:
                infinite = True  # a training has no defaults: its suites go to everyone who trains
            else:
                errors["overlap"] = field_error("VALUE_REQUIRED", "overlap is required (the pool has no default)")
        if _bad_override(item.get("issuing_order_override")):
            errors["issuing_order_override"] = field_error("VALUE_OUT_OF_BOUNDS",
                                                           "issuing_order_override must be within +-99999.99999")
        if errors:
            return None, errors
        doc = {k: item[k] for k in SUITE_FIELDS if item.get(k) is not None}
        task_docs = []
        for task in tasks:
            task_doc = {k: task[k] for k in SUITE_TASK_FIELDS if task.get(k) is not None}
            for k in ("reserved_for", "unavailable_for"):
                if doc.get(k):
                    task_doc[k] = doc[k]
            task_docs.append(task_doc)
        return (pool["id"], overlap, 1 if infinite else 0, doc, task_docs), None

    def _insert_suites(self, prepared: list[Any]) -> list:
        """Insert validated suites and their tasks; returns the suites' ids in order."""
        ids, now = [], fmt_ts(self.now())
        for pool_id, overlap, infinite, doc, task_docs in prepared:
            seq = self._next("object", 1 + len(task_docs))
            suite_id = object_id(pool_id, seq)
            self.conn.execute("INSERT INTO task_suites(seq, id, pool_id, created, overlap, infinite, doc) "
                              "VALUES(?, ?, ?, ?, ?, ?, ?)",
                              (seq, suite_id, pool_id, now, overlap, infinite, _dumps(doc)))
            rows = [(seq + 1 + pos, object_id(pool_id, seq + 1 + pos), pool_id, now, overlap, infinite, _dumps(d))
                    for pos, d in enumerate(task_docs)]
            self.conn.executemany("INSERT INTO tasks(seq, id, pool_id, created, overlap, infinite, doc) "
                                  "VALUES(?, ?, ?, ?, ?, ?, ?)", rows)
            self.conn.executemany("INSERT INTO task_suite_tasks(suite_seq, pos, task_seq) VALUES(?, ?, ?)",
                                  [(seq, pos, r[0]) for pos, r in enumerate(rows)])
            ids.append(suite_id)
            if getattr(self, "_suite_pools", None) is not None:
                self._suite_pools.add(int(pool_id))
        if ids:
            self._notify()
        return ids

    def create_task_suites(self, body: Any, params: dict) -> tuple[int, Doc]:
        """POST /task-suites: ``(status, json)``; one suite or a list; ``async_mode=true`` answers with a
        finished TASK_SUITE.BATCH_CREATE operation whose log lists each created suite's id."""
        allow_defaults, skip_invalid = _flag(params, "allow_defaults"), _flag(params, "skip_invalid_items")
        open_pool = _flag(params, "open_pool")
        single, items = _batch_items(body, "A task suite or an array of task suites is expected", "task suites")
        if _flag(params, "async_mode"):
            return 202, self._create_suites_operation(items, params, allow_defaults, skip_invalid, open_pool)
        with self.transaction():
            pools: dict[Any, Any] = {}
            prepared, errors, where = _prepare_batch(
                items, lambda item: self._prepare_suite(item, pools, allow_defaults), single, skip_invalid)
            ids = self._insert_suites(prepared)
            if open_pool:
                self._open_pools_of([p[0] for p in prepared])
            suites = [self._render_suite(self._suite_row(i)) for i in ids]
            if single:
                return 201, suites[0]
            return 201, {"items": dict(zip(where, suites)), "validation_errors": errors}

    def _create_suites_operation(self, items: list[Any], params: Params, allow_defaults: bool, skip_invalid: bool,
                                 open_pool: bool) -> dict:
        op_id = str(params.get("operation_id") or uuid.uuid4())
        with self.transaction():
            self._check_new_operation(op_id)
            pools: dict[Any, Any] = {}
            prepared: list[Any] = []
            echoes: list[Any] = []
            log: list[Doc] = []
            for idx, item in enumerate(items):
                echo = item if isinstance(item, dict) else {"__item_idx": str(idx)}
                values, problem = self._prepare_suite(item, pools, allow_defaults)
                if problem:
                    log.append({"type": "TASK_SUITE_VALIDATE", "success": False, "input": echo, "output": problem})
                else:
                    prepared.append(values)
                    echoes.append(echo)
            invalid = len(items) - len(prepared)
            failed = bool(invalid) and not skip_invalid
            if failed:
                prepared, echoes = [], []
            for echo, suite_id in zip(echoes, self._insert_suites([p for p in prepared])):
                log.append({"type": "TASK_SUITE_CREATE", "success": True, "input": echo,
                            "output": {"task_suite_id": suite_id}})
            if open_pool and prepared:
                self._open_pools_of([p[0] for p in prepared], log)
            now = out_ts(fmt_ts(self.now()))
            status = "FAIL" if failed else "SUCCESS"
            op = {"id": op_id, "type": "TASK_SUITE.BATCH_CREATE", "status": status, "submitted": now,
                  "started": now, "finished": now, "progress": 100,
                  "parameters": {"open_pool": open_pool, "allow_defaults": allow_defaults,
                                 "skip_invalid_items": skip_invalid},
                  "details": {"total_count": len(items), "valid_count": len(items) - invalid,
                              "not_valid_count": invalid, "success_count": len(prepared),
                              "failed_count": len(items) - len(prepared)}}
            self.conn.execute("INSERT INTO operations(id, type, status, submitted, doc, log) VALUES(?, ?, ?, ?, ?, ?)",
                              (op_id, op["type"], status, fmt_ts(self.now()), _dumps(op), _dumps(log)))
            return op

    def _set_suite_overlap(self, row: sqlite3.Row, overlap: int | None, infinite: int) -> None:
        args = (overlap, infinite, row["seq"])
        self.conn.execute("UPDATE task_suites SET overlap = ?, infinite = ? WHERE seq = ?", args)
        self.conn.execute("UPDATE tasks SET overlap = ?, infinite = ? WHERE seq IN "
                          "(SELECT task_seq FROM task_suite_tasks WHERE suite_seq = ?)", args)

    def patch_task_suite(self, suite_id: str, body: Any, params: Params | None = None) -> dict:
        """PATCH: ``overlap`` / ``infinite_overlap`` and ``issuing_order_override``; ``open_pool`` (query)."""
        body = _require_object(body)
        with self.transaction():
            row = self._suite_row(suite_id)
            if body.get("infinite_overlap"):
                self._set_suite_overlap(row, 0, 1)
            elif body.get("overlap") is not None:
                self._set_suite_overlap(row, _overlap_value(body["overlap"], "overlap", 1), 0)
            if "issuing_order_override" in body:
                override = body["issuing_order_override"]
                if _bad_override(override):
                    raise ValidationError.field("issuing_order_override", "VALUE_OUT_OF_BOUNDS",
                                                "issuing_order_override must be within +-99999.99999")
                doc = json.loads(row["doc"])
                doc["issuing_order_override"] = override or 0
                self.conn.execute("UPDATE task_suites SET doc = ? WHERE seq = ?", (_dumps(doc), row["seq"]))
            if _flag(params or {}, "open_pool"):
                pool = self._pool_row(row["pool_id"])
                if pool["status"] == "CLOSED":
                    self._open_pools_of([pool["id"]])
            self._notify()
            return self._render_suite(self._suite_row(suite_id))

    def patch_task_suite_overlap_or_min(self, suite_id: str, body: Any) -> dict:
        """``overlap`` or, if more workers already took the suite, that many (0 stops issuing it)."""
        body = _require_object(body)
        if body.get("overlap") is None:
            raise ValidationError.field("overlap", "VALUE_REQUIRED", "Value must be present and not equal to null")
        overlap = _overlap_value(body["overlap"], "overlap", 0)
        with self.transaction():
            row = self._suite_row(suite_id)
            issued = max((t["issued"] for t in self._suite_members(row["seq"])), default=0)
            self._set_suite_overlap(row, max(overlap, issued), 0)
            self._notify()
            return self._render_suite(self._suite_row(suite_id))

    # ---- the crowd's side ------------------------------------------------------------------------------

    def _has_task_suites(self, pool_id: ObjectId) -> bool:
        """Whether the pool holds created suites (asked on every offer, so kept in memory: suites are never
        deleted, and only :meth:`_insert_suites` adds them)."""
        pools = getattr(self, "_suite_pools", None)
        if pools is None:
            with self.lock:
                rows = self.conn.execute("SELECT DISTINCT pool_id FROM task_suites")
                pools = self._suite_pools = {r[0] for r in rows}
        return int(pool_id) in pools

    def available_tasks(self, pool_id: ObjectId, user_id: str, limit: int | None, *, golden: bool = False) -> list:
        """Smart mixing never takes the tasks of a created suite."""
        if not self._has_task_suites(pool_id):
            return super().available_tasks(pool_id, user_id, limit, golden=golden)
        members = {r[0] for r in self.conn.execute(
            "SELECT m.task_seq FROM task_suite_tasks m JOIN task_suites s ON s.seq = m.suite_seq WHERE s.pool_id = ?",
            (int(pool_id),))}
        out = [t for t in super().available_tasks(pool_id, user_id, None, golden=golden) if t[0] not in members]
        return out if limit is None else out[:limit]

    def suite_tasks(self, pool_row: sqlite3.Row, pool_doc: Doc, user_id: str) -> list:
        """A created suite the worker may take, else smart mixing's suite."""
        if self._has_task_suites(pool_row["id"]):
            rows = self.conn.execute(
                "SELECT s.seq, s.doc FROM task_suites s JOIN task_suite_tasks m0 ON m0.suite_seq = s.seq AND "
                "m0.pos = 0 JOIN tasks t0 ON t0.seq = m0.task_seq WHERE s.pool_id = ? AND "
                "(t0.infinite = 1 OR t0.overlap > t0.issued) AND NOT EXISTS (SELECT 1 FROM task_suite_tasks m "
                "JOIN assignment_tasks at ON at.task_seq = m.task_seq WHERE m.suite_seq = s.seq AND at.user_id = ?) "
                "ORDER BY COALESCE(json_extract(s.doc, '$.issuing_order_override'), 0) DESC, s.seq LIMIT 200",
                (pool_row["id"], user_id)).fetchall()
            for seq, _ in offered_to(rows, user_id):
                return [(t["seq"], json.loads(t["doc"])) for t in self._suite_members(seq)]
        return super().suite_tasks(pool_row, pool_doc, user_id)

    def issue_suite(self, pool_row: sqlite3.Row, pool_doc: Doc, user_id: str, tasks: list[tuple[int, Doc]]) -> str:
        asg_id = super().issue_suite(pool_row, pool_doc, user_id, tasks)
        if tasks and self._has_task_suites(pool_row["id"]):
            suite = self.conn.execute("SELECT s.id FROM task_suite_tasks m JOIN task_suites s ON s.seq = m.suite_seq "
                                      "WHERE m.task_seq = ?", (tasks[0][0],)).fetchone()
            if suite is not None:
                row = self.conn.execute("SELECT doc FROM assignments WHERE id = ?", (asg_id,)).fetchone()
                doc = json.loads(row[0])
                doc["mixed"] = False
                self.conn.execute("UPDATE assignments SET task_suite_id = ?, doc = ? WHERE id = ?",
                                  (suite[0], _dumps(doc), asg_id))
        return asg_id
