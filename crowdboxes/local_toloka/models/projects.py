"""Projects: create, edit (with Toloka's breaking-change rule), check an edit, archive."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, out_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist, IncorrectAction, ValidationError, inappropriate_status
from crowdboxes.local_toloka.models.base import FIELD_TYPES, OWNER, PROJECTS, CoreMixin, ObjectId, Params, _dumps
from crowdboxes.local_toloka.models.validation import _require_object, _string, project_difference


class ProjectsMixin(CoreMixin):
    """Projects (toloka-api.md 6.1)."""

    def _project_row(self, project_id: Any) -> sqlite3.Row:  # any JSON value: a bad id is DoesNotExist
        try:
            pid = int(project_id)
        except (TypeError, ValueError):
            raise DoesNotExist(f"Project {project_id!r} does not exist") from None
        row = self.conn.execute("SELECT * FROM projects WHERE id = ?", (pid,)).fetchone()
        if row is None:
            raise DoesNotExist(f"Project {project_id} does not exist")
        return row

    @staticmethod
    def _render_project(row: sqlite3.Row) -> dict:
        doc = json.loads(row["doc"])
        doc.update(id=str(row["id"]), status=row["status"], created=out_ts(row["created"]), owner=OWNER)
        return doc

    def _validate_project(self, body: Any) -> None:
        _require_object(body)
        _string(body, "public_name")
        spec = body.get("task_spec")
        if not isinstance(spec, dict):
            raise ValidationError.field("task_spec", "VALUE_REQUIRED", "Value must be present and not equal to null")
        for part in ("input_spec", "output_spec"):
            fields = spec.get(part)
            if not isinstance(fields, dict):
                raise ValidationError.field(f"task_spec.{part}", "VALUE_REQUIRED", "An object of field specs is required")
            for name, field in fields.items():
                if not isinstance(field, dict) or str(field.get("type", "")).lower() not in FIELD_TYPES:
                    raise ValidationError.field(f"task_spec.{part}.{name}.type", "UNKNOWN_ENUM_VALUE",
                                                f"Unknown field type {field.get('type') if isinstance(field, dict) else field!r}")
        view = spec.get("view_spec")
        if not isinstance(view, dict) or "type" not in view:
            raise ValidationError.field("task_spec.view_spec", "VALUE_REQUIRED", "view_spec with a type is required")
        issuing = body.get("assignments_issuing_type", "AUTOMATED")
        if issuing not in {"AUTOMATED", "MAP_SELECTOR"}:
            raise ValidationError.field("assignments_issuing_type", "UNKNOWN_ENUM_VALUE", f"Unknown value {issuing!r}")

    def create_project(self, body: Any) -> dict:
        self._validate_project(body)
        with self.transaction():
            doc = {k: v for k, v in body.items() if k not in {"id", "status", "created", "owner"}}
            doc.setdefault("assignments_issuing_type", "AUTOMATED")
            now = fmt_ts(self.now())
            cur = self.conn.execute("INSERT INTO projects(status, created, doc) VALUES('ACTIVE', ?, ?)",
                                    (now, _dumps(doc)))
            return self._render_project(self._project_row(cur.lastrowid))

    def update_project(self, project_id: ObjectId, body: Any) -> dict:
        """PUT: replace the project (all fields; ``id``/``status``/``created``/``owner`` are read-only).

        A change of the data specification (``input_spec``, ``output_spec``) is a breaking change in
        Toloka: every pool that exists at that moment keeps the spec it had (tasks uploaded to it are
        still checked against it, its results list its fields), later edits do not reach it, and only
        new pools get the new spec (guide "Input and output data"; toloka-kit
        ``check_update_project_for_major_version_change``). Other edits reach every pool at once.
        """
        self._validate_project(body)
        with self.transaction():
            row = self._project_row(project_id)
            if row["status"] == "ARCHIVED":
                raise inappropriate_status(["ACTIVE"], "PROJECT_INAPPROPRIATE_STATUS")
            old = json.loads(row["doc"])
            doc = {k: v for k, v in body.items() if k not in {"id", "status", "created", "owner"}}
            doc.setdefault("assignments_issuing_type", "AUTOMATED")
            if project_difference(old, doc) == "BREAKING_CHANGE":
                for (pool_id,) in self.conn.execute("SELECT id FROM pools WHERE project_id = ?", (row["id"],)):
                    if self._meta(f"pool_task_spec:{pool_id}") is None:
                        self._set_meta(f"pool_task_spec:{pool_id}", _dumps(old["task_spec"]))
            self.conn.execute("UPDATE projects SET doc = ? WHERE id = ?", (_dumps(doc), row["id"]))
            return self._render_project(self._project_row(row["id"]))

    def check_project_update(self, project_id: ObjectId, body: Any) -> dict:
        """``POST /staging/projects/{id}/check``: what ``update_project`` would be, without applying it."""
        self._validate_project(body)
        with self.transaction():
            old = json.loads(self._project_row(project_id)["doc"])
            doc = {k: v for k, v in body.items() if k not in {"id", "status", "created", "owner"}}
            doc.setdefault("assignments_issuing_type", "AUTOMATED")
            return {"differenceLevel": project_difference(old, doc)}

    def pool_task_spec(self, pool_row: sqlite3.Row) -> dict:
        """The task spec a pool works with: its project's, or the one it was pinned to by a breaking change."""
        pinned = self._meta(f"pool_task_spec:{pool_row['id']}")
        if pinned is not None:
            return json.loads(pinned)
        return json.loads(self._project_row(pool_row["project_id"])["doc"])["task_spec"]

    def get_project(self, project_id: ObjectId) -> dict:
        with self.transaction():
            return self._render_project(self._project_row(project_id))

    def find_projects(self, params: Params) -> dict:
        return self._search(PROJECTS, params, lambda rows: [self._render_project(r) for r in rows])

    def archive_project(self, project_id: ObjectId) -> dict:
        with self.transaction():
            row = self._project_row(project_id)
            if row["status"] == "ACTIVE":
                open_pools = self.conn.execute("SELECT COUNT(*) FROM pools WHERE project_id = ? AND status != 'ARCHIVED'",
                                               (row["id"],)).fetchone()[0]
                if open_pools:
                    raise IncorrectAction("Project has pools that are not archived", {"pools": open_pools},
                                          code="UNARCHIVED_POOLS_CONFLICT")
                self.conn.execute("UPDATE projects SET status = 'ARCHIVED' WHERE id = ?", (row["id"],))
            return self._finished_operation("PROJECT.ARCHIVE", {"project_id": str(row["id"])}, {})
