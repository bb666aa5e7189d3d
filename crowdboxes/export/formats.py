"""The formats users load, written beside the COCO file from the same COCO document.

Every writer takes the COCO dict of :func:`crowdboxes.export.annotations.coco_document` (one source of
truth: the same boxes, categories and file names in every format) and a folder:

* ``detections.json`` (:func:`detections`): a plain list of ``{image_id, category_id, bbox, score}``, the
  results format pycocotools' ``COCO.loadRes`` reads against the exported COCO file.
* YOLO (:func:`write_yolo`): ``yolo/labels/<file_name without extension>.txt``, one line per box
  ``class cx cy w h`` with ``class`` the 0-based position of the category in the COCO categories and the
  centre and size divided by the image's width and height:

  .. math:: c_x = (x + w/2)/W,\\quad c_y = (y + h/2)/H,\\quad w' = w/W,\\quad h' = h/H

  (an empty file for an image without boxes), and ``yolo/data.yaml`` with ``nc`` and ``names``.
* Pascal VOC (:func:`write_voc`): ``voc/Annotations/<stem>.xml`` with ``xmin = x, ymin = y, xmax = x + w,
  ymax = y + h`` (pixels, not rounded), the score as an ``<attributes>`` entry, plus
  ``voc/ImageSets/Main/default.txt`` and ``voc/labelmap.txt`` so readers find the images and classes.
* CVAT for images 1.1 (:func:`write_cvat`): ``cvat/annotations.xml``; every label declares a ``score``
  attribute and every ``<box>`` sets it.
* FiftyOne (:func:`write_fiftyone`): ``fiftyone/labels.json`` in the layout of FiftyOne's
  ``FiftyOneImageDetectionDataset`` (plain JSON, no FiftyOne needed to write it): ``classes`` and, per image
  keyed by its file name without extension, ``{label, bounding_box, confidence}`` with ``label`` the
  0-based class index and the box relative to the image, ``[x/W, y/H, w/W, h/H]``.

Scores are written at full precision (``repr`` of the float); file names are the images.csv ``file_name``
(relative). The image's URL is not in these formats; see :func:`public_url` for COCO and the flat CSV.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import atomic_path, write_text_atomic

# In the order written; ``coco`` is always written (detections.json's image ids refer to it).
FORMATS = ("coco", "detections", "yolo", "voc", "cvat")
DEFAULT_FORMATS = ",".join(FORMATS)
# Written only when named (``--formats all,fiftyone``): not part of ``all``, the default.
OPT_IN_FORMATS = ("fiftyone",)


def parse_formats(text: str) -> tuple[str, ...]:
    """``--formats``: a comma list of :data:`FORMATS` and :data:`OPT_IN_FORMATS`, where ``all`` stands for
    every one of :data:`FORMATS`; ``coco`` is added when missing.

    >>> parse_formats("yolo")
    ('coco', 'yolo')
    >>> parse_formats("all,fiftyone")
    ('coco', 'detections', 'yolo', 'voc', 'cvat', 'fiftyone')
    """
    words = [w.strip().lower() for w in str(text).split(",") if w.strip()]
    if "all" in words:
        words = [w for w in words if w != "all"] + list(FORMATS)
    unknown = [w for w in words if w not in FORMATS + OPT_IN_FORMATS]
    if unknown or not words:
        raise CrowdboxesError(f"--formats {text!r}: use a comma list of {', '.join(FORMATS)}, or all; "
                              f"opt-in: {', '.join(OPT_IN_FORMATS)}")
    return tuple(f for f in FORMATS + OPT_IN_FORMATS if f in words or f == "coco")


def public_url(url: Any) -> str:
    """``url`` without its query string and fragment: a presigned URL's signature, key id and expiry live
    there, so what is left is the object's lasting address (the signed URL stays in images.csv)."""
    parts = urlsplit(str(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _number(value: float) -> str:
    """A coordinate or score as text: whole numbers without ``.0``, others at full precision."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


@contextmanager
def fresh_folder(folder: Path) -> Iterator[Path]:
    """A staging folder beside ``folder`` that replaces it when the block succeeds: a re-run leaves no stale
    label file of an image that is gone, and a reader never sees half a folder for long."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700 folders; outputs are read like any other
    try:
        yield staging
        old = folder.parent / f"{staging.name}.old"
        if folder.exists():
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def zip_paths(root: Path, names: list[str], archive: Path) -> Path:
    """``archive``: the files and folders ``names`` (relative to ``root``), sorted, with a fixed time stamp,
    so the same export packs to the same bytes (an unchanged dataset version is then recognised)."""
    files = []
    for name in names:
        path = root / name
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as pack:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            pack.writestr(info, path.read_bytes())
    return archive


def _write(path: Path, text: str) -> None:
    """A file of a folder format: plain writes, as the folder is staged whole by :func:`fresh_folder`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def detections(coco: dict[str, Any]) -> list[dict[str, Any]]:
    """The COCO annotations as the plain results list ``loadRes`` accepts."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]),
             "score": a["score"]} for a in coco["annotations"]]


