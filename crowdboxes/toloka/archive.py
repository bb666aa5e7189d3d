"""Archive a finished job's pools, and optionally its projects, on Toloka (``python -m crowdboxes archive``,
Export's ``--archive``).

Toloka's rules, checked here first so that what blocks is said in one line per object:

* a pool is archived only when it is CLOSED, no assignment is ACTIVE (a worker on it) and none is
  SUBMITTED (awaiting review: it is decided by hand, ``python -m crowdboxes decide``, or accepted by Toloka
  when the pool's review period ends);
* a pool with rejected work is archived only :data:`APPEAL_DAYS` days after its last rejection (the worker may
  appeal until then); Toloka's clock decides, so this one is said when Toloka refuses, not checked before;
* a project is archived only when every pool of it is archived (pools of other jobs too).

Idempotent: an object already ARCHIVED counts as such and nothing is asked of Toloka for it. A refusal by
Toloka itself (a rule this module does not know, a race) is reported the same way, with Toloka's code.

Usage::

    python -m crowdboxes archive --pool_csv out/launch_pool/pool.csv [--projects_csv out/create_project/projects.csv]

Writes archive_summary.json (``artifacts.ARCHIVE_SUMMARY``) in ``--output_dir``. Exit code 0: everything
archived (now or before); 1: something is blocked (each on a ``blocked:`` line); 2: an error.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crowdboxes.artifacts import ARCHIVE_SUMMARY, POOL, PROJECTS, read_csv
from crowdboxes.cnvrg.metrics import one_line
from crowdboxes.cnvrg.stepkit import StepArgumentParser, output_dir, step_parser
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import write_text_atomic
from crowdboxes.params import none_or_value
from crowdboxes.toloka.client import toloka_refusal
from crowdboxes.toloka.collection.snapshots import enum_value, iso, now_utc, utc_naive
from crowdboxes.toloka.pools import pool_status

ARCHIVE_CHOICES = ("none", "pools", "pools,projects")
APPEAL_DAYS = 9  # Toloka archives a pool with rejected work this many days after its last rejection
EXIT_BLOCKED = 1


def parse_archive(value: str | None) -> tuple[bool, bool]:
    """``--archive`` as (pools, projects): ``none``, ``pools`` or ``pools,projects`` (in any order)."""
    words = {w.strip().lower() for w in str(value or "none").split(",") if w.strip()}
    if words <= {"none"}:
        return False, False
    if words == {"pools"}:
        return True, False
    if words == {"pools", "projects"}:
        return True, True
    if words == {"projects"}:
        raise CrowdboxesError(f"--archive {value!r}: a project is archived only after its pools; use pools,projects")
    raise CrowdboxesError(f"--archive {value!r}: use one of {', '.join(ARCHIVE_CHOICES)}")


@dataclass
class ArchiveReport:
    """What an archive run did: objects (``pool 12``, ``project 3``) archived now, archived before, blocked."""

    archived: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # one line per object: what blocks it

    def as_dict(self) -> dict[str, Any]:
        """archive_summary.json's content."""
        return {"archived": self.archived, "already_archived": self.already, "blocked": self.blocked,
                "finished_at": iso(now_utc())}

    def line(self) -> str:
        """One line for the log."""
        return (f"archive: {len(self.archived)} archived now ({', '.join(self.archived) or 'none'}), "
                f"{len(self.already)} archived before, {len(self.blocked)} blocked")


def _statuses(client: Any, pool_id: str, status: str) -> list[Any]:
    return list(client.get_assignments(pool_id=str(pool_id), status=[status]))


def pool_blockers(client: Any, pool: Any) -> list[str]:
    """Why Toloka would not archive ``pool`` now (empty: it may be archived), one reason each."""
    status = pool_status(pool)
    if status == "OPEN":
        return ["OPEN: close it (or let it complete) first"]
    reasons = []
    active = _statuses(client, pool.id, "ACTIVE")
    if active:
        reasons.append(f"{len(active)} assignment{'s' if len(active) != 1 else ''} ACTIVE (workers are on them)")
    submitted = _statuses(client, pool.id, "SUBMITTED")
    if submitted:
        last = max(utc_naive(a.submitted) or utc_naive(a.created) or now_utc() for a in submitted)
        until = last + dt.timedelta(days=float(pool.auto_accept_period_day or 21))
        reasons.append(f"{len(submitted)} assignment{'s' if len(submitted) != 1 else ''} SUBMITTED await review "
                       f"until {until.date().isoformat()} (decide them: python -m crowdboxes decide; or wait for "
                       "Toloka to accept them then)")
    return reasons


