"""``python -m crowdboxes local-s3``: a local S3-compatible store (moto) on 127.0.0.1.

For the demo and the tests: Upload Images talks to it through ``--s3_endpoint_url``, and the
local Toloka's simulated crowd loads the images from the URLs it serves. moto accepts any
credentials; it keeps everything in memory and loses it when stopped.

The endpoint URL (``http://127.0.0.1:PORT``) is written to ``--ready-file`` once the server
listens; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from crowdboxes.errors import CrowdboxesError

from crowdboxes.files import write_text_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m crowdboxes local-s3", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--ready-file", default=None, help="write the endpoint URL here once listening")
    parser.add_argument("--bucket", action="append", default=[],
                        help="create this bucket at start (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from moto.server import ThreadedMotoServer  # dev dependency: only the local store needs it
    except ImportError:
        raise CrowdboxesError("moto is not installed (pip install -r requirements-dev.txt)") from None

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    try:
        server.start()
    except OSError as exc:
        raise CrowdboxesError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}") from None
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    if args.bucket:
        import boto3

        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
        for bucket in args.bucket:
            s3.create_bucket(Bucket=bucket)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.ready_file:
        write_text_atomic(Path(args.ready_file), url + "\n")
    print(f"local S3 listening at {url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    from crowdboxes.cnvrg.stepkit import run_step

    raise SystemExit(run_step(main))
