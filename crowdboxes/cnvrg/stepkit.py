"""What every flow step shares: one-line failures, atomic outputs, cnvrg paths and the token.

A step's ``main`` raises :class:`~crowdboxes.errors.CrowdboxesError` (called ``StepError`` here), or lets a
known error escape, and :func:`run_step` turns it into exactly one ``error: ...`` line on stderr and exit
code 2, with the Toloka token masked if it ever reached the message. Param parsers live in
:mod:`crowdboxes.params`, the token in :mod:`crowdboxes.credentials`.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn
from pathlib import Path

from crowdboxes.credentials import DEFAULT_TOKEN_ENV, param_secrets, redact
from crowdboxes.errors import CrowdboxesError

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


class StepArgumentParser(argparse.ArgumentParser):
    """argparse that fails with one line (cnvrg passes every param as ``--key value`` strings)."""

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse API
        raise CrowdboxesError(f"{self.prog}: {message}")


def shown_default(value: object) -> str:
    """A default as a flow param spells it: ``none`` for None, else the value as text."""
    return "none" if value is None else str(value)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help line ends with ``(default: ...)``, unless its help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "(default" in text:
            return text
        # argparse %-formats help strings: a % in a default must reach the screen as itself
        return f"{text} (default: {shown_default(action.default).replace('%', '%%')})"


def step_parser(prog: str, description: str) -> StepArgumentParser:
    """A step's parser with the params every step has (Toloka env, token variable, output folder).

    ``--help`` shows each option's default (:class:`DefaultsHelpFormatter`).
    """
    parser = StepArgumentParser(prog=prog, description=description, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--toloka_env", default="production",
                        help="production, sandbox, or the URL of a Toloka API (e.g. the local Toloka)")
    parser.add_argument("--token_env", default=DEFAULT_TOKEN_ENV,
                        help="name of the environment variable holding the Toloka token")
    parser.add_argument("--output_dir", default=None, help="where outputs go (default: $CNVRG_OUTPUT_DIR or ./output)")
    return parser


def run_step(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a step's ``main``; any failure becomes one redacted ``error:`` line and exit code 2 (redacted also of
    the secrets its ``--token_env``-like params point at, :func:`crowdboxes.credentials.param_secrets`)."""
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
    shown = redact(message, param_secrets(list(sys.argv[1:] if argv is None else argv)))
    print(f"error: {shown.splitlines()[0] if shown else 'failed'}", file=sys.stderr, flush=True)
    return EXIT_STEP_ERROR
