"""The road-sign classes: the one place their ids, names and display names live."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SignClass:
    id: int  # COCO category_id
    name: str  # machine name used in CSVs, Toloka labels and COCO
    title: str  # what a worker sees


SIGN_CLASSES: tuple[SignClass, ...] = (
    SignClass(1, "stop", "Stop"),
    SignClass(2, "yield", "Yield / give way"),
    SignClass(3, "speed_limit", "Speed limit"),
    SignClass(4, "no_entry", "No entry"),
    SignClass(5, "priority_road", "Priority road"),
    SignClass(6, "pedestrian_crossing", "Pedestrian crossing"),
    SignClass(7, "parking", "Parking"),
    SignClass(8, "mandatory", "Blue mandatory sign"),
    SignClass(9, "warning", "Warning triangle"),
    SignClass(10, "traffic_light", "Traffic light"),
)

CLASS_BY_NAME: dict[str, SignClass] = {c.name: c for c in SIGN_CLASSES}
CLASS_BY_ID: dict[int, SignClass] = {c.id: c for c in SIGN_CLASSES}
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in SIGN_CLASSES)

# Label names of the real Road Sign Detection sample (Pascal VOC) mapped to ours.
VOC_LABELS = {"stop": "stop", "speedlimit": "speed_limit", "crosswalk": "pedestrian_crossing",
              "trafficlight": "traffic_light"}


def class_by_name(name: str) -> SignClass:
    """The class called ``name``; ValueError naming the known classes otherwise."""
    try:
        return CLASS_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown sign class {name!r}; known: {', '.join(CLASS_NAMES)}") from None


def coco_categories() -> list[dict]:
    return [{"id": c.id, "name": c.name, "supercategory": "road_sign"} for c in SIGN_CLASSES]
