"""HTTP -> backend: each handler reads the request, calls :class:`models.Backend`, returns ``(status, body)``.

``body`` is a dict/list (sent as JSON), a str (sent as text, the TSV) or None (empty body, e.g. the
204 "pool already in that state" answer of open/close/archive).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request

from crowdboxes.local_toloka.exceptions import EmptyConflict, ValidationError


if TYPE_CHECKING:  # server.py imports this module
    from crowdboxes.local_toloka.server import LocalToloka

Reply = tuple[int, Any]
"""A handler's ``(HTTP status, body)``; the body as described above (or a werkzeug Response: a file)."""


def _params(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.args.items()}


def _json(request: Request, *, required: bool = True) -> Any:
    """The parsed JSON body; a body that is not JSON is a 400 VALIDATION_ERROR, never a 500."""
    data = request.get_data(cache=True)
    if not data.strip():
        if required:
            raise ValidationError.field("body", "NOT_NULL_BODY", "Request body is required")
        return None
    try:
        return json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError.field("body", "JSON_EXPECTED", f"Malformed JSON: {exc}") from None


def _op(result: dict[str, Any] | None) -> Reply:
    """Pool actions: a finished operation (202), or 204 when the pool already was in that state."""
    return (204, None) if result is None else (202, result)


# ---- requester, projects, skills ------------------------------------------------------------------

