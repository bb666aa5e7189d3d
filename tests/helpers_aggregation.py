"""Frames as the aggregators take them, for hand-computed aggregation cases."""

from __future__ import annotations

import pandas as pd


def answers(rows) -> pd.DataFrame:
    """rows: (image_id, worker, x, y, w, h, label); None coordinates = drew nothing."""
    frame = pd.DataFrame(rows, columns=["image_id", "worker", "x", "y", "w", "h", "label"])
    for c in ("x", "y", "w", "h"):
        frame[c] = pd.to_numeric(frame[c])
    return frame


def images(*image_ids, width=100, height=100) -> pd.DataFrame:
    return pd.DataFrame({"image_id": list(image_ids), "width": width, "height": height})
