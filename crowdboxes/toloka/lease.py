"""One run at a time per job: a lease on a Toloka object, and a lock file on this machine.

Toloka has no compare-and-swap, so the lease is the classic write-then-re-read protocol on a project's
``metadata`` (a ``{key: [str, ...]}`` map nothing else of ours uses). A project, not a pool: Toloka edits a
pool only while it is closed (``PUT /pools/{id}``: "a pool cannot be edited while it is open"), and a
project at any time:

1. read the object; if ``metadata[crowdboxes_lease:<scope>]`` names another owner whose expiry is in the
   future (and who is not a dead process on this very machine), wait (up to ``wait_seconds``) or refuse;
2. write ``[owner, expiry]`` there (``PUT`` of the object with its metadata changed, nothing else);
3. wait ``settle_seconds`` (longer than one write takes) and read again: whoever's marker is there owns
   the lease; a run that lost the race goes back to 1. After a write that took longer than the settle
   (the client retried it), a rival's write may be as late: the wait is then as long as the write took.

Before anything is created under the lease, :meth:`Lease.confirm` reads the marker once more and stops
with one line if another run's marker replaced ours (or a renewal saw that). Metadata writes are
read-modify-write of the whole map: one process makes them one at a time (a lock per project), and each
write is read back and repeated if a rival's write dropped it.

While held it is renewed every ``ttl / 3`` seconds by a daemon thread, and released (the key removed) at
the end; a run killed with ``kill -9`` leaves a marker that expires after ``ttl`` seconds, or at once for
a run on the same machine (its pid is gone). Before the lease, an ``fcntl`` lock on
``<lock dir>/<scope>.lock`` (``$CROWDBOXES_LOCK_DIR``, else ``<tmp>/crowdboxes-locks``) makes two runs on
one machine queue without asking Toloka; the kernel drops it when a process dies.

What a second run does: it waits for the first (bounded), then continues as a re-run does, finding on
Toloka what the first made and buying nothing twice; past the wait it stops with one line naming the
owner and the expiry.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import fcntl
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from crowdboxes.errors import CrowdboxesError

LEASE_PREFIX = "crowdboxes_lease:"  # metadata key: LEASE_PREFIX + scope -> [owner, expiry ISO]
FINISHED_PREFIX = "crowdboxes_finished:"  # + pool id -> Wait Pool's FINISHED_MARKER values once it completed the pool
LOCK_DIR_ENV = "CROWDBOXES_LOCK_DIR"
WAIT_ENV = "CROWDBOXES_LEASE_WAIT_SECONDS"  # the wait of the steps without a param of their own
SETTLE_ENV = "CROWDBOXES_LEASE_SETTLE_SECONDS"
DEFAULT_WAIT_SECONDS = 600.0
DEFAULT_TTL_SECONDS = 300.0
DEFAULT_SETTLE_SECONDS = 2.0
POLL_SECONDS = 1.0
WRITE_ATTEMPTS = 3  # a metadata write read back without our change is made again, this many times in all
_RUN = uuid.uuid4().hex[:8]


def _machine() -> str:
    """This host as seen by pids: hostname, boot id and pid namespace, so that a pid is only judged dead by
    a process that shares its pid space (containers of one pod share a hostname, not their pids)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "noboot"
    try:
        pid_space = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        pid_space = "nons"
    return f"{socket.gethostname().replace(':', '_')}@{boot}.{pid_space}"


_HOST = _machine()


def owner_id() -> str:
    """This process's owner name: ``machine:pid:run`` (:func:`_machine`; the pid lets a run in the same pid
    space see a dead owner)."""
    return f"{_HOST}:{os.getpid()}:{_RUN}"


