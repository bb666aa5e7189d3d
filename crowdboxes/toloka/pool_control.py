"""Stop or start a pool by hand: ``python -m crowdboxes pool stop|start POOL``.

``stop`` closes the pool (no new assignments; work in progress goes on and is paid as usual), ``start``
opens it again. Both are idempotent: a pool already in the wanted state is left alone and said so. What
Toloka refuses (an archived pool, an expired one, a pool with no tasks) is one line with Toloka's code.
Between a stop and a start, a Launch Pool re-run with changed settings edits the pool
(:func:`crowdboxes.toloka.pools.edit_pool`).

Usage::

    python -m crowdboxes pool stop 12 --toloka_env sandbox
    python -m crowdboxes pool start 12 --toloka_env sandbox
"""

from __future__ import annotations

from typing import Any

from crowdboxes.cnvrg.stepkit import step_parser
from crowdboxes.errors import CrowdboxesError
from crowdboxes.toloka.client import toloka_refusal
from crowdboxes.toloka.pools import pool_status

ACTIONS = ("stop", "start")


def stop_or_start(client: Any, action: str, pool_id: str) -> str:
    """Close (``stop``) or open (``start``) pool ``pool_id``; returns the line to print."""
    if action not in ACTIONS:
        raise CrowdboxesError(f"pool: unknown action {action!r}; use stop or start")
    try:
        pool = client.get_pool(str(pool_id))
    except Exception as exc:  # noqa: BLE001 - one line naming the pool and Toloka's reason
        raise CrowdboxesError(f"pool {pool_id}: cannot be read ({toloka_refusal(exc)})") from None
    status = pool_status(pool)
    wanted = "CLOSED" if action == "stop" else "OPEN"
    if status == wanted:
        return f"pool {pool_id}: already {status.lower()}"
    if status == "ARCHIVED":
        raise CrowdboxesError(f"pool {pool_id} is archived; Toloka neither opens nor closes an archived pool")
    try:
        if action == "stop":
            client.close_pool(str(pool_id))
        else:
            client.open_pool(str(pool_id))
    except Exception as exc:  # noqa: BLE001 - Toloka's own refusal (expired pool, no tasks, ...)
        raise CrowdboxesError(f"pool {pool_id}: cannot {action} it: {toloka_refusal(exc)}") from None
    now = pool_status(client.get_pool(str(pool_id)))
    return f"pool {pool_id}: {'stopped' if action == 'stop' else 'started'} (was {status.lower()}, now {now.lower()})"


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("python -m crowdboxes pool", "stop (close) or start (open) a pool on Toloka")
    parser.add_argument("action", choices=ACTIONS, help="stop: close the pool; start: open it")
    parser.add_argument("pool_id", help="the Toloka pool id (pool.csv's pool_id)")
    args = parser.parse_args(argv)
    from crowdboxes.toloka.client import connect

    print(stop_or_start(connect(args.toloka_env, args.token_env), args.action, args.pool_id))
    return 0
