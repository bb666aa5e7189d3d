"""A local S3 store (moto, ``python -m crowdboxes local-s3``) as a subprocess, for tests.

    with start_local_s3(tmp_path, buckets=["images"]) as s3:
        env = {**os.environ, **s3.env}          # fake AWS credentials for the step subprocess
        s3.client().list_objects_v2(Bucket="images")
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers_paths import REPO_ROOT
# moto accepts any credentials; these are placeholders, not secrets.
FAKE_AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
                "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class LocalS3:
    url: str
    process: subprocess.Popen
    log_path: Path
    env: dict = field(default_factory=lambda: dict(FAKE_AWS_ENV))

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"])

    def objects(self, bucket: str) -> dict[str, dict]:
        """``{key: {"LastModified", "ETag", "Size"}}`` of everything in ``bucket``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"]: o for page in pages for o in page.get("Contents", [])}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LocalS3":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_local_s3(tmp_path: Path, buckets: tuple[str, ...] | list[str] = (), timeout: float = 90.0) -> LocalS3:
    """Start the store on a free loopback port; returns when it is listening with ``buckets`` made."""
    folder = Path(tmp_path) / "local_s3"
    folder.mkdir(parents=True, exist_ok=True)
    ready, log_path = folder / "ready", folder / "server.log"
    ready.unlink(missing_ok=True)
    command = [sys.executable, "-m", "crowdboxes", "local-s3", "--port", "0", "--ready-file", str(ready)]
    for bucket in buckets:
        command += ["--bucket", bucket]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **FAKE_AWS_ENV},
                                   stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists() and (url := ready.read_text().strip()):
            return LocalS3(url=url, process=process, log_path=log_path)
        if process.poll() is not None:
            raise RuntimeError(f"local S3 exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"local S3 not ready after {timeout} s: {log_path.read_text()[-2000:]}")
