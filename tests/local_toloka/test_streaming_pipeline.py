"""A toloka-kit streaming Pipeline at default settings sees every assignment of our detection pool.

toloka-kit's ``AssignmentsObserver`` reads assignment events through cursors that only ask for events at
least 60 s old (``cursor_time_lag``), and a ``Pipeline`` stops once every observed pool is closed. On Toloka a
worker takes minutes, so a pool's last event is old news when the pool closes. The local Toloka's crowd
finishes a small pool in seconds; at its default settings a completed pool stays open until the readers
following it have read past its last event, so a default Pipeline processes everything.

The project and pool are ``configs/detection_project.json`` and ``configs/detection_pool.json`` used the way
the README says users adapt them (toloka-kit's JSON for ``Project`` and ``Pool``: load, fill in the skill id,
the project id and the expiry, create). Four runs, each on its own server and at once (each mostly waits for
the 60 s lag): the Pipeline started with the pool; started 10 s later (a user running the next notebook cell);
a pool without auto-acceptance whose submissions the Pipeline itself accepts (events after the pool
completed); and a control with ``--reader-hold-seconds 0`` (Toloka-literal instant completion) where the same
Pipeline misses assignments: the mechanism the others rely on, and proof that they can fail.
"""

from __future__ import annotations

import collections
import datetime
import json
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from helpers_examples import (ImageServer, assignment_ids, pause, pool_state, road_picture, run_pipeline,
                              start_in_background, write_truth)
from helpers_local_toloka import REPO_ROOT, start_local_toloka

toloka = pytest.importorskip("toloka.client")
streaming = pytest.importorskip("toloka.streaming")

pytestmark = [pytest.mark.server, pytest.mark.slow]

TOKEN = "streaming-token"
N_IMAGES = 10
PIPELINE_SECONDS = 8 * 60  # generous: the default run takes about the cursor lag plus a few periods
PERIOD = datetime.timedelta(seconds=5)  # Pipeline's polling period (default 60 s); the cursor lag stays 60 s


def _road_world(folder, server):
    """Road photos on a loopback server and the truth file with their signs: ``(urls, truth path)``."""
    specs, urls = [], []
    for i in range(N_IMAGES):
        boxes = [(1, 30 + 9 * i, 40, 80, 80), (9, 240, 150, 90, 70)]
        specs.append({"name": f"street{i:02d}.png", "size": (400, 300), "boxes": boxes})
        urls.append(server.add(specs[-1]["name"], road_picture(500 + i, [b[1:] for b in boxes])))
    return urls, write_truth(folder / "truth.coco.json", server, specs)


def _launch_detection_pool(client, urls, auto_accept=True):
    """Our detection project and pool from configs/, as a user would create them with toloka-kit."""
    project = client.create_project(toloka.structure(
        json.loads((REPO_ROOT / "configs" / "detection_project.json").read_text()), toloka.Project))
    skill = client.create_skill(name="Road sign outlines", hidden=True,
                                public_requester_description={"EN": "Has outlined road signs"})
    pool_json = (REPO_ROOT / "configs" / "detection_pool.json").read_text().replace("$drawer_skill", skill.id)
    pool = toloka.structure(json.loads(pool_json), toloka.Pool)
    pool.project_id = project.id
    pool.auto_accept_solutions = auto_accept  # the flow's ``auto_accept`` param
    pool.will_expire = datetime.datetime.utcnow() + datetime.timedelta(days=7)
    pool = client.create_pool(pool)
    client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"image": url}) for url in urls],
                        allow_defaults=True)
    return pool


def _observe(client, pool_id, start_after: float = 0.0, review=False) -> tuple[dict[str, set[str]], bool]:
    """Open the pool, and ``start_after`` seconds later run a default Pipeline with one AssignmentsObserver on
    it (``review``: its submitted-callback accepts what it sees, as a review step would); the ids each callback
    received and whether the Pipeline finished by itself."""
    seen = collections.defaultdict(set)
    pipeline = streaming.Pipeline(period=PERIOD)
    observer = pipeline.register(streaming.AssignmentsObserver(client, pool_id))  # default 60 s cursor lag

    @observer.on_submitted
    def submitted(events):
        seen["SUBMITTED"].update(event.assignment.id for event in events)
        for event in events if review else ():
            client.accept_assignment(event.assignment.id, "Checked")

    @observer.on_accepted
    def accepted(events):
        seen["ACCEPTED"].update(event.assignment.id for event in events)

    client.open_pool(pool_id)
    pause(start_after)
    finished = run_pipeline(pipeline, PIPELINE_SECONDS)
    return dict(seen), finished


