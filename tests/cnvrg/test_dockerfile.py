"""The cnvrg step image's Dockerfile: slim Python 3.11, pinned requirements before the package,
a non-root user, /cnvrg as working folder, nothing secret, and COPY sources that exist and are not
excluded from the build context by .dockerignore."""

from __future__ import annotations

import fnmatch
import re
import shlex

import pytest

from helpers_paths import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
SECRET_WORDS = re.compile(r"token|secret|passw|credential|api[_-]?key|access[_-]?key|private", re.I)
SECRET_VALUES = re.compile(r"AKIA[0-9A-Z]{16}|(?<![0-9a-f])[0-9a-f]{32,}(?![0-9a-f])|"
                           r"(?:ghp|gho|xox[bap])_?[A-Za-z0-9]{16,}|AQAAAA[A-Za-z0-9_-]{20,}")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    result, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        result.append((word.upper(), " ".join(rest.split())))
        current = ""
    return result


def copy_sources(args: str) -> list[str]:
    words = [w for w in shlex.split(args) if not w.startswith("--")]
    if args.lstrip().startswith("["):  # JSON form
        words = [w.strip('[]",') for w in args.split(",")]
    return words[:-1]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or one of its parent folders) wins."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            verdict = not negate
    return verdict


def problems(text: str, repo=REPO_ROOT, ignore_patterns=()) -> list[str]:
    found = []
    steps = instructions(text)
    froms = [a for i, a in steps if i == "FROM"]
    if len(froms) != 1 or not re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", froms[0].split()[0]):
        found.append(f"base image is {froms}, not python:3.11-slim")
    users = [a for i, a in steps if i == "USER"]
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        found.append(f"last USER is {users[-1] if users else None}: must be an unprivileged user")
    workdirs = [a for i, a in steps if i == "WORKDIR"]
    if not workdirs or workdirs[-1] != "/cnvrg":
        found.append(f"last WORKDIR is {workdirs[-1] if workdirs else None}, not /cnvrg")
    for instruction, args in steps:
        if instruction in {"COPY", "ADD"}:
            if "--from=" in args:
                continue
            for source in copy_sources(args):
                if re.match(r"https?://", source):
                    found.append(f"{instruction} {source}: downloads are not reproducible")
                elif not (repo / source).exists():
                    found.append(f"{instruction} source {source} does not exist in the repo")
                elif ignored(source, list(ignore_patterns)):
                    found.append(f"{instruction} source {source} is excluded by .dockerignore")
        if instruction in {"ENV", "ARG"}:
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                if SECRET_WORDS.search(key) or SECRET_VALUES.search(value):
                    found.append(f"{instruction} {key} looks like a secret")
        if instruction == "RUN" and SECRET_VALUES.search(args):
            found.append("RUN carries something that looks like a secret")
    runs = [a for i, a in steps if i == "RUN"]
    req = next((k for k, a in enumerate(runs) if "-r " in a and "requirements.txt" in a), None)
    pkg = next((k for k, a in enumerate(runs) if "--no-deps" in a), None)
    if req is None or pkg is None or req > pkg:
        found.append("requirements.txt must be installed first, then the package with --no-deps")
    return found


def _patterns():
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_the_dockerfile_passes_every_check():
    assert problems(DOCKERFILE.read_text(), ignore_patterns=_patterns()) == []


def test_the_image_has_labels_and_an_entry_point():
    steps = instructions(DOCKERFILE.read_text())
    labels = " ".join(a for i, a in steps if i == "LABEL")
    assert "org.opencontainers.image.title" in labels and "org.opencontainers.image.licenses" in labels
    assert any(i in {"CMD", "ENTRYPOINT"} for i, _ in steps)


def test_dockerignore_keeps_secrets_and_local_state_out():
    patterns = _patterns()
    for path in (".venv/bin/python", ".env", "data/synth/scene_00000.jpg", ".git/config", "runs/x",
                 "crowdboxes/__pycache__/cli.cpython-311.pyc", ".secrets.env"):
        assert ignored(path, patterns), path
    for path in ("requirements.txt", "pyproject.toml", "README.md", "crowdboxes/cli.py"):
        assert not ignored(path, patterns), path


GOOD = """FROM python:3.11-slim
COPY requirements.txt /x/
RUN pip install -r /x/requirements.txt
COPY crowdboxes /x/crowdboxes
RUN pip install --no-deps /x
USER 1000
WORKDIR /cnvrg
"""


@pytest.mark.parametrize("change, expected", [
    (lambda t: t.replace("python:3.11-slim", "python:3.11"), "base image"),
    (lambda t: t.replace("python:3.11-slim", "ubuntu:22.04"), "base image"),
    (lambda t: t.replace("USER 1000", "USER root"), "last USER is root"),
    (lambda t: t.replace("USER 1000\n", ""), "last USER is None"),
    (lambda t: t.replace("WORKDIR /cnvrg", "WORKDIR /app"), "not /cnvrg"),
    (lambda t: t.replace("COPY crowdboxes", "COPY no_such_folder"), "no_such_folder does not exist"),
    (lambda t: t + "ENV TOLOKA_TOKEN=abc\n", "ENV TOLOKA_TOKEN looks like a secret"),
    (lambda t: t + "ARG AWS_SECRET_ACCESS_KEY\n", "ARG AWS_SECRET_ACCESS_KEY looks like a secret"),
    (lambda t: t + "ENV X=AKIAABCDEFGHIJKLMNOP\n", "ENV X looks like a secret"),
    (lambda t: t + "ADD https://example.com/x.tgz /x\n", "downloads are not reproducible"),
    (lambda t: t.replace("--no-deps /x", "/x"), "installed first"),
])
def test_the_checks_catch_bad_dockerfiles(change, expected):
    assert problems(GOOD) == []
    found = problems(change(GOOD))
    assert any(expected in f for f in found), found


def test_a_copy_source_hidden_by_dockerignore_is_caught():
    found = problems(GOOD, ignore_patterns=["*", "!requirements.txt"])
    assert found == ["COPY source crowdboxes is excluded by .dockerignore"]


def test_continuation_lines_and_comments_are_joined():
    text = "FROM python:3.11-slim\n# note\nRUN a \\\n    # inside\n    && b\nUSER 1000\n"
    assert instructions(text) == [("FROM", "python:3.11-slim"), ("RUN", "a && b"), ("USER", "1000")]


def test_hadolint_passes():
    """The step image's Dockerfile lints clean (hadolint comes with requirements-dev.txt)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([hadolint, "Dockerfile"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
