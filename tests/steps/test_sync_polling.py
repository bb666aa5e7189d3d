"""Wait Pool's polling (``collection.wait.wait_for_pool``) on the local Toloka over real HTTP: the status streams
are read at the poll where the last answers come in, not up to FULL_POLL_EVERY polls later; and a pool closed
between two full polls is done at the deadline, not timed out.

The local Toloka runs in this process on a ManualClock (helpers_rounds); the wait's clock and sleep are fakes,
so nothing waits on the wall clock.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest

from crowdboxes.toloka.collection.collector import AnswerCollector
from crowdboxes.toloka.collection.progress import Progress
from crowdboxes.toloka.collection.wait import FULL_POLL_EVERY, wait_for_pool
from helpers_rounds import Local, project_from_config, start_local

N_IMAGES = 4

# a local Toloka served over HTTP in this process: seconds per test, so not in make test-fast
pytestmark = pytest.mark.server


@pytest.fixture()
def local(tmp_path):
    with start_local(tmp_path) as handle:
        yield handle


def open_pool(local: Local) -> str:
    """An open drawing pool of ``N_IMAGES`` one-task suites, overlap 1, reviewed by hand; its id."""
    from toloka.client import Pool, Task

    client = local.client
    pool_id = client.create_pool(Pool.structure({
        "project_id": project_from_config(client, "detection_project.json"), "private_name": "drawing",
        "reward_per_assignment": 0.02, "assignment_max_duration_seconds": 600, "auto_accept_solutions": False,
        "auto_accept_period_day": 7,
        "will_expire": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)).isoformat(),
        "defaults": {"default_overlap_for_new_task_suites": 1, "default_overlap_for_new_tasks": 1},
        "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}})).id
    client.create_tasks([Task(pool_id=pool_id, input_values={"image": f"http://127.0.0.1:9/poll/im{i}.jpg"})
                         for i in range(N_IMAGES)], allow_defaults=True, open_pool=True)
    return pool_id


class Logged:
    """toloka-kit's client, logging per poll what each request read: an event stream, ``active`` or ``pool``."""

    def __init__(self, client: Any) -> None:
        self.client, self.log, self.poll = client, [], 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def find_assignments(self, **filters: Any) -> Any:
        kind = next((key.split("_")[0] for key in filters if key.endswith("_lte")), "active")
        self.log.append((self.poll, kind))
        return self.client.find_assignments(**filters)

    def get_pool(self, pool_id: str) -> Any:
        self.log.append((self.poll, "pool"))
        return self.client.get_pool(pool_id)

    def read_at(self, poll: int) -> set[str]:
        return {kind for number, kind in self.log if number == poll}


def test_the_poll_that_collects_the_last_answers_reads_the_status_changes_too(local, tmp_path):
    pool_id = open_pool(local)
    api = Logged(local.client)
    now = [0.0]

    def sleep(seconds: float) -> None:  # between polls 1 and 2: every image drawn, two accepted by hand
        now[0] += seconds
        api.poll += 1
        for _ in range(200):
            local.step(1)
            if len(list(local.client.get_assignments(pool_id=pool_id, status=["SUBMITTED"]))) == N_IMAGES:
                break
        for assignment in sorted(local.client.get_assignments(pool_id=pool_id), key=lambda a: a.id)[:2]:
            local.client.accept_assignment(assignment.id, "fine")

    collector = AnswerCollector(api, [pool_id], tmp_path, lag_seconds=0)
    outcome = wait_for_pool(api, pool_id, collector, Progress(N_IMAGES, "wait", stream=io.StringIO()),
                            poll_seconds=1, deadline=None, expected_answers=N_IMAGES, sleep=sleep,
                            clock=lambda: now[0])
    assert outcome.done and outcome.polls == 2 < FULL_POLL_EVERY
    assert {"submitted", "accepted", "rejected", "pool"} <= api.read_at(2)
    # what the wait collected (before any rescan) already has the acceptances
    assert collector.counts(pool_id) == {"submitted": N_IMAGES, "accepted": 2, "rejected": 0,
                                         "pending_review": N_IMAGES - 2, "task_answers": N_IMAGES}


def test_a_pool_closed_between_full_polls_is_done_at_the_deadline_not_timed_out(local, tmp_path):
    pool_id = open_pool(local)  # the crowd never moves: no answers come in
    api = Logged(local.client)
    now = [0.0]

    def sleep(seconds: float) -> None:  # after the first (full) poll the requester closes the pool by hand
        now[0] += seconds
        api.poll += 1
        if api.poll == 2:
            local.client.close_pool(pool_id)

    outcome = wait_for_pool(api, pool_id, AnswerCollector(api, [pool_id], tmp_path, lag_seconds=0),
                            Progress(N_IMAGES, "wait", stream=io.StringIO()), poll_seconds=1, deadline=3,
                            expected_answers=N_IMAGES, sleep=sleep, clock=lambda: now[0])
    # polls at 0 (full), 1, 2 (only the new submissions: the pool is not read), 3 (the deadline: the pool is read)
    assert [api.read_at(n) for n in (2, 3)] == [{"submitted"}, {"submitted"}]
    assert (outcome.done, outcome.state, outcome.polls) == (True, "CLOSED MANUAL", 4)
    assert "pool" in api.read_at(4)
