"""Ground truth as COCO JSON: the one reader/writer shared by the synthesiser, the local Toloka,
the crowd simulator, the evaluation and the benchmarks.

A truth file holds ``images`` (``id, file_name, width, height, sha256`` where ``sha256`` is the hex
digest of the image file's bytes), ``annotations`` (``id, image_id, category_id, bbox=[x, y, w, h]``
in pixels, ``area``, ``iscrowd``; extra keys such as ``occluded`` are kept) and ``categories`` (from
:mod:`crowdboxes.classes`).

Pascal VOC boxes are inclusive pixel ranges, so ``xmin=10, xmax=19`` covers 10 pixels and becomes
COCO ``x=10, w=xmax-xmin+1=10``; boxes are then cut to the image rectangle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from crowdboxes.classes import CLASS_BY_ID, VOC_LABELS, class_by_name, coco_categories
from crowdboxes.geometry import clip_to_image
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import atomic_path, read_json, sha256_file

IMAGE_COLUMNS = ("image_id", "file_name", "width", "height", "sha256")
BOX_COLUMNS = ("image_id", "file_name", "label", "x", "y", "w", "h")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (how the truth identifies an image's content)."""
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- I/O
def _check_coco(coco: object, where: str) -> dict[str, Any]:
    """``coco`` itself once it has the fields a truth needs; CrowdboxesError naming ``where`` and the entry."""
    if not isinstance(coco, dict):
        raise CrowdboxesError(f"{where}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations"):
        if not isinstance(coco.get(key), list):
            raise CrowdboxesError(f"{where}: field {key!r} is missing or not a list")
    image_ids = set()
    for i, image in enumerate(coco["images"]):
        for field in ("id", "file_name", "width", "height"):
            if not isinstance(image, dict) or field not in image:
                raise CrowdboxesError(f"{where}: images[{i}] lacks field {field!r}")
        if not (isinstance(image["width"], (int, float)) and isinstance(image["height"], (int, float))
                and image["width"] > 0 and image["height"] > 0):
            raise CrowdboxesError(f"{where}: images[{i}] (id {image['id']!r}): width/height must be positive numbers")
        image_ids.add(image["id"])
    for i, ann in enumerate(coco["annotations"]):
        for field in ("image_id", "category_id", "bbox"):
            if not isinstance(ann, dict) or field not in ann:
                raise CrowdboxesError(f"{where}: annotations[{i}] lacks field {field!r}")
        if ann["image_id"] not in image_ids:
            raise CrowdboxesError(f"{where}: annotations[{i}]: image_id {ann['image_id']!r} is not in images")
        bbox = ann["bbox"]
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in bbox)):
            raise CrowdboxesError(f"{where}: annotations[{i}]: bbox {bbox!r} is not [x, y, w, h] numbers")
        if bbox[2] < 0 or bbox[3] < 0:
            raise CrowdboxesError(f"{where}: annotations[{i}]: bbox {bbox!r} has a negative width or height")
    return coco


def load_coco(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a COCO truth file; CrowdboxesError naming the file and the bad entry."""
    path = Path(path)
    coco = read_json(path, "ground-truth")
    coco = _check_coco(coco, str(path))
    coco.setdefault("categories", coco_categories())
    return coco


def write_coco(coco: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``coco`` atomically (a reader never sees half a file); same dict -> same bytes."""
    _check_coco(coco, str(path))
    if "categories" not in coco:  # a reader needs the label names; the caller's dict stays as it was
        coco = {**coco, "categories": coco_categories()}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(coco, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(path)


# ------------------------------------------------------------------------------------------ frames
def _label_by_category(coco: dict[str, Any]) -> dict[Any, str]:
    """Class name by category id: the product's classes, overridden by the file's own categories."""
    labels = {c.id: c.name for c in CLASS_BY_ID.values()}
    labels.update({c["id"]: c["name"] for c in coco.get("categories") or []})
    return labels


def images_frame(coco: dict[str, Any]) -> pd.DataFrame:
    """One row per image: ``image_id, file_name, width, height, sha256`` (sha256 '' when absent)."""
    rows = [(im["id"], im["file_name"], im["width"], im["height"], im.get("sha256") or "")
            for im in coco["images"]]
    return pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))


def truth_boxes(coco: dict[str, Any]) -> pd.DataFrame:
    """One row per true box: ``image_id, file_name, label, x, y, w, h`` (pixels, float)."""
    labels = _label_by_category(coco)
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    rows = [(a["image_id"], names[a["image_id"]], labels.get(a["category_id"], str(a["category_id"])),
             *map(float, a["bbox"])) for a in coco["annotations"]]
    frame = pd.DataFrame(rows, columns=list(BOX_COLUMNS))
    frame[["x", "y", "w", "h"]] = frame[["x", "y", "w", "h"]].astype("float64")
    return frame


# ------------------------------------------------------------------------------------ Pascal VOC
def _voc_int(obj: ET.Element, tag: str, where: str) -> int:
    node = obj.find(tag)
    if node is None or node.text is None:
        raise CrowdboxesError(f"{where}: missing <{tag}>")
    try:
        return int(round(float(node.text)))
    except ValueError:
        raise CrowdboxesError(f"{where}: <{tag}> {node.text!r} is not a number") from None


