"""Run a cnvrg flow YAML on this machine with cnvrg's semantics (cnvrg-flows.md section 6).

Per exec task, in topological order (serially: the steps mostly wait on Toloka):

* a fresh work folder ``<runs>/<run_id>/<slug>/`` that looks like cnvrg's ``/cnvrg``: the project's
  top-level code entries (what git would check out) are symlinked in, ``output/`` is a real folder;
* the command is ``<input> --k1 v1 --k2 v2 ...`` split into words like cnvrg's shell line; a leading
  ``python``/``python3`` becomes this interpreter so the venv is used; ``/input/<parent_slug>/`` is
  remapped to the parent's work folder and ``/data/<dataset>/`` to the folder given with ``--data``;
* the environment gets the project secrets (from the environment or a git-ignored ``.env``), the
  ``CNVRG_*`` job variables, and ``CNVRG_<PARENT_SLUG>_<KEY>`` for each direct parent's params and tags;
* stdout/stderr are streamed with a ``[slug]`` prefix and kept in ``log.txt``; ``cnvrg_tag_*`` lines
  go to ``tags.json``, ``cnvrg_linechart_*`` lines to ``metrics.json``, the outcome to ``result.json``.

Secret values never reach the console, the logs or the JSON files: every line is redacted first. The
secrets are the values in ``.env``, the environment's variables whose names say secret (``credentials.redact``),
and, whatever its name, the variable a ``--token_env``-like param names (``--token_env NAME`` or
``--token_env=NAME``, in a param or in the command); a value of such a param that is not a variable name (a
token pasted in its place) is masked as a secret too. A command or param that holds a secret is refused
before anything runs: cnvrg shows both in its UI.
A failed task skips its descendants; independent tasks still run. ``runs/latest.json`` maps each
slug to its latest successful work folder, which ``--only`` uses as the parents' artifacts, like
cnvrg's "latest end commit" of a task.
"""

from __future__ import annotations

import json
import os
import re
import secrets as _secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TextIO

from crowdboxes.cnvrg.flow import MOUNT_RE, PYTHON_RE, TEMPLATE_RE, Flow, FlowError, Task, check_flow
from crowdboxes.credentials import is_variable_name, param_secrets, redact
from crowdboxes.files import write_text_atomic

SECRET_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # cnvrg's secret-key rule
TAG_RE = re.compile(r"^cnvrg_tag_([^:\s]+):\s?(.*)$")
CHART_RE = re.compile(r"^cnvrg_linechart_(\S+)\s+(.*)$")
CHART_FIELD_RE = re.compile(r"(\w+):\s*('[^']*'|\"[^\"]*\"|\S+)")
# Entries of a project folder that cnvrg would never check out into /cnvrg.
NEVER_LINKED = {".git", ".venv", "venv", "__pycache__", "runs", "output", ".env", ".secrets.env",
                ".pytest_cache", ".demo", ".local_toloka", "data"}


def env_name(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9_]", "_", p).upper() for p in parts)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, optional ``export`` and quotes). Errors never show values."""
    found: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FlowError(f"{path}: cannot read the secrets file: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[len("export "):].strip()
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not SECRET_KEY_RE.match(key):
            raise FlowError(f"{path} line {number}: expected KEY=VALUE with KEY matching [A-Za-z_][A-Za-z0-9_]*")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key] = value
    return found


