"""``python -m crowdboxes decide``: accept or reject SUBMITTED assignments from decisions.csv, or by a policy.

By hand::

    python -m crowdboxes decide --decisions decisions.csv --toloka_env production --output_dir out/decide

By the ``disagree`` policy (:mod:`crowdboxes.decisions.policy`; ``--dry_run`` writes decisions.csv only)::

    python -m crowdboxes decide --policy disagree --answers out/wait_pool/answers.csv \\
        --boxes out/aggregate_boxes/boxes.csv --threshold 0.5 --output_dir out/decide

Writes decisions_summary.json (``artifacts.DECISIONS_SUMMARY``) in ``--output_dir`` and prints it in one
line, and answers.csv there: ``--answers`` with every status as Toloka has it now (:mod:`crowdboxes.decisions.sync`).
Each refusal is one ``refused:`` line on stderr. Exit code 0: every decision applied or already so; 1: some were
refused (the others were applied); 2: an error (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crowdboxes.artifacts import ANSWERS, DECISIONS, DECISIONS_SUMMARY, write_frame_csv
from crowdboxes.cnvrg.metrics import cnvrg_tag, one_line
from crowdboxes.cnvrg.stepkit import StepArgumentParser, output_dir, step_parser
from crowdboxes.credentials import redact
from crowdboxes.decisions.apply import apply_decisions, read_decisions
from crowdboxes.decisions.policy import ACCEPT, POLICIES, disagree_policy, read_kept_boxes
from crowdboxes.decisions.sync import sync_answers
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import write_text_atomic
from crowdboxes.params import none_or_value
from crowdboxes.toloka.collection.snapshots import iso, now_utc

EXIT_REFUSED = 1


def build_parser() -> StepArgumentParser:
    """``decide``'s params; ``--help`` shows each default."""
    parser = step_parser("python -m crowdboxes decide",
                         "Accept or reject SUBMITTED assignments on Toloka from decisions.csv, or by a policy.")
    parser.add_argument("--decisions", type=none_or_value, default=None,
                        help="decisions.csv (assignment_id, decision accept|reject, comment: the public comment, "
                             "required to reject); with --policy it is written there (none: "
                             f"<output_dir>/{DECISIONS.file_name})")
    parser.add_argument("--policy", type=none_or_value, default=None,
                        help="none (apply --decisions as written) or disagree: reject assignments whose boxes "
                             "disagree with the aggregate (F1 at IoU 0.5 below --threshold), accept the rest")
    parser.add_argument("--answers", type=none_or_value, default="/input/wait_pool/output/answers.csv",
                        help="answers.csv of Wait Pool: the drawings --policy disagree judges; after the decisions it "
                             f"is written to <output_dir>/{ANSWERS.file_name} with every status as Toloka has it now "
                             "(decided here, by hand in Toloka, or accepted at the end of the review period); none: "
                             "no sync")
    parser.add_argument("--boxes", default="/input/aggregate_boxes/output/boxes.csv",
                        help="boxes.csv of Aggregate Boxes, the aggregate (--policy disagree)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="reject an assignment whose F1 against the kept boxes is below this (0..1)")
    parser.add_argument("--min_score", type=float, default=0.5,
                        help="the kept boxes: boxes.csv rows scored at least this (Export's --min_score)")
    parser.add_argument("--dry_run", action="store_true",
                        help="with --policy: write decisions.csv and stop (review it, then run without --policy)")
    return parser


def write_policy_decisions(args: argparse.Namespace, target: Path) -> None:
    """Run ``--policy disagree`` and write its decisions.csv to ``target``."""
    from crowdboxes.steps.aggregate_boxes import read_answers

    if not 0.0 <= args.min_score <= 1.0:
        raise CrowdboxesError(f"--min_score {args.min_score}: must be between 0 and 1")
    frame = disagree_policy(read_answers(args.answers), read_kept_boxes(args.boxes, args.min_score), args.threshold)
    write_frame_csv(frame, target)
    accepts = int((frame["decision"] == ACCEPT).sum())
    print(f"decide: policy {args.policy}: {len(frame)} submitted assignments, {accepts} to accept, "
          f"{len(frame) - accepts} to reject (F1 below {args.threshold:g}) -> {target}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the params, write the policy's decisions (``--policy``), apply them, write and print the summary."""
    args = build_parser().parse_args(argv)
    out = output_dir(args.output_dir)
    target = Path(args.decisions) if args.decisions is not None else DECISIONS.path(out)
    if args.policy is not None and args.policy not in POLICIES:
        raise CrowdboxesError(f"--policy {args.policy!r}: use none or {', '.join(POLICIES)}")
    if args.policy is not None:
        if args.answers is None:
            raise CrowdboxesError(f"--answers none: --policy {args.policy} judges the drawings of Wait Pool's "
                                  "answers.csv; give its path")
        write_policy_decisions(args, target)
        if args.dry_run:
            return 0
    elif args.decisions is None:
        raise CrowdboxesError("--decisions: give decisions.csv, or --policy disagree to write it")
    decisions = read_decisions(target)  # a bad file fails before Toloka is asked anything

    from crowdboxes.toloka.client import connect

    client = connect(args.toloka_env, args.token_env)
    summary = apply_decisions(client, decisions)
    synced, sync_failed = None, None
    if args.answers is not None and Path(args.answers).is_file():
        try:
            synced = sync_answers(client, args.answers, out, summary.decided)
        except Exception as exc:  # noqa: BLE001 - the decisions are on Toloka; say so, and fail in one line below
            sync_failed = f"{type(exc).__name__}: {redact(str(exc)).splitlines()[0] if str(exc) else ''}"
    record = {"decisions_csv": str(target), "policy": args.policy, "decisions": len(decisions), **summary.as_dict(),
              "answers_sync": synced.as_dict() if synced is not None else None, "finished_at": iso(now_utc())}
    write_text_atomic(DECISIONS_SUMMARY.path(out), json.dumps(record, indent=2) + "\n")
    for line in summary.refusals:
        print(one_line(f"refused: {line}"), file=sys.stderr)
    print(summary.line(), flush=True)
    if synced is not None:
        print(synced.line(), flush=True)
    elif args.answers is not None and sync_failed is None:
        print(f"decide: no {args.answers} to sync with Toloka (--answers; none: do not sync)", flush=True)
    for key in ("accepted", "rejected", "skipped", "refused", "released_usd", "kept_usd"):
        cnvrg_tag(key, record[key])
    if sync_failed is not None:
        raise CrowdboxesError(f"decide: the decisions are applied, but {args.answers} could not be synced with "
                              f"Toloka ({sync_failed}); a re-run skips them and syncs")
    return EXIT_REFUSED if summary.refused else 0
