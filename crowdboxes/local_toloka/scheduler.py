"""The simulated crowd's work loop: N workers take task suites from OPEN pools on an accelerated clock.

One background thread repeats :meth:`Scheduler.step`:

1. finish ACTIVE assignments whose time has come (submit, expire or skip), auto-accept submitted
   ones whose review period is over, close pools that are expired or done (``models.Backend``);
2. hand a task suite to every idle worker who passes a pool's ``filter`` (languages, skills,
   ``skill == null``), is not restricted, and has not seen those tasks; the suite is mixed by the pool's
   ``mixer_config`` (``Backend.suite_tasks``: general tasks, a shorter last suite only with
   ``force_last_assignment``, and control tasks each worker sees once). Optional *verification-only*
   workers (``v0001``...) take only judgement pools (the project's task spec shows shapes and asks a
   choice: :func:`crowdboxes.local_toloka.crowd.task_kind`), after the others: on Toloka short checking
   tasks draw their own crowd, so a verification pool whose filter excludes everyone who drew still
   finds verifiers once all ``N`` workers have drawn;
3. decide the answers of new assignments *outside* the DB lock (``Crowd.solve`` may fetch images)
   and when they are due: ``seconds_for(...) / speed`` after issue (timed by the kind of task: drawing,
   judgement, choice, text, link), or ``EXPIRED`` at ``assignment_max_duration_seconds / speed`` if the
   worker is slower than that.

The per-worker answers (noise model, image loading, judgements) come from the crowd module
(``crowdboxes.local_toloka.crowd`` unless another is injected): ``make_workforce(n, seed)``,
``Crowd(truth, seed[, label_map=, judgement_options=]).solve(profile, task_input[, task_spec,
project_id=])`` (the optional arguments are passed only if the crowd takes them) and, if present,
``seconds_for``. A crowd that answers None skips the task (injected test crowds; the real one always
answers). Everything the loop needs to resume is in the database, so a restarted server carries on.
"""

from __future__ import annotations

import datetime as dt
import inspect
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from crowdboxes.local_toloka.crowd.answering import task_kind
from crowdboxes.local_toloka.models import cost_for


if TYPE_CHECKING:
    from crowdboxes.local_toloka.models import Backend

DEFAULT_WORKER_ATTRS = {"languages": ["EN"], "country": "US", "citizenship": "US", "adult_allowed": True,
                        "client_type": "BROWSER", "user_agent_type": "BROWSER", "os_family": "WINDOWS",
                        "education": "HIGH_SCHOOL", "gender": "FEMALE"}
SKIP_SECONDS = 10.0  # a worker who cannot load an image looks at it this long before skipping
VERIFIERS_SEED = 7919  # seed offset of the verification-only workers


def _renamed(profile: Any, worker_id: str) -> Any:
    """A copy of a (frozen attrs or dataclass) worker profile under another id."""
    import dataclasses

    import attrs

    if attrs.has(type(profile)):
        return attrs.evolve(profile, worker_id=worker_id)
    return dataclasses.replace(profile, worker_id=worker_id)


