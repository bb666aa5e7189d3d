"""Wait Pool's logic: wait for the detection pool, collect every answer, write answers.csv and the summary.

``steps/wait_pool.py`` parses the params into :class:`WaitPoolOptions` and calls :func:`wait_pool`. The
collection itself (journal, cursors, polling, progress, pixels) is :mod:`crowdboxes.toloka.collection`; a
mode with ``verify`` hands the wait to :mod:`crowdboxes.toloka.verification`, and ``--max_overlap`` to
:class:`crowdboxes.toloka.overlap.AdaptiveOverlap`. In mode ``overlap``, the missed-sign and check rounds
(:mod:`crowdboxes.toloka.rounds`) follow when pool.csv has their rows.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from crowdboxes.artifacts import (ANSWERS, CHECKS, CONTROL, POOL, TASKS, WAIT_SUMMARY, read_csv, read_images,
                                  require_numeric, write_csv)
from crowdboxes.cnvrg.metrics import cnvrg_tag, one_line
from crowdboxes.cnvrg.stepkit import output_dir
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import write_text_atomic
from crowdboxes.toloka.collection.collector import AnswerCollector
from crowdboxes.toloka.collection.progress import Progress
from crowdboxes.toloka.collection.snapshots import iso, now_utc
from crowdboxes.toloka.collection.solutions import answers_frame
from crowdboxes.toloka.collection.wait import WaitOutcome, wait_for_pool
from crowdboxes.toloka.fields import DetectionFields
from crowdboxes.toloka.quality import parse_mode
from crowdboxes.toloka.rounds.collect import BOX_CHECK
from crowdboxes.toloka.rounds.runner import RoundSettings
from crowdboxes.toloka.spending import money_spent, recorded_cost, toloka_spent_budget

if TYPE_CHECKING:
    from toloka.client import TolokaClient

    from crowdboxes.toloka.known_boxes import ControlSet
    from crowdboxes.toloka.overlap import AdaptiveOverlap
    from crowdboxes.toloka.rounds.runner import RoundPool
    from crowdboxes.toloka.verification import LoopOutcome, VerificationRun

LOCAL_LAG_SECONDS, TOLOKA_LAG_SECONDS = 1.0, 60.0  # --cursor_lag_seconds auto: a local Toloka is consistent


@dataclass(frozen=True)
class WaitPoolOptions:
    """Wait Pool's params as ``steps/wait_pool.py`` parses them (names, meanings and defaults are there)."""

    toloka_env: str
    token_env: str
    output_dir: str | None
    projects_csv: str | None
    images_csv: str
    pool_csv: str
    tasks_csv: str
    poll_seconds: float
    timeout_hours: float | None
    cursor_lag_seconds: str
    verdict_method: str
    verifiers: int
    max_attempts: int
    budget: float | None
    max_overlap: int | None
    risk_threshold: float
    missed_threshold: float | None = RoundSettings.missed_threshold
    check_low: float = RoundSettings.check_low
    check_high: float = RoundSettings.check_high
    checkers: int = RoundSettings.checkers
    lease_wait_seconds: float = 360.0


@dataclass(frozen=True)
class PoolPlan:
    """What pool.csv says: the pools (all rows), the detection and verification rows, the mode."""

    pools: pd.DataFrame
    detection: pd.Series
    verification: pd.Series | None
    mode: str

    @property
    def pool_id(self) -> str:
        """The detection pool's id."""
        return str(self.detection["pool_id"])

    @property
    def pool_ids(self) -> dict[str, str]:
        """Role (detection, verification, the rounds') -> pool id, of the pools this wait pays for."""
        from crowdboxes.toloka.rounds.runner import round_pools

        verification = {} if self.verification is None else {"verification": str(self.verification["pool_id"])}
        rounds = {role: pool.pool_id for role, pool in round_pools(self.pools).items()}
        return {"detection": self.pool_id, **verification, **rounds}

    def value(self, column: str) -> Any:
        """The detection row's ``column`` (after ``require_numeric``)."""
        return self.pools.loc[self.detection.name, column]


