"""The order of the rounds inside Wait Pool (mode ``overlap``), each within its budget, restartably.

After the detection pool is done and its answers are collected:

1. aggregate every answer with LeanEM (``min_score`` :data:`MIN_SCORE`, so every candidate keeps its score);
2. **missed-sign round** (pool.csv role ``missed_signs``, on unless ``--missed_threshold none``): the images
   with ``expected_missed > missed_threshold``, most at risk first, one task each (overlap 1), within the
   round's budget; wait; the additions join answers.csv with ``round = missed_signs`` (first-round rows:
   ``drawing``); a drawer of the image adding to it is dropped (:mod:`.collect`);
3. re-aggregate; **check round** (role ``box_check``): the boxes with score in ``[check_low, check_high]``, most
   uncertain first, one task each (overlap ``--checkers``), within the round's budget; wait; the verdicts go
   to checks.csv (``artifacts.CHECKS``).

**Budget.** A round's budget is its pool.csv row's ``estimated_cost`` (Launch Pool sets it), lowered to what
Wait Pool's ``--budget`` leaves after every other pool of pool.csv (measured on Toloka), a hard cap:
tasks are created only while the whole round pool fits (:func:`.selection.affordable`, asked again before
every create). The formula counts whole suites of the pool's ``real_tasks_count`` tasks, as Toloka fills
them; should Toloka issue smaller suites, the :class:`~crowdboxes.toloka.spending.BudgetGuard` that measures
what Toloka owes at every poll closes the pool on a real overshoot. Skipped images and boxes are counted.
A re-run assumes the same ``--checkers`` as the run that made the tasks already there.

**Exactly once.** Each round starts by listing its pool's tasks on Toloka (:mod:`.tasks`); whatever is there
is not created again, and its answers are collected like the new ones. The collection journal of a round is
kept in ``<output_dir>/rounds/<round>/`` (the detection pool's journal stays where it was).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from crowdboxes.artifacts import ANSWERS, CHECKS, ROUND_JOURNALS, write_csv
from crowdboxes.errors import CrowdboxesError
from crowdboxes.toloka.collection.collector import AnswerCollector
from crowdboxes.toloka.collection.progress import Progress
from crowdboxes.toloka.collection.wait import MAX_POLL_FAILURES, pool_state
from crowdboxes.toloka.pools import ROUND_POOL_ROLES
from crowdboxes.toloka.pricing import assignment_price
from crowdboxes.toloka.rounds import selection, tasks as round_tasks
from crowdboxes.toloka.rounds.collect import (BOX_CHECK, DRAWING, MISSED_SIGNS, check_rows, missed_sign_rows,
                                              round_tasks_frame, with_round)
from crowdboxes.toloka.spending import BudgetGuard, money_spent

if TYPE_CHECKING:
    from crowdboxes.aggregation import LeanEM

MIN_SCORE = 0.01  # LeanEM keeps every candidate down to this, so the uncertain boxes are there to check


@dataclass(frozen=True)
class RoundSettings:
    """Wait Pool's round params (``steps/wait_pool.py`` has their meanings) and the wait's pacing."""

    # the defaults of Wait Pool's params (the step parser and WaitPoolOptions take them from here), chosen with
    # benchmarks/bench_aggregation.py's rounds replay
    missed_threshold: float | None = 0.1
    check_low: float = 0.05
    check_high: float = 0.97
    checkers: int = 1
    poll_seconds: float = 60.0
    lag_seconds: float = 60.0
    deadline: float | None = None  # a ``clock()`` value

    def check(self) -> None:
        """Refuse impossible values in one line, before anything is asked of Toloka."""
        if self.missed_threshold is not None and not self.missed_threshold >= 0:
            raise CrowdboxesError(f"--missed_threshold {self.missed_threshold}: must be 0 or more (expected missed "
                                  "signs per image), or none to turn the missed-sign round off")
        if not 0 <= self.check_low <= self.check_high <= 1:
            raise CrowdboxesError(f"--check_low {self.check_low} / --check_high {self.check_high}: need "
                                  "0 <= check_low <= check_high <= 1 (box scores)")
        if self.checkers < 1:
            raise CrowdboxesError(f"--checkers {self.checkers}: must be at least 1 (checkers per box)")


@dataclass(frozen=True)
class RoundPool:
    """A round's pool.csv row: its pool, reward per assignment (USD) and budget (USD, fees included; None: no cap)."""

    role: str
    pool_id: str
    reward: float
    budget: float | None


