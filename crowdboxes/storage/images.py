"""Images from a folder to S3 URLs the crowd can open: validate, de-duplicate, upload once.

1. :func:`scan_folder` lists ``.jpg .jpeg .png .webp`` files (recursively, sorted, case-insensitive).
   Nothing outside the folder is ever read: a symbolic link whose target lies outside it, and every
   linked folder, become rejected rows without being opened; so does a file name with a control character.
2. :func:`inspect_image` opens each file once without following links, refuses anything but a regular
   file and anything larger than ``--max_image_mb`` from its size on disk (``fstat``) before reading a
   byte, reads at most that many bytes, then decodes with Pillow (``verify`` then a full ``load``) only
   after the header's width and height passed ``--max_side``: the memory of one image is bounded by
   ``max_image_mb`` + ``max_side`` ** 2 x 4 bytes, and the threads together decode at most
   :data:`DECODE_BUDGET` pixels at once (:class:`PixelBudget`). A failure becomes a reason for rejected_images.csv.
3. Files with the same sha256 are uploaded once: the first in sorted order wins, the rest are
   rejected as ``duplicate of <file>``.
4. :class:`S3Uploader` puts each image at ``<prefix><sha256>.<ext>`` with its content type, after a
   ``head_object`` so a re-run uploads nothing that is already there, in parallel threads. A photo whose
   EXIF orientation is not 1 is uploaded upright instead (:func:`upright_bytes`: the orientation applied to
   the pixels, the tag removed) at ``<prefix><sha256>-upright.<ext>``, so workers, images.csv's width and
   height, and every export see the same picture; ``sha256`` stays the source file's digest.
5. URLs are either public (the bucket must allow anonymous reads) or presigned GET URLs that expire.

S3 credentials come from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
env vars, which cnvrg secrets provide); they are never printed.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from crowdboxes.cnvrg.metrics import one_line
from crowdboxes.errors import CrowdboxesError
from crowdboxes.params import is_none

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "WEBP": ("webp", "image/webp")}
URL_MODES = ("presigned", "public")
# SigV4 presigned URLs live at most 7 days (AWS, MinIO and GCS all enforce it).
MAX_PRESIGNED_DAYS = 7
# EXIF orientations 5-8 turn the picture by 90 degrees: browsers (and so workers) see it transposed.
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
EXIF_ORIENTATION = 0x0112
UPRIGHT_JPEG_QUALITY = 95  # re-encoding an upright copy: visually lossless, about the size of a camera JPEG
# S3 allows 1024 bytes per key; the prefix leaves room for "<sha256>-upright.webp".
MAX_PREFIX_BYTES = 900
# os.open flags: never follow a link at the last step, never block on a FIFO named .jpg
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class PixelBudget:
    """At most ``limit`` pixels decoded at once across threads; an image larger than ``limit`` runs alone.

    A decoded image holds about 4 bytes per pixel, so with the default budget (:data:`DECODE_BUDGET`) the
    step's pixel memory stays under 2 x 8192^2 x 4 B = 512 MiB whatever ``--max_workers`` is, instead of
    ``max_workers`` x ``max_side``^2 x 4 B (2 GiB for 8 workers at 8192 px).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait until ``pixels`` fit in what is left (or nothing is held), hold them for the ``with`` block."""
        with self._changed:
            self._changed.wait_for(lambda: self.used == 0 or self.used + pixels <= self.limit)
            self.used += pixels
        try:
            yield
        finally:
            with self._changed:
                self.used -= pixels
                self._changed.notify_all()


DECODE_BUDGET = PixelBudget(2 * 8192 * 8192)


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
        """images.csv's ``image_id``: the first 16 hex digits of the source file's sha256."""
        return self.sha256[:16]

    @property
    def upright(self) -> bool:
        """True when the uploaded pixels are an upright copy (EXIF orientation applied), not the file's bytes."""
        return self.orientation != 1