def appeal_hint(client: Any, pool_id: str) -> str:
    """For a refused pool with rejected work: when its last rejection was. Toloka archives such a pool only
    :data:`APPEAL_DAYS` days after it (the worker may appeal meanwhile); the days are counted on Toloka's clock,
    so this is said, not checked beforehand."""
    rejected = [utc_naive(a.rejected) for a in _statuses(client, pool_id, "REJECTED")]
    last = max((r for r in rejected if r is not None), default=None)
    if last is None:
        return ""
    return (f"; its last rejection was at {iso(last)}: Toloka archives a pool {APPEAL_DAYS} days after its last "
            "rejection (the worker may appeal until then)")


def archive_pools(client: Any, pool_ids: Iterable[str], report: ArchiveReport | None = None) -> ArchiveReport:
    """Archive each pool that Toloka's rules allow (:func:`pool_blockers`); one blocked line for the others."""
    from toloka.client.exceptions import ApiError

    report = report if report is not None else ArchiveReport()
    for pool_id in dict.fromkeys(str(p) for p in pool_ids):
        name = f"pool {pool_id}"
        pool = client.get_pool(pool_id)
        if pool_status(pool) == "ARCHIVED":
            report.already.append(name)
            continue
        reasons = pool_blockers(client, pool)
        if reasons:
            report.blocked.append(f"{name}: {'; '.join(reasons)}")
            continue
        try:
            client.archive_pool(pool_id)
        except ApiError as exc:
            report.blocked.append(f"{name}: {toloka_refusal(exc)}{appeal_hint(client, pool_id)}")
            continue
        report.archived.append(name)
    return report


def archive_projects(client: Any, project_ids: Iterable[str], report: ArchiveReport | None = None) -> ArchiveReport:
    """Archive each project whose pools are all archived; one blocked line naming the pools that are not."""
    from toloka.client.exceptions import ApiError

    report = report if report is not None else ArchiveReport()
    for project_id in dict.fromkeys(str(p) for p in project_ids):
        name = f"project {project_id}"
        project = client.get_project(project_id)
        if str(enum_value(project.status)) == "ARCHIVED":
            report.already.append(name)
            continue
        live = [f"{p.id} ({pool_status(p)})" for p in client.get_pools(project_id=project_id)
                if pool_status(p) != "ARCHIVED"]
        if live:
            report.blocked.append(f"{name}: {len(live)} pool{'s' if len(live) != 1 else ''} not archived: "
                                  f"{', '.join(live[:10])}{' ...' if len(live) > 10 else ''}")
            continue
        try:
            client.archive_project(project_id)
        except ApiError as exc:
            report.blocked.append(f"{name}: {toloka_refusal(exc)}")
            continue
        report.archived.append(name)
    return report


def projects_of_pools(client: Any, pool_ids: Iterable[str]) -> list[str]:
    """The project ids of ``pool_ids`` as Toloka has them (each once, in pool order)."""
    return list(dict.fromkeys(str(client.get_pool(str(p)).project_id) for p in pool_ids))


def archive_job(client: Any, pool_ids: Iterable[str], project_ids: Iterable[str] | None = None) -> ArchiveReport:
    """The pools, then the projects (``project_ids``, when given): a project whose last pool is archived now
    follows it in the same run."""
    report = archive_pools(client, pool_ids)
    if project_ids is not None:
        archive_projects(client, project_ids, report)
    return report


def tell(report: ArchiveReport, out: Path) -> None:
    """archive_summary.json in ``out``; the blocked lines on stderr, the summary line on stdout."""
    write_text_atomic(ARCHIVE_SUMMARY.path(out), json.dumps(report.as_dict(), indent=2) + "\n")
    for line in report.blocked:
        print(one_line(f"blocked: {line}"), file=sys.stderr)
    print(report.line(), flush=True)


def build_parser() -> StepArgumentParser:
    """``archive``'s params; ``--help`` shows each default."""
    parser = step_parser("python -m crowdboxes archive",
                         "Archive the job's finished pools (and, with --projects_csv, its projects) on Toloka.")
    parser.add_argument("--pool_csv", default="/input/launch_pool/output/pool.csv",
                        help="pool.csv of Launch Pool: every pool in it is archived")
    parser.add_argument("--projects_csv", type=none_or_value, default=None,
                        help="projects.csv of Create Project: its projects are archived too, once all their pools "
                             "are (none: pools only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the params, archive, write and print the report; 1 when something is blocked."""
    args = build_parser().parse_args(argv)
    out = output_dir(args.output_dir)
    pools = read_csv(args.pool_csv, POOL, dtype={"pool_id": str, "project_id": str})
    projects = None
    if args.projects_csv is not None:
        projects = [str(p) for p in read_csv(args.projects_csv, PROJECTS, dtype={"toloka_id": str})["toloka_id"]
                    .dropna()]
    from crowdboxes.toloka.client import connect

    report = archive_job(connect(args.toloka_env, args.token_env), pools["pool_id"].dropna(), projects)
    tell(report, out)
    return EXIT_BLOCKED if report.blocked else 0
