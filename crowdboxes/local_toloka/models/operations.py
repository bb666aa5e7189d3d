"""Operations: finished operations of pool/project actions, lookup and logs."""

from __future__ import annotations

import json
import sqlite3
import uuid

from crowdboxes.local_toloka.db import fmt_ts, out_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist
from crowdboxes.local_toloka.models.base import OPERATIONS, CoreMixin, Doc, Params, _dumps


class OperationsMixin(CoreMixin):
    """Operations and their logs."""

    def _finished_operation(self, kind: str, parameters: Doc, details: Doc | None = None,
                            op_id: str | None = None) -> dict:
        now = out_ts(fmt_ts(self.now()))
        op = {"id": op_id or str(uuid.uuid4()), "type": kind, "status": "SUCCESS", "submitted": now,
              "started": now, "finished": now, "progress": 100, "parameters": parameters}
        if details is not None:
            op["details"] = details
        self.conn.execute("INSERT INTO operations(id, type, status, submitted, doc, log) VALUES(?, ?, ?, ?, ?, '[]')",
                          (op["id"], kind, "SUCCESS", fmt_ts(self.now()), _dumps(op)))
        return op

    def get_operation(self, op_id: str) -> dict:
        with self.transaction():
            row = self.conn.execute("SELECT doc FROM operations WHERE id = ?", (str(op_id),)).fetchone()
            if row is None:
                raise DoesNotExist(f"Operation {op_id} does not exist")
            op = json.loads(row[0])
            op.pop("_progress", None)
            return op

    def get_operation_log(self, op_id: str) -> list:
        with self.transaction():
            row = self.conn.execute("SELECT log FROM operations WHERE id = ?", (str(op_id),)).fetchone()
            if row is None:
                raise DoesNotExist(f"Operation {op_id} does not exist")
            return json.loads(row[0] or "[]")

    def find_operations(self, params: Params) -> dict:
        def render(rows: list[sqlite3.Row]) -> list[Doc]:
            ops = [json.loads(r["doc"]) for r in rows]
            for op in ops:
                op.pop("_progress", None)
            return ops
        return self._search(OPERATIONS, params, render)
