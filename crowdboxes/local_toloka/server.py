"""The WSGI app and threaded HTTP server of the local Toloka.

Middleware order for ``/api/...``: auth (``Authorization: OAuth <token>`` or ``ApiKey <token>``,
else 401 AUTHENTICATION_ERROR), then fault injection (rate limit -> 429 TOO_MANY_REQUESTS without
``Retry-After`` and without ``payload.interval``; a share of 500/503; added latency), then the
handler. Those faults are injected *before* the handler runs, so a failed request changed nothing and a
client retry is safe. One fault comes *after* it: ``lost_reply_rate``, a share of writes (POST, PUT, PATCH,
DELETE) that take effect and still answer 503, as when a reply is lost on the way back; the client's retry
then repeats a write that was made. ``/_local/...`` admin endpoints need the token but never get faults.
Per-endpoint request counters: ``GET /_local/stats``.
"""

from __future__ import annotations

import collections
import hmac
import json
import logging
import random
import threading
import time
import traceback
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import MethodNotAllowed as WzMethodNotAllowed
from werkzeug.exceptions import NotFound
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from crowdboxes.local_toloka import responses
from crowdboxes.local_toloka.exceptions import (AuthenticationError, DoesNotExist, InternalError, MethodNotAllowed,
                                                NotImplementedOperation, ServiceUnavailable, TolokaError,
                                                TooManyRequests)
from crowdboxes.local_toloka.models import RawJSON
from crowdboxes.local_toloka.urls import NOT_IMPLEMENTED, URL_MAP


if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from crowdboxes.local_toloka.models import Backend
    from crowdboxes.local_toloka.scheduler import Scheduler

log = logging.getLogger("crowdboxes.local_toloka")


