"""The verification loop's persistent state in its state folder: the ledger and the cursor positions.

Exactly once: everything the handlers did is in the ledger (saved atomically after every handler
call), and the cursors are kept by a token-free storage (toloka-kit's JSONLocalStorage would pickle
the client and with it the token), so a re-run with the same folder resumes without acting on any
assignment twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from crowdboxes.artifacts import VERIFICATION_CURSORS, VERIFICATION_LEDGER
from crowdboxes.files import write_text_atomic


class Ledger:
    """What the loop has done, in ``state_dir``: saved atomically after every handler call."""

    def __init__(self, state_dir: str | os.PathLike) -> None:
        self.path = VERIFICATION_LEDGER.path(state_dir)
        data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        self.items: dict[str, dict[str, Any]] = data.get("items", {})  # "<assignment>|<task>" -> one drawn image
        self.assignments: dict[str, dict[str, Any]] = data.get("assignments", {})  # detection assignment -> outcome
        self.votes: dict[str, list[list[str]]] = data.get("votes", {})  # verification assignment -> [[item, worker, label, reason]]
        self.tasks: dict[str, dict[str, Any]] = data.get("tasks", {})  # detection task -> base overlap, rejected count
        self.drawers: list[str] = data.get("drawers", [])
        self.banned: dict[str, str] = data.get("banned", {})
        self.control: list[list[Any]] = data.get("control", [])  # [worker, assignment, f1, tp, fp, fn]
        self.vtask_items: dict[str, str] = data.get("vtask_items", {})  # verification task -> item key
        self.budget_stopped: bool = data.get("budget_stopped", False)
        self.budget_cut: list[str] = data.get("budget_cut", [])  # detection tasks whose overlap the cap cut
        self.resumed = bool(data)  # an earlier run left a ledger

    def save(self) -> None:
        """Write the ledger atomically (a crash leaves the previous version)."""
        data = {k: getattr(self, k) for k in ("items", "assignments", "votes", "tasks", "drawers", "banned",
                                               "control", "vtask_items", "budget_stopped", "budget_cut")}
        write_text_atomic(self.path, json.dumps(data, indent=1, sort_keys=True))


def item_key(assignment_id: str, task_id: str) -> str:
    """The ledger's key of one drawn image: a detection assignment and one of its tasks."""
    return f"{assignment_id}|{task_id}"


class CursorStorage:
    """A toloka.streaming storage that keeps only cursor positions, as JSON (no client, no token).

    Pipeline calls ``save`` after each observer run and ``load`` at start; observers must be
    :class:`crowdboxes.toloka.verification.streaming.ResumableAssignmentsObserver` (their ``inject``
    accepts the saved dict).
    """

    def __init__(self, state_dir: str | os.PathLike) -> None:
        self.path = VERIFICATION_CURSORS.path(state_dir)

    def _read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}

    def lock(self, key: str) -> AbstractContextManager[None]:
        return nullcontext()  # one loop per state folder: nothing to lock against

    def save(self, base_key: str, data: dict[str, Any]) -> None:
        stored = self._read()
        for key, observer in data.items():
            state = getattr(observer, "cursor_states", None)
            if state is not None:
                stored[key] = state()
        write_text_atomic(self.path, json.dumps(stored, indent=1, sort_keys=True))

    def load(self, base_key: str, keys: Iterable[str]) -> dict[str, Any] | None:
        stored = self._read()
        return {k: stored[k] for k in keys if k in stored} or None

    def cleanup(self, base_key: str, keys: Iterable[str], lock: Any) -> None:
        pass  # keep the positions: a re-run after the pools finished must not replay everything
