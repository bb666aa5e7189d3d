"""Start the local Toloka as a subprocess for tests and benchmarks.

``start_local_toloka(tmp_path, token, **options) -> LocalTolokaHandle`` with ``.url``, ``.stop()``,
``.kill()``, ``.state_dir``, ``.client()`` (a toloka-kit ``TolokaClient``), ``.admin(method, path, json)``.
Options become ``serve`` flags (``workers=5`` -> ``--workers 5``; ``fault_error_rate=0.3`` ->
``--fault-error-rate 0.3``); ``state_dir=`` reuses a state folder (restart after ``kill()``).

This module is also a tiny deterministic crowd (``crowd_module="helpers_local_toloka"``) for tests of
the scheduling that must not depend on the real noise model: worker ``kind`` "good" draws one box
labelled ``stop``, "bad" draws nothing; a verifier says OK iff the outlines are not empty. Each task
takes 30 simulated seconds times the worker's ``speed``. Its ``Crowd.solve(profile, task_input)`` takes no
task spec (the scheduler then passes none) and answers None for an image named "unloadable" (the task is
skipped): the old crowd interface, which the scheduler keeps working for injected crowds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from helpers_paths import REPO_ROOT
TOKEN_ENV = "LOCAL_TOLOKA_TEST_TOKEN"


class LocalTolokaHandle:
    def __init__(self, proc, url, state_dir, token, log_path):
        self.proc, self.url, self.state_dir, self.token, self.log_path = proc, url, Path(state_dir), token, log_path

    def client(self, **kwargs):
        from toloka.client import TolokaClient

        kwargs.setdefault("timeout", 30.0)
        return TolokaClient(self.token, url=self.url, **kwargs)

    def admin(self, method: str, path: str, json=None):
        response = requests.request(method, f"{self.url}{path}", json=json,
                                    headers={"Authorization": f"OAuth {self.token}"}, timeout=30)
        response.raise_for_status()
        return response.json()

    def stop(self, timeout=15.0) -> int | None:
        """SIGTERM and wait (clean shutdown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> int | None:
        """``kill -9``: no chance to clean up."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        return self.proc.returncode

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace") if Path(self.log_path).exists() else ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# The server's explicit fast mode for tests that do not stream: a completed pool nobody reads with a
# toloka-kit cursor closes at once instead of waiting for a first streaming reader.
FAST_OPTIONS = {"first_reader_seconds": 0}


def start_local_toloka(tmp_path, token: str, *, state_dir=None, timeout: float = 90.0, defaults: bool = False,
                       **options) -> LocalTolokaHandle:
    """``defaults=True`` runs the server at its own defaults (no :data:`FAST_OPTIONS`), as a user would."""
    tmp_path = Path(tmp_path)
    if not defaults:
        options = {**FAST_OPTIONS, **options}
    state_dir = Path(state_dir) if state_dir is not None else tmp_path / "toloka_state"
    run_dir = tmp_path / "toloka_run"
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.time_ns()}"
    ready = run_dir / f"ready-{stamp}.txt"
    log_path = run_dir / f"server-{stamp}.log"
    args = [sys.executable, "-m", "crowdboxes", "local-toloka", "serve", "--host", "127.0.0.1", "--port", "0",
            "--state", str(state_dir), "--token-env", TOKEN_ENV, "--ready-file", str(ready)]
    for key, value in options.items():
        if value is None:
            continue
        args += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, TOKEN_ENV: token,
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists() and (url := ready.read_text().strip()):
            return LocalTolokaHandle(proc, url, state_dir, token, log_path)
        if proc.poll() is not None:
            raise RuntimeError(f"local Toloka exited with {proc.returncode}: {log_path.read_text(errors='replace')}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"local Toloka not ready after {timeout} s: {log_path.read_text(errors='replace')}")


# ------------------------------------------------------------------ the crowd in-process, on a manual clock

STEP_SECONDS = 0.002  # real seconds a manual clock moves per crowd step (2000 simulated seconds at speed 1e6)


def crowd_until(backend, sched, done, *, steps: int = 2000, step_seconds: float = STEP_SECONDS) -> bool:
    """Step the in-process crowd ``sched`` until ``done()``, moving ``backend.clock`` (a ``ManualClock``)
    ``step_seconds`` after each step: no wall-clock wait, so a loaded machine cannot change the outcome.
    Returns ``done()`` after at most ``steps`` steps."""
    for _ in range(steps):
        sched.step()
        if done():
            return True
        backend.clock.advance(step_seconds)
    return bool(done())


def pool_closed(backend, pool_id):
    """``done`` for :func:`crowd_until`: the pool is no longer OPEN."""
    return lambda: backend.get_pool(pool_id)["status"] != "OPEN"


# ------------------------------------------------------------------ resources the tests create

def classic_project(**outputs) -> dict:
    """A classic-view project body: a required ``image`` url input, a ``result`` json output and ``outputs``
    (name -> output spec)."""
    return {"public_name": "p", "task_spec": {
        "input_spec": {"image": {"type": "url", "required": True}},
        "output_spec": {"result": {"type": "json"}, **outputs},
        "view_spec": {"type": "classic", "markup": "x"}}}


def pool_spec(project_id, **extra) -> dict:
    """A pool body (0.02 per assignment, expires in a day, overlap 1, one task per suite) updated with
    ``extra``; a key given as None is left out."""
    import datetime as dt

    from crowdboxes.local_toloka.db import fmt_ts, utcnow
    spec = {"project_id": project_id, "private_name": "p", "reward_per_assignment": 0.02,
            "assignment_max_duration_seconds": 600, "will_expire": fmt_ts(utcnow() + dt.timedelta(days=1)),
            "defaults": {"default_overlap_for_new_task_suites": 1},
            "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}}
    spec.update(extra)
    return {k: v for k, v in spec.items() if v is not None}


def kit_project(client, **outputs):
    """:func:`classic_project` created through toloka-kit (``outputs``: name -> toloka-kit field spec)."""
    import toloka.client as toloka
    return client.create_project(toloka.Project(
        public_name="p", public_description="d",
        task_spec=toloka.project.task_spec.TaskSpec(
            input_spec={"image": toloka.project.UrlSpec()},
            output_spec={"result": toloka.project.JsonSpec(), **outputs},
            view_spec=toloka.project.ClassicViewSpec(markup="x"))))


def kit_pool(project_id, *, mixer: bool = True):
    """A toloka-kit ``Pool`` (not created) like :func:`pool_spec`; ``mixer=False`` leaves out mixer_config."""
    import datetime as dt

    import toloka.client as toloka
    pool = toloka.Pool(project_id=project_id, private_name="Pool", may_contain_adult_content=False,
                       reward_per_assignment=0.02, assignment_max_duration_seconds=600,
                       will_expire=dt.datetime.utcnow() + dt.timedelta(days=1),
                       defaults=toloka.Pool.Defaults(default_overlap_for_new_task_suites=1))
    if mixer:
        pool.set_mixer_config(real_tasks_count=1, golden_tasks_count=0, training_tasks_count=0)
    return pool


# ------------------------------------------------------------------ a deterministic crowd for tests

@dataclass(frozen=True)
class FakeProfile:
    worker_id: str
    kind: str = "good"
    speed: float = 1.0


def make_workforce(n: int, seed: int, mix=None) -> list[FakeProfile]:
    """Workers ``f01``...; every 4th is "bad" when ``seed`` is odd, all are good when it is even."""
    return [FakeProfile(f"f{i + 1:02d}", "bad" if seed % 2 and i % 4 == 3 else "good") for i in range(int(n))]


def seconds_for(profile, n_tasks, rng, kind="detection", n_boxes=None) -> float:
    return 30.0 * n_tasks * profile.speed


GOOD_BOX = {"shape": "rectangle", "left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4, "label": "stop"}


class Crowd:
    def __init__(self, truth_index, seed=0):
        self.truth, self.seed = truth_index, seed

    def solve(self, profile, task_input: dict):
        image = str(task_input.get("image", ""))
        if "unloadable" in image:
            return None
        if "outlines" in task_input:
            ok = bool(task_input["outlines"])
            return {"verdict": "OK" if ok else "BAD", "reason": "" if ok else "missed_sign"}
        return {"result": [dict(GOOD_BOX)] if profile.kind == "good" else []}
