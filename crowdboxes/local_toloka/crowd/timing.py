"""How long a simulated worker takes over a task suite, by the kind of task.

* ``drawing`` (alias ``detection``): :data:`SECONDS_PER_IMAGE` per image plus :data:`SECONDS_PER_BOX` per
  box drawn (section 5.3 cost model);
* ``judgement`` (alias ``verification``) and ``choice``: U(3, 9) s per task;
* ``text``: about 4 s plus 0.35 s per character typed;
* ``link`` (find something on the web): U(40, 90) s per task;
* ``generic`` (anything else): like a choice.

Times ``profile.speed`` (3 for ``slow`` workers, a fraction for spammers) and a log-normal day-to-day
factor (sd 0.25).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np


if TYPE_CHECKING:
    from crowdboxes.local_toloka.crowd.workers import WorkerProfile

SECONDS_PER_BOX = 25.0
SECONDS_PER_IMAGE = 6.0
VERIFY_SECONDS = (3.0, 9.0)
CHOICE_SECONDS = (3.0, 9.0)
TEXT_SECONDS = 4.0
SECONDS_PER_CHARACTER = 0.35
LINK_SECONDS = (40.0, 90.0)
EXPECTED_BOXES_PER_TASK = 1.5  # when the caller does not know how many boxes were drawn
EXPECTED_CHARACTERS_PER_TASK = 20  # when the caller does not know how much was typed

KIND_ALIASES = {"detection": "drawing", "verification": "judgement"}
TIMED_KINDS = ("drawing", "judgement", "choice", "text", "link", "generic")


def seconds_for(profile: WorkerProfile, n_tasks: int, rng: np.random.Generator, kind: str = "detection",
                n_boxes: int | None = None, n_chars: int | None = None) -> float:
    """Working seconds ``profile`` needs for ``n_tasks`` tasks (a suite) of ``kind`` (see the module).

    ``n_boxes``: boxes drawn in the suite (drawing); ``n_chars``: characters typed (text). Unknown counts
    use :data:`EXPECTED_BOXES_PER_TASK` / :data:`EXPECTED_CHARACTERS_PER_TASK` per task.
    """
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in TIMED_KINDS:
        raise ValueError(f"task kind {kind!r}: expected one of {', '.join(TIMED_KINDS)} "
                         f"(or {', '.join(KIND_ALIASES)})")
    n_tasks = max(int(n_tasks), 0)
    if n_tasks == 0:
        return 0.0
    if kind == "judgement":
        base = float(rng.uniform(*VERIFY_SECONDS, n_tasks).sum())
    elif kind == "drawing":
        boxes = EXPECTED_BOXES_PER_TASK * n_tasks if n_boxes is None else max(int(n_boxes), 0)
        base = SECONDS_PER_IMAGE * n_tasks + SECONDS_PER_BOX * boxes
    elif kind == "text":
        chars = EXPECTED_CHARACTERS_PER_TASK * n_tasks if n_chars is None else max(int(n_chars), 0)
        base = TEXT_SECONDS * n_tasks + SECONDS_PER_CHARACTER * chars
    elif kind == "link":
        base = float(rng.uniform(*LINK_SECONDS, n_tasks).sum())
    else:  # choice, generic
        base = float(rng.uniform(*CHOICE_SECONDS, n_tasks).sum())
    return float(base * profile.speed * np.exp(rng.normal(0.0, 0.25)))
