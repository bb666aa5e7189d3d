"""The simulated crowd's work loop: N workers take task suites from OPEN pools on an accelerated clock.

One background thread repeats :meth:`Scheduler.step`:

1. finish ACTIVE assignments whose time has come (submit, expire or skip), auto-accept submitted
   ones whose review period is over, close pools that are expired or done (``models.Backend``);
2. hand a task suite to every idle worker who passes a pool's ``filter`` (languages, skills,
   ``skill == null``), is not restricted, and has not seen those tasks; the suite is mixed by the pool's
   ``mixer_config`` (``Backend.suite_tasks``: general tasks, a shorter last suite only with
   ``force_last_assignment``, and control tasks each worker sees once). Optional *verification-only*
   workers (``v0001``...) take only verification tasks (an ``outlines`` input), after the others: on
   Toloka short checking tasks draw their own crowd, so a verification pool whose filter excludes
   everyone who drew still finds verifiers once all ``N`` workers have drawn;
3. decide the answers of new assignments *outside* the DB lock (``Crowd.solve`` may fetch images)
   and when they are due: ``seconds_for(...) / speed`` after issue, or ``EXPIRED`` at
   ``assignment_max_duration_seconds / speed`` if the worker is slower than that.

The per-worker answers (noise model, image loading, judgements) come from the crowd module
(``crowdboxes.local_toloka.crowd`` unless another is injected): ``make_workforce(n, seed)``,
``Crowd(truth_index, seed).solve(profile, task_input)`` and, if present, ``seconds_for``.
Everything the loop needs to resume is in the database, so a restarted server carries on.
"""

from __future__ import annotations

import datetime as dt
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

from decimal import Decimal

import numpy as np

from crowdboxes.local_toloka.db import utcnow
from crowdboxes.local_toloka.models import cost_for

DEFAULT_WORKER_ATTRS = {"languages": ["EN"], "country": "US", "citizenship": "US", "adult_allowed": True,
                        "client_type": "BROWSER", "user_agent_type": "BROWSER", "os_family": "WINDOWS",
                        "education": "HIGH_SCHOOL", "gender": "FEMALE"}
SKIP_SECONDS = 10.0  # a worker who cannot load an image looks at it this long before skipping
VERIFIERS_SEED = 7919  # seed offset of the verification-only workers


def _renamed(profile, worker_id: str):
    """A copy of a (frozen attrs or dataclass) worker profile under another id."""
    import dataclasses

    import attrs

    if attrs.has(type(profile)):
        return attrs.evolve(profile, worker_id=worker_id)
    return dataclasses.replace(profile, worker_id=worker_id)


def passes_filter(node, attrs: dict, skills: dict) -> bool:
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


