"""``local-toloka serve`` flags for the crowd: --label-map and --judgement-options (JSON text or file), errors
as one line; and a served project whose labels differ from the truth's classes, through toloka-kit."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import http.server
import io
import json
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

from crowdboxes.local_toloka import cli
from helpers_local_toloka import REPO_ROOT, start_local_toloka

TOKEN = "crowd-cli-token-5d1e"


def test_json_options_from_text_or_file(tmp_path):
    assert cli._json_option("--label-map", None) is None
    assert cli._json_option("--label-map", '{"stop": "STOP"}') == {"stop": "STOP"}
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"yield": "give_way"}))
    assert cli._json_option("--label-map", str(path)) == {"yield": "give_way"}
    for bad, words in (("{nope", "not valid JSON"), (str(tmp_path / "missing.json"), "neither"), ("[1]", "neither")):
        with pytest.raises(cli.ServeError, match=words):
            cli._json_option("--label-map", bad)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(cli.ServeError, match="JSON object"):
        cli._json_option("--label-map", str(tmp_path / "list.json"))


def _serve(tmp_path, *extra):
    env = {"PATH": "/usr/bin:/bin", "LOCAL_TOLOKA_CLI_TOKEN": "x"}
    return subprocess.run([sys.executable, "-m", "crowdboxes", "local-toloka", "serve", "--state", str(tmp_path / "s"),
                           "--token-env", "LOCAL_TOLOKA_CLI_TOKEN", *extra], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("extra, words", [
    (["--judgement-options", '{"correct": "yes"}'], "--judgement-options: expected"),
    (["--label-map", "{oops"], "--label-map: not valid JSON"),
    (["--reader-hold-seconds", "-1"], "--reader-hold-seconds must be >= 0"),
    (["--ground-truth", "/nonexistent/truth.json"], "file not found"),
    (["--workers", "many"], "invalid int value"),
])
def test_bad_flags_are_one_error_line(tmp_path, extra, words):
    done = _serve(tmp_path, *extra)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], done.stderr


def test_bad_truth_is_one_error_line(tmp_path):
    bad = tmp_path / "truth.json"
    bad.write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    done = _serve(tmp_path, "--ground-truth", str(bad))
    assert done.returncode == 2 and "images[0] lacks field 'file_name'" in done.stderr


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_served_project_with_renamed_labels_gets_mapped_labels(tmp_path):
    """A detection project whose output is ``objects`` and whose labels are not the truth's class names,
    served with --label-map: the crowd draws with the view's label values, and says nothing about them."""
    import toloka.client as toloka
    from toloka.client import structure

    folder = tmp_path / "images"
    folder.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (40, 100, 90)).save(buf, format="PNG")
    (folder / "a.png").write_bytes(buf.getvalue())
    truth = {"images": [{"id": 1, "file_name": "a.png", "width": 640, "height": 480,
                         "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [60, 40, 120, 120]},
                             {"id": 2, "image_id": 1, "category_id": 7, "bbox": [400, 250, 90, 90]}]}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    (tmp_path / "map.json").write_text(json.dumps({"stop": "S1", "parking": "P9"}))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/a.png"
    labels = [{"label": "Stop sign", "value": "S1"}, {"label": "Parking", "value": "P9"}, {"label": "Other", "value": "X"}]
    view = {"view": {"type": "field.image-annotation", "data": {"type": "data.output", "path": "objects"},
                     "image": {"type": "data.input", "path": "photo"}, "labels": labels, "shapes": {"rectangle": True}},
            "plugins": []}
    handle = start_local_toloka(tmp_path, TOKEN, workers=30, speed=5000, seed=2, ground_truth=str(tmp_path / "truth.json"),
                                label_map=str(tmp_path / "map.json"))
    try:
        client = handle.client()
        project = client.create_project(structure({
            "public_name": "p", "public_description": "d", "task_spec": {
                "input_spec": {"photo": {"type": "url", "required": True}},
                "output_spec": {"objects": {"type": "json", "required": True}},
                "view_spec": {"type": "tb", "config": json.dumps(view), "lock": {"core": "1.0.0"}}}}, toloka.Project))
        pool = client.create_pool(structure({
            "project_id": project.id, "private_name": "p", "reward_per_assignment": 0.02,
            "assignment_max_duration_seconds": 3600, "auto_accept_solutions": True,
            "will_expire": (dt.datetime.utcnow() + dt.timedelta(days=1)).isoformat(),
            "defaults": {"default_overlap_for_new_task_suites": 30},
            "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}}, toloka.Pool))
        client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"photo": url})], allow_defaults=True)
        client.open_pool(pool.id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [a for a in client.get_assignments(pool_id=pool.id) if a.status.value in ("SUBMITTED", "ACCEPTED")]
            if len(done) >= 30:
                break
            time.sleep(0.2)
        assert len(done) >= 30
        drawn = [s for a in done for s in a.solutions[0].output_values["objects"]]
        assert drawn and {s["label"] for s in drawn} <= {"S1", "P9", "X"}
        count = {v: sum(s["label"] == v for s in drawn) for v in ("S1", "P9", "X")}
        # ~19 of 30 workers or more draw each sign with its mapped label (spammers draw at random): either
        # count below 10 in about 3e-5 of runs (with 12 workers and a bound of 4, about 1e-2)
        assert count["S1"] >= 10 and count["P9"] >= 10 and count["X"] < count["S1"] + count["P9"]
        assert "matches no label" not in handle.log()
    finally:
        handle.stop()
        server.shutdown()
        server.server_close()
