"""Export's logic: read the boxes, images and wait summary, write the export files, publish them.

``steps/export.py`` parses the params into :class:`ExportOptions` and calls :func:`export`. The COCO
document, flat CSV and summary are built by :mod:`crowdboxes.export.annotations`, the other formats
(``--formats``: detections.json, YOLO, Pascal VOC, CVAT XML) by :mod:`crowdboxes.export.formats`; dataset
versions (cnvrg or the local store) by :mod:`crowdboxes.cnvrg.datasets`. A dataset version holds flat files
only, so the folder formats are published as one archive, formats.zip. With ``--archive`` the job's pools (and
projects) are archived on Toloka last, by :mod:`crowdboxes.toloka.archive`; what blocks is a warning, the export
stands.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from crowdboxes.artifacts import (ANSWERS, BOXES, COCO_EXPORT, CVAT_EXPORT, DETECTIONS_EXPORT, EXPORT_SUMMARY,
                                  FIFTYONE_EXPORT, FLAT_EXPORT, FORMATS_ARCHIVE, IMAGES_REVIEW, QC_SUMMARY, REPORT,
                                  VOC_EXPORT, WORKERS, YOLO_EXPORT, read_csv, read_frame_csv, read_images,
                                  require_finite, require_numeric, write_frame_csv)
from crowdboxes.cnvrg.datasets import check_slug, content_digest, publish
from crowdboxes.cnvrg.metrics import cnvrg_tag, one_line
from crowdboxes.cnvrg.stepkit import output_dir
from crowdboxes.errors import CrowdboxesError
from crowdboxes.export import annotations as ex
from crowdboxes.export import formats as fm
from crowdboxes.files import read_json_object, write_text_atomic

MAX_WARNINGS = 20


@dataclass(frozen=True)
class ExportOptions:
    """Export's params as ``steps/export.py`` parses them (None = the word none; meanings are there)."""

    toloka_env: str
    token_env: str
    output_dir: str | None
    boxes_csv: str
    images_csv: str
    wait_summary: str | None
    dataset: str | None
    dataset_root: str | None
    min_score: float
    formats: str = fm.DEFAULT_FORMATS
    truth: str | None = None
    archive: str = "none"


def read_wait_summary(path: str | Path | None) -> dict[str, Any] | None:
    """Wait Pool's wait_summary.json (None: not given); CrowdboxesError when it is not an object or its
    ``spent_usd`` is not a number."""
    if path is None:
        return None
    data = read_json_object(path)
    spent = data.get("spent_usd")
    if spent is not None and (not isinstance(spent, (int, float)) or not math.isfinite(spent)):
        raise CrowdboxesError(f"{path}: field 'spent_usd': {data['spent_usd']!r} is not a number")
    return data