def get_requester(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.get_requester()


def find_projects(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_projects(_params(request))


def create_project(ctx: LocalToloka, request: Request) -> Reply:
    return 201, ctx.backend.create_project(_json(request))


def get_project(ctx: LocalToloka, request: Request, project_id: str) -> Reply:
    return 200, ctx.backend.get_project(project_id)


def update_project(ctx: LocalToloka, request: Request, project_id: str) -> Reply:
    return 200, ctx.backend.update_project(project_id, _json(request))


def check_project_update(ctx: LocalToloka, request: Request, project_id: str) -> Reply:
    return 200, ctx.backend.check_project_update(project_id, _json(request))


def archive_project(ctx: LocalToloka, request: Request, project_id: str) -> Reply:
    return 202, ctx.backend.archive_project(project_id)


def find_skills(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_skills(_params(request))


def create_skill(ctx: LocalToloka, request: Request) -> Reply:
    return 201, ctx.backend.create_skill(_json(request))


def get_skill(ctx: LocalToloka, request: Request, skill_id: str) -> Reply:
    return 200, ctx.backend.get_skill(skill_id)


def update_skill(ctx: LocalToloka, request: Request, skill_id: str) -> Reply:
    return 200, ctx.backend.update_skill(skill_id, _json(request))


# ---- pools ----------------------------------------------------------------------------------------

def find_pools(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_pools(_params(request))


def create_pool(ctx: LocalToloka, request: Request) -> Reply:
    return 201, ctx.backend.create_pool(_json(request))


def get_pool(ctx: LocalToloka, request: Request, pool_id: str) -> Reply:
    return 200, ctx.backend.get_pool(pool_id)


def update_pool(ctx: LocalToloka, request: Request, pool_id: str) -> Reply:
    return 200, ctx.backend.update_pool(pool_id, _json(request))


def patch_pool(ctx: LocalToloka, request: Request, pool_id: str) -> Reply:
    try:
        return 200, ctx.backend.patch_pool(pool_id, _json(request))
    except EmptyConflict:  # Toloka's answer for an archived pool: 409 with no body (OpenAPI patchPool)
        return 409, None


def open_pool(ctx: LocalToloka, request: Request, pool_id: str) -> Reply:
    return _op(ctx.backend.open_pool(pool_id))


def close_pool(ctx: LocalToloka, request: Request, pool_id: str) -> Reply:
    return _op(ctx.backend.close_pool(pool_id))


def close_pool_for_update(ctx: LocalToloka, request: Request, pool_id: str) -> Reply:
    return _op(ctx.backend.close_pool(pool_id, reason="FOR_UPDATE"))


def clone_pool(ctx: LocalToloka, request: Request, pool_id: str) -> Reply:
    return 202, ctx.backend.clone_pool(pool_id)


def archive_pool(ctx: LocalToloka, request: Request, pool_id: str) -> Reply:
    return _op(ctx.backend.archive_pool(pool_id))


# ---- tasks, operations --------------------------------------------------------------------------------

def find_tasks(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_tasks(_params(request))


def create_tasks(ctx: LocalToloka, request: Request) -> Reply:
    # toloka-kit sends no body at all for create_tasks([]) (toloka-api.md 1.1)
    return ctx.backend.create_tasks(_json(request, required=False), _params(request))


def get_task(ctx: LocalToloka, request: Request, task_id: str) -> Reply:
    return 200, ctx.backend.get_task(task_id)


def patch_task(ctx: LocalToloka, request: Request, task_id: str) -> Reply:
    return 200, ctx.backend.patch_task(task_id, _json(request))


def patch_task_overlap_or_min(ctx: LocalToloka, request: Request, task_id: str) -> Reply:
    return 200, ctx.backend.patch_task(task_id, _json(request), overlap_or_min=True)


def find_operations(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_operations(_params(request))


def get_operation(ctx: LocalToloka, request: Request, operation_id: str) -> Reply:
    return 200, ctx.backend.get_operation(operation_id)


def get_operation_log(ctx: LocalToloka, request: Request, operation_id: str) -> Reply:
    return 200, ctx.backend.get_operation_log(operation_id)


# ---- assignments ----------------------------------------------------------------------------------------

def find_assignments(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_assignments(_params(request))


def get_assignment(ctx: LocalToloka, request: Request, assignment_id: str) -> Reply:
    return 200, ctx.backend.get_assignment(assignment_id)


def patch_assignment(ctx: LocalToloka, request: Request, assignment_id: str) -> Reply:
    return 200, ctx.backend.patch_assignment(assignment_id, _json(request))


def assignments_tsv(ctx: LocalToloka, request: Request, pool_id: str) -> Reply:
    return 200, ctx.backend.assignments_tsv(pool_id, _params(request))


# ---- trainings, task suites, attachments ------------------------------------------------------------------

def find_trainings(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_trainings(_params(request))


def create_training(ctx: LocalToloka, request: Request) -> Reply:
    return 201, ctx.backend.create_training(_json(request))


def get_training(ctx: LocalToloka, request: Request, training_id: str) -> Reply:
    return 200, ctx.backend.get_training(training_id)


def update_training(ctx: LocalToloka, request: Request, training_id: str) -> Reply:
    return 200, ctx.backend.update_training(training_id, _json(request))


def open_training(ctx: LocalToloka, request: Request, training_id: str) -> Reply:
    return _op(ctx.backend.open_training(training_id))


def close_training(ctx: LocalToloka, request: Request, training_id: str) -> Reply:
    return _op(ctx.backend.close_training(training_id))


def close_training_for_update(ctx: LocalToloka, request: Request, training_id: str) -> Reply:
    return _op(ctx.backend.close_training(training_id, reason="FOR_UPDATE"))


def archive_training(ctx: LocalToloka, request: Request, training_id: str) -> Reply:
    return _op(ctx.backend.archive_training(training_id))


def clone_training(ctx: LocalToloka, request: Request, training_id: str) -> Reply:
    return 202, ctx.backend.clone_training(training_id)


def find_task_suites(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_task_suites(_params(request))


def create_task_suites(ctx: LocalToloka, request: Request) -> Reply:
    return ctx.backend.create_task_suites(_json(request, required=False), _params(request))


def get_task_suite(ctx: LocalToloka, request: Request, task_suite_id: str) -> Reply:
    return 200, ctx.backend.get_task_suite(task_suite_id)


def patch_task_suite(ctx: LocalToloka, request: Request, task_suite_id: str) -> Reply:
    return 200, ctx.backend.patch_task_suite(task_suite_id, _json(request), _params(request))


def patch_task_suite_overlap_or_min(ctx: LocalToloka, request: Request, task_suite_id: str) -> Reply:
    return 200, ctx.backend.patch_task_suite_overlap_or_min(task_suite_id, _json(request))


def find_attachments(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_attachments(_params(request))


def get_attachment(ctx: LocalToloka, request: Request, attachment_id: str) -> Reply:
    return 200, ctx.backend.get_attachment(attachment_id)


def download_attachment(ctx: LocalToloka, request: Request, attachment_id: str) -> Reply:
    """The file's bytes (a werkzeug Response: the server sends it as it is)."""
    from werkzeug.wrappers import Response

    data, media_type, name = ctx.backend.download_attachment(attachment_id)
    return 200, Response(data, status=200, content_type=media_type,
                         headers={"Content-Disposition": f'attachment; filename="{name}"'})


# ---- user skills, restrictions, analytics ----------------------------------------------------------------

def find_user_skills(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_user_skills(_params(request))


def set_user_skill(ctx: LocalToloka, request: Request) -> Reply:
    return 201, ctx.backend.set_user_skill(_json(request))


def get_user_skill(ctx: LocalToloka, request: Request, user_skill_id: str) -> Reply:
    return 200, ctx.backend.get_user_skill(user_skill_id)


def delete_user_skill(ctx: LocalToloka, request: Request, user_skill_id: str) -> Reply:
    ctx.backend.delete_user_skill(user_skill_id)
    return 204, None


def find_user_restrictions(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.backend.find_user_restrictions(_params(request))


def set_user_restriction(ctx: LocalToloka, request: Request) -> Reply:
    return 201, ctx.backend.set_user_restriction(_json(request))


def get_user_restriction(ctx: LocalToloka, request: Request, restriction_id: str) -> Reply:
    return 200, ctx.backend.get_user_restriction(restriction_id)


def delete_user_restriction(ctx: LocalToloka, request: Request, restriction_id: str) -> Reply:
    ctx.backend.delete_user_restriction(restriction_id)
    return 204, None


def analytics(ctx: LocalToloka, request: Request) -> Reply:
    return 202, ctx.backend.analytics(_json(request))


# ---- /_local admin ----------------------------------------------------------------------------------------

def local_stats(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.stats_snapshot()


def local_stats_reset(ctx: LocalToloka, request: Request) -> Reply:
    ctx.reset_stats()
    return 200, ctx.stats_snapshot()


def _crowd_state(ctx: LocalToloka) -> dict[str, Any]:
    sched = ctx.scheduler
    return {"speed": ctx.backend.speed, "paused": bool(sched and sched.paused),
            "workers": [] if sched is None else [
                {"worker_id": p.worker_id, "kind": getattr(p, "kind", None), **sched.attrs[p.worker_id]}
                for p in sched.profiles],
            "scheduler_errors": 0 if sched is None else sched.errors,
            "last_error": None if sched is None else sched.last_error}


def local_crowd(ctx: LocalToloka, request: Request) -> Reply:
    return 200, _crowd_state(ctx)


def local_set_crowd(ctx: LocalToloka, request: Request) -> Reply:
    """``{"speed": simulated seconds per real second, "paused": bool}`` (both optional)."""
    body = _json(request)
    if not isinstance(body, dict):
        raise ValidationError.field("body", "OBJECT_EXPECTED", "A JSON object is expected")
    if "speed" in body:
        speed = body["speed"]
        if isinstance(speed, bool) or not isinstance(speed, (int, float, Decimal)) or speed <= 0:
            raise ValidationError.field("speed", "VALUE_LESS_THAN_MIN", "speed must be a positive number")
        ctx.backend.speed = float(speed)
    if "paused" in body:
        if ctx.scheduler is not None:
            ctx.scheduler.paused = bool(body["paused"])
    ctx.backend.changed.set()
    return 200, _crowd_state(ctx)


def local_set_balance(ctx: LocalToloka, request: Request) -> Reply:
    body = _json(request)
    if not isinstance(body, dict) or "balance" not in body:
        raise ValidationError.field("balance", "VALUE_REQUIRED", "balance is required")
    try:
        value = Decimal(str(body["balance"]))
    except Exception:
        raise ValidationError.field("balance", "FLOAT_EXPECTED", "A number is expected") from None
    return 200, ctx.backend.set_balance(value)


def local_earnings(ctx: LocalToloka, request: Request) -> Reply:
    """Workers' earnings from reviewed assignments and the requester's balance and charges (``Backend.earnings``)."""
    return 200, ctx.backend.earnings()


def local_readers(ctx: LocalToloka, request: Request) -> Reply:
    """Live streaming readers (``?pool_id=`` optional) and the hold cap: what keeps completed pools open."""
    pool_id = request.args.get("pool_id")
    if pool_id not in (None, "") and not str(pool_id).isdigit():
        raise ValidationError.field("pool_id", "INTEGER_EXPECTED", f"Invalid value {pool_id!r}")
    readers = ctx.backend.streaming_readers(pool_id or None)
    return 200, {"reader_hold_seconds": ctx.backend.reader_hold_seconds,
                 "first_reader_seconds": ctx.backend.first_reader_seconds,
                 "readers": [{**r, "position": r["position"].isoformat(), "seen": r["seen"].isoformat()}
                             for r in readers]}


def local_faults(ctx: LocalToloka, request: Request) -> Reply:
    return 200, ctx.faults.as_dict()


def local_set_faults(ctx: LocalToloka, request: Request) -> Reply:
    """``{"error_rate": 0..1, "rate_limit": requests/s (0 = off), "latency_ms": n, "max_streak": n,
    "lost_reply_rate": 0..1}``, any subset (:class:`~crowdboxes.local_toloka.server.Faults`)."""
    body = _json(request)
    if not isinstance(body, dict):
        raise ValidationError.field("body", "OBJECT_EXPECTED", "A JSON object is expected")
    ctx.faults.update(**body)
    return 200, ctx.faults.as_dict()
