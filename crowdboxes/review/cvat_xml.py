"""Reading a CVAT for images 1.1 XML as CVAT exports it after a review, with line numbers for errors.

Only what the merge needs is read: each ``<image name=...>`` and its ``<box label xtl ytl xbr ybr>``
elements (the pixel box is ``x = xtl, y = ytl, w = xbr - xtl, h = ybr - ytl``). Attributes (``score`` and
any other) are ignored, so a box the reviewer drew, whose ``score`` is missing, reads like any other.
Anything that cannot be merged back as a box is refused in one line naming the file and line: malformed
XML, a ``<track>`` (the "CVAT for video" export), another shape (polygon, points, tag, ...), a rotated box,
a box of zero size or with a coordinate that is not a number.

The file may also be the zip CVAT downloads ("Export task dataset"): its ``annotations.xml`` is read, and
errors name it as ``<zip> (annotations.xml)``.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from crowdboxes.errors import CrowdboxesError

ZIPPED_XML = "annotations.xml"  # where CVAT's export zip keeps the XML
SHAPES = frozenset({"polygon", "polyline", "points", "cuboid", "mask", "ellipse", "skeleton", "tag"})


@dataclass(frozen=True)
class CvatBox:
    """One ``<box>``: its label, pixel box and the XML line it starts on."""

    label: str
    x: float
    y: float
    w: float
    h: float
    line: int


@dataclass
class CvatImage:
    """One ``<image>``: its name (the frame name, the packed file name), line and boxes in file order."""

    name: str
    line: int
    boxes: list[CvatBox] = field(default_factory=list)


def _coordinate(attrs: dict[str, str], key: str, where: str) -> float:
    try:
        value = float(attrs[key])
    except KeyError:
        raise CrowdboxesError(f"{where}: <box> has no {key!r}") from None
    except ValueError:
        raise CrowdboxesError(f"{where}: <box> {key}={attrs[key]!r} is not a number") from None
    if not math.isfinite(value):
        raise CrowdboxesError(f"{where}: <box> {key}={attrs[key]!r} is not a finite number")
    return value


def _xml_bytes(path: Path) -> tuple[bytes, str]:
    """The XML's bytes and the name errors give it: the file itself, or the annotations.xml of CVAT's zip."""
    if not path.is_file():
        raise CrowdboxesError(f"CVAT XML {path} does not exist")
    if not zipfile.is_zipfile(path):
        return path.read_bytes(), str(path)
    try:
        with zipfile.ZipFile(path) as pack:
            found = [n for n in pack.namelist() if n.rsplit("/", 1)[-1] == ZIPPED_XML]
            if len(found) != 1:
                raise CrowdboxesError(f"{path}: a zip needs exactly one {ZIPPED_XML} (CVAT's 'CVAT for images 1.1' "
                                      f"export); found {len(found)}")
            return pack.read(found[0]), f"{path} ({found[0]})"
    except zipfile.BadZipFile as exc:
        raise CrowdboxesError(f"{path}: not a readable zip ({exc})") from None


def read_cvat_images(path: str | Path) -> tuple[str, list[CvatImage]]:
    """The images and boxes of the CVAT XML at ``path``, or in CVAT's export zip (see the module docstring),
    with the name errors give the XML."""
    data, name = _xml_bytes(Path(path))
    images: list[CvatImage] = []
    current: list[CvatImage | None] = [None]  # the open <image>, if any (set by the handlers)
    roots: list[str] = []
    parser = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        line = parser.CurrentLineNumber
        where = f"{name}: line {line}"
        if not roots:
            roots.append(tag)
            if tag != "annotations":
                raise CrowdboxesError(f"{where}: root <{tag}> is not CVAT's <annotations>")
            return
        image = current[0]
        if tag == "track":
            raise CrowdboxesError(f"{where}: <track> is the 'CVAT for video' export; export the task as "
                                  "'CVAT for images 1.1'")
        if tag == "image":
            if not attrs.get("name"):
                raise CrowdboxesError(f"{where}: <image> has no name")
            opened = CvatImage(attrs["name"], line)
            images.append(opened)
            current[0] = opened
        elif isinstance(image, CvatImage) and tag == "box":
            where = f"{where}, image {image.name!r}"
            if not attrs.get("label"):
                raise CrowdboxesError(f"{where}: <box> has no label")
            if "rotation" in attrs and _coordinate(attrs, "rotation", where) % 360.0 != 0.0:
                raise CrowdboxesError(f"{where}: <box> is rotated by {attrs['rotation']} degrees; boxes here are "
                                      "axis-aligned, undo the rotation in CVAT")
            xtl, ytl, xbr, ybr = (_coordinate(attrs, key, where) for key in ("xtl", "ytl", "xbr", "ybr"))
            if not (xbr > xtl and ybr > ytl):
                raise CrowdboxesError(f"{where}: <box> has no area (xtl {xtl:g}, ytl {ytl:g}, xbr {xbr:g}, "
                                      f"ybr {ybr:g})")
            image.boxes.append(CvatBox(attrs["label"], xtl, ytl, xbr - xtl, ybr - ytl, line))
        elif isinstance(image, CvatImage) and tag in SHAPES:
            raise CrowdboxesError(f"{where}, image {image.name!r}: <{tag}> is not a box; only boxes are merged "
                                  "back (delete it in CVAT or draw a box)")

    def end(tag: str) -> None:
        if tag == "image":
            current[0] = None

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        reason = expat.ErrorString(exc.code) if exc.code is not None else str(exc)
        raise CrowdboxesError(f"{name}: line {exc.lineno}: malformed XML ({reason})") from None
    return name, images