def write_detections(coco: dict[str, Any], path: Path) -> Path:
    """``detections.json`` at ``path``."""
    write_text_atomic(path, json.dumps(detections(coco), indent=1, allow_nan=False) + "\n")
    return path


def relative_stem(file_name: str) -> PurePosixPath:
    """The image's file name without its extension, kept relative (``scenes/a.jpg`` -> ``scenes/a``);
    CrowdboxesError for an absolute name or one that climbs out with ``..``."""
    path = PurePosixPath(str(file_name).replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.name:
        raise CrowdboxesError(f"images.csv file_name {file_name!r}: must be a relative path inside the images folder")
    return path.with_suffix("")


def label_stems(coco: dict[str, Any]) -> dict[int, PurePosixPath]:
    """Each COCO image id's :func:`relative_stem`; CrowdboxesError when two images share one."""
    stems: dict[int, PurePosixPath] = {}
    seen: dict[PurePosixPath, str] = {}
    for image in coco["images"]:
        stem = relative_stem(image["file_name"])
        if stem in seen:
            raise CrowdboxesError(f"images.csv: {seen[stem]!r} and {image['file_name']!r} would share the label "
                                  f"file {stem}; give the images different names")
        seen[stem] = image["file_name"]
        stems[image["id"]] = stem
    return stems


def _boxes_by_image(coco: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    by_image: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in coco["images"]}
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    return by_image


def write_yolo(coco: dict[str, Any], folder: Path) -> Path:
    """YOLO labels and data.yaml under ``folder`` (a :func:`fresh_folder`; see the module docstring);
    returns data.yaml's path."""
    index = {c["id"]: k for k, c in enumerate(coco["categories"])}
    stems = label_stems(coco)
    boxes = _boxes_by_image(coco)
    for image in coco["images"]:
        width, height = float(image["width"]), float(image["height"])
        if not (width > 0 and height > 0):
            raise CrowdboxesError(f"images.csv: {image['file_name']!r} has size {width:g}x{height:g}; YOLO "
                                  "needs a positive width and height")
        lines = []
        for a in boxes[image["id"]]:
            x, y, w, h = (float(v) for v in a["bbox"])
            values = ((x + w / 2) / width, (y + h / 2) / height, w / width, h / height)
            lines.append(" ".join([str(index[a["category_id"]])] + [f"{v:.6f}" for v in values]))
        _write(folder / "labels" / f"{stems[image['id']]}.txt", "".join(f"{line}\n" for line in lines))
    data = {"path": ".", "train": "images", "val": "images", "nc": len(coco["categories"]),
            "names": {k: str(c["name"]) for k, c in enumerate(coco["categories"])}}
    header = ("# crowdboxes export: put the images at images/<file_name> beside labels/ (YOLO finds a label\n"
              "# file by swapping images/ for labels/ and the extension for .txt)\n")
    _write(folder / "data.yaml", header + yaml.safe_dump(data, sort_keys=False))
    return folder / "data.yaml"


def _sub(parent: ET.Element, tag: str, text: Any = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = str(text)
    return element


def _xml(root: ET.Element) -> str:
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_voc(coco: dict[str, Any], folder: Path) -> Path:
    """Pascal VOC XML under ``folder`` (a :func:`fresh_folder`; see the module docstring); returns the
    Annotations folder."""
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    stems = label_stems(coco)
    boxes = _boxes_by_image(coco)
    for image in coco["images"]:
        root = ET.Element("annotation")
        file_name = PurePosixPath(str(image["file_name"]))
        _sub(root, "folder", str(file_name.parent) if str(file_name.parent) != "." else "")
        _sub(root, "filename", file_name.name)
        _sub(root, "path", str(file_name))
        _sub(_sub(root, "source"), "database", "crowdboxes")
        size = _sub(root, "size")
        _sub(size, "width", _number(image["width"]))
        _sub(size, "height", _number(image["height"]))
        _sub(size, "depth", 3)
        _sub(root, "segmented", 0)
        for a in boxes[image["id"]]:
            x, y, w, h = (float(v) for v in a["bbox"])
            obj = _sub(root, "object")
            _sub(obj, "name", names[a["category_id"]])
            _sub(obj, "pose", "Unspecified")
            _sub(obj, "truncated", 0)
            _sub(obj, "difficult", 0)
            box = _sub(obj, "bndbox")
            for tag, value in (("xmin", x), ("ymin", y), ("xmax", x + w), ("ymax", y + h)):
                _sub(box, tag, _number(value))
            attribute = _sub(_sub(obj, "attributes"), "attribute")
            _sub(attribute, "name", "score")
            _sub(attribute, "value", repr(float(a["score"])))
        _write(folder / "Annotations" / f"{stems[image['id']]}.xml", _xml(root))
    _write(folder / "ImageSets" / "Main" / "default.txt",
                      "".join(f"{stems[image['id']]}\n" for image in coco["images"]))
    # datumaro's VOC labelmap: name:color:parts:actions (no colour, parts or actions here)
    _write(folder / "labelmap.txt", "# label:color_rgb:parts:actions\n"
                      + "".join(f"{c['name']}:::\n" for c in coco["categories"]))
    return folder / "Annotations"


def write_cvat(coco: dict[str, Any], path: Path) -> Path:
    """CVAT for images 1.1 XML at ``path``: labels with a declared ``score`` attribute, one ``<image>`` per
    image (``id`` 0-based, ``name`` the relative file name) and its boxes (``xtl ytl xbr ybr`` pixels)."""
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    root = ET.Element("annotations")
    _sub(root, "version", "1.1")
    task = _sub(_sub(root, "meta"), "task")
    _sub(task, "name", coco.get("info", {}).get("description", "crowdboxes"))
    _sub(task, "size", len(coco["images"]))
    _sub(task, "mode", "annotation")
    labels = _sub(task, "labels")
    for category in coco["categories"]:
        label = _sub(labels, "label")
        _sub(label, "name", category["name"])
        _sub(label, "type", "rectangle")
        attribute = _sub(_sub(label, "attributes"), "attribute")
        _sub(attribute, "name", "score")
        _sub(attribute, "mutable", "False")
        # text, not number: CVAT's number attributes are integers (min, max, step); a score is a float
        _sub(attribute, "input_type", "text")
        _sub(attribute, "default_value", "")
        _sub(attribute, "values", "")
    boxes = _boxes_by_image(coco)
    for n, image in enumerate(coco["images"]):
        element = _sub(root, "image", id=str(n), name=str(image["file_name"]), width=_number(image["width"]),
                       height=_number(image["height"]))
        for a in boxes[image["id"]]:
            x, y, w, h = (float(v) for v in a["bbox"])
            box = _sub(element, "box", label=names[a["category_id"]], source="auto", occluded="0",
                       xtl=_number(x), ytl=_number(y), xbr=_number(x + w), ybr=_number(y + h), z_order="0")
            _sub(box, "attribute", repr(float(a["score"])), name="score")
    write_text_atomic(path, _xml(root))
    return path


def write_fiftyone(coco: dict[str, Any], folder: Path) -> Path:
    """FiftyOne's ``labels.json`` under ``folder`` (a :func:`fresh_folder`; see the module docstring); returns
    its path. ``fo.Dataset.from_dir(dataset_type=fo.types.FiftyOneImageDetectionDataset, data_path=<images>,
    labels_path=<this file>)`` loads it: FiftyOne finds each image by its relative name without extension."""
    index = {c["id"]: k for k, c in enumerate(coco["categories"])}
    stems = label_stems(coco)
    boxes = _boxes_by_image(coco)
    labels: dict[str, list[dict[str, Any]]] = {}
    for image in coco["images"]:
        width, height = float(image["width"]), float(image["height"])
        if not (width > 0 and height > 0):
            raise CrowdboxesError(f"images.csv: {image['file_name']!r} has size {width:g}x{height:g}; FiftyOne's "
                                  "relative boxes need a positive width and height")
        labels[str(stems[image["id"]])] = [
            {"label": index[a["category_id"]],
             "bounding_box": [float(a["bbox"][0]) / width, float(a["bbox"][1]) / height,
                              float(a["bbox"][2]) / width, float(a["bbox"][3]) / height],
             "confidence": float(a["score"])}
            for a in boxes[image["id"]]]
    document = {"classes": [str(c["name"]) for c in coco["categories"]], "labels": labels}
    _write(folder / "labels.json", json.dumps(document, indent=1, allow_nan=False) + "\n")
    return folder / "labels.json"
