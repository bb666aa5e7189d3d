"""Quality-control test world: synthetic photos served on loopback, the local Toloka with C's crowd in a
fixed mix (10 % spammers, 10 % careless drawers), and the projects/skills/pools of a verify run.

Also a crowd module for ``--crowd-module helpers_quality``: C's workers with :data:`MIX`.
"""

from __future__ import annotations

import functools
import http.server
import json
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from crowdboxes.local_toloka import crowd as _crowd

from helpers_paths import REPO_ROOT
CONFIGS = REPO_ROOT / "configs"
MIX = {"careful": 0.75, "sloppy": 0.10, "spammer_empty": 0.05, "spammer_random": 0.05, "slow": 0.05}
Crowd = _crowd.Crowd
seconds_for = _crowd.seconds_for


def make_workforce(n: int, seed: int, mix=None):
    return _crowd.make_workforce(n, seed, mix=MIX if mix is None else mix)


# ------------------------------------------------------------------------------------------------ images

def synth(out: Path, count: int, seed: int) -> dict:
    subprocess.run([sys.executable, "-m", "crowdboxes", "synth", "--count", str(count), "--seed", str(seed),
                    "--out", str(out), "--jobs", "1", "--width", "640", "--height", "480"],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    return json.loads((out / "truth.coco.json").read_text())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve_folder(folder: Path):
    """A loopback HTTP server for ``folder``; returns (base_url, server)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def images_frame(coco: dict, base_url: str) -> pd.DataFrame:
    return pd.DataFrame([{"image_id": str(im["id"]), "file_name": im["file_name"],
                          "url": f"{base_url}/{im['file_name']}", "width": im["width"], "height": im["height"],
                          "sha256": im["sha256"]} for im in coco["images"]])


# ------------------------------------------------------------------------------------------------ Toloka setup

def create_world(client, images: pd.DataFrame, *, verifiers: int = 3, reward: float = 0.02,
                 control_urls=(), control_overlap: int = 10, max_attempts: int = 3):
    """Projects, skills, a detection pool (overlap 1, manual review) with one task per image, the
    verification pool from configs/verification_pool.json. Returns a dict of ids and frames."""
    from toloka.client import Pool, Project, Skill, Task

    from crowdboxes.toloka.quality import parse_settings
    from crowdboxes.toloka.pools import ensure_verification_pool

    det_project = client.create_project(Project.structure(json.loads((CONFIGS / "detection_project.json").read_text())))
    ver_project = client.create_project(
        Project.structure(json.loads((CONFIGS / "verification_project.json").read_text())))
    skills = {role: client.create_skill(Skill(name=f"test {role}", hidden=True)).id
              for role in ("drawer_skill", "verifier_skill", "control_skill")}
    will_expire = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=1)
    det_pool = client.create_pool(Pool(
        project_id=det_project.id, private_name="detection", reward_per_assignment=reward,
        assignment_max_duration_seconds=600, will_expire=will_expire, auto_accept_solutions=False,
        auto_accept_period_day=7, defaults=Pool.Defaults(default_overlap_for_new_task_suites=1,
                                                         default_overlap_for_new_tasks=1),
        mixer_config={"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}))
    tasks = [Task(pool_id=det_pool.id, input_values={"image": url}, overlap=control_overlap) for url in control_urls]
    tasks += [Task(pool_id=det_pool.id, input_values={"image": url}, overlap=1) for url in images["url"]]
    created = client.create_tasks(tasks, allow_defaults=False)
    by_url = dict(zip(images["url"], images["image_id"]))
    rows = [{"task_id": t.id, "pool_id": det_pool.id, "image_id": by_url.get(t.input_values["image"], "control"),
             "url": t.input_values["image"], "control": t.input_values["image"] in set(control_urls)}
            for t in created.items.values()]
    settings = parse_settings("verify", verifiers=verifiers, reward=reward, config_dir=CONFIGS,
                              max_attempts=max_attempts)
    ver_pool, _ = ensure_verification_pool(client, settings, project_id=ver_project.id, skill_ids=skills,
                                           key="test:verification", will_expire=will_expire)
    return {"detection_pool": str(det_pool.id), "verification_pool": str(ver_pool.id), "skills": skills,
            "settings": settings, "tasks": pd.DataFrame(rows), "detection_project": str(det_project.id)}


def db_rows(state_dir: Path, sql: str, params=()):
    """Read the local Toloka's SQLite state directly (tests only)."""
    from crowdboxes.local_toloka.db import DB_NAME

    with sqlite3.connect(str(Path(state_dir) / DB_NAME), timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params)]


