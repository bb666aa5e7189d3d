"""``python -m crowdboxes local-toloka serve ...``: run the local Toloka API with a simulated crowd.

Sample::

    export toloka_token=local-secret
    python -m crowdboxes local-toloka serve --host 127.0.0.1 --port 0 --state runs/toloka \\
        --token-env toloka_token --ground-truth truth.coco.json --seed 1 --workers 40 --speed 60 \\
        --ready-file runs/toloka.ready

The token is read from the environment variable named by ``--token-env`` (never a CLI argument).
When the server listens, its URL (``http://127.0.0.1:PORT``) is written to ``--ready-file``.
SIGTERM/SIGINT stop it cleanly; state in ``--state`` survives restarts (even ``kill -9``).

The crowd answers every project by its task spec. ``--label-map`` maps the truth's class names to a
view's label values when they differ (``'{"stop": "STOP_SIGN"}'`` or a JSON file);
``--judgement-options`` says which option of a judgement task means "correct"
(``'{"correct": "yes", "incorrect": "no"}'``; default: recognised from common values such as OK/BAD).
Errors are one ``error: ...`` line and exit code 2. Nothing here imports the product.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from crowdboxes.local_toloka.crowd.truth import Truth

DEFAULT_CROWD = "crowdboxes.local_toloka.crowd"
EXIT_ERROR = 2


class ServeError(Exception):
    """A failure the user can act on; printed as one ``error:`` line."""


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that a reader never sees half of it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every other command
        raise ServeError(f"{self.prog}: {message}")


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
    serve.add_argument("--fault-lost-reply-rate", type=float, default=0.0,
                       help="share of writes (POST/PUT/PATCH/DELETE) that take effect and still answer 503")
    serve.add_argument("--tick-seconds", type=float, default=0.05, help="crowd loop period (real seconds)")
    serve.add_argument("--solve-threads", type=int, default=4, help="threads answering tasks (image fetches)")
    serve.add_argument("--crowd-module", default=DEFAULT_CROWD,
                       help="module with make_workforce, Crowd (and seconds_for); for tests")
    serve.add_argument("--label-map", default=None,
                       help="JSON object (text, or a path to a JSON file): truth class name -> the view's label "
                            "value, for projects whose labels are named differently from the truth's classes")
    serve.add_argument("--judgement-options", default=None,
                       help='JSON object {"correct": value, "incorrect": value}: which option of a judgement task '
                            "means the shown work is right (default: recognised from OK/BAD, yes/no, ...)")
    serve.add_argument("--reader-hold-seconds", type=float, default=600.0,
                       help="at most this many real seconds a completed pool stays open until its streaming "
                            "readers (toloka-kit cursors, 60 s lag by default) have read past its last event; "
                            "0 = close completed pools at once (fast mode)")
    serve.add_argument("--first-reader-seconds", type=float, default=90.0,
                       help="real seconds a completed pool that nobody streams yet waits for a first reader (a "
                            "Pipeline started from the next notebook cell); 0 = not at all (fast mode)")
    return parser


def _json_option(flag: str, text: str | None) -> dict[str, Any] | None:
    """A JSON object given as text or as a path to a JSON file; None when not given."""
    if text is None:
        return None
    source = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ServeError(f"{flag} {text}: neither a JSON object nor a file")
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ServeError(f"{flag} {text}: cannot read ({exc})") from None
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise ServeError(f"{flag}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ServeError(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def _load_truth(path: str | None) -> Truth:
    from crowdboxes.local_toloka.crowd.truth import Truth, TruthError, load_truth

    if path is None:
        return Truth(None)
    if not Path(path).is_file():
        raise ServeError(f"--ground-truth {path}: file not found")
    try:
        return Truth(load_truth(path))
    except TruthError as exc:
        raise ServeError(f"--ground-truth {exc}") from None


_LOCK_HANDLE: IO[str] | None = None


def _lock_state(state: str | Path) -> None:
    """One server per state folder (an OS lock: released even on ``kill -9``)."""
    import fcntl

    global _LOCK_HANDLE
    Path(state).mkdir(parents=True, exist_ok=True)
    handle = open(Path(state) / "server.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ServeError(f"--state {state}: another local Toloka server is using this state folder") from None
    _LOCK_HANDLE = handle


def serve(args: argparse.Namespace) -> int:
    from crowdboxes.local_toloka.models import Backend
    from crowdboxes.local_toloka.scheduler import Scheduler
    from crowdboxes.local_toloka.server import Faults, LocalToloka, serve as make_server

    token = os.environ.get(args.token_env, "").strip()
    if not token:
        raise ServeError(f"environment variable {args.token_env!r} with the local Toloka token is not set")
    for name in ("workers", "verification_workers", "speed", "tick_seconds"):
        if getattr(args, name) <= 0 and not (name.endswith("workers") and getattr(args, name) == 0):
            raise ServeError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.fault_error_rate <= 1:
        raise ServeError(f"--fault-error-rate must be within 0..1, got {args.fault_error_rate}")
    if not 0 <= args.fault_lost_reply_rate <= 1:
        raise ServeError(f"--fault-lost-reply-rate must be within 0..1, got {args.fault_lost_reply_rate}")
    try:
        crowd_module = importlib.import_module(args.crowd_module)
    except ImportError as exc:
        raise ServeError(f"--crowd-module {args.crowd_module}: cannot import ({exc})") from None
    for flag in ("reader_hold_seconds", "first_reader_seconds"):
        if getattr(args, flag) < 0:
            raise ServeError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    label_map = _json_option("--label-map", args.label_map)
    judgement = _json_option("--judgement-options", args.judgement_options)
    if judgement is not None and set(judgement) != {"correct", "incorrect"}:
        raise ServeError('--judgement-options: expected {"correct": value, "incorrect": value}, '
                         f"got keys {', '.join(map(str, judgement)) or 'none'}")
    truth = _load_truth(args.ground_truth)
    logger = logging.getLogger("crowdboxes.local_toloka")
    if not any(getattr(h, "_local_toloka", False) for h in logger.handlers):
        logger.addHandler(_stderr_handler())
    _lock_state(args.state)
    backend_options = {"balance": args.balance, "speed": args.speed}
    backend_options["reader_hold_seconds"] = args.reader_hold_seconds
    backend_options["first_reader_seconds"] = args.first_reader_seconds
    backend = Backend(args.state, **backend_options)
    try:
        scheduler = Scheduler(backend, crowd_module, workers=args.workers, seed=args.seed, truth=truth,
                              tick_seconds=args.tick_seconds, solve_threads=args.solve_threads,
                              verification_workers=args.verification_workers, label_map=label_map,
                              judgement_options=judgement)
    except ValueError as exc:
        backend.close()
        raise ServeError(f"--crowd-module {args.crowd_module}: {exc}") from None
    faults = Faults(args.fault_error_rate, args.fault_rate_limit, args.fault_latency_ms, args.fault_seed,
                    args.fault_max_streak, args.fault_lost_reply_rate)
    app = LocalToloka(backend, token, scheduler=scheduler, faults=faults)
    server = make_server(app, args.host, args.port)
    url = f"http://{args.host}:{server.server_port}"

    def _stop(signum: int, frame: FrameType | None) -> None:
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


class _StderrHandler(logging.StreamHandler):
    _local_toloka = True  # marks the handler serve() added, so a second serve() adds none


def _stderr_handler() -> logging.Handler:
    """The crowd's log lines (no truth for a project, an unknown view component) on stderr, once each."""
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            return serve(args)
        raise ServeError(f"unknown command {args.command!r}")
    except ServeError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else 'failed'}", file=sys.stderr, flush=True)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
