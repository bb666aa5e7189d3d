"""SQLite storage of the local Toloka: one file ``toloka.sqlite3`` in the state folder.

WAL mode, one transaction per request or scheduler step: a ``kill -9`` loses at most the request
in flight (committed WAL frames survive a process crash; ``synchronous=NORMAL`` only risks the tail
on power loss). Objects are stored as JSON documents plus the columns that filters and sorts need.
Timestamps are fixed-width naive-UTC strings (``YYYY-MM-DDTHH:MM:SS.ffffff``), so string order is
time order once every query value has been parsed and re-formatted (:func:`fmt_ts`).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

DB_NAME = "toloka.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS projects(id INTEGER PRIMARY KEY, status TEXT, created TEXT, doc TEXT);
CREATE TABLE IF NOT EXISTS skills(id INTEGER PRIMARY KEY, name TEXT, created TEXT, doc TEXT);
CREATE TABLE IF NOT EXISTS pools(id INTEGER PRIMARY KEY, project_id INTEGER, status TEXT, created TEXT,
    last_started TEXT, complete_at TEXT, doc TEXT, completed TEXT);
CREATE TABLE IF NOT EXISTS tasks(seq INTEGER PRIMARY KEY, id TEXT UNIQUE, pool_id INTEGER, created TEXT,
    overlap INTEGER, infinite INTEGER NOT NULL DEFAULT 0, issued INTEGER NOT NULL DEFAULT 0, doc TEXT);
CREATE INDEX IF NOT EXISTS tasks_pool ON tasks(pool_id, seq);
CREATE INDEX IF NOT EXISTS tasks_pool_id ON tasks(pool_id, id);
-- tasks with slots left: what the crowd picks from, without scanning the finished ones
CREATE INDEX IF NOT EXISTS tasks_open ON tasks(pool_id, seq) WHERE infinite = 1 OR overlap > issued;
CREATE TABLE IF NOT EXISTS assignments(seq INTEGER PRIMARY KEY, id TEXT UNIQUE, pool_id INTEGER,
    task_suite_id TEXT, user_id TEXT, status TEXT, created TEXT, submitted TEXT, accepted TEXT,
    rejected TEXT, skipped TEXT, expired TEXT, due TEXT, plan TEXT, sim_seconds REAL,
    auto_accept_at TEXT, cost TEXT, paid INTEGER NOT NULL DEFAULT 0, doc TEXT);
CREATE INDEX IF NOT EXISTS asg_pool_status ON assignments(pool_id, status, id);
CREATE INDEX IF NOT EXISTS asg_pool_id ON assignments(pool_id, id);
CREATE INDEX IF NOT EXISTS asg_pool_created ON assignments(pool_id, created);
CREATE INDEX IF NOT EXISTS asg_pool_rejected ON assignments(pool_id, rejected);
CREATE INDEX IF NOT EXISTS asg_pool_skipped ON assignments(pool_id, skipped);
CREATE INDEX IF NOT EXISTS asg_pool_expired ON assignments(pool_id, expired);
CREATE INDEX IF NOT EXISTS asg_pool_submitted ON assignments(pool_id, submitted);
CREATE INDEX IF NOT EXISTS asg_pool_accepted ON assignments(pool_id, accepted);
CREATE INDEX IF NOT EXISTS asg_pool_user ON assignments(pool_id, user_id);
CREATE INDEX IF NOT EXISTS asg_status_due ON assignments(status, due);
CREATE INDEX IF NOT EXISTS asg_status_auto ON assignments(status, auto_accept_at);
CREATE INDEX IF NOT EXISTS asg_suite ON assignments(task_suite_id);
CREATE TABLE IF NOT EXISTS assignment_tasks(assignment_seq INTEGER, pos INTEGER, task_seq INTEGER,
    pool_id INTEGER, user_id TEXT, output TEXT, PRIMARY KEY(assignment_seq, pos));
CREATE INDEX IF NOT EXISTS at_task ON assignment_tasks(task_seq);
CREATE INDEX IF NOT EXISTS at_pool_user ON assignment_tasks(pool_id, user_id, task_seq);
CREATE TABLE IF NOT EXISTS operations(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, type TEXT,
    status TEXT, submitted TEXT, doc TEXT, request TEXT, log TEXT);
CREATE TABLE IF NOT EXISTS user_skills(id INTEGER PRIMARY KEY, skill_id INTEGER, user_id TEXT,
    created TEXT, modified TEXT, doc TEXT, UNIQUE(skill_id, user_id));
CREATE TABLE IF NOT EXISTS restrictions(id INTEGER PRIMARY KEY, user_id TEXT, scope TEXT,
    project_id INTEGER, pool_id INTEGER, created TEXT, will_expire TEXT, doc TEXT);
CREATE INDEX IF NOT EXISTS restr_user ON restrictions(user_id);
CREATE TABLE IF NOT EXISTS charges(seq INTEGER PRIMARY KEY AUTOINCREMENT, pool_id INTEGER,
    assignment_id TEXT, amount TEXT, created TEXT);
-- trainings are rows of pools (doc type TRAINING); one row per worker and training: the current attempt
CREATE TABLE IF NOT EXISTS training_progress(training_id INTEGER, user_id TEXT, attempt INTEGER NOT NULL DEFAULT 1,
    suites INTEGER NOT NULL DEFAULT 0, answers INTEGER NOT NULL DEFAULT 0, score_sum REAL NOT NULL DEFAULT 0,
    started TEXT, finished TEXT, PRIMARY KEY(training_id, user_id));
-- task suites created by the requester; their tasks are rows of tasks, linked by task_suite_tasks
CREATE TABLE IF NOT EXISTS task_suites(seq INTEGER PRIMARY KEY, id TEXT UNIQUE, pool_id INTEGER, created TEXT,
    overlap INTEGER, infinite INTEGER NOT NULL DEFAULT 0, doc TEXT);
CREATE INDEX IF NOT EXISTS suites_pool ON task_suites(pool_id, seq);
CREATE TABLE IF NOT EXISTS task_suite_tasks(suite_seq INTEGER, pos INTEGER, task_seq INTEGER,
    PRIMARY KEY(suite_seq, pos));
CREATE INDEX IF NOT EXISTS suite_tasks_task ON task_suite_tasks(task_seq);
CREATE TABLE IF NOT EXISTS attachments(id TEXT PRIMARY KEY, attachment_type TEXT, pool_id INTEGER,
    assignment_id TEXT, user_id TEXT, name TEXT, media_type TEXT, created TEXT, data BLOB);
CREATE INDEX IF NOT EXISTS att_pool ON attachments(pool_id, id);
CREATE INDEX IF NOT EXISTS att_assignment ON attachments(assignment_id);
-- streaming readers of pools (models/readers.py): the largest <field>_lte each asked for, and when
CREATE TABLE IF NOT EXISTS readers(pool_id INTEGER, field TEXT, position TEXT, seen TEXT,
    PRIMARY KEY(pool_id, field));
"""


