"""The Toloka token and the other secrets of the environment: read once, never shown.

A param such as ``--token_env`` names the environment variable that holds a secret; users sometimes paste
the secret itself there. So a value given as a variable name is quoted in a message only when it looks like
one (:func:`is_variable_name`), and the flow runner masks both the named variable's value and a value that
is not a name (:func:`names_a_secret`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from crowdboxes.errors import CrowdboxesError

DEFAULT_TOKEN_ENV = "toloka_token"
_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# params whose value is the NAME of a variable holding a secret (token_env; an s3_secret_env would be one too)
_SECRET_NAME_PARAM_RE = re.compile(r"(^|_)(token|secret|password|key)_env$")
# variable names whose values are secrets, besides the fixed list below
_SECRET_VARIABLE_RE = re.compile(r"token|secret|password|passwd|credential|api_?key|access_key|private_key",
                                 re.IGNORECASE)


def is_variable_name(text: str) -> bool:
    """True when ``text`` reads as an environment variable's name, not as a pasted secret: ``[A-Za-z_]``
    then letters, digits or ``_`` (at most 64), all in one case (``toloka_token``, ``MY_TOLOKA``). Tokens
    mix cases, or begin with a digit, or hold ``-``: they are never quoted as names."""
    return bool(_VARIABLE_RE.match(text)) and (text == text.lower() or text == text.upper())


def shown_variable(text: str) -> str:
    """``text`` quoted for a message when :func:`is_variable_name`, else a phrase that does not show it."""
    return repr(text) if is_variable_name(text) else "(a value that does not read as a variable name; not shown)"


def names_a_secret(param_key: str) -> bool:
    """True for a param whose value names the variable that holds a secret (``token_env``)."""
    return bool(_SECRET_NAME_PARAM_RE.search(param_key))


def read_token(token_env: str = DEFAULT_TOKEN_ENV) -> str:
    """The Toloka token from the environment variable named ``token_env`` (a cnvrg secret).

    A ``token_env`` that cannot be a variable name (e.g. the token pasted in its place) is refused, and one
    that is not set is quoted only when it reads as a name (:func:`shown_variable`)."""
    if not _VARIABLE_RE.match(token_env):
        raise CrowdboxesError(f"--token_env {shown_variable(token_env)}: give the NAME of the environment variable "
                              f"that holds the Toloka token (e.g. {DEFAULT_TOKEN_ENV}), never the token itself")
    token = os.environ.get(token_env, "").strip()
    if not token:
        shown = shown_variable(token_env)
        raise CrowdboxesError(f"environment variable {shown} with the Toloka token is not set "
                              f"(on cnvrg: add a project secret with that name)")
    return token


def _secrets_to_mask() -> list[str]:
    names = {DEFAULT_TOKEN_ENV, "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "CNVRG_TOKEN"}
    names.update(n for n in os.environ if _SECRET_VARIABLE_RE.search(n))
    return sorted({v for n in names if len(v := os.environ.get(n, "")) >= 4}, key=len, reverse=True)


def param_secrets(argv: list[str], env: Mapping[str, str] | None = None) -> list[str]:
    """Secrets a command line points at (``--token_env NAME``, ``--token_env=NAME`` and the like,
    :func:`names_a_secret`): the value of the variable it names in ``env`` (default: this process's
    environment), whatever that name, or the value itself when it is not a name (a token pasted in its place).
    A separate word that begins with ``-`` is the next option, not the value (argparse reads it so too)."""
    env = os.environ if env is None else env
    found: list[str] = []
    for at, word in enumerate(argv):
        flag, joined, value = word.partition("=")
        if not (flag.startswith("--") and names_a_secret(flag[2:])):
            continue
        if not joined:
            value = argv[at + 1] if at + 1 < len(argv) else ""
        if not value or (not joined and value.startswith("-")):
            continue
        held = env.get(value, "") if _VARIABLE_RE.match(value) else ""
        if held:
            found.append(held)
        elif not is_variable_name(value):
            found.append(value)
    return found


def redact(text: str, extra: list[str] | None = None) -> str:
    """``text`` with every secret value from the environment (and ``extra``) replaced by ``***``."""
    for secret in sorted({*_secrets_to_mask(), *(v for v in extra or [] if len(v) >= 4)}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