# Text-direction overrides and isolates: they make a name read differently from what it is ("Trojan Source").
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def has_control_character(text: str) -> bool:
    """True when ``text`` holds a control character (Unicode Cc: tabs, line breaks, escapes, NEL), a line or
    paragraph separator, or a text-direction override; other characters (accents, no-break spaces, emoji)
    are fine."""
    import unicodedata

    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI_CONTROLS for c in text)


def scan_folder(folder: str | os.PathLike) -> list[ImageInfo]:
    """Image files under ``folder`` (recursive; hidden files and folders skipped), sorted by path.

    Links are not trusted: a linked folder is not walked (a rejected row ``<name>/``), a linked file is
    read through its real path only when that lies inside ``folder`` (else a rejected row), and a file
    name with a control character is rejected. ``info.path`` is the real path of every accepted file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CrowdboxesError(f"--images_dir {root} is not a folder")
    real_root = Path(os.path.realpath(root))
    found = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: linked folders are not entered
        kept = []
        for name in sorted(d for d in dirnames if not d.startswith(".")):
            path = Path(dirpath) / name
            if path.is_symlink():
                found.append(ImageInfo(path=path, file_name=path.relative_to(root).as_posix() + "/",
                                       reason="symbolic link to a folder: not followed"))
            else:
                kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(EXTENSIONS):
                continue
            path = Path(dirpath) / name
            found.append(_scanned(path, path.relative_to(root).as_posix(), real_root))
    return sorted(found, key=lambda info: info.file_name)


def _scanned(path: Path, file_name: str, real_root: Path) -> ImageInfo:
    """One listed file: its real path, or the reason it will not be read."""
    if has_control_character(file_name):
        return ImageInfo(path=path, file_name=file_name,
                         reason="file name has a control character (a line break, tab or escape): rename the file")
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(real_root):
        return ImageInfo(path=path, file_name=file_name,
                         reason="symbolic link to a file outside --images_dir: not read")
    return ImageInfo(path=real, file_name=file_name)


def read_image_file(info: ImageInfo, max_mb: float) -> bytes | None:
    """The file's bytes, or None with ``info.reason`` set: not a regular file, or above ``max_mb`` MB (1024 x
    1024 bytes) by its size on disk (then not one byte is read). Reads at most that many bytes + 1 whatever
    the size said, so a file that grows while it is read cannot exhaust memory either."""
    max_bytes = int(max_mb * 1024 * 1024)
    try:
        fd = os.open(info.path, _OPEN_FLAGS)
    except OSError as exc:
        info.reason = f"cannot read file: {exc.strerror or exc}"
        return None
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            info.reason = "not a regular file"
            return None
        if status.st_size > max_bytes:
            info.size_bytes = status.st_size
            info.reason = _too_large(status.st_size, max_mb)
            return None
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            info.reason = f"cannot read file: {exc.strerror or exc}"
            return None
    if len(data) > max_bytes:
        info.reason = _too_large(len(data), max_mb)
        return None
    return data


def _too_large(size: int, max_mb: float) -> str:
    return f"file is {size / 1024 / 1024:.1f} MB, above --max_image_mb {max_mb:g}"


def inspect_image(info: ImageInfo, rules: ImageRules) -> ImageInfo:
    """Fill ``info`` with sha256, format and displayed size, or set ``info.reason``."""
    from PIL import Image, UnidentifiedImageError

    if info.reason:  # refused while scanning: never opened
        return info
    data = read_image_file(info, rules.max_image_mb)
    if data is None:
        return info
    info.size_bytes = len(data)
    info.sha256 = hashlib.sha256(data).hexdigest()
    if not data:
        info.reason = "empty file"
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
        with DECODE_BUDGET.hold(width * height), Image.open(io.BytesIO(data)) as image:
            image.load()  # verify() does not decode pixels; truncated data only fails here
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
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


def upright_bytes(info: ImageInfo, data: bytes) -> bytes:
    """``data`` (the file's bytes) re-encoded in its format with the EXIF orientation applied to the pixels and
    the orientation tag removed (the other EXIF tags and the ICC profile kept): what a browser shows, stored
    as it is shown. JPEGs are re-encoded at quality :data:`UPRIGHT_JPEG_QUALITY`."""
    from PIL import Image, ImageOps

    with DECODE_BUDGET.hold(info.width * info.height), Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image)
        exif = upright.getexif()
        exif.pop(EXIF_ORIENTATION, None)
        options: dict[str, Any] = {"exif": exif.tobytes()}
        if image.info.get("icc_profile"):
            options["icc_profile"] = image.info["icc_profile"]
        if info.format == "JPEG":
            options["quality"] = UPRIGHT_JPEG_QUALITY
        out = io.BytesIO()
        upright.save(out, format=info.format, **options)
    return out.getvalue()


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


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` could put objects outside the folder it names, or be read two ways; None when it is fine.

    Refused: control characters, backslashes (a separator to some tools), a leading ``/`` (absolute),
    ``//`` (an empty folder name), ``.`` or ``..`` folders, more than :data:`MAX_PREFIX_BYTES` bytes.
    """
    if has_control_character(prefix):
        return "has a control character"
    if "\\" in prefix:
        return "has a backslash"
    if prefix.startswith("/"):
        return "is absolute (starts with /)"
    if "//" in prefix:
        return "has an empty folder name (//)"
    if any(part in {".", ".."} for part in prefix.split("/")):
        return "has a '.' or '..' folder"
    if len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
        return f"is longer than {MAX_PREFIX_BYTES} bytes"
    return None


def normalize_prefix(prefix: str | None) -> str:
    """``road-signs`` -> ``road-signs/``; ``none``/empty -> ``''``; CrowdboxesError (one line, before anything is
    uploaded) for a prefix :func:`prefix_problem` refuses, such as ``../evil/`` or ``/abs/``."""
    if is_none(prefix):
        return ""
    text = str(prefix).strip()
    problem = prefix_problem(text)
    if problem:
        raise CrowdboxesError(f"--s3_prefix {one_line(text)!r} {problem}; use folder names such as road-signs/ "
                              f"(or none for the bucket root)")
    return text if text.endswith("/") else text + "/"


def object_key(prefix: str, info: ImageInfo) -> str:
    """Where ``info`` goes in the bucket: ``<prefix><sha256>.<ext>``, or ``<prefix><sha256>-upright.<ext>``
    for an upright copy (a different object than an earlier upload of the file's own bytes)."""
    return f"{prefix}{info.sha256}{'-upright' if info.upright else ''}.{FORMATS[info.format][0]}"


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
            body = self.body(info)
            metadata = {"sha256": info.sha256, "file-name": quote(info.file_name)}
            if info.upright:
                metadata["source-orientation"] = str(info.orientation)
            self.client.put_object(Bucket=self.bucket, Key=info.key, Body=body, ContentType=FORMATS[info.format][1],
                                   Metadata=metadata)
            with self._lock:
                stats.uploaded += 1
        except (ClientError, BotoCoreError, OSError, ValueError) as exc:  # ValueError: Pillow re-encoding an upright copy
            with self._lock:
                stats.failed.append((info.file_name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))

    @staticmethod
    def body(info: ImageInfo) -> bytes:
        """What is uploaded for ``info``: the file's bytes again (checked to be the ones inspected), or their
        upright copy. OSError when the file changed since it was inspected."""
        data = read_image_file(ImageInfo(path=info.path, file_name=info.file_name), info.size_bytes / 1024 / 1024)
        if data is None or hashlib.sha256(data).hexdigest() != info.sha256:
            raise OSError("the file changed since it was checked; re-run the step")
        return upright_bytes(info, data) if info.upright else data

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
