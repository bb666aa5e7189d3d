"""User skills and user restrictions."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, out_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist, IncorrectAction, ValidationError
from crowdboxes.local_toloka.models.base import (RESTRICTIONS, USER_SKILLS, CoreMixin, ObjectId, Params, _dumps,
                                                 _int_or_missing, _num)
from crowdboxes.local_toloka.models.validation import _decimal, _referenced, _require_object, _string, _timestamp


class UsersMixin(CoreMixin):
    """User skills and restrictions, and the views of them the crowd's filters need."""

    @staticmethod
    def _render_user_skill(row: sqlite3.Row) -> dict:
        doc = json.loads(row["doc"])
        exact = Decimal(str(doc["exact_value"]))
        return {"id": str(row["id"]), "skill_id": str(row["skill_id"]), "user_id": row["user_id"],
                "value": int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)), "exact_value": _num(exact),
                "created": out_ts(row["created"]), "modified": out_ts(row["modified"])}

    def _set_user_skill(self, skill_id: ObjectId, user_id: str, value: Any) -> int:
        now = fmt_ts(self.now())
        exact = Decimal(str(value)).quantize(Decimal("0.00001"))
        self.conn.execute(
            "INSERT INTO user_skills(skill_id, user_id, created, modified, doc) VALUES(?, ?, ?, ?, ?) "
            "ON CONFLICT(skill_id, user_id) DO UPDATE SET modified = excluded.modified, doc = excluded.doc",
            (int(skill_id), user_id, now, now, _dumps({"exact_value": str(exact)})))
        return self.conn.execute("SELECT id FROM user_skills WHERE skill_id = ? AND user_id = ?",
                                 (int(skill_id), user_id)).fetchone()[0]

    def set_user_skill(self, body: Any) -> dict:
        body = _require_object(body)
        value = _decimal(body, "value", minimum=Decimal(0))
        if value > 100:
            raise ValidationError.field("value", "VALUE_GREATER_THAN_MAX", "Value must be at most 100", [100])
        user_id = _string(body, "user_id")
        with self.transaction():
            skill = _referenced(body, "skill_id", self._skill_row, "Skill")
            row_id = self._set_user_skill(skill["id"], user_id, value)
            self._notify()
            return self._render_user_skill(self.conn.execute("SELECT * FROM user_skills WHERE id = ?", (row_id,)).fetchone())

    def get_user_skill(self, user_skill_id: ObjectId) -> dict:
        with self.transaction():
            row = self.conn.execute("SELECT * FROM user_skills WHERE id = ?", (_int_or_missing(user_skill_id, "User skill"),)).fetchone()
            if row is None:
                raise DoesNotExist(f"User skill {user_skill_id} does not exist")
            return self._render_user_skill(row)

    def delete_user_skill(self, user_skill_id: ObjectId) -> None:
        with self.transaction():
            cur = self.conn.execute("DELETE FROM user_skills WHERE id = ?", (_int_or_missing(user_skill_id, "User skill"),))
            if not cur.rowcount:
                raise DoesNotExist(f"User skill {user_skill_id} does not exist")
            self._notify()

    def find_user_skills(self, params: Params) -> dict:
        return self._search(USER_SKILLS, params, lambda rows: [self._render_user_skill(r) for r in rows])

    def user_skill_values(self) -> dict[str, dict[str, float]]:
        """``{user_id: {skill_id(str): exact value(float)}}`` for the crowd's filters."""
        out: dict[str, dict[str, float]] = {}
        for row in self.conn.execute("SELECT skill_id, user_id, doc FROM user_skills"):
            out.setdefault(row["user_id"], {})[str(row["skill_id"])] = float(json.loads(row["doc"])["exact_value"])
        return out

    # ---- user restrictions ---------------------------------------------------------------------------

    @staticmethod
    def _render_restriction(row: sqlite3.Row) -> dict:
        doc = json.loads(row["doc"])
        doc.update(id=str(row["id"]), user_id=row["user_id"], scope=row["scope"], created=out_ts(row["created"]))
        if row["will_expire"]:
            doc["will_expire"] = out_ts(row["will_expire"])
        if row["project_id"] is not None:
            doc["project_id"] = str(row["project_id"])
        if row["pool_id"] is not None:
            doc["pool_id"] = str(row["pool_id"])
        return doc

    def _add_restriction(self, user_id: str, scope: str, *, project_id: ObjectId | None = None,
                         pool_id: ObjectId | None = None, will_expire: dt.datetime | None = None,
                         comment: str | None = None) -> int | None:
        doc = {"private_comment": comment} if comment else {}
        cur = self.conn.execute(
            "INSERT INTO restrictions(user_id, scope, project_id, pool_id, created, will_expire, doc) "
            "VALUES(?, ?, ?, ?, ?, ?, ?)",
            (user_id, scope, project_id, pool_id, fmt_ts(self.now()),
             fmt_ts(will_expire) if will_expire else None, _dumps(doc)))
        self._notify()
        return cur.lastrowid

    def set_user_restriction(self, body: Any) -> dict:
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

    def get_user_restriction(self, restriction_id: ObjectId) -> dict:
        with self.transaction():
            row = self.conn.execute("SELECT * FROM restrictions WHERE id = ?",
                                    (_int_or_missing(restriction_id, "User restriction"),)).fetchone()
            if row is None:
                raise DoesNotExist(f"User restriction {restriction_id} does not exist")
            return self._render_restriction(row)

    def delete_user_restriction(self, restriction_id: ObjectId) -> None:
        with self.transaction():
            cur = self.conn.execute("DELETE FROM restrictions WHERE id = ?",
                                    (_int_or_missing(restriction_id, "User restriction"),))
            if not cur.rowcount:
                raise DoesNotExist(f"User restriction {restriction_id} does not exist")
            self._notify()

    def find_user_restrictions(self, params: Params) -> dict:
        return self._search(RESTRICTIONS, params, lambda rows: [self._render_restriction(r) for r in rows])

    def active_restrictions(self) -> dict[str, list[tuple[str, int | None, int | None]]]:
        """``{user_id: [(scope, project_id, pool_id)]}`` still in force."""
        now = fmt_ts(self.now())
        out: dict[str, list[tuple[str, int | None, int | None]]] = {}
        for row in self.conn.execute("SELECT user_id, scope, project_id, pool_id FROM restrictions "
                                     "WHERE will_expire IS NULL OR will_expire > ?", (now,)):
            out.setdefault(row["user_id"], []).append((row["scope"], row["project_id"], row["pool_id"]))
        return out
