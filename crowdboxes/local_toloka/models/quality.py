"""Quality control: collectors (statistics per worker) and rule actions."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts
from crowdboxes.local_toloka.exceptions import TolokaError
from crowdboxes.local_toloka.models.base import (REAL_SQL, CoreMixin, Doc, ObjectId, Params, _loads_cached, golden_sql,
                                                 solution_weight)
from crowdboxes.local_toloka.models.validation import _compare


class QualityMixin(CoreMixin):
    """The pools' quality-control rules, run after each submit/accept/reject/skip."""

    def _quality_control(self, pool_id: ObjectId, user_id: str, event: str, asg_row: sqlite3.Row) -> None:
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

    def _collector_stats(self, kind: str, params: Params, pool: sqlite3.Row, user_id: str, event: str,
                         asg_row: sqlite3.Row) -> list[tuple[str, Doc]]:
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

    def _majority_stats(self, pid: int, params: Params, asg_row: sqlite3.Row) -> list[tuple[str, Doc]]:
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
        votes: dict[int, dict[str, int]] = {}
        answers: dict[Any, Any] = {}
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

    def _golden_stats(self, pid: int, params: Params, user_id: str,
                      asg_row: sqlite3.Row | None = None) -> list[tuple[str, Doc]]:
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
            score += solution_weight(_loads_cached(output or "{}"), _loads_cached(task_doc).get("known_solutions"))
        n = len(rows)
        rate = 100.0 * score / n
        return [(user_id, {"total_answers_count": n, "golden_set_answers_count": n,
                           "golden_set_correct_answers_rate": rate, "golden_set_incorrect_answers_rate": 100 - rate,
                           "correct_answers_rate": rate, "incorrect_answers_rate": 100 - rate})]

    def _apply_action(self, action: Doc, pool: sqlite3.Row, user_id: str, stats: dict[Any, Any],
                      asg_row: sqlite3.Row) -> None:
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
