"""Parse and check a cnvrg flow YAML (UI-export dialect, with the blueprint's ``command`` accepted).

The checks are the ones that otherwise fail only after import into cnvrg, often after money was
spent on the first steps: duplicate titles, relations naming unknown tasks, cycles, a child reading
``/input/<slug>/`` of a task that is not its direct parent (cnvrg mounts only direct parents), a
file outside the parent's ``output_dir`` (a git-linked project syncs nothing else), shell
metacharacters in param values (cnvrg splices values unquoted into a shell line), grids, and params
the step's argparse would reject. See ``shared/reference/cnvrg-flows.md`` sections 1, 2 and 5.

Every problem is one line naming the task and the param.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crowdboxes.errors import CrowdboxesError
from crowdboxes.credentials import names_a_secret

TASK_TYPES = ("exec", "data", "deploy")
PARAM_TYPES = ("categorical", "discrete", "float", "integer")
# cnvrg's slug rule is only known for these characters (cnvrg-flows.md 2.3).
TITLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]*$")
# `/input/<slug>` or `/data/<dataset>` at the start of a word or after `=` / `,` (e.g. `--x=/input/a/f`).
MOUNT_RE = re.compile(r"(?:^|(?<=[=,]))/(input|data)/([A-Za-z0-9_.-]+)(/[^\s,]*)?")
TEMPLATE_RE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\s*\}\}")
# bash would expand, redirect or re-quote these, so a value holding one would not arrive as written.
SHELL_META = set("$`;|&<>*?!\"'\\(){}[]#~")
PYTHON_RE = re.compile(r"^(?:.*/)?python(?:3(?:\.\d+)?)?$")


class FlowError(CrowdboxesError):
    """A flow file that cannot be used; the message is one line naming the file, task or param."""


def slugify(title: str) -> str:
    """cnvrg's task slug: ``title.lower()`` with spaces and ``-`` turned into ``_`` (``/input/<slug>``)."""
    return re.sub(r"[ -]", "_", title.strip().lower())


@dataclass
class Param:
    key: str
    values: list[str]
    type: str = "categorical"

    @property
    def value(self) -> str:
        return self.values[0] if self.values else ""


@dataclass
class Task:
    title: str
    type: str = "exec"
    command: str = ""
    params: list[Param] = field(default_factory=list)
    output_dir: str = ""
    dataset: str = ""
    index: int = 0

    @property
    def slug(self) -> str:
        return slugify(self.title)

    def param(self, key: str) -> Param | None:
        return next((p for p in self.params if p.key == key), None)

    def argv_line(self) -> str:
        """The shell line cnvrg builds: ``<input> --k1 v1 --k2 v2`` in list order, values unquoted."""
        parts = [self.command.strip()]
        parts += [f"--{p.key} {p.value}".rstrip() for p in self.params]
        return " ".join(parts)

    def argv(self) -> list[str]:
        """The words bash makes of :meth:`argv_line` (no expansions: values are checked for them)."""
        return shlex.split(self.argv_line())

    def script(self) -> str | None:
        """The ``.py`` file the command runs, if it is ``python[3] [opts] <file>.py``."""
        try:
            words = shlex.split(self.command)
        except ValueError:
            return None
        if not words:
            return None
        if PYTHON_RE.match(words[0]):
            rest = [w for w in words[1:] if not w.startswith("-")]
            if "-m" in words[1:] or not rest:
                return None
            return rest[0] if rest[0].endswith(".py") else None
        return words[0] if words[0].endswith(".py") else None


