"""Attachments (``/attachments``): the files workers upload as answers to ``file`` output fields.

When an assignment is submitted in a pool whose output spec has a ``file`` (or ``array_file``) field,
the simulated worker "uploads" a small PNG (a few hundred bytes, made with Pillow; its colours follow
from the assignment, field and task, so a replayed run makes the same bytes) and the answer holds
the attachment's id, as on Toloka. Metadata: ``GET /attachments`` (``pool_id`` or ``assignment_id``
required; ``user_id``, ``name``, ``type``, ``owner_id``, id/created ranges, sort by id/created) and
``GET /attachments/{id}``; bytes: ``GET /attachments/{id}/download`` (``image/png``), which is what
toloka-kit's ``download_attachment(id, out)`` writes to ``out``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sqlite3
import uuid
import zlib
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, out_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist, ValidationError
from crowdboxes.local_toloka.models.base import OWNER, CoreMixin, ObjectId, Params, SearchSpec, _dumps


ATTACHMENT_TYPE = "ASSIGNMENT_ATTACHMENT"
MEDIA_TYPE = "image/png"
FILE_TYPES = {"file": False, "array_file": True}  # output field type -> holds a list of ids


def _owner_filter(raw: Any) -> tuple[str, list[Any]]:
    return ("1 = 1", []) if str(raw) == OWNER["id"] else ("1 = 0", [])


def _company_filter(raw: Any) -> tuple[str, list[Any]]:
    return ("1 = 1", []) if str(raw) == OWNER["company_id"] else ("1 = 0", [])


ATTACHMENTS = SearchSpec(
    "attachments", "id", "str",
    {"pool_id": ("pool_id", "int"), "assignment_id": ("assignment_id", "str"), "user_id": ("user_id", "str"),
     "name": ("name", "str"), "type": ("attachment_type", "str"), "owner_id": ("", _owner_filter),
     "owner_company_id": ("", _company_filter)},
    {"id": ("id", "str"), "created": ("created", "ts")}, {"id": "id", "created": "created"}, 50, 1000)


def attachment_png(seed: str, size: tuple[int, int] = (48, 32)) -> bytes:
    """A small deterministic PNG: two colour bands picked from ``seed``."""
    from PIL import Image, ImageDraw

    h = zlib.crc32(seed.encode())
    top = (h & 0xFF, (h >> 8) & 0xFF, (h >> 16) & 0xFF)
    bottom = tuple(255 - c for c in top)
    image = Image.new("RGB", size, top)
    ImageDraw.Draw(image).rectangle([0, size[1] // 2, size[0], size[1]], fill=bottom)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


class AttachmentsMixin(CoreMixin):
    """Attachments, and their creation when an assignment with file answers is submitted."""

    def _attachment_row(self, attachment_id: str) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM attachments WHERE id = ?", (str(attachment_id),)).fetchone()
        if row is None:
            raise DoesNotExist(f"Attachment {attachment_id} does not exist")
        return row

    @staticmethod
    def _render_attachment(row: sqlite3.Row) -> dict:
        return {"id": row["id"], "attachment_type": row["attachment_type"], "name": row["name"],
                "details": {"user_id": row["user_id"], "assignment_id": row["assignment_id"],
                            "pool_id": str(row["pool_id"])},
                "created": out_ts(row["created"]), "media_type": row["media_type"], "owner": OWNER}

    def get_attachment(self, attachment_id: str) -> dict:
        with self.transaction():
            return self._render_attachment(self._attachment_row(attachment_id))

    def find_attachments(self, params: Params) -> dict:
        if not any(params.get(k) for k in ("pool_id", "assignment_id")):
            raise ValidationError.field("pool_id", "VALUE_REQUIRED", "One of pool_id, assignment_id is required")
        return self._search(ATTACHMENTS, params, lambda rows: [self._render_attachment(r) for r in rows])

    def download_attachment(self, attachment_id: str) -> tuple[bytes, str, str]:
        """``(bytes, media type, file name)``."""
        with self.transaction():
            row = self._attachment_row(attachment_id)
            return bytes(row["data"]), row["media_type"], row["name"]

    # ---- the crowd's side ------------------------------------------------------------------------------

    def _file_fields(self, pool_id: ObjectId) -> dict:
        """``{field: holds a list}`` of the pool's file outputs. Kept in memory: a pool's output spec never
        changes (changing a project's output spec pins the old spec on its existing pools)."""
        cache = self.__dict__.setdefault("_file_fields_cache", {})
        if pool_id not in cache:
            spec = self.pool_task_spec(self._pool_row(pool_id))
            cache[pool_id] = {name: FILE_TYPES[str(field.get("type", "")).lower()]
                              for name, field in (spec.get("output_spec") or {}).items()
                              if isinstance(field, dict) and str(field.get("type", "")).lower() in FILE_TYPES}
        return cache[pool_id]

    def _add_attachment(self, row: sqlite3.Row, field: str, pos: int, index: int) -> str:
        key = f"{row['id']}/{pos}/{field}/{index}"
        attachment_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-toloka:{key}"))
        name = f"{field}_{pos + 1}{'_' + str(index + 1) if index else ''}.png"
        self.conn.execute(
            "INSERT OR IGNORE INTO attachments(id, attachment_type, pool_id, assignment_id, user_id, name, "
            "media_type, created, data) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (attachment_id, ATTACHMENT_TYPE, row["pool_id"], row["id"], row["user_id"], name, MEDIA_TYPE,
             fmt_ts(self.now()), attachment_png(key)))
        return attachment_id

    def finish_due(self, now: dt.datetime) -> int:
        """Before the work's own ``finish_due`` submits them: upload the files of due answers, so their
        ``file`` fields hold attachment ids."""
        rows = self.conn.execute("SELECT * FROM assignments WHERE status = 'ACTIVE' AND due IS NOT NULL AND due <= ?",
                                 (fmt_ts(now),)).fetchall()
        for row in rows:
            fields = self._file_fields(row["pool_id"])
            if not fields:
                continue
            plan = json.loads(row["plan"])
            if plan.get("outcome") != "SUBMIT":
                continue
            outputs = []
            for pos, output in enumerate(plan.get("outputs") or []):
                output = dict(output or {})
                for field, is_array in fields.items():
                    if is_array:
                        count = max(1, len(output[field])) if isinstance(output.get(field), list) else 1
                        output[field] = [self._add_attachment(row, field, pos, i) for i in range(count)]
                    else:
                        output[field] = self._add_attachment(row, field, pos, 0)
                outputs.append(output)
            plan["outputs"] = outputs
            self.conn.execute("UPDATE assignments SET plan = ? WHERE seq = ?", (_dumps(plan), row["seq"]))
        return super().finish_due(now)
