"""Assignments: rendering, search (with a JSON cache), accept/reject and the ``assignments.tsv`` export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sqlite3
from decimal import Decimal
from typing import Any

from crowdboxes.local_toloka.db import fmt_ts, out_ts, parse_ts
from crowdboxes.local_toloka.exceptions import DoesNotExist, IncorrectAction, ValidationError
from crowdboxes.local_toloka.models.base import (APPEAL_DAYS, ASSIGNMENT_TIME_FIELDS, ASSIGNMENTS, JSON_ENCODER,
                                                 MAX_PUBLIC_COMMENT, OWNER, TSV_STATUS, CoreMixin, Doc, ObjectId,
                                                 Params, RawJSON, _convert, _doc, _dumps, _num, build_search,
                                                 golden_sql)
from crowdboxes.local_toloka.models.validation import _require_object


class AssignmentsMixin(CoreMixin):
    """Assignments and the TSV export that ``get_assignments_df`` reads."""

    def _assignment_row(self, assignment_id: str) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM assignments WHERE id = ?", (str(assignment_id),)).fetchone()
        if row is None:
            raise DoesNotExist(f"Assignment {assignment_id} does not exist")
        return row

    def _assignment_links(self, rows: list[sqlite3.Row]) -> dict:
        """``{assignment seq: [task rows with pos/output]}`` for ``rows``, in suite order."""
        seqs = [r["seq"] for r in rows]
        links: dict[int, list[sqlite3.Row]] = {}
        for start in range(0, len(seqs), 500):
            chunk = seqs[start:start + 500]
            for link in self.conn.execute(
                    f"SELECT at.assignment_seq, at.pos, at.output, t.* FROM assignment_tasks at JOIN tasks t "
                    f"ON t.seq = at.task_seq WHERE at.assignment_seq IN ({','.join('?' * len(chunk))}) "
                    f"ORDER BY at.assignment_seq, at.pos", chunk):
                links.setdefault(link["assignment_seq"], []).append(link)
        return links

    def _render_assignment(self, row: sqlite3.Row, tasks: list[sqlite3.Row]) -> Doc:
        doc = _doc(row["doc"])
        doc.update(id=row["id"], task_suite_id=row["task_suite_id"], pool_id=str(row["pool_id"]),
                   user_id=row["user_id"], status=row["status"], owner=OWNER,
                   tasks=[self._render_task(t) for t in tasks])
        for field in ASSIGNMENT_TIME_FIELDS:
            if row[field]:
                doc[field] = out_ts(row[field])
        if row["status"] in {"SUBMITTED", "ACCEPTED", "REJECTED"}:
            doc["solutions"] = [{"output_values": _doc(t["output"])} for t in tasks]
        return doc

    def _render_assignments(self, rows: list[sqlite3.Row]) -> list:
        if not rows:
            return []
        links = self._assignment_links(rows)
        return [self._render_assignment(row, links.get(row["seq"], [])) for row in rows]

    def get_assignment(self, assignment_id: str) -> dict:
        with self.transaction():
            return self._render_assignments([self._assignment_row(assignment_id)])[0]

    def find_assignments(self, params: Params) -> RawJSON:
        """The search as JSON text (:class:`RawJSON`): listings are the hot path of every observer, so each
        assignment's JSON is cached until anything it shows (status, times, tasks' overlap, outputs) changes."""
        if not any(params.get(k) for k in ("pool_id", "task_id", "task_suite_id")):
            raise ValidationError.field("pool_id", "VALUE_REQUIRED", "One of pool_id, task_id, task_suite_id is required")
        sql, args, limit = build_search(ASSIGNMENTS, params)
        with self.transaction():
            self._note_readers(params)  # a streaming cursor's read (models/readers.py)
            rows = self.conn.execute(sql, args).fetchall()
            has_more = len(rows) > limit
            rows = rows[:limit]
            links = self._assignment_links(rows) if rows else {}
            parts = []
            cache = self._fragments
            for row in rows:
                tasks = links.get(row["seq"], [])
                key = (tuple(row), tuple((t["seq"], t["overlap"], t["issued"], t["infinite"], t["doc"], t["output"])
                                         for t in tasks))
                hit = cache.get(row["seq"])
                if hit is None or hit[0] != key:
                    if len(cache) > 100_000:
                        cache.clear()
                    hit = (key, JSON_ENCODER.encode(self._render_assignment(row, tasks)))
                    cache[row["seq"]] = hit
                parts.append(hit[1])
        return RawJSON('{"items":[' + ",".join(parts) + '],"has_more":' + ("true" if has_more else "false") + "}")

    def patch_assignment(self, assignment_id: str, body: Any) -> dict:
        """The requester's review (API ``patchAssignment``): ``{"status": ACCEPTED|REJECTED, "public_comment"}``.

        Toloka's rules: SUBMITTED -> ACCEPTED or REJECTED, and REJECTED -> ACCEPTED while the Toloker may
        still appeal (:data:`APPEAL_DAYS` after the rejection); a rejection needs a comment (at most 2048
        characters). A SUBMITTED assignment not decided within its pool's ``auto_accept_period_day`` is
        accepted when the period ends, so a decision after that meets an ACCEPTED one. Nothing is decided in
        an archived pool. Accepting charges ``reward + fee`` (:func:`cost_for`); rejecting charges nothing.
        Refusals: 400 VALIDATION_ERROR (body), 409 INAPPROPRIATE_STATUS (the assignment's status or a
        period that ended), 409 POOL_INAPPROPRIATE_STATUS (archived pool), 409 NOT_ENOUGH_BALANCE.
        """
        body = _require_object(body)
        status = body.get("status")
        if status not in {"ACCEPTED", "REJECTED"}:
            raise ValidationError.field("status", "VALUE_NOT_ALLOWED", "status must be ACCEPTED or REJECTED",
                                        ["ACCEPTED", "REJECTED"])
        comment = body.get("public_comment")
        if comment is not None and not isinstance(comment, str):
            raise ValidationError.field("public_comment", "STRING_EXPECTED", "public_comment must be a string")
        if comment is not None and len(comment) > MAX_PUBLIC_COMMENT:
            raise ValidationError.field("public_comment", "STRING_LENGTH_GREATER_THAN_MAX",
                                        f"public_comment is longer than {MAX_PUBLIC_COMMENT} characters",
                                        [MAX_PUBLIC_COMMENT])
        if status == "REJECTED" and not (comment and comment.strip()):
            raise ValidationError.field("public_comment", "VALUE_REQUIRED", "A rejection needs a public_comment")
        # Its own transaction: an acceptance the period made stays even when the decision below is refused.
        with self.transaction():
            self._settle_review(self._assignment_row(assignment_id))
        with self.transaction():
            row = self._assignment_row(assignment_id)
            if self._pool_row(row["pool_id"])["status"] == "ARCHIVED":
                raise IncorrectAction("The pool is archived: its assignments can no longer be reviewed",
                                      {"appropriate_statuses": ["OPEN", "CLOSED"]}, code="POOL_INAPPROPRIATE_STATUS")
            allowed = ["SUBMITTED", "REJECTED"] if status == "ACCEPTED" else ["SUBMITTED"]
            if row["status"] not in allowed:
                raise IncorrectAction(self._why_not_decidable(row, status), {"appropriate_statuses": allowed},
                                      code="INAPPROPRIATE_STATUS")
            if self._review_ended(row):  # the period ended but the balance could not pay the acceptance
                raise IncorrectAction(f"The review period ended at {out_ts(row['auto_accept_at'])}",
                                      {"appropriate_statuses": allowed}, code="INAPPROPRIATE_STATUS")
            if row["status"] == "REJECTED" and parse_ts(row["rejected"]) + self._appeal_period() <= self.now():
                raise IncorrectAction(f"A rejection can be changed for {APPEAL_DAYS} days only (rejected at "
                                      f"{out_ts(row['rejected'])})", {"appropriate_statuses": ["SUBMITTED"]},
                                      code="INAPPROPRIATE_STATUS")
            if status == "ACCEPTED":
                if not self._accept(row, comment):
                    raise IncorrectAction("Not enough money on the balance to accept the assignment",
                                          {"balance": _num(self.balance()), "required": _num(Decimal(row["cost"]))},
                                          code="NOT_ENOUGH_BALANCE")
            else:
                self._reject(row, comment)
            return self._render_assignments([self._assignment_row(assignment_id)])[0]

    def _review_ended(self, row: sqlite3.Row) -> bool:
        """A SUBMITTED assignment whose review period is over (Toloka deems it accepted)."""
        return (row["status"] == "SUBMITTED" and bool(row["auto_accept_at"])
                and row["auto_accept_at"] <= fmt_ts(self.now()))

    def _settle_review(self, row: sqlite3.Row) -> None:
        """Accept ``row`` now when its review period is over and the scheduler has not done it yet."""
        if self._review_ended(row):
            self._accept(row)

    def _appeal_period(self) -> dt.timedelta:
        return self.sim_to_real(APPEAL_DAYS * 86400)

    def _why_not_decidable(self, row: sqlite3.Row, wanted: str) -> str:
        """One line on why ``row`` cannot become ``wanted``."""
        if row["status"] == "ACCEPTED" and row["submitted"] and row["auto_accept_at"] \
                and row["accepted"] and row["accepted"] >= row["auto_accept_at"] > row["submitted"]:
            return (f"The review period ended at {out_ts(row['auto_accept_at'])}: the assignment was accepted "
                    f"automatically and cannot become {wanted}")
        return f"Assignment {row['id']} is {row['status']}: it cannot become {wanted}"

    def _accept(self, row: sqlite3.Row, comment: str | None = None, at: str | None = None) -> bool:
        """SUBMITTED/REJECTED -> ACCEPTED and pay; False (nothing changed) when the balance is short."""
        cost = Decimal(row["cost"])
        if not row["paid"]:
            if self.balance() < cost:
                return False
            self._set_meta("balance", str(self.balance() - cost))
            self.conn.execute("INSERT INTO charges(pool_id, assignment_id, amount, created) VALUES(?, ?, ?, ?)",
                              (row["pool_id"], row["id"], str(cost), fmt_ts(self.now())))
        previous = row["status"]
        doc = json.loads(row["doc"])
        if comment is not None:
            doc["public_comment"] = comment
        # Instant auto-accept shares the submit stamp (as in the real API); anything later is "now", so a
        # streaming cursor that already moved past the submit time still sees the acceptance.
        accepted = at or fmt_ts(self.now())
        # auto_accept_at stays: it tells an acceptance by the end of the review period from the requester's
        self.conn.execute("UPDATE assignments SET status = 'ACCEPTED', accepted = ?, paid = 1, doc = ? WHERE seq = ?",
                          (accepted, _dumps(doc), row["seq"]))
        self._quality_control(row["pool_id"], row["user_id"], "ACCEPT_AFTER_REJECT" if previous == "REJECTED" else "ACCEPT",
                              self._assignment_row(row["id"]))
        return True

    def _reject(self, row: sqlite3.Row, comment: str | None) -> None:
        doc = json.loads(row["doc"])
        doc["public_comment"] = comment
        self.conn.execute("UPDATE assignments SET status = 'REJECTED', rejected = ?, auto_accept_at = NULL, doc = ? "
                          "WHERE seq = ?", (fmt_ts(self.now()), _dumps(doc), row["seq"]))
        self._quality_control(row["pool_id"], row["user_id"], "REJECT", self._assignment_row(row["id"]))

    def earnings(self) -> Doc:
        """The money side of reviews (``GET /_local/earnings``; Toloka shows it to nobody in one place).

        ``workers``: per worker, assignments accepted and rejected and ``earned`` = the sum of the accepted
        ones' ``reward`` (a rejected one earns nothing; Toloka keeps the fee). ``requester``: ``balance`` and
        ``charged`` = the sum of the charges, ``reward + fee`` once per accepted assignment."""
        with self.transaction():
            workers: dict[str, Doc] = {}
            for row in self.conn.execute("SELECT user_id, status, doc FROM assignments WHERE status IN "
                                         "('ACCEPTED', 'REJECTED') ORDER BY user_id, seq"):
                entry = workers.setdefault(row["user_id"], {"accepted": 0, "rejected": 0, "earned": Decimal(0)})
                if row["status"] == "ACCEPTED":
                    entry["accepted"] += 1
                    entry["earned"] += Decimal(str(json.loads(row["doc"]).get("reward", 0)))
                else:
                    entry["rejected"] += 1
            charged = sum((Decimal(r[0]) for r in self.conn.execute("SELECT amount FROM charges")), Decimal(0))
            return {"workers": {w: {**e, "earned": _num(e["earned"])} for w, e in workers.items()},
                    "requester": {"balance": _num(self.balance()), "charged": _num(charged)}}

    # ---- assignments TSV (get_assignments_df) -------------------------------------------------------

    def assignments_tsv(self, pool_id: ObjectId, params: Params) -> str:
        statuses = [s for s in str(params.get("status") or "APPROVED").split(",") if s]
        unknown = set(statuses) - {"ACTIVE", "SUBMITTED", "APPROVED", "REJECTED", "SKIPPED", "EXPIRED"}
        if unknown:
            raise ValidationError.field("status", "UNKNOWN_ENUM_VALUE", f"Unknown status {sorted(unknown)}")
        fields = [f for f in str(params.get("field") or "ASSIGNMENT:link,ASSIGNMENT:assignment_id,ASSIGNMENT:worker_id,"
                                  "ASSIGNMENT:status,ASSIGNMENT:started").split(",") if f]
        db_status = ["ACCEPTED" if s == "APPROVED" else s for s in statuses]
        with self.transaction():
            pool = self._pool_row(pool_id)
            project = {"task_spec": self.pool_task_spec(pool)}
            where, args = [f"pool_id = ? AND status IN ({','.join('?' * len(db_status))})"], [pool["id"], *db_status]
            for param, op in (("startTimeFrom", ">="), ("startTimeTo", "<=")):
                if params.get(param):
                    where.append(f"created {op} ?")
                    args.append(_convert(param, params[param], "ts"))
            rows = self.conn.execute(f"SELECT * FROM assignments WHERE {' AND '.join(where)} ORDER BY id", args).fetchall()
            assignments = self._render_assignments(rows)
            has_golden = self.conn.execute(f"SELECT 1 FROM tasks WHERE pool_id = ? AND {golden_sql()} LIMIT 1",
                                           (pool["id"],)).fetchone() is not None
        inputs = list(project["task_spec"]["input_spec"])
        outputs = list(project["task_spec"]["output_spec"])
        # GOLDEN:<output> holds a control task's (first) known solution; empty on general tasks
        golden = outputs if has_golden else []
        header = [f"INPUT:{n}" for n in inputs] + [f"OUTPUT:{n}" for n in outputs] + [f"GOLDEN:{n}" for n in golden]
        header += fields
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
        writer.writerow(header)

        def cell(value: Any) -> Any:
            if value is None:
                return ""
            if isinstance(value, (dict, list, bool)):
                return json.dumps(value)
            return value

        for a in assignments:
            solutions = a.get("solutions") or [{}] * len(a["tasks"])
            for task, solution in zip(a["tasks"], solutions):
                out = solution.get("output_values", {}) if solution else {}
                meta = {"link": f"{self.base_url}/task/{a['pool_id']}/{a['task_suite_id']}",
                        "assignment_id": a["id"], "worker_id": a["user_id"],
                        "status": TSV_STATUS.get(a["status"], a["status"]), "started": a.get("created"),
                        "task_id": task["id"], "task_suite_id": a["task_suite_id"], "reward": a.get("reward")}
                for field in ASSIGNMENT_TIME_FIELDS[1:]:
                    meta[field] = a.get(field)
                line = [cell(task["input_values"].get(n)) for n in inputs] + [cell(out.get(n)) for n in outputs]
                known = ((task.get("known_solutions") or [{}])[0] or {}).get("output_values") or {}
                line += [cell(known.get(n)) for n in golden]
                line += [cell(meta.get(f.split(":", 1)[1] if ":" in f else f)) for f in fields]
                writer.writerow(line)
        return buf.getvalue()
