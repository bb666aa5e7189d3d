"""Pools: validation of the settings, create/edit, open/close/clone/archive.

Toloka's rules for the requester's hand: PUT edits a CLOSED pool only (close it for update, edit, open it;
one closed for update and left reopens in 15 minutes), PATCH changes the priority of an open or closed one,
and a pool is archived once CLOSED with nothing in progress, awaiting review or open to appeal.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, out_ts, parse_ts
from crowdboxes.local_toloka.exceptions import (DoesNotExist, EmptyConflict, IncorrectAction, TolokaError,
                                                ValidationError, inappropriate_status)
from crowdboxes.local_toloka.models.base import (APPEAL_DAYS, MAX_OVERLAP, MIN_REWARD, OWNER, POOLS, CoreMixin, Doc,
                                                 ObjectId, Params, _dumps, _num, cost_for)
from crowdboxes.local_toloka.models.validation import (_decimal, _integer, _referenced, _require_object, _string,
                                                       _timestamp)


CLOSE_INFO = ("last_close_reason", "last_stopped")
# A pool closed for update and not opened again opens by itself after this long. Real minutes, not divided by
# the crowd's speed: it is Toloka's timer on the requester's edit (a scaled one would reopen a pool between
# the close and the PUT of a fast test).
REOPEN_AFTER_UPDATE = dt.timedelta(minutes=15)


class PoolsMixin(CoreMixin):
    """Pools and their status transitions. The ``_*_row`` helpers serve any row of ``pools``: trainings
    (:mod:`.trainings`) are rows there too and share them."""

    def _pool_row(self, pool_id: Any) -> sqlite3.Row:  # any JSON value: a bad id is DoesNotExist
        try:
            pid = int(pool_id)
        except (TypeError, ValueError):
            raise DoesNotExist(f"Pool {pool_id!r} does not exist") from None
        row = self.conn.execute("SELECT * FROM pools WHERE id = ?", (pid,)).fetchone()
        if row is None:
            raise DoesNotExist(f"Pool {pool_id} does not exist")
        return row

    @staticmethod
    def _render_pool(row: sqlite3.Row) -> dict:
        doc = json.loads(row["doc"])
        doc.update(id=str(row["id"]), project_id=str(row["project_id"]), status=row["status"],
                   created=out_ts(row["created"]), owner=OWNER)
        if row["last_started"]:
            doc["last_started"] = out_ts(row["last_started"])
        return doc

    def _validate_pool(self, body: Any) -> dict:
        """A pool's settings as stored. ``type`` is read-only (deprecated, always REGULAR in the API): a body
        that says ``TRAINING`` is not refused for it, trainings are made through ``/trainings``."""
        _require_object(body)
        doc = {k: v for k, v in body.items()
               if k not in {"id", "status", "created", "owner", "last_started", "last_stopped", "last_close_reason", "type"}}
        doc["project_id"] = str(self._active_project(body)["id"])
        _string(body, "private_name")
        _decimal(body, "reward_per_assignment", minimum=MIN_REWARD)
        _integer(body, "assignment_max_duration_seconds", minimum=60)
        _timestamp(body, "will_expire")
        defaults = body.get("defaults")
        if not isinstance(defaults, dict):
            raise ValidationError.field("defaults", "VALUE_REQUIRED", "Value must be present and not equal to null")
        # OpenAPI ``Defaults`` says 1..30000, but production takes 0 (Toloka's getting-started notebook
        # sends it, e.g. for pools whose tasks carry their own or infinite overlap): 0..30000 here; the
        # suites default stays required, and negatives, non-integers and > 30000 are refused.
        _integer(defaults, "default_overlap_for_new_task_suites", minimum=0, maximum=MAX_OVERLAP,
                 path="defaults.default_overlap_for_new_task_suites")
        _integer(defaults, "default_overlap_for_new_tasks", required=False, minimum=0, maximum=MAX_OVERLAP,
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
            if not isinstance(cfg.get("rules", []), list):
                raise ValidationError.field(f"quality_control.configs[{i}].rules", "ARRAY_EXPECTED",
                                            "An array is expected")
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

    def _active_project(self, body: Any) -> sqlite3.Row:
        """The ACTIVE project the body's ``project_id`` names (a pool's or a training's), else the API's error."""
        project = _referenced(body, "project_id", self._project_row, "Project")
        if project["status"] != "ACTIVE":
            raise inappropriate_status(["ACTIVE"], "PROJECT_INAPPROPRIATE_STATUS")
        return project

    def _check_filter(self, node: Any, path: str) -> None:
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

    def create_pool(self, body: Any) -> dict:
        with self.transaction():
            doc = self._validate_pool(body)
            now = fmt_ts(self.now())
            project_id = int(doc.pop("project_id"))
            cur = self.conn.execute("INSERT INTO pools(project_id, status, created, doc) VALUES(?, 'CLOSED', ?, ?)",
                                    (project_id, now, _dumps(doc)))
            return self._render_pool(self._pool_row(cur.lastrowid))

    def get_pool(self, pool_id: ObjectId) -> dict:
        with self.transaction():
            row = self._pool_row(pool_id)
            if self._status_read_ends_first_reader_wait(row, self.now()):
                row = self._pool_row(pool_id)
            return self._render_pool(row)

    def find_pools(self, params: Params) -> dict:
        return self._search(POOLS, params, lambda rows: [self._render_pool(r) for r in rows])

    def update_pool(self, pool_id: ObjectId, body: Any) -> dict:
        """PUT: replace the settings. Toloka edits a CLOSED pool only ("The pool can't be edited if it's open.
        Close the pool before editing", API ``updatePool``): an OPEN or ARCHIVED one is 409. Suites issued
        before keep the reward they were issued with."""
        with self.transaction():
            row = self._pool_row(pool_id)
            if row["status"] == "OPEN":
                raise IncorrectAction("The pool is open: close it (close-for-update) before editing, then open it",
                                      {"appropriate_statuses": ["CLOSED"]}, code="INAPPROPRIATE_STATUS")
            doc = self._validate_pool(self._replacement_body(row, body, "pool"))
            doc.pop("project_id")
            self._replace_doc(row, doc)
            return self._render_pool(self._pool_row(row["id"]))

    def _replacement_body(self, row: sqlite3.Row, body: Any, what: str) -> dict:
        """A PUT body for ``row`` (a pool or training, ``what``): not while archived; the project stays."""
        if row["status"] == "ARCHIVED":
            raise IncorrectAction(f"The {what} is archived: archived objects are read-only",
                                  {"appropriate_statuses": ["CLOSED"]}, code="POOL_INAPPROPRIATE_STATUS")
        body = dict(_require_object(body))
        body.setdefault("project_id", str(row["project_id"]))
        if str(body["project_id"]) != str(row["project_id"]):
            raise ValidationError.field("project_id", "VALUE_NOT_ALLOWED", f"A {what} cannot move to another project")
        return body

    def _replace_doc(self, row: sqlite3.Row, doc: Doc) -> None:
        """Store a PUT's validated ``doc`` for ``row``, keeping its last close reason and time."""
        old = json.loads(row["doc"])
        for keep in CLOSE_INFO:
            if keep in old:
                doc[keep] = old[keep]
        self.conn.execute("UPDATE pools SET doc = ? WHERE id = ?", (_dumps(doc), row["id"]))
        self._notify()

    def patch_pool(self, pool_id: ObjectId, body: Any) -> dict:
        """PATCH: ``priority`` only (``PoolPatchFormV1``), on an OPEN or CLOSED pool without stopping it; an
        archived pool answers 409 with an empty body (API ``patchPool``); any other field is refused."""
        with self.transaction():
            row = self._pool_row(pool_id)
            if row["status"] == "ARCHIVED":
                raise EmptyConflict("The pool is archived")
            body = _require_object(body)
            extra = sorted(set(body) - {"priority"})
            if extra:
                raise ValidationError.field(extra[0], "VALUE_NOT_ALLOWED",
                                            f"PATCH changes priority only; {extra[0]} is edited by PUT on a "
                                            "closed pool")
            priority = _integer(body, "priority", minimum=0, maximum=100)
            doc = json.loads(row["doc"])
            doc["priority"] = priority
            self.conn.execute("UPDATE pools SET doc = ? WHERE id = ?", (_dumps(doc), row["id"]))
            return self._render_pool(self._pool_row(row["id"]))

    def _pool_doc(self, row: sqlite3.Row) -> dict:
        return json.loads(row["doc"])

    def _check_openable(self, row: sqlite3.Row, code: str = "INAPPROPRIATE_STATUS") -> None:
        """A pool or training opens only from CLOSED and while its project is ACTIVE."""
        if row["status"] != "CLOSED":
            raise inappropriate_status(["CLOSED"], code)
        if self._project_row(row["project_id"])["status"] != "ACTIVE":
            raise inappropriate_status(["ACTIVE"], "PROJECT_INAPPROPRIATE_STATUS")

    def _mark_open(self, row: sqlite3.Row, doc: Doc) -> None:
        """Store ``row`` (pool or training) as OPEN from now, with ``doc`` (its last close reason dropped)."""
        doc.pop("last_close_reason", None)
        self.conn.execute("UPDATE pools SET status = 'OPEN', last_started = ?, complete_at = NULL, doc = ? "
                          "WHERE id = ?", (fmt_ts(self.now()), _dumps(doc), row["id"]))
        self._notify()

    def _open_pool(self, row: sqlite3.Row) -> bool:
        """Open a CLOSED pool (raises the API's errors); no-op when already open."""
        if row["status"] == "OPEN":
            return False
        self._check_openable(row)
        doc = self._pool_doc(row)
        if not doc.get("mixer_config") and not self._has_task_suites(row["id"]):  # suites need no mixing
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
        self._mark_open(row, doc)
        return True

    def _open_pools_of(self, pool_ids: Iterable[ObjectId], log: list[Any] | None = None) -> None:
        """Open the CLOSED ones of these pools (``open_pool=true`` of an upload); a pool that cannot open
        stays as it is, with a POOL_OPEN entry in the operation ``log`` when one is given."""
        for pool_id in sorted(set(pool_ids)):
            entry = {"type": "POOL_OPEN", "input": {"pool_id": str(pool_id)}}
            try:
                self._open_pool(self._pool_row(pool_id))
                if log is not None:
                    log.append({**entry, "success": True, "output": {}})
            except TolokaError as exc:
                if log is not None:
                    log.append({**entry, "success": False, "output": exc.body()})

    def _close_pool(self, pool_id: ObjectId, reason: str) -> None:
        row = self._pool_row(pool_id)
        doc = self._pool_doc(row)
        doc["last_close_reason"] = reason
        doc["last_stopped"] = out_ts(fmt_ts(self.now()))
        self.conn.execute("UPDATE pools SET status = 'CLOSED', complete_at = NULL, doc = ? WHERE id = ?",
                          (_dumps(doc), row["id"]))

    def open_pool(self, pool_id: ObjectId) -> Doc | None:
        """``None`` when already open (HTTP 204), else the finished POOL.OPEN operation."""
        with self.transaction():
            row = self._pool_row(pool_id)
            return self._open_row(row, "POOL.OPEN", {"pool_id": str(row["id"])})

    def close_pool(self, pool_id: ObjectId, reason: str = "MANUAL") -> Doc | None:
        with self.transaction():
            row = self._pool_row(pool_id)
            return self._close_row(row, reason, "POOL.CLOSE", {"pool_id": str(row["id"])})

    def reopen_after_update(self, now: dt.datetime) -> int:
        """Open the pools closed for update that nobody reopened within :data:`REOPEN_AFTER_UPDATE` of the close,
        without the checks an open request makes (OpenAPI ``closePoolForUpdate``); how many. Trainings are not
        reopened (``closeTrainingForUpdate`` says nothing of it)."""
        reopened = 0
        for row in self.conn.execute("SELECT * FROM pools WHERE status = 'CLOSED'").fetchall():
            doc = self._pool_doc(row)
            if doc.get("type") == "TRAINING" or doc.get("last_close_reason") != "FOR_UPDATE" \
                    or not doc.get("last_stopped") or parse_ts(doc["last_stopped"]) + REOPEN_AFTER_UPDATE > now:
                continue
            self._mark_open(row, doc)
            reopened += 1
        return reopened

    def clone_pool(self, pool_id: ObjectId) -> dict:
        """An empty CLOSED pool with the same settings in the same project (POOL.CLONE operation)."""
        with self.transaction():
            row = self._pool_row(pool_id)
            return self._clone_row(row, "POOL.CLONE", {"pool_id": str(row["id"])}, "pool_id")

    def archive_pool(self, pool_id: ObjectId) -> Doc | None:
        """Archive a CLOSED pool that is no longer in use (API ``archivePool``, guide "Reviewing responses"):
        409 INAPPROPRIATE_STATUS while open, THERE_IS_ACTIVE_ASSIGNMENT while a Toloker still works on a
        suite, SUBMITTED_ASSIGNMENTS_CONFLICT while a response awaits review, THERE_IS_REJECTED_ASSIGNMENT
        until :data:`APPEAL_DAYS` after its last rejection. ``None`` (204) when already archived."""
        with self.transaction():  # responses whose review period is over are accepted first
            for asg in self.conn.execute("SELECT * FROM assignments WHERE pool_id = ? AND status = 'SUBMITTED' "
                                         "AND auto_accept_at <= ?", (self._pool_row(pool_id)["id"],
                                                                     fmt_ts(self.now()))).fetchall():
                self._accept(asg)
        with self.transaction():
            row = self._pool_row(pool_id)
            if row["status"] == "CLOSED":
                self._check_no_work_left(row)
            return self._archive_row(row, "POOL.ARCHIVE", {"pool_id": str(row["id"])})

    def _check_no_work_left(self, row: sqlite3.Row) -> None:
        """What keeps a closed pool from the archive: work in progress, unreviewed or appealable responses."""
        counts = dict(self.conn.execute("SELECT status, COUNT(*) FROM assignments WHERE pool_id = ? AND status IN "
                                        "('ACTIVE', 'SUBMITTED') GROUP BY status", (row["id"],)).fetchall())
        if counts.get("ACTIVE"):
            raise IncorrectAction(f"{counts['ACTIVE']} assignment(s) of the pool are still being completed",
                                  {"active": counts["ACTIVE"]}, code="THERE_IS_ACTIVE_ASSIGNMENT")
        if counts.get("SUBMITTED"):
            raise IncorrectAction(f"{counts['SUBMITTED']} submitted assignment(s) of the pool await review",
                                  {"submitted": counts["SUBMITTED"]}, code="SUBMITTED_ASSIGNMENTS_CONFLICT")
        last = self.conn.execute("SELECT MAX(rejected) FROM assignments WHERE pool_id = ? AND status = 'REJECTED'",
                                 (row["id"],)).fetchone()[0]
        if last:
            until = parse_ts(last) + self.sim_to_real(APPEAL_DAYS * 86400)
            if until > self.now():
                raise IncorrectAction(f"A pool with rejected assignments can be archived {APPEAL_DAYS} days after the "
                                      f"last rejection, from {out_ts(fmt_ts(until))}",
                                      {"archivable_from": out_ts(fmt_ts(until))}, code="THERE_IS_REJECTED_ASSIGNMENT")

    # ---- status actions of any pools row (pool or training): the finished operation, None when no-op ----

    def _open_row(self, row: sqlite3.Row, kind: str, parameters: Doc) -> Doc | None:
        if row["status"] == "OPEN":
            return None
        self._open_pool(row)
        return self._finished_operation(kind, parameters)

    def _close_row(self, row: sqlite3.Row, reason: str, kind: str, parameters: Doc,
                   code: str = "INAPPROPRIATE_STATUS") -> Doc | None:
        if row["status"] == "CLOSED":
            return None
        if row["status"] != "OPEN":
            raise inappropriate_status(["OPEN"], code)
        self._close_pool(row["id"], reason)
        return self._finished_operation(kind, parameters)

    def _archive_row(self, row: sqlite3.Row, kind: str, parameters: Doc,
                     code: str = "INAPPROPRIATE_STATUS") -> Doc | None:
        if row["status"] == "ARCHIVED":
            return None
        if row["status"] != "CLOSED":
            raise inappropriate_status(["CLOSED"], code)
        self.conn.execute("UPDATE pools SET status = 'ARCHIVED' WHERE id = ?", (row["id"],))
        return self._finished_operation(kind, parameters)

    def _clone_row(self, row: sqlite3.Row, kind: str, parameters: Doc, new_key: str) -> dict:
        """An empty CLOSED copy of ``row``; the operation's ``details[new_key]`` is the copy's id."""
        doc = self._pool_doc(row)
        for key in CLOSE_INFO:
            doc.pop(key, None)
        for cfg in doc.get("quality_control", {}).get("configs", []):
            cfg.get("collector_config", {})["uuid"] = str(uuid.uuid4())
        cur = self.conn.execute("INSERT INTO pools(project_id, status, created, doc) VALUES(?, 'CLOSED', ?, ?)",
                                (row["project_id"], fmt_ts(self.now()), _dumps(doc)))
        return self._finished_operation(kind, parameters, {new_key: str(cur.lastrowid)})
