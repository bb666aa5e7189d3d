"""Reading and writing files safely: atomic replacement, hashes and JSON with one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crowdboxes.errors import CrowdboxesError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 files; outputs must be readable like any normally created file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | os.PathLike, what: str = "input") -> Any:
    """Parse a JSON file; CrowdboxesError naming the file when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise CrowdboxesError(f"{what} file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CrowdboxesError(f"{path}: not valid JSON ({exc})") from None


def read_json_object(path: str | os.PathLike, what: str = "input", holding: str = "") -> dict[str, Any]:
    """:func:`read_json` of a file that must hold a JSON object; ``holding`` says what the object is
    (e.g. "with a Toloka pool") in the error."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise CrowdboxesError(f"{path}: expected a JSON object{' ' + holding if holding else ''}")
    return data


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
