"""The crowd's side: what the scheduler calls to pick, issue, finish and close work."""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
from decimal import Decimal
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, parse_ts
from crowdboxes.local_toloka.models.base import (REAL_SQL, Doc, ObjectId, _dumps, _num, cost_for, golden_sql, object_id,
                                                 offered_to)
from crowdboxes.local_toloka.models.readers import ReadersMixin


class WorkMixin(ReadersMixin):
    """Called by the crowd scheduler (``scheduler.py``), never over HTTP; closing completed pools waits
    for their streaming readers (:class:`~.readers.ReadersMixin`)."""

    def open_pools(self) -> list:
        """OPEN pools as ``(row, doc)``, by priority then id (``TrainingsMixin.open_pools`` puts trainings first)."""
        rows = self.conn.execute("SELECT * FROM pools WHERE status = 'OPEN'").fetchall()
        out = [(r, self._pool_doc(r)) for r in rows]
        out.sort(key=lambda rd: (-int(rd[1].get("priority") or 0), rd[0]["id"]))
        return out

    def busy_workers(self) -> set:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT user_id FROM assignments WHERE status = 'ACTIVE'")}

    def available_tasks(self, pool_id: ObjectId, user_id: str, limit: int | None, *, golden: bool = False) -> list:
        """Up to ``limit`` tasks ``[(seq, doc)]`` of the pool that ``user_id`` may get next, in creation
        order: overlap left (or infinite), never seen by them, not reserved for others or closed to them.
        General tasks by default, control tasks with ``golden=True`` (``limit=None``: all of them)."""
        kind = golden_sql() if golden else REAL_SQL
        rows = self.conn.execute(
            f"SELECT seq, doc FROM tasks WHERE pool_id = ? AND (infinite = 1 OR overlap > issued) AND {kind} AND "
            "seq NOT IN (SELECT task_seq FROM assignment_tasks WHERE pool_id = ? AND user_id = ?) ORDER BY seq "
            "LIMIT ?", (pool_id, pool_id, user_id, -1 if limit is None else limit * 4)).fetchall()
        out = []
        for seq, doc in offered_to(rows, user_id):
            out.append((seq, doc))
            if limit is not None and len(out) == limit:
                break
        return out

    def suite_tasks(self, pool_row: sqlite3.Row, pool_doc: Doc, user_id: str) -> list:
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
        ``training_tasks_count`` (training tasks mixed into a pool) is ignored; trainings are pools of their
        own that gate this one (``models/trainings.py`` extends this method through ``super()``).
        """
        mixer = pool_doc.get("mixer_config") or {}
        n_real = int(mixer.get("real_tasks_count") or 0)
        n_golden = int(mixer.get("golden_tasks_count") or 0)
        if n_real == 0 and n_golden == 0:
            n_real = 1  # training-only mixers: mixed-in training tasks are not emulated, general ones are served
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

    def issue_suite(self, pool_row: sqlite3.Row, pool_doc: Doc, user_id: str, tasks: list[tuple[int, Doc]]) -> str:
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
        """ACTIVE assignments whose answers are not decided yet (new, or interrupted by a restart).

        Each item: ``id``, ``user_id``, ``pool_id`` and ``project_id`` (ints), ``created`` (datetime),
        ``inputs`` (the suite's ``input_values`` in order), ``max_seconds``, ``task_spec`` (the pool's
        effective spec, as :meth:`pool_task_spec` returns it: ``input_spec``, ``output_spec``,
        ``view_spec``; shared by the items of one pool, do not modify) and ``training: True`` for a
        training pool's assignment (the key is absent otherwise).
        """
        rows = self.conn.execute("SELECT a.id, a.user_id, a.pool_id, a.created FROM assignments a WHERE "
                                 "a.status = 'ACTIVE' AND a.plan IS NULL ORDER BY a.seq").fetchall()
        out, pools = [], {}
        for row in rows:
            inputs = [json.loads(t[0]).get("input_values", {}) for t in self.conn.execute(
                "SELECT t.doc FROM assignment_tasks at JOIN tasks t ON t.seq = at.task_seq WHERE at.assignment_seq = "
                "(SELECT seq FROM assignments WHERE id = ?) ORDER BY at.pos", (row["id"],))]
            if row["pool_id"] not in pools:
                pool_row = self._pool_row(row["pool_id"])
                pools[row["pool_id"]] = (pool_row, self._pool_doc(pool_row), self.pool_task_spec(pool_row))
            pool_row, pool_doc, task_spec = pools[row["pool_id"]]
            item = {"id": row["id"], "user_id": row["user_id"], "pool_id": row["pool_id"],
                    "project_id": pool_row["project_id"], "created": parse_ts(row["created"]), "inputs": inputs,
                    "max_seconds": int(pool_doc["assignment_max_duration_seconds"]), "task_spec": task_spec}
            if pool_doc.get("type") == "TRAINING":
                item["training"] = True
            out.append(item)
        return out

    def set_plan(self, assignment_id: str, outcome: str, outputs: list[Any], sim_seconds: float,
                 due: dt.datetime) -> None:
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

    def close_finished_pools(self, now: dt.datetime) -> None:
        """Expire pools past will_expire; close pools whose every task is done, after Toloka's delay and
        once their streaming readers have read past the last event (``models/readers.py``)."""
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
                self.conn.execute("UPDATE pools SET complete_at = ?, completed = ? WHERE id = ?",
                                  (fmt_ts(at), fmt_ts(now), row["id"]))
                row = self._pool_row(row["id"])
            self._close_completed(row, now)

    def can_afford(self, pool_doc: Doc, reserved: Decimal | None = None) -> bool:
        reserved = self.reserved_funds() if reserved is None else reserved
        return self.balance() - reserved >= cost_for(Decimal(str(pool_doc["reward_per_assignment"])))

    def close_for_balance(self, pool_id: ObjectId) -> None:
        self._close_pool(pool_id, "NOT_ENOUGH_BALANCE")

    def next_wakeup(self) -> dt.datetime | None:
        """The earliest pending due/auto-accept/close time, for the scheduler's sleep (a pool held open
        for its streaming readers: its cap or a reader's expiry; a read that releases it closes it)."""
        now = self.now()
        with self.transaction():  # reader rows may be written first
            times = [self.conn.execute("SELECT MIN(due) FROM assignments WHERE status = 'ACTIVE'").fetchone()[0],
                     self.conn.execute("SELECT MIN(auto_accept_at) FROM assignments WHERE status = 'SUBMITTED'")
                     .fetchone()[0]]
            times = [parse_ts(t) for t in times if t]
            for row in self.conn.execute("SELECT * FROM pools WHERE status = 'OPEN' AND complete_at IS NOT NULL"):
                at = parse_ts(row["complete_at"])
                if at > now or not self._held(row, now):
                    times.append(at)
                else:
                    times.append(self._held_wakeup(row, now))
            return min(times) if times else None