def round_pools(pools: pd.DataFrame, path: str | Path = "pool.csv") -> dict[str, RoundPool]:
    """The rounds pool.csv has a row for (role ``missed_signs`` / ``box_check``; at most one each)."""
    out = {}
    for role in ROUND_POOL_ROLES:
        rows = pools[pools["role"].astype(str).str.startswith(role)]
        if len(rows) > 1:
            raise CrowdboxesError(f"{path}: {len(rows)} rows with role {role!r}, expected one")
        if rows.empty:
            continue
        row = rows.iloc[0]
        try:
            reward, cost = float(row["reward_per_assignment"]), float(row["estimated_cost"])
        except (TypeError, ValueError):
            raise CrowdboxesError(f"{path}: role {role!r}: reward_per_assignment and estimated_cost must be "
                                  "numbers") from None
        if not (math.isfinite(cost) and cost >= 0):
            raise CrowdboxesError(f"{path}: role {role!r}: estimated_cost {row['estimated_cost']!r} is not a budget "
                                  "(USD, 0 or more: Launch Pool writes the round's budget there)")
        out[role] = RoundPool(role, str(row["pool_id"]), reward, cost)
    return out


def drawers_of(answers: pd.DataFrame) -> dict[str, set[str]]:
    """Image id -> the workers who drew it in the first round (answers.csv rows with ``round`` drawing)."""
    drawn = answers[answers["round"] == DRAWING]
    return {str(i): set(g.astype(str)) for i, g in drawn.groupby(drawn["image_id"].astype(str))["worker_id"]}


def aggregate(answers: pd.DataFrame, images: pd.DataFrame) -> LeanEM:
    """LeanEM (``min_score`` :data:`MIN_SCORE`) over the answers not rejected."""
    from crowdboxes.aggregation import LeanEM

    valid = answers[answers["status"].astype(str) != "REJECTED"].rename(columns={"worker_id": "worker"})
    model = LeanEM(min_score=MIN_SCORE)
    model.fit(valid.assign(image_id=valid["image_id"].astype(str)),
              images[["image_id", "width", "height"]].astype({"image_id": str}))
    return model


