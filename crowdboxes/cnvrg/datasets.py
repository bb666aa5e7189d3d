"""Publishing result files as a new version of a dataset: cnvrg's datasets, or a local folder store.

On cnvrg (``CNVRG_URL`` with ``CNVRG_TOKEN``/``CNVRG_JWT_TOKEN`` in the environment, or the SDK's
``~/.cnvrg/cnvrg.config``) the files go through the cnvrgv2 SDK's documented dataset calls
(:mod:`crowdboxes.cnvrg.cnvrg_put`). **Which route, and why:** cnvrgv2 1.1.8 cannot be installed next to
the steps' packages: it pins ``attrs~=22.1``, while our ``cattrs>=25.1,<26`` (toloka-kit) needs
``attrs>=24.3``, so ``pip install -r requirements.txt cnvrgv2`` stops with ResolutionImpossible (tried);
it also pins ``pytest~=7.0`` as a run-time dependency, against the test tools' ``pytest>=8``.
So the step image installs cnvrgv2 into its own virtual environment, ``/opt/cnvrg-sdk``, and Export runs
``cnvrg_put.py`` with that interpreter (a subprocess that inherits the job's environment, so the
credentials are never passed, written or printed by us). cnvrg's REST upload protocol (start commit,
upload to the bucket, end commit) is undocumented, and the CLI (``cnvrgv2 dataset put``) is the same
SDK with fewer options (no commit message, no sha1 printed), so the SDK's Python calls are the route.
Where cnvrgv2 imports in this process (a user's own environment), it is used
in-process. ``$CROWDBOXES_CNVRG_PYTHON`` names another interpreter that has cnvrgv2.

Everywhere else the files go to :class:`LocalDatasetStore`, which keeps the same idea of versions on disk::

    <root>/<slug>/v1/annotations.coco.json ... manifest.json
    <root>/<slug>/v2/...

A version is staged in a hidden folder and renamed into place, so readers never see half a
version and two concurrent writers get different numbers. Like cnvrg (``override=False``),
publishing files identical to the latest version creates no new version. "Identical" is the version's
**content digest** (``manifest.json``'s ``content_digest``): by default :func:`content_digest` of the files'
names and bytes; a publisher whose files carry fields that may differ between runs of the same inputs passes a
digest of what matters instead, so a re-run with identical inputs adds no version. Export's summary.json
leaves out ``dataset`` (the version it was published as) and ``wall_time_seconds``: that runs from Wait Pool's
first start to its finish (``finished_at``), the same for every re-export, but to the export's own time when
Wait Pool's summary has no ``finished_at`` (one written before Wait Pool recorded it).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crowdboxes.cnvrg.cnvrg_put import put_files_with_sdk
from crowdboxes.credentials import redact
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import sha256_file

MANIFEST = "manifest.json"
ROOT_ENV = "CROWDBOXES_DATASETS"
SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VERSION_RE = re.compile(r"^v(\d+)$")
# cnvrgv2 lives in its own environment in the step image (module docs); this names its interpreter
SDK_PYTHON = "/opt/cnvrg-sdk/bin/python"
SDK_PYTHON_ENV = "CROWDBOXES_CNVRG_PYTHON"
PUT_SCRIPT = Path(__file__).with_name("cnvrg_put.py")


def content_digest(files: Iterable[str | os.PathLike], hashes: Mapping[str, str] | None = None) -> str:
    """sha256 over the files in name order: ``name NUL sha256(bytes) LF`` per file; ``hashes`` (base name ->
    hex digest) replaces a file's byte hash with one of its content, for files with volatile fields."""
    digest = hashlib.sha256()
    for path in sorted((Path(f) for f in files), key=lambda p: p.name):
        file_hash = (hashes or {}).get(path.name) or sha256_file(path)
        digest.update(f"{path.name}\0{file_hash}\n".encode())
    return digest.hexdigest()


def check_slug(slug: str) -> str:
    if not SLUG_RE.match(slug or "") or ".." in slug:
        raise CrowdboxesError(f"dataset name {slug!r}: use letters, digits, '-', '_' or '.' (up to 128 characters)")
    return slug


