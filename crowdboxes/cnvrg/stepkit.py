"""What every flow step shares: one-line failures, atomic outputs, cnvrg paths and the token.

A step's ``main`` raises :class:`~crowdboxes.errors.CrowdboxesError` (``StepError`` here) (or lets a known error escape) and :func:`run_step`
turns it into exactly one ``error: ...`` line on stderr and exit code 2, with the Toloka token
masked if it ever reached the message.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn
from pathlib import Path

from crowdboxes.errors import CrowdboxesError

DEFAULT_TOKEN_ENV = "toloka_token"
EXIT_STEP_ERROR = 2


StepError = CrowdboxesError  # the CLI's name for the library's one error type


def output_dir(path: str | None = None) -> Path:
    """The step's output folder: ``--output_dir``, else cnvrg's ``$CNVRG_OUTPUT_DIR``, else ``./output``."""
    chosen = Path(path or os.environ.get("CNVRG_OUTPUT_DIR") or "output")
    try:
        chosen.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CrowdboxesError(f"cannot create output folder {chosen}: {exc.strerror}") from None
    if not os.access(chosen, os.W_OK):
        raise CrowdboxesError(f"output folder {chosen} is not writable")
    return chosen


def is_none(value: object) -> bool:
    """cnvrg params are strings and cannot be empty: the words none/null (or nothing) mean "unset"."""
    return value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"})


def none_or_value(value: str | None) -> str | None:
    """argparse ``type=`` for optional params: None for an unset word, else the value unchanged."""
    return None if is_none(value) else value


def none_or(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse ``type=``: None for the words none/null/empty (:func:`is_none`),
    else ``convert(value)``; named like ``convert`` so argparse's message reads e.g. "invalid float value"."""
    def parse(value: str) -> Any:
        return None if is_none(value) else convert(value)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def parse_bool(name: str, value: object) -> bool:
    """``true/1/yes`` or ``false/0/no`` (any case), else CrowdboxesError naming the param."""
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise CrowdboxesError(f"--{name} {value!r}: use true or false")


def parse_number(name: str, value: object, *, minimum: float | None = None, maximum: float | None = None,
                 integer: bool = False) -> float | int:
    """A finite number within bounds, or CrowdboxesError naming the param and the value."""
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise CrowdboxesError(f"--{name} {value!r} is not a {'whole ' if integer else ''}number") from None
    if not math.isfinite(number) or (integer and number != int(number)):
        raise CrowdboxesError(f"--{name} {value!r} is not a {'whole ' if integer else ''}number")
    if minimum is not None and number < minimum:
        raise CrowdboxesError(f"--{name} {value!r} must be at least {minimum:g}")
    if maximum is not None and number > maximum:
        raise CrowdboxesError(f"--{name} {value!r} must be at most {maximum:g}")
    return int(number) if integer else number


def read_token(token_env: str = DEFAULT_TOKEN_ENV) -> str:
    """The Toloka token from the environment variable named ``token_env`` (a cnvrg secret)."""
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise CrowdboxesError(f"environment variable {token_env!r} with the Toloka token is not set "
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


class StepArgumentParser(argparse.ArgumentParser):
    """argparse that fails with one line (cnvrg passes every param as ``--key value`` strings)."""

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse API
        raise CrowdboxesError(f"{self.prog}: {message}")


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
    except CrowdboxesError as exc:
        message = str(exc)
    except KeyboardInterrupt:
        message = "interrupted"
    except Exception as exc:  # last resort: still one line, but keep the trace for debugging
        if os.environ.get("CROWDBOXES_TRACEBACK"):
            traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
    print(f"error: {redact(message).splitlines()[0] if message else 'failed'}", file=sys.stderr, flush=True)
    return EXIT_STEP_ERROR
