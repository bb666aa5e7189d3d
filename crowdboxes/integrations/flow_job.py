"""One annotation job for a caller outside the flow (the FiftyOne backend): images in, boxes per image out.

A job lives in one folder::

    <job>/job.json           the settings (:class:`JobSettings`) and the classes
    <job>/images/            the images, COPIED under unique names (never linked: Upload Images refuses links
                             out of the dataset folder), one file per distinct content
    <job>/staged.json        staged file name -> the caller's ids of the images with those bytes
    <job>/configs/           the project configs with the caller's classes as the label lists
    <job>/truth.coco.json    (optional) true boxes the local Toloka's simulated crowd draws from
    <job>/runs/              the local flow runner's runs (``runs/latest.json``: each task's last good run)
    <job>/logs/, flow.log    the servers' and the flow's output
    <job>/status.json        starting | running | succeeded | failed, with the error line and the pids
    <job>/status.lock        held while the status changes (two starts of one job, or a start and its process)

:func:`run_job` runs ``traffic_signs_annotation.yaml`` with the local flow runner (``python -m crowdboxes
flow run``) on ``images/``: with ``toloka_env="local"`` beside a local S3 store and a local Toloka started as
``python -m crowdboxes demo`` starts them; otherwise against Toloka (``sandbox``, ``production`` or an API
URL) with the token in the environment variable ``token_env`` and the images in a real S3 bucket. The
projects and pools are found again by ``project_key`` and the images are uploaded once, so running a job
again after a crash or a failed step spends nothing twice; while a run of the job is starting or running,
another start is refused in one line. :func:`read_outputs` gives each staged image its
aggregated boxes (boxes.csv, with the ``lean_em`` score), every worker's raw boxes (answers.csv) and its risk
(images_review.csv).

``python -m crowdboxes.integrations.flow_job <job folder>`` runs a prepared job (the backend starts it so,
in the background when asked not to wait).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

from PIL import Image

from crowdboxes import artifacts as art
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import read_json, sha256_file, write_text_atomic

JOB = "job.json"
STAGED = "staged.json"
STATUS = "status.json"
STATUS_LOCK = "status.lock"
ACTIVE = ("starting", "running")  # a run of the job is under way (while its process lives)
TRUTH = "truth.coco.json"
FLOW_LOG = "flow.log"
LOCAL = "local"
REPO_ROOT = Path(__file__).resolve().parents[2]

# A true box relative to its image's size (FiftyOne's convention): label, x/W, y/H, w/W, h/H.
RelativeBox = tuple[str, float, float, float, float]


@dataclass
class JobSettings:
    """What a job runs. ``flow_params`` are further ``--set key=value`` overrides of the flow's params
    (e.g. ``{"reward": "0.05", "rounds": "missed_signs"}``); the named fields win over them."""

    project_key: str
    toloka_env: str = LOCAL  # local | sandbox | production | an API URL
    token_env: str = "toloka_token"  # the variable holding the token (real Toloka; never stored)
    s3_bucket: str | None = None  # real Toloka: the bucket the workers load images from
    s3_prefix: str = "fiftyone/"
    s3_endpoint_url: str | None = None
    url_mode: str | None = None  # public | presigned (the flow's default when None)
    mode: str = "overlap"
    overlap: int = 3
    method: str = "lean_em"
    poll_seconds: float | None = None  # Wait Pool's poll interval (1 s on the local Toloka, else the flow's)
    budget: str | None = None  # Wait Pool's cap in USD (None: the flow's on Toloka; none on the local one)
    config_dir: str | None = None  # your own configs/ (default: the repository's)
    flow_params: dict[str, str] = field(default_factory=dict)
    # the local Toloka's simulated crowd
    workers: int = 40
    verification_workers: int | None = None
    speed: float = 200.0
    seed: int = 7

    @property
    def local(self) -> bool:
        """Whether the job runs on a local Toloka started for it."""
        return self.toloka_env == LOCAL


# ------------------------------------------------------------------------------------------ preparing a job
def stage_images(images: Sequence[tuple[str, str]], images_dir: Path) -> dict[str, list[str]]:
    """Copy ``(id, path)`` images into ``images_dir`` as ``<id><extension>``; images with the same bytes are
    staged once (Upload Images would reject the copies as duplicates) and share its file. Returns staged file
    name -> ids. Ids must be usable as file names (FiftyOne's sample ids are hex); CrowdboxesError naming the
    id of a missing file."""
    images_dir.mkdir(parents=True, exist_ok=True)
    staged: dict[str, list[str]] = {}
    by_digest: dict[str, str] = {}
    for image_id, path in images:
        source = Path(path)
        if not source.is_file():
            raise CrowdboxesError(f"image {image_id}: file {path} does not exist")
        digest = sha256_file(source)
        if digest in by_digest:
            staged[by_digest[digest]].append(image_id)
            continue
        name = f"{image_id}{source.suffix.lower()}"
        if PurePosixPath(name).name != name or name.startswith("."):
            raise CrowdboxesError(f"image {image_id}: the id is not usable as a file name")
        shutil.copyfile(source, images_dir / name)  # a copy, never a link
        by_digest[digest] = name
        staged[name] = [image_id]
    return staged


def _class_list(values: Any, old: set[str], classes: Sequence[str]) -> Any:
    """``values`` with the classes swapped in when it is a list of exactly the old classes (as ``{label,
    value}`` entries or plain values); else ``values`` itself."""
    if not isinstance(values, list) or not values:
        return values
    names = [v.get("value") if isinstance(v, dict) else v for v in values]
    if set(map(str, names)) != old:
        return values
    if isinstance(values[0], dict):
        return [{"label": c, "value": c} for c in classes]
    return list(classes)


def _swap_classes(node: Any, old: set[str], classes: Sequence[str]) -> Any:
    if isinstance(node, dict):
        return {k: _swap_classes(_class_list(v, old, classes), old, classes) for k, v in node.items()}
    if isinstance(node, list):
        return [_swap_classes(v, old, classes) for v in node]
    return node


def class_configs(classes: Sequence[str], source: Path, target: Path) -> Path:
    """Copy the configs folder ``source`` to ``target`` with ``classes`` as every list of classes: the
    label lists of the projects' views and the allowed values of their outputs that list exactly the
    detection view's labels. Returns ``target``."""
    from crowdboxes.toloka.fields import view_label_values
    from crowdboxes.toloka.projects import load_project_config

    detection = source / art.DETECTION_PROJECT_CONFIG.file_name
    old = set(view_label_values(load_project_config(detection)))
    if not old:
        raise CrowdboxesError(f"{detection}: the detection view declares no labels to replace with the classes")
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.json")):
        data = read_json(path)
        spec = data.get("task_spec") if isinstance(data, dict) else None
        if isinstance(spec, dict):
            view = spec.get("view_spec", {})
            if isinstance(view.get("config"), str):  # the Template Builder view is JSON inside a string
                view["config"] = json.dumps(_swap_classes(json.loads(view["config"]), old, list(classes)), indent=4)
            spec["output_spec"] = _swap_classes(spec.get("output_spec", {}), old, list(classes))
        write_text_atomic(target / path.name, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return target


def truth_coco(truth: Mapping[str, Sequence[RelativeBox]], images_dir: Path, classes: Sequence[str]) -> dict[str, Any]:
    """A COCO truth of the staged images (file name -> relative boxes) for the local Toloka, which finds each
    image by the sha256 of its bytes; pixels are ``x = x_rel * W`` etc. with the staged image's size ``W x H``;
    classes not in ``classes`` are left out."""
    category = {name: k + 1 for k, name in enumerate(classes)}
    coco: dict[str, Any] = {"images": [], "annotations": [],
                            "categories": [{"id": k, "name": name} for name, k in category.items()]}
    for n, (file_name, boxes) in enumerate(sorted(truth.items()), start=1):
        with Image.open(images_dir / file_name) as image:
            width, height = image.size
        coco["images"].append({"id": n, "file_name": file_name, "width": width, "height": height,
                               "sha256": sha256_file(images_dir / file_name)})
        for label, x, y, w, h in boxes:
            if label in category:
                bbox = [x * width, y * height, w * width, h * height]
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": n, "iscrowd": 0,
                                            "category_id": category[label], "bbox": bbox, "area": bbox[2] * bbox[3]})
    return coco


