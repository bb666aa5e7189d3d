"""Upload Images' logic: scan, check and de-duplicate the images, upload them once, write images.csv.

``steps/upload_images.py`` parses the params into :class:`UploadImagesOptions` and calls
:func:`upload_images`. Checking one image, S3 and URLs are :mod:`crowdboxes.storage.images`.

Beside images.csv the step writes :data:`UPLOAD_SUMMARY` (its row count and sha256), so that Launch Pool
refuses an images.csv that was cut or edited since (:func:`check_images_csv`) instead of launching a
smaller pool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from crowdboxes.artifacts import IMAGES, REJECTED_IMAGES, UPLOAD_SUMMARY, write_csv
from crowdboxes.cnvrg.metrics import cnvrg_tag, one_line
from crowdboxes.cnvrg.stepkit import output_dir
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import read_json_object, sha256_file, write_text_atomic
from crowdboxes.params import is_none, parse_number
from crowdboxes.storage import images as img

SHOWN_REJECTIONS = 10  # the rest are in rejected_images.csv


@dataclass(frozen=True)
class UploadImagesOptions:
    """Upload Images' params as ``steps/upload_images.py`` parses them (cnvrg passes strings; meanings there)."""

    toloka_env: str
    token_env: str
    output_dir: str | None
    images_dir: str
    s3_bucket: str | None
    s3_prefix: str | None
    s3_endpoint_url: str | None
    url_mode: str
    url_expiry_days: str
    max_workers: str
    max_image_mb: str
    min_side: str
    max_side: str


@dataclass(frozen=True)
class UploadPlan:
    """The params checked and converted: where the images go, how their URLs are made, the limits."""

    bucket: str
    endpoint: str | None
    prefix: str
    url_mode: str
    expiry_days: float
    max_workers: int
    rules: img.ImageRules


def plan_upload(options: UploadImagesOptions) -> UploadPlan:
    """Check every param; CrowdboxesError naming the first bad one."""
    if is_none(options.s3_bucket):
        raise CrowdboxesError("--s3_bucket is required (the bucket the crowd loads images from)")
    url_mode = str(options.url_mode).strip().lower()
    expiry_days = float(parse_number("url_expiry_days", options.url_expiry_days, minimum=0.001))
    img.check_url_mode(url_mode, expiry_days)
    max_workers = int(parse_number("max_workers", options.max_workers, minimum=1, maximum=64, integer=True))
    rules = img.ImageRules(
        max_image_mb=float(parse_number("max_image_mb", options.max_image_mb, minimum=0.001)),
        min_side=int(parse_number("min_side", options.min_side, minimum=1, integer=True)),
        max_side=int(parse_number("max_side", options.max_side, minimum=1, integer=True)))
    if rules.min_side > rules.max_side:
        raise CrowdboxesError(f"--min_side {rules.min_side} is above --max_side {rules.max_side}")
    endpoint = None if is_none(options.s3_endpoint_url) else str(options.s3_endpoint_url).strip()
    return UploadPlan(bucket=str(options.s3_bucket).strip(), endpoint=endpoint,
                      prefix=img.normalize_prefix(options.s3_prefix), url_mode=url_mode, expiry_days=expiry_days,
                      max_workers=max_workers, rules=rules)


def rejected_frame(infos: list[img.ImageInfo]) -> pd.DataFrame:
    """rejected_images.csv: every file that will not be shown to the crowd, with the reason."""
    return pd.DataFrame([{"file_name": i.file_name, "reason": i.reason} for i in infos if i.reason],
                        columns=list(REJECTED_IMAGES.columns))


def images_frame(good: list[img.ImageInfo], expires: str) -> pd.DataFrame:
    """images.csv: one row per uploaded image (its URL set), in scan order."""
    return pd.DataFrame([{"image_id": i.image_id, "file_name": i.file_name, "url": i.url, "width": i.width,
                          "height": i.height, "sha256": i.sha256, "format": i.format, "bytes": i.size_bytes,
                          "orientation": i.orientation, "s3_key": i.key, "url_expires_at": expires,
                          "orientation_applied": i.upright}
                         for i in good], columns=list(IMAGES.columns) + ["format", "bytes", "orientation", "s3_key",
                                                                         "url_expires_at", "orientation_applied"])


