"""The Toloka token and the other secrets of the environment: read once, never shown."""

from __future__ import annotations

import os

from crowdboxes.errors import CrowdboxesError

DEFAULT_TOKEN_ENV = "toloka_token"


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
