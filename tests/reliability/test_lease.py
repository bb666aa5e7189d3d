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

    def write_then_rival(**kwargs: bool) -> None:
        original(**kwargs)
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


def test_confirm_stops_a_run_whose_marker_was_replaced_before_it_creates_anything():
    store, clock = Store(), Clock()
    lease = _lease(store, clock, "hostA:11:aaaa").acquire()
    lease.confirm()  # still ours
    # a rival whose retried write landed late replaced our marker
    store.metadata[LEASE_PREFIX + "create_project"] = ["hostB:22:bbbb", "2026-01-01T12:05:00Z"]
    with pytest.raises(CrowdboxesError) as error:
        lease.confirm()
    assert "\n" not in str(error.value) and "hostB:22:bbbb holds it" in str(error.value)
    assert lease.lost
    lease.release()
    assert store.metadata[LEASE_PREFIX + "create_project"][0] == "hostB:22:bbbb"  # the rival's marker stays


def test_a_late_write_waits_as_long_as_it_took_before_judging_the_race():
    store, clock = Store(), Clock()
    lease = _lease(store, clock, "hostA:11:aaaa")
    slow = store.update_project

    def retried_write(project_id: str, project: SimpleNamespace) -> None:
        clock.t += 7.0  # the client retried the PUT for 7 s
        slow(project_id, project)

    store.update_project = retried_write  # type: ignore[method-assign]
    before = clock.t
    lease.acquire()
    assert clock.t - before >= 14.0  # 7 s writing, then 7 s (not the 1 s settle) for a rival as late
    store.update_project = slow  # type: ignore[method-assign]
    lease.release()


def test_a_metadata_change_dropped_by_a_rival_write_is_made_again():
    store = Store()
    target = MetadataTarget(store, "project", "7")
    store.metadata = {"other": ["x"]}
    original = store.update_project

    def rival_overwrites_after_us(project_id: str, project: SimpleNamespace) -> None:
        original(project_id, project)
        if store.writes == 1:  # a rival that had read before our write writes its stale copy back
            store.metadata = {"other": ["x"], "rival": ["y"]}

    store.update_project = rival_overwrites_after_us  # type: ignore[method-assign]
    target.update(lambda m: m.__setitem__("crowdboxes_finished:5", ["2026-01-01T12:00:00Z", "overlap"]))
    assert store.metadata == {"other": ["x"], "rival": ["y"], "crowdboxes_finished:5": ["2026-01-01T12:00:00Z",
                                                                                        "overlap"]}
    assert store.writes == 2


def test_two_threads_of_one_process_write_one_at_a_time_and_keep_both_changes():
    """The lease's renewal thread and the step's finished marker: without one writer at a time, the second
    reads before the first writes and its write drops the first's key."""
    import threading

    store = Store()
    target = MetadataTarget(store, "project", "8")
    second_read = threading.Event()
    reads = []
    plain_get, plain_put = store.get_project, store.update_project

    def get(project_id: str) -> SimpleNamespace:
        reads.append(threading.current_thread().name)
        if threading.current_thread().name == "second":
            second_read.set()
        return plain_get(project_id)

    def put(project_id: str, project: SimpleNamespace) -> None:
        if threading.current_thread().name == "first":
            second_read.wait(timeout=1.0)  # unlocked, the second thread reads here, before this write
        plain_put(project_id, project)

    store.get_project, store.update_project = get, put  # type: ignore[method-assign]
    first = threading.Thread(target=target.update, args=(lambda m: m.__setitem__("finished", ["1"]),),
                             name="first")
    second = threading.Thread(target=target.update, args=(lambda m: m.__setitem__("lease", ["2"]),),
                              name="second")
    first.start()
    while not reads:  # the first thread is inside its update before the second starts
        threading.Event().wait(0.01)
    second.start()
    first.join(timeout=30)
    second.join(timeout=30)
    assert store.metadata == {"finished": ["1"], "lease": ["2"]}
    assert reads.index("second") > reads.index("first") + 1  # the first read back its own write first


def test_runs_against_two_tolokas_do_not_queue_on_each_others_lock(tmp_path, monkeypatch):
    """Project 7 of one local Toloka is not project 7 of another: the lock file names the endpoint."""
    monkeypatch.setenv(lease_module.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(lease_module.SETTLE_ENV, "0")
    first, second, same = Store(), Store(), Store()
    first.url, second.url, same.url = "http://127.0.0.1:1001", "http://127.0.0.1:1002", "http://127.0.0.1:1001"
    with lease_module.job_lease(MetadataTarget(first, "project", "7"), "wait_pool-3", 0):
        with lease_module.job_lease(MetadataTarget(second, "project", "7"), "wait_pool-3", 0):
            pass  # another Toloka: no wait
        with pytest.raises(CrowdboxesError, match="holds the lock"):
            with lease_module.job_lease(MetadataTarget(same, "project", "7"), "wait_pool-3", 0):
                pass
