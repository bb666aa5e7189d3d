"""Images from a folder to S3 URLs the crowd can open: validate, de-duplicate, upload once.

1. :func:`scan_folder` lists ``.jpg .jpeg .png .webp`` files (recursively, sorted, case-insensitive).
2. :func:`inspect_image` decodes each with Pillow (``verify`` then a full ``load``) and checks size
   limits; a failure becomes a reason for rejected_images.csv.
3. Files with the same sha256 are uploaded once: the first in sorted order wins, the rest are
   rejected as ``duplicate of <file>``.
4. :class:`S3Uploader` puts each image at ``<prefix><sha256>.<ext>`` with its content type, after a
   ``head_object`` so a re-run uploads nothing that is already there, in parallel threads.
5. URLs are either public (the bucket must allow anonymous reads) or presigned GET URLs that expire.

S3 credentials come from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
env vars, which cnvrg secrets provide); they are never printed.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from crowdboxes.errors import CrowdboxesError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "WEBP": ("webp", "image/webp")}
URL_MODES = ("presigned", "public")
# SigV4 presigned URLs live at most 7 days (AWS, MinIO and GCS all enforce it).
MAX_PRESIGNED_DAYS = 7
# EXIF orientations 5-8 turn the picture by 90 degrees: browsers (and so workers) see it transposed.
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}


@dataclass(frozen=True)
class ImageRules:
    """Limits an image must meet to be sent to the crowd."""

    max_image_mb: float = 20.0
    min_side: int = 32
    max_side: int = 8192
    formats: tuple[str, ...] = tuple(FORMATS)


@dataclass
class ImageInfo:
    """One scanned file: its identity and, if it passed, what the crowd will see."""

    path: Path
    file_name: str  # relative to the scanned folder, with '/' separators
    sha256: str = ""
    width: int = 0  # as displayed (EXIF orientation applied)
    height: int = 0
    format: str = ""
    orientation: int = 1
    size_bytes: int = 0
    reason: str = ""  # non-empty: rejected
    url: str = ""
    key: str = ""

    @property
    def image_id(self) -> str:
        return self.sha256[:16]


def scan_folder(folder: str | os.PathLike) -> list[ImageInfo]:
    """Image files under ``folder`` (recursive; hidden files and folders skipped), sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise CrowdboxesError(f"--images_dir {root} is not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(EXTENSIONS):
                continue
            path = Path(dirpath) / name
            found.append(ImageInfo(path=path, file_name=path.relative_to(root).as_posix()))
    return sorted(found, key=lambda info: info.file_name)


def inspect_image(info: ImageInfo, rules: ImageRules) -> ImageInfo:
    """Fill ``info`` with sha256, format and displayed size, or set ``info.reason``."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = info.path.read_bytes()
    except OSError as exc:
        info.reason = f"cannot read file: {exc.strerror or exc}"
        return info
    info.size_bytes = len(data)
    info.sha256 = hashlib.sha256(data).hexdigest()
    if not data:
        info.reason = "empty file"
        return info
    if len(data) > rules.max_image_mb * 1024 * 1024:
        info.reason = f"file is {len(data) / 1024 / 1024:.1f} MB, above --max_image_mb {rules.max_image_mb:g}"
        return info
    try:
        with Image.open(io.BytesIO(data)) as image:
            info.format = image.format or ""
            width, height = image.size
            if info.format not in rules.formats:
                info.reason = f"format {info.format or 'unknown'} is not allowed (allowed: {', '.join(rules.formats)})"
                return info
            # size limits before decoding: a huge image is rejected without spending memory on it
            if max(width, height) > rules.max_side:
                info.reason = f"image is {width}x{height} px, longer side above --max_side {rules.max_side}"
                return info
            if min(width, height) < rules.min_side:
                info.reason = f"image is {width}x{height} px, shorter side below --min_side {rules.min_side}"
                return info
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # verify() does not decode pixels; truncated data only fails here
            orientation = image.getexif().get(0x0112, 1)
    except UnidentifiedImageError:
        info.reason = "not an image (Pillow cannot identify it)"
        return info
    except Image.DecompressionBombError as exc:
        info.reason = f"too many pixels ({exc})"
        return info
    except (OSError, SyntaxError, ValueError) as exc:
        info.reason = f"corrupt image: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        return info
    info.orientation = int(orientation) if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
    info.width, info.height = (height, width) if info.orientation in _TRANSPOSED_ORIENTATIONS else (width, height)
    return info


def mark_duplicates(infos: list[ImageInfo]) -> None:
    """Reject every valid file whose sha256 was already seen earlier in the list."""
    first: dict[str, str] = {}
    for info in infos:
        if info.reason:
            continue
        if info.sha256 in first:
            info.reason = f"duplicate of {first[info.sha256]}"
        else:
            first[info.sha256] = info.file_name


def normalize_prefix(prefix: str | None) -> str:
    """``road-signs`` -> ``road-signs/``; ``none``/empty -> ``''``; leading slashes dropped."""
    prefix = (prefix or "").strip().lstrip("/")
    if prefix.lower() == "none":
        return ""
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def object_key(prefix: str, info: ImageInfo) -> str:
    return f"{prefix}{info.sha256}.{FORMATS[info.format][0]}"


@dataclass
class UploadStats:
    uploaded: int = 0
    already_there: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file_name, error)


class S3Uploader:
    """Put images into one bucket (AWS or any S3-compatible endpoint) and make their URLs."""

    def __init__(self, bucket: str, endpoint_url: str | None = None, max_workers: int = 8,
                 region: str | None = None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.max_workers = max_workers
        self._config = Config(max_pool_connections=max(10, max_workers), signature_version="s3v4",
                              retries={"max_attempts": 5, "mode": "standard"},
                              # S3-compatible stores (MinIO, Ceph, moto) reject botocore's default CRC32 trailers
                              request_checksum_calculation="when_required",
                              response_checksum_validation="when_required",
                              s3={"addressing_style": "path" if endpoint_url else "auto"})
        self._session = boto3.session.Session()
        self.region = region or self._session.region_name or "us-east-1"
        self.client = self._make_client()
        self._lock = threading.Lock()

    def _make_client(self) -> Any:
        return self._session.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                                    config=self._config)

    def check_bucket(self) -> None:
        """Fail with one line when the bucket is missing, forbidden, or credentials are absent."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            raise CrowdboxesError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                            "(on cnvrg: project secrets)") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchBucket", "NotFound"}:
                raise CrowdboxesError(f"--s3_bucket {self.bucket!r} does not exist{where}") from None
            if code in {"403", "AccessDenied", "Forbidden"}:
                raise CrowdboxesError(f"--s3_bucket {self.bucket!r}{where}: access denied for these credentials") from None
            raise CrowdboxesError(f"--s3_bucket {self.bucket!r}{where}: {code or exc}") from None
        except BotoCoreError as exc:
            raise CrowdboxesError(f"cannot reach S3{where}: {exc}") from None
        if self.endpoint_url is None:
            # presigned URLs and public URLs must name the bucket's own region
            location = self.client.get_bucket_location(Bucket=self.bucket).get("LocationConstraint")
            region = location or "us-east-1"
            if region != self.region:
                self.region = region
                self.client = self._make_client()

    def upload_one(self, info: ImageInfo, prefix: str, stats: UploadStats) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        info.key = object_key(prefix, info)
        try:
            try:
                self.client.head_object(Bucket=self.bucket, Key=info.key)
                with self._lock:
                    stats.already_there += 1
                return
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in {"404", "NoSuchKey", "NotFound"}:
                    raise
            self.client.put_object(Bucket=self.bucket, Key=info.key, Body=info.path.read_bytes(),
                                   ContentType=FORMATS[info.format][1],
                                   Metadata={"sha256": info.sha256, "file-name": quote(info.file_name)})
            with self._lock:
                stats.uploaded += 1
        except (ClientError, BotoCoreError, OSError) as exc:
            with self._lock:
                stats.failed.append((info.file_name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))

    def upload(self, infos: list[ImageInfo], prefix: str) -> UploadStats:
        """Upload every image (skipping those already in the bucket) with ``max_workers`` threads."""
        stats = UploadStats()
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            list(pool.map(lambda info: self.upload_one(info, prefix, stats), infos))
        return stats

    def public_url(self, key: str) -> str:
        quoted = quote(key)
        if self.endpoint_url:
            return f"{self.endpoint_url}/{self.bucket}/{quoted}"
        if "." in self.bucket:  # virtual-host HTTPS certificates do not cover dotted bucket names
            return f"https://s3.{self.region}.amazonaws.com/{self.bucket}/{quoted}"
        return f"https://{self.bucket}.s3.{self.region}.amazonaws.com/{quoted}"

    def presigned_url(self, key: str, expiry_days: float) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=int(expiry_days * 86400))


