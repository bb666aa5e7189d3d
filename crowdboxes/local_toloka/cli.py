"""``python -m crowdboxes local-toloka serve ...``: run the local Toloka API with a simulated crowd.

Sample::

    export toloka_token=local-secret
    python -m crowdboxes local-toloka serve --host 127.0.0.1 --port 0 --state runs/toloka \\
        --token-env toloka_token --ground-truth truth.coco.json --seed 1 --workers 40 --speed 60 \\
        --ready-file runs/toloka.ready

The token is read from the environment variable named by ``--token-env`` (never a CLI argument).
When the server listens, its URL (``http://127.0.0.1:PORT``) is written to ``--ready-file``.
SIGTERM/SIGINT stop it cleanly; state in ``--state`` survives restarts (even ``kill -9``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from pathlib import Path

from crowdboxes.stepkit import StepError, write_text_atomic

DEFAULT_CROWD = "crowdboxes.local_toloka.crowd"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other command
        raise StepError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="crowdboxes local-toloka", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="serve the Toloka API on loopback with a simulated crowd")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 = any free port (see --ready-file)")
    serve.add_argument("--state", required=True, help="folder for the SQLite state (reused across restarts)")
    serve.add_argument("--token-env", required=True, help="name of the env var holding the accepted token")
    serve.add_argument("--ground-truth", default=None, help="COCO truth JSON the crowd draws from")
    serve.add_argument("--seed", type=int, default=1)
    serve.add_argument("--workers", type=int, default=40, help="simulated crowd size")
    serve.add_argument("--verification-workers", type=int, default=0,
                       help="extra workers who only take verification tasks (on Toloka short checking "
                            "tasks draw their own crowd); 0 = the --workers do everything")
    serve.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    serve.add_argument("--ready-file", default=None, help="file that receives the URL once listening")
    serve.add_argument("--balance", default=None,
                       help="requester balance in USD (default 1000 on a new state; applied once per value)")
    serve.add_argument("--fault-error-rate", type=float, default=0.0, help="share of /api requests answered 500/503")
    serve.add_argument("--fault-rate-limit", type=float, default=0.0,
                       help="max /api requests per second before 429 TOO_MANY_REQUESTS (0 = off)")
    serve.add_argument("--fault-latency-ms", type=float, default=0.0, help="latency added to each /api request")
    serve.add_argument("--fault-seed", type=int, default=0)
    serve.add_argument("--fault-max-streak", type=int, default=3,
                       help="at most this many injected 500/503 in a row (toloka-kit retries 3 times)")
    serve.add_argument("--tick-seconds", type=float, default=0.05, help="crowd loop period (real seconds)")
    serve.add_argument("--solve-threads", type=int, default=4, help="threads answering tasks (image fetches)")
    serve.add_argument("--crowd-module", default=DEFAULT_CROWD,
                       help="module with make_workforce, Crowd (and seconds_for); for tests")
    return parser


def _load_truth(path):
    from crowdboxes.classes import coco_categories
    from crowdboxes.truth import TruthIndex, load_coco

    if path is None:
        return TruthIndex({"images": [], "annotations": [], "categories": coco_categories()})
    if not Path(path).is_file():
        raise StepError(f"--ground-truth {path}: file not found")
    return TruthIndex(load_coco(path))


_LOCK_HANDLE = None


def _lock_state(state) -> None:
    """One server per state folder (an OS lock: released even on ``kill -9``)."""
    import fcntl

    global _LOCK_HANDLE
    Path(state).mkdir(parents=True, exist_ok=True)
    handle = open(Path(state) / "server.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StepError(f"--state {state}: another local Toloka server is using this state folder") from None
    _LOCK_HANDLE = handle


def serve(args) -> int:
    from crowdboxes.local_toloka.models import Backend
    from crowdboxes.local_toloka.scheduler import Scheduler
    from crowdboxes.local_toloka.server import Faults, LocalToloka, serve as make_server

    token = os.environ.get(args.token_env, "").strip()
    if not token:
        raise StepError(f"environment variable {args.token_env!r} with the local Toloka token is not set")
    for name in ("workers", "verification_workers", "speed", "tick_seconds"):
        if getattr(args, name) <= 0 and not (name.endswith("workers") and getattr(args, name) == 0):
            raise StepError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.fault_error_rate <= 1:
        raise StepError(f"--fault-error-rate must be within 0..1, got {args.fault_error_rate}")
    try:
        crowd_module = importlib.import_module(args.crowd_module)
    except ImportError as exc:
        raise StepError(f"--crowd-module {args.crowd_module}: cannot import ({exc})") from None
    truth = _load_truth(args.ground_truth)
    _lock_state(args.state)
    backend = Backend(args.state, balance=args.balance, speed=args.speed)
    scheduler = Scheduler(backend, crowd_module, workers=args.workers, seed=args.seed, truth=truth,
                          tick_seconds=args.tick_seconds, solve_threads=args.solve_threads,
                          verification_workers=args.verification_workers)
    faults = Faults(args.fault_error_rate, args.fault_rate_limit, args.fault_latency_ms, args.fault_seed,
                    args.fault_max_streak)
    app = LocalToloka(backend, token, scheduler=scheduler, faults=faults)
    server = make_server(app, args.host, args.port)
    url = f"http://{args.host}:{server.server_port}"

    def _stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    scheduler.start()
    if args.ready_file:
        write_text_atomic(args.ready_file, url + "\n")
    extra = f" + {args.verification_workers} verifying only" if args.verification_workers else ""
    print(f"local Toloka listening on {url} (state {args.state}, {args.workers} workers{extra}, speed {args.speed})",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        scheduler.stop()
        server.server_close()
        backend.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    raise StepError(f"unknown command {args.command!r}")


if __name__ == "__main__":
    from crowdboxes.stepkit import run_step

    raise SystemExit(run_step(main))
