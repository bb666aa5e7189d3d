"""Every operation toloka-kit's TolokaClient exposes is served by the local Toloka or answers 501.

Each public method of ``toloka.client.TolokaClient`` is called once against a real local Toloka
server over HTTP, with plausible dummy arguments (ids that do not exist, empty objects), inside
try/except; an httpx response hook records every request it makes (method, path, status). Then:

* no request may hit a path the server does not know (404 for an unknown path) or get a 405, and none may
  get a 5xx other than 501 (dummy ids and empty bodies get Toloka's error codes);
* a request the server routes to a 501 rule must carry Toloka's error shape with code
  ``NOT_IMPLEMENTED`` and a message naming the operation;
* every method must have sent at least one request (else the dummy arguments are wrong).

``pytest -s`` prints the table (method, requests, served/501); the summary line is always printed.
"""

from __future__ import annotations

import datetime as dt
import enum
import inspect
import io
import typing
from collections import defaultdict

import attr
import pytest
from toloka.client import TolokaClient
from toloka.client.operations import Operation, PoolOpenOperation
from toloka.client.task_suite import TaskSuiteOverlapPatch, TaskSuitePatch
from werkzeug.exceptions import MethodNotAllowed, NotFound

from crowdboxes.local_toloka.urls import NOT_IMPLEMENTED, URL_MAP
from helpers_local_toloka import start_local_toloka

TOKEN = "local-test-token-coverage"
DUMMY_ID = "0000000001"
# Methods whose dummy needs more than "an empty object of the annotated type".
SPECIAL = {
    "wait_operation": lambda: {"op": PoolOpenOperation(id="00000000-0000-0000-0000-000000000000",
                                                       status=Operation.Status.RUNNING),
                               "timeout": dt.timedelta(seconds=1), "disable_progress": True},
    "download_attachment": lambda: {"attachment_id": DUMMY_ID, "out": io.BytesIO()},
    # toloka-kit reads the patch's fields before sending (an empty patch fails client-side)
    "patch_task_suite": lambda: {"task_suite_id": DUMMY_ID,
                                 "patch": TaskSuitePatch(overlap=1, issuing_order_override=1)},
    "patch_task_suite_overlap_or_min": lambda: {"task_suite_id": DUMMY_ID, "patch": TaskSuiteOverlapPatch(overlap=1)},
}


def _unwrap(annotation):
    """``Optional[X]`` -> X, ``Union[List[X], ...]`` -> List[X]."""
    if typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if args else str
    return annotation


def dummy(name: str, annotation):
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if origin in (list, typing.List):
        (item,) = typing.get_args(annotation) or (str,)
        return [dummy(name, item)]
    if annotation in (inspect.Parameter.empty, str, typing.Any) or name.endswith("_id"):
        return DUMMY_ID
    if annotation is bool:
        return False
    if annotation in (int, float):
        return 1
    if annotation is dt.timedelta:
        return dt.timedelta(seconds=1)
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return next(iter(annotation))
    if inspect.isclass(annotation) and attr.has(annotation):
        try:
            return annotation()
        except TypeError:
            return None
    return None


def call_args(method) -> dict:
    signature = inspect.signature(method)
    hints = typing.get_type_hints(method)
    kwargs = {}
    for name, param in signature.parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is not param.empty:
            continue
        kwargs[name] = dummy(name, hints.get(name, param.annotation))
    return kwargs