def write_upload_summary(images_csv: Path, rows: int, counts: dict[str, int]) -> Path:
    """:data:`UPLOAD_SUMMARY` beside ``images_csv``: its row count and sha256, and ``counts``."""
    summary = {"images": rows, "images_csv_sha256": sha256_file(images_csv), **counts}
    return write_text_atomic(UPLOAD_SUMMARY.path(images_csv.parent), json.dumps(summary, indent=2) + "\n")


def check_images_csv(images_csv: str | Path) -> None:
    """Refuse (CrowdboxesError, one line naming both row counts) an images.csv that is not the one Upload Images
    wrote: its sha256 is not the one in the :data:`UPLOAD_SUMMARY` beside it (cut, or edited). Without a
    summary beside it (an images.csv made by hand, or by an older Upload Images) there is nothing to compare
    with, and the file is taken as it is."""
    path = Path(images_csv)
    summary_path = UPLOAD_SUMMARY.path(path.parent)
    if not summary_path.exists() or not path.is_file():
        return  # a missing images.csv is read_images' one line
    summary: dict[str, Any] = read_json_object(summary_path)
    if sha256_file(path) == summary.get("images_csv_sha256"):
        return
    try:
        rows: int | str = len(pd.read_csv(path, dtype=str))
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        rows = "no readable"
    expected = summary.get("images")
    change = (f"has {rows} image rows but Upload Images wrote {expected!r}" if rows != expected else
              f"has the {rows} image rows Upload Images wrote, but other bytes")
    raise CrowdboxesError(f"{path} {change} ({summary_path} holds its count and sha256): the file was cut or edited "
                          f"since; re-run Upload Images, or delete {summary_path.name} to launch the edited file "
                          f"(nothing was created)")


def _report_rejected(rejected: pd.DataFrame) -> None:
    for row in rejected.head(SHOWN_REJECTIONS).itertuples(index=False):
        print(one_line(f"rejected {row.file_name}: {row.reason}"))
    if len(rejected) > SHOWN_REJECTIONS:
        print(f"... {len(rejected) - SHOWN_REJECTIONS} more in {REJECTED_IMAGES.file_name}")


def upload_images(options: UploadImagesOptions) -> int:
    """Run the step: images.csv and rejected_images.csv in the output folder, counts as cnvrg tags."""
    plan = plan_upload(options)
    out = output_dir(options.output_dir)
    infos = img.scan_folder(options.images_dir)
    if not infos:
        raise CrowdboxesError(f"--images_dir {options.images_dir}: no {'/'.join(img.EXTENSIONS)} files found")
    uploader = img.S3Uploader(plan.bucket, plan.endpoint, max_workers=plan.max_workers)
    uploader.check_bucket()  # fail fast, before hashing a large dataset

    img.inspect_all(infos, plan.rules, plan.max_workers)
    img.mark_duplicates(infos)
    good = [i for i in infos if not i.reason]
    rejected = rejected_frame(infos)
    write_csv(rejected, out, REJECTED_IMAGES)  # written first: the reasons are useful even if upload fails
    _report_rejected(rejected)
    if not good:
        raise CrowdboxesError(f"all {len(infos)} images were rejected; see {REJECTED_IMAGES.path(out)}")

    stats = uploader.upload(good, plan.prefix)
    if stats.failed:
        name, error = stats.failed[0]
        raise CrowdboxesError(f"{len(stats.failed)} of {len(good)} uploads failed (first: {name}: {error}); "
                              f"re-run to retry, uploaded images are kept and skipped")
    for info in good:
        info.url = (uploader.presigned_url(info.key, plan.expiry_days) if plan.url_mode == "presigned"
                    else uploader.public_url(info.key))
    img.check_url_reachable(good[0].url)

    path = write_csv(images_frame(good, img.url_expiry(plan.url_mode, plan.expiry_days)), out, IMAGES)
    upright = sum(i.upright for i in good)
    write_upload_summary(path, len(good), {"rejected": len(rejected), "uploaded": stats.uploaded,
                                           "already_in_s3": stats.already_there, "orientation_applied": upright})
    print(f"wrote {path}: {len(good)} images ({stats.uploaded} uploaded, {stats.already_there} already in S3, "
          f"{upright} turned upright by their EXIF orientation), {len(rejected)} rejected")
    cnvrg_tag("images", len(good))
    cnvrg_tag("images_rejected", len(rejected))
    cnvrg_tag("images_uploaded", stats.uploaded)
    cnvrg_tag("images_already_in_s3", stats.already_there)
    cnvrg_tag("images_orientation_applied", upright)
    return 0
