"""The crowd's ground truth: a COCO JSON file, read and checked here (independently of the product).

Format (every key but ``images`` and ``annotations`` optional)::

    {
      "images": [
        {"id": 1, "file_name": "road1.png", "width": 640, "height": 480,
         "sha256": "<hex digest of the file's bytes>",
         "label": "stop",                       # an image-level class (classification tasks)
         "labels": {"category": "stop"},        # or one value per output field name
         "text": "STOP",                        # the text in the image (text-recognition tasks)
         "link": "https://...",                 # or "links": [...]: the right answer of a find-a-link task
        }, ...],
      "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h],   # pixels
         "occluded": false, "visible": 0.8}, ...],                          # optional: how hidden the sign is
      "categories": [{"id": 1, "name": "stop"}, ...],   # default: the ten road-sign classes, ids 1..10
      "tasks": [                                         # truth for tasks without an image
        {"input_values": {"question": "Capital of France?"},        # a subset of the task's input_values
         "output_values": {"answer": "Paris"}}, ...]
    }

An image is found by the sha256 of the fetched bytes, else by its ``file_name``, else by the last segment of
the task's URL (query string dropped) against the files' base names, and a segment ``<sha256>.<ext>`` (how the
upload step stores images) against the hashes. A task without an image takes the first ``tasks`` entry whose
``input_values`` are all equal in the task's ``input_values``.

Per output field the truth value of an image is, in this order: ``labels[field]`` (a list for a multi-label
field), else for a multi-label field (checkbox group, array of options) the classes of the image's boxes, for a
choice ``label`` (else the class of the image's largest box, when it is one of the options), for a link field
``link``/``links``, for a free-text field of a text task (or a required one) ``text``. Truth class names meet the view's label or
option values through the server's ``--label-map`` (class -> value), else by equal value, else by value or
label text equal ignoring case, spaces, ``_`` and ``-``. Choices are answered right with each worker's
``class_accuracy`` (a wrong answer is uniform over the other options), texts with typos (careful ~1 % of the
characters, sloppy ~5 %), links right with ``class_accuracy`` (else a plausible shop URL); spammers ignore
the truth. A task the truth does not cover gets a valid, uninformed answer, and the server logs once per
project: "project N has no truth for its tasks; answers are uninformed".
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from crowdboxes.local_toloka.crowd.boxes import _annotation_hidden as annotation_hidden


TruthHit = tuple[float, float, pd.DataFrame]
"""The truth of one image: ``(width, height, its rows of Truth.boxes)``."""
from crowdboxes.local_toloka.crowd.classes import DEFAULT_CATEGORIES


_SHA256 = re.compile(r"[0-9a-f]{64}")


class TruthError(ValueError):
    """The truth file is missing, not JSON, or not in the format above (the message says where)."""


def check_truth(coco: Any, where: str = "ground truth") -> dict:
    """``coco`` if it has the format above; :class:`TruthError` naming the bad entry otherwise."""
    if not isinstance(coco, dict):
        raise TruthError(f"{where}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations"):
        if not isinstance(coco.get(key, []), list):
            raise TruthError(f"{where}: field {key!r} is not a list")
    ids = set()
    for i, image in enumerate(coco.get("images", [])):
        for field in ("id", "file_name", "width", "height"):
            if not isinstance(image, dict) or field not in image:
                raise TruthError(f"{where}: images[{i}] lacks field {field!r}")
        w, h = image["width"], image["height"]
        if not (isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0):
            raise TruthError(f"{where}: images[{i}] (id {image['id']!r}): width/height must be positive numbers")
        if "labels" in image and not isinstance(image["labels"], dict):
            raise TruthError(f"{where}: images[{i}]: 'labels' must be an object {{output field: value}}")
        ids.add(image["id"])
    for i, ann in enumerate(coco.get("annotations", [])):
        for field in ("image_id", "category_id", "bbox"):
            if not isinstance(ann, dict) or field not in ann:
                raise TruthError(f"{where}: annotations[{i}] lacks field {field!r}")
        if ann["image_id"] not in ids:
            raise TruthError(f"{where}: annotations[{i}]: image_id {ann['image_id']!r} is not in images")
        bbox = ann["bbox"]
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
            raise TruthError(f"{where}: annotations[{i}]: bbox {bbox!r} is not [x, y, w, h] numbers")
        if bbox[2] < 0 or bbox[3] < 0:
            raise TruthError(f"{where}: annotations[{i}]: bbox {bbox!r} has a negative width or height")
    tasks = coco.get("tasks", [])
    if not isinstance(tasks, list):
        raise TruthError(f"{where}: field 'tasks' is not a list")
    for i, task in enumerate(tasks):
        if not (isinstance(task, dict) and isinstance(task.get("input_values"), dict)
                and isinstance(task.get("output_values"), dict)):
            raise TruthError(f"{where}: tasks[{i}] needs objects 'input_values' and 'output_values'")
    return coco


def load_truth(path: str | os.PathLike) -> dict:
    """Read and check a truth file; :class:`TruthError` naming the file and the bad entry."""
    path = Path(path)
    if not path.is_file():
        raise TruthError(f"{path}: file not found")
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TruthError(f"{path}: not readable JSON ({exc})") from None
    return check_truth(coco, str(path))


def _subset(wanted: dict, have: dict) -> bool:
    return all(key in have and have[key] == value for key, value in wanted.items())


class Truth:
    """Look up an image's size, boxes and image-level truth, or a task's truth by its inputs.

    ``boxes`` has one row per annotation (file order): ``image_id, file_name, label, x, y, w, h, visible``
    (``visible`` = 1 - hidden fraction, from ``visible``/``occluded``).
    """

    def __init__(self, coco: dict | None = None) -> None:
        coco = check_truth({"images": [], "annotations": []} if coco is None else coco)
        self.coco = coco
        names = dict(DEFAULT_CATEGORIES)
        names.update({c["id"]: str(c["name"]) for c in coco.get("categories") or []
                      if isinstance(c, dict) and "id" in c and "name" in c})
        self.category_names = names
        images = coco.get("images", [])
        annotations = coco.get("annotations", [])
        self._image = {im["id"]: im for im in images}
        file_of = {im["id"]: im["file_name"] for im in images}
        rows = [(a["image_id"], file_of[a["image_id"]], names.get(a["category_id"], str(a["category_id"])),
                 *map(float, a["bbox"])) for a in annotations]
        frame = pd.DataFrame(rows, columns=["image_id", "file_name", "label", "x", "y", "w", "h"])
        frame[["x", "y", "w", "h"]] = frame[["x", "y", "w", "h"]].astype("float64")
        frame["visible"] = 1.0 - annotation_hidden(annotations) if len(annotations) else np.empty(0)
        self.boxes = frame
        self._by_sha: dict[str, object] = {}
        self._by_name: dict[str, object] = {}
        self._by_base: dict[str, object] = {}
        for im in images:
            if im.get("sha256"):
                self._by_sha.setdefault(str(im["sha256"]).lower(), im["id"])
            self._by_name.setdefault(str(im["file_name"]), im["id"])
            self._by_base.setdefault(PurePosixPath(str(im["file_name"])).name, im["id"])
        self._rows = {image_id: group for image_id, group in frame.groupby("image_id", sort=False)}
        self._empty = frame.iloc[0:0]
        self.tasks = list(coco.get("tasks") or [])
        self._labels: list[str] | None = None

    def __len__(self) -> int:
        return len(self._image)

    @property
    def labels(self) -> list[str]:
        """Every class name the truth uses: categories of its boxes, then image-level labels."""
        if self._labels is None:
            out = list(dict.fromkeys(self.boxes["label"].astype(str)))
            out += [str(im["label"]) for im in self._image.values() if im.get("label") is not None]
            self._labels = list(dict.fromkeys(out))
        return self._labels

    def image_id(self, sha256: str | None = None, file_name: str | None = None) -> Any:
        """The truth's image id for the content hash, else the file name / URL; None if unknown."""
        if sha256:
            found = self._by_sha.get(sha256.lower())
            if found is not None:
                return found
        if file_name:
            found = self._by_name.get(file_name)
            if found is None:
                base = PurePosixPath(file_name.split("?", 1)[0].split("#", 1)[0]).name
                found = self._by_base.get(base)
                stem = base.rsplit(".", 1)[0].lower()
                if found is None and _SHA256.fullmatch(stem):  # uploads are stored as <sha256>.<ext>
                    found = self._by_sha.get(stem)
            return found
        return None

    def lookup(self, sha256: str | None = None, file_name: str | None = None) -> TruthHit | None:
        """``(width, height, boxes)`` with the image's rows of :attr:`boxes`, or None if unknown."""
        image_id = self.image_id(sha256=sha256, file_name=file_name)
        if image_id is None:
            return None
        image = self._image[image_id]
        return float(image["width"]), float(image["height"]), self._rows.get(image_id, self._empty)

    def image(self, sha256: str | None = None, file_name: str | None = None) -> dict | None:
        """The truth's image record (with ``label``/``labels``/``text``/``link``), or None."""
        image_id = self.image_id(sha256=sha256, file_name=file_name)
        return None if image_id is None else self._image[image_id]

    def task(self, input_values: dict) -> dict | None:
        """``output_values`` of the first ``tasks`` entry whose inputs are a subset of ``input_values``."""
        if not isinstance(input_values, dict):
            return None
        for entry in self.tasks:
            if entry["input_values"] and _subset(entry["input_values"], input_values):
                return entry["output_values"]
        return None


def as_truth(truth: Any) -> Truth:
    """A :class:`Truth` from None, a COCO dict, a :class:`Truth`, or any object with a ``coco`` dict."""
    if isinstance(truth, Truth):
        return truth
    if truth is None or isinstance(truth, dict):
        return Truth(truth)
    coco = getattr(truth, "coco", None)
    if isinstance(coco, dict):
        return Truth(coco)
    raise TruthError(f"ground truth of type {type(truth).__name__}: expected a COCO dict")
