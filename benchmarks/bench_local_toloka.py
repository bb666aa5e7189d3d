"""Local Toloka benchmark: task upload, crowd throughput and assignment listing, over real HTTP.

Rows (each against its target; ratio > 1 means better than the target):

1. ``create_tasks 10k``: one async ``TolokaClient.create_tasks`` of 10,000 tasks (POST, operation
   polling, log, the id-range ``get_tasks``), seconds; target < 20 s.
2. ``crowd 1k images x3``: a 50-worker crowd (``crowdboxes.local_toloka.crowd``: real noise model and
   image fetching over HTTP) finishes 1,000 generated images at overlap 3, one image per suite,
   auto-accept; wall seconds from ``open_pool`` to the pool's COMPLETED close; target < 60 s, at
   ``--speed`` simulated seconds per real second (a worker spends ~40-100 simulated s per image).
3. ``list assignments``: ``GET /api/v1/assignments?pool_id=..&limit=50`` (50 full assignments with
   their tasks) per second over HTTP from 1 and 4 threads; target > 200/s. The same call through
   toloka-kit's ``find_assignments`` is shown too: there the client's own model structuring
   (~30 ms per 50 assignments) is the limit, not the server.

Usage: ``python benchmarks/bench_local_toloka.py [--speed 2000] [--images 1000] [--tasks 10000]``
(about a minute on 2 cores). Images are generated PNGs (random sign-like boxes) served by a local
HTTP server in this process; their truth is a COCO file the server's crowd draws from.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import http.server
import io
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import toloka.client as toloka  # noqa: E402
from toloka.client import structure  # noqa: E402

from crowdboxes.classes import SIGN_CLASSES, coco_categories  # noqa: E402
from crowdboxes.evaluation.truth import write_coco  # noqa: E402
from helpers_local_toloka import start_local_toloka  # noqa: E402

TOKEN = "bench-local-toloka-token"
PROJECT = {"public_name": "bench", "public_description": "bench",
           "task_spec": {"input_spec": {"image": {"type": "url", "required": True}},
                         "output_spec": {"result": {"type": "json", "required": True}},
                         "view_spec": {"type": "classic", "markup": "x", "script": "", "styles": ""}}}


def make_images(folder: Path, count: int, seed: int) -> dict:
    """``count`` 320x240 PNGs with 0-3 coloured boxes each; returns their COCO truth."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(count):
        w, h = 320, 240
        image = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(60, 200, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(0, 4))):
            bw, bh = int(rng.integers(12, 70)), int(rng.integers(12, 70))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            draw.rectangle([x, y, x + bw, y + bh], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
            cls = SIGN_CLASSES[int(rng.integers(0, len(SIGN_CLASSES)))]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls.id,
                                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        name = f"img{i:05d}.png"
        (folder / name).write_bytes(data)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h,
                       "sha256": hashlib.sha256(data).hexdigest()})
    return {"images": images, "annotations": annotations, "categories": coco_categories()}


