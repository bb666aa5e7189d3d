"""``python -m crowdboxes flow validate|run FILE``: check a cnvrg flow YAML, or run it locally.

    python -m crowdboxes flow validate traffic_signs_annotation.yaml
    python -m crowdboxes flow run traffic_signs_annotation.yaml --data road_signs=path/to/images \\
        [--only "Aggregate Boxes"] [--runs-dir runs] [--set toloka_env=sandbox] \\
        [--set "Launch Pool.reward=0.03"] [--env-file .env]

Secrets (``toloka_token``, AWS keys) come from the environment or from a git-ignored ``.env`` in the
project folder (``KEY=VALUE`` lines); the environment wins. Their values are masked in all output.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from crowdboxes.cnvrg.runner import FlowRunner
from crowdboxes.cnvrg.flow import FlowError, check_flow, load_flow
from crowdboxes.errors import CrowdboxesError
from crowdboxes.credentials import redact


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every other command
        raise CrowdboxesError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m crowdboxes flow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", help="the flow YAML (cnvrg's export dialect)")
        p.add_argument("--project-dir", default=None,
                       help="the folder cnvrg checks out as /cnvrg (default: the YAML's folder)")
        p.add_argument("--no-step-check", action="store_true",
                       help="do not import the step scripts to check their params")

    val = sub.add_parser("validate", help="check relations, cycles, /input paths and every step's params")
    common(val)
    run = sub.add_parser("run", help="run the flow (or one task) locally with cnvrg's semantics")
    common(run)
    run.add_argument("--only", metavar="TITLE", help="re-run one task from its parents' latest successful artifacts")
    run.add_argument("--runs-dir", default="runs", help="where run folders and latest.json go (default: runs)")
    run.add_argument("--data", action="append", default=[], metavar="DATASET=PATH",
                     help="local folder mounted as /data/DATASET (repeatable)")
    run.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                     help="override a param in every task that has it, or one task's with \"Title.key=value\"")
    run.add_argument("--jobs", type=int, default=1,
                     help="run up to N independent tasks at once, as cnvrg does (default 1: serial, tidy logs)")
    run.add_argument("--env-file", default=None, help="KEY=VALUE secrets file (default: PROJECT/.env if present)")
    return parser


def _data_map(items: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise FlowError(f"--data {item!r}: expected DATASET=PATH")
        found[name.strip()] = path.strip()
    return found


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flow = load_flow(args.file)
    if args.action == "validate":
        problems = check_flow(flow, args.project_dir, check_steps=not args.no_step_check)
        for problem in problems:
            print(redact(f"error: {args.file}: {problem}"), file=sys.stderr)
        if problems:
            return 2
        order = flow.order()
        print(f"ok: {args.file}: flow {flow.title!r}, {len(order)} tasks in order: "
              + " -> ".join(t.title for t in order))
        return 0
    runner = FlowRunner(flow, project_dir=args.project_dir, runs_dir=args.runs_dir, data=_data_map(args.data),
                        overrides=args.overrides, env_file=args.env_file, check_steps=not args.no_step_check,
                        jobs=args.jobs)
    report = runner.run(only=args.only)
    if not report.ok:
        raise FlowError(report.failure_line())
    return 0


if __name__ == "__main__":
    from crowdboxes.cnvrg.stepkit import run_step

    raise SystemExit(run_step(main))
