"""The rounds' test setup: a deterministic crowd and a local Toloka served in this process on a ManualClock.

``crowd`` answers by the task's inputs (usable as ``crowd_module="helpers_rounds"`` too): a check task
(``box_id``) gets ``yes`` for a ``stop`` box and ``wrong_class`` (right label ``stop``) otherwise; a missed-sign
task (``shown``) gets sign B when the image has it and it is not shown; a drawing gets sign A, plus sign B on
even images from the "full" workers (odd-numbered ones) while the "partial" ones miss it.

``start_local(tmp_path)`` serves a :class:`~crowdboxes.local_toloka.models.Backend` over real HTTP from a
thread; the crowd moves only when ``Local.step`` is called (or inside ``Local.crowd_running()``), so tests
wait on conditions, never on wall-clock speed. ``project_from_config``/``pool_from_config`` create the
shipped configs/ projects and pools through toloka-kit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOKEN = "rounds-local-test-token"
# every drawer outlines sign A; sign B (on even images only) is drawn by "full" workers and missed by "partial"
SIGN_A = {"shape": "rectangle", "left": 0.1, "top": 0.2, "width": 0.2, "height": 0.3, "label": "stop"}
SIGN_B = {"shape": "rectangle", "left": 0.6, "top": 0.5, "width": 0.2, "height": 0.3, "label": "yield"}
STEP_SECONDS = 0.0001  # real seconds the manual clock moves per crowd step: 100 simulated s at speed 1e6
SPEED = 1e6  # the in-process local Toloka's simulated seconds per real second
DAY_REAL_SECONDS = 86400 / SPEED  # how far to advance its ManualClock for one simulated day



@dataclass(frozen=True)
class Profile:
    worker_id: str
    kind: str  # full | partial
    speed: float = 1.0


def make_workforce(n: int, seed: int) -> list[Profile]:
    """w1, w2, ...: odd ones draw every sign, even ones miss sign B."""
    return [Profile(f"w{i + 1}", "full" if i % 2 == 0 else "partial") for i in range(int(n))]


def image_number(url: str) -> int:
    """``.../im<n>.jpg`` -> n."""
    return int(re.search(r"im(\d+)\.jpg", url).group(1))


class Crowd:
    """Answers by the task's inputs: a check (``box_id``), a missed-sign task (``shown``) or a drawing."""

    def __init__(self, truth: Any, seed: int = 0) -> None:
        pass

    def solve(self, profile: Profile, task_input: dict[str, Any]) -> dict[str, Any]:
        has_b = image_number(str(task_input["image"])) % 2 == 0
        if "box_id" in task_input:
            label = task_input["box"][0]["label"]
            return {"verdict": "yes"} if label == "stop" else {"verdict": "wrong_class", "right_label": "stop"}
        if "shown" in task_input:
            shown_b = any(abs(s["left"] - SIGN_B["left"]) < 0.05 for s in task_input["shown"])
            return {"result": [dict(SIGN_B)] if has_b and not shown_b else []}
        return {"result": [dict(SIGN_A)] + ([dict(SIGN_B)] if has_b and profile.kind == "full" else [])}


CROWD = types.SimpleNamespace(make_workforce=make_workforce, Crowd=Crowd)


@dataclass
class Local:
    """The in-process local Toloka: its backend, the crowd's scheduler and a toloka-kit client."""

    backend: Any
    scheduler: Any
    client: Any

    def step(self, steps: int = 3) -> None:
        """Let the crowd work ``steps`` rounds, moving the manual clock :data:`STEP_SECONDS` after each."""
        for _ in range(steps):
            self.scheduler.step()
            self.backend.clock.advance(STEP_SECONDS)

    def crowd_running(self) -> contextlib.AbstractContextManager[None]:
        """Step the crowd from a thread while the block runs (for code that waits with ``time.sleep``)."""
        return crowd_thread(lambda: self.step(1), pause=0.002)


@contextlib.contextmanager
def crowd_thread(step: Callable[[], None], pause: float) -> Iterator[None]:
    """Call ``step`` from a thread, ``pause`` real seconds apart, while the block runs (the simulated crowd
    working while the code under test waits with real sleeps). A failing ``step`` stops the thread, and the
    block's end raises it: the waiting code would otherwise wait for ever, and the test would hang."""
    stop = threading.Event()
    failed: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                step()
                stop.wait(pause)
        except BaseException as exc:  # noqa: BLE001 - raised when the block ends
            failed.append(exc)
            stop.set()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
    if failed:
        raise RuntimeError(f"the simulated crowd failed: {failed[0]!r}") from failed[0]


