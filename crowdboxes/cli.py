"""``python -m crowdboxes <command> ...``: one entry point, each command owned by its module.

Commands are imported lazily by module path so that, for example, running the flow never imports
the local Toloka server.
"""

from __future__ import annotations

import importlib
import sys

from crowdboxes.cnvrg.stepkit import run_step

COMMANDS = {
    "synth": ("crowdboxes.sim.cli", "generate synthetic road-sign scenes with true boxes"),
    "contact-sheet": ("crowdboxes.sim.contact_sheet", "draw scenes with their boxes into one figure"),
    "local-toloka": ("crowdboxes.local_toloka.cli", "serve the local Toloka API with a simulated crowd"),
    "local-s3": ("crowdboxes.storage.local_s3", "serve a local S3-compatible store (moto) on loopback"),
    "flow": ("crowdboxes.cnvrg.cli", "validate or run a cnvrg flow YAML locally"),
    "demo": ("crowdboxes.demo", "run the whole flow on the local Toloka and score it"),
    "evaluate": ("crowdboxes.evaluation.metrics", "score a COCO file of boxes against a COCO ground truth"),
    "review": ("crowdboxes.review.pack", "pack the riskiest images with their boxes as a CVAT task to correct"),
    "import-corrections": ("crowdboxes.review.corrections", "merge a corrected CVAT XML back and export again"),
    "decide": ("crowdboxes.decisions.cli", "accept or reject submitted assignments from a CSV or by a policy"),
    "archive": ("crowdboxes.toloka.archive", "archive the job's finished pools (and projects) on Toloka"),
    "pool": ("crowdboxes.toloka.pool_control", "stop (close) or start (open) a pool on Toloka by hand"),
}


def _usage() -> str:
    lines = ["usage: python -m crowdboxes <command> [options]", "", "commands:"]
    lines += [f"  {name:<19} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return run_step(module.main, rest)
