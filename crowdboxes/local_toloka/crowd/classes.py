"""The crowd's own default label names (the road-sign classes of this project's default truth).

The simulator keeps its own copy so it does not import the product it is meant to test. The label universe
of a task comes from its truth and its view; these names only fix the order of the default labels (the
drawing kernel's random labels index into them) and the category names of a truth file without
``categories``.
"""

from __future__ import annotations

# COCO category ids 1..10, in this order
CLASS_NAMES: tuple[str, ...] = ("stop", "yield", "speed_limit", "no_entry", "priority_road", "pedestrian_crossing",
                                "parking", "mandatory", "warning", "traffic_light")
DEFAULT_CATEGORIES: dict[int, str] = {i + 1: name for i, name in enumerate(CLASS_NAMES)}

# Signs a worker plausibly mistakes for each other (shape and colour); 80 % of wrong labels stay here.
RELATED_CLASSES = {
    "stop": ("no_entry", "yield"),
    "yield": ("warning", "stop"),
    "speed_limit": ("no_entry", "stop"),
    "no_entry": ("stop", "speed_limit"),
    "priority_road": ("warning", "yield"),
    "pedestrian_crossing": ("warning", "parking", "mandatory"),
    "parking": ("mandatory", "pedestrian_crossing"),
    "mandatory": ("parking", "pedestrian_crossing"),
    "warning": ("yield", "pedestrian_crossing"),
    "traffic_light": ("warning",),
}
RELATED_SHARE = 0.8