@contextlib.contextmanager
def start_local(tmp_path: Path, workers: int = 4) -> Iterator[Local]:
    """A local Toloka over HTTP in this process (ManualClock, speed 1e6), the crowd above, a toloka-kit client."""
    from toloka.client import TolokaClient

    from crowdboxes.local_toloka.db import ManualClock
    from crowdboxes.local_toloka.models import Backend
    from crowdboxes.local_toloka.scheduler import Scheduler
    from crowdboxes.local_toloka.server import LocalToloka, serve

    backend = Backend(tmp_path / "state", speed=SPEED, first_reader_seconds=0, clock=ManualClock())
    server = serve(LocalToloka(backend, TOKEN))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheduler = Scheduler(backend, CROWD, workers=workers, seed=3, solve_threads=1)
    try:
        yield Local(backend, scheduler, TolokaClient(TOKEN, url=backend.base_url, timeout=30.0, retries=2))
    finally:
        server.shutdown()
        thread.join(5)
        backend.close()


def local_fixture(token_env: str) -> Callable[..., Iterator[Local]]:
    """A test module's ``local`` fixture: :func:`start_local` in the test's folder, its token in ``token_env``
    (``local = local_fixture("MY_TEST_TOKEN")``)."""
    import pytest

    @pytest.fixture()
    def local(tmp_path: Path, monkeypatch: Any) -> Iterator[Local]:
        monkeypatch.setenv(token_env, TOKEN)
        with start_local(tmp_path) as handle:
            yield handle
    return local


# ------------------------------------------------------------------ Toloka objects from configs/

def project_from_config(client: Any, name: str) -> str:
    """The project of ``configs/<name>`` created through toloka-kit; its id."""
    from toloka.client import Project

    return client.create_project(Project.structure(json.loads((REPO / "configs" / name).read_text()))).id


def pool_from_config(client: Any, project_id: str, name: str | None, *, reward: float = 0.02, overlap: int = 1,
                     per_suite: int | None = None) -> str:
    """A pool of ``configs/<name>`` (None: a plain one-task-per-suite drawing pool), expiring in a year (the
    manual clock runs ahead of the wall clock), with ``reward`` and ``overlap``; its id."""
    from toloka.client import Pool

    data = json.loads((REPO / "configs" / name).read_text()) if name else {
        "private_name": "drawing", "assignment_max_duration_seconds": 600, "auto_accept_solutions": True,
        "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}}
    data.update(project_id=project_id, reward_per_assignment=reward,
                will_expire=(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)).isoformat(),
                defaults={"default_overlap_for_new_task_suites": overlap, "default_overlap_for_new_tasks": overlap})
    if per_suite is not None:
        data["mixer_config"]["real_tasks_count"] = per_suite
    return client.create_pool(Pool.structure(data)).id


def review_pool(client: Any, project_id: str, review_days: int = 7) -> str:
    """A drawing pool that waits for the requester's review (``--auto_accept false``), overlap 2."""
    from toloka.client import Pool

    data = {"project_id": project_id, "private_name": "drawing", "reward_per_assignment": 0.02,
            "assignment_max_duration_seconds": 600, "auto_accept_solutions": False,
            "auto_accept_period_day": review_days,
            "will_expire": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)).isoformat(),
            "defaults": {"default_overlap_for_new_task_suites": 2, "default_overlap_for_new_tasks": 2},
            "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}}
    return str(client.create_pool(Pool.structure(data)).id)


def drawn_for_review(local: Local, tmp_path: Path, n_images: int, review_days: int = 7,
                     size: tuple[float, float] = (200.0, 100.0)) -> tuple[str, Path, Any]:
    """A :func:`review_pool` of the detection project with ``n_images`` images (``size`` each), every image drawn
    twice and collected into answers.csv as Wait Pool writes it (all SUBMITTED): (pool id, answers.csv, frame)."""
    import pandas as pd
    from toloka.client import Task

    from crowdboxes.artifacts import ANSWERS, write_csv
    from crowdboxes.toloka.collection.collector import AnswerCollector
    from crowdboxes.toloka.collection.solutions import answers_frame

    client = local.client
    pool_id = review_pool(client, project_from_config(client, "detection_project.json"), review_days)
    urls = [f"http://127.0.0.1:9/review/im{i}.jpg" for i in range(n_images)]
    created = client.create_tasks([Task(pool_id=pool_id, input_values={"image": u}) for u in urls],
                                  allow_defaults=True, open_pool=True)
    by_url = {t.input_values["image"]: t.id for t in created.items.values()}
    images = pd.DataFrame({"image_id": [f"im{i}" for i in range(n_images)], "url": urls, "width": size[0],
                           "height": size[1], "file_name": [f"im{i}.jpg" for i in range(n_images)],
                           "sha256": "0" * 64})
    tasks = pd.DataFrame({"task_id": [by_url[u] for u in urls], "pool_id": pool_id, "image_id": images["image_id"],
                          "url": urls})
    for _ in range(200):
        local.step(1)
        if len(list(client.get_assignments(pool_id=pool_id, status=["SUBMITTED"]))) == 2 * n_images:
            break
    collector = AnswerCollector(client, [pool_id], tmp_path / "wait", lag_seconds=0)
    collector.rescan()
    frame, problems = answers_frame(collector.records(pool_id), tasks, images)
    assert problems == [] and set(frame["status"]) == {"SUBMITTED"} and frame["assignment_id"].nunique() == 2 * n_images
    return pool_id, write_csv(frame, tmp_path / "wait", ANSWERS), frame