def _pool_row(pools: pd.DataFrame, role: str, path: str | Path) -> pd.Series | None:
    rows = pools[pools["role"].astype(str).str.startswith(role)]
    if len(rows) > 1:
        raise CrowdboxesError(f"{path}: {len(rows)} rows with role {role!r}, expected one")
    return None if rows.empty else rows.iloc[0]


def read_pools(path: str | Path) -> PoolPlan:
    """The detection row, the verification row (or None) and the mode, from pool.csv."""
    pools = read_csv(path, POOL, dtype={"pool_id": str, "project_id": str})
    detection = _pool_row(pools, "detection", path)
    if detection is None:
        raise CrowdboxesError(f"{path}: no row with role 'detection'")
    verification = _pool_row(pools, "verification", path)
    if "mode" in pools.columns and str(detection.get("mode", "")).strip() not in ("", "nan"):
        mode = parse_mode(detection["mode"], source=f"{path}: row {int(detection.name) + 2}, field 'mode'")
    else:
        mode = "overlap+verify" if verification is not None else "overlap"
    if "verify" in mode and verification is None:
        raise CrowdboxesError(f"{path}: mode {mode!r} needs a row with role 'verification'")
    require_numeric(pools, path, ("tasks", "overlap"))
    return PoolPlan(pools, detection, verification, mode)


def cursor_lag(value: str, toloka_env: str) -> float:
    """``--cursor_lag_seconds`` in seconds: ``auto`` is 60 on Toloka and 1 on a local URL."""
    if value == "auto":
        return TOLOKA_LAG_SECONDS if toloka_env in ("production", "sandbox") else LOCAL_LAG_SECONDS
    try:
        return max(0.0, float(value))
    except ValueError:
        raise CrowdboxesError(f"--cursor_lag_seconds {value!r}: expected a number of seconds or auto") from None


def adaptive_wanted(options: WaitPoolOptions, plan: PoolPlan) -> bool:
    """Whether to run adaptive overlap; refuses impossible settings before anything is read from Toloka."""
    if options.max_overlap is None:
        return False
    if plan.mode != "overlap":
        print(f"warning: --max_overlap is for mode overlap; mode {plan.mode} redraws by verification instead",
              file=sys.stderr)
        return False
    overlap = int(plan.value("overlap"))
    if options.max_overlap < overlap:
        raise CrowdboxesError(f"--max_overlap {options.max_overlap} is below the pool's overlap {overlap} "
                              f"({options.pool_csv}); use at least {overlap}, or none for a fixed overlap")
    if options.risk_threshold < 0:
        raise CrowdboxesError(f"--risk_threshold {options.risk_threshold}: must be 0 or more "
                              "(expected box errors per image)")
    return True


def rounds_wanted(options: WaitPoolOptions, plan: PoolPlan) -> dict[str, RoundPool]:
    """The rounds pool.csv has rows for (Launch Pool's ``--rounds``); refused in one line in a verify mode."""
    from crowdboxes.toloka.rounds.runner import round_pools

    pools = round_pools(plan.pools, options.pool_csv)
    if pools and "verify" in plan.mode:
        raise CrowdboxesError(f"{options.pool_csv}: the {' and '.join(pools)} round(s) run in mode overlap only, "
                              f"not in mode {plan.mode}; launch without --rounds")
    if pools:
        round_settings(options, None, 0.0).check()
    return pools


def round_settings(options: WaitPoolOptions, deadline: float | None, lag: float) -> RoundSettings:
    """The rounds' params (``--missed_threshold``, ``--check_low``, ``--check_high``, ``--checkers``)."""
    return RoundSettings(missed_threshold=options.missed_threshold, check_low=options.check_low,
                         check_high=options.check_high, checkers=options.checkers, poll_seconds=options.poll_seconds,
                         lag_seconds=lag, deadline=deadline)


