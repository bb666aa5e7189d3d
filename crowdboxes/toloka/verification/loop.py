"""The verification round: every drawing is judged by other workers, then accepted or redrawn.

Toloka's road-sign recipe (toloka-kit's object-detection notebook), made restartable:

1. A ``toloka.streaming.Pipeline`` watches the detection pool's SUBMITTED assignments. Each drawn
   image becomes a verification task ``{image, outlines, assignment_id}`` (named as the verification
   project names them; the drawing is read from the detection project's output, :mod:`crowdboxes.toloka.fields`) with overlap
   ``verifiers`` in the verification pool; the drawer gets the drawer skill, which the
   verification pool's filter excludes. Drawings of control images are scored against the known
   boxes instead (:mod:`crowdboxes.toloka.known_boxes`).
2. It watches the verification pool's SUBMITTED assignments. When an image has ``verifiers``
   verdicts that disagree, :data:`SPLIT_VERIFIERS` more are asked for (dynamic overlap); then the
   verdicts are aggregated with crowd-kit (skill-weighted ``MajorityVote`` or
   ``DawidSkene``). **Tie rule: an exact tie (P(OK) = P(BAD)) is BAD**: paying for a drawing
   nobody could vouch for is worse than paying for one more drawing.
3. The detection assignment is accepted (all its images OK) or rejected with a public comment
   naming the problem. A rejection raises the image's task overlap so another worker redraws it,
   at most ``max_attempts`` drawings per image slot; the detection pool is re-opened if it had
   closed.

Exactly once: the cursors are persisted by a token-free storage in ``state_dir`` (toloka-kit's
JSONLocalStorage would pickle the client and with it the token), and everything the handlers did
is in a ledger there. Replayed events are recognised by assignment id; before accepting or
rejecting, the assignment's status is read from Toloka and a non-SUBMITTED one is only recorded;
verification tasks already in the pool are found by their ``assignment_id`` input at start; the
raised overlap is an absolute target (base + rejected drawings), so re-applying it is harmless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import attr
import numpy as np
import pandas as pd

from crowdboxes.toloka.client import plain_json
from crowdboxes.artifacts import VERIFICATIONS, write_csv
from crowdboxes.toloka.spending import BudgetGuard, grant, money_spent, reserve, slot_price
from crowdboxes.toloka.known_boxes import ControlScorer, ControlSet
from crowdboxes.toloka.fields import DetectionFields, VerificationFields, fields_from_toloka, verification_fields
from crowdboxes.toloka.pricing import assignment_price
from crowdboxes.toloka.quality import QualitySettings, loop_settings
from crowdboxes.files import write_text_atomic

logger = logging.getLogger(__name__)

DEFAULT_LAG = dt.timedelta(seconds=60)  # toloka-kit's default: the API is eventually consistent
DEFAULT_PERIOD = dt.timedelta(seconds=60)
DEFAULT_SKILL = 50.0  # a verifier we know nothing about (skills are 0..100 on Toloka)
SPLIT_VERIFIERS = 2  # more verdicts when the first --verifiers disagree
LEDGER_NAME = "verification_ledger.json"
CURSORS_NAME = "verification_cursors.json"

ACCEPT_COMMENT = "Thank you! Other workers checked your outlines and found them correct."
REJECT_COMMENTS = {
    "missed_sign": "Other workers found a road sign that was not outlined.",
    "loose_box": "Other workers found a rectangle that does not fit its road sign tightly.",
    "wrong_object": "Other workers found a rectangle around something that is not a road sign.",
    "wrong_class": "Other workers found a road sign with the wrong type.",
    "banned": "Your outlines on control photos with known road signs were far off, so this work was not accepted.",
    "": "Other workers found the outlines incomplete or incorrect.",
}
CONTROL_REJECT_COMMENT = "Your outlines on a control photo did not match its road signs."


# ---------------------------------------------------------------------------------------------
# verdict aggregation

def aggregate_verdicts(votes: pd.DataFrame, method: str = "majority", skills: pd.Series | None = None) -> pd.DataFrame:
    """Aggregate OK/BAD votes per task.

    Args:
        votes: columns ``task, worker, label`` (label OK|BAD), optionally ``reason``.
        method: ``majority`` (crowd-kit ``MajorityVote``, weighted by ``skills`` when given:
            :math:`P(OK) = \\sum_{w: OK} s_w / \\sum_w s_w`) or ``dawid_skene`` (crowd-kit
            ``DawidSkene`` over all tasks given, so it learns each verifier's confusion matrix).
        skills: Series by worker (any positive scale); missing workers get the mean skill.

    Returns:
        DataFrame indexed by task with ``verdict`` (OK|BAD; a tie is BAD), ``p_ok``,
        ``ok_votes``, ``bad_votes`` and ``reason`` (the most named reason among BAD votes).
    """
    from crowdkit.aggregation import DawidSkene, MajorityVote

    columns = ["verdict", "p_ok", "ok_votes", "bad_votes", "reason"]
    if votes.empty:
        return pd.DataFrame(columns=columns)
    data = votes[["task", "worker", "label"]].astype({"task": str, "worker": str, "label": str})
    if method == "majority":
        if skills is not None and len(skills):
            skills = skills.astype(float).clip(lower=1e-6)
            skills.index = skills.index.astype(str)
            default = float(skills.mean())
        else:
            skills, default = None, None
        model = MajorityVote(on_missing_skill="value", default_skill=default or 1.0)
        probas = model.fit(data, skills).probas_
    elif method == "dawid_skene":
        probas = DawidSkene(n_iter=100).fit(data).probas_
    else:
        raise ValueError(f"unknown verdict method {method!r}")
    probas = probas.reindex(columns=["OK", "BAD"], fill_value=0.0).fillna(0.0)
    counts = data.groupby(["task", "label"]).size().unstack(fill_value=0).reindex(columns=["OK", "BAD"], fill_value=0)
    out = pd.DataFrame(index=probas.index)
    out["p_ok"] = probas["OK"]
    # the explicit tie rule: OK only with strictly more (weighted) support than BAD
    out["verdict"] = np.where(probas["OK"] - probas["BAD"] > 1e-9, "OK", "BAD")
    out["ok_votes"] = counts["OK"].reindex(out.index).fillna(0).astype(int)
    out["bad_votes"] = counts["BAD"].reindex(out.index).fillna(0).astype(int)
    reasons = {}
    if "reason" in votes.columns:
        bad = votes[(votes["label"] == "BAD") & votes["reason"].notna() & (votes["reason"].astype(str) != "")]
        for task, group in bad.groupby(bad["task"].astype(str)):
            reasons[task] = Counter(group["reason"].astype(str)).most_common(1)[0][0]
    out["reason"] = [reasons.get(t, "") if v == "BAD" else "" for t, v in zip(out.index, out["verdict"])]
    return out[columns]


# ---------------------------------------------------------------------------------------------
# persistent state

class Ledger:
    """What the loop has done, in ``state_dir``: saved atomically after every handler call."""

    def __init__(self, state_dir: str | os.PathLike):
        self.path = Path(state_dir) / LEDGER_NAME
        data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        self.items: dict = data.get("items", {})  # "<assignment>|<task>" -> one drawn image
        self.assignments: dict = data.get("assignments", {})  # detection assignment -> outcome
        self.votes: dict = data.get("votes", {})  # verification assignment -> [[item, worker, label, reason]]
        self.tasks: dict = data.get("tasks", {})  # detection task -> base overlap, rejected count
        self.drawers: list = data.get("drawers", [])
        self.banned: dict = data.get("banned", {})
        self.control: list = data.get("control", [])  # [worker, assignment, f1, tp, fp, fn]
        self.vtask_items: dict = data.get("vtask_items", {})  # verification task -> item key
        self.budget_stopped: bool = data.get("budget_stopped", False)
        self.budget_cut: list = data.get("budget_cut", [])  # detection tasks whose overlap the cap cut
        self.resumed = bool(data)

    def save(self) -> None:
        data = {k: getattr(self, k) for k in ("items", "assignments", "votes", "tasks", "drawers", "banned",
                                               "control", "vtask_items", "budget_stopped", "budget_cut")}
        write_text_atomic(self.path, json.dumps(data, indent=1, sort_keys=True))


def item_key(assignment_id: str, task_id: str) -> str:
    return f"{assignment_id}|{task_id}"


class CursorStorage:
    """A toloka.streaming storage that keeps only cursor positions, as JSON (no client, no token).

    Pipeline calls ``save`` after each observer run and ``load`` at start; observers must be
    :class:`ResumableAssignmentsObserver` (their ``inject`` accepts the saved dict).
    """

    def __init__(self, state_dir: str | os.PathLike):
        self.path = Path(state_dir) / CURSORS_NAME

    def _read(self) -> dict:
        return json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}

    def lock(self, key):
        from contextlib import nullcontext

        return nullcontext()

    def save(self, base_key: str, data: dict) -> None:
        stored = self._read()
        for key, observer in data.items():
            state = getattr(observer, "cursor_states", None)
            if state is not None:
                stored[key] = state()
        write_text_atomic(self.path, json.dumps(stored, indent=1, sort_keys=True))

    def load(self, base_key: str, keys):
        stored = self._read()
        return {k: stored[k] for k in keys if k in stored} or None

    def cleanup(self, base_key, keys, lock) -> None:
        pass  # keep the positions: a re-run after the pools finished must not replay everything


def _resumable_observer_class():
    from toloka.client import structure, unstructure
    from toloka.client.search_requests import AssignmentSearchRequest
    from toloka.streaming import AssignmentsObserver

    class ResumableAssignmentsObserver(AssignmentsObserver):
        """AssignmentsObserver whose cursors are saved/restored as plain JSON."""

        def cursor_states(self) -> dict:
            out = {}
            for event_type, consumer in self._callbacks.items():
                request, _prev, seen = consumer.cursor._get_state()
                out[event_type.value] = {"request": unstructure(request), "seen_ids": sorted(seen)}
            return out

        def inject(self, injection) -> None:
            if not isinstance(injection, dict):
                return
            for event_type, consumer in self._callbacks.items():
                state = injection.get(event_type.value)
                if state:
                    request = structure(state["request"], AssignmentSearchRequest)
                    consumer.cursor._set_state((request, None, set(state["seen_ids"])))

    return ResumableAssignmentsObserver


# ---------------------------------------------------------------------------------------------

class StallWatch:
    """Says, in one line, when work waits in a pool and no worker has taken a task there for a while.

    Toloka shows no error when nobody is left who may take a pool's tasks; the pool just stays open.
    In ``verification``: drawings wait for verdicts, but the pool's filter excludes everyone holding the
    drawer skill, and in a small or private crowd every worker may soon have drawn. In ``detection``:
    images wait for another drawing, but a worker draws an image only once and banned workers draw
    nothing, so a high overlap with many redraws can use up the crowd. Activity is a new assignment in
    the pool (or a new entry in the ledger) or an ACTIVE one. The warning is printed once per stall
    (again after workers came back and left again).
    """

    def __init__(self, loop: "VerificationLoop", kind: str, stall_seconds: float, stream=None,
                 clock=time.monotonic):
        self.loop, self.kind, self.stall_seconds, self.clock = loop, kind, float(stall_seconds), clock
        self.stream = stream
        self.last = None
        self.since = clock()
        self.warned = False
        self.warnings = 0

    @property
    def pool_id(self) -> str:
        return self.loop.verification_pool_id if self.kind == "verification" else self.loop.detection_pool_id

    def _seen(self) -> int:
        return len(self.loop.ledger.votes if self.kind == "verification" else self.loop.ledger.assignments)

    def waiting(self) -> int:
        """Verification: drawings whose task exists and lacks verdicts. Detection: unresolved images with
        nothing under review, i.e. waiting for a drawing."""
        ledger = self.loop.ledger
        if self.kind == "verification":
            return sum(1 for it in ledger.items.values()
                       if it["kind"] == "verify" and it.get("vtask_id") and not it.get("decided")
                       and ledger.assignments.get(it["assignment_id"], {}).get("outcome") is None)
        reviewing = {it["task_id"] for it in ledger.items.values()
                     if ledger.assignments.get(it["assignment_id"], {}).get("outcome") is None}
        return sum(1 for task, state in self.loop.image_status().items()
                   if state == "pending" and task not in reviewing)

    def check(self) -> str | None:
        """The warning line if a stall has just lasted ``stall_seconds``, else None."""
        from toloka.client import Assignment

        now = self.clock()
        client, pool_id = self.loop.client, self.pool_id
        newest = client.find_assignments(pool_id=pool_id, sort=["-created"], limit=1).items
        marker = (self._seen(), newest[0].id if newest else None)
        waiting = self.waiting() if marker == self.last else 0
        if waiting and client.find_assignments(pool_id=pool_id, status=[Assignment.ACTIVE], limit=1).items:
            waiting = 0  # someone is at work
        if not waiting:
            self.last, self.since, self.warned = marker, now, False
            return None
        if self.warned or now - self.since < self.stall_seconds:
            return None
        self.warned = True
        self.warnings += 1
        idle = now - self.since
        idle = f"{idle:.0f} s" if idle < 120 else f"{idle / 60:.0f} min"
        ledger = self.loop.ledger
        if self.kind == "verification":
            line = (f"warning: verification pool {pool_id}: {waiting} drawings wait for verdicts but no verifier "
                    f"has taken a task for {idle}; its filter excludes the {len(ledger.drawers)} workers who drew "
                    f"(drawer skill), so the crowd may have nobody left to verify: widen the pool's filter or "
                    f"lower --verifiers")
        else:
            line = (f"warning: detection pool {pool_id}: {waiting} images wait for another drawing but no drawer "
                    f"has taken a task for {idle}; a worker draws an image only once and {len(ledger.banned)} "
                    f"workers are banned, so the crowd may have nobody left to draw them: lower --overlap or "
                    f"--max_attempts, or widen the pool's filter")
        print(line, file=self.stream or sys.stderr, flush=True)
        return line


@attr.s(auto_attribs=True)
class LoopOutcome:
    """What wait_pool needs (``done``, ``state``, ``polls``) plus the QC figures."""

    done: bool
    state: str
    polls: int
    images_total: int = 0
    images_done: int = 0
    accepted: int = 0
    rejected: int = 0
    banned: int = 0
    spent_usd: float = 0.0
    budget_stopped: bool = False
    verifier_stalls: int = 0
    drawer_stalls: int = 0




def _outlines(solution, output_field: str = "result") -> list:
    value = (solution.output_values or {}).get(output_field) if solution is not None else None
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            value = []
    return plain_json(value) if isinstance(value, list) else []


class VerificationLoop:
    """The handlers and their state; :func:`run_verification_loop` wires them into a Pipeline."""

    def __init__(self, client, detection_pool_id: str, verification_pool_id: str, images: pd.DataFrame,
                 settings: QualitySettings, state_dir, *, tasks: pd.DataFrame | None = None,
                 skill_ids: dict | None = None, control: ControlSet | None = None,
                 control_threshold: float = 0.4, ban_reject_rate: float = 0.8, ban_min_judged: int = 3,
                 budget_guard: BudgetGuard | None = None, split_verifiers: int = SPLIT_VERIFIERS,
                 fields: DetectionFields | None = None, verification_fields: VerificationFields | None = None):
        self.client = client
        # field names of both projects (crowdboxes.toloka.fields); read from Toloka in reconcile() when not given
        self.fields, self.vfields = fields, verification_fields
        self.detection_pool_id, self.verification_pool_id = str(detection_pool_id), str(verification_pool_id)
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.state_dir)
        self.skill_ids = {k: str(v) for k, v in (skill_ids or {}).items() if v is not None and str(v) != "nan"}
        self.control = control or ControlSet()
        self.control_threshold = control_threshold
        self.ban_reject_rate, self.ban_min_judged = ban_reject_rate, ban_min_judged
        self.guard = budget_guard
        self.split_verifiers = int(split_verifiers)
        self.verification_price = 0.0  # one more verdict, reward + fee (set by reconcile when there is a cap)
        images = images.copy()
        self.image_by_url = {str(r.url): r for r in images.itertuples(index=False)} if "url" in images else {}
        self.task_image = {}
        self.real_tasks: set[str] = set()
        if tasks is not None and len(tasks):
            for r in tasks.itertuples(index=False):
                self.task_image[str(r.task_id)] = str(r.image_id)
                is_control = str(getattr(r, "kind", "")) == "control" or str(getattr(r, "control", "")).lower() == "true"
                if not is_control and str(r.url) not in self.control:
                    self.real_tasks.add(str(r.task_id))
        self.project_id = self.verification_project_id = None
        self.changed = False
        self.slot_price = 0.0
        self.vtask_index: dict = {}  # (detection assignment, image url) -> verification task on Toloka

    # ----------------------------------------------------------------- start-up reconciliation

    def reconcile(self) -> None:
        """Index verification tasks already in the pool (a crash may have lost their ledger entry);
        reserve the budget for what the detection pool may still issue (cutting what does not fit)."""
        det_pool = self.client.get_pool(self.detection_pool_id)
        self.project_id = str(det_pool.project_id)
        self.verification_project_id = str(self.client.get_pool(self.verification_pool_id).project_id)
        if self.fields is None:
            self.fields = fields_from_toloka(self.client, self.project_id)
        if self.vfields is None:
            self.vfields = verification_fields(self.client.get_project(self.verification_project_id))
        if self.guard is not None and self.guard.cap is not None:
            ver_reward = float(self.client.get_pool(self.verification_pool_id).reward_per_assignment)
            det_reward = float(det_pool.reward_per_assignment)
            self.verification_price = assignment_price(ver_reward)
            self.slot_price = slot_price(det_reward, self.settings.verifiers, ver_reward)
            reserve(self.client, self.guard, self.detection_pool_id, self.slot_price,
                    control_price=slot_price(det_reward),
                    is_control=lambda t: (t.input_values or {}).get(self.fields.image_input) in self.control)
            self.ledger.budget_cut = sorted(set(self.ledger.budget_cut) | set(self.guard.trimmed_))
        for task in self.client.get_tasks(pool_id=self.verification_pool_id):
            values = task.input_values or {}
            aid, url = str(values.get(self.vfields.assignment_input, "")), values.get(self.vfields.image_input)
            # a crash after create_tasks but before the ledger was saved: the replayed drawing finds it here
            self.vtask_index[(aid, url)] = task.id
            for key, item in self.ledger.items.items():
                if item["assignment_id"] == aid and item["url"] == url and not item.get("vtask_id"):
                    item["vtask_id"] = task.id
                    self.ledger.vtask_items[task.id] = key
        self.ledger.save()

    # ----------------------------------------------------------------- detection submitted

    def on_detection_submitted(self, events) -> None:
        self.handle_detection([e.assignment for e in events])

    def handle_detection(self, assignments) -> None:
        from toloka.client import Task

        new_vtasks, new_items = [], []
        for a in assignments:
            if a.id in self.ledger.assignments:
                continue  # a replayed event
            worker = str(a.user_id)
            keys = []
            for task, solution in zip(a.tasks, a.solutions or [None] * len(a.tasks)):
                url = (task.input_values or {}).get(self._fields().image_input)
                key = item_key(a.id, task.id)
                meta = self.ledger.tasks.setdefault(task.id, {"base": int(task.overlap or 1), "rejected": 0,
                                                              "drawings": 0, "url": url})
                meta["drawings"] += 1
                outlines = _outlines(solution, self._fields().output)
                item = {"assignment_id": a.id, "task_id": task.id, "url": url, "worker_id": worker,
                        "image_id": self.task_image.get(task.id) or self._image_id(url), "attempt": meta["drawings"],
                        "outlines": outlines, "kind": "control" if url in self.control else "verify",
                        "verdict": None, "reason": "", "ok_votes": 0, "bad_votes": 0, "vtask_id": None}
                if item["kind"] == "control":
                    score = self.control.score(url, outlines)
                    item.update(verdict="OK" if score.f1 >= self.control_threshold else "BAD", f1=score.f1,
                                reason="" if score.f1 >= self.control_threshold else
                                ("missed_sign" if score.fn else "wrong_object" if score.fp else "loose_box"))
                    self.ledger.control.append([worker, a.id, score.f1, score.tp, score.fp, score.fn])
                else:
                    new_items.append(key)
                self.ledger.items[key] = item
                keys.append(key)
            self.ledger.assignments[a.id] = {"worker_id": worker, "items": keys, "outcome": None,
                                             "status_seen": str(getattr(a.status, "value", a.status))}
            if any(self.ledger.items[k]["kind"] == "verify" for k in keys):
                self._mark_drawer(worker)  # controls are nobody's work under review: they may still verify
            self.changed = True
        existing = {(it["assignment_id"], it["url"]) for it in self.ledger.items.values() if it.get("vtask_id")}
        for key in new_items:
            item = self.ledger.items[key]
            if (item["assignment_id"], item["url"]) in existing:
                continue
            known = self.vtask_index.get((item["assignment_id"], item["url"]))
            if known is not None:  # created by a run that crashed before saving its ledger
                item["vtask_id"] = known
                self.ledger.vtask_items[known] = key
                continue
            if self.ledger.budget_stopped:
                item["verdict_note"] = "budget"  # never verified: the cap was reached
                continue
            new_vtasks.append((key, Task(pool_id=self.verification_pool_id, overlap=self.settings.verifiers,
                                         input_values={self._vfields().image_input: item["url"],
                                                       self._vfields().outlines_input: item["outlines"],
                                                       self._vfields().assignment_input: item["assignment_id"]})))
        if new_vtasks:
            # explicit overlap (allow_defaults=False): the pool default may predate a changed --verifiers
            created = self.client.create_tasks([t for _, t in new_vtasks], allow_defaults=False, open_pool=True)
            for idx, task in created.items.items():
                key = new_vtasks[int(idx)][0]
                self.ledger.items[key]["vtask_id"] = task.id
                self.ledger.vtask_items[task.id] = key
                self.vtask_index[(self.ledger.items[key]["assignment_id"], self.ledger.items[key]["url"])] = task.id
            self.ledger.save()  # before the decisions below: a crash there must not lose these tasks
        self._control_bans()
        self.decide_ready()
        self.ledger.save()

    def _fields(self) -> DetectionFields:
        return self.fields if self.fields is not None else DetectionFields()

    def _vfields(self) -> VerificationFields:
        return self.vfields if self.vfields is not None else VerificationFields()

    def _image_id(self, url):
        row = self.image_by_url.get(str(url))
        if row is not None:
            return str(row.image_id)
        return self.control.image_ids.get(url, "")

    def _mark_drawer(self, worker: str) -> None:
        skill = self.skill_ids.get("drawer_skill")
        if not skill or worker in self.ledger.drawers:
            return
        self.client.set_user_skill(skill_id=skill, user_id=worker, value=Decimal(1))
        self.ledger.drawers.append(worker)

    # ----------------------------------------------------------------- verification submitted

    def on_verification_submitted(self, events) -> None:
        self.handle_verification([e.assignment for e in events])

    def handle_verification(self, assignments) -> None:
        for va in assignments:
            if va.id in self.ledger.votes:
                continue
            rows = []
            for task, solution in zip(va.tasks, va.solutions or []):
                key = self.ledger.vtask_items.get(task.id)
                if key is None:  # created by a run whose ledger was lost: find the item by its inputs
                    values = task.input_values or {}
                    key = next((k for k, it in self.ledger.items.items()
                                if it["assignment_id"] == values.get(self._vfields().assignment_input)
                                and it["url"] == values.get(self._vfields().image_input)), None)
                if key is None:
                    continue
                out = solution.output_values or {}
                rows.append([key, str(va.user_id), str(out.get(self._vfields().verdict, "")),
                             str(out.get(self._vfields().reason) or "")])
            self.ledger.votes[va.id] = rows
            self.changed = True
        self.decide_ready()
        self.ledger.save()

    # ----------------------------------------------------------------- decisions

    def _votes_frame(self) -> pd.DataFrame:
        rows = [r for rows in self.ledger.votes.values() for r in rows if r[2] in ("OK", "BAD")]
        return pd.DataFrame(rows, columns=["task", "worker", "label", "reason"])

    def _skills(self, votes: pd.DataFrame) -> pd.Series | None:
        """Verifier skills: Toloka's verifier skill where set, else agreement with past decisions."""
        skills = {}
        decided = {k: it["verdict"] for k, it in self.ledger.items.items()
                   if it["kind"] == "verify" and it.get("decided")}
        if not votes.empty:
            for worker, group in votes.groupby("worker"):
                known = group[group["task"].isin(decided)]
                agree = sum(decided[t] == lab for t, lab in zip(known["task"], known["label"]))
                skills[worker] = 100.0 * (agree + 1) / (len(known) + 2)  # Laplace: 50 with no history
        skill_id = self.skill_ids.get("verifier_skill")
        if skill_id:
            try:
                for us in self.client.get_user_skills(skill_id=skill_id):
                    value = us.exact_value if us.exact_value is not None else us.value
                    if value is not None:
                        skills[str(us.user_id)] = float(value)
            except Exception as exc:  # weights are an optimisation; agreement stays
                logger.warning("cannot read verifier skills: %s", type(exc).__name__)
        return pd.Series(skills, dtype=float) if skills else None

    def decide_ready(self, final: bool = False) -> None:
        """Aggregate items with all their verdicts (``final``: any verdicts), then decide assignments."""
        votes = self._votes_frame()
        counts = votes.groupby("task").size() if not votes.empty else pd.Series(dtype=int)
        need = self.settings.verifiers
        ready = []
        for key, it in self.ledger.items.items():
            if it["kind"] != "verify" or it.get("decided"):
                continue
            n = int(counts.get(key, 0))
            if final:
                if n >= 1:
                    ready.append(key)
            elif n >= need + it.get("extra", 0):
                if not it.get("extra") and self._split(votes, key) and self._ask_more(it, need):
                    continue
                ready.append(key)
        if ready:
            skills = self._skills(votes) if self.settings.verdict_method == "majority" else None
            data = votes if self.settings.verdict_method == "dawid_skene" else votes[votes["task"].isin(ready)]
            result = aggregate_verdicts(data, self.settings.verdict_method, skills)
            for key in ready:
                row = result.loc[key]
                self.ledger.items[key].update(verdict=str(row["verdict"]), reason=str(row["reason"]),
                                              ok_votes=int(row["ok_votes"]), bad_votes=int(row["bad_votes"]),
                                              p_ok=float(row["p_ok"]), decided=True)
        for aid, entry in self.ledger.assignments.items():
            if entry["outcome"] is None:
                items = [self.ledger.items[k] for k in entry["items"]]
                if all(it.get("decided") or it["kind"] == "control" for it in items):
                    self._decide(aid, entry, items)

    @staticmethod
    def _split(votes: pd.DataFrame, key: str) -> bool:
        return votes.loc[votes["task"] == key, "label"].nunique() > 1

    def _ask_more(self, item: dict, need: int) -> bool:
        """Verifiers disagreed: ``split_verifiers`` more verdicts (Toloka's dynamic overlap).

        A 2:1 majority of verifiers who are right 90 % of the time is wrong about 3 % of the time, often
        enough that incomplete drawings get accepted; when the two more agree with it, it is wrong in well
        under 1 %. The overlap is an absolute target set before the ledger notes it, so a crash in between
        only sets it again. False when there is nothing to ask (disabled, no task, budget cap).
        """
        if self.split_verifiers <= 0 or not item.get("vtask_id") or self.ledger.budget_stopped:
            return False
        if not grant(self.guard, self.split_verifiers * self.verification_price):
            return False
        self._set_overlap(item["vtask_id"], need + self.split_verifiers)
        if not self.client.get_pool(self.verification_pool_id).is_open():
            self.client.open_pool(self.verification_pool_id)
        item["extra"] = self.split_verifiers
        self.changed = True
        return True

    def give_up_extra_verdicts(self) -> int:
        """Decide split drawings on the verdicts they have when nobody is left to add more (after a
        verification stall: a small crowd may hold fewer than ``verifiers + split_verifiers`` people who
        did not draw), and ask for no more in this run. Returns how many were given up."""
        self.split_verifiers = 0
        votes = self._votes_frame()
        counts = votes.groupby("task").size() if not votes.empty else pd.Series(dtype=int)
        given_up = 0
        for it in self.ledger.items.values():
            if it.get("extra") and not it.get("decided"):
                key = item_key(it["assignment_id"], it["task_id"])
                n = int(counts.get(key, 0))
                if n >= self.settings.verifiers:
                    it["extra_unserved"] = it["extra"]
                    it["extra"] = n - self.settings.verifiers  # ready now, with the verdicts there are
                    self._set_overlap(it["vtask_id"], n)  # stop asking (Toloka keeps the minimum it must)
                    given_up += 1
        if given_up:
            self.decide_ready()
        return given_up

    def _decide(self, aid: str, entry: dict, items: list) -> None:
        from toloka.client.exceptions import IncorrectActionsApiError

        ok = all(it["verdict"] == "OK" for it in items)
        reasons = [it["reason"] for it in items if it["verdict"] == "BAD"]
        if ok:
            comment = ACCEPT_COMMENT
        elif all(it["kind"] == "control" for it in items if it["verdict"] == "BAD"):
            comment = CONTROL_REJECT_COMMENT
        else:
            comment = REJECT_COMMENTS.get(Counter(reasons).most_common(1)[0][0] if reasons else "", REJECT_COMMENTS[""])
        status = self._status(aid)
        if status == "SUBMITTED":
            try:
                if ok:
                    self.client.accept_assignment(aid, comment)
                else:
                    self.client.reject_assignment(aid, comment)
                status = "ACCEPTED" if ok else "REJECTED"
            except IncorrectActionsApiError:
                status = self._status(aid)  # someone (or an earlier run) got there first
        entry["outcome"] = {"ACCEPTED": "accepted", "REJECTED": "rejected"}.get(status, status.lower())
        entry["comment"] = comment
        entry["decided_at"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.changed = True
        if entry["outcome"] == "rejected":
            for it in items:
                self._redraw(it)
        self._drawer_ban(entry["worker_id"])

    def _status(self, aid: str) -> str:
        a = self.client.get_assignment(aid)
        return str(getattr(a.status, "value", a.status))

    def _redraw(self, item: dict) -> None:
        meta = self.ledger.tasks[item["task_id"]]
        meta["rejected"] = sum(1 for it in self.ledger.items.values() if it["task_id"] == item["task_id"]
                               and self.ledger.assignments.get(it["assignment_id"], {}).get("outcome") == "rejected")
        allowed = meta["base"] * (self.settings.max_attempts - 1)
        if meta["rejected"] > allowed:
            item["redraw"] = "attempts_exhausted"
            # a pool rule (CHANGE_OVERLAP on reject) may have raised it anyway: take that back
            self._set_overlap(item["task_id"], meta["base"] + allowed)
            return
        if self.ledger.budget_stopped or not grant(self.guard, self.slot_price):
            item["redraw"] = "budget"
            self._set_overlap(item["task_id"], meta["base"] + meta["rejected"] - 1)  # undo a pool rule's raise
            return
        target = meta["base"] + meta["rejected"]
        self._set_overlap(item["task_id"], target)
        item["redraw"] = f"overlap {target}"
        pool = self.client.get_pool(self.detection_pool_id)
        if not pool.is_open():
            self.client.open_pool(self.detection_pool_id)

    def _set_overlap(self, task_id: str, overlap: int) -> None:
        """An absolute overlap (never a delta): applying it twice after a crash changes nothing."""
        task = self.client.get_task(task_id)
        if int(task.overlap or 0) != overlap:
            self.client.patch_task_overlap_or_min(task_id, overlap=overlap, infinite_overlap=False)

    # ----------------------------------------------------------------- bans

    def _ban(self, worker: str, reason: str, skill_value: float | None = None) -> None:
        if worker in self.ledger.banned:
            return
        from toloka.client.user_restriction import ProjectUserRestriction

        self.ledger.banned[worker] = reason
        self.changed = True
        skill = self.skill_ids.get("control_skill")
        if skill and skill_value is not None:
            try:
                self.client.set_user_skill(skill_id=skill, user_id=worker,
                                           value=Decimal(str(round(float(skill_value), 2))))
            except Exception as exc:
                logger.warning("cannot set control skill of %s: %s", worker, type(exc).__name__)
        # a spammer at drawing is no judge either: both projects
        for project_id in dict.fromkeys(p for p in (self.project_id, self.verification_project_id) if p):
            try:
                self.client.set_user_restriction(ProjectUserRestriction(
                    user_id=worker, project_id=project_id, private_comment=reason))
            except Exception as exc:
                logger.warning("cannot restrict %s: %s", worker, type(exc).__name__)
        self._reject_pending(worker)

    def _reject_pending(self, worker: str) -> None:
        """A banned worker's drawings still waiting for verdicts are BAD: stop paying verifiers for them."""
        for item in self.ledger.items.values():
            entry = self.ledger.assignments.get(item["assignment_id"], {})
            if item["worker_id"] != worker or entry.get("outcome") is not None or item.get("decided"):
                continue
            if item["kind"] == "verify":
                item.update(verdict="BAD", reason="banned", decided=True)
                if item.get("vtask_id"):
                    try:
                        self.client.patch_task_overlap_or_min(item["vtask_id"], overlap=0, infinite_overlap=False)
                    except Exception as exc:
                        logger.warning("cannot stop verification task %s: %s", item["vtask_id"], type(exc).__name__)

    def _control_bans(self) -> None:
        if not self.ledger.control:
            return
        frame = pd.DataFrame(self.ledger.control, columns=["worker", "assignment", "f1", "tp", "fp", "fn"])
        scorer = ControlScorer(threshold=self.control_threshold).fit(frame)
        for worker in scorer.banned():
            self._ban(worker, f"control F1 {scorer.scores_.loc[worker, 'f1']:.2f}",
                      skill_value=100.0 * scorer.scores_.loc[worker, "f1"])

    def _drawer_ban(self, worker: str) -> None:
        outcomes = [e["outcome"] for e in self.ledger.assignments.values()
                    if e["worker_id"] == worker and e["outcome"] in ("accepted", "rejected")]
        if len(outcomes) >= self.ban_min_judged:
            rate = outcomes.count("rejected") / len(outcomes)
            if rate >= self.ban_reject_rate:
                self._ban(worker, f"{rate:.0%} of {len(outcomes)} drawings rejected by verifiers")

    # ----------------------------------------------------------------- progress and results

    def image_status(self) -> dict:
        """Per real detection task: accepted | final (attempts/budget exhausted) | pending."""
        status = {}
        cut = set(self.ledger.budget_cut)
        accepted = Counter()
        for it in self.ledger.items.values():
            outcome = self.ledger.assignments.get(it["assignment_id"], {}).get("outcome")
            if outcome == "accepted":
                accepted[it["task_id"]] += 1
        for task_id in self.real_tasks or set(self.ledger.tasks):
            meta = self.ledger.tasks.get(task_id)
            if meta is None:
                status[task_id] = "final" if task_id in cut else "pending"  # never drawn: the cap
                continue
            if accepted[task_id] >= meta["base"]:
                status[task_id] = "accepted"
            elif any(it.get("redraw") in ("attempts_exhausted", "budget") for it in self.ledger.items.values()
                     if it["task_id"] == task_id):
                status[task_id] = "final"
            else:
                status[task_id] = "pending"
        return status

    def counts(self) -> dict:
        outcomes = [e["outcome"] for e in self.ledger.assignments.values()]
        return {"submitted": len(outcomes), "accepted": outcomes.count("accepted"),
                "rejected": outcomes.count("rejected"), "pending_review": outcomes.count(None),
                "banned": len(self.ledger.banned)}

    def complete(self) -> bool:
        status = self.image_status()
        return bool(status) and all(s != "pending" for s in status.values())

    def verifications_frame(self) -> pd.DataFrame:
        rows = []
        for key, it in self.ledger.items.items():
            entry = self.ledger.assignments.get(it["assignment_id"], {})
            outcome = entry.get("outcome")
            if outcome == "rejected" and it.get("redraw", "").startswith("overlap"):
                outcome = "redraw"
            elif outcome == "rejected":
                outcome = "rejected_final"
            rows.append({"image_id": it["image_id"], "assignment_id": it["assignment_id"],
                         "worker_id": it["worker_id"], "verdict": it["verdict"] or "",
                         "ok_votes": it["ok_votes"], "bad_votes": it["bad_votes"], "attempt": it["attempt"],
                         "outcome": outcome or "pending", "reason": it["reason"], "task_id": it["task_id"],
                         "kind": it["kind"], "p_ok": it.get("p_ok", ""), "control_f1": it.get("f1", ""),
                         "method": self.settings.verdict_method if it["kind"] == "verify" else "control_iou",
                         "redraw": it.get("redraw", ""), "decided_at": entry.get("decided_at", "")})
        columns = list(VERIFICATIONS.columns) + ["reason", "task_id", "kind", "p_ok", "control_f1", "method",
                                                 "redraw", "decided_at"]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.sort_values(["image_id", "attempt", "assignment_id"], kind="stable").reset_index(drop=True)

    def sweep(self) -> bool:
        """Feed every assignment on Toloka through the handlers once more (no lag); True if anything changed."""
        self.changed = False
        det = list(self.client.get_assignments(pool_id=self.detection_pool_id,
                                               status=["SUBMITTED", "ACCEPTED", "REJECTED"]))
        self.handle_detection([a for a in det if a.id not in self.ledger.assignments])
        ver = list(self.client.get_assignments(pool_id=self.verification_pool_id, status=["SUBMITTED", "ACCEPTED"]))
        self.handle_verification([a for a in ver if a.id not in self.ledger.votes])
        return self.changed


# ---------------------------------------------------------------------------------------------
# the verification pool

VERIFICATION_POOL_ROLE = "verification_pool"


def build_verification_pool(settings: QualitySettings, *, project_id: str, skill_ids: dict, key: str,
                            will_expire: dt.datetime, config_path=None):
    """A toloka-kit Pool from ``configs/verification_pool.json``: skills resolved, overlap = verifiers.

    Refuses (CrowdboxesError) a config whose filter would let drawers verify, after the ``$drawer_skill``
    placeholder was resolved as well as before.
    """
    import copy

    from toloka.client.pool import Pool

    from crowdboxes.toloka.quality import check_verification_pool_config, resolve_skill_placeholders
    from crowdboxes.errors import CrowdboxesError

    path = config_path or settings.verification_pool_path or "verification_pool.json"
    if settings.verification_pool_config is None:
        raise CrowdboxesError(f"--mode {settings.mode}: no verification pool config loaded")
    data = resolve_skill_placeholders(copy.deepcopy(settings.verification_pool_config), skill_ids)
    check_verification_pool_config(data, path, drawer_skill_id=skill_ids.get("drawer_skill"))
    for field in ("id", "status", "created", "owner", "last_close_reason", "last_started", "last_stopped", "type"):
        data.pop(field, None)
    data.update(project_id=str(project_id), private_comment=key,
                defaults={"default_overlap_for_new_task_suites": settings.verifiers,
                          "default_overlap_for_new_tasks": settings.verifiers})
    try:
        pool = Pool.structure(data)
    except Exception as exc:
        raise CrowdboxesError(f"{path}: not a valid toloka-kit Pool ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    pool.will_expire = will_expire.astimezone(dt.timezone.utc).replace(tzinfo=None) if will_expire.tzinfo else will_expire
    return pool


def ensure_verification_pool(client, settings: QualitySettings, *, project_id: str, skill_ids: dict, key: str,
                             will_expire: dt.datetime):
    """``(pool, created)``: the verification pool with ``private_comment == key``, else a new one.

    It starts closed and empty; the loop adds tasks with ``open_pool=True`` as drawings arrive.
    """
    spec = build_verification_pool(settings, project_id=project_id, skill_ids=skill_ids, key=key,
                                   will_expire=will_expire)
    for pool in client.get_pools(project_id=str(project_id)):
        if pool.private_comment == key and str(getattr(pool.status, "value", pool.status)) != "ARCHIVED":
            return pool, False
    return client.create_pool(spec), True


def _skill_ids_from_projects(projects_csv) -> dict:
    if projects_csv is None:
        return {}
    from crowdboxes.artifacts import PROJECTS, read_csv

    frame = read_csv(projects_csv, PROJECTS, dtype={"toloka_id": str})
    return {str(r.role): str(r.toloka_id) for r in frame.itertuples(index=False) if str(r.role).endswith("_skill")}


def run_verification_loop(client, detection_pool_id: str, verification_pool_id: str, images: pd.DataFrame,
                          settings: QualitySettings | None = None, state_dir=None, *, tasks: pd.DataFrame | None = None,
                          projects_csv=None, skill_ids: dict | None = None, control: ControlSet | None = None,
                          output_dir=None, cursor_time_lag: dt.timedelta | float | None = None,
                          period: dt.timedelta | float | None = None, poll_seconds: float | None = None,
                          deadline: float | None = None, progress=None, collector=None,
                          verdict_method=None, verifiers=None, max_attempts=None, budget=None,
                          control_threshold: float = 0.4, max_rounds: int = 20,
                          stall_seconds: float | None = None,
                          split_verifiers: int = SPLIT_VERIFIERS,
                          fields: DetectionFields | None = None) -> LoopOutcome:
    """Run detection -> verification -> accept/reject/redraw until every image is resolved.

    Args:
        images: images.csv frame (``image_id, url, width, height``). ``tasks``: tasks.csv frame
            (``task_id, image_id, url``, optional ``kind`` = control).
        settings: a :class:`QualitySettings`; or give ``verdict_method, verifiers, max_attempts,
            budget`` (as wait_pool does) and it is built here.
        state_dir: ledger and cursor positions (default ``output_dir/verification_state``); re-running
            with the same folder resumes without acting on any assignment twice.
        cursor_time_lag, period: toloka-kit's defaults (60 s, 60 s) suit real Toloka; on the local
            Toloka use 0 s / 1 s. ``poll_seconds`` sets ``period`` when ``period`` is not given.
        deadline: a ``time.monotonic()`` value; the loop returns ``done=False`` after it.
        budget: USD cap (BudgetGuard over both pools); pools close when it is reached.
        split_verifiers: more verdicts asked for a drawing whose first ``verifiers`` disagree (0: none).
        stall_seconds: after this long with work waiting in a pool and nobody at work there, one warning line
            on stderr (:class:`StallWatch`, per pool); default 15 periods, at least a minute.
        fields: the detection project's field names (:mod:`crowdboxes.toloka.fields`); default: read from the
            project on Toloka, as are the verification project's.

    Writes ``verifications.csv`` (and ``qc_summary.json``) to ``output_dir`` when given.
    """
    from toloka.streaming import Pipeline

    if settings is None:
        settings = loop_settings(verifiers=verifiers, max_attempts=max_attempts, verdict_method=verdict_method,
                                 budget=budget)
    if state_dir is None:
        if output_dir is None:
            raise ValueError("state_dir or output_dir is required")
        state_dir = Path(output_dir) / "verification_state"
    lag = cursor_time_lag if cursor_time_lag is not None else (collector.lag if collector is not None else DEFAULT_LAG)
    lag = lag if isinstance(lag, dt.timedelta) else dt.timedelta(seconds=float(lag))
    if period is None:
        period = dt.timedelta(seconds=float(poll_seconds)) if poll_seconds else DEFAULT_PERIOD
    period = period if isinstance(period, dt.timedelta) else dt.timedelta(seconds=float(period))

    ids = dict(_skill_ids_from_projects(projects_csv))
    ids.update(skill_ids or {})
    guard = None
    if settings.budget is not None:
        guard = BudgetGuard(client, settings.budget)
        guard.add_pool(detection_pool_id, float(client.get_pool(detection_pool_id).reward_per_assignment))
        guard.add_pool(verification_pool_id, float(client.get_pool(verification_pool_id).reward_per_assignment))
    loop = VerificationLoop(client, detection_pool_id, verification_pool_id, images, settings, state_dir,
                            tasks=tasks, skill_ids=ids, control=control, control_threshold=control_threshold,
                            budget_guard=guard, split_verifiers=split_verifiers, fields=fields)
    loop.reconcile()
    stall_seconds = stall_seconds if stall_seconds is not None else max(60.0, 15 * period.total_seconds())
    watches = {kind: StallWatch(loop, kind, stall_seconds) for kind in ("verification", "detection")}
    Observer = _resumable_observer_class()
    polls = 0
    timed_out = False

    class _Deadline(Exception):
        pass

    from toloka.streaming.observer import BaseObserver

    class Supervisor(BaseObserver):
        """Budget, progress, completion and deadline, once per pipeline iteration."""

        async def __call__(self) -> None:
            nonlocal polls
            polls += 1
            if guard is not None and not loop.ledger.budget_stopped and guard.check():
                loop.ledger.budget_stopped = True
                loop.ledger.save()
            _report(loop, guard, progress)
            if loop.complete() or loop.ledger.budget_stopped:
                _close(client, [detection_pool_id, verification_pool_id])
            else:
                for watch in watches.values():
                    if watch.check() and watch.kind == "verification" and loop.give_up_extra_verdicts():
                        loop.ledger.save()
                        watch.since, watch.warned = watch.clock(), False  # a new wait from here
            if deadline is not None and time.monotonic() > deadline:
                raise _Deadline()

        def inject(self, injection) -> None:
            pass

    class _Pipeline(Pipeline):
        MIN_SLEEP_SECONDS = min(10.0, max(0.2, period.total_seconds()))

    state = "running"
    for _ in range(max_rounds):
        pipeline = _Pipeline(period=period, storage=CursorStorage(state_dir), name="crowdboxes-verification")
        pipeline.register(Observer(client, detection_pool_id, cursor_time_lag=lag)).on_submitted(
            loop.on_detection_submitted)
        pipeline.register(Observer(client, verification_pool_id, cursor_time_lag=lag)).on_submitted(
            loop.on_verification_submitted)
        pipeline.register(Supervisor(name="supervisor"))
        try:
            asyncio.run(pipeline.run())
        except Exception as exc:  # the Pipeline wraps callback errors; a deadline is ours
            if _is_deadline(exc, _Deadline):
                timed_out = True
                break
            raise
        changed = loop.sweep()  # events inside the lag window when the pools closed
        if loop.complete() or loop.ledger.budget_stopped:
            break
        if not changed and not _anything_open(client, [detection_pool_id, verification_pool_id]):
            loop.decide_ready(final=True)  # verifiers ran out: decide on the verdicts there are
            loop.ledger.save()
            if not loop.sweep() and not _anything_open(client, [detection_pool_id, verification_pool_id]):
                break
    if loop.complete() or loop.ledger.budget_stopped:
        _close(client, [detection_pool_id, verification_pool_id])
    spent = _report(loop, guard, progress)
    status = loop.image_status()
    counts = loop.counts()
    state = "budget_stopped" if loop.ledger.budget_stopped else ("timed_out" if timed_out else
                                                                 "completed" if loop.complete() else "incomplete")
    outcome = LoopOutcome(done=not timed_out, state=state, polls=polls, images_total=len(status),
                          images_done=sum(s != "pending" for s in status.values()), accepted=counts["accepted"],
                          rejected=counts["rejected"], banned=counts["banned"], spent_usd=spent,
                          budget_stopped=loop.ledger.budget_stopped,
                          verifier_stalls=watches["verification"].warnings, drawer_stalls=watches["detection"].warnings)
    if output_dir is not None:
        write_csv(loop.verifications_frame(), output_dir, VERIFICATIONS)
        write_text_atomic(Path(output_dir) / "qc_summary.json",
                          json.dumps({**attr.asdict(outcome), "banned_workers": loop.ledger.banned}, indent=2) + "\n")
    return outcome


def _is_deadline(exc, kind) -> bool:
    if isinstance(exc, kind):
        return True
    inner = getattr(exc, "exceptions", None) or []
    return any(_is_deadline(e, kind) for e in inner)


def _anything_open(client, pool_ids) -> bool:
    from toloka.client import Assignment

    for pool_id in pool_ids:
        if client.get_pool(pool_id).is_open():
            return True
        if client.find_assignments(pool_id=pool_id, status=[Assignment.ACTIVE], limit=1).items:
            return True
    return False


def _close(client, pool_ids) -> None:
    for pool_id in pool_ids:
        try:
            if client.get_pool(pool_id).is_open():
                client.close_pool(pool_id)
        except Exception as exc:
            logger.warning("cannot close pool %s: %s", pool_id, type(exc).__name__)


def _report(loop: VerificationLoop, guard: BudgetGuard | None, progress) -> float:
    if guard is not None:
        spent = guard.spent_
    else:
        try:
            spent = money_spent(loop.client, [loop.detection_pool_id, loop.verification_pool_id])
        except Exception:  # a progress line must not end the loop
            spent = 0.0
    status = loop.image_status()
    done = sum(s != "pending" for s in status.values())
    counts = loop.counts()
    if progress is not None:
        progress.total, progress.unit = len(status), "images done"  # the loop counts images, not answers
        progress.update(done, counts, spent, "budget_stopped" if loop.ledger.budget_stopped else "running")
    else:
        logger.info("images %d/%d done, accepted %d, rejected %d, spent $%.2f, banned %d", done, len(status),
                    counts["accepted"], counts["rejected"], spent, counts["banned"])
    return spent

