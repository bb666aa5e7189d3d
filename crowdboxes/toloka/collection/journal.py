"""The collection journal: append-only JSON lines, fsynced per batch, that a re-run resumes from.

Its records are a header (``k: h``: journal version, pool ids, first start time), assignment
snapshots (``k: a``, :func:`crowdboxes.toloka.collection.snapshots.snapshot`) and cursor positions
(``k: c``, :class:`crowdboxes.toloka.collection.cursor.EventCursor`). Wait Pool keeps it as
``artifacts.WAIT_JOURNAL`` in its output folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

JOURNAL_VERSION = 1


def compact_json(value: Any) -> str:
    """``value`` as the journal writes it: no spaces, keys sorted."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Journal:
    """Append-only JSON lines, fsynced per batch; a torn last line (crash mid-write) is cut off on open."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def read(self) -> Generator[dict[str, Any], None, None]:
        """Every complete record, oldest first, read line by line (a journal can hold hundreds of thousands).

        A torn tail (a crash mid-write) is truncated away on disk once the reader gets to it, so later
        appends stay parseable; a caller that stops early should ``close()`` the iterator.
        """
        if not self.path.is_file():
            return
        good_end = 0
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # no newline: the write was interrupted
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break
                good_end += len(line)
                yield record
            torn = good_end < fh.seek(0, os.SEEK_END)
        if torn:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                os.fsync(fh.fileno())

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append ``records`` and fsync before returning (nothing to write: no I/O)."""
        lines = "".join(compact_json(r) + "\n" for r in records)
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())