def start_adaptive_overlap(options: WaitPoolOptions, client: TolokaClient, plan: PoolPlan, tasks: pd.DataFrame,
                           images: pd.DataFrame, out: Path, fields: DetectionFields) -> AdaptiveOverlap:
    """Adaptive overlap on the detection pool, within ``--budget`` (reserved at once) when given."""
    from crowdboxes.toloka.overlap import AdaptiveOverlap
    from crowdboxes.toloka.spending import BudgetGuard, reserve, slot_price

    reward = float(plan.value("reward_per_assignment"))
    guard = None
    if options.budget is not None:
        guard = BudgetGuard(client, options.budget)
        guard.add_pool(plan.pool_id, reward)
        reserve(client, guard, plan.pool_id, slot_price(reward), cut=False)
    assert options.max_overlap is not None  # adaptive_wanted checked it
    return AdaptiveOverlap(client, plan.pool_id, tasks, images, out, options.max_overlap, options.risk_threshold,
                           guard=guard, unit_price=slot_price(reward), output_field=fields.output)


def control_set(tasks_csv: str | Path) -> ControlSet | None:
    """Known boxes of control images: Launch Pool copies --control_csv beside tasks.csv (``artifacts.CONTROL``)."""
    path = CONTROL.path(Path(tasks_csv).parent)
    if not path.is_file():
        return None
    from crowdboxes.toloka.known_boxes import load_control_csv

    return load_control_csv(path)


