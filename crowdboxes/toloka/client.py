"""Connecting to Toloka: production, sandbox, or any URL speaking its API (the local Toloka).

Switching between them is configuration (``--toloka_env``), never code.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

from crowdboxes.errors import CrowdboxesError

from crowdboxes.credentials import read_token

NAMED_ENVIRONMENTS = {"production": "PRODUCTION", "sandbox": "SANDBOX"}
# urllib3's backoff factor between tries of one request: it waits 0, f*2, f*4, f*8, ... s after the 1st, 2nd,
# 3rd, 4th failure in a row. toloka-kit's default f = 2 waits 4 s after the second 5xx in a row, 8 s after
# the third: at 30 % 5xx that is ~0.6 s per call on average, which made the verify loop (hundreds of small
# calls) ~5x slower than clean on the local Toloka. f = 0.5 waits 1, 2, 4, 8 s (15 s over 5 retries),
# long enough to ride a short outage; 429s still wait what Toloka's Retry-After / quota says.
RETRY_BACKOFF_FACTOR = 0.5
# Objects per listing request (tasks, assignments). Toloka allows up to 100,000 and answers 50 when asked
# for no limit, toloka-kit's default: 300,000 assignments were 6,000 requests at 50 and are 30 at 10,000,
# while a page of 10,000 assignments (about 10 MB of JSON) stays small next to the step's memory.
LIST_PAGE = 10_000


def retryer(retries: int) -> Any:
    """A fresh toloka-kit retry policy: toloka-kit's own (statuses, methods, minute quotas) with
    :data:`RETRY_BACKOFF_FACTOR`."""
    from toloka.client.primitives.retry import STATUSES_TO_RETRY, TolokaRetry

    statuses = list(STATUSES_TO_RETRY)  # type: ignore[call-overload]  # a set in toloka-kit; its stub says ...
    return TolokaRetry(retry_quotas=TolokaRetry.Unit.MIN, total=retries,  # type: ignore[attr-defined]  # no stub
                       status_forcelist=statuses,
                       allowed_methods=["HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "POST", "PATCH"],
                       backoff_factor=RETRY_BACKOFF_FACTOR)


def connect(toloka_env: str, token_env: str, *, retries: int = 5, timeout: float = 30.0):
    """A ``TolokaClient`` for ``toloka_env`` with the token read from env var ``token_env``.

    The token is passed to the client and nowhere else; a rejected token fails with one line that
    names the variable, not its value.
    """
    from toloka.client import TolokaClient  # heavy import, only when a step needs Toloka
    from toloka.client.exceptions import AuthenticationApiError

    token = read_token(token_env)
    if toloka_env in NAMED_ENVIRONMENTS:
        client = TolokaClient(token, NAMED_ENVIRONMENTS[toloka_env], timeout=timeout, retry_quotas=None,
                              retryer_factory=functools.partial(retryer, retries))
    else:
        parsed = urlparse(toloka_env)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise CrowdboxesError(f"--toloka_env {toloka_env!r}: expected production, sandbox or an http(s) URL")
        client = TolokaClient(token, url=toloka_env.rstrip("/"), timeout=timeout, retry_quotas=None,
                              retryer_factory=functools.partial(retryer, retries))
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


def toloka_refusal(exc: Exception) -> str:
    """``Toloka refused (CODE: first line of its message)`` for a toloka-kit ApiError."""
    code = getattr(exc, "code", None) or type(exc).__name__
    message = str(getattr(exc, "message", "") or "").strip().splitlines()
    return f"Toloka refused ({code}{': ' + message[0] if message else ''})"
