"""The real crowd inside the local Toloka's scheduler (in-process Backend, Scheduler.step with an injected
clock): pools of any task spec complete, image-less tasks are answered, judgement pools go to
verification-only workers and are timed as judgements."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json

import pytest
from PIL import Image

from crowdboxes.local_toloka import crowd as crowd_mod
from crowdboxes.local_toloka.crowd.spec import task_model
from crowdboxes.local_toloka.crowd.values import is_valid
from crowdboxes.local_toloka.db import ManualClock, fmt_ts, utcnow
from crowdboxes.local_toloka.models import Backend
from crowdboxes.local_toloka.scheduler import Scheduler


# images are file:// URLs here, which a "url" input refuses: string inputs holding a URL are images too
def _tb(view: dict) -> dict:
    return {"type": "tb", "config": json.dumps({"view": view, "plugins": []}), "lock": {"core": "1.0.0"}}


TEXT = {"input_spec": {"question": {"type": "string", "required": True}},
        "output_spec": {"answer": {"type": "string", "required": True}},
        "view_spec": _tb({"type": "view.list", "items": [
            {"type": "view.text", "content": {"type": "data.input", "path": "question"}},
            {"type": "field.textarea", "data": {"type": "data.output", "path": "answer"}}]})}
CLASSIFY = {"input_spec": {"image_url": {"type": "string", "required": True}},
            "output_spec": {"result": {"type": "string", "required": True, "allowed_values": ["stop", "other"]}},
            "view_spec": _tb({"type": "view.list", "items": [
                {"type": "view.image", "url": {"type": "data.input", "path": "image_url"}},
                {"type": "field.radio-group", "data": {"type": "data.output", "path": "result"},
                 "options": [{"label": "Stop", "value": "stop"}, {"label": "Other", "value": "other"}]}]})}
CHECK = {"input_spec": {"picture": {"type": "string", "required": True}, "boxes": {"type": "json", "required": True}},
         "output_spec": {"ok": {"type": "string", "required": True, "allowed_values": ["yes", "no"]}},
         "view_spec": _tb({"type": "view.list", "items": [
             {"type": "field.image-annotation", "disabled": True,
              "data": {"type": "data.input", "path": "boxes"}, "image": {"type": "data.input", "path": "picture"}},
             {"type": "field.radio-group", "data": {"type": "data.output", "path": "ok"},
              "options": [{"label": "Yes", "value": "yes"}, {"label": "No", "value": "no"}]}]})}


@pytest.fixture()
def world(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 100, 90)).save(buf, format="PNG")
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    truth = {"images": [{"id": 1, "file_name": "a.png", "width": 640, "height": 480, "label": "stop",
                         "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [60, 40, 120, 120]}]}
    backend = Backend(tmp_path / "state", speed=1e6, first_reader_seconds=0, clock=ManualClock())
    yield backend, (tmp_path / "a.png").as_uri(), truth
    backend.close()


def _pool(backend, spec, inputs, overlap=3):
    project = backend.create_project({"public_name": "p", "task_spec": spec})
    pool = backend.create_pool({
        "project_id": project["id"], "private_name": "p", "reward_per_assignment": 0.02,
        "assignment_max_duration_seconds": 600, "will_expire": fmt_ts(utcnow() + dt.timedelta(days=1)),
        "defaults": {"default_overlap_for_new_task_suites": overlap},
        "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}})
    status, _ = backend.create_tasks([{"pool_id": pool["id"], "input_values": v} for v in inputs],
                                     {"allow_defaults": "true"})
    assert status == 201
    backend.open_pool(pool["id"])
    return pool


def _run(sched, steps=40):
    """``steps`` crowd steps, 10 minutes of the backend's manual clock apart."""
    for _ in range(steps):
        sched.backend.clock.advance(600)
        sched.step()


def _done(backend, pool_id):
    return json.loads(backend.find_assignments({"pool_id": pool_id, "limit": "1000"}))["items"]


def test_text_and_classification_pools_complete_with_valid_answers(world):
    backend, url, truth = world
    text = _pool(backend, TEXT, [{"question": f"q{i}"} for i in range(4)])
    classify = _pool(backend, CLASSIFY, [{"image_url": url}, {"image_url": "file:///nowhere/missing.png"}])
    sched = Scheduler(backend, crowd_mod, workers=10, seed=3, truth=truth, solve_threads=1)
    _run(sched)
    for pool, spec, n in ((text, TEXT, 4 * 3), (classify, CLASSIFY, 2 * 3)):
        done = _done(backend, pool["id"])
        assert len(done) == n and {a["status"] for a in done} == {"ACCEPTED"}, {a["status"] for a in done}
        fields = {f.name: f for f in task_model(spec).outputs}
        for a in done:
            for solution in a["solutions"]:
                assert all(is_valid(fields[k], v) for k, v in solution["output_values"].items())
        assert backend.get_pool(pool["id"])["status"] == "CLOSED"
    assert sched.errors == 0


def test_judgement_pool_goes_to_verification_only_workers_and_is_timed_as_judgement(world):
    backend, url, truth = world
    boxes = [{"shape": "rectangle", "left": 60 / 640, "top": 40 / 480, "width": 120 / 640, "height": 120 / 480}]
    pool = _pool(backend, CHECK, [{"picture": url, "boxes": boxes}], overlap=6)
    sched = Scheduler(backend, crowd_mod, workers=2, seed=1, truth=truth, solve_threads=1, verification_workers=6)
    _run(sched)
    assert list(sched._pool_kind.values()) == ["judgement"]
    done = _done(backend, pool["id"])
    assert len(done) == 6 and {a["status"] for a in done} == {"ACCEPTED"}
    assert any(a["user_id"].startswith("v") for a in done)
    assert {a["solutions"][0]["output_values"]["ok"] for a in done} <= {"yes", "no"}
    rows = backend.conn.execute("SELECT user_id, sim_seconds FROM assignments WHERE pool_id = ?", (pool["id"],))
    per_speed = sorted(sec / sched.by_id[user].speed for user, sec in rows)
    # a judgement takes 3-9 s (x speed, x a log-normal day factor): not a drawing's 6 s + 25 s per box
    assert per_speed[len(per_speed) // 2] < 12 and per_speed[-1] < 9 * 2.2


def test_a_crowd_that_takes_no_spec_still_works(world):
    """Injected crowds (tests' tiny deterministic one) keep the old two-argument solve."""
    import helpers_local_toloka as fake

    backend, url, truth = world
    pool = _pool(backend, {"input_spec": {"image": {"type": "url"}}, "output_spec": {"result": {"type": "json"}},
                  "view_spec": {"type": "classic", "markup": "x"}},
                 [{"image": "https://i/1.png"}], overlap=2)
    sched = Scheduler(backend, fake, workers=2, seed=2, solve_threads=1)
    assert not sched._pass_spec
    _run(sched, steps=10)
    assert {a["status"] for a in _done(backend, pool["id"])} == {"ACCEPTED"}
    with pytest.raises(ValueError, match="label_map"):
        Scheduler(backend, fake, workers=2, seed=2, label_map={"stop": "x"})