@dataclass
class _Run:
    """One wait's moving parts, shared by its phases."""

    options: WaitPoolOptions
    client: TolokaClient
    plan: PoolPlan
    tasks: pd.DataFrame
    images: pd.DataFrame
    out: Path
    fields: DetectionFields
    collector: AnswerCollector
    progress: Progress
    expected: int
    adaptive_on: bool  # adaptive overlap asked for and possible (adaptive_wanted)
    rounds: dict[str, RoundPool]  # the rounds pool.csv has rows for (rounds_wanted)
    deadline: float | None
    started_wall: str | None
    started: float
    completed: bool = False  # this run ended with every image resolved (then the pool is marked finished)
    finished: list[str] | None = None  # when an earlier run completed this pool: its marker (finished_marker)
    timing: dict[str, Any] | None = None  # wait_summary.json's times, set by summary()
    adaptive: AdaptiveOverlap | None = None
    spent: float = 0.0  # USD on every pool of pool.csv, measured on Toloka once the wait is over
    rounds_summary: dict[str, Any] | None = None

    def verification_run(self) -> VerificationRun:
        """The verification loop's settings (mode with verify): Wait Pool's params, the collector's cursor lag."""
        from crowdboxes.toloka.quality import loop_settings
        from crowdboxes.toloka.verification import VerificationRun, skill_ids_from_projects

        options, plan = self.options, self.plan
        assert plan.verification is not None  # read_pools checked it
        return VerificationRun(
            detection_pool_id=plan.pool_id, verification_pool_id=str(plan.verification["pool_id"]),
            images=self.images, tasks=self.tasks, output_dir=self.out, fields=self.fields,
            quality=loop_settings(verifiers=options.verifiers, max_attempts=options.max_attempts,
                                  verdict_method=options.verdict_method, budget=options.budget),
            skill_ids=skill_ids_from_projects(options.projects_csv) if options.projects_csv is not None else {},
            control=control_set(options.tasks_csv), cursor_lag=self.collector.lag, period=options.poll_seconds,
            deadline=self.deadline, finished=self.finished is not None)

    def wait(self) -> WaitOutcome | LoopOutcome:
        """Wait (verification loop or polling), then read the final state of every assignment."""
        options, plan = self.options, self.plan
        outcome: WaitOutcome | LoopOutcome
        if "verify" in plan.mode:
            from crowdboxes.toloka.verification import run_verification_loop

            outcome = run_verification_loop(self.client, self.verification_run(), progress=self.progress)
        else:
            if self.adaptive_on and self.finished is None:
                self.adaptive = start_adaptive_overlap(options, self.client, plan, self.tasks, self.images, self.out,
                                                       self.fields)
                self.expected = self.progress.total = self.adaptive.expected_answers
            outcome = wait_for_pool(self.client, plan.pool_id, self.collector, self.progress,
                                    poll_seconds=options.poll_seconds, deadline=self.deadline,
                                    expected_answers=self.expected, adaptive=self.adaptive)
        # the final state of every assignment, with no lag (the last events may be inside the lag window)
        self.collector.rescan()
        final = self.collector.counts(plan.pool_id)
        self.spent = self.final_spend(outcome)
        if "verify" not in plan.mode:  # the verify loop's line counts images done, not answers: it had its last word
            self.progress.update(final["task_answers"], final, self.spent, outcome.state)
        return outcome

    def final_spend(self, outcome: WaitOutcome | LoopOutcome) -> float:
        """``spending.money_spent`` over pool.csv's pools. If Toloka cannot answer now, the loop's own figure
        (verify modes) or the collected assignments' stands in: a finished wait is never failed by its report."""
        try:
            return money_spent(self.client, self.plan.pool_ids.values())
        except Exception as exc:  # noqa: BLE001 - any failure here is a reporting failure only
            print(f"warning: could not count the money spent on Toloka ({type(exc).__name__}); "
                  f"reporting it from the collected assignments", file=sys.stderr)
            loop_figure = getattr(outcome, "spent_usd", None)  # LoopOutcome's, over both pools
            if loop_figure is not None:
                return float(loop_figure)
            return sum(recorded_cost(self.collector.records(self.plan.pool_id)))

    def answers(self) -> tuple[pd.DataFrame, list[str]]:
        """answers.csv of what was collected so far, written; and the problems met on the way."""
        frame, problems = answers_frame(self.collector.records(self.plan.pool_id), self.tasks, self.images,
                                        output_field=self.fields.output)
        write_csv(frame, self.out, ANSWERS)
        return frame, problems

    def run_rounds(self, outcome: WaitOutcome | LoopOutcome, frame: pd.DataFrame) -> pd.DataFrame:
        """The missed-sign and check rounds (when pool.csv has their rows); answers.csv's rows with ``round``.

        Without a check round, a checks.csv left in the folder by an earlier run goes: Aggregate Boxes would fold
        it into scores of answers it was never about.
        """
        if BOX_CHECK not in self.rounds:
            CHECKS.path(self.out).unlink(missing_ok=True)
        if not self.rounds or not outcome.done:
            return frame
        from crowdboxes.toloka.rounds.runner import Rounds

        labels = {label.value: label.title for label in self.fields.labels}
        runner = Rounds(self.client, self.rounds, round_settings(self.options, self.deadline, self.collector.lag
                                                                 .total_seconds()),
                        images=self.images, tasks=self.tasks, out=self.out, labels=labels,
                        total_budget=self.options.budget, all_pool_ids=list(self.plan.pool_ids.values()),
                        origin=self.started)
        frame, self.rounds_summary = runner.run(frame)
        self.spent = self.final_spend(outcome)  # the rounds' pools too
        return frame

    def summary(self, outcome: WaitOutcome | LoopOutcome, frame: pd.DataFrame, problems: list[str]) -> dict[str, Any]:
        """wait_summary.json's content (``artifacts.WAIT_SUMMARY``)."""
        plan, collector, adaptive = self.plan, self.collector, self.adaptive
        rewards, fees = recorded_cost(collector.records(plan.pool_id))
        return {
            "pool_ids": plan.pool_ids,
            "mode": plan.mode,
            # for Export (no Toloka access): the project's output and image fields and its labels
            "detection_fields": self.fields.as_dict(),
            "counts": collector.counts(plan.pool_id),
            "answer_rows": int(len(frame)),
            "images_answered": int(frame["image_id"].nunique()),
            # images with an ACCEPTED drawing, as Toloka has them now (the rescan above re-read every status,
            # decided in the flow, by hand in Toloka, or by Toloka at the end of the review period)
            "images_accepted": int(frame.loc[frame["status"] == "ACCEPTED", "image_id"].nunique()),
            # --auto_accept false: images with a drawing awaiting the requester's review, and when Toloka
            # accepts the first of those by itself
            "images_pending_review": int(frame.loc[frame["status"] == "SUBMITTED", "image_id"].nunique()),
            "review_ends_at": self.review_ends_at(),
            "expected_task_answers": self.expected,
            # spending.money_spent over pool.csv's pools; the detection part below is the same figure
            # (recorded_cost) from the collected assignments
            "spent_usd": round(self.spent, 4),
            "detection_reward_usd": round(rewards, 4),
            "detection_fee_usd": round(fees, 4),
            # Toloka's own figure for the detection pool (documented as rewards without the fee)
            "toloka_spent_budget_usd": toloka_spent_budget(self.client, plan.pool_id) if outcome.done else None,
            "pool_state": outcome.state,
            **({"adaptive_overlap": {
                "max_overlap": adaptive.max_overlap, "risk_threshold": adaptive.risk_threshold,
                "raises": adaptive.raises, "refused_by_budget": len(adaptive.refused),
                "mean_overlap": round(float(adaptive.targets.mean()), 3)}} if adaptive is not None else {}),
            **({"rounds": self.rounds_summary} if self.rounds_summary is not None else {}),
            "timed_out": not outcome.done,
            # set when an earlier run had completed the pool (its marker on Toloka): this run bought nothing
            "finished_earlier": " ".join(self.finished[:2]) if self.finished else None,
            "polls": outcome.polls,
            "problems": problems[:100],
            "problem_count": len(problems),
            **self.times(),
        }

    def review_ends_at(self) -> str | None:
        """When the review period of the oldest SUBMITTED drawing ends (``decisions.apply.review_end``):
        Toloka accepts it then; None when nothing awaits review or the pool cannot be read now."""
        pending = [r for r in self.collector.records(self.plan.pool_id) if r["status"] == "SUBMITTED"]
        if not pending:
            return None
        from crowdboxes.decisions.apply import review_end

        try:
            pool = self.client.get_pool(self.plan.pool_id)
        except Exception as exc:  # noqa: BLE001 - a reporting nicety: the answers are written
            print(f"warning: could not read pool {self.plan.pool_id}'s review period ({type(exc).__name__})",
                  file=sys.stderr)
            return None
        return iso(review_end(min(r["submitted"] for r in pending), pool))

    def times(self) -> dict[str, Any]:
        """first_started_at, started_at, finished_at, duration_seconds: this run's, or, when an earlier run
        completed the pool, that run's (kept in its marker on Toloka): a re-run that buys nothing writes the
        same times, so Export sees the same inputs and publishes no new version."""
        if self.timing is None:
            self.timing = {"first_started_at": self.collector.first_started, "started_at": self.started_wall,
                           "finished_at": iso(now_utc()), "duration_seconds": round(time.monotonic() - self.started, 1)}
            earlier = self.finished or []
            if len(earlier) >= FINISHED_MARKER.index("duration_seconds") + 1:
                marked = dict(zip(FINISHED_MARKER, earlier))
                self.timing = {"first_started_at": marked["first_started_at"] or None,
                               "started_at": marked["started_at"] or None, "finished_at": marked["finished_at"],
                               "duration_seconds": float(marked["duration_seconds"])}
            elif earlier:  # a marker of an older version: its time only
                self.timing["finished_at"] = earlier[0]
        return self.timing


