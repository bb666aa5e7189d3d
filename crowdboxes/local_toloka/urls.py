"""Path map of the local Toloka: Toloka API paths (all under ``/api``) and the ``/_local`` admin paths.

To serve an operation: add ``(path, methods, endpoint)`` to :data:`ROUTES` and a handler of that
name in ``responses.py`` (``handler(ctx, request, **path_variables) -> (status, body)``). Every other
Toloka operation (``unsupported.OPERATIONS``, generated from Toloka's OpenAPI file) answers 501
``NOT_IMPLEMENTED`` naming its operationId, so a client never sees an unknown path or a 405 for
an operation toloka-kit knows; a served ``(path, method)`` replaces its 501 rule by itself.
"""

from __future__ import annotations

import re

from werkzeug.routing import Map, Rule

from crowdboxes.local_toloka.unsupported import OPERATIONS

# (path, methods, endpoint name in responses.py)
ROUTES = [
    ("/api/v1/requester", ["GET"], "get_requester"),
    ("/api/v1/projects", ["GET"], "find_projects"),
    ("/api/v1/projects", ["POST"], "create_project"),
    ("/api/v1/projects/<project_id>", ["GET"], "get_project"),
    ("/api/v1/projects/<project_id>", ["PUT"], "update_project"),
    ("/api/v1/projects/<project_id>/archive", ["POST"], "archive_project"),
    ("/api/staging/projects/<project_id>/check", ["POST"], "check_project_update"),
    ("/api/v1/skills", ["GET"], "find_skills"),
    ("/api/v1/skills", ["POST"], "create_skill"),
    ("/api/v1/skills/<skill_id>", ["GET"], "get_skill"),
    ("/api/v1/skills/<skill_id>", ["PUT"], "update_skill"),
    ("/api/v1/pools", ["GET"], "find_pools"),
    ("/api/v1/pools", ["POST"], "create_pool"),
    ("/api/v1/pools/<pool_id>", ["GET"], "get_pool"),
    ("/api/v1/pools/<pool_id>", ["PUT"], "update_pool"),
    ("/api/v1/pools/<pool_id>", ["PATCH"], "patch_pool"),
    ("/api/v1/pools/<pool_id>/open", ["POST"], "open_pool"),
    ("/api/v1/pools/<pool_id>/close", ["POST"], "close_pool"),
    ("/api/v1/pools/<pool_id>/close-for-update", ["POST"], "close_pool_for_update"),
    ("/api/v1/pools/<pool_id>/archive", ["POST"], "archive_pool"),
    ("/api/v1/pools/<pool_id>/clone", ["POST"], "clone_pool"),
    ("/api/v1/tasks", ["GET"], "find_tasks"),
    ("/api/v1/tasks", ["POST"], "create_tasks"),
    ("/api/v1/tasks/<task_id>", ["GET"], "get_task"),
    ("/api/v1/tasks/<task_id>", ["PATCH"], "patch_task"),
    ("/api/v1/tasks/<task_id>/set-overlap-or-min", ["PATCH"], "patch_task_overlap_or_min"),
    ("/api/v1/operations", ["GET"], "find_operations"),
    ("/api/v1/operations/<operation_id>", ["GET"], "get_operation"),
    ("/api/v1/operations/<operation_id>/log", ["GET"], "get_operation_log"),
    ("/api/v1/assignments", ["GET"], "find_assignments"),
    ("/api/v1/assignments/<assignment_id>", ["GET"], "get_assignment"),
    ("/api/v1/assignments/<assignment_id>", ["PATCH"], "patch_assignment"),
    ("/api/v1/user-skills", ["GET"], "find_user_skills"),
    ("/api/v1/user-skills", ["PUT"], "set_user_skill"),
    ("/api/v1/user-skills/<user_skill_id>", ["GET"], "get_user_skill"),
    ("/api/v1/user-skills/<user_skill_id>", ["DELETE"], "delete_user_skill"),
    ("/api/v1/user-restrictions", ["GET"], "find_user_restrictions"),
    ("/api/v1/user-restrictions", ["PUT", "POST"], "set_user_restriction"),
    ("/api/v1/user-restrictions/<restriction_id>", ["GET"], "get_user_restriction"),
    ("/api/v1/user-restrictions/<restriction_id>", ["DELETE"], "delete_user_restriction"),
    ("/api/staging/analytics-2", ["POST"], "analytics"),
    ("/api/new/requester/pools/<pool_id>/assignments.tsv", ["GET"], "assignments_tsv"),
    ("/api/v1/trainings", ["GET"], "find_trainings"),
    ("/api/v1/trainings", ["POST"], "create_training"),
    ("/api/v1/trainings/<training_id>", ["GET"], "get_training"),
    ("/api/v1/trainings/<training_id>", ["PUT"], "update_training"),
    ("/api/v1/trainings/<training_id>/open", ["POST"], "open_training"),
    ("/api/v1/trainings/<training_id>/close", ["POST"], "close_training"),
    ("/api/v1/trainings/<training_id>/close-for-update", ["POST"], "close_training_for_update"),
    ("/api/v1/trainings/<training_id>/archive", ["POST"], "archive_training"),
    ("/api/v1/trainings/<training_id>/clone", ["POST"], "clone_training"),
    ("/api/v1/task-suites", ["GET"], "find_task_suites"),
    ("/api/v1/task-suites", ["POST"], "create_task_suites"),
    ("/api/v1/task-suites/<task_suite_id>", ["GET"], "get_task_suite"),
    ("/api/v1/task-suites/<task_suite_id>", ["PATCH"], "patch_task_suite"),
    ("/api/v1/task-suites/<task_suite_id>/set-overlap-or-min", ["PATCH"], "patch_task_suite_overlap_or_min"),
    ("/api/v1/attachments", ["GET"], "find_attachments"),
    ("/api/v1/attachments/<attachment_id>", ["GET"], "get_attachment"),
    ("/api/v1/attachments/<attachment_id>/download", ["GET"], "download_attachment"),
    # admin endpoints of the emulator (same token)
    ("/_local/stats", ["GET"], "local_stats"),
    ("/_local/stats/reset", ["POST"], "local_stats_reset"),
    ("/_local/crowd", ["GET"], "local_crowd"),
    ("/_local/crowd", ["POST"], "local_set_crowd"),
    ("/_local/balance", ["POST"], "local_set_balance"),
    ("/_local/earnings", ["GET"], "local_earnings"),
    ("/_local/faults", ["GET"], "local_faults"),
    ("/_local/faults", ["POST"], "local_set_faults"),
    ("/_local/readers", ["GET"], "local_readers"),
]

NOT_IMPLEMENTED = "not_implemented:"  # endpoint prefix of the 501 rules, followed by the operationId


def _shape(path: str) -> str:
    """``/api/v1/pools/<pool_id>`` and ``/api/v1/pools/<id>`` are the same path."""
    return re.sub(r"<[^>]*>", "<>", path)


def unserved_operations(routes: list[tuple[str, list[str], str]] = ROUTES) -> list[tuple[str, str, str]]:
    """``[(path, method, operationId)]`` of the Toloka operations no route serves."""
    served = {(_shape(path), method) for path, methods, _ in routes for method in methods}
    return [(path, method, op) for path, method, op in OPERATIONS if (_shape(path), method) not in served]


URL_MAP = Map([Rule(path, methods=methods, endpoint=endpoint, strict_slashes=False)
               for path, methods, endpoint in ROUTES]
              + [Rule(path, methods=[method], endpoint=NOT_IMPLEMENTED + op, strict_slashes=False)
                 for path, method, op in unserved_operations()])