def check_url_mode(url_mode: str, url_expiry_days: float) -> None:
    if url_mode not in URL_MODES:
        raise CrowdboxesError(f"--url_mode {url_mode!r}: choose {' or '.join(URL_MODES)}")
    if url_mode == "presigned" and not 0 < url_expiry_days <= MAX_PRESIGNED_DAYS:
        raise CrowdboxesError(f"--url_expiry_days {url_expiry_days:g}: presigned S3 URLs live more than 0 and at most "
                        f"{MAX_PRESIGNED_DAYS} days; use --url_mode public for longer-running pools")


def url_expiry(url_mode: str, url_expiry_days: float, now: datetime | None = None) -> str:
    """When the URLs stop working (ISO UTC, seconds), or '' for public URLs."""
    if url_mode != "presigned":
        return ""
    now = now or datetime.now(timezone.utc)
    return (now + timedelta(days=url_expiry_days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_url_reachable(url: str, timeout: float = 15.0) -> None:
    """GET the first byte of one URL as a worker's browser would (no credentials)."""
    import requests

    try:
        response = requests.get(url, headers={"Range": "bytes=0-0"}, timeout=timeout, stream=True)
        response.close()
    except requests.RequestException as exc:
        raise CrowdboxesError(f"image URL {url.split('?')[0]} cannot be opened: {type(exc).__name__}") from None
    if response.status_code not in (200, 206):
        hint = (" (the bucket does not allow anonymous reads: add a public-read bucket policy or use "
                "--url_mode presigned)" if response.status_code == 403 and "?" not in url else "")
        raise CrowdboxesError(f"image URL {url.split('?')[0]} answered HTTP {response.status_code}{hint}")


def inspect_all(infos: list[ImageInfo], rules: ImageRules, max_workers: int) -> list[ImageInfo]:
    """Inspect every file in parallel (Pillow decodes outside the GIL), keeping the sorted order."""
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        return list(pool.map(lambda info: inspect_image(info, rules), infos))