def prepare_job(job_dir: Path, settings: JobSettings, classes: Sequence[str],
                images: Sequence[tuple[str, str]], truth: Mapping[str, Sequence[RelativeBox]] | None = None
                ) -> dict[str, list[str]]:
    """Lay out a job folder (see the module docstring); ``truth`` maps image ids to true relative boxes (a
    local rehearsal). Returns :func:`stage_images`' map."""
    if not classes or len(set(classes)) != len(classes):
        raise CrowdboxesError(f"classes {list(classes)!r}: give at least one class, each once")
    staged = stage_images(images, job_dir / "images")
    source = Path(settings.config_dir) if settings.config_dir else REPO_ROOT / "configs"
    class_configs(classes, source, job_dir / "configs")
    if truth is not None:
        by_id = {image_id: name for name, ids in staged.items() for image_id in ids}
        staged_truth = {by_id[image_id]: boxes for image_id, boxes in truth.items() if image_id in by_id}
        from crowdboxes.evaluation.truth import write_coco

        write_coco(truth_coco(staged_truth, job_dir / "images", classes), job_dir / TRUTH)
    write_text_atomic(job_dir / STAGED, json.dumps(staged, indent=1) + "\n")
    write_text_atomic(job_dir / JOB, json.dumps({"settings": asdict(settings), "classes": list(classes)},
                                                indent=1) + "\n")
    return staged


