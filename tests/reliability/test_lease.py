"""The lease's protocol without a server: a metadata store standing in for a Toloka project, clocks injected.

Write-then-re-read: the run whose marker is there after the settle holds the lease; a live holder makes the
next run wait, then refuse in one line naming the owner and the expiry; an expired marker, or one of a dead
process on this machine, is taken over; a lock file queues runs on one machine.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from crowdboxes.errors import CrowdboxesError
from crowdboxes.toloka import lease as lease_module
from crowdboxes.toloka.lease import LEASE_PREFIX, Holder, Lease, MetadataTarget, local_lock

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


class Store:
    """``get_project`` / ``update_project`` over one metadata dict; ``on_read`` runs before a read answers
    (to let a rival write in between)."""

    def __init__(self) -> None:
        self.metadata: dict[str, list[str]] = {}
        self.on_read = None
        self.writes = 0

    def get_project(self, project_id: str) -> SimpleNamespace:
        if self.on_read is not None:
            hook, self.on_read = self.on_read, None
            hook()
        return SimpleNamespace(metadata=dict(self.metadata))

    def update_project(self, project_id: str, project: SimpleNamespace) -> None:
        self.writes += 1
        self.metadata = dict(project.metadata or {})


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def now(self) -> dt.datetime:
        return T0 + dt.timedelta(seconds=self.t)


def _lease(store: Store, clock: Clock, owner: str, wait: float = 0.0) -> Lease:
    return Lease(MetadataTarget(store, "project", "7"), "create_project", wait_seconds=wait, ttl_seconds=300,
                 settle_seconds=1.0, owner=owner, sleep=clock.sleep, clock=clock, now=clock.now)


def test_a_held_lease_makes_the_next_run_wait_then_refuse_in_one_line():
    store, clock = Store(), Clock()
    first = _lease(store, clock, "hostA:11:aaaa").acquire()
    assert store.metadata[LEASE_PREFIX + "create_project"][0] == "hostA:11:aaaa"
    with pytest.raises(CrowdboxesError) as error:
        _lease(store, clock, "hostB:22:bbbb", wait=30).acquire()
    message = str(error.value)
    assert "\n" not in message and "hostA:11:aaaa" in message and "until 2026-01-01T12:05:00Z" in message
    assert clock.t >= 30  # it waited before refusing
    first.release()
    assert LEASE_PREFIX + "create_project" not in store.metadata
    _lease(store, clock, "hostB:22:bbbb").acquire().release()


def test_the_run_whose_marker_is_there_after_the_settle_wins_the_race():
    store, clock = Store(), Clock()
    loser = _lease(store, clock, "hostA:11:aaaa", wait=0)
    # the rival writes between our write and our re-read: its marker is the one that stays
    rival = [store.metadata]

    def rival_writes() -> None:
        rival[0] = {LEASE_PREFIX + "create_project": ["hostB:22:bbbb", "2026-01-01T12:05:00Z"]}
        store.metadata = dict(rival[0])

    original = loser._write

    def write_then_rival() -> None:
        original()
        store.on_read = rival_writes

    loser._write = write_then_rival  # type: ignore[method-assign]
    with pytest.raises(CrowdboxesError, match="hostB:22:bbbb"):
        loser.acquire()
    assert not loser.held


def test_an_expired_marker_or_a_dead_local_owner_is_taken_over():
    store, clock = Store(), Clock()
    store.metadata[LEASE_PREFIX + "create_project"] = ["hostB:22:bbbb", "2026-01-01T11:59:00Z"]  # expired
    _lease(store, clock, "hostA:11:aaaa").acquire().release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.metadata[LEASE_PREFIX + "create_project"] = [f"{lease_module._HOST}:{dead.stdout.strip()}:cccc",
                                                       "2026-01-01T13:00:00Z"]  # live, but its process is gone
    assert Holder.parse(store.metadata[LEASE_PREFIX + "create_project"]).dead_here()
    _lease(store, clock, "hostA:11:aaaa").acquire().release()
    alive = Holder(f"{lease_module._HOST}:{os.getpid()}:dddd", T0 + dt.timedelta(hours=1))
    assert alive.alive(T0) and not alive.dead_here()


def test_the_lock_file_refuses_a_second_holder_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv(lease_module.LOCK_DIR_ENV, str(tmp_path))
    clock = Clock()
    with local_lock("job-x", 0):
        # another process would block on the same file; here a second open file description does
        with pytest.raises(CrowdboxesError, match="holds the lock .*job-x.lock until it exits"):
            with local_lock("job-x", 5, sleep=clock.sleep, clock=clock):
                pass
        assert clock.t >= 5
    with local_lock("job-x", 0):
        pass  # released when the first closed