class Faults:
    """Injected failures: ``error_rate`` share of 500/503, ``rate_limit`` requests/s, ``latency_ms``, and
    ``lost_reply_rate``: a share of writes made and then answered 503.

    At most ``max_streak`` 500/503 in a row (default 3): toloka-kit retries 3 times, so with the
    default a single client always gets through, and a test of "retries absorb faults" cannot flake.
    """

    SETTINGS = ("error_rate", "rate_limit", "latency_ms", "max_streak", "lost_reply_rate")
    _SHARES = ("error_rate", "lost_reply_rate")

    def __init__(self, error_rate: float = 0.0, rate_limit: float = 0.0, latency_ms: float = 0.0, seed: int = 0,
                 max_streak: float = 3, lost_reply_rate: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.error_rate = self.rate_limit = self.latency_ms = self.lost_reply_rate = 0.0
        self.max_streak = 3.0
        self._streak = 0
        self._window: collections.deque[float] = collections.deque()
        self.update(error_rate=error_rate, rate_limit=rate_limit, latency_ms=latency_ms, max_streak=max_streak,
                    lost_reply_rate=lost_reply_rate)

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            if key not in self.SETTINGS:
                raise TolokaError(f"Unknown fault setting {key!r}", {key: {"code": "VALUE_NOT_ALLOWED"}})
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise TolokaError(f"{key} must be a number", {key: {"code": "FLOAT_EXPECTED"}}) from None
            if number < 0 or (key in self._SHARES and number > 1):
                raise TolokaError(f"{key} out of range", {key: {"code": "VALUE_OUT_OF_BOUNDS"}})
            setattr(self, key, number)

    def as_dict(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in self.SETTINGS}

    def check(self, write: bool = False) -> bool:
        """Raise the injected error for this request, if any (after the injected latency); for a ``write``,
        True when its reply is to be lost after it is made (``lost_reply_rate``). Both count in one streak
        of at most ``max_streak``, so a retried request gets through in the end."""
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        with self.lock:
            if self.rate_limit:
                now = time.monotonic()
                while self._window and now - self._window[0] > 1.0:
                    self._window.popleft()
                if len(self._window) >= self.rate_limit:
                    raise TooManyRequests("Too many requests: rate limit exceeded", None)
                self._window.append(now)
            if self.error_rate and self._streak < self.max_streak and self.rng.random() < self.error_rate:
                self._streak += 1
                if self.rng.random() < 0.5:
                    raise InternalError("Injected internal error")
                raise ServiceUnavailable("Injected service unavailability")
            if write and self.lost_reply_rate and self._streak < self.max_streak \
                    and self.rng.random() < self.lost_reply_rate:
                self._streak += 1
                return True
            self._streak = 0
            return False


class LocalToloka:
    """WSGI application: ``LocalToloka(backend, token, scheduler=None, faults=None)``."""

    def __init__(self, backend: Backend, token: str, scheduler: Scheduler | None = None,
                 faults: Faults | None = None) -> None:
        if not token:
            raise ValueError("the local Toloka needs a non-empty token")
        self.backend = backend
        self._token = token
        self.scheduler = scheduler
        self.faults = faults or Faults()
        self._stats_lock = threading.Lock()
        self.reset_stats()

    # -- stats
    def reset_stats(self) -> None:
        with self._stats_lock:
            self._requests: collections.Counter[str] = collections.Counter()
            self._statuses: collections.Counter[int] = collections.Counter()
            self._injected: collections.Counter[int] = collections.Counter()
            self._started = time.time()

    def stats_snapshot(self) -> dict[str, Any]:
        with self._stats_lock:
            return {"requests": dict(self._requests), "statuses": {str(k): v for k, v in self._statuses.items()},
                    "injected_faults": {str(k): v for k, v in self._injected.items()},
                    "total": sum(self._requests.values()), "since_seconds": round(time.time() - self._started, 3),
                    "scheduler_errors": getattr(self.scheduler, "errors", 0),
                    "scheduler_last_error": getattr(self.scheduler, "last_error", None)}

    def _count(self, key: str, status: int, injected: bool = False) -> None:
        with self._stats_lock:
            self._requests[key] += 1
            self._statuses[status] += 1
            if injected:
                self._injected[status] += 1

    # -- auth
    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme not in {"OAuth", "ApiKey"} or not value:
            return False
        return hmac.compare_digest(value.strip().encode(), self._token.encode())

    # -- WSGI
    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = URL_MAP.bind_to_environ(request.environ)
        key = f"{request.method} {request.path}"
        injected = False
        try:
            try:
                endpoint, kwargs = adapter.match()
            except NotFound:
                raise DoesNotExist(f"No such resource: {request.path}") from None
            except WzMethodNotAllowed:
                raise MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}") from None
            key = f"{request.method} {endpoint}"
            if not self._authorised(request):
                raise AuthenticationError()
            if endpoint.startswith(NOT_IMPLEMENTED):  # a Toloka operation not emulated: 501 naming it
                raise NotImplementedOperation.operation(endpoint[len(NOT_IMPLEMENTED):], request.method, request.path)
            lose_reply = False
            if not endpoint.startswith("local_"):
                try:
                    lose_reply = self.faults.check(write=request.method in _WRITES)
                except TolokaError:
                    injected = True
                    raise
            status, body = getattr(responses, endpoint)(self, request, **kwargs)
            if lose_reply and status < 400:
                injected = True
                raise ServiceUnavailable("Injected service unavailability (the write was made)")
        except TolokaError as exc:
            status, body = exc.status, exc.body()
        except Exception as exc:  # a bug: still Toloka's error shape, and the trace in the server log
            log.error("unhandled error on %s %s: %s\n%s", request.method, request.path, exc, traceback.format_exc())
            status, body = 500, InternalError(f"Internal error: {type(exc).__name__}").body()
        self._count(key, status, injected)
        if body is None:
            return Response(status=status)
        if isinstance(body, Response):  # a file download: bytes with their own content type
            return body
        if isinstance(body, RawJSON):
            return Response(body, status=status, content_type="application/json")
        if isinstance(body, str):
            return Response(body, status=status, content_type="text/tab-separated-values; charset=utf-8")
        return Response(_ENCODER.encode(body), status=status, content_type="application/json")


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _json_default(value: object) -> int | float:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_ENCODER = json.JSONEncoder(default=_json_default, check_circular=False, separators=(",", ":"))


def serve(app: LocalToloka, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """A threaded werkzeug server (not started); ``server.server_port`` is the bound port."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request log lines
    server = make_server(host, port, app, threaded=True)
    app.backend.base_url = f"http://{host}:{server.server_port}"
    return server