def env_seconds(name: str, default: float) -> float:
    """A non-negative number of seconds from environment variable ``name`` (``default`` when unset)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise CrowdboxesError(f"environment variable {name}={value!r}: expected a number of seconds") from None
    if seconds < 0:
        raise CrowdboxesError(f"environment variable {name}={value!r}: must be 0 or more")
    return seconds


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Holder:
    """Who holds a lease (``host:pid:run``) and until when."""

    owner: str
    expires: dt.datetime

    @classmethod
    def parse(cls, value: Any) -> Holder | None:
        """The holder in a metadata value ``[owner, expiry]``; None when absent or unreadable."""
        if not isinstance(value, (list, tuple)) or len(value) < 2:
            return None
        try:
            expires = dt.datetime.strptime(str(value[1]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            return None
        return cls(str(value[0]), expires)

    def dead_here(self) -> bool:
        """Whether the owner was a process on this host that is gone (a killed run)."""
        host, _, rest = self.owner.partition(":")
        pid = rest.partition(":")[0]
        if host != _HOST or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def alive(self, now: dt.datetime) -> bool:
        """Held: not expired and not a dead process of this host."""
        return self.expires > now and not self.dead_here()


def finished_key(pool_id: str) -> str:
    """The project metadata key that says Wait Pool completed pool ``pool_id``."""
    return FINISHED_PREFIX + str(pool_id)


# what GET /projects/{id} answers but a PUT does not take (as crowdboxes.toloka.projects sends it)
PROJECT_SERVER_FIELDS = ("id", "status", "created", "owner")


_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(object_id: str) -> threading.Lock:
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(object_id, threading.Lock())


class MetadataTarget:
    """A project whose ``metadata`` carries leases and markers (read, then ``PUT`` back whole, only the
    metadata changed). ``kind`` is ``project``: pools are not editable while open."""

    def __init__(self, client: Any, kind: str, object_id: str) -> None:
        if kind != "project":
            raise ValueError(f"leases live on projects, not on a {kind}")
        self.client, self.kind, self.object_id = client, kind, str(object_id)

    @property
    def name(self) -> str:
        """``project 12`` / ``pool 34``, for messages."""
        return f"{self.kind} {self.object_id}"

    def _get(self) -> Any:
        return getattr(self.client, f"get_{self.kind}")(self.object_id)

    def read(self) -> dict[str, list[str]]:
        """The object's metadata now."""
        return {str(k): [str(x) for x in v] for k, v in (self._get().metadata or {}).items()}

    def update(self, change: Callable[[dict[str, list[str]]], None], *,
               read_back: bool = True) -> dict[str, list[str]]:
        """Read, apply ``change`` to the metadata, write the object back, and (``read_back``) read it back: a
        rival process that wrote what it had read before our write dropped our change, which is then made
        again (up to :data:`WRITE_ATTEMPTS` writes). Writes of one process to one project go one at a time
        (a lease's renewal thread beside the step's finished marker). Returns the metadata written."""
        with _write_lock(f"{self.kind}/{self.object_id}"):
            for _ in range(WRITE_ATTEMPTS):
                before, written = self._write_once(change)
                if not read_back:
                    return written
                now = self.read()
                set_now = all(now.get(k) == v for k, v in written.items() if before.get(k) != v)
                if set_now and not (before.keys() - written.keys()) & now.keys():  # our change holds
                    return written
            return written

    def _write_once(self, change: Callable[[dict[str, list[str]]], None]) -> tuple[dict[str, list[str]],
                                                                                  dict[str, list[str]]]:
        """One read-change-write: (metadata read, metadata written)."""
        obj = self._get()
        before = {str(k): [str(x) for x in v] for k, v in (obj.metadata or {}).items()}
        metadata = {k: list(v) for k, v in before.items()}
        change(metadata)
        if hasattr(obj, "to_json"):  # a toloka-kit Project: send it without the fields only Toloka sets
            body = {k: v for k, v in json.loads(obj.to_json()).items() if k not in PROJECT_SERVER_FIELDS}
            body["metadata"] = metadata
            obj = type(obj).structure(body)
        else:
            obj.metadata = metadata
        self.client.update_project(self.object_id, obj)
        return before, metadata


def endpoint_tag(client: Any) -> str:
    """A short tag of the Toloka API ``client`` talks to, for lock names: ids are per Toloka (every local
    Toloka numbers its projects from 1), so one machine's runs against two Tolokas must not queue on each
    other's locks."""
    return hashlib.sha256(str(getattr(client, "url", "") or "").encode()).hexdigest()[:8]


def _lock_path(scope: str) -> Path:
    folder = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "crowdboxes-locks")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", scope)[:150] + ".lock")