def voc_folder_to_coco(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A Pascal VOC folder (``annotations/*.xml`` + ``images/``) as a COCO truth dict.

    Width/height come from the image file itself (the XML ``<size>`` may be stale); labels are
    mapped with :data:`crowdboxes.classes.VOC_LABELS`; an unknown label is an error naming the file.
    """
    folder = Path(folder)
    ann_dir = folder / "annotations" if (folder / "annotations").is_dir() else folder
    img_dir = folder / "images" if (folder / "images").is_dir() else folder
    xml_files = sorted(ann_dir.glob("*.xml"), key=natural_key)
    if not xml_files:
        raise CrowdboxesError(f"{ann_dir}: no Pascal VOC .xml files")
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for xml_path in xml_files:
        try:
            root = ET.parse(xml_path).getroot()
        except ET.ParseError as exc:
            raise CrowdboxesError(f"{xml_path}: not valid XML ({exc})") from None
        name_node = root.find("filename")
        file_name = name_node.text.strip() if name_node is not None and name_node.text else None
        image_path = img_dir / file_name if file_name else None
        if image_path is None or not image_path.is_file():
            candidates = [img_dir / (xml_path.stem + s) for s in _IMAGE_SUFFIXES]
            image_path = next((p for p in candidates if p.is_file()), None)
            if image_path is None:
                raise CrowdboxesError(f"{xml_path}: image {file_name or xml_path.stem!r} not found in {img_dir}")
        try:
            with Image.open(image_path) as im:
                width, height = im.size
        except (UnidentifiedImageError, OSError) as exc:
            raise CrowdboxesError(f"{image_path}: not a readable image ({exc})") from None
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": image_path.name, "width": width, "height": height,
                       "sha256": sha256_file(image_path)})
        for k, obj in enumerate(root.findall("object")):
            where = f"{xml_path} object {k + 1}"
            voc_label = (obj.findtext("name") or "").strip()
            if voc_label not in VOC_LABELS:
                raise CrowdboxesError(f"{where}: label {voc_label!r} has no mapping in classes.VOC_LABELS "
                                f"(known: {', '.join(sorted(VOC_LABELS))})")
            category = class_by_name(VOC_LABELS[voc_label])
            xmin, ymin = _voc_int(obj, "bndbox/xmin", where), _voc_int(obj, "bndbox/ymin", where)
            xmax, ymax = _voc_int(obj, "bndbox/xmax", where), _voc_int(obj, "bndbox/ymax", where)
            # inclusive pixel ranges; some sample boxes end one pixel past the image, so cut them
            x, y, w, h = clip_to_image([[xmin, ymin, xmax - xmin + 1, ymax - ymin + 1]], width, height)[0]
            if w <= 0 or h <= 0:
                raise CrowdboxesError(f"{where}: box ({xmin},{ymin})-({xmax},{ymax}) is empty or outside "
                                f"the {width}x{height} image")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category.id, "bbox": [int(x), int(y), int(w), int(h)],
                                "area": int(w) * int(h), "iscrowd": 0,
                                "occluded": (obj.findtext("occluded") or "0").strip() == "1"})
    return {"info": {"description": f"Pascal VOC folder {folder.name}"}, "images": images,
            "annotations": annotations, "categories": coco_categories()}


def natural_key(path: Path) -> list[int | str]:
    """Sort key of a file name with its digit runs as numbers: road2.xml before road10.xml, so image ids
    follow the sample's numbering."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


# -------------------------------------------------------------------------------------- the index
class TruthIndex:
    """Find an image's size and true boxes by file content (sha256) or by file name.

    The local Toloka only sees an image URL, so a file-name lookup also tries the URL's last path
    segment (query string dropped) against the truth's base names, and a segment named
    ``<sha256>.<ext>`` (how the upload step stores images) against the content hashes.
    """

    def __init__(self, coco: dict[str, Any]) -> None:
        self.coco = coco
        self.images = images_frame(coco)
        self.boxes = truth_boxes(coco)
        self._size = {row.image_id: (row.width, row.height) for row in self.images.itertuples()}
        self._by_sha: dict[str, object] = {}
        self._by_name: dict[str, object] = {}
        self._by_base: dict[str, object] = {}
        for row in self.images.itertuples():
            if row.sha256:
                self._by_sha.setdefault(str(row.sha256).lower(), row.image_id)
            self._by_name.setdefault(str(row.file_name), row.image_id)
            self._by_base.setdefault(PurePosixPath(str(row.file_name)).name, row.image_id)
        self._rows = {image_id: group for image_id, group in self.boxes.groupby("image_id", sort=False)}
        self._empty = self.boxes.iloc[0:0]

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, sha256: str | None = None, file_name: str | None = None) -> Any:
        """The truth's image id for the content hash, else the file name; None if unknown."""
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

    def lookup(self, sha256: str | None = None,
               file_name: str | None = None) -> tuple[float, float, pd.DataFrame] | None:
        """``(width, height, boxes)`` with ``boxes`` the image's :func:`truth_boxes` rows, or None."""
        image_id = self.image_id(sha256=sha256, file_name=file_name)
        if image_id is None:
            return None
        width, height = self._size[image_id]
        return width, height, self._rows.get(image_id, self._empty)