def _start(options: WaitPoolOptions) -> _Run:
    """Check the params and inputs (before anything is asked of Toloka), connect and open the journal."""
    if options.poll_seconds <= 0:
        raise CrowdboxesError(f"--poll_seconds {options.poll_seconds}: must be positive")
    if options.timeout_hours is not None and not options.timeout_hours > 0:
        raise CrowdboxesError(f"--timeout_hours {options.timeout_hours}: must be positive (none: wait forever)")
    if not options.lease_wait_seconds >= 0:
        raise CrowdboxesError(f"--lease_wait_seconds {options.lease_wait_seconds}: must be 0 or more")
    out = output_dir(options.output_dir)
    plan = read_pools(options.pool_csv)
    tasks = read_csv(options.tasks_csv, TASKS, dtype={"task_id": str, "pool_id": str, "image_id": str})
    images = read_images(options.images_csv)
    expected = int(plan.value("tasks") * plan.value("overlap"))
    lag = cursor_lag(options.cursor_lag_seconds, options.toloka_env)
    adaptive = adaptive_wanted(options, plan)
    rounds = rounds_wanted(options, plan)

    from crowdboxes.toloka.client import connect
    from crowdboxes.toloka.fields import fields_from_toloka

    client = connect(options.toloka_env, options.token_env)
    # the detection project's field names, as Toloka has the project the pool runs on (a re-run of this
    # step alone, with a fresh output folder, finds them again the same way)
    fields = fields_from_toloka(client, plan.detection["project_id"])
    started_wall, started = iso(now_utc()), time.monotonic()
    deadline = started + options.timeout_hours * 3600 if options.timeout_hours is not None else None
    collector = AnswerCollector(client, [plan.pool_id], out, lag_seconds=lag, image_field=fields.image_input)
    if collector.resumed:
        print(f"wait_pool: resuming from {collector.journal.path} "
              f"({len(collector.snapshots)} assignments collected before)", file=sys.stderr, flush=True)
    progress = Progress(expected, f"wait_pool {plan.pool_id}", origin=started)
    return _Run(options, client, plan, tasks, images, out, fields, collector, progress, expected, adaptive, rounds,
                deadline, started_wall, started)


