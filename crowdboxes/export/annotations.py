"""Turning aggregated boxes into deliverables: COCO JSON, a flat CSV, and a run summary.

COCO (``annotations.coco.json``): ``images`` carry ``id`` (1-based, images.csv order),
``file_name, width, height, sha256, url`` (the images.csv URL without its query string: no presigned,
expiring URL or key id in an export) and our ``image_key`` (the image_id of the CSVs);
``annotations`` carry the pixel ``bbox`` [x, y, w, h], ``area`` = w*h, ``category_id``, ``iscrowd`` 0,
``segmentation`` [] (readers such as datumaro expect the field),
and the aggregator's ``score`` and ``support``. Categories are the detection project's label values
(:func:`categories`): a value that is a class of :mod:`crowdboxes.classes` keeps that class's id, any
other value (a project whose view names its labels differently) gets the next id after them, in the
view's order; without the project's labels, the classes of :mod:`crowdboxes.classes`.
The same file loads as ground truth with pycocotools, and its annotations as detection results.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd

from collections.abc import Sequence

from crowdboxes.classes import CLASS_BY_NAME, SIGN_CLASSES, coco_categories
from crowdboxes.export.formats import public_url

FLAT_COLUMNS = ("image_id", "file_name", "url", "width", "height", "label", "category_id", "x", "y", "w", "h",
                "score", "support")


def _number(value: Any, digits: int = 3) -> int | float:
    """A whole number as int (COCO readers expect 640, not 640.0), else rounded to ``digits``."""
    number = float(value)
    return int(number) if number.is_integer() else round(number, digits)


def project_labels(wait_summary: dict[str, Any] | None, path: object) -> list[Any] | None:
    """The detection project's labels Wait Pool recorded (``detection_fields``), or None (older summaries,
    ``--wait_summary none``: the classes of crowdboxes/classes.py)."""
    data = (wait_summary or {}).get("detection_fields")
    if not data:
        return None
    from crowdboxes.toloka.fields import DetectionFields

    return list(DetectionFields.from_dict(data, f"{path}: field 'detection_fields'").labels) or None


def categories(labels: Sequence | None = None) -> list[dict]:
    """COCO categories of the project's labels (:class:`crowdboxes.toloka.fields.Label`, or plain values);
    ``None`` or no labels: the classes of crowdboxes/classes.py."""
    if not labels:
        return coco_categories()
    next_id = max(c.id for c in SIGN_CLASSES) + 1
    out = []
    for label in labels:
        value = str(getattr(label, "value", label))
        known = CLASS_BY_NAME.get(value)
        if known is not None:
            out.append({"id": known.id, "name": value, "supercategory": "road_sign"})
        else:
            out.append({"id": next_id, "name": value, "supercategory": "road_sign"})
            next_id += 1
    return out


def _category_ids(cats: list[dict] | None) -> dict[str, int]:
    return {c["name"]: int(c["id"]) for c in (cats if cats is not None else coco_categories())}


def select_boxes(boxes: pd.DataFrame, min_score: float,
                 cats: list[dict] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Boxes with ``score >= min_score`` and a known category; problems for the unknown labels."""
    names = list(_category_ids(cats))
    kept = boxes[boxes["score"] >= min_score]
    known = kept["label"].astype(str).isin(names)
    problems = [f"boxes.csv line {i + 2}: unknown class {label!r} (skipped; known: {', '.join(names)})"
                for i, label in kept.loc[~known, "label"].items()]
    return kept[known], problems


def coco_document(boxes: pd.DataFrame, images: pd.DataFrame, description: str = "crowdboxes road signs",
                  cats: list[dict] | None = None, created: str | None = None) -> dict:
    """The COCO dict of ``boxes`` (image_id, label, x, y, w, h, score, support) on ``images``;
    ``cats`` from :func:`categories` (default: crowdboxes/classes.py). ``created`` is ``info.date_created``
    (default: now); pass a time taken from the inputs to make a re-export byte-identical."""
    ids = _category_ids(cats)
    coco_images, number = [], {}
    for n, row in enumerate(images.itertuples(index=False), start=1):
        number[str(row.image_id)] = n
        coco_images.append({"id": n, "file_name": str(row.file_name), "width": _number(row.width),
                            "height": _number(row.height), "sha256": str(row.sha256), "url": public_url(row.url),
                            "image_key": str(row.image_id)})
    annotations = []
    ordered = boxes.assign(coco_image=boxes["image_id"].astype(str).map(number)).sort_values(
        ["coco_image", "score"], ascending=[True, False], kind="stable")
    for k, row in enumerate(ordered.itertuples(index=False), start=1):
        w, h = float(row.w), float(row.h)
        annotations.append({
            "id": k, "image_id": int(row.coco_image), "category_id": ids[str(row.label)],
            "bbox": [_number(row.x), _number(row.y), _number(w), _number(h)], "area": _number(w * h),
            "iscrowd": 0, "segmentation": [], "score": float(row.score), "support": int(row.support),
        })
    return {
        "info": {"description": description, "version": "1.0",
                 "date_created": created or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
        "licenses": [],
        "images": coco_images,
        "annotations": annotations,
        "categories": cats if cats is not None else coco_categories(),
    }


def flat_frame(boxes: pd.DataFrame, images: pd.DataFrame, cats: list[dict] | None = None) -> pd.DataFrame:
    """One row per box with its image's file name, URL and size and the category id."""
    ids = _category_ids(cats)
    info = images[["image_id", "file_name", "url", "width", "height"]].astype({"image_id": str})
    info["url"] = info["url"].map(public_url)
    flat = boxes.astype({"image_id": str}).merge(info, on="image_id", how="left")
    flat["category_id"] = flat["label"].map(lambda name: ids[str(name)]).astype("int64")
    return flat[list(FLAT_COLUMNS)].sort_values(["image_id", "score"], ascending=[True, False], kind="stable")


def summary(boxes: pd.DataFrame, images: pd.DataFrame, wait_summary: dict | None, min_score: float) -> dict:
    """Counts, boxes per class, cost and time of the run."""
    per_class = {name: int(n) for name, n in boxes["label"].value_counts().sort_index().items()}
    result = {
        "images": int(len(images)),
        "images_with_boxes": int(boxes["image_id"].nunique()),
        "boxes": int(len(boxes)),
        "boxes_per_class": per_class,
        "min_score": min_score,
        "cost_usd": None,
        "cost_per_accepted_image_usd": None,
        "crowd_wait_seconds": None,
        "wall_time_seconds": None,
    }
    if wait_summary:
        cost = wait_summary.get("spent_usd")
        counts = wait_summary.get("counts") or {}
        accepted = wait_summary.get("images_accepted")
        if accepted is None:  # an older wait_summary.json
            accepted = wait_summary.get("images_answered") or len(images)
        result["cost_usd"] = cost
        result["accepted_assignments"] = counts.get("accepted")
        result["images_accepted"] = accepted
        if cost is not None and accepted:
            result["cost_per_accepted_image_usd"] = round(float(cost) / accepted, 5)
        result["crowd_wait_seconds"] = wait_summary.get("duration_seconds")
        started = wait_summary.get("first_started_at") or wait_summary.get("started_at")
        if started:
            # to Wait Pool's finish, not to now: a re-export of the same inputs writes the same summary
            end = _utc(wait_summary["finished_at"]) if wait_summary.get("finished_at") else \
                dt.datetime.now(dt.timezone.utc)
            result["wall_time_seconds"] = round((end - _utc(started)).total_seconds(), 1)
    return result


def _utc(stamp: object) -> dt.datetime:
    """An ISO time (``Z`` or an offset; none means UTC) as an aware datetime."""
    when = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def summary_lines(s: dict) -> list[str]:
    """The summary as a few readable lines for the job log."""
    def money(v: Any) -> str:
        return "unknown" if v is None or (isinstance(v, float) and math.isnan(v)) else f"${float(v):.4f}"

    def seconds(v: Any) -> str:
        return "unknown" if v is None else f"{float(v) / 60:.1f} min"

    lines = [f"images: {s['images']}, with boxes: {s['images_with_boxes']}, boxes: {s['boxes']} "
             f"(score >= {s['min_score']})"]
    lines += [f"  {name:<20} {n}" for name, n in s["boxes_per_class"].items()]
    lines.append(f"cost: {money(s['cost_usd'])}, per accepted image: {money(s['cost_per_accepted_image_usd'])}")
    lines.append(f"crowd wait: {seconds(s['crowd_wait_seconds'])}, "
                 f"wall time from Wait Pool's first start to its finish: {seconds(s['wall_time_seconds'])}")
    return lines
