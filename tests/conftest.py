"""Shared test setup. Area-specific helpers live in ``tests/helpers_<area>.py`` modules (importable
from test files because pytest puts this folder on ``sys.path``)."""

import dis
import importlib.util
import inspect
import os
import subprocess
import sys
import threading
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers_paths import REPO_ROOT

TESTS = Path(__file__).resolve().parent

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture()
def backend(tmp_path: Path) -> Iterator[Any]:
    """A local Toloka Backend in-process on a ``ManualClock`` (``backend.clock.advance(seconds)``; see
    ``helpers_local_toloka.crowd_until``), fast (speed 1e6) and in the explicit fast mode (no wait for a
    first streaming reader); closed after the test. Test modules may define their own ``backend``."""
    from crowdboxes.local_toloka.db import ManualClock
    from crowdboxes.local_toloka.models import Backend
    b = Backend(tmp_path / "state", speed=1e6, first_reader_seconds=0, clock=ManualClock())
    yield b
    b.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--lag", action="store_true",
                     help="also run the tests marked lag: replays whose time is bound by toloka-kit's 60 s cursor lag "
                          "over a chain of pools (the streaming notebook, about 7.5 min); CI runs them")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the minutes-long example scenarios at once when they are selected (``start_early`` in their
    module, given the names of its selected tests): they mostly wait for toloka-kit's 60 s cursor lag, so
    they wait while the other tests run."""
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
            selected = {other.name for other in session.items if getattr(other, "module", None) is module}
            start(factory.mktemp(module.__name__.rsplit(".", 1)[-1]), selected)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Scenarios still running in the background (the session was interrupted or stopped early) give up
    at their next wait, so that pytest does not stay alive for minutes waiting for their threads."""
    examples = sys.modules.get("helpers_examples")
    if examples is not None:
        examples.STOP.set()


# ------------------------------------------------------------------ the ``server`` marker
# ``make test-fast`` (``-m "not server"``) must start no server and no step process. Marking by hand is
# forgotten, so collection marks every test that reaches a server starter: through a fixture, a function in
# the tests (followed transitively, also through ``module.function``), or a subprocess whose command words
# say it runs a step, the demo, the flow runner or a server. A runtime guard (below) catches what slips by.

# Functions (``module.qualname``) and fixtures that start a local Toloka, a local S3, or run a step.
SERVER_STARTERS = frozenset({"helpers_local_toloka.start_local_toloka", "helpers_s3.start_local_s3",
                             "helpers_examples.start_in_background"})
SERVER_FIXTURES = frozenset({"run_step", "run_step_in_process"})
SUBPROCESS_CALLS = frozenset({"subprocess.run", "subprocess.Popen", "subprocess.check_call",
                              "subprocess.check_output", "subprocess.call"})
# String constants next to a subprocess call that say the command runs a step script (``.../"steps"/name``),
# the demo, the flow runner (``flow run``) or a server: any one set of words, all present.
SERVER_COMMAND_WORDS = (frozenset({"steps"}), frozenset({"demo"}), frozenset({"flow", "run"}),
                        frozenset({"serve"}), frozenset({"local-s3"}))