def restricted(restrictions, pool_id: int, project_id: int) -> bool:
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

    def __init__(self, backend, crowd_module, *, workers: int = 40, seed: int = 1, truth=None,
                 tick_seconds: float = 0.05, solve_threads: int = 4, verification_workers: int = 0):
        self.backend = backend
        self.seed = int(seed)
        main = list(crowd_module.make_workforce(workers, seed))
        # their own seed and ids, so the N workers (and what they do) are the same with or without them
        extra = [_renamed(p, f"v{i + 1:04d}") for i, p in enumerate(
            crowd_module.make_workforce(int(verification_workers), self.seed + VERIFIERS_SEED))] \
            if verification_workers else []
        self.profiles = main + extra
        self.verification_only = [p.worker_id for p in extra]
        self._pool_kind: dict = {}  # pool id -> verification | detection (from its first task)
        self._vrng = np.random.default_rng([self.seed, 0xFE1])
        self.by_id = {p.worker_id: p for p in self.profiles}
        self.attrs = {p.worker_id: {**DEFAULT_WORKER_ATTRS, **(getattr(p, "attributes", None) or {})}
                      for p in self.profiles}
        self.crowd = crowd_module.Crowd(truth, seed)
        self.seconds_for = getattr(crowd_module, "seconds_for", None)
        self.tick = float(tick_seconds)
        self.paused = False
        self.backend.workforce_size = len(self.profiles)
        self._pool = ThreadPoolExecutor(max_workers=max(1, solve_threads), thread_name_prefix="crowd")
        self._rng = np.random.default_rng([self.seed, 0xC0FFEE])
        self._stop = threading.Event()
        self._thread = None
        self.errors = 0
        self.last_error = None

    # -- lifecycle
    def start(self):
        self._thread = threading.Thread(target=self._run, name="crowd-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        self.backend.changed.set()
        if self._thread:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self):
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
        now = now or utcnow()
        with self.backend.transaction():
            self.backend.finish_due(now)
            self.backend.auto_accept_due(now)
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
        closed = set()
        state = {"reserved": backend.reserved_funds()}
        for i in order:
            issued += self._offer(idle[i].worker_id, pools, skills, restrictions, closed, state, False)
        if only:
            idle = [w for w in self.verification_only if w not in busy]
            for i in self._vrng.permutation(len(idle)):
                issued += self._offer(idle[i], pools, skills, restrictions, closed, state, True)
        return issued

    def _offer(self, worker, pools, skills, restrictions, closed, state, verification_only) -> int:
        """Give ``worker`` one suite of the first pool that will have them; 1 if issued."""
        backend = self.backend
        for row, doc in pools:
            if row["id"] in closed:
                continue
            if verification_only and self._pool_kind.get(row["id"]) == "detection":
                continue
            if not passes_filter(doc.get("filter"), self.attrs[worker], skills.get(worker, {})):
                continue
            if restricted(restrictions.get(worker, ()), row["id"], row["project_id"]):
                continue
            tasks = backend.suite_tasks(row, doc, worker)  # mixer_config: general + control tasks, or []
            if tasks and row["id"] not in self._pool_kind:
                inputs = tasks[0][1].get("input_values") or {}
                self._pool_kind[row["id"]] = "verification" if "outlines" in inputs else "detection"
            if verification_only and self._pool_kind.get(row["id"]) != "verification":
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

    def _plan_new(self):
        with self.backend.transaction():
            pending = self.backend.unplanned_active()
        if not pending:
            return
        for plan in self._pool.map(self._decide, pending):
            self.backend.set_plan(*plan)

    def _decide(self, item):
        """``(assignment_id, outcome, outputs, sim_seconds, due)`` for one new assignment."""
        profile = self.by_id.get(item["user_id"])
        rng = np.random.default_rng([self.seed, zlib.crc32(item["id"].encode())])
        created = item["created"]
        if profile is None:  # the workforce shrank across a restart: the worker walks away
            return item["id"], "SKIP", [], SKIP_SECONDS, created + self.backend.sim_to_real(SKIP_SECONDS)
        try:
            outputs = [self.crowd.solve(profile, inputs) for inputs in item["inputs"]]
        except Exception as exc:  # a task the crowd cannot handle is skipped, never stuck ACTIVE
            self.errors += 1
            self.last_error = f"solve {item['id']}: {type(exc).__name__}: {exc}"
            outputs = [None]
        if any(o is None for o in outputs):
            return item["id"], "SKIP", [], SKIP_SECONDS, created + self.backend.sim_to_real(SKIP_SECONDS)
        kind = "verification" if item["inputs"] and "outlines" in item["inputs"][0] else "detection"
        if self.seconds_for is not None:
            boxes = sum(len(o.get("result") or []) for o in outputs) if kind == "detection" else None
            seconds = float(self.seconds_for(profile, len(outputs), rng, kind, boxes))
        else:
            seconds = float(30.0 * len(outputs) * getattr(profile, "speed", 1.0) * np.exp(rng.normal(0, 0.25)))
        if seconds > item["max_seconds"]:
            return item["id"], "EXPIRE", [], seconds, created + self.backend.sim_to_real(item["max_seconds"])
        return item["id"], "SUBMIT", outputs, seconds, created + self.backend.sim_to_real(seconds)