@dataclass
class Run:
    """One server, one pool, one Pipeline: what the observer saw and what the pool holds at the end."""
    seen: dict = field(default_factory=dict)
    finished: bool = False
    submitted: set = field(default_factory=set)
    accepted: set = field(default_factory=set)
    state: str = ""
    error: str | None = None

    def require(self) -> "Run":
        if self.error:
            pytest.fail(self.error, pytrace=False)
        return self

    def missed(self, kind: str) -> str:
        expected = self.submitted if kind == "SUBMITTED" else self.accepted
        lost = expected - self.seen.get(kind, set())
        if not lost:
            return ""
        return f"the observer missed {len(lost)} of {len(expected)} {kind.lower()} assignments; {self.state}"


# name -> (serve options, images, auto-accept, pipeline started after (s), the Pipeline reviews submissions)
RUNS = {
    # default settings, the Pipeline started together with the pool
    "with_the_pool": ({}, N_IMAGES, True, 0.0, False),
    # default settings, the Pipeline started 10 s after the pool opened (the next notebook cell, another process)
    "10s_later": ({}, N_IMAGES, True, 10.0, False),
    # default settings, no auto-acceptance: the Pipeline accepts what it sees, after the pool completed
    "own_reviews": ({}, 4, False, 0.0, True),
    # control: the pool closes the moment it completes (Toloka-literal), so a 60 s-lag cursor reads nothing
    "no_hold": ({"reader_hold_seconds": 0}, N_IMAGES, True, 0.0, False),
}


def _run(folder, urls, truth, options, n_images, auto_accept, start_after, review) -> Run:
    run = Run()
    try:
        with start_local_toloka(folder, TOKEN, defaults=True, ground_truth=truth, **options) as server:
            client = server.client()
            pool = _launch_detection_pool(client, urls[:n_images], auto_accept=auto_accept)
            run.seen, run.finished = _observe(client, pool.id, start_after, review=review)
            run.submitted = assignment_ids(client, pool.id)
            run.accepted = assignment_ids(client, pool.id, ("ACCEPTED",))
            run.state = pool_state(client, pool.id)
    except BaseException:  # noqa: BLE001 - reported by the run's test
        run.error = traceback.format_exc()
    return run


def _run_all(base) -> dict:
    """The four runs at once on one image server: each waits mostly for the 60 s cursor lag."""
    server = ImageServer()
    try:
        urls, truth = _road_world(base, server)
        with ThreadPoolExecutor(len(RUNS), thread_name_prefix="pipeline") as executor:
            futures = {name: executor.submit(_run, base / name, urls, truth, *spec) for name, spec in RUNS.items()}
            return {name: future.result() for name, future in futures.items()}
    finally:
        server.close()


def start_early(folder, selected=None):
    """Start the runs (conftest calls this once collection shows these tests are selected; all runs serve
    every test, so ``selected`` does not narrow them)."""
    return start_in_background("streaming_pipeline", folder, _run_all)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return start_early(lambda: tmp_path_factory.mktemp("streaming_pipeline")).result()


@pytest.mark.parametrize("name", ["with_the_pool", "10s_later"])
def test_default_pipeline_processes_every_assignment(runs, name):
    """Started at once, or a few seconds after the pool opened: either way the Pipeline sees everything."""
    run = runs[name].require()
    assert run.finished, f"the Pipeline did not stop after {PIPELINE_SECONDS} s: {run.state}"
    assert len(run.submitted) >= N_IMAGES * 3, f"overlap 3 for every image: {run.state}"
    for kind in ("SUBMITTED", "ACCEPTED"):
        if run.missed(kind):
            pytest.fail(run.missed(kind), pytrace=False)


def test_default_pipeline_sees_its_own_reviews(runs):
    """A pool without auto-acceptance, reviewed by the Pipeline itself (accept on submit, as the streaming
    notebook's verification step does): the acceptances come after the pool completed, and the Pipeline
    still reads them before it stops."""
    run = runs["own_reviews"].require()
    assert run.finished, f"the Pipeline did not stop after {PIPELINE_SECONDS} s: {run.state}"
    assert run.accepted and not run.missed("SUBMITTED"), run.missed("SUBMITTED") or run.state
    if run.missed("ACCEPTED"):
        pytest.fail(run.missed("ACCEPTED") + " (acceptances made after the pool completed)", pytrace=False)


def test_without_reader_hold_the_same_pipeline_misses_assignments(runs):
    """Control: with the pool closing the moment it completes, a 60 s lag cursor reads nothing. This is the
    mechanism the tests above rely on, and proof that they can fail."""
    run = runs["no_hold"].require()
    assert run.finished and run.submitted, run.state
    assert run.missed("SUBMITTED"), "without the hold the 60 s cursor lag loses assignments"