def _accepts(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` takes a parameter ``name`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


# timing kinds every crowd module's seconds_for knows (the real one also takes the new names)
_LEGACY_TIMING = {"drawing": "detection", "judgement": "verification"}


def passes_filter(node: dict[str, Any] | None, attrs: dict[str, Any], skills: dict[str, Any]) -> bool:
    """Whether a worker with profile ``attrs`` and ``skills`` ({skill_id: value}) passes a pool filter."""
    from crowdboxes.local_toloka.models import _compare

    if not node:
        return True
    if "and" in node:
        return all(passes_filter(child, attrs, skills) for child in node["and"])
    if "or" in node:
        children = node["or"]
        return not children or any(passes_filter(child, attrs, skills) for child in children)
    category, key, op, value = node.get("category"), str(node.get("key")), str(node.get("operator")), node.get("value")
    if category == "skill":
        have = skills.get(key)  # None = the worker has no such skill: only `== null` matches
        return _compare(have, op, value)
    if key not in attrs:
        return True  # attributes the simulation does not model never exclude anyone
    have = attrs[key]
    if isinstance(have, list):
        wanted = value if isinstance(value, list) else [value]
        hit = any(v in have for v in wanted)
        return {"IN": hit, "EQ": hit, "NOT_IN": not hit, "NE": not hit}.get(op.upper(), hit)
    if op.upper() in {"IN", "NOT_IN"}:
        wanted = value if isinstance(value, list) else [value]
        return (have in wanted) == (op.upper() == "IN")
    return _compare(have, op, value)


def restricted(restrictions: Iterable[tuple[str, int | None, int | None]], pool_id: int, project_id: int) -> bool:
    """Whether one of a worker's active ``(scope, project_id, pool_id)`` restrictions keeps them out of a pool."""
    for scope, r_project, r_pool in restrictions:
        if scope in {"ALL_PROJECTS", "SYSTEM"}:
            return True
        if scope == "PROJECT" and r_project == project_id:
            return True
        if scope == "POOL" and r_pool == pool_id:
            return True
    return False


class Scheduler:
    """Runs the crowd against a :class:`crowdboxes.local_toloka.models.Backend`."""

    def __init__(self, backend: Backend, crowd_module: Any, *, workers: int = 40, seed: int = 1, truth: Any = None,
                 tick_seconds: float = 0.05, solve_threads: int = 4, verification_workers: int = 0,
                 label_map: dict[str, str] | None = None, judgement_options: Any = None) -> None:
        """``crowd_module``: a module (or namespace) with ``make_workforce(n, seed)``, ``Crowd(truth, seed,
        **options)`` and optionally ``seconds_for``, like :mod:`crowdboxes.local_toloka.crowd`."""
        self.backend = backend
        self.seed = int(seed)
        main = list(crowd_module.make_workforce(workers, seed))
        # their own seed and ids, so the N workers (and what they do) are the same with or without them
        extra = [_renamed(p, f"v{i + 1:04d}") for i, p in enumerate(
            crowd_module.make_workforce(int(verification_workers), self.seed + VERIFIERS_SEED))] \
            if verification_workers else []
        self.profiles = main + extra
        self.verification_only = [p.worker_id for p in extra]
        # pool id -> the crowd's kind of work (task_kind of its spec and first task)
        self._pool_kind: dict[int, str] = {}
        self._vrng = np.random.default_rng([self.seed, 0xFE1])
        self.by_id = {p.worker_id: p for p in self.profiles}
        self.attrs = {p.worker_id: {**DEFAULT_WORKER_ATTRS, **(getattr(p, "attributes", None) or {})}
                      for p in self.profiles}
        options = {k: v for k, v in (("label_map", label_map), ("judgement_options", judgement_options))
                   if v is not None}
        for key in options:
            if not _accepts(crowd_module.Crowd, key):
                raise ValueError(f"the crowd module {getattr(crowd_module, '__name__', crowd_module)!r} "
                                 f"does not take {key}")
        self.crowd = crowd_module.Crowd(truth, seed, **options)
        # injected test crowds may answer from the inputs alone: pass the spec only to a crowd that takes it
        self._pass_spec = _accepts(self.crowd.solve, "task_spec")
        self._pass_project = _accepts(self.crowd.solve, "project_id")
        self.seconds_for = getattr(crowd_module, "seconds_for", None)
        self._pass_chars = self.seconds_for is not None and _accepts(self.seconds_for, "n_chars")
        self.tick = float(tick_seconds)
        self.paused = False
        self.backend.workforce_size = len(self.profiles)
        self._pool = ThreadPoolExecutor(max_workers=max(1, solve_threads), thread_name_prefix="crowd")
        self._rng = np.random.default_rng([self.seed, 0xC0FFEE])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.last_error: str | None = None

    # -- lifecycle
    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._run, name="crowd-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.backend.changed.set()
        if self._thread:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:  # keep the crowd alive; the error is visible in /_local/stats
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.backend.changed.wait(self.tick)
            self.backend.changed.clear()

    # -- one iteration
    def step(self, now: dt.datetime | None = None) -> int:
        """One pass of the loop; returns how many assignments were issued."""
        now = now or self.backend.now()
        with self.backend.transaction():
            self.backend.finish_due(now)
            self.backend.auto_accept_due(now)
            self.backend.reopen_after_update(now)
            self.backend.close_finished_pools(now)
            issued = 0 if self.paused else self._issue()
        self._plan_new()
        return issued

    def _issue(self) -> int:
        backend = self.backend
        pools = backend.open_pools()
        if not pools:
            return 0
        busy = backend.busy_workers()
        skills = backend.user_skill_values()
        restrictions = backend.active_restrictions()
        only = set(self.verification_only)
        idle = [p for p in self.profiles if p.worker_id not in busy and p.worker_id not in only]
        order = self._rng.permutation(len(idle))
        issued = 0
        closed: set[int] = set()
        state = {"reserved": backend.reserved_funds()}
        for i in order:
            issued += self._offer(idle[i].worker_id, pools, skills, restrictions, closed, state, False)
        if only:
            idle = [w for w in self.verification_only if w not in busy]
            for i in self._vrng.permutation(len(idle)):
                issued += self._offer(idle[i], pools, skills, restrictions, closed, state, True)
        return issued

    def _offer(self, worker: str, pools: list[tuple[sqlite3.Row, dict[str, Any]]], skills: dict[str, dict[str, Any]],
               restrictions: dict[str, list[tuple[str, int | None, int | None]]], closed: set[int],
               state: dict[str, Decimal], verification_only: bool) -> int:
        """Give ``worker`` one suite of the first pool that will have them; 1 if issued."""
        backend = self.backend
        for row, doc in pools:
            if row["id"] in closed:
                continue
            if verification_only and self._pool_kind.get(row["id"], "judgement") != "judgement":
                continue
            if not passes_filter(doc.get("filter"), self.attrs[worker], skills.get(worker, {})):
                continue
            if restricted(restrictions.get(worker, ()), row["id"], row["project_id"]):
                continue
            tasks = backend.suite_tasks(row, doc, worker)  # mixer_config: general + control tasks, or []
            if tasks and row["id"] not in self._pool_kind:
                inputs = tasks[0][1].get("input_values") or {}
                self._pool_kind[row["id"]] = task_kind(self._pool_spec(row), inputs)
            if verification_only and self._pool_kind.get(row["id"]) != "judgement":
                continue
            if not tasks:
                continue
            if not backend.can_afford(doc, state["reserved"]):
                backend.close_for_balance(row["id"])
                closed.add(row["id"])
                continue
            backend.issue_suite(row, doc, worker, tasks)
            state["reserved"] += cost_for(Decimal(str(doc["reward_per_assignment"])))
            return 1
        return 0

    def _pool_spec(self, pool_row: sqlite3.Row) -> dict[str, Any] | None:
        """The task spec a pool works with (None if the backend cannot say)."""
        getter = getattr(self.backend, "pool_task_spec", None)
        if getter is None:
            return None
        try:
            return getter(pool_row)
        except Exception:
            return None

    def _plan_new(self) -> None:
        with self.backend.transaction():
            pending = self.backend.unplanned_active()
        if not pending:
            return
        for plan in self._pool.map(self._decide, pending):
            self.backend.set_plan(*plan)

    def _decide(self, item: dict[str, Any]) -> tuple[str, str, list[Any], float, dt.datetime]:
        """``(assignment_id, outcome, outputs, sim_seconds, due)`` for one new assignment."""
        profile = self.by_id.get(item["user_id"])
        rng = np.random.default_rng([self.seed, zlib.crc32(item["id"].encode())])
        created = item["created"]
        if profile is None:  # the workforce shrank across a restart: the worker walks away
            return item["id"], "SKIP", [], SKIP_SECONDS, created + self.backend.sim_to_real(SKIP_SECONDS)
        spec = item.get("task_spec")
        args = (spec,) if self._pass_spec else ()
        kwargs = {"project_id": item.get("project_id")} if self._pass_project else {}
        try:
            outputs = [self.crowd.solve(profile, inputs, *args, **kwargs) for inputs in item["inputs"]]
        except Exception as exc:  # a task the crowd cannot handle is skipped, never stuck ACTIVE
            self.errors += 1
            self.last_error = f"solve {item['id']}: {type(exc).__name__}: {exc}"
            outputs = [None]
        if any(o is None for o in outputs):
            return item["id"], "SKIP", [], SKIP_SECONDS, created + self.backend.sim_to_real(SKIP_SECONDS)
        kind = task_kind(spec, item["inputs"][0] if item["inputs"] else {})
        if self.seconds_for is not None:
            boxes = sum(_shape_count(o) for o in outputs) if kind == "drawing" else None
            extra = {}
            if kind == "text" and self._pass_chars:
                extra["n_chars"] = sum(len(v) for o in outputs for v in o.values() if isinstance(v, str))
            seconds = float(self.seconds_for(profile, len(outputs), rng, _LEGACY_TIMING.get(kind, kind), boxes,
                                             **extra))
        else:
            seconds = float(30.0 * len(outputs) * getattr(profile, "speed", 1.0) * np.exp(rng.normal(0, 0.25)))
        if seconds > item["max_seconds"]:
            return item["id"], "EXPIRE", [], seconds, created + self.backend.sim_to_real(item["max_seconds"])
        return item["id"], "SUBMIT", outputs, seconds, created + self.backend.sim_to_real(seconds)


def _shape_count(output: dict) -> int:
    """Shapes drawn in one task's answer (the longest list of dicts among its values)."""
    return max([len(v) for v in output.values() if isinstance(v, list) and all(isinstance(x, dict) for x in v)],
               default=0)
