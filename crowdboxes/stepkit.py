"""What every flow step shares: one-line failures, atomic outputs, cnvrg paths and the token.

A step's ``main`` raises :class:`StepError` (or lets a known error escape) and :func:`run_step`
turns it into exactly one ``error: ...`` line on stderr and exit code 2, with the Toloka token
masked if it ever reached the message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_TOKEN_ENV = "toloka_token"
EXIT_STEP_ERROR = 2


class StepError(Exception):
    """A failure the user can act on: the message names the file, row, field or value."""


def output_dir(path: str | None = None) -> Path:
    """The step's output folder: ``--output_dir``, else cnvrg's ``$CNVRG_OUTPUT_DIR``, else ``./output``."""
    chosen = Path(path or os.environ.get("CNVRG_OUTPUT_DIR") or "output")
    try:
        chosen.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StepError(f"cannot create output folder {chosen}: {exc.strerror}") from None
    if not os.access(chosen, os.W_OK):
        raise StepError(f"output folder {chosen} is not writable")
    return chosen


def is_none(value) -> bool:
    """cnvrg params are strings and cannot be empty: the words none/null (or nothing) mean "unset"."""
    return value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"})


def none_or_value(value):
    """argparse ``type=`` for optional params: None for an unset word, else the value unchanged."""
    return None if is_none(value) else value


def read_token(token_env: str = DEFAULT_TOKEN_ENV) -> str:
    """The Toloka token from the environment variable named ``token_env`` (a cnvrg secret)."""
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise StepError(f"environment variable {token_env!r} with the Toloka token is not set "
                        f"(on cnvrg: add a project secret named {token_env!r})")
    return token


def _secrets_to_mask() -> list[str]:
    names = {DEFAULT_TOKEN_ENV, "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "CNVRG_TOKEN"}
    names.update(n for n in os.environ if n.lower().endswith("token") or "secret" in n.lower())
    return [v for n in names if len(v := os.environ.get(n, "")) >= 4]


def redact(text: str) -> str:
    """``text`` with every secret value from the environment replaced by ``***``."""
    for secret in _secrets_to_mask():
        text = text.replace(secret, "***")
    return text


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 files; outputs must be readable like any normally created file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | os.PathLike, what: str = "input"):
    """Parse a JSON file; StepError naming the file when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise StepError(f"{what} file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StepError(f"{path}: not valid JSON ({exc})") from None


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def cnvrg_tag(key: str, value) -> None:
    """A cnvrg tag line: shown in the UI and passed to downstream tasks as env vars."""
    print(f"cnvrg_tag_{key}: {value}", flush=True)


def cnvrg_linechart(chart: str, value, key=None) -> None:
    key_part = f" key: {key}" if key is not None else ""
    print(f"cnvrg_linechart_{chart}{key_part} value: {value}", flush=True)


class StepArgumentParser(argparse.ArgumentParser):
    """argparse that fails with one line (cnvrg passes every param as ``--key value`` strings)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise StepError(f"{self.prog}: {message}")


def step_parser(prog: str, description: str) -> StepArgumentParser:
    parser = StepArgumentParser(prog=prog, description=description)
    parser.add_argument("--toloka_env", default="production",
                        help="production, sandbox, or the URL of a Toloka API (e.g. the local Toloka)")
    parser.add_argument("--token_env", default=DEFAULT_TOKEN_ENV,
                        help="name of the environment variable holding the Toloka token")
    parser.add_argument("--output_dir", default=None, help="where outputs go (default: $CNVRG_OUTPUT_DIR or ./output)")
    return parser


def run_step(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a step's ``main``; any failure becomes one redacted ``error:`` line and exit code 2."""
    try:
        return int(main(argv) or 0)
    except StepError as exc:
        message = str(exc)
    except KeyboardInterrupt:
        message = "interrupted"
    except Exception as exc:  # last resort: still one line, but keep the trace for debugging
        if os.environ.get("CROWDBOXES_TRACEBACK"):
            traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
    print(f"error: {redact(message).splitlines()[0] if message else 'failed'}", file=sys.stderr, flush=True)
    return EXIT_STEP_ERROR
