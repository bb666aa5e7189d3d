"""Shared pieces for the tests that replay Toloka's example notebooks against the local Toloka.

* :class:`ImageServer`: a loopback HTTP server for images drawn with PIL (external URLs are unreachable in
  tests, so every notebook's dataset is replaced by local pictures);
* :func:`write_truth`: the crowd's ground truth for those pictures (boxes, image labels, texts, links,
  and ``tasks`` entries for tasks without an image), in the format of ``crowd/truth.py``;
* :class:`Deadline` and :func:`wait_pool_closed`: the notebooks' "wait until the pool is closed" loops,
  with a generous deadline so that a stuck pool fails the test with its state instead of hanging it;
* :func:`run_pipeline`: runs a toloka-kit streaming ``Pipeline`` in any thread (``Pipeline.run`` installs a
  SIGINT handler, which asyncio allows only in the main thread; the loop here ignores that one call);
* :data:`STOP`: set when the test session ends (conftest), so that scenarios still running in the background
  (an interrupted or ``-x`` run) give up at their next wait instead of keeping pytest alive for minutes.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import io
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw

log = logging.getLogger("toloka_examples")


# ------------------------------------------------------------------------------------------ images

class ImageServer:
    """Serves ``/<name>`` from memory on 127.0.0.1; ``add(name, image)`` returns the URL."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                body = files.get(self.path.lstrip("/").split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()

    def add(self, name: str, image: Image.Image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        self.files[name] = buffer.getvalue()
        return f"{self.url}/{name}"

    def sha256(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _background(seed: int, size=(320, 240)) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A plain picture that differs per seed (so every file has its own bytes and hash)."""
    image = Image.new("RGB", size, ((seed * 53) % 200 + 30, (seed * 97) % 200 + 30, (seed * 29) % 200 + 30))
    draw = ImageDraw.Draw(image)
    for i in range(6):  # a few stripes make each picture distinct
        y = (seed * 7 + i * 41) % size[1]
        draw.line([(0, y), (size[0], (y + seed * 13) % size[1])], fill=((seed + i * 40) % 255, 90, 160), width=2)
    return image, draw


def animal_picture(seed: int, animal: str) -> Image.Image:
    """A stand-in for a cat/dog/other photo: the truth file says what it shows."""
    image, draw = _background(seed)
    shape = {"cat": "triangle", "dog": "square"}.get(animal, "circle")
    if shape == "triangle":
        draw.polygon([(160, 50), (90, 190), (230, 190)], fill=(240, 240, 240))
    elif shape == "square":
        draw.rectangle([100, 60, 220, 180], fill=(30, 30, 30))
    else:
        draw.ellipse([100, 60, 220, 180], fill=(200, 30, 200))
    return image


def road_picture(seed: int, boxes) -> Image.Image:
    """A road photo stand-in: each box ``(x, y, w, h)`` in pixels is a red sign."""
    image, draw = _background(seed, (400, 300))
    for x, y, w, h in boxes:
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(220, 20, 20), outline=(255, 255, 255), width=3)
    return image


def meter_picture(seed: int, text: str) -> Image.Image:
    """A water meter stand-in: the reading ``text`` written on the picture."""
    image, draw = _background(seed)
    draw.rectangle([40, 90, 280, 150], fill=(250, 250, 250))
    draw.text((60, 110), text, fill=(0, 0, 0))
    return image


# ------------------------------------------------------------------------------------------- truth

def write_truth(path: Path, server: ImageServer, images: list[dict], tasks: list[dict] | None = None) -> Path:
    """The crowd's truth as COCO JSON.

    ``images``: ``{"name": served file name, "size": (w, h), "boxes": [(category_id, x, y, w, h)], and any
    of "label", "labels", "text", "link"}``; ``tasks``: ``[{"input_values": ..., "output_values": ...}]``.
    """
    coco = {"images": [], "annotations": [], "tasks": list(tasks or [])}
    for image_id, spec in enumerate(images, start=1):
        width, height = spec["size"]
        record = {"id": image_id, "file_name": spec["name"], "width": width, "height": height,
                  "sha256": server.sha256(spec["name"])}
        record.update({key: spec[key] for key in ("label", "labels", "text", "link", "links") if key in spec})
        coco["images"].append(record)
        for category_id, x, y, w, h in spec.get("boxes", ()):
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "category_id": category_id, "bbox": [x, y, w, h], "area": w * h,
                                        "iscrowd": 0})
    path = Path(path)
    path.write_text(json.dumps(coco, indent=1))
    return path


# ----------------------------------------------------------------------------------------- waiting

STOP = threading.Event()


def pause(seconds: float) -> None:
    """``time.sleep`` that ends early once :data:`STOP` is set."""
    STOP.wait(seconds)


class ScenarioTimeout(AssertionError):
    """A scenario did not finish before its deadline (the message says what it was waiting for)."""


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds until the deadline; none once the session has ended (:data:`STOP`)."""
        return 0.0 if STOP.is_set() else self.end - time.monotonic()

    def check(self, waiting_for: str) -> None:
        if self.left() <= 0:
            raise ScenarioTimeout(f"not done after {self.seconds:.0f} s: {waiting_for}")


def pool_state(client, pool_id: str) -> str:
    """One line for failure messages: the pool's status and its assignments by status."""
    pool = client.get_pool(pool_id)
    counts: dict[str, int] = {}
    for assignment in client.get_assignments(pool_id=pool_id):
        status = getattr(assignment.status, "value", assignment.status)
        counts[status] = counts.get(status, 0) + 1
    listed = ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "none"
    return (f"pool {pool_id} {_value(pool.status)} (last close reason {_value(pool.last_close_reason)}); "
            f"assignments: {listed}")


def _value(enum):
    return getattr(enum, "value", enum)


def wait_pool_closed(client, pool_id: str, deadline: Deadline, *, sleep: float = 2.0,
                     with_progress: bool = False) -> None:
    """The notebooks' waiting loop: poll the pool until it is closed (optionally logging Toloka's completion
    percentage through the analytics API, as the getting-started notebooks do). The notebooks sleep 60 s
    between polls; a few seconds keep the test short without changing what is asked of the server."""
    import toloka.client as toloka

    pool = client.get_pool(pool_id)
    while not pool.is_closed():
        if deadline.left() <= 0:
            raise ScenarioTimeout(f"waiting for the pool to close: {pool_state(client, pool_id)}")
        if with_progress:
            operation = client.get_analytics([toloka.analytics_request.CompletionPercentagePoolAnalytics(
                subject_id=pool.id)])
            operation = client.wait_operation(operation)
            percentage = operation.details["value"][0]["result"]["value"]
            log.info("%s pool %s: %s%%", datetime.datetime.now().strftime("%H:%M:%S"), pool_id, percentage)
        pause(sleep)
        pool = client.get_pool(pool_id)


# ---------------------------------------------------------------------------------------- pipeline

class _ThreadLoop(asyncio.SelectorEventLoop):
    """An event loop for a worker thread: ``Pipeline.run`` asks for a SIGINT handler, which asyncio allows in
    the main thread only; nothing here sends SIGINT, so the request is ignored."""

    def add_signal_handler(self, sig, callback, *args):
        pass

    def remove_signal_handler(self, sig):
        return False


def run_pipeline(pipeline, timeout: float) -> bool:
    """Run ``pipeline.run()`` in this thread until it returns (True), or ``timeout`` seconds pass or
    :data:`STOP` is set (False; the pipeline is cancelled). Its own errors propagate."""
    async def until_done() -> bool:
        task = asyncio.ensure_future(pipeline.run())
        end = time.monotonic() + timeout
        while not task.done():
            if STOP.is_set() or time.monotonic() >= end:
                task.cancel()
                await asyncio.wait({task})
                return False
            await asyncio.wait({task}, timeout=min(0.5, max(end - time.monotonic(), 0.0)))
        task.result()
        return True

    loop = _ThreadLoop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(until_done())
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def assignment_ids(client, pool_id: str, statuses=("SUBMITTED", "ACCEPTED", "REJECTED")) -> set[str]:
    """Ids of the pool's assignments that reached one of ``statuses`` (what a streaming reader must see)."""
    return {a.id for a in client.get_assignments(pool_id=pool_id)
            if getattr(a.status, "value", a.status) in statuses}


# ------------------------------------------------------------------ scenarios started in the background

_BACKGROUND: dict = {}
_BACKGROUND_LOCK = threading.Lock()


def start_in_background(key: str, folder, job):
    """``job(folder)`` in its own thread, started once per ``key``; returns its Future.

    The notebook and Pipeline scenarios spend minutes waiting for toloka-kit's 60 s cursor lag. conftest starts
    them as soon as collection shows they are selected, so that they wait while the rest of the suite runs; their
    module fixture then calls this again and gets the same Future. ``folder`` may be a callable making it.
    """
    from concurrent.futures import Future

    with _BACKGROUND_LOCK:
        if key in _BACKGROUND:
            return _BACKGROUND[key]
        future: Future = Future()
        _BACKGROUND[key] = future
    where = folder() if callable(folder) else folder

    def run():
        try:
            future.set_result(job(where))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the fixture's result()
            future.set_exception(exc)

    threading.Thread(target=run, name=f"background-{key}").start()
    return future

