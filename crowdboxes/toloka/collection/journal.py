"""The collection journal: append-only JSON lines, fsynced per batch, that a re-run resumes from.

Its records are a header (``k: h``: journal version, pool ids, first start time), assignment
snapshots (``k: a``, :func:`crowdboxes.toloka.collection.snapshots.snapshot`) and cursor positions
(``k: c``, :class:`crowdboxes.toloka.collection.cursor.EventCursor`). Wait Pool keeps it as
``artifacts.WAIT_JOURNAL`` in its output folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

JOURNAL_VERSION = 1


class Journal:
    """Append-only JSON lines, fsynced per batch; a torn last line (crash mid-write) is cut off on open."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        """Every complete record, oldest first; a torn tail is truncated away on disk."""
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        records: list[dict[str, Any]] = []
        good_end = start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            if end < 0:
                break  # no newline: the write was interrupted
            try:
                records.append(json.loads(data[start:end]))
            except json.JSONDecodeError:
                break
            good_end = start = end + 1
        if good_end < len(data):
            with open(self.path, "r+b") as fh:  # drop the torn tail so later appends stay parseable
                fh.truncate(good_end)
                os.fsync(fh.fileno())
        return records

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append ``records`` and fsync before returning (nothing to write: no I/O)."""
        lines = "".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in records)
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())
