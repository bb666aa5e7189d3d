"""Path map of the local Toloka: Toloka API paths (all under ``/api``) and the ``/_local`` admin paths."""

from __future__ import annotations

from werkzeug.routing import Map, Rule

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
    # admin endpoints of the emulator (same token)
    ("/_local/stats", ["GET"], "local_stats"),
    ("/_local/stats/reset", ["POST"], "local_stats_reset"),
    ("/_local/crowd", ["GET"], "local_crowd"),
    ("/_local/crowd", ["POST"], "local_set_crowd"),
    ("/_local/balance", ["POST"], "local_set_balance"),
    ("/_local/faults", ["GET"], "local_faults"),
    ("/_local/faults", ["POST"], "local_set_faults"),
]

URL_MAP = Map([Rule(path, methods=methods, endpoint=endpoint, strict_slashes=False)
               for path, methods, endpoint in ROUTES])