@contextmanager
def local_lock(scope: str, wait_seconds: float, *, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on this machine for ``scope``: waits up to ``wait_seconds``, then one line
    naming the process that holds it."""
    path = _lock_path(scope)
    handle: IO[str] = open(path, "a+", encoding="utf-8")
    deadline = clock() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if clock() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise CrowdboxesError(f"another run of this job ({holder}) holds the lock {path} until it "
                                          f"exits; waited {wait_seconds:.0f} s: let it finish, or stop it, then "
                                          f"run again") from None
                sleep(min(POLL_SECONDS, max(0.01, deadline - clock())))
        handle.seek(0)
        handle.truncate()
        handle.write(owner_id() + "\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing drops the lock


class Lease:
    """The Toloka side: ``acquire`` / ``release`` (or ``with``), renewed by a daemon thread while held."""

    def __init__(self, target: MetadataTarget, scope: str, *, wait_seconds: float, ttl_seconds: float | None = None,
                 settle_seconds: float | None = None, owner: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], dt.datetime] = _utcnow) -> None:
        self.target, self.scope, self.key = target, scope, LEASE_PREFIX + scope
        self.wait_seconds = float(wait_seconds)
        self.ttl = float(ttl_seconds if ttl_seconds is not None else DEFAULT_TTL_SECONDS)
        self.settle = float(settle_seconds if settle_seconds is not None
                            else env_seconds(SETTLE_ENV, DEFAULT_SETTLE_SECONDS))
        self.owner = owner or owner_id()
        self.sleep, self.clock, self.now = sleep, clock, now
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # a renewal found another owner's marker (printed once)

    def holder(self) -> Holder | None:
        """Who holds it on Toloka now (alive or not)."""
        return Holder.parse(self.target.read().get(self.key))

    def _write(self, *, claim: bool = False) -> None:
        """Our marker with a fresh expiry. A ``claim`` (while acquiring) is written once: if a rival's marker
        replaced it, the rival won the race and the re-read after the settle says so."""
        value = [self.owner, _iso(self.now() + dt.timedelta(seconds=self.ttl))]
        self.target.update(lambda m: m.__setitem__(self.key, value), read_back=not claim)

    def acquire(self) -> Lease:
        """Take the lease, waiting up to ``wait_seconds`` for a live holder; a CrowdboxesError past that."""
        deadline = self.clock() + self.wait_seconds
        while True:
            holder = self.holder()
            if holder is not None and holder.owner != self.owner and holder.alive(self.now()):
                if self.clock() >= deadline:
                    raise CrowdboxesError(
                        f"{self.target.name} is leased to another run of this job ({self.scope}: {holder.owner}, "
                        f"until {_iso(holder.expires)}); waited {self.wait_seconds:.0f} s: let it finish, or "
                        f"stop it and run again after the expiry")
                self.sleep(min(POLL_SECONDS, max(0.01, deadline - self.clock())))
                continue
            started = self.clock()
            self._write(claim=True)
            # a rival that read before our write has written by now; one whose write was retried as long as
            # ours may still be on the way: wait at least what our write took
            self.sleep(max(self.settle, self.clock() - started))
            holder = self.holder()
            if holder is not None and holder.owner == self.owner:
                break
        self.held = True
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.scope}", daemon=True)
        self._thread.start()
        return self

    def confirm(self) -> None:
        """Stop with one line unless the lease is still ours on Toloka: called right before a create, so a
        run whose lease was taken over (it expired while the run hung, or a rival's late write replaced it)
        makes nothing another run may be making too."""
        holder = self.holder()
        if self.lost or holder is None or holder.owner != self.owner:
            self.lost = True
            taken = f"{holder.owner} holds it" if holder is not None else "our marker is gone"
            raise CrowdboxesError(f"{self.target.name}: the lease {self.scope} is no longer ours ({taken}); "
                                  f"stopping before creating anything: run again, and it continues from Toloka")

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                holder = self.holder()
                if holder is not None and holder.owner != self.owner and holder.alive(self.now()):
                    if not self.lost:
                        print(f"warning: {self.target.name}: the lease {self.scope} was taken by {holder.owner}",
                              file=sys.stderr, flush=True)
                    self.lost = True
                    continue
                self._write()
            except Exception as exc:  # noqa: BLE001 - a failed renewal is retried at the next tick
                print(f"warning: {self.target.name}: could not renew the lease ({type(exc).__name__})",
                      file=sys.stderr, flush=True)

    def release(self) -> None:
        """Stop renewing and remove our marker (a marker of someone else stays)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.held:
            return
        self.held = False

        def drop(metadata: dict[str, list[str]]) -> None:
            holder = Holder.parse(metadata.get(self.key))
            if holder is not None and holder.owner == self.owner:
                metadata.pop(self.key)
        try:
            self.target.update(drop)
        except Exception as exc:  # noqa: BLE001 - the marker expires by itself
            print(f"warning: {self.target.name}: could not release the lease ({type(exc).__name__}); it expires "
                  f"in {self.ttl:.0f} s", file=sys.stderr, flush=True)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def job_lease(target: MetadataTarget, scope: str, wait_seconds: float, **options: Any) -> Iterator[Lease]:
    """The lock file of ``scope`` on this machine, then the lease on ``target``; both released on exit."""
    with local_lock(f"{endpoint_tag(target.client)}-{target.kind}-{target.object_id}-{scope}", wait_seconds):
        with Lease(target, scope, wait_seconds=wait_seconds, **options) as lease:
            yield lease
