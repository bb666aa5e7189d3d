"""Analytics (``POST /staging/analytics-2``): the pool metrics toloka-kit asks for."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, out_ts, parse_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist, ValidationError
from crowdboxes.local_toloka.models.base import REAL_SQL, CoreMixin, Doc, _loads_cached, _num, golden_sql


class AnalyticsMixin(CoreMixin):
    """Pool analytics, answered as a finished ANALYTICS operation."""

    def analytics(self, body: Any) -> dict:
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

    def _pool_metric(self, pool: sqlite3.Row, name: str | None, i: int, request: Doc) -> Any:
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
