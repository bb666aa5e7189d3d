"""Connecting to Toloka: production, sandbox, or any URL speaking its API (the local Toloka).

Switching between them is configuration (``--toloka_env``), never code.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlparse

from crowdboxes.errors import CrowdboxesError

from crowdboxes.credentials import read_token

NAMED_ENVIRONMENTS = {"production": "PRODUCTION", "sandbox": "SANDBOX"}


def connect(toloka_env: str, token_env: str, *, retries: int = 5, timeout: float = 30.0):
    """A ``TolokaClient`` for ``toloka_env`` with the token read from env var ``token_env``.

    The token is passed to the client and nowhere else; a rejected token fails with one line that
    names the variable, not its value.
    """
    from toloka.client import TolokaClient  # heavy import, only when a step needs Toloka
    from toloka.client.exceptions import AuthenticationApiError

    token = read_token(token_env)
    if toloka_env in NAMED_ENVIRONMENTS:
        client = TolokaClient(token, NAMED_ENVIRONMENTS[toloka_env], retries=retries, timeout=timeout)
    else:
        parsed = urlparse(toloka_env)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise CrowdboxesError(f"--toloka_env {toloka_env!r}: expected production, sandbox or an http(s) URL")
        client = TolokaClient(token, url=toloka_env.rstrip("/"), retries=retries, timeout=timeout)
    try:
        client.get_requester()
    except AuthenticationApiError:
        raise CrowdboxesError(f"Toloka ({toloka_env}) rejected the token in environment variable {token_env!r}") from None
    except Exception as exc:  # network errors carry no secrets, but keep the line short
        raise CrowdboxesError(f"cannot reach Toloka at {toloka_env}: {type(exc).__name__}: {exc}") from None
    return client


def plain_json(value):
    """A JSON-able copy of a toloka-kit value: it parses numbers in responses as Decimal."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
