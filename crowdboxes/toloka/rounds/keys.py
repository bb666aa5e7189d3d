"""The identity of one output box across runs, files and Toloka tasks: :func:`box_key`."""

from __future__ import annotations

import hashlib

KEY_DIGITS = 16  # hex digits of the sha1 kept: 64 bits, no collision in any realistic dataset


def box_key(image_id: object, label: object, x: float, y: float, w: float, h: float) -> str:
    """``sha1("image_id|label|x|y|w|h")``, first 16 hex digits, coordinates (pixels) rounded to 0.1 px.

    The rounding makes the key survive a CSV round trip; a box that moves by a pixel is another box.

    >>> box_key("img1", "stop", 10.04, 20, 30, 40) == box_key("img1", "stop", 10.0, 20.0, 30.0, 40.0)
    True
    >>> len(box_key("img1", "stop", 10, 20, 30, 40))
    16
    """
    coords = [f"{round(float(v), 1) + 0.0:.1f}" for v in (x, y, w, h)]  # + 0.0 turns -0.0 into 0.0
    text = "|".join([str(image_id), str(label), *coords])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:KEY_DIGITS]
