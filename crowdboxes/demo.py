"""``python -m crowdboxes demo``: the whole flow on the local Toloka, scored against the truth.

What it does, in order:

1. generates synthetic street scenes with their true boxes (``crowdboxes synth``), or links the first
   ``--count`` photos of a Pascal VOC folder (``--images``, e.g. the road-sign sample);
2. starts a local S3-compatible store (moto, loopback) and the local Toloka with a simulated crowd
   that knows the true boxes;
3. runs ``traffic_signs_annotation.yaml`` with the local flow runner, pointing the steps at those
   servers through param overrides (the YAML itself is the one users import in cnvrg);
4. stops the servers and prints where the COCO file is and its quality against the truth.

Nothing here is needed on cnvrg; it is the rehearsal and the product's end-to-end check.

Two demos may share one ``--workdir``: each has its own run tag (:func:`run_tag`: time, process id and a
random suffix), so its own servers' ready files and state (``logs/<tag>``, ``toloka-state/<tag>``), its own
flow runs (``runs/<tag>``, whose index is copied to ``runs/latest.json`` when the flow is done), project key
and S3 prefix. Synthetic scenes are generated beside their folder and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from crowdboxes.artifacts import COCO_EXPORT
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import write_text_atomic

from crowdboxes.cnvrg.stepkit import run_step

REPO_ROOT = Path(__file__).resolve().parent.parent
FLOW_YAML = REPO_ROOT / "traffic_signs_annotation.yaml"
DEMO_BUCKET = "crowdboxes-demo"
# moto accepts any credentials; these are placeholders, not secrets.
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "local-demo", "AWS_SECRET_ACCESS_KEY": "local-demo-key",
            "AWS_DEFAULT_REGION": "us-east-1"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m crowdboxes demo", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="synthetic images to annotate (default 40)")
    parser.add_argument("--seed", type=int, default=7, help="seed for the scenes and the crowd")
    parser.add_argument("--workers", type=int, default=40, help="simulated crowd size")
    parser.add_argument("--verification-workers", type=int, default=None,
                        help="extra workers who only verify (default: half of --workers). The verification pool "
                             "excludes everyone who drew, and in a small crowd everyone soon draws; on Toloka "
                             "short checking tasks draw their own crowd")
    parser.add_argument("--speed", type=float, default=200.0,
                        help="how many times faster than real time the crowd works")
    parser.add_argument("--mode", default="overlap", help="overlap, verify or overlap+verify")
    parser.add_argument("--overlap", default=None,
                        help="drawers per image in overlap modes (default 7 for overlap: it keeps AP50 >= 0.85 on the "
                             "default scenes run after run; 3 for overlap+verify, where every drawing is also "
                             "verified and redrawn, and each redraw needs a worker who has not drawn that image)")
    parser.add_argument("--max-overlap", default="none",
                        help="overlap mode: Wait Pool's adaptive overlap raises uncertain images up to this many "
                             "drawers (none = a fixed --overlap). Measured on the default scenes with --overlap 3 "
                             "--max-overlap 7: AP50 0.80-0.89 (mean 0.85, 5 runs) for 4.1 drawers per image")
    parser.add_argument("--rounds", default=None,
                        help="overlap mode: Wait Pool's extra rounds, none or a comma list of missed_signs (a new worker "
                             "adds the signs the drawers missed) and box_check (a short check of each uncertain box); "
                             "default: the flow's")
    parser.add_argument("--max-attempts", default=None,
                        help="drawings per image slot in the verify modes (default 5 for verify, the flow's 3 for "
                             "overlap+verify): the scenes are busy, so about half of all drawings miss or mislabel "
                             "a sign and are rejected; with 3 tries a quarter of the images ended without any "
                             "accepted drawing")
    parser.add_argument("--method", default="auto",
                        help="aggregation method (auto: best_verified in mode verify, else lean_em)")
    parser.add_argument("--budget", default="none",
                        help="spending cap in USD for the rehearsal (none: the local balance is play money)")
    parser.add_argument("--images", default=None,
                        help="a Pascal VOC folder (annotations/*.xml + images/, e.g. the road-sign sample) to "
                             "annotate instead of synthetic scenes: its first --count photos, linked, not copied")
    parser.add_argument("--workdir", default=".demo", help="where scenes, server state and runs go")
    parser.add_argument("--config-dir", default=None,
                        help="your own copy of configs/ (project, pool and skill JSON) for Create Project and Launch "
                             "Pool (default: the repository's configs/)")
    parser.add_argument("--label-map", default=None,
                        help="JSON text or a JSON file {truth class: label value}: when the detection project's view "
                             "names its labels differently from the truth's classes (e.g. {\"stop\": \"sign_stop\"}). "
                             "The local Toloka's crowd answers with the mapped values and the score maps them back")
    parser.add_argument("--min-ap50", type=float, default=None,
                        help="exit non-zero when AP50 ends below this (used by the tests)")
    return parser


def start_server(stack: ExitStack, name: str, args: list[str], env: dict, ready_file: Path,
                  log_path: Path, timeout: float = 60.0) -> str:
    """Start ``python -m crowdboxes <args>`` and return the URL it writes into ``ready_file``."""
    ready_file.unlink(missing_ok=True)
    log = stack.enter_context(open(log_path, "wb"))
    proc = subprocess.Popen([sys.executable, "-m", "crowdboxes", *args, "--ready-file", str(ready_file)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    stack.callback(stop)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists() and (url := ready_file.read_text().strip()):
            return url
        if proc.poll() is not None:
            raise CrowdboxesError(f"{name} exited with code {proc.returncode} before it was ready; see {log_path}")
        time.sleep(0.1)
    raise CrowdboxesError(f"{name} was not ready after {timeout:.0f} s; see {log_path}")


def create_bucket(endpoint_url: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint_url, **{k.lower(): v for k, v in FAKE_AWS.items()
                                                         if k != "AWS_DEFAULT_REGION"},
                      region_name=FAKE_AWS["AWS_DEFAULT_REGION"])
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if DEMO_BUCKET not in existing:
        s3.create_bucket(Bucket=DEMO_BUCKET)


def _voc_subset(folder: Path, out_root: Path, count: int) -> tuple[Path, Path]:
    """(images folder, truth COCO) for the first ``count`` photos of a VOC folder, as symlinks."""
    from crowdboxes.evaluation.truth import natural_key, voc_folder_to_coco, write_coco

    folder = folder.resolve()
    ann_dir = folder / "annotations" if (folder / "annotations").is_dir() else folder
    img_dir = folder / "images" if (folder / "images").is_dir() else folder
    xml_files = sorted(ann_dir.glob("*.xml"), key=natural_key)[:count]
    if not xml_files:
        raise CrowdboxesError(f"--images {folder}: no Pascal VOC .xml files in {ann_dir}")
    subset = out_root / f"{folder.name}-n{len(xml_files)}"
    truth_path = subset / "truth.coco.json"
    if truth_path.is_file():
        return subset, truth_path
    for name in ("annotations", "images"):
        (subset / name).mkdir(parents=True, exist_ok=True)
    for xml_path in xml_files:
        link = subset / "annotations" / xml_path.name
        if not link.exists():
            link.symlink_to(xml_path)
        for image in img_dir.glob(xml_path.stem + ".*"):
            if not (subset / "images" / image.name).exists():
                (subset / "images" / image.name).symlink_to(image)
    write_coco(voc_folder_to_coco(subset), truth_path)
    return subset, truth_path


def run_tag(now: float | None = None, pid: int | None = None, suffix: str | None = None) -> str:
    """This demo's tag, ``YYYYmmdd-HHMMSS-<pid>-<6 hex>`` (UTC): unique to the run even when two demos start
    in the same second in one workdir (the pid), or on two machines sharing it (the random suffix)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{os.getpid() if pid is None else pid}-{suffix if suffix is not None else secrets.token_hex(3)}"