def load_settings(job_dir: Path) -> tuple[JobSettings, list[str]]:
    """The job's settings and classes from job.json."""
    job = read_json(job_dir / JOB, "job")
    return JobSettings(**job["settings"]), list(job["classes"])


# ------------------------------------------------------------------------------------------ running it
def flow_overrides(job_dir: Path, settings: JobSettings, toloka_url: str | None, s3_url: str | None,
                   bucket: str | None) -> dict[str, str]:
    """The flow's ``--set`` params for this job (``toloka_url``/``s3_url``: the local servers, if any)."""
    overrides = {key: str(value) for key, value in settings.flow_params.items()}
    overrides.update({
        "toloka_env": toloka_url or settings.toloka_env, "token_env": settings.token_env,
        "config_dir": str(job_dir / "configs"), "project_key": settings.project_key, "mode": settings.mode,
        "overlap": str(settings.overlap), "method": settings.method, "s3_prefix": settings.s3_prefix})
    overrides.setdefault("dataset", "none")  # the boxes go to the caller; publish only when asked to
    if settings.mode.strip() == "overlap":
        overrides.setdefault("max_overlap", "none")
    # None: the flow's own value on Toloka; on the local Toloka no cap (play money) and a 1 s poll
    local_default: dict[str, str | float | None] = {"budget": "none", "poll_seconds": 1} if settings.local else {}
    for key, value in (("s3_bucket", bucket), ("s3_endpoint_url", s3_url or settings.s3_endpoint_url),
                       ("url_mode", settings.url_mode), ("budget", settings.budget),
                       ("poll_seconds", settings.poll_seconds)):
        value = local_default.get(key) if value is None else value
        if value is not None:
            overrides[key] = str(value)
    if (job_dir / TRUTH).is_file():
        overrides.setdefault("truth", str(job_dir / TRUTH))
    return overrides


def _write_status(job_dir: Path, status: str, error: str = "", pid: int | None = None,
                  parent_pid: int | None = None) -> None:
    """status.json: ``pid`` (default: this process) is the process the status lives with; ``parent_pid`` the
    process that started it in the background, while ``starting``."""
    record: dict[str, Any] = {"status": status, "error": error, "pid": os.getpid() if pid is None else pid,
                              "time": time.time()}
    if parent_pid is not None:
        record["parent_pid"] = parent_pid
    write_text_atomic(job_dir / STATUS, json.dumps(record) + "\n")