class Rounds:
    """Runs the rounds pool.csv has rows for; :meth:`run` returns answers.csv's frame and the summary section.

    ``sleep`` and ``clock`` pace the waits (tests inject ones that step a simulated crowd); ``origin`` (a
    ``clock()`` value, default: each round's start) is where the progress charts' time axis starts.
    """

    def __init__(self, client: Any, pools: dict[str, RoundPool], settings: RoundSettings, *, images: pd.DataFrame,
                 tasks: pd.DataFrame, out: Path, labels: dict[str, str], total_budget: float | None = None,
                 all_pool_ids: Sequence[str] = (), sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, origin: float | None = None) -> None:
        self.client, self.pools, self.settings, self.out = client, pools, settings, Path(out)
        self.images = images.assign(image_id=images["image_id"].astype(str))
        self.sizes = {i: (float(w), float(h)) for i, w, h in
                      zip(self.images["image_id"], self.images["width"], self.images["height"])}
        # the URL the detection task used (tasks.csv), else images.csv's
        self.urls = dict(zip(self.images["image_id"], self.images["url"].astype(str)))
        self.urls.update(zip(tasks["image_id"].astype(str), tasks["url"].astype(str)))
        self.labels = labels  # label value -> the worker-facing title (the detection project's)
        # Wait Pool's --budget over every pool of pool.csv (all_pool_ids), rounds included
        self.total_budget, self.all_pool_ids = total_budget, [str(p) for p in all_pool_ids]
        self.sleep, self.clock = sleep, clock
        self.origin = origin  # the clock reading the progress charts' time axis starts at (the step's start)

    # ------------------------------------------------------------------ the whole

    def run(self, drawings: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Both rounds (those with a pool); answers.csv (with ``round``) and checks.csv are written on the way."""
        answers = with_round(drawings, DRAWING)
        summary: dict[str, Any] = {}
        if MISSED_SIGNS in self.pools and self.settings.missed_threshold is not None:
            answers, summary[MISSED_SIGNS] = self.missed_signs(answers)
        elif MISSED_SIGNS in self.pools:
            summary[MISSED_SIGNS] = {"pool_id": self.pools[MISSED_SIGNS].pool_id, "off": "--missed_threshold none"}
        write_csv(answers, self.out, ANSWERS)
        if BOX_CHECK in self.pools:
            summary[BOX_CHECK] = self.box_check(answers)
        return answers, summary

    # ------------------------------------------------------------------ rounds

    def missed_signs(self, answers: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The missed-sign round; answers.csv's rows with the additions appended."""
        pool, threshold = self._capped(self.pools[MISSED_SIGNS]), self.settings.missed_threshold
        assert threshold is not None
        model = aggregate(answers, self.images)
        at_risk = [i for i in selection.at_risk_images(model.images_, threshold) if i in self.sizes]
        existing = round_tasks.list_tasks(self.client, pool.pool_id)
        per_suite, price = self._suite(pool)
        left = self._left(pool, existing, per_suite, price)
        plan = selection.plan_images(at_risk, round_tasks.task_images(existing), overlap=1, tasks_per_suite=per_suite,
                                     price=price, budget=left, n_existing_tasks=0)
        inputs = round_tasks.missed_sign_inputs(plan.new["image_id"].tolist(), self.urls, self.sizes, model.boxes_)
        created = round_tasks.create_tasks(self.client, pool.pool_id, inputs, overlap=1,
                                           fits=self._fits(left, 1, per_suite, price))
        collector, outcome = self._wait(pool)
        all_tasks = round_tasks.list_tasks(self.client, pool.pool_id)
        rows = missed_sign_rows(collector.records(pool.pool_id), round_tasks_frame(all_tasks, pool.pool_id),
                                self.images, drawers_of(answers))
        merged = pd.concat([answers, rows.frame], ignore_index=True) if len(rows.frame) else answers
        counts = collector.counts(pool.pool_id)
        return merged, {
            **self._common(pool, plan, created, counts, outcome, len(all_tasks)), "threshold": threshold,
            "images_at_risk": len(at_risk), "answer_rows": int(len(rows.frame)),
            "dropped_drawer_rows": rows.dropped_drawer_rows, "problems": rows.problems[:20],
            "problem_count": len(rows.problems)}

    def box_check(self, answers: pd.DataFrame) -> dict[str, Any]:
        """The check round; writes checks.csv."""
        pool, s = self._capped(self.pools[BOX_CHECK]), self.settings
        model = aggregate(answers, self.images)
        current = selection.with_box_ids(model.boxes_)
        candidates = selection.uncertain_boxes(model.boxes_, s.check_low, s.check_high)
        existing_tasks = round_tasks.list_tasks(self.client, pool.pool_id)
        existing = round_tasks.task_boxes(existing_tasks, self.sizes)
        per_suite, price = self._suite(pool)
        left = self._left(pool, existing_tasks, per_suite, price)
        plan = selection.plan_boxes(candidates, existing, overlap=s.checkers, tasks_per_suite=per_suite, price=price,
                                    budget=left, n_existing_tasks=0)
        inputs = round_tasks.check_inputs(plan.new, self.urls, self.sizes, self.labels)
        created = round_tasks.create_tasks(self.client, pool.pool_id, inputs, overlap=s.checkers,
                                           fits=self._fits(left, s.checkers, per_suite, price))
        collector, outcome = self._wait(pool)
        all_tasks = round_tasks.list_tasks(self.client, pool.pool_id)
        inputs_by_task = {str(t.id): dict(t.input_values or {}) for t in all_tasks}
        alias = selection.aliases(round_tasks.task_boxes(all_tasks, self.sizes), current)
        rows = check_rows(collector.records(pool.pool_id), inputs_by_task, current, self.labels.keys(), alias,
                          drawers=drawers_of(answers))
        write_csv(rows.frame, self.out, CHECKS)
        counts = collector.counts(pool.pool_id)
        return {**self._common(pool, plan, created, counts, outcome, len(all_tasks)),
                "check_low": s.check_low, "check_high": s.check_high, "checkers": s.checkers,
                "boxes_uncertain": int(len(candidates)), "check_rows": int(len(rows.frame)),
                "unknown_box": rows.unknown_box, "bad_verdict": rows.bad_verdict,
                "dropped_drawer_checks": rows.dropped_drawer_checks, "problems": rows.problems[:20],
                "problem_count": len(rows.problems)}

    # ------------------------------------------------------------------ shared parts

    def _capped(self, pool: RoundPool) -> RoundPool:
        """``pool`` with its budget lowered to what ``--budget`` leaves after the other pools' spending."""
        if self.total_budget is None:
            return pool
        others = [p for p in self.all_pool_ids if p != pool.pool_id]
        left = max(0.0, self.total_budget - money_spent(self.client, others)) if others else self.total_budget
        budget = left if pool.budget is None else min(pool.budget, left)
        return RoundPool(pool.role, pool.pool_id, pool.reward, budget)

    def _suite(self, pool: RoundPool) -> tuple[int, float]:
        """(tasks per suite of the pool's mixer, USD per assignment with Toloka's fee)."""
        mixer = getattr(self.client.get_pool(pool.pool_id), "mixer_config", None)
        per_suite = int(getattr(mixer, "real_tasks_count", None) or 1)
        return max(1, per_suite), assignment_price(pool.reward)

    def _left(self, pool: RoundPool, existing: Sequence[Any], per_suite: int, price: float) -> float | None:
        """The round's budget minus what its pool's existing tasks already commit (None: no cap).

        Committed = Toloka's charges so far (``spending.money_spent``: submitted and accepted assignments)
        + every assignment issued and not yet submitted + the suites the tasks' unissued overlap still needs,
        ``ceil(sum of remaining_overlap / tasks per suite)``. Counting what Toloka has and not a formula of the
        task count keeps the cap when earlier passes (a re-run, other thresholds) each ended in a partial suite.
        """
        if pool.budget is None:
            return None
        paid = money_spent(self.client, [pool.pool_id]) if existing else 0.0
        issued = sum(1 for _ in self.client.get_assignments(pool_id=pool.pool_id, status="ACTIVE")) if existing else 0
        slots = sum(int(getattr(t, "remaining_overlap", 0) or 0) for t in existing)
        return max(0.0, pool.budget - paid - (issued + math.ceil(slots / max(1, per_suite))) * price)

    @staticmethod
    def _fits(left: float | None, overlap: int, per_suite: int, price: float) -> Callable[[int], bool]:
        """The budget question asked before every create: do ``n`` new tasks still fit in what is ``left``?"""
        def fits(n: int) -> bool:
            return left is None or selection.pool_cost(n, overlap, per_suite, price) <= left + 1e-9
        return fits

    def _wait(self, pool: RoundPool) -> tuple[AnswerCollector, str]:
        """Collect the round pool's answers until it is done; CrowdboxesError at the deadline (re-run resumes)."""
        collector = AnswerCollector(self.client, [pool.pool_id], ROUND_JOURNALS.path(self.out) / pool.role,
                                    lag_seconds=self.settings.lag_seconds)
        expected = sum(int(t.overlap or 0) for t in round_tasks.list_tasks(self.client, pool.pool_id))
        progress = Progress(expected, f"wait_pool round {pool.role} (pool {pool.pool_id})", clock=self.clock,
                            origin=self.origin, group=pool.role)
        guard = BudgetGuard(self.client, pool.budget)
        guard.add_pool(pool.pool_id, pool.reward)
        guard.reserving = True  # the tasks were cut to the budget: only a real overshoot closes the pool
        failures = 0
        try:
            while True:
                try:
                    collector.poll()
                    guard.check()
                    counts = collector.counts(pool.pool_id)
                    done, state = pool_state(self.client, pool.pool_id, expected, counts["task_answers"])
                    failures = 0
                except Exception as exc:
                    failures += 1
                    if failures >= MAX_POLL_FAILURES:
                        raise
                    print(f"warning: round {pool.role}: poll failed ({type(exc).__name__}); trying again",
                          file=sys.stderr, flush=True)
                    done, state = False, "poll failed"
                else:
                    progress.update(counts["task_answers"], counts, guard.spent_, state)
                if done:
                    break
                remaining = None if self.settings.deadline is None else self.settings.deadline - self.clock()
                if remaining is not None and remaining <= 0:
                    raise CrowdboxesError(f"timed out in round {pool.role} (pool {pool.pool_id} {state}); the "
                                          "tasks stay on Toloka, re-run to resume")
                self.sleep(self.settings.poll_seconds if remaining is None
                           else min(self.settings.poll_seconds, remaining))
        finally:
            progress.close()
        collector.rescan()  # the last answers may be inside the cursor lag
        return collector, state

    def _common(self, pool: RoundPool, plan: selection.RoundPlan, created: round_tasks.Created,
                counts: dict[str, int], state: str, n_tasks: int) -> dict[str, Any]:
        """The summary fields both rounds have."""
        return {"pool_id": pool.pool_id, "budget_usd": None if pool.budget is None else round(pool.budget, 4),
                "round_budget_usd": self.pools[pool.role].budget, "selected": int(len(plan.new)),
                "tasks_created": created.created, "tasks_already_there": plan.already, "tasks_in_pool": n_tasks,
                "skipped_for_budget": plan.skipped + created.refused, "failed_tasks": created.failed[:20],
                "answers": counts["task_answers"], "assignments": counts["submitted"],
                "spent_usd": round(money_spent(self.client, [pool.pool_id], {pool.pool_id: pool.reward}), 4),
                "pool_state": state}
