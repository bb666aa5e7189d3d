"""The rounds' collected assignments as rows: missed-sign additions for answers.csv, verdicts for checks.csv.

**Drawers never add to their own image.** Toloka has no per-task worker exclusion (filters and skills act on
a whole pool), so a worker who drew an image in the detection pool may still get its missed-sign task. Their
answer is accepted (and paid, as Toloka's auto-accept would), but their additions are dropped and counted
(``dropped_drawer_rows``): they would be a second, correlated vote of the same worker on the same image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from crowdboxes.artifacts import CHECKS
from crowdboxes.toloka.collection.solutions import answers_frame
from crowdboxes.toloka.fields import CHECK_VERDICTS as VERDICTS
from crowdboxes.toloka.pools import BOX_CHECK_POOL_ROLE as BOX_CHECK, MISSED_SIGNS_POOL_ROLE as MISSED_SIGNS
from crowdboxes.toloka.rounds.tasks import IMAGE, IMAGE_ID, MISSED_OUTPUT, BOX_ID, RIGHT_LABEL, VERDICT

# answers.csv ``round`` of the first-round drawings; the additions' is the missed-sign pool's role
DRAWING = "drawing"


def round_tasks_frame(tasks: Iterable[Any], pool_id: str) -> pd.DataFrame:
    """tasks.csv-like rows (``task_id, pool_id, image_id, url``) of a round pool's tasks (from their inputs)."""
    rows = [{"task_id": str(t.id), "pool_id": str(pool_id), "image_id": str((t.input_values or {}).get(IMAGE_ID)),
             "url": str((t.input_values or {}).get(IMAGE))} for t in tasks]
    return pd.DataFrame(rows, columns=["task_id", "pool_id", "image_id", "url"])


@dataclass
class MissedRows:
    """answers.csv rows of the missed-sign round, what was dropped and the problems met."""

    frame: pd.DataFrame
    dropped_drawer_rows: int = 0
    problems: list[str] = field(default_factory=list)


def missed_sign_rows(records: Iterable[Mapping[str, Any]], tasks: pd.DataFrame, images: pd.DataFrame,
                     drawers: Mapping[str, set[str]]) -> MissedRows:
    """The additions as answers.csv rows with ``round = missed_signs`` (one empty row for "nothing missing").

    ``drawers``: image id -> the workers who drew it in the detection pool; their rows are dropped.
    """
    frame, problems = answers_frame(records, tasks, images, output_field=MISSED_OUTPUT)
    own = [str(w) in drawers.get(str(i), set()) for i, w in zip(frame["image_id"], frame["worker_id"])]
    dropped = int(sum(own))
    frame = frame[[not x for x in own]].assign(round=MISSED_SIGNS).reset_index(drop=True)
    return MissedRows(frame, dropped, problems)


@dataclass
class CheckRows:
    """checks.csv rows, the answers skipped for an unknown box or an unreadable verdict, and the problems."""

    frame: pd.DataFrame
    unknown_box: int = 0
    bad_verdict: int = 0
    dropped_drawer_checks: int = 0
    problems: list[str] = field(default_factory=list)


def check_rows(records: Iterable[Mapping[str, Any]], task_inputs: Mapping[str, dict[str, Any]],
               known: pd.DataFrame, labels: Iterable[str] = (), aliases: Mapping[str, str] | None = None,
               drawers: Mapping[str, set[str]] | None = None) -> CheckRows:
    """checks.csv rows (``artifacts.CHECKS``) of the collected check assignments.

    ``task_inputs``: task id -> its input values (``box_id`` among them); ``known``: the boxes the check may be
    about (``image_id, box_id, label, x, y, w, h``, the current aggregation's). An answer whose task names a box
    id that is not in ``known`` (after ``aliases``: a task's box id -> the current box it counts for, see
    :func:`crowdboxes.toloka.rounds.selection.aliases`), or that has no task at all, is skipped and counted in
    ``unknown_box``; a verdict outside yes / no_sign / loose / wrong_class, or a wrong_class whose
    ``right_label`` is not one of ``labels`` (when given), in ``bad_verdict``. ``right_label`` is kept only
    with wrong_class. The box's coordinates in a row are the current box's (``known``). A check by one of the
    image's drawers (``drawers``: image id -> worker ids) is dropped and counted in ``dropped_drawer_checks``:
    Toloka cannot keep a worker from one task, and a drawer's "yes" on their own box is no independent evidence.
    """
    boxes = {str(r.box_id): r for r in known.itertuples(index=False)}
    allowed = set(labels)
    out = CheckRows(pd.DataFrame(columns=list(CHECKS.columns)))
    rows = []
    for rec in records:
        for task, output in zip(rec["tasks"], rec["outputs"]):
            box_id = str((task_inputs.get(str(task["id"])) or {}).get(BOX_ID, ""))
            box_id = (aliases or {}).get(box_id, box_id)
            box = boxes.get(box_id)
            if box is None:
                out.unknown_box += 1
                out.problems.append(f"assignment {rec['id']} task {task['id']}: unknown box_id {box_id!r}")
                continue
            if str(rec["user_id"]) in (drawers or {}).get(str(box.image_id), set()):
                out.dropped_drawer_checks += 1
                continue
            verdict = str((output or {}).get(VERDICT) or "")
            right = str((output or {}).get(RIGHT_LABEL) or "") if verdict == "wrong_class" else ""
            if verdict not in VERDICTS or (verdict == "wrong_class" and allowed and right not in allowed):
                out.bad_verdict += 1
                out.problems.append(f"assignment {rec['id']} task {task['id']}: verdict {verdict!r} "
                                    f"right_label {right!r} is not an allowed answer")
                continue
            rows.append({"image_id": str(box.image_id), "box_id": box_id, "label": box.label, "x": box.x,
                         "y": box.y, "w": box.w, "h": box.h, "worker_id": rec["user_id"], "verdict": verdict,
                         "right_label": right, "assignment_id": rec["id"], "status": rec["status"],
                         "submitted_at": rec["submitted"]})
    if rows:
        out.frame = pd.DataFrame(rows, columns=list(CHECKS.columns))
    return out


def with_round(frame: pd.DataFrame, value: str = DRAWING) -> pd.DataFrame:
    """answers.csv rows with a ``round`` column (``value`` where it is missing: first-round rows are drawings)."""
    if "round" not in frame.columns:
        return frame.assign(round=value)
    return frame.assign(round=frame["round"].fillna(value))