@dataclass
class Flow:
    title: str
    tasks: list[Task]
    relations: list[tuple[str, str]]
    path: Path | None = None
    problems: list[str] = field(default_factory=list)  # found while parsing; check_flow adds the rest

    def task(self, title: str) -> Task:
        for task in self.tasks:
            if task.title == title:
                return task
        raise FlowError(f"no task titled {title!r}; tasks: {', '.join(repr(t.title) for t in self.tasks)}")

    def by_slug(self) -> dict[str, Task]:
        return {t.slug: t for t in self.tasks}

    def parents(self, title: str) -> list[Task]:
        """Direct parents in relation order (only these are mounted under ``/input``)."""
        known = {t.title: t for t in self.tasks}
        seen: list[Task] = []
        for src, dst in self.relations:
            if dst == title and src in known and known[src] not in seen:
                seen.append(known[src])
        return seen

    def children(self, title: str) -> list[Task]:
        known = {t.title: t for t in self.tasks}
        return [known[d] for s, d in dict.fromkeys(self.relations) if s == title and d in known]

    def descendants(self, title: str) -> set[str]:
        found: set[str] = set()
        stack = [title]
        while stack:
            for child in self.children(stack.pop()):
                if child.title not in found:
                    found.add(child.title)
                    stack.append(child.title)
        return found

    def order(self) -> list[Task]:
        """Topological order by relations; ties keep the YAML order. Raises on a cycle."""
        known = {t.title: t for t in self.tasks}
        edges = [(s, d) for s, d in dict.fromkeys(self.relations) if s in known and d in known]
        indegree = {t.title: 0 for t in self.tasks}
        for _, dst in edges:
            indegree[dst] += 1
        ready = [t for t in self.tasks if indegree[t.title] == 0]
        ordered: list[Task] = []
        while ready:
            ready.sort(key=lambda t: t.index)
            task = ready.pop(0)
            ordered.append(task)
            for src, dst in edges:
                if src == task.title:
                    indegree[dst] -= 1
                    if indegree[dst] == 0:
                        ready.append(known[dst])
        if len(ordered) < len(self.tasks):
            raise FlowError(f"relations form a cycle: {' -> '.join(_cycle(edges, indegree))}")
        return ordered


def _cycle(edges: list[tuple[str, str]], indegree: dict[str, int]) -> list[str]:
    """One cycle among the tasks Kahn's algorithm could not order, as titles ending where it starts."""
    stuck = {t for t, d in indegree.items() if d > 0}
    nxt: dict[str, str] = {}
    for src, dst in edges:
        if src in stuck and dst in stuck:
            nxt.setdefault(src, dst)
    node = next(iter(sorted(stuck)))
    path: list[str] = []
    while node not in path:
        path.append(node)
        node = nxt[node]
    return path[path.index(node):] + [node]