def _failed(exc: BaseException, collected: int, answers_csv: Path) -> CrowdboxesError:
    """One line for whatever broke the wait, pointing at what was kept."""
    if isinstance(exc, (CrowdboxesError, KeyboardInterrupt)):
        message = str(exc) or "interrupted"
    else:
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return CrowdboxesError(f"wait_pool: {message} (the {collected} assignments collected so far are in "
                           f"{answers_csv}; re-run with the same --output_dir to resume)")


def _tell(summary: dict[str, Any], problems: list[str]) -> None:
    """The problems on stderr (the first ten), the end figures as cnvrg tags on stdout."""
    for problem in problems[:10]:
        print(one_line(f"warning: {problem}"), file=sys.stderr)
    if len(problems) > 10:
        print(f"warning: {len(problems) - 10} more problems in {WAIT_SUMMARY.file_name}", file=sys.stderr)
    for key in ("submitted", "accepted", "rejected", "pending_review"):
        cnvrg_tag(key, summary["counts"][key])
    cnvrg_tag("answer_rows", summary["answer_rows"])
    cnvrg_tag("spent_usd", summary["spent_usd"])
    cnvrg_tag("wait_seconds", summary["duration_seconds"])
    for role, done in (summary.get("rounds") or {}).items():
        if "tasks_in_pool" not in done:
            continue  # a round turned off
        cap = "no cap" if done["budget_usd"] is None else f"of ${done['budget_usd']:.2f}"
        print(f"wait_pool: round {role}: {done['tasks_in_pool']} tasks ({done['tasks_created']} new, "
              f"{done['skipped_for_budget']} skipped for budget), {done['answers']} answers, "
              f"spent ${done['spent_usd']:.2f} {cap}", file=sys.stderr)
        cnvrg_tag(f"{role}_tasks", done["tasks_in_pool"])
        cnvrg_tag(f"{role}_spent_usd", done["spent_usd"])


def wait_pool(options: WaitPoolOptions) -> int:
    """Run Wait Pool: wait, collect, write answers.csv and wait_summary.json; 0 when the pool is done.

    A timeout or any failure raises :class:`~crowdboxes.errors.CrowdboxesError` after answers.csv got
    what was collected so far; a re-run with the same output folder resumes from the journal.
    """
    run = _start(options)
    from crowdboxes.toloka.lease import MetadataTarget, job_lease

    # the lease and the finished marker live on the detection project: Toloka edits a pool only while closed
    project = MetadataTarget(run.client, "project", str(run.plan.detection["project_id"]))
    with job_lease(project, f"wait_pool-{run.plan.pool_id}", options.lease_wait_seconds):
        run.finished = finished_marker(project, run.plan.pool_id, tasks=len(run.tasks))
        if run.finished is not None:
            print(f"wait_pool: pool {run.plan.pool_id} was completed by an earlier run ({' '.join(run.finished[:2])}); "
                  f"collecting its answers, buying nothing", file=sys.stderr, flush=True)
        code = _wait_and_write(run, options)
        if run.finished is None and run.completed:
            mark_finished(project, run.plan.pool_id, run.plan.mode, {**run.times(), "tasks": len(run.tasks)})
        return code


