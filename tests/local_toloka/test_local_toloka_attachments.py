"""Attachments on the local Toloka: answers to `file` output fields are uploaded files (small PNGs) whose
ids the answers hold; /attachments lists them, gets their metadata and downloads their bytes."""

from __future__ import annotations

import io
import json
import time

import pytest
import requests
from PIL import Image

import helpers_local_toloka as fake
from crowdboxes.local_toloka.exceptions import DoesNotExist, ValidationError
from crowdboxes.local_toloka.models.attachments import attachment_png
from crowdboxes.local_toloka.scheduler import Scheduler
from helpers_local_toloka import start_local_toloka

TOKEN = "attachments-test-token"
FAKE = "helpers_local_toloka"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROJECT = fake.classic_project(photo={"type": "file"}, more={"type": "array_file"})


def test_file_answers_become_attachments(backend):
    project = backend.create_project(PROJECT)
    pool = backend.create_pool(fake.pool_spec(project["id"], mixer_config={
        "real_tasks_count": 2, "golden_tasks_count": 0, "training_tasks_count": 0}))
    backend.create_tasks([{"pool_id": pool["id"], "input_values": {"image": f"https://i/{i}.png"}} for i in range(4)],
                         {"allow_defaults": "true"})
    backend.open_pool(pool["id"])
    sched = Scheduler(backend, fake, workers=2, seed=2, solve_threads=1)
    fake.crowd_until(backend, sched, fake.pool_closed(backend, pool["id"]))
    done = json.loads(backend.find_assignments({"pool_id": pool["id"]}))["items"]
    assert len(done) == 2 and all(a["status"] == "ACCEPTED" for a in done)
    listed = backend.find_attachments({"pool_id": pool["id"], "limit": "100"})["items"]
    assert len(listed) == 8  # 4 tasks x (one `file` + one `array_file` answer)
    by_id = {a["id"]: a for a in listed}
    for a in done:
        for solution in a["solutions"]:
            answer = solution["output_values"]
            assert isinstance(answer["photo"], str) and len(answer["more"]) == 1
            for attachment_id in [answer["photo"], *answer["more"]]:
                meta = by_id[attachment_id]
                assert meta["attachment_type"] == "ASSIGNMENT_ATTACHMENT" and meta["media_type"] == "image/png"
                assert meta["details"] == {"user_id": a["user_id"], "assignment_id": a["id"], "pool_id": pool["id"]}
                assert backend.get_attachment(attachment_id) == meta
                data, media_type, name = backend.download_attachment(attachment_id)
                assert data.startswith(PNG_MAGIC) and name == meta["name"] and name.endswith(".png")
                assert Image.open(io.BytesIO(data)).size == (48, 32)
    # filters, sort and pages
    mine = backend.find_attachments({"assignment_id": done[0]["id"]})["items"]
    assert len(mine) == 4 and {m["details"]["assignment_id"] for m in mine} == {done[0]["id"]}
    assert len(backend.find_attachments({"pool_id": pool["id"], "user_id": done[1]["user_id"]})["items"]) == 4
    assert len(backend.find_attachments({"pool_id": pool["id"], "name": "photo_1.png"})["items"]) == 2
    ids = sorted(by_id)
    page = backend.find_attachments({"pool_id": pool["id"], "sort": "id", "limit": "3"})
    assert [m["id"] for m in page["items"]] == ids[:3] and page["has_more"] is True
    assert [m["id"] for m in backend.find_attachments({"pool_id": pool["id"], "id_gt": ids[5]})["items"]] == ids[6:]
    assert backend.find_attachments({"pool_id": pool["id"], "owner_id": "someone else"})["items"] == []
    with pytest.raises(ValidationError):
        backend.find_attachments({})
    with pytest.raises(DoesNotExist):
        backend.get_attachment("0983459b-e26f-42f3-a5fd-6e3feee913e7")
    # the bytes are a function of the assignment, field and task: a replayed run uploads the same files
    assert attachment_png("a/0/photo/0") == attachment_png("a/0/photo/0") != attachment_png("a/1/photo/0")


def test_attachments_through_toloka_kit(tmp_path):
    import toloka.client as toloka

    server = start_local_toloka(tmp_path, TOKEN, workers=3, speed=2000, seed=2, crowd_module=FAKE)
    try:
        client = server.client()
        project = fake.kit_project(client, photo=toloka.project.FileSpec())
        pool = client.create_pool(fake.kit_pool(project.id))
        client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"image": f"https://i/{i}.png"})
                             for i in range(3)], allow_defaults=True, open_pool=True)
        deadline = time.monotonic() + 60  # a condition wait: only a stuck pool reaches it
        while client.get_pool(pool.id).status.value == "OPEN" and time.monotonic() < deadline:
            time.sleep(0.1)
        answers = [s.output_values["photo"] for a in client.get_assignments(pool_id=pool.id) for s in a.solutions]
        assert len(answers) == 3
        found = client.find_attachments(pool_id=pool.id, sort=["-created", "-id"], limit=2)
        assert len(found.items) == 2 and found.has_more
        listed = list(client.get_attachments(pool_id=pool.id, batch_size=1))
        assert sorted(a.id for a in listed) == sorted(answers)
        meta = client.get_attachment(answers[0])
        assert isinstance(meta, toloka.attachment.AssignmentAttachment)
        assert meta.media_type == "image/png" and meta.details.pool_id == pool.id and meta.name.endswith(".png")
        out = io.BytesIO()
        client.download_attachment(answers[0], out)
        assert out.getvalue().startswith(PNG_MAGIC)
        response = requests.get(f"{server.url}/api/v1/attachments/{answers[0]}/download",
                                headers={"Authorization": f"OAuth {TOKEN}"}, timeout=10)
        assert response.headers["Content-Type"] == "image/png" and response.content == out.getvalue()
        assert meta.name in response.headers["Content-Disposition"]
        with pytest.raises(toloka.exceptions.DoesNotExistApiError):
            client.get_attachment("0983459b-e26f-42f3-a5fd-6e3feee913e7")
    finally:
        server.stop()
