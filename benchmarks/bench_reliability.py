"""Reliability probes (issue 14): re-runs, kill points, concurrent runs, API faults and bad inputs, against the
product as it is, on a local S3 store and the local Toloka with its simulated crowd.

Each probe is a small real scenario: the flow YAML run by the local flow runner (``--only`` re-runs a task
into a fresh folder, as cnvrg's UI does), or a step script run as cnvrg runs it. What it checks is read from
the servers (the local Toloka's SQLite state and charges, its request counters, the S3 bucket), and each
probe ends ``held``, ``failed`` (with a one-line reason) or ``skipped`` (its case could not be set up, e.g. a
step ended before the kill point). Groups (``--groups``, comma list; default all):

* ``re-runs``: after a finished run (modes overlap and verify), every step re-run alone into a fresh folder:
  zero new Toloka objects, zero new money, zero new S3 objects or dataset versions;
* ``kill points``: ``kill -9`` of Upload Images, Create Project, Launch Pool and Wait Pool (overlap and
  verify) once the servers show ~30 % / ~60 % of its work done, then a re-run into a fresh folder: no
  duplicates, no image over ``max_attempts``, at most one ACCEPTED drawing per image in verify mode, money
  within the plan, no accepted answer lost;
* ``concurrency``: two Create Project / two Launch Pool runs of one job at once, a second Wait Pool during a
  verify run, two whole flows of one job, two demos in one workdir: each object once;
* ``faults``: the flow under 30 % 5xx, 50 % 5xx in streaks of 8, a 2/s rate limit, 300 ms latency and 30 %
  lost replies completes, collects every drawing it bought, with AP50 within 0.25 of the clean run's; verify
  mode under 30 % lost replies completes too, and under 30 % 5xx within 2x the clean time;
* ``bad inputs``: hostile and broken files, spoiled artifacts and bad params end in one ``error:`` line,
  non-zero, with nothing created; a planted token and AWS secret appear nowhere.

The table (markdown) gives per group the probes tried / held / failed / skipped and the counts of duplicate
Toloka objects, lost answers and money over plan, then every probe that did not hold with its reason.

Usage: ``python benchmarks/bench_reliability.py`` (every group); ``--quick`` (one or two probes per group, a
smoke run); ``--groups "re-runs,bad inputs"``; ``--json FILE`` (every probe); ``--keep DIR`` (keep the work
folder); ``--count`` images per job (default 10); ``--speed`` of the crowd.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_probes.world import PROBE_HOOKS, ROOT, Job, Probe, World  # noqa: E402

GROUPS = ("re-runs", "kill points", "concurrency", "faults", "bad inputs")


def run_groups(world: World, groups: list[str], quick: bool) -> list[Probe]:
    finished: dict[str, Job] = {}  # one finished run per mode, shared by the groups
    PROBE_HOOKS.append(lambda probe: print(f"[bench_reliability]   {probe.status:7} {probe.name}: {probe.reason}",
                                           file=sys.stderr, flush=True))
    probes: list[Probe] = []
    for group in groups:
        print(f"[bench_reliability] {group} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            found = run_group(world, group, quick, finished)
        except Exception as exc:  # a bug of the bench, not a finding: the group is skipped, the others run
            found = [Probe(group, "(the whole group)", "skipped", f"the bench failed: {exc!r}"[:300])]
        print(f"[bench_reliability] {group}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        probes += found
    return probes


def run_group(world: World, group: str, quick: bool, finished: dict[str, Job]) -> list[Probe]:
    from reliability_probes import bad_inputs, concurrency_faults, exactly_once

    if group == "re-runs":
        return exactly_once.reruns(world, quick, finished)
    if group == "kill points":
        return exactly_once.kill_probes(world, quick)
    if group == "concurrency":
        return concurrency_faults.concurrency(world, quick)
    if group == "faults":
        return concurrency_faults.faults(world, quick, finished)
    base, _ = exactly_once.finished_job(world, "overlap", finished)
    return bad_inputs.bad_inputs(world, quick, base)


def table(probes: list[Probe], groups: list[str]) -> str:
    """The markdown table: per group, then every probe that did not hold."""
    lines = ["| group | tried | held | failed | skipped | duplicate objects | lost answers | money over plan |",
             "|---|---|---|---|---|---|---|---|"]
    totals = [0, 0, 0, 0, 0, 0, 0.0]
    for group in groups:
        mine = [p for p in probes if p.group == group]
        row = [len(mine), sum(p.status == "held" for p in mine), sum(p.status == "failed" for p in mine),
               sum(p.status == "skipped" for p in mine), sum(p.duplicates for p in mine), sum(p.lost for p in mine),
               sum(p.over_usd for p in mine)]
        totals = [a + b for a, b in zip(totals, row)]
        lines.append(f"| {group} | " + " | ".join(str(v) for v in row[:6]) + f" | ${row[6]:.2f} |")
    lines.append("| **all** | " + " | ".join(f"**{int(v)}**" for v in totals[:6]) + f" | **${totals[6]:.2f}** |")
    bad = [p for p in probes if p.status != "held"]
    if bad:
        lines += ["", "| group | probe | outcome | reason |", "|---|---|---|---|"]
        lines += [f"| {p.group} | {p.name} | {p.status} | {p.reason.replace('|', '/')} |" for p in bad]
    return "\n".join(lines)


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default=",".join(GROUPS), help=f"comma list of {', '.join(GROUPS)}")
    parser.add_argument("--quick", action="store_true", help="one or two probes per group (a smoke run)")
    parser.add_argument("--count", type=int, default=10, help="images per job (default 10)")
    parser.add_argument("--speed", type=float, default=300.0,
                        help="crowd speed, simulated seconds per real second (default 300)")
    parser.add_argument("--json", default=None, help="also write every probe to this JSON file")
    parser.add_argument("--keep", default=None, help="keep the work folder here (default: a temp folder)")
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise SystemExit(f"error: --groups: unknown {', '.join(unknown)} (known: {', '.join(GROUPS)})")
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="bench_reliability-"))
    started = time.monotonic()
    world = World(work, args.count, args.speed)
    try:
        world.start()
        probes = run_groups(world, groups, args.quick)
    finally:
        world.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    print(f"\nreliability probes on the local Toloka and local S3: commit {commit()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.count} images per job, crowd speed "
          f"{args.speed:g}x, {'--quick, ' if args.quick else ''}{seconds:.0f} s in all\n")
    print(table(probes, groups))
    if args.json:
        Path(args.json).write_text(json.dumps({"commit": commit(), "seconds": seconds, "quick": args.quick,
                                               "probes": [asdict(p) for p in probes]}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