# the finished marker's values, in order (Toloka metadata holds lists of strings); older markers hold the first
# two, or the first five (no task count)
FINISHED_MARKER = ("finished_at", "mode", "first_started_at", "started_at", "duration_seconds", "tasks")


def finished_marker(project: Any, pool_id: str, *, tasks: int) -> list[str] | None:
    """The marker (:data:`FINISHED_MARKER`) a wait left on the project when it completed pool ``pool_id``;
    None when the pool has another number of ``tasks`` now (tasks.csv's): a Launch Pool re-run added images
    to the job, and their tasks are still to be waited for."""
    from crowdboxes.toloka.lease import finished_key

    value = project.read().get(finished_key(pool_id))
    if not value:
        return None
    marker = [str(v) for v in value]
    counted = dict(zip(FINISHED_MARKER, marker)).get("tasks", "")
    if counted.isdigit() and int(counted) != tasks:
        print(f"wait_pool: pool {pool_id} was completed with {counted} tasks and has {tasks} now (images were "
              f"added); waiting for the new ones", file=sys.stderr, flush=True)
        return None
    return marker


def mark_finished(project: Any, pool_id: str, mode: str, times: dict[str, Any]) -> None:
    """Mark pool ``pool_id`` completed (project metadata): a later run, fresh folder or not, buys nothing and
    writes this run's ``times`` (:meth:`_Run.times`)."""
    from crowdboxes.toloka.lease import finished_key

    marker = {**{k: "" if times.get(k) is None else str(times[k]) for k in times}, "mode": mode}
    try:
        project.update(lambda m: m.__setitem__(finished_key(pool_id), [marker[k] for k in FINISHED_MARKER]))
    except Exception as exc:  # noqa: BLE001 - the answers are written; a re-run then rebuilds instead
        print(f"warning: could not mark pool {pool_id} finished on Toloka ({type(exc).__name__})", file=sys.stderr)


def _wait_and_write(run: _Run, options: WaitPoolOptions) -> int:
    """The wait, answers.csv, the rounds and the summary (under the lease)."""
    answers_csv = ANSWERS.path(run.out)
    try:
        outcome = run.wait()
    except (Exception, KeyboardInterrupt) as exc:
        # whatever broke the wait, what was collected so far still reaches answers.csv
        run.answers()
        raise _failed(exc, len(run.collector.snapshots), answers_csv) from None
    finally:
        run.progress.close()
    frame, problems = run.answers()
    try:
        frame = run.run_rounds(outcome, frame)
    except (Exception, KeyboardInterrupt) as exc:
        # the detection answers are in answers.csv; the rounds' tasks stay on Toloka and a re-run resumes them
        raise _failed(exc, len(run.collector.snapshots), answers_csv) from None
    summary = run.summary(outcome, frame, problems)
    write_text_atomic(WAIT_SUMMARY.path(run.out), json.dumps(summary, indent=2) + "\n")
    _tell(summary, problems)
    counts, pool_id = summary["counts"], run.plan.pool_id
    if not outcome.done:
        raise CrowdboxesError(f"wait_pool: timed out after {options.timeout_hours} h with pool {pool_id} "
                              f"{outcome.state}: {counts['task_answers']}/{run.expected} answers collected, "
                              f"written to {answers_csv}; re-run with the same --output_dir to resume")
    run.completed = outcome.state not in ("incomplete", "timed_out")
    print(f"wait_pool: pool {pool_id} done ({outcome.state}): {counts['submitted']} assignments, "
          f"{len(frame)} answer rows, spent ${summary['spent_usd']:.2f} in {summary['duration_seconds']:.0f} s",
          file=sys.stderr, flush=True)
    if counts["pending_review"] and "verify" not in run.plan.mode:  # --auto_accept false: the requester decides
        print(f"wait_pool: {counts['pending_review']} assignments await your review; Toloka accepts them by itself "
              f"from {summary['review_ends_at'] or 'the end of the review period'} (python -m crowdboxes decide; "
              "a Wait Pool re-run then shows the new statuses)", file=sys.stderr, flush=True)
    return 0
