"""Group ``bad inputs``: hostile file names, bad files, bad artifacts and bad params.

A refusal holds when the step exits non-zero with exactly one ``error:`` line (no traceback) and, before
anything is created, with zero Toloka write requests (``GET /_local/stats``), zero new Toloka objects, zero
new S3 objects and no dataset version. A bad image among good ones holds when it is listed in
``rejected_images.csv`` and not uploaded (the good ones are). Hostile file names hold when no CSV the flow
wrote has a cell a spreadsheet would run (``= + - @``, tab, CR first) and no user text became a stdout
tag or chart line. The last probe sweeps everything the bench run wrote, every S3 object and every output it
saw for the planted Toloka token and AWS secret.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .world import ROOT, BUCKET, Job, Probe, World, created_objects, diff, last_line, verdict

GROUP = "bad inputs"
HOSTILE = ["=1+2.jpg", "+1+1.jpg", "@SUM(1+1).jpg", "-2+3.jpg"]
NEWLINE_NAME = "a\ncnvrg_tag_images_uploaded: 31337\ncnvrg_linechart_x value: 5\n.jpg"
NEWLINE_BAD = "b\ncnvrg_tag_images_rejected: 31337\ncnvrg_linechart_y value: 5\n.jpg"
RSS_LIMIT_MB = 500.0
FORMULA_START = ("=", "+", "@", "\t", "\r")


def run_step(world: World, slug: str, out: Path, **params: str) -> tuple[int, str, float]:
    """``steps/<slug>.py`` as cnvrg runs it; (exit code, stdout+stderr, peak RSS in MB of that process)."""
    argv = [sys.executable, str(ROOT / "steps" / f"{slug}.py"), "--output_dir", str(out)]
    for key, value in params.items():
        argv += [f"--{key}", value]
    log = out.parent / f"{out.name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:
        proc = subprocess.Popen(argv, cwd=ROOT, env=world.env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    world.outputs.append(text)
    return proc.returncode, text, usage.ru_maxrss / 1024


def one_error_line(code: int, text: str) -> list[str]:
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    problems = []
    if code == 0:
        problems.append("exit 0")
    if "Traceback" in text:
        problems.append("a traceback")
    if len(errors) != 1:
        problems.append(f"{len(errors)} error: lines ({last_line(text)})")
    return problems


class Catalogue:
    """The base job whose artifacts the probes copy and spoil, and a fresh job with projects but no pool."""

    def __init__(self, world: World, base: Job) -> None:
        self.world, self.base = world, base
        self.folder = world.work / "bad-inputs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def out(self, name: str) -> Path:
        self.n += 1
        return self.folder / f"{self.n:02d}-{name}"

    def refusal(self, name: str, slug: str, params: dict[str, str], toloka: bool = True) -> Probe:
        """A step that must refuse in one line before anything is created."""
        started = time.monotonic()
        before = self.world.snapshot()
        out = self.out(slug)
        code, text, _ = run_step(self.world, slug, out, **params)
        change = diff(before, self.world.snapshot())
        problems = one_error_line(code, text)
        if toloka and change.get("writes"):
            problems.append(f"{int(change['writes'])} Toloka write requests")
        if created_objects(change):
            problems.append(f"{created_objects(change)} Toloka objects created")
        if change.get("s3"):
            problems.append(f"{int(change['s3'])} S3 objects")
        if change.get("versions"):
            problems.append("a dataset version published")
        written = [p.name for p in out.rglob("*") if p.is_file()] if out.is_dir() else []
        if code != 0 and written:
            problems.append(f"wrote {', '.join(sorted(written)[:3])}")
        return verdict(GROUP, name, problems, last_line(text), duplicates=created_objects(change),
                       seconds=time.monotonic() - started)


def _images(folder: Path, world: World, names: list[str]) -> Path:
    """A dataset folder holding copies of the first scenes under ``names``."""
    folder.mkdir(parents=True, exist_ok=True)
    scenes = sorted(world.scenes.glob("*.jpg"))
    for source, name in zip(scenes, names):
        shutil.copyfile(source, folder / name)
    return folder


def upload_params(world: World, job: Job, folder: Path, prefix: str) -> dict[str, str]:
    return {"images_dir": str(folder), "s3_bucket": BUCKET, "s3_prefix": prefix,
            "s3_endpoint_url": job.params["s3_endpoint_url"], "max_workers": "2"}


def bad_files(cat: Catalogue, name: str, make: Callable[[Path], str], rss: bool = False) -> Probe:
    """Two good scenes plus one bad file (made by ``make``, which returns its name): the bad one is rejected
    with a reason and not uploaded; the good ones are."""
    world, started = cat.world, time.monotonic()
    folder = _images(cat.folder / f"data-bad-{cat.n}", world, ["good1.jpg", "good2.jpg"])
    bad = make(folder)
    prefix = f"rel/bad-{cat.n}/"
    out = cat.out("upload")
    code, text, peak = run_step(world, "upload_images", out, **upload_params(world, cat.base, folder, prefix))
    keys = world.s3_keys(prefix)
    problems = []
    listed = out / "rejected_images.csv"
    rejected = listed.read_text(errors="replace") if listed.is_file() else ""
    if code == 0:
        if len(keys) != 2:
            problems.append(f"{len(keys)} S3 objects for 2 good images")
        if bad.split("/")[-1] not in rejected:
            problems.append(f"{bad} not in rejected_images.csv")
    else:
        problems += [p for p in one_error_line(code, text) if p != "exit 0"]
        if keys:
            problems.append(f"exit {code} after {len(keys)} S3 objects")
    if rss:
        (folder / bad).unlink()  # the sparse file: no later sweep reads it
    if rss and peak > RSS_LIMIT_MB:
        problems.append(f"peak memory {peak:.0f} MB")
    reason = f"rejected: {last_line(rejected)}" if code == 0 else last_line(text)
    reason += f"; peak {peak:.0f} MB" if rss else ""
    return verdict(GROUP, name, problems, reason, seconds=time.monotonic() - started)


def hostile_names(cat: Catalogue) -> list[Probe]:
    """The whole flow on scenes renamed to formula-like names and to a name with line breaks."""
    world, started = cat.world, time.monotonic()
    folder = cat.folder / "data-hostile"
    if folder.exists():
        shutil.rmtree(folder)
    _images(folder, world, [*HOSTILE, NEWLINE_NAME])
    (folder / NEWLINE_BAD).write_text("not an image\n")  # rejected: its name goes into a warning line
    job = world.new_job("overlap", data=folder)
    done = job.run(timeout=300)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        reason = f"the flow failed: {last_line(done.stdout)}"
        return [Probe(GROUP, "formula-like file names", "failed", reason, seconds=seconds),
                Probe(GROUP, "file name with line breaks", "failed", reason)]
    formulas, quoted, files = [], 0, set()
    escaped = {"'" + name for name in HOSTILE}
    for path in job.runs.rglob("*.csv"):
        for row in csv.reader(io.StringIO(path.read_text(errors="replace"))):
            formulas += [f"{path.name}: {cell[:20]!r}" for cell in row
                         if cell.startswith(FORMULA_START) or (cell.startswith("-") and cell[1:2] and not
                                                              (cell[1].isdigit() or cell[1] == "."))]
            hits = sum(cell in escaped for cell in row)
            quoted += hits
            files |= {path.name} if hits else set()
    if not formulas and not quoted:
        first = Probe(GROUP, "formula-like file names", "skipped", "no hostile name reached a CSV", seconds=seconds)
    else:
        first = verdict(GROUP, "formula-like file names", [f"{len(formulas)} formula cells, e.g. {formulas[0]}"]
                        if formulas else [], f"{quoted} cells neutralised in {', '.join(sorted(files))}",
                        seconds=seconds)
    injected = [line for line in done.stdout.splitlines()
                if "31337" in line and line.split("] ", 1)[-1].startswith(("cnvrg_tag_", "cnvrg_linechart_"))]
    injected += [str(p.relative_to(job.runs)) for p in job.runs.rglob("*.json")
                 if p.name in ("tags.json", "metrics.json") and "31337" in p.read_text(errors="replace")]
    rejections = (job.output("upload_images") / "rejected_images.csv").read_text(errors="replace")
    rejected = "images_uploaded: 31337" in rejections
    second = verdict(GROUP, "file name with line breaks", [f"injected: {injected[0][:100]}"] if injected else [],
                     "no tag or chart line from the name" + (" (Upload Images rejected it)" if rejected else ""))
    return [first, second]


def spoiled(cat: Catalogue, source: Path, name: str, edit: Callable[[str], str]) -> Path:
    """A copy of ``source`` (with its siblings, e.g. upload_summary.json) whose ``name`` file ``edit`` spoils."""
    folder = cat.folder / f"art-{cat.n}-{source.name}"
    cat.n += 1
    shutil.copytree(source, folder, dirs_exist_ok=True)
    target = folder / name
    target.write_text(edit(target.read_text()))
    return target


def _replace_column(text: str, column: str, value: str, first_only: bool = False) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    index = rows[0].index(column)
    for row in rows[1:2] if first_only else rows[1:]:
        row[index] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def artifact_probes(cat: Catalogue, fresh_projects: Path | None) -> list[Probe]:
    world, base = cat.world, cat.base
    up, wait = base.output("upload_images"), base.output("wait_pool")
    agg, pools = base.output("aggregate_boxes"), base.output("launch_pool")
    toloka = {"toloka_env": base.params["toloka_env"], "token_env": "toloka_token"}
    probes = []
    header = spoiled(cat, wait, "answers.csv", lambda t: t.splitlines()[0] + "\n")
    probes.append(cat.refusal("Aggregate Boxes: header-only answers", "aggregate_boxes",
                              {"answers_csv": str(header), "images_csv": str(up / "images.csv")}, toloka=False))
    rejected = spoiled(cat, wait, "answers.csv", lambda t: _replace_column(t, "status", "REJECTED"))
    probes.append(cat.refusal("Aggregate Boxes: all-REJECTED answers", "aggregate_boxes",
                              {"answers_csv": str(rejected), "images_csv": str(up / "images.csv")}, toloka=False))
    inf = spoiled(cat, agg, "boxes.csv", lambda t: _replace_column(t, "x", "inf", first_only=True))
    export = {"wait_summary": str(wait / "wait_summary.json"), "dataset": "reliability_bad", "formats": "coco"}
    probes.append(cat.refusal("Export: inf coordinate in boxes.csv", "export",
                              {"boxes_csv": str(inf), "images_csv": str(up / "images.csv"), **export}, toloka=False))
    zero = spoiled(cat, up, "images.csv", lambda t: _replace_column(t, "width", "0", first_only=True))
    probes.append(cat.refusal("Export: width=0 in images.csv", "export",
                              {"boxes_csv": str(agg / "boxes.csv"), "images_csv": str(zero), **export}, toloka=False))
    if fresh_projects is None:
        probes.append(Probe(GROUP, "Launch Pool probes", "skipped", "no fresh projects.csv"))
    else:
        launch = {**toloka, "projects_csv": str(fresh_projects), "config_dir": "configs", "budget": "none"}
        probes.append(cat.refusal("Launch Pool: width=0 in images.csv", "launch_pool",
                                  {**launch, "images_csv": str(zero)}))
        half = spoiled(cat, up, "images.csv", lambda t: "\n".join(t.splitlines()[:1 + world.count // 2]) + "\n")
        probes.append(cat.refusal("Launch Pool: truncated images.csv", "launch_pool",
                                  {**launch, "images_csv": str(half)}))
        cut = spoiled(cat, up, "images.csv", lambda t: t[:len(t) * 2 // 3])
        probes.append(cat.refusal("Launch Pool: images.csv cut mid-row", "launch_pool",
                                  {**launch, "images_csv": str(cut)}))
        skills = fresh_projects.parent / "projects-unknown-skills.csv"
        rows = list(csv.reader(io.StringIO(fresh_projects.read_text())))
        for row in rows[1:]:
            if row[0].endswith("_skill"):
                row[1] = str(900000 + len(row[0]))
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        skills.write_text(buffer.getvalue())
        probes.append(cat.refusal("Launch Pool: unknown skill ids", "launch_pool",
                                  {**launch, "projects_csv": str(skills), "images_csv": str(up / "images.csv")}))
    wait_params = {**toloka, "projects_csv": str(base.output("create_project") / "projects.csv"),
                   "images_csv": str(up / "images.csv"), "pool_csv": str(pools / "pool.csv"),
                   "tasks_csv": str(pools / "tasks.csv"), "poll_seconds": "1", "timeout_hours": "0.05"}
    bogus = spoiled(cat, pools, "pool.csv", lambda t: _replace_column(t, "mode", "bogus"))
    probes.append(cat.refusal("Wait Pool: pool.csv mode=bogus", "wait_pool", {**wait_params, "pool_csv": str(bogus)}))
    probes.append(cat.refusal("Wait Pool: --timeout_hours -1", "wait_pool", {**wait_params, "timeout_hours": "-1"}))
    return probes


def upload_probes(cat: Catalogue) -> list[Probe]:
    world, base = cat.world, cat.base
    folder = _images(cat.folder / "data-two", world, ["good1.jpg", "good2.jpg"])
    probes = [cat.refusal("Upload Images: --s3_prefix ../evil/", "upload_images",
                          upload_params(world, base, folder, "../evil/"), toloka=False)]

    def truncated(folder: Path) -> str:
        data = (folder / "good1.jpg").read_bytes()
        (folder / "truncated.jpg").write_bytes(data[:len(data) // 3])
        return "truncated.jpg"

    def zero(folder: Path) -> str:
        (folder / "zero.jpg").write_bytes(b"")
        return "zero.jpg"

    def text(folder: Path) -> str:
        (folder / "text.jpg").write_text("this is not a JPEG\n" * 50)
        return "text.jpg"

    def symlink(folder: Path) -> str:
        outside = cat.folder / "outside.jpg"
        shutil.copyfile(sorted(world.scenes.glob("*.jpg"))[3], outside)
        (folder / "link.jpg").unlink(missing_ok=True)
        (folder / "link.jpg").symlink_to(outside)
        return "link.jpg"

    def sparse(folder: Path) -> str:
        with open(folder / "huge.jpg", "wb") as sink:
            sink.write((folder / "good1.jpg").read_bytes()[:4096])
            sink.truncate(1536 * 1024 * 1024)
        return "huge.jpg"

    for name, make in (("truncated .jpg", truncated), ("zero-byte .jpg", zero), ("text named .jpg", text),
                       ("symlink out of the folder", symlink)):
        probes.append(bad_files(cat, f"Upload Images: {name}", make))
    probes.append(bad_files(cat, "Upload Images: 1.5 GB sparse .jpg", sparse, rss=True))
    return probes


def empty_dataset(cat: Catalogue) -> Probe:
    world, started = cat.world, time.monotonic()
    empty = cat.folder / "data-empty"
    empty.mkdir(exist_ok=True)
    job = world.new_job(data=empty)
    before = world.snapshot()
    done = job.run(timeout=120)
    change = diff(before, world.snapshot())
    problems = [] if done.returncode != 0 else ["the flow succeeded"]
    if not any(line.split("] ", 1)[-1].startswith("error:") for line in done.stdout.splitlines()):
        problems.append("no error: line")
    for kind in ("writes", "s3"):
        if change.get(kind):
            problems.append(f"{int(change[kind])} {'Toloka write requests' if kind == 'writes' else 'S3 objects'}")
    return verdict(GROUP, "whole flow: empty dataset", problems, "refused before anything was created",
                   duplicates=created_objects(change), seconds=time.monotonic() - started)


def pasted_token(cat: Catalogue) -> list[Probe]:
    world, base = cat.world, cat.base
    before = world.snapshot()
    out = cat.out("create_project")
    code, text, _ = run_step(world, "create_project", out, toloka_env=base.params["toloka_env"],
                             token_env=world.token, config_dir="configs", project_key=base.key)
    problems = one_error_line(code, text)
    if world.token in text:
        problems.append("the token is in the output")
    if diff(before, world.snapshot()).get("writes"):
        problems.append("Toloka writes")
    first = verdict(GROUP, "Create Project: token pasted into --token_env", problems, last_line(text))
    job = world.new_job()
    done = job.run(timeout=120, token_env=world.token)
    leaked = [str(p.relative_to(job.runs)) for p in job.runs.rglob("*") if p.is_file()
              and world.token in p.read_text(errors="replace")]
    problems = ([] if done.returncode != 0 else ["the flow ran"]) + (["the token is in the output"]
                                                                     if world.token in done.stdout else [])
    problems += [f"the token is in {leaked[0]}"] if leaked else []
    second = verdict(GROUP, "flow run: token pasted into token_env", problems, last_line(done.stdout))
    return [first, second]


def planted_secrets(world: World) -> Probe:
    """The planted token and AWS secret in no file under the work folder, no S3 object, no output seen."""
    needles = [world.token.encode(), world.aws_secret.encode()]
    found = []
    for path in world.work.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 200 * 1024 * 1024:
            data = path.read_bytes()
            found += [str(path.relative_to(world.work)) for needle in needles if needle in data]
    assert world.s3 is not None
    client = world.s3.client()
    keys = world.s3_keys()
    for key in keys:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        found += [f"s3://{key}" for needle in needles if needle in body]
    found += ["a step's output" for text in world.outputs for needle in needles if needle.decode() in text]
    files = sum(1 for p in world.work.rglob("*") if p.is_file())
    return verdict(GROUP, "planted token and AWS secret", [f"found in {len(found)} places, e.g. {found[0]}"]
                   if found else [], f"absent from {files} files, {len(keys)} S3 objects, {len(world.outputs)} outputs")


def bad_inputs(world: World, quick: bool, base: Job | None) -> list[Probe]:
    if base is None:
        return [Probe(GROUP, "bad inputs", "skipped", "no finished base run")]
    cat = Catalogue(world, base)
    if quick:
        probes = [cat.refusal("Wait Pool: --timeout_hours -1", "wait_pool", {
            "toloka_env": base.params["toloka_env"], "token_env": "toloka_token",
            "projects_csv": str(base.output("create_project") / "projects.csv"),
            "images_csv": str(base.output("upload_images") / "images.csv"),
            "pool_csv": str(base.output("launch_pool") / "pool.csv"),
            "tasks_csv": str(base.output("launch_pool") / "tasks.csv"), "timeout_hours": "-1"})]
        return probes + [planted_secrets(world)]
    fresh = world.new_job()
    code, text, _ = run_step(world, "create_project", fresh.folder / "create_project",
                             toloka_env=fresh.params["toloka_env"], token_env="toloka_token", config_dir="configs",
                             project_key=fresh.key)
    fresh_projects = fresh.folder / "create_project" / "projects.csv" if code == 0 else None
    probes = upload_probes(cat) + artifact_probes(cat, fresh_projects) + hostile_names(cat)
    probes += [empty_dataset(cat), *pasted_token(cat), planted_secrets(world)]
    return probes
