"""A verify-mode job on the local Toloka for the reliability tests: the server in this process (real HTTP,
``ManualClock``), the deterministic crowd of ``helpers_local_toloka`` (good workers draw a box, every 4th
worker draws nothing; verifiers say OK iff the drawing has a box), and the real steps as separate processes.

The crowd moves only while :meth:`World.crowd_running` steps it; what the tests wait for are conditions on
the server (assignments submitted, a lease written), never a sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from helpers_rounds import crowd_thread

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TOKEN = "reliability-test-token-5150"
TOKEN_ENV = "RELIABILITY_TOLOKA_TOKEN"
N_IMAGES = 10
VERIFIERS, MAX_ATTEMPTS = 3, 3
STEP_SECONDS = 0.00003  # real seconds the manual clock moves per crowd step: 30 simulated s, one drawing


class CreateGate:
    """WSGI wrapper of the local Toloka: while ``on``, each request that creates a project, skill, pool or
    tasks waits (up to ``seconds``) for a second such request, then both go on. Two runs that both reach a
    create therefore both send it, whatever the timing: the race the lease must prevent happens every time
    it can happen. A run kept out by a lease never comes, and the first goes on alone after ``seconds``."""

    CREATES = {("POST", "/api/v1/projects"), ("POST", "/api/v1/skills"), ("POST", "/api/v1/pools"),
               ("POST", "/api/v1/tasks")}

    def __init__(self, app: Any, seconds: float = 1.5) -> None:
        self.app, self.seconds, self.on = app, seconds, False
        self.cond = threading.Condition()
        self.waiting = 0
        self.generation = 0
        self.met = 0  # requests that found their partner

    @property
    def backend(self) -> Any:
        return self.app.backend

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if self.on and (environ["REQUEST_METHOD"], environ["PATH_INFO"]) in self.CREATES:
            with self.cond:
                if self.waiting:  # the partner is there: release it and go
                    self.waiting, self.generation = 0, self.generation + 1
                    self.met += 2
                    self.cond.notify_all()
                else:
                    self.waiting, generation = 1, self.generation
                    if not self.cond.wait_for(lambda: self.generation != generation, timeout=self.seconds):
                        self.waiting = 0
        return self.app(environ, start_response)


@dataclass
class World:
    """The server, its crowd, a toloka-kit client and the steps' environment."""

    backend: Any
    scheduler: Any
    client: Any
    url: str
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    gate: Any = None

    def step(self, steps: int = 1) -> None:
        for _ in range(steps):
            self.scheduler.step()
            self.backend.clock.advance(STEP_SECONDS)

    def crowd_running(self, pause: float = 0.005) -> contextlib.AbstractContextManager[None]:
        """Step the crowd from a thread while the block runs (the steps wait with real sleeps)."""
        return crowd_thread(lambda: self.step(1), pause)

    # ------------------------------------------------------------------ the steps, as cnvrg runs them

    def argv(self, name: str, out: Path, **params: Any) -> list[str]:
        args = [sys.executable, str(REPO / "steps" / f"{name}.py"), "--toloka_env", self.url, "--token_env", TOKEN_ENV,
                "--output_dir", str(out)]
        for key, value in params.items():
            args += [f"--{key}", str(value)]
        return args

    def start(self, name: str, out: Path, env: dict[str, str] | None = None, **params: Any) -> subprocess.Popen:
        return subprocess.Popen(self.argv(name, out, **params), cwd=REPO, env={**self.env, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, name: str, out: Path, *, timeout: float = 180, env: dict[str, str] | None = None,
            **params: Any) -> subprocess.CompletedProcess:
        proc = self.start(name, out, env, **params)
        stdout, stderr = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    def create_project(self, out: Path, key: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.start("create_project", out, env, config_dir=CONFIGS, project_key=key)

    def launch_params(self, projects_csv: Path, images_csv: Path) -> dict[str, Any]:
        return {"projects_csv": projects_csv, "images_csv": images_csv, "config_dir": CONFIGS, "mode": "verify",
                "reward": "0.02", "overlap": "1", "tasks_per_suite": "1", "time_per_suite": "600",
                "auto_accept": "false", "review_days": "21", "languages": "none", "expiry_days": "30",
                "adult_content": "false", "budget": "none", "batch_size": "4", "control_csv": "none"}

    def wait_params(self, job: Job, **extra: Any) -> dict[str, Any]:
        return {"projects_csv": job.projects_csv, "images_csv": job.images_csv, "pool_csv": job.pool_csv,
                "tasks_csv": job.tasks_csv, "poll_seconds": "0.2", "cursor_lag_seconds": "0",
                "timeout_hours": "0.1", "verifiers": VERIFIERS, "max_attempts": MAX_ATTEMPTS, **extra}

    # ------------------------------------------------------------------ what the server holds

    def assignments(self, pool_id: str) -> list[Any]:
        return list(self.client.get_assignments(pool_id=str(pool_id)))

    def tasks(self, pool_id: str) -> list[Any]:
        return list(self.client.get_tasks(pool_id=str(pool_id)))


@dataclass
class Job:
    """One launched verify-mode job: its files and pools."""

    folder: Path
    projects_csv: Path
    images_csv: Path
    pool_csv: Path
    tasks_csv: Path
    detection: str
    verification: str
    detection_project: str


def write_images(path: Path, n: int = N_IMAGES) -> pd.DataFrame:
    """images.csv as Upload Images writes it (the crowd never fetches the URLs)."""
    expires = (datetime.now(timezone.utc) + timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [{"image_id": f"im{i:02d}", "file_name": f"im{i:02d}.png", "url": f"http://127.0.0.1:9/rel/im{i:02d}.png",
             "width": 640, "height": 480, "sha256": f"{i:02d}" + "cd" * 31, "url_expires_at": expires}
            for i in range(n)]
    frame = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


@contextlib.contextmanager
def start_world(tmp: Path, *, workers: int = 8, verification_workers: int = 8) -> Iterator[World]:
    """The server over HTTP in this process with the crowd (not moving until stepped)."""
    from toloka.client import TolokaClient

    import helpers_local_toloka
    from crowdboxes.local_toloka.db import ManualClock
    from crowdboxes.local_toloka.models import Backend
    from crowdboxes.local_toloka.scheduler import Scheduler
    from crowdboxes.local_toloka.server import LocalToloka, serve

    backend = Backend(tmp / "state", speed=1e6, first_reader_seconds=0, clock=ManualClock())
    gate = CreateGate(LocalToloka(backend, TOKEN))
    server = serve(gate)  # type: ignore[arg-type]  # a WSGI app with .backend, as serve() needs
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheduler = Scheduler(backend, helpers_local_toloka, workers=workers, seed=1, solve_threads=1,
                          verification_workers=verification_workers)
    env = {**os.environ, TOKEN_ENV: TOKEN, "CROWDBOXES_LOCK_DIR": str(tmp / "locks"),
           "CROWDBOXES_LEASE_SETTLE_SECONDS": "0.3", "PYTHONPATH": str(REPO)}
    try:
        yield World(backend, scheduler, TolokaClient(TOKEN, url=backend.base_url, timeout=30.0, retries=2),
                    backend.base_url, tmp, env, gate)
    finally:
        server.shutdown()
        thread.join(5)
        backend.close()


def launch_job(world: World, key: str) -> Job:
    """Create Project and Launch Pool (verify mode, 10 images, overlap 1) as the flow runs them."""
    folder = world.tmp / key
    images_csv = folder / "images.csv"
    write_images(images_csv)
    made = world.create_project(folder / "create_project", key)
    out, err = made.communicate(timeout=120)
    assert made.returncode == 0, err
    projects_csv = folder / "create_project" / "projects.csv"
    launch = world.run("launch_pool", folder / "launch_pool", **world.launch_params(projects_csv, images_csv))
    assert launch.returncode == 0, launch.stderr
    pools = pd.read_csv(folder / "launch_pool" / "pool.csv", dtype=str).set_index("role")
    return Job(folder, projects_csv, images_csv, folder / "launch_pool" / "pool.csv",
               folder / "launch_pool" / "tasks.csv", pools.loc["detection_pool", "pool_id"],
               pools.loc["verification_pool", "pool_id"], pools.loc["detection_pool", "project_id"])


@dataclass(frozen=True)
class Bought:
    """What the job bought on the server: assignments, verification tasks, money, drawings per image."""

    drawings: int
    verdicts: int
    verification_tasks: int
    spent: float
    drawings_per_image: dict[str, int]
    accepted_per_image: dict[str, int]
    verified_drawings: list[str]  # the drawing assignment id of every verification task


def bought(world: World, job: Job) -> Bought:
    from crowdboxes.toloka.spending import money_spent

    tasks = pd.read_csv(job.tasks_csv, dtype=str).set_index("task_id")["image_id"].to_dict()
    drawings = [a for a in world.assignments(job.detection) if a.status.value in ("SUBMITTED", "ACCEPTED", "REJECTED")]
    per_image: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    for a in drawings:
        for task in a.tasks:
            per_image[tasks[task.id]] += 1
            accepted[tasks[task.id]] += a.status.value == "ACCEPTED"
    verdicts = [a for a in world.assignments(job.verification) if a.status.value in ("SUBMITTED", "ACCEPTED")]
    vtasks = world.tasks(job.verification)
    return Bought(len(drawings), len(verdicts), len(vtasks),
                  round(money_spent(world.client, [job.detection, job.verification]), 4), dict(per_image),
                  dict(accepted), [str(t.input_values["assignment_id"]) for t in vtasks])


def wait_for(condition: Callable[[], bool], timeout: float = 120.0, what: str = "a condition") -> None:
    """Poll ``condition`` (a question to the server) until it holds; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def answers_text(folder: Path) -> str:
    return (folder / "answers.csv").read_text()


def summary(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "wait_summary.json").read_text())
