"""The verification ledger rebuilt from Toloka, for a run whose state folder is fresh.

cnvrg gives every run of a step a new output folder, so a re-run of Wait Pool (finished, or after a
``kill -9``) starts without the ledger. Everything the ledger holds that costs money is on Toloka:

* each drawing is a detection assignment; its attempt number is its rank among the task's assignments
  by submission time, and its decision is the assignment's status (ACCEPTED / REJECTED; SUBMITTED = not
  decided yet);
* each drawing's verification task carries ``assignment_id`` in its input (found by ``reconcile``); its
  overlap above ``verifiers`` is the extra verdicts asked for; the verdicts are the verification
  assignments;
* a task's overlap before any redraw is the detection pool's default overlap (``base``), so after ``r``
  rejections the wanted overlap is ``base + min(r, base * (max_attempts - 1))``. The old bug: ``base`` was
  read from a task whose overlap had already been raised, so each re-run raised it again.

What is rebuilt buys nothing: decided assignments are only recorded (never re-decided, never sent to
verification again). Then one repair, as the killed run would have done it: a task whose redraw was
decided (a rejection) but whose overlap was not raised yet is raised now (within the budget), and a
SUBMITTED drawing without a verification task gets one. With ``loop.read_only`` (the pool was marked
finished) not even that.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crowdboxes.toloka.verification.loop import VerificationLoop

DECIDED = {"ACCEPTED": "accepted", "REJECTED": "rejected"}


def _status(a: Any) -> str:
    return str(getattr(a.status, "value", a.status))


def _when(a: Any) -> str:
    moment = a.accepted or a.rejected or a.submitted
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment is not None else ""


def rebuild_from_toloka(loop: VerificationLoop) -> dict[str, int]:
    """Fill ``loop.ledger`` (fresh) from both pools on Toloka; returns what was found (counts)."""
    client, ledger = loop.client, loop.ledger
    overlaps = {str(t.id): int(t.overlap or 0) for t in client.get_tasks(pool_id=loop.detection_pool_id)}
    drawings = sorted(client.get_assignments(pool_id=loop.detection_pool_id,
                                             status=["SUBMITTED", "ACCEPTED", "REJECTED"]),
                      key=lambda a: (a.submitted or a.created, str(a.id)))
    pending: list[str] = []
    for a in drawings:
        keys = loop.record_drawing(a)
        status = _status(a)
        entry = ledger.assignments[a.id]
        if status in DECIDED:
            entry.update(outcome=DECIDED[status], comment=a.public_comment or "", decided_at=_when(a))
        for key in keys:
            item = ledger.items[key]
            vtask = loop.vtask_index.get((a.id, item["url"]))
            if vtask is not None:
                item["vtask_id"] = vtask
                ledger.vtask_items[vtask] = key
                item["extra"] = max(0, loop.vtask_overlap.get(vtask, 0) - loop.settings.verifiers)
            elif status not in DECIDED:
                pending.append(key)
    verdicts = list(client.get_assignments(pool_id=loop.verification_pool_id, status=["SUBMITTED", "ACCEPTED"]))
    for va in verdicts:
        loop.record_votes(va)
    _settle_decided(loop)
    counts = {"drawings": len(drawings), "verdicts": len(verdicts),
              "accepted": sum(e["outcome"] == "accepted" for e in ledger.assignments.values()),
              "rejected": sum(e["outcome"] == "rejected" for e in ledger.assignments.values())}
    counts["raised"] = _label_redraws(loop, overlaps)
    for task_id in loop.real_tasks:  # never drawn and cut below its base by the budget cap
        if task_id not in ledger.tasks and overlaps.get(task_id, 1) < (loop.base_overlap or 1):
            ledger.budget_cut = sorted(set(ledger.budget_cut) | {task_id})
    if not loop.read_only:
        loop.send_to_verification(pending)
        loop._control_bans()
        for worker in sorted({e["worker_id"] for e in ledger.assignments.values()}):
            loop._drawer_ban(worker)
    counts["sent"] = len(pending)
    if drawings:
        print(f"verification: state folder fresh, rebuilt from Toloka: {counts['drawings']} drawings "
              f"({counts['accepted']} accepted, {counts['rejected']} rejected), {counts['verdicts']} verdict "
              f"assignments; {counts['raised']} redraws and {len(pending)} verification tasks made up for",
              file=sys.stderr, flush=True)
    return counts


def _settle_decided(loop: VerificationLoop) -> None:
    """Verdicts of drawings whose assignment Toloka shows decided: aggregated from the votes there are
    (no more asked for), else the decision itself."""
    from crowdboxes.toloka.verification.verdicts import aggregate_verdicts

    ledger = loop.ledger
    votes = loop._votes_frame()
    todo = [k for k, it in ledger.items.items() if it["kind"] == "verify" and not it.get("decided")
            and ledger.assignments[it["assignment_id"]]["outcome"] is not None]
    voted = [k for k in todo if not votes.empty and (votes["task"] == k).any()]
    if voted:
        method = loop.settings.verdict_method
        result = aggregate_verdicts(votes if method == "dawid_skene" else votes[votes["task"].isin(voted)], method,
                                    None)
        for key in voted:
            row = result.loc[key]
            ledger.items[key].update(verdict=str(row["verdict"]), reason=str(row["reason"]),
                                     ok_votes=int(row["ok_votes"]), bad_votes=int(row["bad_votes"]),
                                     p_ok=float(row["p_ok"]), decided=True)
    for key in set(todo) - set(voted):
        outcome = ledger.assignments[ledger.items[key]["assignment_id"]]["outcome"]
        ledger.items[key].update(verdict="OK" if outcome == "accepted" else "BAD", decided=True)


def _label_redraws(loop: VerificationLoop, overlaps: dict[str, int]) -> int:
    """``redraw`` of each rejected drawing, from the task's overlap on Toloka; raise what a crash left
    unraised (not in read-only mode). Returns the number of tasks raised now."""
    ledger = loop.ledger
    rejected: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for it in ledger.items.values():
        if ledger.assignments[it["assignment_id"]]["outcome"] == "rejected":
            rejected[it["task_id"]].append(it)
    raised = 0
    for task_id, items in rejected.items():
        meta = ledger.tasks[task_id]
        meta["rejected"] = len(items)
        allowed = meta["base"] * (loop.settings.max_attempts - 1)
        overlap = overlaps.get(task_id, meta["base"])
        items.sort(key=lambda it: it["attempt"])
        for k, item in enumerate(items, start=1):
            if k > allowed:
                item["redraw"] = "attempts_exhausted"
            elif overlap >= meta["base"] + k:
                item["redraw"] = f"overlap {meta['base'] + k}"
            else:
                item["redraw"] = "budget"
        wanted = meta["base"] + min(len(items), allowed)
        if overlap < wanted and not loop.read_only and task_id in loop.real_tasks:
            loop._redraw(items[-1])  # the killed run decided the rejection but did not raise the overlap yet
            raised += 1
    return raised
