"""Task batches after a kill: a batch still being created on Toloka is waited for, and batches are cut from
the whole wanted list, so a re-run never sends a batch in flight under a new operation id (a fake Toloka
that can hold an operation RUNNING; the local Toloka finishes small batches inline)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from crowdboxes.toloka import pools

POOL = "12"


class FakeToloka:
    """Tasks of one pool, TASK.BATCH_CREATE operations (a repeated operation id answers the existing
    operation, as toloka-kit does after a 409 OPERATION_ALREADY_EXISTS) and a project for the lease."""

    def __init__(self) -> None:
        self.tasks: list[SimpleNamespace] = []
        self.operations: dict[str, dict] = {}
        self.sent: list[str] = []
        self.metadata: dict = {}

    # the pool, the project (the upload's lease lives in its metadata)
    def get_pool(self, pool_id: str) -> SimpleNamespace:
        return SimpleNamespace(id=pool_id, project_id="3")

    def get_project(self, project_id: str) -> SimpleNamespace:
        return SimpleNamespace(metadata=dict(self.metadata))

    def update_project(self, project_id: str, project: SimpleNamespace) -> None:
        self.metadata = dict(project.metadata)

    # tasks and operations
    def get_tasks(self, pool_id: str, **kwargs: object) -> list[SimpleNamespace]:
        return list(self.tasks)

    def start_batch(self, inputs: list[dict], operation_id: str) -> SimpleNamespace:
        self.operations[operation_id] = {"status": "RUNNING", "inputs": inputs}
        return SimpleNamespace(id=operation_id, status="RUNNING")

    def finish(self, operation_id: str) -> None:
        op = self.operations[operation_id]
        if op["status"] == "RUNNING":
            for values in op["inputs"]:
                self.tasks.append(SimpleNamespace(id=f"t{len(self.tasks)}", input_values=values))
            op["status"] = "SUCCESS"

    def get_operations(self, request: object) -> list[SimpleNamespace]:
        status = str(getattr(request.status, "value", request.status))  # type: ignore[attr-defined]
        return [SimpleNamespace(id=op_id, status=op["status"]) for op_id, op in self.operations.items()
                if op["status"] == status]

    def wait_operation(self, operation: SimpleNamespace, **kwargs: object) -> SimpleNamespace:
        self.finish(str(operation.id))
        return SimpleNamespace(id=operation.id, status="SUCCESS")

    def create_tasks_async(self, tasks: list, *, operation_id: object, **kwargs: object) -> SimpleNamespace:
        op_id = str(operation_id)
        self.sent.append(op_id)
        if op_id not in self.operations:
            self.start_batch([dict(t.input_values) for t in tasks], op_id)
        return SimpleNamespace(id=op_id, status=self.operations[op_id]["status"])

    def get_operation_log(self, operation_id: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(input={"__item_idx": str(i)}, success=True, output={})
                for i in range(len(self.operations[operation_id]["inputs"]))]


@pytest.fixture(autouse=True)
def _quick_lease(monkeypatch, tmp_path):
    monkeypatch.setenv("CROWDBOXES_LEASE_SETTLE_SECONDS", "0")
    monkeypatch.setenv("CROWDBOXES_LOCK_DIR", str(tmp_path / "locks"))


def _wanted(n: int) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"img{i}" for i in range(n)], "url": [f"https://s3/b/{i}.jpg" for i in range(n)],
                         "control": False})


def test_a_batch_still_running_after_a_kill_is_waited_for_and_not_sent_again():
    toloka, wanted = FakeToloka(), _wanted(6)
    # the killed run: batch 1 (rows 0-2) created, batch 2 (rows 3-5) still being created on Toloka
    for index, rows in ((0, range(0, 3)), (1, range(3, 6))):
        op_id = str(pools.operation_id(POOL, index, [f"img{i}" for i in rows]))
        toloka.start_batch([{"image": f"https://s3/b/{i}.jpg"} for i in rows], op_id)
        if index == 0:
            toloka.finish(op_id)
    logged: list[str] = []
    result = pools.upload_tasks(toloka, POOL, wanted, batch_size=3, use_image_id=False, log=logged.append)
    for op_id in list(toloka.operations):
        toloka.finish(op_id)  # whatever was in flight lands in the end
    assert toloka.sent == []
    assert len(toloka.tasks) == 6 and (result.created, result.already_there, len(result.tasks)) == (0, 6, 6)
    assert any("still creating tasks; waiting for it" in line for line in logged)


def test_a_re_run_sends_a_missing_batch_under_the_id_the_first_run_used():
    """Batches are cut from the whole list: the second batch keeps its index and content, hence its id, when
    the first batch is already in the pool (cut from what is missing, it would become batch 1 under a new
    id, and an operation of the first run that Toloka still had would create its tasks a second time)."""
    toloka, wanted = FakeToloka(), _wanted(6)
    first = str(pools.operation_id(POOL, 0, ["img0", "img1", "img2"]))
    toloka.start_batch([{"image": f"https://s3/b/{i}.jpg"} for i in range(3)], first)
    toloka.finish(first)
    pools.upload_tasks(toloka, POOL, wanted, batch_size=3, use_image_id=False, log=lambda line: None)
    assert toloka.sent == [str(pools.operation_id(POOL, 1, ["img3", "img4", "img5"]))]
    assert len(toloka.tasks) == 6
