"""Reading and writing files safely: atomic replacement, hashes, JSON with one-line errors, and text cells
that a spreadsheet will not run as formulas."""

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


# A spreadsheet runs a cell that begins with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CELL_ESCAPE = "'"  # what spreadsheets show as "this cell is text"; also escapes itself, so it can be undone


def escape_cell(text: str) -> str:
    """A text cell as the product writes it to CSV: ``'`` + ``text`` when ``text`` begins with a formula
    character (``= + - @``, tab, CR) or with ``'`` itself, else ``text`` unchanged.

    Escaping a leading quote too makes the rule one-to-one: :func:`unescape_cell` (drop one leading ``'``)
    gives back exactly what was escaped, whatever the text.
    """
    if text and (text[0] in FORMULA_STARTS or text[0] == CELL_ESCAPE):
        return CELL_ESCAPE + text
    return text


def unescape_cell(text: str) -> str:
    """The inverse of :func:`escape_cell`: a cell that begins with ``'`` loses that one quote."""
    return text[1:] if text.startswith(CELL_ESCAPE) else text


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