def control_images(coco: dict, base_url: str, count: int, min_side: float = 24.0):
    """A ControlSet of ``count`` images of ``coco`` whose signs are all at least ``min_side`` px
    (so a careful drawer can score well: known boxes must be complete and visible)."""
    from crowdboxes.toloka.known_boxes import control_from_truth

    sides: dict = {}
    for a in coco["annotations"]:
        sides.setdefault(a["image_id"], []).append(min(a["bbox"][2], a["bbox"][3]))
    chosen = [im for im in coco["images"] if sides.get(im["id"]) and min(sides[im["id"]]) >= min_side][:count]
    if len(chosen) < count:
        raise AssertionError(f"only {len(chosen)} control candidates with signs >= {min_side} px")
    ids = {im["id"] for im in chosen}
    subset = {"images": chosen, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids],
              "categories": coco["categories"]}
    return control_from_truth(subset, lambda name: f"{base_url}/{name}")


def merge_truth(a: dict, b: dict, path: Path) -> Path:
    """One COCO truth with the images of ``a`` and ``b`` (ids of ``b`` shifted) for the local Toloka."""
    shift = max(im["id"] for im in a["images"]) + 1000
    ann_shift = max((x["id"] for x in a["annotations"]), default=0) + 100000
    merged = {"images": a["images"] + [{**im, "id": im["id"] + shift} for im in b["images"]],
              "annotations": a["annotations"] + [{**x, "id": x["id"] + ann_shift, "image_id": x["image_id"] + shift}
                                                 for x in b["annotations"]],
              "categories": a["categories"]}
    Path(path).write_text(json.dumps(merged))
    return Path(path)


# ------------------------------------------------------------------------------------------------ loop runner

def run_loop(client, world: dict, images: pd.DataFrame, state_dir, out_dir, *, control=None, budget=None,
             deadline_s: float = 90.0, period: float = 1.0, progress=None, **settings):
    """``run_verification_loop`` with the test world's ids, lag 0 and a 1 s period; ``settings`` are more
    :class:`VerificationRun` fields."""
    import time

    import attr as _attr

    from crowdboxes.toloka.verification import VerificationRun, run_verification_loop

    quality = world["settings"] if budget is None else _attr.evolve(world["settings"], budget=budget)
    run = VerificationRun(detection_pool_id=world["detection_pool"], verification_pool_id=world["verification_pool"],
                          images=images, quality=quality, state_dir=state_dir, output_dir=out_dir,
                          tasks=world["tasks"], skill_ids=world["skills"], control=control, cursor_lag=0,
                          period=period, deadline=time.monotonic() + deadline_s, **settings)
    return run_verification_loop(client, run, progress=progress)


class LockstepCrowd:
    """Gives the crowd one slice of time per loop iteration, so what it does between two polls does not
    depend on CPU load.

    ``run_verification_loop`` reports progress once per iteration; here that report un-pauses the local
    Toloka's crowd for ``slice_s`` real seconds and pauses it again (``/_local/crowd``). Paused workers
    take no new suites (running ones finish), so a fast spammer starts at most a few suites per iteration
    however slowly the loop itself runs. Use as ``run_loop(..., progress=LockstepCrowd(server))``; the
    crowd is left running by :meth:`release` (also on exit from ``with``).
    """

    def __init__(self, server, slice_s: float = 0.12):
        self.server, self.slice_s = server, slice_s
        self.iterations = 0
        self.server.admin("POST", "/_local/crowd", {"paused": True})

    def update(self, done, counts, spent_usd, state) -> None:
        import time

        self.iterations += 1
        self.server.admin("POST", "/_local/crowd", {"paused": False})
        time.sleep(self.slice_s)
        self.server.admin("POST", "/_local/crowd", {"paused": True})

    def release(self) -> None:
        self.server.admin("POST", "/_local/crowd", {"paused": False})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _main(argv):
    """Subprocess entry for the crash test: ``python helpers_quality.py ARGS.json`` (token from env)."""
    import os

    from toloka.client import TolokaClient

    from crowdboxes.toloka.quality import parse_settings

    args = json.loads(Path(argv[0]).read_text())
    client = TolokaClient(os.environ[args["token_env"]], url=args["url"], timeout=30.0)
    world = {**args["world"], "tasks": pd.DataFrame(args["world"]["tasks"]),
             "settings": parse_settings("verify", verifiers=args["verifiers"], reward=args["reward"],
                                        config_dir=CONFIGS)}
    images = pd.DataFrame(args["images"])
    run_loop(client, world, images, args["state_dir"], args["out_dir"])
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    raise SystemExit(_main(sys.argv[1:]))