def connect(state_dir: str | Path) -> sqlite3.Connection:
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: the backend opens BEGIN IMMEDIATE / COMMIT itself.
    conn = sqlite3.connect(str(state / DB_NAME), check_same_thread=False, isolation_level=None,
                           timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.executescript(SCHEMA)
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Columns added since a state folder was created (``CREATE TABLE IF NOT EXISTS`` keeps old tables)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(pools)")}
    if "completed" not in columns:  # when a pool became complete (models/readers.py)
        conn.execute("ALTER TABLE pools ADD COLUMN completed TEXT")


def utcnow() -> dt.datetime:
    """Wall-clock UTC (naive), truncated to milliseconds like the real API's timestamps."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


Clock = Callable[[], dt.datetime]
"""What the backend reads the time from: naive UTC, like :func:`utcnow` (the default)."""


class ManualClock:
    """A clock that moves only when told (tests step it instead of sleeping on the wall clock).

    >>> clock = ManualClock(dt.datetime(2024, 1, 1))
    >>> clock.advance(1.5)
    datetime.datetime(2024, 1, 1, 0, 0, 1, 500000)
    >>> clock()
    datetime.datetime(2024, 1, 1, 0, 0, 1, 500000)
    """

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start if start is not None else utcnow()
        self._lock = threading.Lock()  # the scheduler's thread and the test may both read it

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> dt.datetime:
        """Move the clock ``seconds`` (real seconds) forward; returns the new time."""
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)
            return self._now


def fmt_ts(value: dt.datetime) -> str:
    """Storage form: fixed width, so string comparison is datetime comparison."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")


def out_ts(stored: str | None) -> str | None:
    """API form: naive UTC with milliseconds, ``2022-11-22T16:08:41.802``."""
    return stored[:23] if stored else None


def parse_ts(text: str) -> dt.datetime:
    """Parse an ISO-8601 value as toloka-kit sends it (naive = UTC; 0..6 fraction digits; Z/offsets)."""
    value = str(text).strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    if "T" in value:
        head, sep, tail = value.partition("T")
        # Pad/trim the fraction to 6 digits so fromisoformat accepts any precision.
        time_part, tz = tail, ""
        for mark in ("+", "-"):
            if mark in tail:
                time_part, _, rest = tail.partition(mark)
                tz = mark + rest
                break
        if "." in time_part:
            whole, frac = time_part.split(".", 1)
            time_part = f"{whole}.{(frac + '000000')[:6]}"
        value = f"{head}{sep}{time_part}{tz}"
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed
