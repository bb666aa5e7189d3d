"""The rounds' Toloka tasks: their inputs (field names fixed by configs/*_project.json), what the pool holds
already, and the exactly-once creation.

The state of a round lives on Toloka, not in the output folder: before anything is created the round pool's
tasks are listed, and an image (``image_id`` input) or a box (``box_id`` input) that has a task is not sent
again. A crash between creation and collection, followed by a re-run into the same or a fresh folder, so
creates nothing twice and pays nothing twice. The budget is asked before every batch is created.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crowdboxes.toloka.client import LIST_PAGE
from crowdboxes.toloka.rounds.selection import BOX_COLUMNS, empty_boxes

# input fields of configs/missed_signs_project.json and configs/box_check_project.json
IMAGE, IMAGE_ID, SHOWN, BOX, BOX_ID, LABEL_TEXT = "image", "image_id", "shown", "box", "box_id", "label_text"
MISSED_OUTPUT, VERDICT, RIGHT_LABEL = "result", "verdict", "right_label"
BATCH = 200  # tasks per create request
SHOWN_MIN_SCORE = 0.5  # the current boxes a missed-sign worker sees: those the output keeps at 0.5


def shapes(boxes: pd.DataFrame, width: float, height: float) -> list[dict[str, Any]]:
    """Pixel boxes (``label, x, y, w, h``) as Toloka image-annotation rectangles, normalised 0..1 and clipped."""
    out = []
    for label, x, y, w, h in zip(boxes["label"], boxes["x"], boxes["y"], boxes["w"], boxes["h"]):
        x1, y1 = float(np.clip(x, 0, width)), float(np.clip(y, 0, height))
        x2, y2 = float(np.clip(x + w, 0, width)), float(np.clip(y + h, 0, height))
        out.append({"shape": "rectangle", "left": x1 / width, "top": y1 / height, "width": (x2 - x1) / width,
                    "height": (y2 - y1) / height, "label": str(label)})
    return out


def _shape_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    return value if isinstance(value, list) else []


def list_tasks(client: Any, pool_id: str) -> list[Any]:
    """Every task of the round pool (toloka-kit ``Task`` objects)."""
    return list(client.get_tasks(pool_id=str(pool_id), batch_size=LIST_PAGE))


def task_images(tasks: Sequence[Any]) -> set[str]:
    """The image ids the missed-sign pool has a task for."""
    return {str((t.input_values or {}).get(IMAGE_ID)) for t in tasks if (t.input_values or {}).get(IMAGE_ID)}


def task_boxes(tasks: Sequence[Any], sizes: Mapping[str, tuple[float, float]]) -> pd.DataFrame:
    """The boxes the check pool has a task for: ``image_id, box_id, label, x, y, w, h`` (pixels, from the
    task's ``box`` input and the image size; NaN where the image is unknown or the shape unreadable)."""
    rows = []
    for task in tasks:
        values = task.input_values or {}
        if not values.get(BOX_ID):
            continue
        image_id = str(values.get(IMAGE_ID))
        width, height = sizes.get(image_id, (np.nan, np.nan))
        try:
            shape = _shape_list(values.get(BOX))[0]
            coords = [float(shape[k]) for k in ("left", "top", "width", "height")]
            label = str(shape.get("label") or "")
        except (IndexError, KeyError, TypeError, ValueError, AttributeError):
            coords, label = [np.nan] * 4, ""
        rows.append({"image_id": image_id, "box_id": str(values[BOX_ID]), "label": label,
                     "x": coords[0] * width, "y": coords[1] * height, "w": coords[2] * width,
                     "h": coords[3] * height})
    return pd.DataFrame(rows, columns=BOX_COLUMNS) if rows else empty_boxes()


def missed_sign_inputs(image_ids: Sequence[str], urls: Mapping[str, str], sizes: Mapping[str, tuple[float, float]],
                       boxes: pd.DataFrame) -> list[dict[str, Any]]:
    """One missed-sign task input per image: the image, its boxes scored at least 0.5 (read-only) and its id."""
    shown = boxes[boxes["score"] >= SHOWN_MIN_SCORE]
    by_image = dict(tuple(shown.groupby(shown["image_id"].astype(str))))
    inputs = []
    for image_id in image_ids:
        width, height = sizes[image_id]
        mine = by_image.get(image_id, shown.iloc[:0])
        inputs.append({IMAGE: urls[image_id], SHOWN: shapes(mine, width, height), IMAGE_ID: image_id})
    return inputs


def check_inputs(boxes: pd.DataFrame, urls: Mapping[str, str], sizes: Mapping[str, tuple[float, float]],
                 titles: Mapping[str, str]) -> list[dict[str, Any]]:
    """One check task input per box: the image, the box as one normalised rectangle with its label, the box id,
    the image id and the class's human name (``titles``: label -> title; the label itself when unknown)."""
    inputs = []
    for _, box in boxes.iterrows():
        image_id = str(box["image_id"])
        width, height = sizes[image_id]
        inputs.append({IMAGE: urls[image_id], BOX: shapes(box.to_frame().T, width, height),
                       BOX_ID: str(box["box_id"]), IMAGE_ID: image_id,
                       LABEL_TEXT: str(titles.get(str(box["label"]), box["label"]))})
    return inputs


@dataclass
class Created:
    """What :func:`create_tasks` did: tasks ``created``, ``refused`` by the budget, ``failed`` (reasons)."""

    created: int = 0
    refused: int = 0
    failed: list[str] = field(default_factory=list)


def create_tasks(client: Any, pool_id: str, inputs: Sequence[dict[str, Any]], *, overlap: int,
                 fits: Callable[[int], bool], batch: int = BATCH) -> Created:
    """Create one task per input in ``pool_id`` with an explicit ``overlap``, in batches, opening the pool.

    ``fits(n)`` says whether ``n`` more tasks still fit the round's budget; it is asked before every batch
    (a batch that does not fit is cut to what does). ``allow_defaults=False`` because the overlap is given
    (``--checkers`` may differ from the pool's default). The pool opens once, after the last batch: opened
    with the first batch, workers could empty it before the next one arrives, and every batch would end in a
    partial suite the budget did not count. Invalid items are skipped by Toloka and reported in ``failed``.
    """
    from toloka.client import Task

    done = Created()
    for start in range(0, len(inputs), batch):
        part = list(inputs[start:start + batch])
        n = len(part)
        while n and not fits(done.created + n):
            n -= 1
        if n:
            tasks = [Task(pool_id=str(pool_id), overlap=int(overlap), input_values=values) for values in part[:n]]
            result = client.create_tasks(tasks, allow_defaults=False, open_pool=False, skip_invalid_items=True)
            done.created += len(result.items or {})
            for index, errors in (result.validation_errors or {}).items():
                done.failed.append(f"task {start + int(index) + 1}: {errors}")
        if n < len(part):  # the budget is reached: the rest does not fit either
            done.refused += len(inputs) - start - n
            break
    if done.created and not client.get_pool(str(pool_id)).is_open():
        client.open_pool(str(pool_id))
    return done
