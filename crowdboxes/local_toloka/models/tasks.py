"""Tasks: validation against the pool's input spec, sync and async (operation) creation, edits."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, out_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist, IncorrectAction, ValidationError, field_error
from crowdboxes.local_toloka.models.base import (INLINE_BATCH, MAX_BATCH, TASKS, CoreMixin, Doc, Params, _doc, _dumps,
                                                 object_id)
from crowdboxes.local_toloka.models.validation import _integer, _require_object, validate_input_values


def _flag(params: Params, name: str) -> bool:
    """A boolean query parameter (``true`` in any case), false when absent."""
    return str(params.get(name, "false")).lower() == "true"


def _batch_items(body: Any, expected: str, what: str) -> tuple[bool, list]:
    """``(single, items)`` of a POST body that is one object or an array (at most ``MAX_BATCH``) of them;
    ``expected`` is the ARRAY_EXPECTED message, ``what`` names the items in the size error."""
    single = isinstance(body, dict)
    items = [body] if single else ([] if body is None else body)
    if not isinstance(items, list):
        raise ValidationError.field("body", "ARRAY_EXPECTED", expected)
    if len(items) > MAX_BATCH:
        raise ValidationError.field("body", "ARRAY_SIZE_GREATER_THAN_MAX",
                                    f"At most {MAX_BATCH} {what} per request", [MAX_BATCH])
    return single, items


def _prepare_batch(items: list[Any], prepare: Callable[..., Any], single: bool,
                   skip_invalid: bool) -> tuple[list, dict, list]:
    """Validate a synchronous batch with ``prepare(item) -> (values, errors)``: ``(prepared, errors by
    index, indexes of the prepared)``; raises the validation error unless ``skip_invalid_items`` lets a
    list through with its bad items left out."""
    prepared, errors, where = [], {}, []
    for idx, item in enumerate(items):
        values, problem = prepare(item)
        if problem:
            errors[str(idx)] = problem
        else:
            prepared.append(values)
            where.append(str(idx))
    if errors and (single or not skip_invalid):
        raise ValidationError("Validation failed", errors["0"] if single else errors)
    return prepared, errors, where


class TasksMixin(CoreMixin):
    """Tasks, including TASK.BATCH_CREATE operations that survive a restart."""

    @staticmethod
    def _render_task(row: sqlite3.Row) -> dict:
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

    def _task_row(self, task_id: str) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM tasks WHERE id = ?", (str(task_id),)).fetchone()
        if row is None:
            raise DoesNotExist(f"Task {task_id} does not exist")
        return row

    def get_task(self, task_id: str) -> dict:
        with self.transaction():
            return self._render_task(self._task_row(task_id))

    def find_tasks(self, params: Params) -> dict:
        return self._search(TASKS, params, lambda rows: [self._render_task(r) for r in rows])

    def patch_task(self, task_id: str, body: Any, *, overlap_or_min: bool = False) -> dict:
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

    def _batch_pool(self, item: Any, pools: dict[Any, Any], kind: str) -> tuple[Any, Doc | None]:
        """The pool an uploaded task or suite (``kind``) goes to: ``((pool row, pool doc, task spec), None)``
        or ``(None, errors)``; ``pools`` caches the lookups of one batch by pool id."""
        if not isinstance(item, dict):
            return None, {kind.replace(" ", "_"): field_error("OBJECT_EXPECTED", f"A {kind} object is expected")}
        if item.get("pool_id") is None:
            return None, {"pool_id": field_error("VALUE_REQUIRED", "Value must be present and not equal to null")}
        key = str(item["pool_id"])
        if key not in pools:
            try:
                pool = self._pool_row(key)
                pools[key] = (pool, self._pool_doc(pool), self.pool_task_spec(pool))
            except DoesNotExist:
                pools[key] = None
        if pools[key] is None:
            return None, {"pool_id": field_error("ENTITY_DOES_NOT_EXIST", f"Pool {key} does not exist")}
        if pools[key][0]["status"] == "ARCHIVED":
            return None, {"pool_id": field_error("POOL_INAPPROPRIATE_STATUS", f"Pool {key} is archived")}
        return pools[key], None

    def _check_new_operation(self, op_id: str) -> None:
        """Refuse an ``operation_id`` already used (OPERATION_ALREADY_EXISTS)."""
        if self.conn.execute("SELECT 1 FROM operations WHERE id = ?", (op_id,)).fetchone():
            raise IncorrectAction(f"Operation {op_id} already exists", {"operation_id": op_id},
                                  code="OPERATION_ALREADY_EXISTS")

    def _prepare_task(self, item: Any, pools: dict[Any, Any], allow_defaults: bool) -> tuple[Any, Doc | None]:
        """Validate one task; returns ``(row values, errors)``."""
        found, problem = self._batch_pool(item, pools, "task")
        if problem:
            return None, problem
        pool, pool_doc, spec = found
        errors = validate_input_values(spec["input_spec"], item.get("input_values"))
        infinite = bool(item.get("infinite_overlap"))
        overlap = None
        defaults = pool_doc.get("defaults", {})
        if not infinite:
            # Toloka falls back to the suites default when the tasks default is unset (toloka-api.md 4.5);
            # a default of 0 (accepted on pools, see PoolsMixin._validate_pool) gives no overlap, so the
            # task's own overlap is used, and a task with neither is refused.
            default = defaults.get("default_overlap_for_new_tasks")
            if default is None:
                default = defaults.get("default_overlap_for_new_task_suites")
            own = item.get("overlap")
            if (allow_defaults or own is None) and default:
                overlap = default
            elif own is None:
                errors["overlap"] = field_error("VALUE_REQUIRED", "The pool's default overlap is 0: the task needs "
                                                "its own overlap (>= 1) or infinite_overlap")
            else:
                overlap = own
                if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
                    errors["overlap"] = field_error("VALUE_LESS_THAN_MIN", "overlap must be an integer >= 1", [1])
        if errors:
            return None, errors
        doc = {k: v for k, v in item.items()
               if k not in {"id", "pool_id", "created", "overlap", "infinite_overlap", "remaining_overlap", "__item_idx"}}
        return (pool["id"], overlap or 0, 1 if infinite else 0, doc), None

    def _insert_tasks(self, prepared: list[Any]) -> list[str]:
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

    def create_tasks(self, body: Any, params: dict) -> tuple[int, Doc]:
        """POST /tasks. Returns ``(status, json)``; async mode answers with a TASK.BATCH_CREATE operation."""
        allow_defaults, skip_invalid = _flag(params, "allow_defaults"), _flag(params, "skip_invalid_items")
        open_pool = _flag(params, "open_pool")
        single, items = _batch_items(body, "A task object or an array of tasks is expected", "tasks")
        if _flag(params, "async_mode"):
            return 202, self._start_batch_create(items, params, allow_defaults, skip_invalid, open_pool)
        with self.transaction():
            pools: dict[Any, Any] = {}
            prepared, errors, where = _prepare_batch(
                items, lambda item: self._prepare_task(item, pools, allow_defaults), single, skip_invalid)
            ids = self._insert_tasks(prepared)
            if open_pool:
                self._open_pools_of([p[0] for p in prepared])
            tasks = {row["id"]: self._render_task(row) for row in self._tasks_by_ids(ids)}
            if single:
                return 201, tasks[ids[0]]
            return 201, {"items": {idx: tasks[tid] for idx, tid in zip(where, ids)}, "validation_errors": errors}

    def _tasks_by_ids(self, ids: list[str]) -> list[sqlite3.Row]:
        rows = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows += self.conn.execute(f"SELECT * FROM tasks WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return rows

    def _start_batch_create(self, items: list[Any], params: Params, allow_defaults: bool, skip_invalid: bool,
                            open_pool: bool) -> dict:
        op_id = str(params.get("operation_id") or uuid.uuid4())
        with self.transaction():
            self._check_new_operation(op_id)
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

    def _resume_operations(self) -> None:
        """Finish batch creations a crash interrupted; chunks already committed are not redone."""
        rows = self.conn.execute("SELECT id FROM operations WHERE status = 'RUNNING' AND type = 'TASK.BATCH_CREATE'")
        for (op_id,) in rows.fetchall():
            self._run_batch_create(op_id)

    def _run_batch_create(self, op_id: str) -> dict:
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

        def echo_of(idx: int, item: Any) -> Doc:
            return item if isinstance(item, dict) else {"__item_idx": str(idx)}

        if not state["checked"] and not params["skip_invalid_items"]:
            with self.transaction():
                pools: dict[Any, Any] = {}
                bad = []
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
                        self._open_pools_of(state["pools"], log)
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
