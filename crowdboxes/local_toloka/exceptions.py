"""Toloka API errors: a ``code`` picks toloka-kit's exception class, the HTTP status only its retrying.

Body shape (toloka-api.md 3.1): ``{"request_id", "code", "message", "payload"}``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any


class TolokaError(Exception):
    """An API error the backend raises; :func:`error_body` turns it into the JSON Toloka sends."""

    status = 400
    code = "VALIDATION_ERROR"
    message = "Validation error"

    def __init__(self, message: str | None = None, payload: Any = None, *, code: str | None = None,
                 status: int | None = None) -> None:
        self.message = message or self.message
        self.payload = payload
        if code:
            self.code = code
        if status:
            self.status = status
        super().__init__(f"{self.code}: {self.message}")

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.payload)


def error_body(code: str, message: str, payload: Any = None) -> dict[str, Any]:
    return {"request_id": str(uuid.uuid4()), "code": code, "message": message, "payload": payload}


def error_json(code: str, message: str, payload: Any = None) -> bytes:
    return json.dumps(error_body(code, message, payload)).encode()


def field_error(code: str, message: str, params: list[Any] | None = None) -> dict[str, Any]:
    """One entry of a per-field validation map: ``{"code", "message"[, "params"]}``."""
    entry: dict[str, Any] = {"code": code, "message": message}
    if params is not None:
        entry["params"] = params
    return entry


class ValidationError(TolokaError):
    """400 VALIDATION_ERROR; ``payload`` maps a field path to ``field_error(...)``."""

    status = 400
    code = "VALIDATION_ERROR"
    message = "Validation failed"

    @classmethod
    def field(cls, path: str, code: str, message: str, params: list[Any] | None = None) -> ValidationError:
        return cls(f"Validation failed: {path}: {message}", {path: field_error(code, message, params)})


class DoesNotExist(TolokaError):
    status = 404
    code = "DOES_NOT_EXIST"
    message = "Object does not exist"


class AuthenticationError(TolokaError):
    status = 401
    code = "AUTHENTICATION_ERROR"
    message = "Authentication failed: missing or wrong Authorization header"


class AccessDenied(TolokaError):
    status = 403
    code = "ACCESS_DENIED"
    message = "Access denied"


class IncorrectAction(TolokaError):
    """409 with one of Toloka's InternalErrorCodes (toloka-kit raises IncorrectActionsApiError)."""

    status = 409
    code = "INAPPROPRIATE_STATUS"
    message = "This or related resource is in inappropriate status, operation is not allowed"


def inappropriate_status(appropriate: list[str], code: str = "INAPPROPRIATE_STATUS") -> IncorrectAction:
    return IncorrectAction(
        "This or related resource is in inappropriate status, operation is not allowed",
        {"appropriate_statuses": appropriate}, code=code)


class EmptyConflict(IncorrectAction):
    """A 409 that Toloka sends with an empty body (``PATCH /pools/{id}`` on an archived pool, OpenAPI
    ``patchPool``); the handler answers ``(409, None)``, so toloka-kit meets it as an HTTP error, not an API one."""

    code = "POOL_INAPPROPRIATE_STATUS"


class TooManyRequests(TolokaError):
    # No payload.interval on purpose: toloka-kit 1.2.3 crashes on interval=MIN (toloka-api.md 3.2).
    status = 429
    code = "TOO_MANY_REQUESTS"
    message = "Too many requests"


class InternalError(TolokaError):
    status = 500
    code = "INTERNAL_ERROR"
    message = "Internal error"


class ServiceUnavailable(TolokaError):
    status = 503
    code = "REMOTE_SERVICE_UNAVAILABLE"
    message = "Remote service unavailable"


class MethodNotAllowed(TolokaError):
    status = 405
    code = "METHOD_NOT_ALLOWED"
    message = "Method not allowed"


class NotImplementedOperation(TolokaError):
    """501 for a Toloka operation the local Toloka does not emulate (``urls.unserved_operations``)."""

    status = 501
    code = "NOT_IMPLEMENTED"
    message = "Operation is not implemented by the local Toloka"

    @classmethod
    def operation(cls, operation_id: str, method: str, path: str) -> "NotImplementedOperation":
        return cls(f"Operation {operation_id!r} ({method} {path}) is not implemented by the local Toloka",
                   {"operation": operation_id, "method": method, "path": path})
