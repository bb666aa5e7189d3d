"""Tiny street scenes served over loopback HTTP, with their COCO truth, and the pool and wait helpers the crowd's
end-to-end tests share (tests/crowd/test_crowd_local_toloka.py, test_crowd_rounds_local_toloka.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import http.server
import io
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

Sign = tuple[float, float, float, float, str]  # x, y, w, h (pixels), class name


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def served_scenes(folder: Path, signs: Mapping[str, Sequence[Sign]], categories: Sequence[dict[str, Any]],
                  colour: Sequence[int] = (40, 100, 90)) -> Iterator[tuple[str, Path]]:
    """640x480 PNGs (one flat colour each, shaded per image so their sha256 differ) named as ``signs``' keys,
    served from ``folder/images``, and their truth at ``folder/truth.coco.json`` (``categories`` name the
    classes); yields ``(base url, truth path)``."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    category_id = {c["name"]: c["id"] for c in categories}
    truth: dict[str, Any] = {"images": [], "annotations": [], "categories": list(categories)}
    for n, (name, boxes) in enumerate(signs.items()):
        buf = io.BytesIO()
        Image.new("RGB", (640, 480), (colour[0] + 50 * n, colour[1], colour[2])).save(buf, format="PNG")
        (images / name).write_bytes(buf.getvalue())
        truth["images"].append({"id": n + 1, "file_name": name, "width": 640, "height": 480,
                                "sha256": hashlib.sha256(buf.getvalue()).hexdigest()})
        for x, y, w, h, label in boxes:
            truth["annotations"].append({"id": len(truth["annotations"]) + 1, "image_id": n + 1, "iscrowd": 0,
                                         "category_id": category_id[label], "bbox": [x, y, w, h], "area": w * h})
    truth_path = folder / "truth.coco.json"
    truth_path.write_text(json.dumps(truth))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(images)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", truth_path
    finally:
        server.shutdown()
        server.server_close()


def plain_pool(client: Any, project_id: str, overlap: int, reward: float = 0.02) -> Any:
    """An open-ended pool of one task per suite, auto-accepted, expiring in two days."""
    import toloka.client as toloka
    from toloka.client import structure

    will_expire = (dt.datetime.utcnow() + dt.timedelta(days=2)).isoformat()
    return client.create_pool(structure({
        "project_id": project_id, "private_name": "p", "reward_per_assignment": reward,
        "assignment_max_duration_seconds": 3600, "will_expire": will_expire, "auto_accept_solutions": True,
        "defaults": {"default_overlap_for_new_task_suites": overlap},
        "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}},
        toloka.Pool))


def submitted(client: Any, pool_id: str, expected: int, timeout: float = 600.0) -> list[Any]:
    """The pool's submitted or accepted assignments once there are ``expected`` of them. ``timeout`` only
    guards against a hang (CI machines are loaded): no test asserts a speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [a for a in client.get_assignments(pool_id=pool_id) if a.status.value in ("SUBMITTED", "ACCEPTED")]
        if len(done) >= expected:
            return done
        time.sleep(0.2)
    raise AssertionError(f"pool {pool_id}: fewer than {expected} assignments submitted in {timeout} s")
