"""Shared test setup. Area-specific helpers live in ``tests/helpers_<area>.py`` modules (importable
from test files because pytest puts this folder on ``sys.path``)."""

import importlib.util
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "road-sign-detection"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture()
def backend(tmp_path):
    """A local Toloka Backend in-process, fast (speed 1e6) and in the explicit fast mode (no wait for a
    first streaming reader); closed after the test. Test modules may define their own ``backend``."""
    from crowdboxes.local_toloka.models import Backend
    b = Backend(tmp_path / "state", speed=1e6, first_reader_seconds=0)
    yield b
    b.close()


def pytest_collection_finish(session):
    """Start the minutes-long example scenarios at once when they are selected (``start_early`` in their
    module): they mostly wait for toloka-kit's 60 s cursor lag, so they wait while the other tests run."""
    config = session.config
    factory = getattr(config, "_tmp_path_factory", None)
    if config.option.collectonly or factory is None:
        return
    started = set()
    for item in session.items:
        module = getattr(item, "module", None)
        start = getattr(module, "start_early", None)
        if start is not None and module.__name__ not in started:
            started.add(module.__name__)
            start(factory.mktemp(module.__name__.rsplit(".", 1)[-1]))



@pytest.fixture()
def run_step():
    """Run ``steps/<name>`` as cnvrg does: a separate process in the repo folder, with ``env`` as its
    whole environment. Returns the CompletedProcess (text stdout/stderr)."""
    def run(name: str, args: Sequence[str], env: Mapping[str, str], *, timeout: float = 120,
            cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(REPO_ROOT / "steps" / name), *args], env=dict(env), cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)
    return run


@pytest.fixture()
def run_step_in_process(monkeypatch, capsys):
    """The same step's ``main`` through ``stepkit.run_step`` in this process, with ``env`` added to the
    environment (the Toloka token variables are cleared first). Saves toloka-kit's import per run."""
    from crowdboxes.cnvrg import stepkit

    def run(name: str, args: Sequence[str], env: Mapping[str, str] = {}) -> subprocess.CompletedProcess[str]:
        spec = importlib.util.spec_from_file_location(f"step_{Path(name).stem}", REPO_ROOT / "steps" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for variable in ("toloka_token", "MY_TOLOKA"):
            monkeypatch.delenv(variable, raising=False)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        capsys.readouterr()
        code = stepkit.run_step(module.main, list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)
    return run
