"""Skills: create, edit, get, find."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, out_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist
from crowdboxes.local_toloka.models.base import OWNER, SKILL_EDITABLE, SKILLS, CoreMixin, ObjectId, Params, _dumps
from crowdboxes.local_toloka.models.validation import _require_object, _string


class SkillsMixin(CoreMixin):
    """Skills (toloka-api.md 6.2)."""

    @staticmethod
    def _render_skill(row: sqlite3.Row) -> dict:
        doc = json.loads(row["doc"])
        doc.update(id=str(row["id"]), name=row["name"], created=out_ts(row["created"]), owner=OWNER)
        return doc

    def create_skill(self, body: Any) -> dict:
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

    def _skill_row(self, skill_id: Any) -> sqlite3.Row:  # any JSON value: a bad id is DoesNotExist
        try:
            sid = int(skill_id)
        except (TypeError, ValueError):
            raise DoesNotExist(f"Skill {skill_id!r} does not exist") from None
        row = self.conn.execute("SELECT * FROM skills WHERE id = ?", (sid,)).fetchone()
        if row is None:
            raise DoesNotExist(f"Skill {skill_id} does not exist")
        return row

    def update_skill(self, skill_id: ObjectId, body: Any) -> dict:
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

    def get_skill(self, skill_id: ObjectId) -> dict:
        with self.transaction():
            return self._render_skill(self._skill_row(skill_id))

    def find_skills(self, params: Params) -> dict:
        return self._search(SKILLS, params, lambda rows: [self._render_skill(r) for r in rows])
