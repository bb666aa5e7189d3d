"""Connecting to Toloka: production, sandbox, or any URL speaking its API (the local Toloka).

Switching between them is configuration (``--toloka_env``), never code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

from crowdboxes.errors import CrowdboxesError

from crowdboxes.credentials import read_token

NAMED_ENVIRONMENTS = {"production": "PRODUCTION", "sandbox": "SANDBOX"}
# urllib3's backoff between tries of one request: no wait after a first failure, then f*2, f*4, f*8, ... s
# after the 2nd, 3rd, 4th failure in a row, at most RETRY_BACKOFF_MAX. Waiting does not help against scattered
# 5xx, only against an outage, so the first waits are short and the later ones long: f = 0.1 with 10 retries
# waits 0, 0.2, 0.4, ... 12.8, 15, 15 s (55 s in all, about what toloka-kit's own 5 retries at f = 2 ride out),
# and rides a streak of 8 failures. Measured on the local Toloka (benchmarks/bench_reliability.py, faults):
# toloka-kit's f = 2 made a verify-mode flow ~5x slower under 30 % 5xx than clean, f = 0.5 with 5 retries 2.4x
# (and failed a step on a streak of 8). 429s still wait what Toloka's Retry-After / quota says.
RETRY_BACKOFF_FACTOR = 0.1
RETRY_BACKOFF_MAX = 15.0
RETRIES = 10
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
                       backoff_factor=RETRY_BACKOFF_FACTOR, backoff_max=RETRY_BACKOFF_MAX)


def connect(toloka_env: str, token_env: str, *, retries: int = RETRIES, timeout: float = 30.0):
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


def keep_found(made: Any, found: Sequence[Any], *, archive: Callable[[str], Any] | None, what: str,
               log: Callable[[str], Any]) -> Any:
    """The object to use after ``made = create(...)``: the first of ``found``, every object a look-up by the
    job's key finds now, best first (lowest id), so that every run and re-run settles on one object.

    More than one is found when a rival run created the same at the same time, or when a create's reply was
    lost after Toloka made it and the client's retry made another (a streak of lost replies makes several,
    and only the last is returned as ``made``). Every object but the one used is then archived while it is
    still empty (``archive``: nobody uses any but the first), or left unused where Toloka has no archive (a
    skill)."""
    if not found:
        return made
    keep = found[0]
    extras = [str(o.id) for o in found[1:]]
    if str(made.id) != str(keep.id) and str(made.id) not in extras:
        extras.append(str(made.id))  # not listed yet: archive it all the same
    if not extras:
        return keep
    fates = []
    for extra in extras:
        if archive is None:
            fates.append(f"{extra}: left unused")
            continue
        try:
            archive(extra)
            fates.append(f"{extra}: archived")
        except Exception as exc:  # noqa: BLE001 - an empty extra object costs nothing; the next look-up skips it
            fates.append(f"{extra}: could not archive it ({toloka_refusal(exc)})")
    log(f"{what}: {keep.id} already existed (a lost reply's retry or a rival run made more); using {keep.id}; "
        f"{'; '.join(fates)}")
    return keep
