"""Run the verification round: :func:`run_verification_loop` with its settings, :class:`VerificationRun`.

A ``toloka.streaming.Pipeline`` watches both pools' SUBMITTED assignments and feeds them to the
:class:`~crowdboxes.toloka.verification.loop.VerificationLoop`; a supervisor checks the budget, reports
progress, warns about stalls and ends the run at the deadline. After each pipeline run a sweep reads
what the cursor lag hid; the rounds end when every image is resolved, the budget stopped the pools,
or nothing is open and nothing changed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attr
import pandas as pd

from crowdboxes.artifacts import PROJECTS, QC_SUMMARY, VERIFICATIONS, read_csv, write_csv
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import write_text_atomic
from crowdboxes.toloka.fields import DetectionFields
from crowdboxes.toloka.known_boxes import ControlSet
from crowdboxes.toloka.quality import QualitySettings
from crowdboxes.toloka.spending import BudgetGuard
from crowdboxes.toloka.verification.loop import SPLIT_VERIFIERS, LoopOutcome, VerificationLoop
from crowdboxes.toloka.verification.stalls import StallWatch
from crowdboxes.toloka.verification.state import CursorStorage

DEFAULT_LAG = dt.timedelta(seconds=60)  # toloka-kit's default: the API is eventually consistent
DEFAULT_PERIOD = dt.timedelta(seconds=60)
STATE_FOLDER = "verification_state"  # inside output_dir when no state_dir is given


def _timedelta(value: dt.timedelta | float) -> dt.timedelta:
    return value if isinstance(value, dt.timedelta) else dt.timedelta(seconds=float(value))


def _optional_path(value: str | os.PathLike | None) -> Path | None:
    return None if value is None else Path(value)


@attr.s(frozen=True, auto_attribs=True, kw_only=True, eq=False)
class VerificationRun:
    """Everything one run of the verification loop needs, besides the client and a progress reporter.

    Attributes:
        detection_pool_id, verification_pool_id: the two pools (pool.csv).
        images: images.csv frame (``image_id, url, width, height``).
        quality: the checked QC settings (``verifiers``, ``max_attempts``, ``verdict_method``, ``budget``:
            USD cap over both pools, None = no cap), e.g. :func:`crowdboxes.toloka.quality.loop_settings`.
        output_dir: where ``verifications.csv`` and ``qc_summary.json`` are written (None: not written).
        state_dir: the ledger and cursor positions (default ``output_dir/verification_state``); re-running
            with the same folder resumes without acting on any assignment twice.
        tasks: tasks.csv frame (``task_id, image_id, url``, optional ``control``/``kind``).
        skill_ids: projects.csv role -> Toloka skill id (:func:`skill_ids_from_projects`).
        control: control images with known boxes (:mod:`crowdboxes.toloka.known_boxes`).
        fields: the detection project's field names; default: read from the project on Toloka.
        cursor_lag, period: toloka-kit's defaults (60 s, 60 s) suit real Toloka; on the local Toloka
            use 0 s / 1 s. Seconds or a ``timedelta``.
        deadline: a ``time.monotonic()`` value; the loop returns ``done=False`` after it.
        control_threshold: the control-drawing F1 below which a drawing is BAD.
        split_verifiers: more verdicts asked for a drawing whose first ``verifiers`` disagree (0: none).
        stall_seconds: after this long with work waiting in a pool and nobody at work there, one warning
            line on stderr (:class:`~crowdboxes.toloka.verification.loop.StallWatch`, per pool); default
            15 periods, at least a minute.
        max_rounds: pipeline runs at most (each ends when both pools are closed).
        finished: the detection pool is marked finished on Toloka (an earlier run completed it): the ledger
            is rebuilt and reported, and nothing is decided, created or bought.
    """

    detection_pool_id: str = attr.ib(converter=str)
    verification_pool_id: str = attr.ib(converter=str)
    images: pd.DataFrame
    quality: QualitySettings
    output_dir: Path | None = attr.ib(default=None, converter=_optional_path)
    state_dir: Path | None = attr.ib(default=None, converter=_optional_path)
    tasks: pd.DataFrame | None = None
    skill_ids: Mapping[str, str] = attr.Factory(dict)
    control: ControlSet | None = None
    fields: DetectionFields | None = None
    cursor_lag: dt.timedelta = attr.ib(default=DEFAULT_LAG, converter=_timedelta)
    period: dt.timedelta = attr.ib(default=DEFAULT_PERIOD, converter=_timedelta)
    deadline: float | None = None
    control_threshold: float = 0.4
    split_verifiers: int = SPLIT_VERIFIERS
    stall_seconds: float | None = None
    max_rounds: int = 20
    finished: bool = False

    def __attrs_post_init__(self) -> None:
        if self.state_dir is None and self.output_dir is None:
            raise CrowdboxesError("the verification loop needs a state_dir or an output_dir")

    @property
    def state_folder(self) -> Path:
        """``state_dir``, else ``output_dir/verification_state``."""
        if self.state_dir is not None:
            return self.state_dir
        assert self.output_dir is not None  # checked in __attrs_post_init__
        return self.output_dir / STATE_FOLDER

    @property
    def stall_after(self) -> float:
        """Seconds of stall before a warning: ``stall_seconds``, else 15 periods, at least a minute."""
        if self.stall_seconds is not None:
            return float(self.stall_seconds)
        return max(60.0, 15 * self.period.total_seconds())


def skill_ids_from_projects(projects_csv: str | os.PathLike) -> dict[str, str]:
    """The ``*_skill`` rows of projects.csv: role -> Toloka skill id."""
    frame = read_csv(projects_csv, PROJECTS, dtype={"toloka_id": str})
    return {str(r.role): str(r.toloka_id) for r in frame.itertuples(index=False) if str(r.role).endswith("_skill")}


def _budget_guard(client: Any, run: VerificationRun) -> BudgetGuard | None:
    if run.quality.budget is None:
        return None
    guard = BudgetGuard(client, run.quality.budget)
    for pool_id in (run.detection_pool_id, run.verification_pool_id):
        guard.add_pool(pool_id, float(client.get_pool(pool_id).reward_per_assignment))
    return guard


def run_verification_loop(client: Any, run: VerificationRun, *, progress: Any = None) -> LoopOutcome:
    """Run detection -> verification -> accept/reject/redraw until every image is resolved.

    ``run`` holds every setting (:class:`VerificationRun`); ``progress`` (optional) is told after every
    pipeline iteration through ``update(done, counts, spent_usd, state)`` and its ``total``/``unit`` are
    set to the images (e.g. :class:`crowdboxes.toloka.collection` 's Progress). Without it a log line is
    written. Writes ``verifications.csv`` and ``qc_summary.json`` to ``run.output_dir`` when given.
    """
    from toloka.streaming import Pipeline

    from crowdboxes.toloka.verification.streaming import (ResumableAssignmentsObserver, Supervisor,
                                                          anything_open, close_open_pools, is_deadline, report)

    guard = _budget_guard(client, run)
    loop = VerificationLoop(client, run.detection_pool_id, run.verification_pool_id, run.images, run.quality,
                            run.state_folder, tasks=run.tasks, skill_ids=dict(run.skill_ids), control=run.control,
                            control_threshold=run.control_threshold, budget_guard=guard,
                            split_verifiers=run.split_verifiers, fields=run.fields)
    loop.read_only = run.finished
    loop.reconcile()
    watches = {kind: StallWatch(loop, kind, run.stall_after) for kind in ("verification", "detection")}
    supervisor = Supervisor(loop, guard, progress, watches, run.deadline)
    timed_out = False
    # nothing to wait for: marked finished, or every image resolved with both pools closed (a re-run)
    idle = run.finished or (loop.complete() and not anything_open(client, loop.pool_ids))
    for _ in range(0 if idle else run.max_rounds):
        # CursorStorage is duck-typed to toloka-kit's storage protocol (its BaseStorage would pickle the client)
        pipeline = Pipeline(period=run.period, storage=CursorStorage(run.state_folder),  # type: ignore[arg-type]
                            name="crowdboxes-verification")
        # toloka-kit sleeps at least 10 s between iterations; a short period (the local Toloka) means less
        pipeline.MIN_SLEEP_SECONDS = min(10.0, max(0.2, run.period.total_seconds()))  # type: ignore[attr-defined]
        detection = ResumableAssignmentsObserver(client, run.detection_pool_id, cursor_time_lag=run.cursor_lag)
        detection.on_submitted(loop.on_detection_submitted)
        verification = ResumableAssignmentsObserver(client, run.verification_pool_id, cursor_time_lag=run.cursor_lag)
        verification.on_submitted(loop.on_verification_submitted)
        for observer in (detection, verification, supervisor):
            pipeline.register(observer)
        try:
            asyncio.run(pipeline.run())
        except Exception as exc:  # the Pipeline wraps callback errors; a deadline is ours
            if is_deadline(exc):
                timed_out = True
                break
            raise
        changed = loop.sweep()  # events inside the lag window when the pools closed
        if loop.complete() or loop.ledger.budget_stopped:
            break
        if not changed and not anything_open(client, loop.pool_ids):
            loop.decide_ready(final=True)  # verifiers ran out: decide on the verdicts there are
            loop.ledger.save()
            if not loop.sweep() and not anything_open(client, loop.pool_ids):
                break
    if (loop.complete() or loop.ledger.budget_stopped) and not run.finished:
        close_open_pools(client, loop.pool_ids)
    spent = report(loop, guard, progress)
    outcome = _outcome(loop, spent, supervisor.polls, timed_out, watches)
    if run.output_dir is not None:
        write_csv(loop.verifications_frame(), run.output_dir, VERIFICATIONS)
        write_text_atomic(QC_SUMMARY.path(run.output_dir),
                          json.dumps({**attr.asdict(outcome), "banned_workers": loop.ledger.banned}, indent=2) + "\n")
    return outcome


def _outcome(loop: VerificationLoop, spent: float, polls: int, timed_out: bool,
             watches: dict[str, StallWatch]) -> LoopOutcome:
    status = loop.image_status()
    counts = loop.counts()
    stopped = loop.ledger.budget_stopped
    state = "budget_stopped" if stopped else "timed_out" if timed_out else \
        "completed" if loop.complete() else "incomplete"
    return LoopOutcome(done=not timed_out, state=state, polls=polls, images_total=len(status),
                       images_done=sum(s != "pending" for s in status.values()), accepted=counts["accepted"],
                       rejected=counts["rejected"], banned=counts["banned"], spent_usd=spent, budget_stopped=stopped,
                       verifier_stalls=watches["verification"].warnings, drawer_stalls=watches["detection"].warnings)
