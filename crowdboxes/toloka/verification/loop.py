"""The verification loop's handlers and decisions: :class:`VerificationLoop` and what a run ends with
(:class:`LoopOutcome`); its stall warnings (:class:`StallWatch`) live in ``stalls``.

Each drawn image becomes a verification task ``{image, outlines, assignment_id}`` (named as the
verification project names them; the drawing is read from the detection project's output,
:mod:`crowdboxes.toloka.fields`) with overlap ``verifiers``; the drawer gets the drawer skill, which
the verification pool's filter excludes. Drawings of control images are scored against the known
boxes instead (:mod:`crowdboxes.toloka.known_boxes`). When an image's first verdicts disagree,
``split_verifiers`` more are asked for (dynamic overlap); then the verdicts are aggregated
(:mod:`crowdboxes.toloka.verification.verdicts`). The detection assignment is accepted (all its
images OK) or rejected with a public comment naming the problem; a rejection raises the image's
task overlap so another worker redraws it, at most ``max_attempts`` drawings per image slot.

Replayed events are recognised by assignment id; before accepting or rejecting, the assignment's
status is read from Toloka and a non-SUBMITTED one is only recorded; verification tasks already in
the pool are found by their ``assignment_id`` input at start; the raised overlap is an absolute
target (base = the pool's default overlap, + rejected drawings), so re-applying it is harmless; a
fresh state folder is filled from Toloka first (:mod:`crowdboxes.toloka.verification.rebuild`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attr
import pandas as pd

from crowdboxes.toloka.client import plain_json
from crowdboxes.artifacts import VERIFICATIONS
from crowdboxes.toloka.fields import DetectionFields, VerificationFields, fields_from_toloka, verification_fields
from crowdboxes.toloka.known_boxes import ControlScorer, ControlSet
from crowdboxes.toloka.pricing import assignment_price
from crowdboxes.toloka.quality import QualitySettings
from crowdboxes.toloka.spending import BudgetGuard, grant, reserve, slot_price
from crowdboxes.toloka.verification.state import Ledger, item_key
from crowdboxes.toloka.verification.verdicts import (ACCEPT_COMMENT, CONTROL_REJECT_COMMENT, REJECT_COMMENTS,
                                                     aggregate_verdicts)

logger = logging.getLogger(__name__)
SPLIT_VERIFIERS = 2  # more verdicts when the first --verifiers disagree


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


def _outlines(solution: Any, output_field: str = "result") -> list[Any]:
    value = (solution.output_values or {}).get(output_field) if solution is not None else None
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            value = []
    return plain_json(value) if isinstance(value, list) else []


class VerificationLoop:
    """The handlers and their state; :func:`crowdboxes.toloka.verification.runner.run_verification_loop`
    wires them into a toloka-kit Pipeline."""

    def __init__(self, client: Any, detection_pool_id: str, verification_pool_id: str, images: pd.DataFrame,
                 settings: QualitySettings, state_dir: str | os.PathLike, *, tasks: pd.DataFrame | None = None,
                 skill_ids: dict[str, str] | None = None, control: ControlSet | None = None,
                 control_threshold: float = 0.4, ban_reject_rate: float = 0.8, ban_min_judged: int = 3,
                 budget_guard: BudgetGuard | None = None, split_verifiers: int = SPLIT_VERIFIERS,
                 fields: DetectionFields | None = None,
                 verification_fields: VerificationFields | None = None) -> None:
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
        self.task_image: dict[str, str] = {}
        self.real_tasks: set[str] = set()
        if tasks is not None and len(tasks):
            for r in tasks.itertuples(index=False):
                self.task_image[str(r.task_id)] = str(r.image_id)
                is_control = str(getattr(r, "kind", "")) == "control" or str(getattr(r, "control", "")).lower() == "true"
                if not is_control and str(r.url) not in self.control:
                    self.real_tasks.add(str(r.task_id))
        self.project_id: str | None = None
        self.verification_project_id: str | None = None
        self.changed = False
        self.slot_price = 0.0
        self.vtask_index: dict[tuple[str, str | None], str] = {}  # (detection assignment, image url) -> verification task on Toloka
        self.vtask_overlap: dict[str, int] = {}  # verification task -> its overlap on Toloka (reconcile)
        self.base_overlap: int | None = None  # the detection pool's default overlap (reconcile)
        self.read_only = False  # the pool is marked finished: record and report, buy nothing
        self.rebuilt: dict[str, int] | None = None  # what rebuild_from_toloka found, when the ledger was fresh

    @property
    def pool_ids(self) -> list[str]:
        """The detection and the verification pool."""
        return [self.detection_pool_id, self.verification_pool_id]

    # ----------------------------------------------------------------- start-up reconciliation

    def reconcile(self) -> None:
        """Index verification tasks already in the pool (a crash may have lost their ledger entry); with a
        fresh state folder, rebuild the ledger from Toloka (:mod:`~crowdboxes.toloka.verification.rebuild`);
        reserve the budget for what the detection pool may still issue (cutting what does not fit)."""
        from crowdboxes.toloka.verification.rebuild import rebuild_from_toloka

        det_pool = self.client.get_pool(self.detection_pool_id)
        defaults = det_pool.defaults
        default = getattr(defaults, "default_overlap_for_new_tasks", None) if defaults is not None else None
        self.base_overlap = int(default) if default else None
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
                    is_control=lambda t: (t.input_values or {}).get(self._fields().image_input) in self.control)
            self.ledger.budget_cut = sorted(set(self.ledger.budget_cut) | set(self.guard.trimmed_))
        for task in self.client.get_tasks(pool_id=self.verification_pool_id):
            values = task.input_values or {}
            aid, url = str(values.get(self._vfields().assignment_input, "")), values.get(self._vfields().image_input)
            # a crash after create_tasks but before the ledger was saved: the replayed drawing finds it here
            self.vtask_index[(aid, url)] = task.id
            self.vtask_overlap[task.id] = int(task.overlap or 0)
            for key, item in self.ledger.items.items():
                if item["assignment_id"] == aid and item["url"] == url and not item.get("vtask_id"):
                    item["vtask_id"] = task.id
                    self.ledger.vtask_items[task.id] = key
        if not self.ledger.resumed:
            self.rebuilt = rebuild_from_toloka(self)
        self.ledger.save()

    # ----------------------------------------------------------------- detection submitted

    def on_detection_submitted(self, events: Iterable[Any]) -> None:
        """Pipeline callback: detection assignments were submitted."""
        self.handle_detection([e.assignment for e in events])

    def handle_detection(self, assignments: Iterable[Any]) -> None:
        """Record drawn images, score control drawings, send the others to verification, decide what is ready."""
        new_items = []
        for a in assignments:
            if a.id not in self.ledger.assignments:  # else a replayed event
                new_items += self.record_drawing(a)
        self.send_to_verification(new_items)
        self._control_bans()
        self.decide_ready()
        self.ledger.save()

    def _base(self, task: Any) -> int:
        """A task's overlap before any redraw: the pool's default for real images (``task.overlap`` may
        already hold raises), else what the task says."""
        if self.base_overlap is not None and task.id in self.real_tasks:
            return self.base_overlap
        return int(task.overlap or 1)

    def record_drawing(self, a: Any) -> list[str]:
        """Put one detection assignment in the ledger (items, attempt numbers, control scores); the keys of
        its drawings that need verdicts."""
        worker = str(a.user_id)
        keys, new_items = [], []
        for task, solution in zip(a.tasks, a.solutions or [None] * len(a.tasks)):
            url = (task.input_values or {}).get(self._fields().image_input)
            key = item_key(a.id, task.id)
            meta = self.ledger.tasks.setdefault(task.id, {"base": self._base(task), "rejected": 0,
                                                          "drawings": 0, "url": url})
            meta["drawings"] += 1
            outlines = _outlines(solution, self._fields().output)
            item = {"assignment_id": a.id, "task_id": task.id, "url": url, "worker_id": worker,
                    "image_id": self.task_image.get(task.id) or self._image_id(url), "attempt": meta["drawings"],
                    "outlines": outlines, "kind": "control" if url in self.control else "verify",
                    "verdict": None, "reason": "", "ok_votes": 0, "bad_votes": 0, "vtask_id": None}
            if item["kind"] == "control":
                score = self.control.score(str(url), outlines)  # a control url: a string
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
        if new_items:
            self._mark_drawer(worker)  # controls are nobody's work under review: they may still verify
        self.changed = True
        return new_items

    def send_to_verification(self, keys: Iterable[str]) -> None:
        """A verification task for each drawing of ``keys`` that has none on Toloka yet (found by its
        ``assignment_id`` input, so one created by a run that crashed before saving is reused)."""
        from toloka.client import Task

        new_vtasks = []
        existing = {(it["assignment_id"], it["url"]) for it in self.ledger.items.values() if it.get("vtask_id")}
        for key in keys:
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
            self.ledger.save()  # before the decisions: a crash there must not lose these tasks

    def _fields(self) -> DetectionFields:
        return self.fields if self.fields is not None else DetectionFields()

    def _vfields(self) -> VerificationFields:
        return self.vfields if self.vfields is not None else VerificationFields()

    def _image_id(self, url: str | None) -> str:
        row = self.image_by_url.get(str(url))
        if row is not None:
            return str(row.image_id)
        return self.control.image_ids.get(str(url), "")

    def _mark_drawer(self, worker: str) -> None:
        skill = self.skill_ids.get("drawer_skill")
        if not skill or worker in self.ledger.drawers:
            return
        self.client.set_user_skill(skill_id=skill, user_id=worker, value=Decimal(1))
        self.ledger.drawers.append(worker)

    # ----------------------------------------------------------------- verification submitted

    def on_verification_submitted(self, events: Iterable[Any]) -> None:
        """Pipeline callback: verification assignments were submitted."""
        self.handle_verification([e.assignment for e in events])

    def handle_verification(self, assignments: Iterable[Any]) -> None:
        """Record the verdicts, then decide the drawings and assignments that are ready."""
        for va in assignments:
            if va.id not in self.ledger.votes:
                self.record_votes(va)
        self.decide_ready()
        self.ledger.save()

    def record_votes(self, va: Any) -> None:
        """Put one verification assignment's verdicts in the ledger (the drawing found by its task)."""
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

    # ----------------------------------------------------------------- decisions

    def _votes_frame(self) -> pd.DataFrame:
        # crowd-kit's long format: its "task" is what was judged, here one drawing (an item key), not an image
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

    def _ask_more(self, item: dict[str, Any], need: int) -> bool:
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

    def _decide(self, aid: str, entry: dict[str, Any], items: list[dict[str, Any]]) -> None:
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

    def _redraw(self, item: dict[str, Any]) -> None:
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

    def image_status(self) -> dict[str, str]:
        """Per real detection task: accepted | final (attempts/budget exhausted) | pending."""
        status = {}
        cut = set(self.ledger.budget_cut)
        accepted: Counter[str] = Counter()
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

    def counts(self) -> dict[str, int]:
        """Detection assignments by outcome, and the number of banned workers."""
        outcomes = [e["outcome"] for e in self.ledger.assignments.values()]
        return {"submitted": len(outcomes), "accepted": outcomes.count("accepted"),
                "rejected": outcomes.count("rejected"), "pending_review": outcomes.count(None),
                "banned": len(self.ledger.banned)}

    def complete(self) -> bool:
        """Whether every real image is resolved (accepted, or final: attempts or budget exhausted)."""
        status = self.image_status()
        return bool(status) and all(s != "pending" for s in status.values())

    def verifications_frame(self) -> pd.DataFrame:
        """verifications.csv: one row per drawn image, with its verdict and what became of it."""
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
