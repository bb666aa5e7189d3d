"""A toloka-kit streaming Pipeline at default settings sees every assignment of our detection pool.

toloka-kit's ``AssignmentsObserver`` reads assignment events through cursors that only ask for events at
least 60 s old (``cursor_time_lag``), and a ``Pipeline`` stops once every observed pool is closed. On Toloka a
worker takes minutes, so a pool's last event is old news when the pool closes. The local Toloka's crowd
finishes a small pool in seconds; at its default settings a completed pool stays open until the readers
following it have read past its last event, so a default Pipeline processes everything.

The project and pool are ``configs/detection_project.json`` and ``configs/detection_pool.json`` used the way
the README says users adapt them (toloka-kit's JSON for ``Project`` and ``Pool``: load, fill in the skill id,
the project id and the expiry, create). The control test starts the server with ``--reader-hold-seconds 0``
(Toloka-literal instant completion) and shows the same Pipeline missing assignments: the mechanism the main
test relies on, and proof that the main test can fail.
"""

from __future__ import annotations

import collections
import datetime
import json
import time

import pytest

from helpers_examples import (ImageServer, assignment_ids, pool_state, road_picture, run_pipeline,
                              write_truth)
from helpers_local_toloka import REPO_ROOT, start_local_toloka

toloka = pytest.importorskip("toloka.client")
streaming = pytest.importorskip("toloka.streaming")

pytestmark = pytest.mark.slow

TOKEN = "streaming-token"
N_IMAGES = 10
PIPELINE_SECONDS = 8 * 60  # generous: the default run takes about the cursor lag plus a few periods
PERIOD = datetime.timedelta(seconds=5)  # Pipeline's polling period (default 60 s); the cursor lag stays 60 s


@pytest.fixture(scope="module")
def road_world(tmp_path_factory):
    """Road photos on a loopback server and the truth file with their signs."""
    folder = tmp_path_factory.mktemp("streaming_world")
    server = ImageServer()
    specs, urls = [], []
    for i in range(N_IMAGES):
        boxes = [(1, 30 + 9 * i, 40, 80, 80), (9, 240, 150, 90, 70)]
        specs.append({"name": f"street{i:02d}.png", "size": (400, 300), "boxes": boxes})
        urls.append(server.add(specs[-1]["name"], road_picture(500 + i, [b[1:] for b in boxes])))
    truth = write_truth(folder / "truth.coco.json", server, specs)
    yield urls, truth
    server.close()


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
    time.sleep(start_after)
    finished = run_pipeline(pipeline, PIPELINE_SECONDS)
    return dict(seen), finished


@pytest.mark.parametrize("start_after", [0, 10], ids=["pipeline_started_with_the_pool", "pipeline_started_10s_later"])
def test_default_pipeline_processes_every_assignment(tmp_path, road_world, start_after):
    """Started at once, or a few seconds after the pool opened (as when a user runs the pipeline in the next
    notebook cell, or a separate process): either way the Pipeline sees everything."""
    urls, truth = road_world
    with start_local_toloka(tmp_path, TOKEN, ground_truth=truth) as server:  # default settings
        client = server.client()
        pool = _launch_detection_pool(client, urls)
        seen, finished = _observe(client, pool.id, start_after)
        assert finished, f"the Pipeline did not stop after {PIPELINE_SECONDS} s: {pool_state(client, pool.id)}"
        submitted = assignment_ids(client, pool.id)
        accepted = assignment_ids(client, pool.id, ("ACCEPTED",))
        assert len(submitted) >= len(urls) * 3, f"overlap 3 for every image: {pool_state(client, pool.id)}"
        for kind, expected in (("SUBMITTED", submitted), ("ACCEPTED", accepted)):
            missed = expected - seen.get(kind, set())
            assert not missed, (f"the observer missed {len(missed)} of {len(expected)} {kind.lower()} assignments; "
                                f"{pool_state(client, pool.id)}")


def test_default_pipeline_sees_its_own_reviews(tmp_path, road_world):
    """A pool without auto-acceptance, reviewed by the Pipeline itself (accept on submit, as the streaming
    notebook's verification step does): the acceptances come after the pool completed, and the Pipeline
    still reads them before it stops."""
    urls, truth = road_world
    with start_local_toloka(tmp_path, TOKEN, ground_truth=truth) as server:  # default settings
        client = server.client()
        pool = _launch_detection_pool(client, urls[:4], auto_accept=False)
        seen, finished = _observe(client, pool.id, review=True)
        assert finished, f"the Pipeline did not stop after {PIPELINE_SECONDS} s: {pool_state(client, pool.id)}"
        accepted = assignment_ids(client, pool.id, ("ACCEPTED",))
        assert accepted and seen.get("SUBMITTED") == assignment_ids(client, pool.id)
        missed = accepted - seen.get("ACCEPTED", set())
        assert not missed, (f"the observer missed {len(missed)} of {len(accepted)} acceptances made after the pool "
                            f"completed; {pool_state(client, pool.id)}")


def test_without_reader_hold_the_same_pipeline_misses_assignments(tmp_path, road_world):
    """Control: with the pool closing the moment it completes, a 60 s lag cursor reads nothing."""
    urls, truth = road_world
    with start_local_toloka(tmp_path, TOKEN, ground_truth=truth, reader_hold_seconds=0) as server:
        client = server.client()
        pool = _launch_detection_pool(client, urls)
        seen, finished = _observe(client, pool.id)
        submitted = assignment_ids(client, pool.id)
        assert finished and submitted
        assert seen.get("SUBMITTED", set()) < submitted, "without the hold the 60 s cursor lag loses assignments"