def _qualified(obj: object) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """``code`` and every code object nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _references(func: types.FunctionType) -> Iterator[object]:
    """The global objects ``func`` refers to, and ``module.attr`` where it reads an attribute of a module."""
    for code in _codes(func.__code__):
        instructions = list(dis.get_instructions(code))
        for ins, following in zip(instructions, instructions[1:] + [None]):
            if ins.opname not in ("LOAD_GLOBAL", "LOAD_NAME"):
                continue
            obj = func.__globals__.get(ins.argval)
            yield obj
            if isinstance(obj, types.ModuleType) and following is not None and following.opname in (
                    "LOAD_ATTR", "LOAD_METHOD"):
                yield getattr(obj, following.argval, None)


def _strings(func: types.FunctionType) -> set[str]:
    return {c for code in _codes(func.__code__) for c in code.co_consts if isinstance(c, str)}


def _starts_server(func: Any, seen: dict[Any, bool]) -> bool:
    """Whether ``func`` (a function defined under tests/) reaches a server starter; memoised in ``seen``."""
    func = inspect.unwrap(func)
    if not isinstance(func, types.FunctionType) or not func.__code__.co_filename.startswith(str(TESTS)):
        return False
    if func in seen:
        return seen[func]
    seen[func] = False  # recursion guard
    references = list(_references(func))
    # the words of a command it may run: its string constants and the paths it names (``STEP = .../x.py``)
    words = _strings(func) | {str(obj) for obj in references if isinstance(obj, (str, Path))}
    runs_server_command = (any(_qualified(obj) in SUBPROCESS_CALLS for obj in references)
                           and (any(command <= words for command in SERVER_COMMAND_WORDS)
                                or any(map(_is_step_script, words))))
    found = runs_server_command or any(_qualified(obj) in SERVER_STARTERS or _starts_server(obj, seen)
                                       for obj in references)
    seen[func] = found
    return found


def _is_step_script(word: str) -> bool:
    """A path to one of the flow's step scripts (``steps/<name>.py`` of this repository)."""
    return word.endswith(".py") and Path(word).parent == REPO_ROOT / "steps"


def _needs_server(item: pytest.Item, seen: dict[Any, bool]) -> bool:
    if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    if getattr(getattr(item, "module", None), "start_early", None) is not None:
        return True  # a scenario started in the background at collection
    functions = [getattr(item, "function", None)]
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    for definitions in getattr(fixtureinfo, "name2fixturedefs", {}).values():
        functions += [definition.func for definition in definitions]
    return any(_starts_server(func, seen) for func in functions if func is not None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``server`` every test that starts a server or a step process (see above), leave out the tests
    marked ``lag`` unless ``--lag`` is given, and run the tests of
    the scenarios started in the background (``start_early``) last: their fixture waits for those minutes-long
    runs, and everything else can run meanwhile."""
    seen: dict[Any, bool] = {}
    for item in items:
        if item.get_closest_marker("server") is None and _needs_server(item, seen):
            item.add_marker(pytest.mark.server)
    if not config.getoption("lag"):
        lagging = [item for item in items if item.get_closest_marker("lag") is not None]
        if lagging:
            config.hook.pytest_deselected(items=lagging)
            items[:] = [item for item in items if item.get_closest_marker("lag") is None]
    items.sort(key=lambda item: getattr(getattr(item, "module", None), "start_early", None) is not None)


# The guard: while a test that is not marked ``server`` runs, starting a step or server process from the
# main thread fails it (background scenarios started at collection run in their own threads).
_UNMARKED_TEST: list[str] = []


def _server_command(argv: Sequence[str], cwd: Path) -> bool:
    words = [str(word) for word in argv]
    if any(_is_step_script(str(cwd / word)) for word in words):  # an absolute word stays itself
        return True
    if "crowdboxes" not in words or "--help" in words:
        return False
    command = words[words.index("crowdboxes") + 1:words.index("crowdboxes") + 3]
    return bool(command) and (command[0] in ("demo", "local-s3")
                              or command in (["flow", "run"], ["local-toloka", "serve"]))


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "subprocess.Popen" or not _UNMARKED_TEST or threading.current_thread() is not threading.main_thread():
        return
    argv = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
    if _server_command(argv, Path(args[2] or os.getcwd())):
        raise RuntimeError(f"{_UNMARKED_TEST[0]} starts a server or step process ({' '.join(map(str, argv))[:200]}) "
                           "but is not marked `server`: add `@pytest.mark.server` (make test-fast must stay fast)")


sys.addaudithook(_audit)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if item.get_closest_marker("server") is None:
        _UNMARKED_TEST[:] = [item.nodeid]
    try:
        yield
    finally:
        _UNMARKED_TEST.clear()


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