def _as_text(value: object) -> str:
    # YAML turns `true` / `3` / `0.05` into objects; cnvrg passes their text. Booleans as our steps expect.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_params(title: str, raw: Any, problems: list[str]) -> list[Param]:
    if raw in (None, ""):
        return []
    if isinstance(raw, dict):  # legacy AI-Library mapping {key: {type, value}}
        raw = [{"key": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in raw.items()]
    if not isinstance(raw, list):
        problems.append(f"task {title!r}: params must be a list of {{key, type, values}}")
        return []
    params: list[Param] = []
    for n, item in enumerate(raw, 1):
        if not isinstance(item, dict) or not str(item.get("key") or "").strip():
            problems.append(f"task {title!r}: param #{n} has no key")
            continue
        key = str(item["key"]).strip()
        if "values" in item:
            values = item["values"]
        else:
            values = item.get("value")
        if values is None or values == "":
            values = []
        elif not isinstance(values, list):
            values = [values]
        ptype = str(item.get("type") or "categorical")
        if ptype not in PARAM_TYPES:
            problems.append(f"task {title!r} param {key!r}: type {ptype!r} is not one of {', '.join(PARAM_TYPES)}")
        if any(p.key == key for p in params):
            problems.append(f"task {title!r} param {key!r}: given twice")
            continue
        params.append(Param(key=key, values=[_as_text(v) for v in values if v is not None], type=ptype))
    return params


def parse_flow(data: Any, path: Path | None = None) -> Flow:
    """Build a :class:`Flow` from parsed YAML; structural problems that stop everything raise."""
    where = str(path) if path else "flow"
    if not isinstance(data, dict):
        raise FlowError(f"{where}: not a flow (expected a mapping with flow, tasks, relations)")
    tasks_raw = data.get("tasks")
    if not isinstance(tasks_raw, list):
        raise FlowError(f"{where}: 'tasks' must be a list of tasks")
    title = data.get("flow") or data.get("title") or ""
    problems: list[str] = []
    if not title:
        problems.append("the flow has no 'flow' title")
    tasks: list[Task] = []
    for n, raw in enumerate(tasks_raw, 1):
        if not isinstance(raw, dict):
            raise FlowError(f"{where}: task #{n} is not a mapping")
        t_title = str(raw.get("title") or "").strip()
        if not t_title:
            problems.append(f"task #{n} has no title")
            continue
        ttype = str(raw.get("type") or ("data" if raw.get("dataset") else "exec"))
        command = raw.get("input")
        if raw.get("command") and command and str(raw["command"]).strip() != str(command).strip():
            problems.append(f"task {t_title!r}: both 'input' and 'command' are given and differ")
        command = str(command or raw.get("command") or "")
        task = Task(title=t_title, type=ttype, command=command,
                    params=_parse_params(t_title, raw.get("params"), problems),
                    output_dir=str(raw.get("output_dir") or "").strip().strip("/"),
                    dataset=str(raw.get("dataset") or ""), index=n)
        tasks.append(task)
    relations: list[tuple[str, str]] = []
    rel_raw = data.get("relations") or []
    if not isinstance(rel_raw, list):
        problems.append("'relations' must be a list of {from, to}")
        rel_raw = []
    for n, rel in enumerate(rel_raw, 1):
        if not isinstance(rel, dict) or not rel.get("from") or not rel.get("to"):
            problems.append(f"relation #{n} needs both 'from' and 'to'")
            continue
        relations.append((str(rel["from"]).strip(), str(rel["to"]).strip()))
    return Flow(title=str(title), tasks=tasks, relations=relations, path=path, problems=problems)


def load_flow(path: str | Path) -> Flow:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlowError(f"{path}: no such file") from None
    except OSError as exc:
        raise FlowError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise FlowError(f"{path}:{at} not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    return parse_flow(data, path)


def check_flow(flow: Flow, project_dir: str | Path | None = None, check_steps: bool = True) -> list[str]:
    """All problems of ``flow``, one line each. ``project_dir`` is where the step scripts live
    (cnvrg's ``/cnvrg``; default: the YAML's folder). With ``check_steps`` each step script is
    imported and its ``build_parser()`` must accept the task's params."""
    problems = list(flow.problems)
    titles = [t.title for t in flow.tasks]
    for title in sorted({t for t in titles if titles.count(t) > 1}):
        problems.append(f"task {title!r}: title used by {titles.count(title)} tasks (relations and /input need unique titles)")
    slugs: dict[str, str] = {}
    for task in flow.tasks:
        if not TITLE_RE.match(task.title):
            problems.append(f"task {task.title!r}: use only letters, digits, spaces and '-' in titles "
                            "(cnvrg's /input/<slug> is only known for these)")
        other = slugs.setdefault(task.slug, task.title)
        if other != task.title:
            problems.append(f"task {task.title!r}: slug {task.slug!r} is also the slug of {other!r}")
    known = set(titles)
    lower = {t.lower(): t for t in titles}
    graph_ok = True
    for src, dst in flow.relations:
        for end in (src, dst):
            if end not in known:
                graph_ok = False
                hint = f" (did you mean {lower[end.lower()]!r}?)" if end.lower() in lower else ""
                problems.append(f"relation {src!r} -> {dst!r}: no task titled {end!r}{hint}")
        if src == dst:
            graph_ok = False
            problems.append(f"relation {src!r} -> {dst!r}: a task cannot depend on itself")
    if graph_ok:
        try:
            flow.order()
        except FlowError as exc:
            problems.append(str(exc))
    base = (Path(project_dir) if project_dir else (flow.path.parent if flow.path else Path.cwd())).resolve()
    for task in flow.tasks:
        problems += _check_task(flow, task, base, check_steps)
    return problems


def _check_task(flow: Flow, task: Task, base: Path, check_steps: bool) -> list[str]:
    where = f"task {task.title!r}"
    if task.type not in TASK_TYPES:
        return [f"{where}: type {task.type!r} is not one of {', '.join(TASK_TYPES)}"]
    if task.type == "deploy":
        return [f"{where}: deploy tasks are not supported by this flow's runner"]
    if task.type == "data":
        if not task.dataset:
            return [f"{where}: a data task needs 'dataset' (its slug; mounted at /data/<dataset>)"]
        if flow.parents(task.title):
            return [f"{where}: a data task cannot have parents"]
        return []
    problems: list[str] = []
    if not task.command.strip():
        return [f"{where}: no command ('input' in exported flows, 'command' in blueprints)"]
    parents = flow.parents(task.title)
    parent_slugs = {p.slug: p for p in parents if p.type == "exec"}
    datasets = {p.dataset for p in parents if p.type == "data"}
    all_slugs = flow.by_slug()
    for param in task.params:
        at = f"{where} param {param.key!r}"
        if not param.values:
            problems.append(f"{at}: has no value (cnvrg treats an empty param as required)")
            continue
        if len(param.values) > 1:
            problems.append(f"{at}: {len(param.values)} values make a grid of jobs; give exactly one")
        plain = TEMPLATE_RE.sub("x", param.value)  # templates are filled in before the shell sees the line
        bad = sorted({c for c in plain if c in SHELL_META})
        # a value meant as a variable's name may be the secret itself: such values are never quoted
        shown = "(not shown)" if names_a_secret(param.key) else repr(param.value)
        if bad:
            problems.append(f"{at}: value {shown} has {''.join(bad)!r}, which cnvrg's shell line would "
                            "interpret; use plain words")
        if plain != plain.strip() or len(plain.split()) > 1:
            problems.append(f"{at}: value {shown} has whitespace, which splits it into several arguments")
        for match in TEMPLATE_RE.finditer(param.value):
            if match.group(1) not in parent_slugs:
                problems.append(f"{at}: template {match.group(0)!r} names {match.group(1)!r}, "
                                "which is not a direct parent")
    for text, at in [(task.command, f"{where} command")] + [(p.value, f"{where} param {p.key!r}") for p in task.params]:
        for word in text.split():
            for kind, name, rest in MOUNT_RE.findall(word):
                if kind == "input":
                    parent = parent_slugs.get(name)
                    if parent is None:
                        owner = all_slugs.get(name)
                        if owner is None:
                            problems.append(f"{at}: /input/{name}/ names no task (slugs: {', '.join(sorted(all_slugs))})")
                        else:
                            problems.append(f"{at}: reads /input/{name}/ but {owner.title!r} is not a direct parent "
                                            f"(add the relation {owner.title!r} -> {task.title!r})")
                        continue
                    sub = (rest or "/").lstrip("/")
                    if parent.output_dir and not (sub == parent.output_dir or sub.startswith(parent.output_dir + "/")):
                        problems.append(f"{at}: /input/{name}/{sub} is outside {parent.title!r}'s output_dir "
                                        f"{parent.output_dir!r}; a git-linked project keeps only that folder")
                elif name not in datasets:
                    problems.append(f"{at}: reads /data/{name}/ but no data task with dataset {name!r} is a direct parent")
    if check_steps:
        problems += _check_step_args(task, base)
    return problems


def load_parser(script: Path, slug: str) -> argparse.ArgumentParser:
    """Import a step script by path and return its ``build_parser()`` (raises FlowError)."""
    module_name = f"_crowdboxes_flow_step_{slug}"
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise FlowError(f"{script}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    added = str(script.parent.parent)
    sys.path.insert(0, added)
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        raise FlowError(f"{script}: exits while being imported (code {exc.code})") from None
    except Exception as exc:
        raise FlowError(f"{script}: importing it failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(added)
        sys.modules.pop(module_name, None)
    build = getattr(module, "build_parser", None)
    if not callable(build):
        raise FlowError(f"{script}: defines no build_parser()")
    parser = build()
    if not isinstance(parser, argparse.ArgumentParser):
        raise FlowError(f"{script}: build_parser() returned {type(parser).__name__}, not an ArgumentParser")
    return parser


def _check_step_args(task: Task, base: Path) -> list[str]:
    where = f"task {task.title!r}"
    script_rel = task.script()
    if script_rel is None:
        return []  # not a python script we can inspect (e.g. `python -m ...` or a shell command)
    script = (base / script_rel) if not Path(script_rel).is_absolute() else Path(script_rel)
    if not script.is_file():
        return [f"{where}: step script {script_rel} does not exist (looked in {base})"]
    try:
        parser = load_parser(script, task.slug)
    except CrowdboxesError as exc:
        return [f"{where}: {exc}"]
    accepted = {opt for action in parser._actions for opt in action.option_strings}
    problems = [f"{where} param {p.key!r}: {script_rel} does not accept --{p.key} "
                f"(it accepts {', '.join(sorted(o for o in accepted if o.startswith('--') and o != '--help'))})"
                for p in task.params if f"--{p.key}" not in accepted]
    if problems:
        return problems
    if any(TEMPLATE_RE.search(p.value) for p in task.params):
        return []  # values known only at run time; the option names were checked
    try:
        words = task.argv()
    except ValueError as exc:
        return [f"{where}: its command line cannot be split into words: {exc}"]
    # the words after the script are what argparse sees
    try:
        start = words.index(script_rel) + 1
    except ValueError:
        start = len(shlex.split(task.command))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(words[start:])
    except CrowdboxesError as exc:
        return [f"{where}: {script_rel} rejects its params: {exc}"]
    except SystemExit:
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        return [f"{where}: {script_rel} rejects its params: {lines[-1] if lines else 'argparse error'}"]
    except Exception as exc:  # a type= converter that raised something else
        return [f"{where}: {script_rel} rejects its params: {type(exc).__name__}: {exc}"]
    return []