def _git_ignored(path: Path) -> bool | None:
    """True/False when ``path`` is in a git work tree, None when it is not (or git is missing)."""
    try:
        done = subprocess.run(["git", "-C", str(path.parent), "check-ignore", "-q", path.name],
                              capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {0: True, 1: False}.get(done.returncode)


class Redactor:
    """credentials.redact (secrets in this process's environment) plus the values read from ``.env``."""

    def __init__(self, extra: dict[str, str] | None = None):
        self.values = sorted({v for v in (extra or {}).values() if len(v) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = redact(text)
        for value in self.values:
            text = text.replace(value, "***")
        return text


def parse_linechart(line: str) -> tuple[str, dict[str, float | str]] | None:
    match = CHART_RE.match(line)
    if not match:
        return None
    fields = {k: v.strip("'\"") for k, v in CHART_FIELD_RE.findall(match.group(2))}
    if "value" not in fields:
        return None
    point: dict[str, float | str] = {}
    for key, value in fields.items():
        try:
            point[key] = float(value) if key in ("value", "key") else value
        except ValueError:
            point[key] = value
    return match.group(1), point


def parse_overrides(items: list[str], flow: Flow) -> list[tuple[Task, str, str]]:
    """``key=value`` (every task with that param) or ``Title.key=value`` (one task) -> edits."""
    edits: list[tuple[Task, str, str]] = []
    for item in items:
        target, sep, value = item.partition("=")
        if not sep or not target.strip():
            shown = repr(item) if is_variable_name(item.rsplit(".", 1)[-1].strip()) else "(not shown)"
            raise FlowError(f"--set {shown}: expected key=value or \"Title.key=value\"")  # a pasted secret?
        target = target.strip()
        if "." in target:
            title, key = target.rsplit(".", 1)
            task = flow.task(title.strip())
            if task.param(key) is None:
                raise FlowError(f"--set {target}: task {task.title!r} has no param {key!r} "
                                f"(it has {', '.join(p.key for p in task.params) or 'none'})")
            edits.append((task, key, value))
            continue
        tasks = [t for t in flow.tasks if t.param(target) is not None]
        if not tasks:
            raise FlowError(f"--set {target}: no task in the flow has a param {target!r}")
        edits += [(t, target, value) for t in tasks]
    return edits


@dataclass
class TaskResult:
    title: str
    slug: str
    status: str  # succeeded | failed | skipped
    returncode: int | None = None
    workdir: str = ""
    error: str = ""
    seconds: float = 0.0
    command: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RunReport:
    run_id: str
    run_dir: Path
    results: list[TaskResult]

    @property
    def ok(self) -> bool:
        return all(r.status == "succeeded" for r in self.results)

    def failure_line(self) -> str:
        failed = [r for r in self.results if r.status == "failed"]
        skipped = [r.title for r in self.results if r.status == "skipped"]
        parts = [f"task {r.title!r} failed: {r.error}" for r in failed]
        if skipped:
            parts.append(f"skipped: {', '.join(skipped)}")
        if failed and failed[0].workdir:
            parts.append(f"log: {Path(failed[0].workdir) / 'log.txt'}")
        return "; ".join(parts)


class FlowRunner:
    """Runs a parsed :class:`Flow` from ``project_dir`` into ``runs_dir`` (see the module docstring)."""

    def __init__(self, flow: Flow, project_dir: str | Path | None = None, runs_dir: str | Path = "runs",
                 data: Mapping[str, str | Path] | None = None, overrides: list[str] | None = None,
                 env_file: str | Path | None = None, out: TextIO | None = None, err: TextIO | None = None,
                 python: str | None = None, check_steps: bool = True, jobs: int = 1):
        self.flow = flow
        self.project_dir = Path(project_dir or (flow.path.parent if flow.path else Path.cwd())).resolve()
        self.runs_dir = Path(runs_dir).resolve()
        self.data = {k: Path(v).resolve() for k, v in (data or {}).items()}
        known = sorted({t.dataset for t in flow.tasks if t.type == "data"})
        for name in self.data:
            if name not in known:
                raise FlowError(f"--data {name}=...: no data task has dataset {name!r} "
                                f"(datasets: {', '.join(known) or 'none'})")
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.python = python or sys.executable
        self.check_steps = check_steps
        if jobs < 1:
            raise FlowError(f"--jobs {jobs}: need at least 1")
        self.jobs = jobs  # independent branches at once (cnvrg runs them in parallel)
        for task, key, value in parse_overrides(list(overrides or []), flow):
            param = task.param(key)
            assert param is not None  # parse_overrides keeps only the tasks that have the param
            param.values = [value]
        self.secrets = self._load_secrets(env_file)
        self.redact = Redactor({**self.secrets, **self._param_secrets()})
        self._lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._entries: list[str] | None = None

    # -- secrets ---------------------------------------------------------------------------------
    def _load_secrets(self, env_file: str | Path | None) -> dict[str, str]:
        path = Path(env_file) if env_file else self.project_dir / ".env"
        if not path.is_file():
            if env_file:
                raise FlowError(f"{path}: no such secrets file")
            return {}
        if _git_ignored(path.resolve()) is False:
            raise FlowError(f"{path}: the secrets file is not git-ignored; add it to .gitignore first")
        return read_env_file(path)

    def _param_secrets(self) -> dict[str, str]:
        """Secrets the tasks' command lines point at, whatever their names: ``credentials.param_secrets`` over
        the words of each task's command and params (``--token_env NAME`` and ``--token_env=NAME`` alike), with
        the variables of the environment and ``.env``. A template stands in as a name that holds nothing: its
        value is a parent's param or tag, scanned where it is set."""
        variables = {**self.secrets, **os.environ}  # the real environment wins over .env, as in build_env
        found: dict[str, str] = {}
        for task in self.flow.tasks:
            line = TEMPLATE_RE.sub("flow_template", task.argv_line())
            try:
                words = shlex.split(line)
            except ValueError:  # check_flow names the bad line; its words still count
                words = line.split()
            for number, secret in enumerate(param_secrets(words, variables)):
                found[f"{task.slug}.{number}"] = secret
        return found

    # -- output ----------------------------------------------------------------------------------
    def say(self, text: str, stream: TextIO | None = None) -> None:
        with self._lock:
            print(self.redact(text), file=stream or self.out, flush=True)

    # -- index of latest successful work folders ------------------------------------------------------
    def _index_path(self, name: str = "latest.json") -> Path:
        return self.runs_dir / name

    def _read_index(self, name: str = "latest.json") -> dict[str, str]:
        path = self._index_path(name)
        if not path.is_file():
            return {}
        try:
            index: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FlowError(f"{path}: unreadable index of latest runs: {exc}") from None
        return index

    def _update_index(self, key: str, value: str, name: str = "latest.json") -> None:
        with self._index_lock:  # parallel branches finish concurrently
            index = self._read_index(name)
            index[key] = value
            write_text_atomic(self._index_path(name), json.dumps(index, indent=2, sort_keys=True) + "\n")

    # -- work folder ------------------------------------------------------------------------------
    def _code_entries(self) -> list[str]:
        """Top-level names cnvrg would check out: git's tracked + unignored files, else visible entries."""
        if self._entries is None:
            self._entries = self._list_code_entries()
        return self._entries

    def _list_code_entries(self) -> list[str]:
        names: set[str] | None = None
        try:
            done = subprocess.run(["git", "-C", str(self.project_dir), "ls-files", "-z", "--cached", "--others",
                                   "--exclude-standard"], capture_output=True, timeout=60)
            if done.returncode == 0:
                names = {p.split("/", 1)[0] for p in done.stdout.decode("utf-8", "replace").split("\0") if p}
        except (OSError, subprocess.TimeoutExpired):
            names = None
        if names is None:
            names = {p.name for p in self.project_dir.iterdir() if not p.name.startswith(".")}
        runs_top = None
        if self.runs_dir.is_relative_to(self.project_dir) and self.runs_dir != self.project_dir:
            runs_top = self.runs_dir.relative_to(self.project_dir).parts[0]
        return sorted(n for n in names if n not in NEVER_LINKED and n != runs_top
                      and (self.project_dir / n).exists())

    def _make_workdir(self, run_dir: Path, task: Task) -> Path:
        workdir = run_dir / task.slug
        workdir.mkdir(parents=True, exist_ok=False)
        for name in self._code_entries():
            (workdir / name).symlink_to(self.project_dir / name)
        (workdir / (task.output_dir or "output")).mkdir(parents=True, exist_ok=True)
        return workdir

    # -- command and environment ----------------------------------------------------------------------
    def _remap(self, word: str, mounts: dict[str, Path], datasets: dict[str, Path], task: Task) -> str:
        def sub(match: re.Match[str]) -> str:
            kind, name, rest = match.group(1), match.group(2), match.group(3) or ""
            table = mounts if kind == "input" else datasets
            if name not in table:
                raise FlowError(f"task {task.title!r}: /{kind}/{name}/ is not available to it "
                                f"({'not a direct parent' if kind == 'input' else 'pass --data ' + name + '=PATH'})")
            return str(table[name]) + rest
        return MOUNT_RE.sub(sub, word)

    def build_command(self, task: Task, mounts: dict[str, Path], datasets: dict[str, Path],
                      parent_tags: dict[str, dict[str, str]]) -> list[str]:
        """The argv for ``task``: cnvrg's shell line split into words, mounts remapped."""
        def fill(match: re.Match[str]) -> str:
            slug, key = match.group(1), match.group(2)
            if key not in parent_tags.get(slug, {}):
                raise FlowError(f"task {task.title!r}: template {match.group(0)!r} has no value "
                                f"(parent {slug!r} logged no tag or param {key!r})")
            return str(parent_tags[slug][key])
        line = TEMPLATE_RE.sub(fill, task.argv_line())
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise FlowError(f"task {task.title!r}: its command line cannot be split into words: {exc}") from None
        if not words:
            raise FlowError(f"task {task.title!r}: empty command")
        if PYTHON_RE.match(words[0]):
            words[0] = self.python
        return [self._remap(w, mounts, datasets, task) for w in words]

    def build_env(self, task: Task, workdir: Path, run_id: str,
                  parent_info: dict[str, dict[str, str]]) -> dict[str, str]:
        # Inherited CNVRG_* would contradict this job (and CNVRG_URL/TOKEN must stay unset: offline SDK path).
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNVRG_")}
        for key, value in self.secrets.items():
            env.setdefault(key, value)  # the real environment wins over .env
        env.update({
            "CNVRG_WORKDIR": str(workdir),
            "CNVRG_OUTPUT_DIR": str(workdir / (task.output_dir or "output")),
            "CNVRG_JOB_ID": f"{run_id}-{task.slug}",
            "CNVRG_JOB_TYPE": "Experiment",
            "CNVRG_JOB_NAME": task.title,
            "CNVRG_PROJECT": re.sub(r"[^a-z0-9-]+", "-", self.project_dir.name.lower()),
            "CNVRG_OWNER": "local",
            "CNVRG_ORGANIZATION": "local",
            "CNVRG_FLOW": self.flow.title,
            "PYTHONUNBUFFERED": "1",
        })
        for slug, values in parent_info.items():
            for key, value in values.items():
                env[env_name("CNVRG", slug, key)] = str(value)
        return env

    # -- running one task -----------------------------------------------------------------------------
    def _execute(self, task: Task, argv: list[str], env: dict[str, str], workdir: Path) -> TaskResult:
        tags: dict[str, str] = {}
        charts: dict[str, list[dict[str, float | str]]] = {}
        last_err: list[str] = []
        last_out: list[str] = []
        log = open(workdir / "log.txt", "w", encoding="utf-8")
        log.write(self.redact(f"$ {shlex.join(argv)}") + "\n")
        started = time.monotonic()
        try:
            proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1)
        except OSError as exc:
            log.close()
            return TaskResult(task.title, task.slug, "failed", None, str(workdir),
                              self.redact(f"cannot start {argv[0]}: {exc.strerror}"), 0.0, argv)

        def pump(stream: IO[str], is_err: bool) -> None:
            for raw in stream:
                line = self.redact(raw.rstrip("\n"))
                with self._lock:
                    log.write(line + "\n")
                    log.flush()
                    print(f"[{task.slug}] {line}", file=self.err if is_err else self.out, flush=True)
                    if line.strip():
                        (last_err if is_err else last_out)[:] = [line.strip()]
                    if m := TAG_RE.match(line):
                        tags[m.group(1)] = m.group(2).strip()
                    elif chart := parse_linechart(line):
                        charts.setdefault(chart[0], []).append(chart[1])

        threads = [threading.Thread(target=pump, args=(proc.stdout, False), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, True), daemon=True)]
        for t in threads:
            t.start()
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            raise
        finally:
            for t in threads:
                t.join(timeout=10)
            log.write(f"# exit code {proc.returncode}\n")
            log.close()
            write_text_atomic(workdir / "tags.json", json.dumps(tags, indent=2) + "\n")
            write_text_atomic(workdir / "metrics.json", json.dumps(charts, indent=2) + "\n")
        seconds = time.monotonic() - started
        error = ""
        if code != 0:
            error = (last_err or last_out or [f"exit code {code}"])[0]
            error = f"exit code {code}: {error}"
        return TaskResult(task.title, task.slug, "succeeded" if code == 0 else "failed", code, str(workdir),
                          error, round(seconds, 3), argv, tags)

    def _run_exec(self, task: Task, run_dir: Path, run_id: str, folders: dict[str, Path],
                  tags_by_slug: dict[str, dict[str, str]], datasets: dict[str, Path]) -> TaskResult:
        parents = self.flow.parents(task.title)
        mounts = {p.slug: folders[p.slug] for p in parents if p.type == "exec"}
        parent_info: dict[str, dict[str, str]] = {}
        for p in parents:
            if p.type == "exec":
                parent_info[p.slug] = {**{q.key: q.value for q in p.params}, **tags_by_slug.get(p.slug, {})}
        workdir = self._make_workdir(run_dir, task)
        try:
            argv = self.build_command(task, mounts, datasets, parent_info)
        except FlowError as exc:
            result = TaskResult(task.title, task.slug, "failed", None, str(workdir), self.redact(str(exc)))
        else:
            env = self.build_env(task, workdir, run_id, parent_info)
            self.say(f"[flow] {task.title} ({task.slug}): {shlex.join(argv)}")
            result = self._execute(task, argv, env, workdir)
        result.command = [self.redact(w) for w in result.command]
        write_text_atomic(workdir / "result.json", json.dumps(asdict(result), indent=2) + "\n")
        if result.status == "succeeded":
            self._update_index(task.slug, str(workdir))
        return result

    # -- whole runs -------------------------------------------------------------------------------
    def _preflight(self) -> list[Task]:
        problems = check_flow(self.flow, self.project_dir, self.check_steps)
        # commands and params are shown in cnvrg's UI (params are exported to children too): a secret must
        # travel by env var name
        shown_texts = [(t, "command: it", t.command) for t in self.flow.tasks]
        shown_texts += [(t, f"param {p.key!r}: its value", p.value) for t in self.flow.tasks for p in t.params]
        problems += [f"task {t.title!r} {what} contains a secret ({self.redact(text)}); "
                     "pass the name of the env var that holds it instead (like --token_env)"
                     for t, what, text in shown_texts if text and self.redact(text) != text]
        if problems:
            more = f" (and {len(problems) - 1} more; see `flow validate`)" if len(problems) > 1 else ""
            raise FlowError(self.redact(f"{problems[0]}{more}"))
        return self.flow.order()

    def _new_run_dir(self) -> tuple[str, Path]:
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{_secrets.token_hex(2)}"
        run_dir = self.runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        return run_id, run_dir

    def _dataset_folder(self, task: Task) -> Path:
        folder = self.data.get(task.dataset)
        if folder is None:
            remembered = self._read_index("latest_data.json").get(task.dataset)
            folder = Path(remembered) if remembered else None
        if folder is None:
            raise FlowError(f"data task {task.title!r}: no local folder for dataset {task.dataset!r}; "
                            f"pass --data {task.dataset}=PATH")
        if not folder.is_dir():
            raise FlowError(f"data task {task.title!r}: dataset folder {folder} does not exist")
        return folder

    def _mount_dataset(self, task: Task, datasets: dict[str, Path]) -> TaskResult:
        try:
            datasets[task.dataset] = self._dataset_folder(task)
        except FlowError as exc:
            self.say(f"[flow] {exc}")
            return TaskResult(task.title, task.slug, "failed", error=str(exc))
        self._update_index(task.dataset, str(datasets[task.dataset]), "latest_data.json")
        self.say(f"[flow] {task.title}: dataset {task.dataset} at {datasets[task.dataset]}")
        return TaskResult(task.title, task.slug, "succeeded", workdir=str(datasets[task.dataset]))

    def run(self, only: str | None = None) -> RunReport:
        order = self._preflight()
        if only is not None:
            target = self.flow.task(only)
            if target.type != "exec":
                raise FlowError(f"--only {only!r}: a {target.type} task has nothing to run")
            return self._run_only(target)
        run_id, run_dir = self._new_run_dir()
        self.say(f"[flow] {self.flow.title}: run {run_id} in {run_dir}")
        results: dict[str, TaskResult] = {}
        folders: dict[str, Path] = {}
        datasets: dict[str, Path] = {}
        tags_by_slug: dict[str, dict[str, str]] = {}
        pending = list(order)
        running: dict[Future[TaskResult], Task] = {}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            while pending or running:
                progressed = True
                while progressed:  # skips and data tasks finish at once and may unblock others
                    progressed = False
                    for task in list(pending):
                        parents = self.flow.parents(task.title)
                        if any(p.title not in results for p in parents):
                            continue
                        blocked = [p.title for p in parents if results[p.title].status != "succeeded"]
                        if blocked:
                            pending.remove(task)
                            results[task.title] = TaskResult(task.title, task.slug, "skipped",
                                                             error=f"parent {blocked[0]!r} did not succeed")
                            self.say(f"[flow] {task.title}: skipped ({results[task.title].error})")
                            progressed = True
                        elif task.type == "data":
                            pending.remove(task)
                            results[task.title] = self._mount_dataset(task, datasets)
                            progressed = True
                        elif len(running) < self.jobs:
                            pending.remove(task)
                            running[pool.submit(self._run_exec, task, run_dir, run_id, dict(folders),
                                                dict(tags_by_slug), dict(datasets))] = task
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    result = future.result()
                    results[task.title] = result
                    folders[task.slug] = Path(result.workdir)
                    tags_by_slug[task.slug] = result.tags
                    self.say(f"[flow] {task.title}: {result.status} in {result.seconds:.1f} s"
                             + (f" ({result.error})" if result.error else ""))
        report = RunReport(run_id, run_dir, [results[t.title] for t in order])
        self._write_report(report)
        return report

    def _run_only(self, task: Task) -> RunReport:
        latest = self._read_index()
        folders: dict[str, Path] = {}
        datasets: dict[str, Path] = {}
        tags_by_slug: dict[str, dict[str, str]] = {}
        for parent in self.flow.parents(task.title):
            if parent.type == "data":
                datasets[parent.dataset] = self._dataset_folder(parent)
                continue
            if parent.slug not in latest or not Path(latest[parent.slug]).is_dir():
                raise FlowError(f"--only {task.title!r}: parent {parent.title!r} has no successful run in "
                                f"{self._index_path()}; run the flow (or that task) first")
            folders[parent.slug] = Path(latest[parent.slug])
            tags_file = folders[parent.slug] / "tags.json"
            tags_by_slug[parent.slug] = json.loads(tags_file.read_text()) if tags_file.is_file() else {}
        run_id, run_dir = self._new_run_dir()
        self.say(f"[flow] {self.flow.title}: re-running {task.title!r} only, run {run_id}, parents from "
                 + (", ".join(f"{s}={p}" for s, p in folders.items()) or "none"))
        result = self._run_exec(task, run_dir, run_id, folders, tags_by_slug, datasets)
        self.say(f"[flow] {task.title}: {result.status} in {result.seconds:.1f} s"
                 + (f" ({result.error})" if result.error else ""))
        report = RunReport(run_id, run_dir, [result])
        self._write_report(report)
        return report

    def _write_report(self, report: RunReport) -> None:
        summary = {"flow": self.flow.title, "run_id": report.run_id, "ok": report.ok,
                   "tasks": [{k: v for k, v in asdict(r).items() if k != "command"} for r in report.results]}
        write_text_atomic(report.run_dir / "run.json", self.redact(json.dumps(summary, indent=2)) + "\n")
        width = max(len(r.title) for r in report.results)
        self.say(f"[flow] run {report.run_id}: " + ("all tasks succeeded" if report.ok else "FAILED"))
        for r in report.results:
            self.say(f"[flow]   {r.title:<{width}}  {r.status:<9}  {r.seconds:7.1f} s  {r.workdir}")