def read_inputs(options: ExportOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """boxes.csv and images.csv (:func:`crowdboxes.artifacts.read_images`), numbers checked (finite), every box
    on an image of images.csv."""
    boxes = read_csv(options.boxes_csv, BOXES, dtype={"image_id": str, "label": str})
    require_numeric(boxes, options.boxes_csv, ("x", "y", "w", "h", "score", "support"))
    require_finite(boxes, options.boxes_csv, ("x", "y", "w", "h", "score", "support"))  # JSON has no Infinity
    images = read_images(options.images_csv)
    unknown = ~boxes["image_id"].isin(set(images["image_id"]))
    if unknown.any():
        row = int(unknown.to_numpy().nonzero()[0][0])
        raise CrowdboxesError(f"{options.boxes_csv}: row {row + 2}, field 'image_id': "
                              f"{boxes['image_id'].iloc[row]!r} is not in {options.images_csv}")
    return boxes, images


def write_exports(out: Path, boxes: pd.DataFrame, images: pd.DataFrame, wait_summary: dict[str, Any] | None,
                  options: ExportOptions) -> dict[str, Any]:
    """Write annotations.coco.json, annotations.csv, the chosen ``--formats`` and summary.json (each file
    atomically, each folder format swapped in whole); the summary."""
    cats = ex.categories(ex.project_labels(wait_summary, options.wait_summary))
    kept, problems = ex.select_boxes(boxes, options.min_score, cats)
    for problem in problems[:MAX_WARNINGS]:
        print(f"warning: {one_line(problem)}", file=sys.stderr)
    coco = ex.coco_document(kept, images, cats=cats, created=inputs_time(options, wait_summary))
    chosen = fm.parse_formats(options.formats)
    if {"yolo", "voc", "fiftyone"} & set(chosen):
        fm.label_stems(coco)  # two images sharing a label file fail before any file is rewritten
    write_json(COCO_EXPORT.path(out), coco, indent=1)
    write_frame_csv(ex.flat_frame(kept, images, cats), FLAT_EXPORT.path(out))
    written = write_formats(out, coco, chosen)
    summary = ex.summary(kept, images, wait_summary, options.min_score)
    summary["dropped_low_score"] = int((boxes["score"] < options.min_score).sum())
    summary["dropped_unknown_class"] = len(problems)
    summary["formats"] = written
    write_summary(out, summary)
    return summary


def inputs_time(options: ExportOptions, wait_summary: dict[str, Any] | None) -> str:
    """COCO's ``date_created``, taken from the inputs so that a re-export of the same inputs is byte-identical:
    when Wait Pool finished (its summary's ``finished_at``), else boxes.csv's modification time (UTC)."""
    finished = (wait_summary or {}).get("finished_at")
    if isinstance(finished, str) and finished:
        return finished
    stamp = Path(options.boxes_csv).stat().st_mtime
    return dt.datetime.fromtimestamp(int(stamp), dt.timezone.utc).isoformat(timespec="seconds")


# summary.json fields that change on every run of the same inputs: left out of the published content digest
VOLATILE_SUMMARY_FIELDS = ("wall_time_seconds", "dataset")


def publish_digest(files: list[Path]) -> str:
    """The content digest Export publishes under (:func:`crowdboxes.cnvrg.datasets.content_digest`), with
    summary.json hashed without :data:`VOLATILE_SUMMARY_FIELDS`: identical inputs, identical digest."""
    summary_path = EXPORT_SUMMARY.path(files[0].parent)
    steady = {k: v for k, v in read_json_object(summary_path).items() if k not in VOLATILE_SUMMARY_FIELDS}
    text = json.dumps(steady, sort_keys=True, allow_nan=False).encode()
    return content_digest(files, {summary_path.name: hashlib.sha256(text).hexdigest()})


def write_json(path: Path, data: Any, indent: int) -> None:
    """``data`` as strict JSON (no NaN or Infinity, which JSON readers refuse), atomically; CrowdboxesError
    naming the file otherwise."""
    try:
        text = json.dumps(data, indent=indent, allow_nan=False)
    except ValueError as exc:
        raise CrowdboxesError(f"{path}: not written: {exc} (a NaN or infinite number reached it)") from None
    write_text_atomic(path, text + "\n")


def write_formats(out: Path, coco: dict[str, Any], chosen: tuple[str, ...]) -> dict[str, str]:
    """The chosen formats beside the COCO file (format -> its path relative to ``out``); YOLO, VOC and CVAT
    also go into formats.zip for the dataset version. A format left out leaves no old copy behind."""
    written = {"coco": COCO_EXPORT.file_name}
    targets = {"detections": DETECTIONS_EXPORT, "yolo": YOLO_EXPORT, "voc": VOC_EXPORT, "cvat": CVAT_EXPORT,
               "fiftyone": FIFTYONE_EXPORT}
    folders = {"yolo": fm.write_yolo, "voc": fm.write_voc, "fiftyone": fm.write_fiftyone}
    for name, artifact in targets.items():
        path = artifact.path(out)
        if name not in chosen:
            if path.is_dir():
                shutil.rmtree(path)
            path.unlink(missing_ok=True)
        elif name in folders:
            with fm.fresh_folder(path) as staging:
                folders[name](coco, staging)
        else:
            (fm.write_detections if name == "detections" else fm.write_cvat)(coco, path)
        if name in chosen:
            written[name] = artifact.file_name
    packed = [targets[name].file_name for name in ("yolo", "voc", "cvat", "fiftyone") if name in chosen]
    if packed:
        fm.zip_paths(out, packed, FORMATS_ARCHIVE.path(out))
    else:
        FORMATS_ARCHIVE.path(out).unlink(missing_ok=True)
    return written


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """summary.json in the output folder."""
    write_json(EXPORT_SUMMARY.path(out), summary, indent=2)


def _beside(path: Path, what: str) -> pd.DataFrame | None:
    """A CSV another step wrote (for the report only): None when it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        return read_frame_csv(path, dtype={"image_id": str, "worker_id": str, "file_name": str})
    except Exception as exc:  # noqa: BLE001 - the report shows less; the export itself goes on
        print(one_line(f"warning: report: {what} {path} unreadable ({type(exc).__name__}); left out"), file=sys.stderr)
        return None


def read_truth(path: str | None) -> pd.DataFrame | None:
    """``--truth``'s true boxes (``image_id, file_name, label, x, y, w, h``), or None; one line if unreadable."""
    if path is None:
        return None
    from crowdboxes.evaluation.truth import load_coco, truth_boxes

    try:
        return truth_boxes(load_coco(path))
    except CrowdboxesError:
        raise
    except Exception as exc:  # a file that is not a COCO document: say which and why, in one line
        raise CrowdboxesError(f"--truth {path}: not a COCO file of true boxes ({type(exc).__name__}: {exc})") from None


def write_run_report(out: Path, boxes: pd.DataFrame, images: pd.DataFrame, wait_summary: dict[str, Any] | None,
                     options: ExportOptions, truth: pd.DataFrame | None = None) -> Path | None:
    """report.html (:func:`crowdboxes.export.report.write_report`) from every candidate box and what the
    other steps left beside their outputs: answers.csv and qc_summary.json beside wait_summary.json,
    workers.csv and images_review.csv beside boxes.csv. A report that cannot be written is one warning:
    the export files are already written and stay."""
    from crowdboxes.export.report import write_report

    REPORT.path(out).unlink(missing_ok=True)  # a report that fails now must not leave an older run's behind
    aggregate_dir = Path(options.boxes_csv).parent
    wait_dir = Path(options.wait_summary).parent if options.wait_summary is not None else None
    answers = _beside(ANSWERS.path(wait_dir), "answers") if wait_dir is not None else None
    banned = None
    if wait_dir is not None and QC_SUMMARY.path(wait_dir).is_file():
        try:
            banned = dict(read_json_object(QC_SUMMARY.path(wait_dir)).get("banned_workers") or {})
        except (CrowdboxesError, TypeError, ValueError):
            banned = None
    try:
        return write_report(REPORT.path(out), boxes=boxes, images=images, answers=answers,
                            workers=_beside(WORKERS.path(aggregate_dir), "workers"),
                            review=_beside(IMAGES_REVIEW.path(aggregate_dir), "images review"),
                            wait_summary=wait_summary, banned=banned, truth=truth, min_score=options.min_score)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(one_line(f"warning: report: {REPORT.path(out)} not written ({type(exc).__name__}: {exc})"),
              file=sys.stderr)
        return None


def publish_exports(out: Path, summary: dict[str, Any], options: ExportOptions) -> str:
    """Publish the three files as a new version of ``--dataset`` (not with ``none``); where they went.

    The published summary cannot name its own version; the output folder's copy is rewritten to do so.
    """
    if options.dataset is None:
        return "not published (--dataset none)"
    files = [COCO_EXPORT.path(out), FLAT_EXPORT.path(out), EXPORT_SUMMARY.path(out)]
    files += [path for path in (DETECTIONS_EXPORT.path(out), FORMATS_ARCHIVE.path(out), REPORT.path(out))
              if path.is_file()]
    published = publish(options.dataset, files, root=options.dataset_root, digest=publish_digest(files),
                        message=f"{summary['boxes']} boxes on {summary['images']} images")
    summary["dataset"] = published.as_dict()
    write_summary(out, summary)
    return (f"dataset {published.slug} version {published.version} ({published.location})"
            + ("" if published.created else ", unchanged"))


def tell(out: Path, summary: dict[str, Any], where: str) -> None:
    """The summary as readable lines, then the cnvrg tags."""
    for line in ex.summary_lines(summary):
        print(one_line(line))
    print(one_line(f"export: {COCO_EXPORT.path(out)}; {where}"), flush=True)
    others = [name for name in summary.get("formats", {}) if name != "coco"]
    if others:
        print(f"formats: {', '.join(others)} beside it ({', '.join(summary['formats'][n] for n in others)})")
    cnvrg_tag("images", summary["images"])
    cnvrg_tag("images_with_boxes", summary["images_with_boxes"])
    cnvrg_tag("boxes", summary["boxes"])
    if summary["cost_usd"] is not None:
        cnvrg_tag("cost_usd", summary["cost_usd"])
    if summary["cost_per_accepted_image_usd"] is not None:
        cnvrg_tag("cost_per_image_usd", summary["cost_per_accepted_image_usd"])
    if "dataset" in summary:
        cnvrg_tag("dataset_version", summary["dataset"]["version"])


def job_pool_ids(wait_summary: dict[str, Any] | None, options: ExportOptions) -> list[str]:
    """The pools ``--archive`` archives: wait_summary.json's ``pool_ids`` (detection, verification, rounds)."""
    pool_ids = (wait_summary or {}).get("pool_ids")
    if options.wait_summary is None:
        raise CrowdboxesError(f"--archive {options.archive}: needs --wait_summary (the job's pools are named there)")
    if not isinstance(pool_ids, dict) or not pool_ids:
        raise CrowdboxesError(f"{options.wait_summary}: field 'pool_ids' is missing or empty (needed by --archive)")
    return [str(p) for p in pool_ids.values()]


def archive_job_pools(out: Path, pool_ids: list[str], options: ExportOptions) -> None:
    """``--archive``: archive the job's pools (and their projects) now that the export is written and published;
    what blocks is one warning line each (the export stands), archive_summary.json says what was done."""
    from crowdboxes.toloka.archive import archive_job, parse_archive, projects_of_pools
    from crowdboxes.toloka.archive import tell as tell_archive
    from crowdboxes.toloka.client import connect

    _, projects = parse_archive(options.archive)
    client = connect(options.toloka_env, options.token_env)
    report = archive_job(client, pool_ids, projects_of_pools(client, pool_ids) if projects else None)
    tell_archive(report, out)


def export(options: ExportOptions) -> int:
    """Run the step: the export files in the output folder, published unless --dataset none; with ``--archive``,
    the job's pools (and projects) archived on Toloka after that."""
    from crowdboxes.toloka.archive import parse_archive

    fm.parse_formats(options.formats)  # a bad --formats fails before anything is read or written
    archive_pools, _ = parse_archive(options.archive)
    if not 0.0 <= options.min_score <= 1.0:
        raise CrowdboxesError(f"--min_score {options.min_score}: must be between 0 and 1")
    if options.dataset is not None:
        check_slug(options.dataset)
    truth = read_truth(options.truth)  # a bad --truth fails before anything is written
    out = output_dir(options.output_dir)
    boxes, images = read_inputs(options)
    wait_summary = read_wait_summary(options.wait_summary)
    pool_ids = job_pool_ids(wait_summary, options) if archive_pools else []  # refused before anything is written
    summary = write_exports(out, boxes, images, wait_summary, options)
    report = write_run_report(out, boxes, images, wait_summary, options, truth)
    where = publish_exports(out, summary, options)
    tell(out, summary, where)
    if report is not None:
        print(one_line(f"report: {report}"), flush=True)
    if archive_pools:
        archive_job_pools(out, pool_ids, options)
    return 0