def _generate_scenes(scenes: Path, count: int, seed: int, tag: str) -> None:
    """``crowdboxes synth`` into a staging folder renamed to ``scenes``: a concurrent demo never reads half."""
    staging = scenes.parent / f".{scenes.name}.{tag}"
    subprocess.run([sys.executable, "-m", "crowdboxes", "synth", "--count", str(count), "--seed", str(seed),
                    "--out", str(staging)], check=True, cwd=REPO_ROOT)
    try:
        os.rename(staging, scenes)
    except OSError:  # another demo renamed the same scenes into place first: use those
        if not (scenes / "truth.coco.json").is_file():
            raise
        shutil.rmtree(staging, ignore_errors=True)


def _publish_index(own_runs: Path, shared_runs: Path) -> None:
    """Copy this demo's ``latest.json`` to ``runs/latest.json`` (where tools and ``flow run --only`` look)."""
    index = own_runs / "latest.json"
    if index.is_file():
        write_text_atomic(shared_runs / "latest.json", index.read_text())


def _latest_output(runs_dir: Path, slug: str) -> Path:
    index = runs_dir / "latest.json"
    if not index.is_file():
        raise CrowdboxesError(f"the flow runner left no {index}")
    latest = json.loads(index.read_text())
    if slug not in latest:
        raise CrowdboxesError(f"{index}: no successful run of task {slug!r}")
    return Path(latest[slug]) / "output"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.count < 1:
        raise CrowdboxesError(f"--count {args.count}: need at least one image")
    verification_workers = args.workers // 2 if args.verification_workers is None else args.verification_workers
    if verification_workers < 0:
        raise CrowdboxesError(f"--verification-workers {verification_workers}: must be 0 or more")
    if args.rounds not in (None, "none") and args.mode.strip() != "overlap":
        raise CrowdboxesError(f"--rounds {args.rounds}: the rounds run in --mode overlap only, not {args.mode}")
    from crowdboxes.toloka.fields import inverse_label_map, read_label_map

    label_map = read_label_map(args.label_map)
    inverse_label_map(label_map)  # refuse a map that cannot be read back before anything starts
    config_dir = None
    if args.config_dir is not None:
        config_dir = Path(args.config_dir).resolve()  # the flow runs in the repository: make it absolute
        if not config_dir.is_dir():
            raise CrowdboxesError(f"--config-dir {args.config_dir}: not a folder")
    started = time.monotonic()
    workdir = (REPO_ROOT / args.workdir).resolve() if not Path(args.workdir).is_absolute() else Path(args.workdir)
    tag = run_tag()
    scenes = workdir / "scenes" / f"seed{args.seed}-n{args.count}"
    runs_dir = workdir / "runs" / tag
    state_dir = workdir / "toloka-state" / tag
    logs = workdir / "logs" / tag
    for folder in (runs_dir, state_dir, logs):
        folder.mkdir(parents=True, exist_ok=True)

    truth_path = scenes / "truth.coco.json"
    if args.images:
        scenes, truth_path = _voc_subset(Path(args.images), workdir / "scenes", args.count)
    elif not truth_path.is_file():
        print(f"[demo] generating {args.count} synthetic scenes in {scenes}", flush=True)
        scenes.parent.mkdir(parents=True, exist_ok=True)
        _generate_scenes(scenes, args.count, args.seed, tag)

    # The local Toloka accepts whatever token it is started with: reuse the caller's or make a throwaway
    # one. It travels by environment only, never as an argument.
    token = os.environ.get("toloka_token") or f"local-{secrets.token_hex(16)}"
    env = {**os.environ, **FAKE_AWS, "toloka_token": token,
           "CROWDBOXES_DATASETS": str(workdir / "datasets")}
    serve_extra = []
    if label_map:
        map_path = logs / "label_map.json"
        map_path.write_text(json.dumps(label_map, indent=1) + "\n")
        serve_extra = ["--label-map", str(map_path)]
    with ExitStack() as stack:
        print("[demo] starting the local S3 store and the local Toloka", flush=True)
        s3_url = start_server(stack, "local S3", ["local-s3", "--port", "0"], env,
                               logs / "s3.ready", logs / "local_s3.log")
        create_bucket(s3_url)
        toloka_url = start_server(
            stack, "local Toloka",
            ["local-toloka", "serve", "--host", "127.0.0.1", "--port", "0", "--state", str(state_dir),
             "--token-env", "toloka_token", "--ground-truth", str(truth_path), "--seed", str(args.seed),
             "--workers", str(args.workers), "--verification-workers", str(verification_workers),
             "--speed", str(args.speed), *serve_extra],
            env, logs / "toloka.ready", logs / "local_toloka.log")
        print(f"[demo] local Toloka at {toloka_url}, S3 at {s3_url}", flush=True)

        overrides = {
            "toloka_env": toloka_url, "s3_endpoint_url": s3_url, "s3_bucket": DEMO_BUCKET,
            "s3_prefix": f"demo/{tag}/", "mode": args.mode,
            "overlap": args.overlap or ("3" if args.mode.strip() == "overlap+verify" else "7"),
            "method": args.method, "poll_seconds": "1", "project_key": f"demo-{tag}",
            "budget": args.budget, "truth": str(truth_path),  # the report shows quality against it
        }
        if config_dir is not None:
            overrides["config_dir"] = str(config_dir)
        if args.mode.strip() == "overlap":
            overrides["max_overlap"] = args.max_overlap
            if args.rounds is not None:
                overrides["rounds"] = args.rounds
        max_attempts = args.max_attempts or ("5" if args.mode.strip() == "verify" else None)
        if max_attempts:
            overrides["max_attempts"] = max_attempts
        command = [sys.executable, "-m", "crowdboxes", "flow", "run", str(FLOW_YAML),
                   "--runs-dir", str(runs_dir), "--data", f"road_signs={scenes}"]
        for key, value in overrides.items():
            command += ["--set", f"{key}={value}"]
        flow = subprocess.run(command, env=env, cwd=REPO_ROOT)
        _publish_index(runs_dir, runs_dir.parent)
        if flow.returncode != 0:
            raise CrowdboxesError(f"the flow failed (exit {flow.returncode}); logs under {runs_dir}")

    coco_path = COCO_EXPORT.path(_latest_output(runs_dir, "export"))
    if not coco_path.is_file():
        raise CrowdboxesError(f"the export step wrote no {coco_path}")
    from crowdboxes.evaluation.metrics import evaluate_coco_files

    metrics = evaluate_coco_files(str(coco_path), str(truth_path), label_map=label_map)
    minutes = (time.monotonic() - started) / 60
    print()
    print(f"COCO annotations: {coco_path}")
    print(f"quality vs synthetic truth ({metrics['n_true']} true boxes, {metrics['n_pred']} predicted): "
          f"AP50 {metrics['AP50']:.3f}  AP {metrics['AP']:.3f}  mean IoU {metrics['mean_iou']:.3f}  "
          f"recall {metrics['recall']:.3f}  precision {metrics['precision']:.3f}")
    print(f"wall time {minutes:.1f} min")
    summary = json.dumps({"coco": str(coco_path), "truth": str(truth_path), "run_tag": tag,
                          "config_dir": str(config_dir or REPO_ROOT / "configs"), "label_map": label_map, **metrics},
                         indent=2, default=float)
    write_text_atomic(logs / "last_demo.json", summary)  # this demo's own; the workdir's is the latest demo's
    write_text_atomic(workdir / "last_demo.json", summary)
    if args.min_ap50 is not None and metrics["AP50"] < args.min_ap50:
        raise CrowdboxesError(f"AP50 {metrics['AP50']:.3f} is below the required {args.min_ap50}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_step(main))
