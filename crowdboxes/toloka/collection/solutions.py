"""Collected solutions as answers.csv rows: image-annotation rectangles (0..1) converted to pixels."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from crowdboxes.artifacts import ANSWERS


def result_shapes(value: Any) -> list[Any]:
    """The image-annotation output (``result`` in the shipped project) as a list of shapes (it is a JSON
    string in TSV exports)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if not isinstance(value, list):
        raise ValueError(f"result is {type(value).__name__}, expected a list of shapes")
    return value


def rectangle_pixels(shape: Any, width: float, height: float) -> tuple[str, float, float, float, float]:
    """One image-annotation rectangle (0..1 of the image) as (label, x, y, w, h) in pixels."""
    if not isinstance(shape, dict) or shape.get("shape") != "rectangle":
        kind = shape.get("shape") if isinstance(shape, dict) else type(shape).__name__
        raise ValueError(f"shape {kind!r} is not a rectangle")
    coords = []
    for key in ("left", "top", "width", "height"):
        value = shape.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"rectangle {key} is {value!r}")
        coords.append(float(value))
    left, top, w, h = coords
    return (str(shape.get("label") or ""), left * width, top * height, w * width, h * height)


def answers_frame(records: Iterable[Mapping[str, Any]], tasks: pd.DataFrame, images: pd.DataFrame,
                  output_field: str = "result") -> tuple[pd.DataFrame, list[str]]:
    """answers.csv rows of the collected assignments and a list of problems (skipped answers).

    One row per drawn rectangle; one row with empty label and box when a worker drew nothing.
    Tasks map to images by task id (tasks.csv), else by image URL (tasks.csv/images.csv). The shapes are
    read from the detection project's output field ``output_field`` (:class:`crowdboxes.toloka.fields.DetectionFields`).
    """
    image_by_task = dict(zip(tasks["task_id"].astype(str), tasks["image_id"].astype(str)))
    image_by_url = dict(zip(images["url"].astype(str), images["image_id"].astype(str)))
    image_by_url.update(zip(tasks["url"].astype(str), tasks["image_id"].astype(str)))
    size = {str(i): (float(w), float(h)) for i, w, h in zip(images["image_id"], images["width"], images["height"])}
    # rows as tuples in ``columns`` order: a tuple is a fifth of a dict's size (100,000 images make ~600,000 rows)
    columns = list(ANSWERS.columns) + ["pool_id"]
    rows: list[tuple[Any, ...]] = []
    problems: list[str] = []
    for rec in sorted(records, key=lambda r: (r["submitted"], r["id"])):
        assignment, worker, status = rec["id"], rec["user_id"], rec["status"]
        submitted, pool = rec["submitted"], rec["pool_id"]
        for task, output in zip(rec["tasks"], rec["outputs"]):
            image_id = image_by_task.get(str(task["id"])) or image_by_url.get(str(task.get("image")))
            if image_id is None or image_id not in size:
                problems.append(f"assignment {assignment}: task {task['id']} is not in tasks.csv/images.csv")
                continue
            width, height = size[image_id]
            try:
                shapes = result_shapes((output or {}).get(output_field))
            except (ValueError, json.JSONDecodeError) as exc:
                problems.append(f"assignment {assignment} task {task['id']}: unreadable {output_field}: {exc}")
                continue
            head = (assignment, task["id"], image_id, worker, status, submitted)
            if not shapes:
                rows.append((*head, None, None, None, None, None, pool))
            for number, shape in enumerate(shapes, start=1):
                try:
                    label, x, y, w, h = rectangle_pixels(shape, width, height)
                except ValueError as exc:
                    problems.append(f"assignment {assignment} task {task['id']} shape {number}: {exc}")
                    continue
                rows.append((*head, label, x, y, w, h, pool))
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("x", "y", "w", "h"):
        frame[column] = frame[column].astype("float64")
    return frame, problems
