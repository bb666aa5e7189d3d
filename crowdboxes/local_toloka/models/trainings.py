"""Trainings (``/trainings``), training tasks, and pools' training requirements.

A training is a pool of unpaid task suites of tasks with ``known_solutions`` and hints
(``message_on_unknown_solution``). On Toloka it is a pool of its own kind sharing the pools' id space
(a training task's ``pool_id`` is the training's id; so is its assignments' ``pool_id``), so it is a
row of the ``pools`` table whose doc has ``type: "TRAINING"``. Besides the Training fields the doc
keeps what the crowd's side reads from any pool: ``reward_per_assignment`` 0, instant acceptance, and a
``will_expire`` that never comes (trainings do not expire). ``_render_training`` shows only the
fields of toloka-kit's ``Training``.

The simulated crowd (scheduler contract: ``open_pools`` / ``suite_tasks`` / ``issue_suite`` /
``finish_due``; this mixin sits before the others in ``Backend``'s bases and extends them with
``super()``):

* an OPEN training is offered only while an OPEN pool of its project links to it
  (``quality_control.training_requirement.training_pool_id``); trainings come before the pools in
  :meth:`open_pools`, with the linked pools' filters (any of them), so a worker trains first;
* a worker gets suites of ``training_tasks_in_task_suite_count`` tasks they have not seen in this
  attempt (in creation order with ``mix_tasks_in_creation_order``, else at random; shuffled with
  ``shuffle_tasks_in_task_suite``) until ``task_suites_required_to_pass`` suites are submitted, or the
  training has no task left for them;
* on submission the first answer to each task is scored against its known solutions (exact match on
  the fields a solution lists, the best ``correctness_weight``, 1 by default); wrong first answers go
  to the assignment's ``first_declined_solution_attempt`` and its solutions hold the corrected answer
  (the worker saw the hint). The training score is ``100 * sum(weights) / answers`` over the attempt;
* a pool with a training requirement gives work only to workers whose finished score is at least
  ``training_passing_skill_value`` (and, with the pool's ``training_config.training_skill_ttl_days``,
  not older than that). The others may retry after ``retry_training_after_days`` (simulated time, like
  every duration here; at once when their skill expired); without it they stay out;
* training assignments are accepted at once and cost nothing (Toloka does not pay for training);
* a worker who finishes gets their score as the value of the training's skill (hidden, ``training:
  true``, made at the first finish; :meth:`training_skill_id`), as Toloka assigns training skills.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
from decimal import Decimal
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, out_ts, parse_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist, IncorrectAction, ValidationError, field_error
from crowdboxes.local_toloka.models.base import (OWNER, POOLS, CoreMixin, Doc, ObjectId, Params, SearchSpec, _dumps,
                                                 _id_ranges, correctness_weight, offered_to, solution_weight)
from crowdboxes.local_toloka.models.validation import _integer, _require_object, _string


TRAINING_TYPE = "TRAINING"
TRAINING_FIELDS = ("private_name", "may_contain_adult_content", "assignment_max_duration_seconds",
                   "mix_tasks_in_creation_order", "shuffle_tasks_in_task_suite", "training_tasks_in_task_suite_count",
                   "task_suites_required_to_pass", "retry_training_after_days", "inherited_instructions",
                   "public_instructions", "metadata")
BOOLEAN_FIELDS = ("may_contain_adult_content", "mix_tasks_in_creation_order", "shuffle_tasks_in_task_suite",
                  "inherited_instructions")
NEVER = "9999-12-31T23:59:59.000000"  # a training's will_expire: trainings do not expire
# what the pools' code reads from any pools row, kept in a training's doc but never shown
INTERNAL = {"type": TRAINING_TYPE, "will_expire": NEVER, "reward_per_assignment": 0, "auto_accept_solutions": True,
            "auto_close_after_complete_delay_seconds": 0, "priority": 0}
IS_TRAINING_SQL = "json_extract(doc, '$.type') = 'TRAINING'"
NOT_TRAINING_SQL = "COALESCE(json_extract(doc, '$.type'), '') != 'TRAINING'"

TRAININGS = SearchSpec("pools", "id", "int", {"status": ("status", "str"), "project_id": ("project_id", "int")},
                       {**_id_ranges(), "last_started": ("last_started", "ts")},
                       {"id": "id", "created": "created", "last_started": "last_started"}, 20, 300)


def known_solutions_errors(known: Any, path: str = "known_solutions") -> dict:
    """What is wrong with a training task's ``known_solutions`` (``{}`` when fine): a non-empty array of
    objects with ``output_values``, whose ``correctness_weight`` (optional) is a number. The crowd scores
    answers with them (:func:`solution_weight`), so nothing else may reach the scheduler."""
    if not isinstance(known, list) or not known:
        return {path: field_error("VALUE_REQUIRED", "A training task needs known_solutions")}
    for i, solution in enumerate(known):
        if not isinstance(solution, dict) or not isinstance(solution.get("output_values"), dict):
            return {f"{path}[{i}].output_values": field_error("VALUE_REQUIRED", "A known solution needs output_values")}
        weight = solution.get("correctness_weight")
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float, Decimal))):
            return {f"{path}[{i}].correctness_weight": field_error("FLOAT_EXPECTED", "A number is expected")}
    return {}


def training_requirement(pool_doc: Doc) -> dict | None:
    requirement = ((pool_doc or {}).get("quality_control") or {}).get("training_requirement")
    return requirement if isinstance(requirement, dict) else None


class TrainingsMixin(CoreMixin):
    """``/trainings`` and the training side of the crowd's work."""

    # ---- storage ------------------------------------------------------------------------------------

    @staticmethod
    def _is_training_doc(doc: Doc) -> bool:
        return (doc or {}).get("type") == TRAINING_TYPE

    def _training_row(self, training_id: Any) -> sqlite3.Row:  # any JSON value: a bad id is DoesNotExist
        try:
            tid = int(training_id)
        except (TypeError, ValueError):
            raise DoesNotExist(f"Training {training_id!r} does not exist") from None
        row = self.conn.execute(f"SELECT * FROM pools WHERE id = ? AND {IS_TRAINING_SQL}", (tid,)).fetchone()
        if row is None:
            raise DoesNotExist(f"Training {training_id} does not exist")
        return row

    @staticmethod
    def _render_training(row: sqlite3.Row) -> dict:
        doc = json.loads(row["doc"])
        out = {k: doc[k] for k in TRAINING_FIELDS if doc.get(k) is not None}
        out.update(id=str(row["id"]), project_id=str(row["project_id"]), status=row["status"],
                   created=out_ts(row["created"]), owner=OWNER)
        for key in ("last_close_reason", "last_stopped"):
            if doc.get(key):
                out[key] = doc[key]
        if row["last_started"]:
            out["last_started"] = out_ts(row["last_started"])
        return out

    def _validate_training(self, body: Any) -> tuple[int, dict]:
        _require_object(body)
        project = self._active_project(body)
        _string(body, "private_name")
        _integer(body, "training_tasks_in_task_suite_count", minimum=0, maximum=500)
        _integer(body, "task_suites_required_to_pass", required=False, minimum=0, maximum=500)
        _integer(body, "assignment_max_duration_seconds", required=False, minimum=5, maximum=2147483647)
        _integer(body, "retry_training_after_days", required=False, minimum=1)
        for key in BOOLEAN_FIELDS:
            if body.get(key) is not None and not isinstance(body[key], bool):
                raise ValidationError.field(key, "BOOLEAN_EXPECTED", "A boolean is expected")
        if body.get("public_instructions") is not None and not isinstance(body["public_instructions"], str):
            raise ValidationError.field("public_instructions", "STRING_EXPECTED", "A string is expected")
        doc = {k: body[k] for k in TRAINING_FIELDS if body.get(k) is not None}
        # server defaults (OpenAPI TrainingViewV1 / toloka-kit's Training docstring)
        doc.setdefault("inherited_instructions", False)
        doc.setdefault("mix_tasks_in_creation_order", True)
        doc.setdefault("shuffle_tasks_in_task_suite", True)
        doc.setdefault("may_contain_adult_content", False)
        doc.setdefault("assignment_max_duration_seconds", 600)
        doc.update(INTERNAL)
        return project["id"], doc

    # ---- the API --------------------------------------------------------------------------------------

    def create_training(self, body: Any) -> dict:
        with self.transaction():
            project_id, doc = self._validate_training(body)
            cur = self.conn.execute("INSERT INTO pools(project_id, status, created, doc) VALUES(?, 'CLOSED', ?, ?)",
                                    (project_id, fmt_ts(self.now()), _dumps(doc)))
            return self._render_training(self._training_row(cur.lastrowid))

    def get_training(self, training_id: ObjectId) -> dict:
        with self.transaction():
            return self._render_training(self._training_row(training_id))

    def find_trainings(self, params: Params) -> dict:
        return self._search(TRAININGS, params, lambda rows: [self._render_training(r) for r in rows],
                            extra_where=[IS_TRAINING_SQL])

    def update_training(self, training_id: ObjectId, body: Any) -> dict:
        """PUT: every field (read-only ones ignored); not while archived; the project cannot change."""
        with self.transaction():
            row = self._training_row(training_id)
            _, doc = self._validate_training(self._replacement_body(row, body, "training"))
            self._replace_doc(row, doc)
            return self._render_training(self._training_row(row["id"]))

    @staticmethod
    def _training_params(row: sqlite3.Row) -> dict:
        return {"training_id": str(row["id"])}

    def _open_training(self, row: sqlite3.Row) -> bool:
        if row["status"] == "OPEN":
            return False
        self._check_openable(row, "POOL_INAPPROPRIATE_STATUS")
        if not self.conn.execute("SELECT 1 FROM tasks WHERE pool_id = ? LIMIT 1", (row["id"],)).fetchone():
            raise IncorrectAction("Training contains no tasks. Operation is not allowed", code="EMPTY_POOL")
        self._mark_open(row, json.loads(row["doc"]))
        return True

    def open_training(self, training_id: ObjectId) -> Doc | None:
        """``None`` when already open (HTTP 204), else the finished TRAINING.OPEN operation."""
        with self.transaction():
            row = self._training_row(training_id)
            return self._open_row(row, "TRAINING.OPEN", self._training_params(row))

    def close_training(self, training_id: ObjectId, reason: str = "MANUAL") -> Doc | None:
        with self.transaction():
            row = self._training_row(training_id)
            return self._close_row(row, reason, "TRAINING.CLOSE", self._training_params(row),
                                   "POOL_INAPPROPRIATE_STATUS")

    def archive_training(self, training_id: ObjectId) -> Doc | None:
        """CLOSED only, and only once every pool linked to it is archived (TRAINING_ARCHIVE_CONFLICT)."""
        with self.transaction():
            row = self._training_row(training_id)
            if row["status"] == "CLOSED":
                linked = [str(r["id"]) for r in self._pools_linked_to(row["id"]) if r["status"] != "ARCHIVED"]
                if linked:
                    raise IncorrectAction("The training is linked to pools that are not archived",
                                          {"pool_ids": linked}, code="TRAINING_ARCHIVE_CONFLICT")
            return self._archive_row(row, "TRAINING.ARCHIVE", self._training_params(row), "POOL_INAPPROPRIATE_STATUS")

    def clone_training(self, training_id: ObjectId) -> dict:
        """An empty CLOSED training with the same settings (TRAINING.CLONE; ``details.training_id`` = new)."""
        with self.transaction():
            row = self._training_row(training_id)
            return self._clone_row(row, "TRAINING.CLONE", self._training_params(row), "training_id")

    def _pools_linked_to(self, training_id: ObjectId) -> list:
        return self.conn.execute(
            f"SELECT * FROM pools WHERE {NOT_TRAINING_SQL} AND "
            "json_extract(doc, '$.quality_control.training_requirement.training_pool_id') IN (?, ?)",
            (str(training_id), int(training_id))).fetchall()

    # ---- pools: trainings stay out of /pools; training requirements are checked -------------------------

    def find_pools(self, params: Params) -> dict:
        return self._search(POOLS, params, lambda rs: [self._render_pool(r) for r in rs],
                            extra_where=[NOT_TRAINING_SQL])

    def _refuse_training(self, pool_id: ObjectId) -> None:
        try:
            row = self.conn.execute("SELECT doc FROM pools WHERE id = ?", (int(pool_id),)).fetchone()
        except (TypeError, ValueError):
            return
        if row is not None and self._is_training_doc(json.loads(row[0])):
            raise IncorrectAction(f"Pool {pool_id} is a training; use /trainings", code="POOL_IS_TRAINING")

    def update_pool(self, pool_id: ObjectId, body: Any) -> dict:
        with self.transaction():
            self._refuse_training(pool_id)
            return super().update_pool(pool_id, body)

    def patch_pool(self, pool_id: ObjectId, body: Any) -> dict:
        with self.transaction():
            self._refuse_training(pool_id)
            return super().patch_pool(pool_id, body)

    def open_pool(self, pool_id: ObjectId) -> Doc | None:
        with self.transaction():
            self._refuse_training(pool_id)
            return super().open_pool(pool_id)

    def close_pool(self, pool_id: ObjectId, reason: str = "MANUAL") -> Doc | None:
        with self.transaction():
            self._refuse_training(pool_id)
            return super().close_pool(pool_id, reason)

    def archive_pool(self, pool_id: ObjectId) -> Doc | None:
        with self.transaction():
            self._refuse_training(pool_id)
            return super().archive_pool(pool_id)

    def clone_pool(self, pool_id: ObjectId) -> dict:
        with self.transaction():
            self._refuse_training(pool_id)
            return super().clone_pool(pool_id)

    def _open_pool(self, row: sqlite3.Row) -> bool:
        """Opening a training through a task upload (``open_pool=true``) opens it as a training."""
        if self._is_training_doc(json.loads(row["doc"])):
            return self._open_training(row)
        return super()._open_pool(row)

    def _validate_pool(self, body: Any) -> dict:
        """The pools' checks, plus ``quality_control.training_requirement`` and ``training_config``."""
        doc = super()._validate_pool(body)
        qc = doc.get("quality_control") or {}
        if "training_requirement" in qc and qc["training_requirement"] is None:
            qc.pop("training_requirement")
        if "training_requirement" in qc:
            path = "quality_control.training_requirement"
            requirement = qc["training_requirement"]
            if not isinstance(requirement, dict):
                raise ValidationError.field(path, "OBJECT_EXPECTED", "An object is expected")
            if requirement.get("training_pool_id") in (None, ""):
                raise ValidationError.field(f"{path}.training_pool_id", "VALUE_REQUIRED",
                                            "Value must be present and not equal to null")
            _integer(requirement, "training_passing_skill_value", minimum=0, maximum=100,
                     path=f"{path}.training_passing_skill_value")
            try:
                training = self._training_row(requirement["training_pool_id"])
            except DoesNotExist:
                raise ValidationError.field(f"{path}.training_pool_id", "ENTITY_DOES_NOT_EXIST",
                                            f"Training {requirement['training_pool_id']} does not exist") from None
            if str(training["project_id"]) != str(doc["project_id"]):
                raise ValidationError.field(f"{path}.training_pool_id", "VALUE_NOT_ALLOWED",
                                            "The training belongs to another project")
            if training["status"] == "ARCHIVED":
                raise ValidationError.field(f"{path}.training_pool_id", "VALUE_NOT_ALLOWED", "The training is archived")
            requirement["training_pool_id"] = str(training["id"])
        config = doc.get("training_config")
        if config is not None:  # the crowd reads training_skill_ttl_days on every offer (_skill_expired)
            if not isinstance(config, dict):
                raise ValidationError.field("training_config", "OBJECT_EXPECTED", "An object is expected")
            _integer(config, "training_skill_ttl_days", required=False, minimum=0,
                     path="training_config.training_skill_ttl_days")
        return doc

    # ---- training tasks -------------------------------------------------------------------------------

    def _prepare_task(self, item: Any, pools: dict[Any, Any], allow_defaults: bool) -> tuple[Any, Doc | None]:
        """Training tasks need ``known_solutions``; without their own overlap they get infinite overlap
        (a training has no ``defaults``: every worker who trains sees its tasks)."""
        if isinstance(item, dict) and item.get("pool_id") is not None and self._is_training_id(item["pool_id"], pools):
            errors = known_solutions_errors(item.get("known_solutions"))
            if errors:
                return None, errors
            if item.get("overlap") is None and item.get("infinite_overlap") is None:
                item = {**item, "infinite_overlap": True}
        return super()._prepare_task(item, pools, allow_defaults)

    def patch_task(self, task_id: str, body: Any, *, overlap_or_min: bool = False) -> dict:
        """A training task keeps valid known solutions: PATCH may edit them, not remove or break them."""
        with self.transaction():
            row = self._task_row(task_id)
            if isinstance(body, dict) and "known_solutions" in body and self._is_training_id(row["pool_id"], {}):
                errors = known_solutions_errors(body["known_solutions"])
                if errors:
                    raise ValidationError("Validation failed", errors)
            return super().patch_task(task_id, body, overlap_or_min=overlap_or_min)

    def _is_training_id(self, pool_id: ObjectId, cache: dict[Any, bool]) -> bool:
        key = ("training?", str(pool_id))
        if key not in cache:
            try:
                row = self.conn.execute("SELECT doc FROM pools WHERE id = ?", (int(pool_id),)).fetchone()
            except (TypeError, ValueError):
                row = None
            cache[key] = row is not None and self._is_training_doc(json.loads(row[0]))
        return cache[key]

    # ---- the crowd's side -------------------------------------------------------------------------------

    def open_pools(self) -> list:
        """Trainings first (each with its OPEN linked pools' filters), then the pools; a training no OPEN
        pool links to is not offered."""
        listed = super().open_pools()
        pools = [(r, d) for r, d in listed if not self._is_training_doc(d)]
        trainings = []
        for row, doc in listed:
            if not self._is_training_doc(doc):
                continue
            linked = [d for r, d in pools
                      if str((training_requirement(d) or {}).get("training_pool_id")) == str(row["id"])]
            if not linked:
                continue
            offer = dict(doc)
            offer["filter"] = {"or": [d["filter"] for d in linked if d.get("filter")]} \
                if all(d.get("filter") for d in linked) else None
            offer["priority"] = max(int(d.get("priority") or 0) for d in linked)
            trainings.append((row, offer))
        return trainings + pools

    def _training_progress(self, training_id: ObjectId, user_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM training_progress WHERE training_id = ? AND user_id = ?",
                                 (int(training_id), user_id)).fetchone()

    def _training_tasks_left(self, training_row: sqlite3.Row, user_id: str, since: str | None) -> list:
        rows = self.conn.execute(
            "SELECT seq, doc FROM tasks WHERE pool_id = ? AND (infinite = 1 OR overlap > issued) AND seq NOT IN "
            "(SELECT at.task_seq FROM assignment_tasks at JOIN assignments a ON a.seq = at.assignment_seq "
            " WHERE at.pool_id = ? AND at.user_id = ? AND a.created >= ? AND a.status NOT IN ('SKIPPED', 'EXPIRED')) "
            "ORDER BY seq", (training_row["id"], training_row["id"], user_id, since or "")).fetchall()
        return list(offered_to(rows, user_id))

    def _finish_training(self, training_id: ObjectId, user_id: str) -> None:
        cur = self.conn.execute("UPDATE training_progress SET finished = ? WHERE training_id = ? AND user_id = ? "
                                "AND finished IS NULL", (fmt_ts(self.now()), int(training_id), user_id))
        if cur.rowcount:
            self._set_user_skill(self.training_skill_id(training_id), user_id,
                                 self.training_score(training_id, user_id))

    def training_skill_id(self, training_id: ObjectId) -> str:
        """The training's skill (``training: true``, hidden), made when a worker first finishes it; each
        worker who finishes gets their score as its value, so a pool filter on it works too."""
        key = f"training_skill:{int(training_id)}"
        skill_id = self._meta(key)
        if skill_id is None:
            name = json.loads(self._training_row(training_id)["doc"]).get("private_name") or f"Training {training_id}"
            skill_id = self.create_skill({"name": name, "hidden": True, "training": True,
                                          "private_comment": f"Skill of training {int(training_id)}"})["id"]
            self._set_meta(key, skill_id)
        return skill_id

    def training_score(self, training_id: ObjectId, user_id: str) -> float | None:
        """The worker's finished training score (0..100), or None while not trained."""
        row = self._training_progress(training_id, user_id)
        if row is None or row["finished"] is None:
            return None
        return 100.0 * row["score_sum"] / row["answers"] if row["answers"] else 0.0

    def _skill_expired(self, pool_doc: Doc, progress: sqlite3.Row | None) -> bool:
        """The pool's ``training_config.training_skill_ttl_days`` (simulated) ran out since the training."""
        ttl: Any = ((pool_doc or {}).get("training_config") or {}).get("training_skill_ttl_days")
        return bool(ttl) and progress is not None and progress["finished"] is not None and \
            parse_ts(progress["finished"]) + self.sim_to_real(float(ttl) * 86400) <= self.now()

    def _passes_requirement(self, pool_doc: Doc, user_id: str) -> bool:
        requirement = training_requirement(pool_doc)
        if not requirement:
            return True
        score = self.training_score(requirement["training_pool_id"], user_id)
        if score is None or score < float(requirement.get("training_passing_skill_value") or 0):
            return False
        return not self._skill_expired(pool_doc, self._training_progress(requirement["training_pool_id"], user_id))

    def suite_tasks(self, pool_row: sqlite3.Row, pool_doc: Doc, user_id: str) -> list:
        if self._is_training_doc(pool_doc):
            return self._training_suite(pool_row, pool_doc, user_id)
        if not self._passes_requirement(pool_doc, user_id):
            return []
        return super().suite_tasks(pool_row, pool_doc, user_id)

    def _training_suite(self, row: sqlite3.Row, doc: Doc, user_id: str) -> list:
        progress = self._training_progress(row["id"], user_id)
        if progress is not None and progress["finished"] is not None:
            linked = [self._pool_doc(r) for r in self._pools_linked_to(row["id"]) if r["status"] == "OPEN"]
            if any(self._passes_requirement(d, user_id) for d in linked):
                return []  # trained: nothing more to learn here
            days = doc.get("retry_training_after_days")
            expired = any(self._skill_expired(d, progress) for d in linked)  # a passed skill ran out: train again
            if not expired and (not days or parse_ts(progress["finished"]) + self.sim_to_real(float(days) * 86400)
                                > self.now()):
                return []
            self.conn.execute("UPDATE training_progress SET attempt = attempt + 1, suites = 0, answers = 0, "
                              "score_sum = 0, started = ?, finished = NULL WHERE training_id = ? AND user_id = ?",
                              (fmt_ts(self.now()), row["id"], user_id))
            progress = self._training_progress(row["id"], user_id)
        candidates = self._training_tasks_left(row, user_id, progress["started"] if progress else None)
        if not candidates:
            if progress is not None and progress["suites"] and not self.conn.execute(
                    "SELECT 1 FROM assignments WHERE pool_id = ? AND user_id = ? AND status = 'ACTIVE' LIMIT 1",
                    (row["id"], user_id)).fetchone():
                self._finish_training(row["id"], user_id)  # the training has nothing more for them
            return []
        size = max(1, int(doc.get("training_tasks_in_task_suite_count") or 1))
        rng = random.Random(f"{row['id']}:{user_id}:{progress['attempt'] if progress else 1}:"
                            f"{progress['suites'] if progress else 0}:{len(candidates)}")
        if doc.get("mix_tasks_in_creation_order", True):
            suite = candidates[:size]
        else:
            suite = sorted(rng.sample(candidates, min(size, len(candidates))), key=lambda t: t[0])
        if doc.get("shuffle_tasks_in_task_suite", True):
            rng.shuffle(suite)
        return suite

    def can_afford(self, pool_doc: Doc, reserved: Decimal | None = None) -> bool:
        if self._is_training_doc(pool_doc):
            return True  # training is free
        return super().can_afford(pool_doc, reserved)

    def issue_suite(self, pool_row: sqlite3.Row, pool_doc: Doc, user_id: str, tasks: list[tuple[int, Doc]]) -> str:
        asg_id = super().issue_suite(pool_row, pool_doc, user_id, tasks)
        if self._is_training_doc(pool_doc):
            self.conn.execute("UPDATE assignments SET cost = '0' WHERE id = ?", (asg_id,))
            if self._training_progress(pool_row["id"], user_id) is None:  # the first attempt starts now
                self.conn.execute("INSERT INTO training_progress(training_id, user_id, started) "
                                  "SELECT ?, ?, created FROM assignments WHERE id = ?",
                                  (pool_row["id"], user_id, asg_id))
        return asg_id

    def finish_due(self, now: dt.datetime) -> int:
        """Score the training suites about to be submitted, then let the work's own ``finish_due`` run."""
        rows = self.conn.execute(
            "SELECT a.* FROM assignments a JOIN pools p ON p.id = a.pool_id WHERE a.status = 'ACTIVE' AND "
            f"a.due IS NOT NULL AND a.due <= ? AND json_extract(p.doc, '$.type') = 'TRAINING'",
            (fmt_ts(now),)).fetchall()
        for row in rows:
            plan = json.loads(row["plan"])
            if plan.get("outcome") != "SUBMIT":
                continue
            self._score_training_suite(row, plan)
        return super().finish_due(now)

    def _score_training_suite(self, row: sqlite3.Row, plan: Doc) -> None:
        tasks = [json.loads(t[0]) for t in self.conn.execute(
            "SELECT t.doc FROM assignment_tasks at JOIN tasks t ON t.seq = at.task_seq WHERE at.assignment_seq = ? "
            "ORDER BY at.pos", (row["seq"],))]
        outputs = list(plan.get("outputs") or [])
        first, corrected, total = [], [], 0.0
        for task, output in zip(tasks, outputs):
            output = dict(output or {})
            known = task.get("known_solutions") or []
            weight = solution_weight(output, known)
            total += weight
            first.append({"output_values": output})
            if weight < 1.0 and known:
                best = max(known, key=correctness_weight)
                output = {**output, **(best.get("output_values") or {})}
            corrected.append(output)
        if any(solution_weight(f["output_values"], t.get("known_solutions")) < 1.0 for f, t in zip(first, tasks)):
            doc = json.loads(row["doc"])
            doc["first_declined_solution_attempt"] = first
            self.conn.execute("UPDATE assignments SET doc = ? WHERE seq = ?", (_dumps(doc), row["seq"]))
        plan["outputs"] = corrected
        self.conn.execute("UPDATE assignments SET plan = ? WHERE seq = ?", (_dumps(plan), row["seq"]))
        self.conn.execute("UPDATE training_progress SET suites = suites + 1, answers = answers + ?, "
                          "score_sum = score_sum + ? WHERE training_id = ? AND user_id = ?",
                          (len(first), total, row["pool_id"], row["user_id"]))
        training = self._pool_doc(self._pool_row(row["pool_id"]))
        needed = max(1, int(training.get("task_suites_required_to_pass") or 1))
        progress = self._training_progress(row["pool_id"], row["user_id"])
        if progress is not None and progress["suites"] >= needed:
            self._finish_training(row["pool_id"], row["user_id"])