@dataclass(frozen=True)
class Published:
    kind: str  # "local" or "cnvrg"
    slug: str
    version: str  # "3" locally, the commit sha1 on cnvrg
    location: str
    created: bool  # False when the files equalled the latest version

    def as_dict(self) -> dict:
        return {"kind": self.kind, "slug": self.slug, "version": self.version, "location": self.location,
                "new_version": self.created}


class LocalDatasetStore:
    """Versioned datasets in a folder: ``put_files(slug, files) -> version``, ``latest(slug)``."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root or os.environ.get(ROOT_ENV) or "datasets")

    def versions(self, slug: str) -> list[int]:
        folder = self.root / check_slug(slug)
        if not folder.is_dir():
            return []
        found = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name))
                 and (p / MANIFEST).is_file()]
        return sorted(found)

    def latest(self, slug: str) -> int | None:
        versions = self.versions(slug)
        return versions[-1] if versions else None

    def path(self, slug: str, version: int) -> Path:
        return self.root / check_slug(slug) / f"v{int(version)}"

    def manifest(self, slug: str, version: int) -> dict:
        return json.loads((self.path(slug, version) / MANIFEST).read_text(encoding="utf-8"))

    def put_files(self, slug: str, files: Iterable[str | os.PathLike], message: str = "") -> int:
        """Copy ``files`` (by base name) into a new version and return its number."""
        return self.publish(slug, files, message).version_number

    def publish(self, slug: str, files: Iterable[str | os.PathLike], message: str = "",
                digest: str | None = None) -> "_LocalResult":
        """A new version holding ``files``, unless the latest version's content digest equals ``digest``
        (default :func:`content_digest` of the files); then the latest version, ``created`` False."""
        check_slug(slug)
        paths = [Path(f) for f in files]
        names = [p.name for p in paths]
        for p in paths:
            if not p.is_file():
                raise CrowdboxesError(f"cannot publish {p}: no such file")
        if MANIFEST in names or len(set(names)) != len(names):
            raise CrowdboxesError(f"cannot publish {', '.join(names)}: file names must be unique and not {MANIFEST}")
        entries = [{"name": p.name, "size": p.stat().st_size, "sha256": sha256_file(p)} for p in paths]
        digest = digest or content_digest(paths)
        latest = self.latest(slug)
        if latest is not None:
            before = self.manifest(slug, latest)
            if before.get("content_digest", "") == digest or before.get("files") == entries:
                return _LocalResult(latest, self.path(slug, latest), False)

        folder = self.root / slug
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CrowdboxesError(f"cannot create dataset folder {folder}: {exc.strerror}") from None
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        try:
            for p in paths:
                shutil.copyfile(p, staging / p.name)
            version = (latest or 0) + 1
            while True:
                manifest = {"slug": slug, "version": version, "message": message, "files": entries,
                            "content_digest": digest,
                            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
                (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
                try:
                    # a complete version always holds a manifest, so renaming onto it fails: take the next number
                    os.rename(staging, folder / f"v{version}")
                    return _LocalResult(version, folder / f"v{version}", True)
                except OSError:
                    if not (folder / f"v{version}").exists():
                        raise
                    version = max(version, self.latest(slug) or 0) + 1
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class _LocalResult:
    version_number: int
    path: Path
    created: bool


def on_cnvrg(environ: Mapping[str, str] | None = None, home: str | os.PathLike[str] | None = None) -> bool:
    """True when the cnvrg SDK can authenticate: job environment variables or its config file."""
    env = os.environ if environ is None else environ
    if env.get("CNVRG_URL") and (env.get("CNVRG_TOKEN") or env.get("CNVRG_JWT_TOKEN")):
        return True
    home = Path(home) if home is not None else Path(env.get("HOME") or Path.home())
    return (home / ".cnvrg" / "cnvrg.config").is_file()


def sdk_python(environ: Mapping[str, str] | None = None) -> str | None:
    """The interpreter to run :mod:`crowdboxes.cnvrg.cnvrg_put` with, when cnvrgv2 is not importable here.

    ``$CROWDBOXES_CNVRG_PYTHON`` when set, else the step image's SDK environment
    (``/opt/cnvrg-sdk/bin/python``) when it exists, else None.
    """
    env = os.environ if environ is None else environ
    chosen = env.get(SDK_PYTHON_ENV) or (SDK_PYTHON if Path(SDK_PYTHON).is_file() else "")
    return chosen or None


def _sdk_in_process() -> bool:
    if "cnvrgv2" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("cnvrgv2") is not None
    except (ImportError, ValueError):
        return False


def publish_cnvrg(slug: str, files: Iterable[str | os.PathLike[str]], message: str = "", *,
                  environ: Mapping[str, str] | None = None, timeout: float = 1800) -> Published:
    """A new commit of cnvrg dataset ``slug`` (created if missing) with ``files`` at its top level.

    Through cnvrgv2 in this process when it imports here, else through :mod:`crowdboxes.cnvrg.cnvrg_put`
    run by the SDK's own interpreter (:func:`sdk_python`; the step image has one, see the module docs).
    The credentials stay in the environment: nothing here reads, passes or prints them.
    """
    paths = [Path(f).resolve() for f in files]
    folders = {p.parent for p in paths}
    if len(folders) != 1:
        raise CrowdboxesError("files to publish must share one folder")
    folder, names = str(folders.pop()), [p.name for p in paths]
    if _sdk_in_process():
        import cnvrgv2
        try:
            sha1, created = put_files_with_sdk(cnvrgv2, slug, folder, names, message)
        except Exception as exc:  # the SDK raises its own types: one line, as from the subprocess
            why = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
            raise CrowdboxesError(f"publishing to cnvrg dataset {slug} failed: {why}; the files are in the output "
                                  "folder") from None
        return Published("cnvrg", slug, sha1, f"cnvrg dataset {slug}", created)
    python = sdk_python(environ)
    if python is None:
        raise CrowdboxesError(f"running on cnvrg but the cnvrgv2 SDK is not installed: use the step image (its "
                              f"{SDK_PYTHON} has it) or set {SDK_PYTHON_ENV} to a Python that has cnvrgv2; "
                              "the files are in the output folder")
    command = [python, "-P", str(PUT_SCRIPT), "--slug", slug, "--folder", folder, "--message", message, *names]
    try:
        done = subprocess.run(command, env=dict(os.environ if environ is None else environ), capture_output=True,
                              text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CrowdboxesError(f"publishing to cnvrg dataset {slug} with {python} failed: {redact(str(exc))}") from None
    result = _last_json_line(done.stdout)
    if done.returncode != 0 or result is None:
        # the SDK's own error text may quote a request: never let a cnvrg or cloud secret through
        why = redact((done.stderr.strip().splitlines() or [f"exit {done.returncode}, no result"])[-1])[:300]
        raise CrowdboxesError(f"publishing to cnvrg dataset {slug} failed: {why}; the files are in the output folder")
    return Published("cnvrg", slug, str(result["sha1"]), f"cnvrg dataset {slug}", bool(result["created"]))


def _last_json_line(text: str) -> dict[str, Any] | None:
    """The last stdout line that is a JSON object with a ``sha1`` (the SDK may log before it)."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "sha1" in value:
            return value
    return None


def publish(slug: str, files: Iterable[str | os.PathLike], *, root: str | os.PathLike | None = None,
            message: str = "", digest: str | None = None) -> Published:
    """Publish ``files`` as a new version of dataset ``slug``: on cnvrg when running there, else locally.

    No new version when the latest local version has the same content ``digest`` (see the module docs); on
    cnvrg, cnvrg's ``override=False`` makes no commit for byte-identical files (``digest`` is not used there)."""
    check_slug(slug)
    files = list(files)
    if on_cnvrg():
        return publish_cnvrg(slug, files, message)
    store = LocalDatasetStore(root)
    result = store.publish(slug, files, message, digest)
    return Published("local", slug, str(result.version_number), str(result.path), result.created)