def public_methods():
    return sorted(name for name, member in inspect.getmembers(TolokaClient, inspect.isfunction)
                  if not name.startswith("_"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_local_toloka(tmp_path_factory.mktemp("coverage"), TOKEN, workers=1, speed=60, seed=1,
                                crowd_module="helpers_local_toloka")
    yield handle
    handle.stop()


def test_every_toloka_kit_operation_is_served_or_501(server):
    client = TolokaClient(TOKEN, url=server.url, timeout=5.0, retries=0)
    log = []
    client._session.event_hooks["response"].append(
        lambda response: log.append((response.request.method, response.request.url.path, response.status_code,
                                     response.read() and response)))
    adapter = URL_MAP.bind("localhost")
    by_method, outcomes = defaultdict(list), {}
    for name in public_methods():
        start = len(log)
        method = getattr(client, name)
        kwargs = SPECIAL[name]() if name in SPECIAL else call_args(getattr(TolokaClient, name))
        try:
            result = method(**kwargs)
            if inspect.isgenerator(result):
                next(result, None)
        except Exception as exc:  # dummy ids do not exist, empty objects do not validate: expected
            outcomes[name] = type(exc).__name__
        else:
            outcomes[name] = "ok"
        by_method[name] = log[start:]

    problems, rows = [], []
    for name, requests in by_method.items():
        if not requests:
            problems.append(f"{name}: sent no request ({outcomes[name]})")
            rows.append((name, "-", "NO REQUEST"))
            continue
        kinds = []
        for http_method, path, status, response in requests:
            try:
                endpoint, _ = adapter.match(path, http_method)
            except NotFound:
                problems.append(f"{name}: {http_method} {path} is an unknown path ({status})")
                kinds.append("UNKNOWN PATH")
                continue
            except MethodNotAllowed:
                problems.append(f"{name}: {http_method} {path} gets 405")
                kinds.append("405")
                continue
            if status == 405 or (status == 404 and "No such resource" in response.text):
                problems.append(f"{name}: {http_method} {path} answered {status}")
            if status >= 500 and status != 501:  # dummy ids and empty bodies deserve a Toloka error code
                problems.append(f"{name}: {http_method} {path} answered {status}: {response.text[:200]}")
            if endpoint.startswith(NOT_IMPLEMENTED):
                body = response.json()
                operation = endpoint[len(NOT_IMPLEMENTED):]
                if status != 501 or body.get("code") != "NOT_IMPLEMENTED" or operation not in body.get("message", ""):
                    problems.append(f"{name}: {http_method} {path}: expected a 501 naming {operation}, got "
                                    f"{status} {body}")
                kinds.append(f"501 {operation}")
            else:
                kinds.append(f"served {endpoint}")
        first = requests[0]
        rows.append((name, f"{first[0]} {first[1]}" + (f" (+{len(requests) - 1})" if len(requests) > 1 else ""),
                     ", ".join(sorted(set(kinds)))))

    served = sum(1 for _, _, kinds in rows if kinds.startswith("served") and "501" not in kinds)
    not_impl = sum(1 for _, _, kinds in rows if "501" in kinds)
    width = max(len(r[0]) for r in rows)
    print()
    for name, first, kinds in rows:
        print(f"{name:<{width}}  {first:<70}  {kinds}")
    print(f"local Toloka coverage of toloka-kit's TolokaClient: {len(rows)} methods, {served} served, "
          f"{not_impl} answer 501 NOT_IMPLEMENTED, {len(problems)} problems")
    assert not problems, "\n".join(problems)


def test_501_body_unknown_path_and_405(server):
    import requests

    headers = {"Authorization": f"OAuth {TOKEN}"}
    response = requests.post(f"{server.url}/api/v1/user-bonuses", json={}, headers=headers, timeout=10)
    body = response.json()
    assert response.status_code == 501 and body["code"] == "NOT_IMPLEMENTED" and body["request_id"]
    assert body["message"] == ("Operation 'createUserBonus' (POST /api/v1/user-bonuses) is not implemented "
                               "by the local Toloka")
    assert body["payload"] == {"operation": "createUserBonus", "method": "POST", "path": "/api/v1/user-bonuses"}
    assert requests.post(f"{server.url}/api/v1/user-bonuses", json={}, timeout=10).status_code == 401  # auth first
    assert requests.get(f"{server.url}/api/v1/no-such-thing", headers=headers, timeout=10).status_code == 404
    assert requests.delete(f"{server.url}/api/v1/pools/1", headers=headers, timeout=10).status_code == 405


def test_a_served_route_replaces_its_501_rule():
    from crowdboxes.local_toloka.urls import ROUTES, unserved_operations

    assert ("/api/v1/user-bonuses", "POST", "createUserBonus") in unserved_operations()
    served = ROUTES + [("/api/v1/user-bonuses/<user_bonus_id>", ["GET"], "get_user_bonus")]
    assert all(op != "getUserBonus" for _, _, op in unserved_operations(served))
    assert all(op != "getPool" for _, _, op in unserved_operations())  # served under another variable name


def test_local_readers_endpoint(server):
    import requests

    headers = {"Authorization": f"OAuth {TOKEN}"}
    client = TolokaClient(TOKEN, url=server.url, timeout=5.0, retries=0)
    list(client.get_assignments(pool_id="77", submitted_lte="2030-01-01T00:00:00"))
    body = requests.get(f"{server.url}/_local/readers", params={"pool_id": "77"}, headers=headers, timeout=10).json()
    assert body["reader_hold_seconds"] == 600.0
    assert [(r["pool_id"], r["field"], r["position"]) for r in body["readers"]] == [
        ("77", "submitted", "2030-01-01T00:00:00")]
    assert requests.get(f"{server.url}/_local/readers", params={"pool_id": "x"}, headers=headers,
                        timeout=10).status_code == 400