def serve_folder(folder: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def pool_body(project_id, overlap):
    return {"project_id": project_id, "private_name": "bench", "reward_per_assignment": 0.01,
            "assignment_max_duration_seconds": 3600,
            "will_expire": (dt.datetime.utcnow() + dt.timedelta(days=3)).isoformat(),
            "defaults": {"default_overlap_for_new_task_suites": overlap},
            "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}}


def bench_create_tasks(client, project_id, n):
    pool = client.create_pool(structure(pool_body(project_id, 1), toloka.Pool))
    tasks = [toloka.Task(pool_id=pool.id, input_values={"image": f"https://upload.example/{i}.png"})
             for i in range(n)]
    start = time.perf_counter()
    result = client.create_tasks(tasks, allow_defaults=True)
    seconds = time.perf_counter() - start
    assert len(result.items) == n, f"created {len(result.items)} of {n}"
    return seconds


def bench_crowd(client, project_id, base_url, n_images, overlap):
    pool = client.create_pool(structure(pool_body(project_id, overlap), toloka.Pool))
    client.create_tasks([toloka.Task(pool_id=pool.id, input_values={"image": f"{base_url}/img{i:05d}.png"})
                         for i in range(n_images)], allow_defaults=True)
    start = time.perf_counter()
    client.open_pool(pool.id)
    while client.get_pool(pool.id).status != toloka.Pool.Status.CLOSED:
        time.sleep(0.25)
    seconds = time.perf_counter() - start
    submitted = list(client.get_assignments(pool_id=pool.id, status="ACCEPTED", batch_size=10_000))
    return seconds, pool.id, len(submitted)


def bench_listing(url, pool_id, seconds=4.0, threads=1):
    """Raw HTTP ``GET /api/v1/assignments?pool_id=..&limit=50`` per second (server throughput)."""
    import requests

    stop = time.perf_counter() + seconds
    path = f"{url}/api/v1/assignments?pool_id={pool_id}&limit=50"

    def loop():
        session = requests.Session()
        session.headers["Authorization"] = f"OAuth {TOKEN}"
        n = 0
        while time.perf_counter() < stop:
            response = session.get(path, timeout=30)
            assert response.status_code == 200 and len(response.json()["items"]) == 50
            n += 1
        return n

    with ThreadPoolExecutor(threads) as ex:
        total = sum(ex.map(lambda _: loop(), range(threads)))
    return total / seconds


def bench_client_listing(client, pool_id, seconds=4.0):
    """The same through toloka-kit (its model structuring of 50 assignments dominates)."""
    stop = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < stop:
        client.find_assignments(pool_id=pool_id, limit=50)
        n += 1
    return n / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--images", type=int, default=1_000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--speed", type=float, default=2000.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_local_toloka_") as tmp:
        tmp = Path(tmp)
        img_dir = tmp / "images"
        img_dir.mkdir()
        t0 = time.perf_counter()
        truth = make_images(img_dir, args.images, args.seed)
        write_coco(truth, tmp / "truth.json")
        print(f"generated {args.images} images in {time.perf_counter() - t0:.1f} s", flush=True)
        http_server, base_url = serve_folder(img_dir)
        handle = start_local_toloka(tmp, TOKEN, workers=args.workers, speed=args.speed, seed=args.seed,
                                    ground_truth=tmp / "truth.json", balance=100000)
        try:
            client = handle.client(timeout=60.0)
            project = client.create_project(structure(PROJECT, toloka.Project))
            secs = bench_create_tasks(client, project.id, args.tasks)
            rows.append((f"create_tasks {args.tasks:,} (async)", "s", secs, 20.0, 20.0 / secs))
            print(f"create_tasks: {secs:.2f} s", flush=True)
            secs, pool_id, n_done = bench_crowd(client, project.id, base_url, args.images, args.overlap)
            rows.append((f"crowd {args.workers} workers, {args.images:,} images x{args.overlap}", "s", secs, 60.0,
                         60.0 / secs))
            print(f"crowd: {secs:.2f} s for {n_done} accepted assignments (speed {args.speed:g})", flush=True)
            stats = handle.admin("GET", "/_local/crowd")
            if stats["scheduler_errors"]:
                print(f"scheduler errors: {stats['scheduler_errors']} (last: {stats['last_error']})")
            for threads in (1, 4):
                rate = bench_listing(handle.url, pool_id, threads=threads)
                rows.append((f"list assignments (limit 50), HTTP, {threads} thr", "req/s", rate, 200.0, rate / 200.0))
            rate = bench_client_listing(client, pool_id)
            rows.append(("list assignments (limit 50), toloka-kit", "req/s", rate, 200.0, rate / 200.0))
        finally:
            handle.stop()
            http_server.shutdown()

    print()
    print(f"{'benchmark':<46} {'measured':>12} {'target':>10} {'ratio':>7}  verdict")
    for name, unit, value, target, ratio in rows:
        better = "<" if unit == "s" else ">"
        print(f"{name:<46} {value:>9.2f} {unit:<2} {better}{target:>7.0f} {unit:<2} {ratio:>6.2f}x  "
              f"{'ok' if ratio >= 1 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