@contextmanager
def _status_lock(job_dir: Path) -> Iterator[None]:
    """Held while a status is read and changed: two starts of one job, or a start and the process it started,
    never both act on the same status."""
    with open(job_dir / STATUS_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _refuse_if_active(job_dir: Path, started_by: int | None = None) -> None:
    """CrowdboxesError in one line when a run of the job is starting or running; a background run passes
    ``started_by``, its starter's pid, to take over the ``starting`` record made for it."""
    current = job_status(job_dir)
    if current["status"] not in ACTIVE:
        return
    if started_by is not None and current["status"] == "starting" and current.get("parent_pid") == started_by:
        return
    raise CrowdboxesError(f"{job_dir}: this job is already {current['status']} (pid {current.get('pid')}); "
                          "wait for it to end, or stop that process, before starting it again")


def job_status(job_dir: Path) -> dict[str, Any]:
    """status.json: ``status`` starting | running | succeeded | failed, ``error`` (the failure's one line),
    ``pid`` (the process the status lives with: while ``starting`` in the background, the process started,
    once it is known), ``parent_pid`` (``starting`` only: the process that started it) and ``time``; only
    ``{"status": "not started"}`` before the first run. A job whose process died without a word (``kill -9``,
    a reboot, a background start that never got going) is ``stopped``: run it again."""
    path = job_dir / STATUS
    status = read_json(path, "job status") if path.is_file() else {"status": "not started"}
    if status["status"] in ACTIVE and not _alive(int(status.get("pid") or 0)):
        status["status"] = "stopped"
    return status


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and has not exited (a zombie, which its parent has not
    reaped yet, has)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: kill's answer stands
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # the state follows the ")" that ends the name


def run_job(job_dir: Path, started_by: int | None = None) -> None:
    """Run the flow for a prepared job (see the module docstring) and wait for it; status.json says how it
    ended. CrowdboxesError naming the log when the flow fails, or, changing nothing, when a run of the job is
    already starting or running (``started_by``: the pid of the :func:`start_job` that started this process
    in the background, whose ``starting`` record this run takes over)."""
    from crowdboxes import demo

    job_dir = job_dir.resolve()
    with _status_lock(job_dir):
        _refuse_if_active(job_dir, started_by)
        _write_status(job_dir, "running")
    try:
        settings, _ = load_settings(job_dir)
        if not settings.local and not settings.s3_bucket:
            raise CrowdboxesError(f"toloka_env {settings.toloka_env}: give s3_bucket, the bucket Toloka's workers "
                                  "load the images from")
        logs = job_dir / "logs"
        logs.mkdir(exist_ok=True)
        env = dict(os.environ)
        with ExitStack() as stack:
            toloka_url = s3_url = None
            bucket = settings.s3_bucket
            if settings.local:
                # The local Toloka takes whatever token it is started with: a throwaway one, by environment only.
                env.update(demo.FAKE_AWS)
                env[settings.token_env] = env.get(settings.token_env) or f"local-{secrets.token_hex(16)}"
                env["CROWDBOXES_DATASETS"] = str(job_dir / "datasets")
                s3_url = demo.start_server(stack, "local S3", ["local-s3", "--port", "0"], env,
                                            logs / "s3.ready", logs / "local_s3.log")
                demo.create_bucket(s3_url)
                bucket = demo.DEMO_BUCKET
                verifiers = settings.verification_workers
                truth = ["--ground-truth", str(job_dir / TRUTH)] if (job_dir / TRUTH).is_file() else []
                toloka_url = demo.start_server(
                    stack, "local Toloka",
                    ["local-toloka", "serve", "--host", "127.0.0.1", "--port", "0",
                     "--state", str(job_dir / "toloka-state" / time.strftime("%Y%m%d-%H%M%S")),
                     "--token-env", settings.token_env, *truth, "--seed", str(settings.seed),
                     "--workers", str(settings.workers), "--verification-workers",
                     str(settings.workers // 2 if verifiers is None else verifiers), "--speed", str(settings.speed)],
                    env, logs / "toloka.ready", logs / "local_toloka.log")
            command = [sys.executable, "-m", "crowdboxes", "flow", "run", str(demo.FLOW_YAML),
                       "--runs-dir", str(job_dir / "runs"), "--data", f"road_signs={job_dir / 'images'}"]
            for key, value in flow_overrides(job_dir, settings, toloka_url, s3_url, bucket).items():
                command += ["--set", f"{key}={value}"]
            with open(job_dir / FLOW_LOG, "ab") as log:
                flow = subprocess.run(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        if flow.returncode != 0:
            raise CrowdboxesError(f"the flow failed (exit {flow.returncode}); see {job_dir / FLOW_LOG}")
    except BaseException as exc:
        _write_status(job_dir, "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    _write_status(job_dir, "succeeded")


def start_job(job_dir: Path, wait: bool = True, python: str | None = None) -> int | None:
    """Run the job: in this process (``wait``), or as ``python -m crowdboxes.integrations.flow_job`` in the
    background (``python``: the interpreter, default this one), returning its pid (the flow then outlives the
    caller; :func:`job_status` is ``starting`` until that process runs, then ``running``, then ``succeeded``
    or ``failed``; ``stopped`` if it died first). CrowdboxesError in one line when a run of the job is already
    starting or running, or when the process cannot be started."""
    if wait:
        run_job(job_dir)
        return None
    job_dir = job_dir.resolve()
    starter = os.getpid()
    with _status_lock(job_dir):
        _refuse_if_active(job_dir)
        _write_status(job_dir, "starting", parent_pid=starter)  # lives with this process until the next is known
    command = [python or sys.executable, "-m", "crowdboxes.integrations.flow_job", str(job_dir),
               "--started-by", str(starter)]
    try:
        with open(job_dir / FLOW_LOG, "ab") as log:
            proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    except OSError as exc:
        error = f"cannot start {command[0]}: {exc.strerror}"
        with _status_lock(job_dir):
            _write_status(job_dir, "failed", error)
        raise CrowdboxesError(error) from None
    with _status_lock(job_dir):
        current = read_json(job_dir / STATUS, "job status")
        if current["status"] == "starting" and current.get("pid") == starter:  # not yet taken over by the run
            _write_status(job_dir, "starting", pid=proc.pid, parent_pid=starter)
    return proc.pid


# ------------------------------------------------------------------------------------------ reading it back
@dataclass
class ImageResult:
    """One staged image's outcome: pixel boxes of its size ``width`` x ``height``."""

    width: float
    height: float
    boxes: list[dict[str, Any]] = field(default_factory=list)  # label, x, y, w, h, score, support
    workers: list[dict[str, Any]] = field(default_factory=list)  # worker_id, label, x, y, w, h, round, status
    review: dict[str, float] = field(default_factory=dict)  # risk, expected_missed, expected_spurious


def task_output(job_dir: Path, slug: str) -> Path:
    """The output folder of the task ``slug``'s last successful run."""
    index = job_dir / "runs" / "latest.json"
    latest = read_json(index, "flow runs index") if index.is_file() else {}
    if slug not in latest:
        raise CrowdboxesError(f"{index}: no successful run of task {slug!r} yet (job status: "
                              f"{job_status(job_dir)['status']}; see {job_dir / FLOW_LOG})")
    return Path(latest[slug]) / "output"


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any, default: str) -> str:
    """A CSV cell as text, ``default`` when it is empty."""
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def read_outputs(job_dir: Path) -> tuple[dict[str, ImageResult], dict[str, str]]:
    """``(results, rejected)``: each uploaded image's :class:`ImageResult` by staged file name, and the
    reasons of the images Upload Images refused, by staged file name."""
    upload = task_output(job_dir, "upload_images")
    images = art.read_images(art.IMAGES.path(upload))
    rejected_path = art.REJECTED_IMAGES.path(upload)
    rejected = {} if not rejected_path.is_file() else {
        str(r.file_name): str(r.reason) for r in art.read_csv(rejected_path, art.REJECTED_IMAGES).itertuples()}
    name_of = {str(r.image_id): str(r.file_name) for r in images.itertuples()}
    results = {str(r.file_name): ImageResult(float(r.width), float(r.height)) for r in images.itertuples()}
    aggregate = task_output(job_dir, "aggregate_boxes")
    boxes = art.read_csv(art.BOXES.path(aggregate), art.BOXES, dtype={"image_id": str, "label": str})
    for b in boxes.itertuples():
        if str(b.image_id) in name_of:
            results[name_of[str(b.image_id)]].boxes.append(
                {"label": str(b.label), "x": float(b.x), "y": float(b.y), "w": float(b.w), "h": float(b.h),
                 "score": float(b.score), "support": int(b.support)})
    review = art.read_csv(art.IMAGES_REVIEW.path(aggregate), art.IMAGES_REVIEW, dtype={"image_id": str})
    for r in review.itertuples():
        if str(r.image_id) in name_of:
            results[name_of[str(r.image_id)]].review = {
                k: v for k in ("risk", "expected_missed", "expected_spurious")
                if (v := _number(getattr(r, k))) is not None}
    answers = art.read_csv(art.ANSWERS.path(task_output(job_dir, "wait_pool")), art.ANSWERS,
                           dtype={"image_id": str, "worker_id": str, "label": str})
    for a in answers.dropna(subset=["x", "y", "w", "h"]).itertuples():
        if str(a.image_id) in name_of:
            results[name_of[str(a.image_id)]].workers.append(
                {"worker_id": str(a.worker_id), "label": str(a.label), "x": float(a.x), "y": float(a.y),
                 "w": float(a.w), "h": float(a.h), "round": _text(getattr(a, "round", None), "drawing"),
                 "status": str(a.status)})
    return results, rejected


def main(argv: list[str] | None = None) -> int:
    """``python -m crowdboxes.integrations.flow_job <job folder> [--started-by PID]``: run a prepared job
    (``--started-by``: as :func:`start_job` starts it, taking over the ``starting`` record of process PID)."""
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m crowdboxes.integrations.flow_job <job folder> [--started-by PID]"
    if len(args) not in (1, 3) or (len(args) == 3 and (args[1] != "--started-by" or not args[2].isdigit())):
        raise CrowdboxesError(usage)
    run_job(Path(args[0]), int(args[2]) if len(args) == 3 else None)
    return 0


if __name__ == "__main__":
    from crowdboxes.cnvrg.stepkit import run_step

    raise SystemExit(run_step(main))
