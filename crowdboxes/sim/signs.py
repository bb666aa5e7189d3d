"""Drawings of the road-sign classes, one function per class.

Each drawing fills an RGBA patch whose edges the sign's outline touches on all four sides, so the
patch rectangle *is* the sign's true box. Patches are drawn ``SUPERSAMPLE`` times larger and then
reduced, which gives anti-aliased edges without a slow renderer.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from crowdboxes.classes import CLASS_NAMES

SUPERSAMPLE = 4

# width / height of each sign's outline
ASPECT = {
    "stop": 1.0, "yield": 1 / 0.88, "speed_limit": 1.0, "no_entry": 1.0, "priority_road": 1.0,
    "pedestrian_crossing": 1.0, "parking": 1.0, "mandatory": 1.0, "warning": 1 / 0.88,
    "traffic_light": 0.4,
}
# real size of the sign's largest side in metres: fixes its depth for a given pixel size
METRES = {"traffic_light": 1.0}
DEFAULT_METRES = 0.75

RED = (196, 22, 32)
WHITE = (244, 244, 240)
BLUE = (18, 72, 168)
YELLOW = (250, 196, 12)
BLACK = (22, 22, 24)
RIM = (150, 150, 150)


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font: the same glyphs everywhere, no system fonts needed in the image
    return ImageFont.load_default(size=max(size, 4))


def box_size(name: str, size: float) -> tuple[int, int]:
    """Pixel (width, height) of a ``name`` sign whose larger side is ``size`` pixels."""
    aspect = ASPECT[name]
    w, h = (size, size / aspect) if aspect >= 1 else (size * aspect, size)
    return max(int(round(w)), 3), max(int(round(h)), 3)


def _shade(colour, factor):
    return tuple(int(min(255, max(0, c * factor))) for c in colour)


def _regular_polygon(cx, cy, radius, n, start_deg):
    return [(cx + radius * math.cos(math.radians(start_deg + 360 * i / n)),
             cy + radius * math.sin(math.radians(start_deg + 360 * i / n))) for i in range(n)]


def _scaled(points, factor, cx, cy):
    return [(cx + (x - cx) * factor, cy + (y - cy) * factor) for x, y in points]


def _text(draw, cx, cy, text, size, fill, bold=0):
    font = _font(int(size))
    draw.text((cx, cy), text, font=font, fill=fill, anchor="mm", stroke_width=bold, stroke_fill=fill)


def _stop(draw, w, h, rng, fade):
    cx, cy = w / 2, h / 2
    # flat sides touch the patch edges: circumradius = half-width / cos(22.5 deg)
    outer = _regular_polygon(cx, cy, (w / 2) / math.cos(math.pi / 8), 8, 22.5)
    draw.polygon(outer, fill=_shade(WHITE, fade))
    draw.polygon(_scaled(outer, 0.9, cx, cy), fill=_shade(RED, fade))
    _text(draw, cx, cy + h * 0.02, "STOP", w * 0.3, _shade(WHITE, fade), bold=max(1, int(w * 0.012)))


def _yield(draw, w, h, rng, fade):
    tri = [(0, 0), (w, 0), (w / 2, h)]
    cx, cy = w / 2, h / 3
    draw.polygon(tri, fill=_shade(RED, fade))
    draw.polygon(_scaled(tri, 0.58, cx, cy), fill=_shade(WHITE, fade))


def _speed_limit(draw, w, h, rng, fade):
    draw.ellipse((0, 0, w - 1, h - 1), fill=_shade(RED, fade))
    ring = w * 0.11
    draw.ellipse((ring, ring, w - 1 - ring, h - 1 - ring), fill=_shade(WHITE, fade))
    number = str(int(rng.choice([20, 30, 40, 50, 60, 70, 80, 90, 100, 120])))
    size = w * (0.42 if len(number) < 3 else 0.32)
    _text(draw, w / 2, h / 2, number, size, BLACK, bold=max(1, int(w * 0.01)))


def _no_entry(draw, w, h, rng, fade):
    draw.ellipse((0, 0, w - 1, h - 1), fill=_shade(WHITE, fade))
    rim = w * 0.025
    draw.ellipse((rim, rim, w - 1 - rim, h - 1 - rim), fill=_shade(RED, fade))
    draw.rectangle((w * 0.18, h * 0.41, w * 0.82, h * 0.59), fill=_shade(WHITE, fade))


def _priority_road(draw, w, h, rng, fade):
    cx, cy = w / 2, h / 2
    diamond = [(cx, 0), (w - 1, cy), (cx, h - 1), (0, cy)]
    draw.polygon(diamond, fill=_shade(BLACK, 1.0))
    draw.polygon(_scaled(diamond, 0.95, cx, cy), fill=_shade(WHITE, fade))
    draw.polygon(_scaled(diamond, 0.62, cx, cy), fill=_shade(YELLOW, fade))


def _blue_square(draw, w, h, fade):
    r = w * 0.08
    draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=r, fill=_shade(WHITE, fade))
    rim = w * 0.04
    draw.rounded_rectangle((rim, rim, w - 1 - rim, h - 1 - rim), radius=r * 0.7, fill=_shade(BLUE, fade))


def _pedestrian_crossing(draw, w, h, rng, fade):
    _blue_square(draw, w, h, fade)
    tri = [(w * 0.5, h * 0.12), (w * 0.9, h * 0.86), (w * 0.1, h * 0.86)]
    draw.polygon(tri, fill=_shade(WHITE, fade))
    # zebra stripes and a walking figure
    for k in range(4):
        x0 = w * (0.3 + 0.11 * k)
        draw.rectangle((x0, h * 0.78, x0 + w * 0.06, h * 0.83), fill=BLACK)
    lw = max(1, int(w * 0.045))
    head = (w * 0.52, h * 0.36)
    r = w * 0.05
    draw.ellipse((head[0] - r, head[1] - r, head[0] + r, head[1] + r), fill=BLACK)
    hip = (w * 0.49, h * 0.6)
    draw.line([(head[0], head[1] + r), hip], fill=BLACK, width=lw)
    draw.line([hip, (w * 0.4, h * 0.75)], fill=BLACK, width=lw)
    draw.line([hip, (w * 0.6, h * 0.74)], fill=BLACK, width=lw)
    draw.line([(w * 0.4, h * 0.52), (w * 0.6, h * 0.47)], fill=BLACK, width=lw)


def _parking(draw, w, h, rng, fade):
    _blue_square(draw, w, h, fade)
    _text(draw, w * 0.5, h * 0.52, "P", h * 0.78, _shade(WHITE, fade), bold=max(1, int(w * 0.02)))


def _mandatory(draw, w, h, rng, fade):
    draw.ellipse((0, 0, w - 1, h - 1), fill=_shade(WHITE, fade))
    rim = w * 0.03
    draw.ellipse((rim, rim, w - 1 - rim, h - 1 - rim), fill=_shade(BLUE, fade))
    # arrow pointing up, then turned: ahead, left or right
    arrow = [(0.0, -0.34), (0.22, -0.06), (0.08, -0.06), (0.08, 0.34), (-0.08, 0.34), (-0.08, -0.06),
             (-0.22, -0.06)]
    angle = float(rng.choice([0.0, -90.0, 90.0]))
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    draw.polygon([(w / 2 + w * (x * c - y * s), h / 2 + h * (x * s + y * c)) for x, y in arrow],
                  fill=_shade(WHITE, fade))


def _warning(draw, w, h, rng, fade):
    tri = [(w / 2, 0), (w, h), (0, h)]
    cx, cy = w / 2, h * 2 / 3
    draw.polygon(tri, fill=_shade(RED, fade))
    draw.polygon(_scaled(tri, 0.62, cx, cy), fill=_shade(WHITE, fade))
    draw.rectangle((w * 0.465, h * 0.42, w * 0.535, h * 0.7), fill=BLACK)
    draw.rectangle((w * 0.465, h * 0.75, w * 0.535, h * 0.8), fill=BLACK)


def _traffic_light(draw, w, h, rng, fade):
    draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=w * 0.18, fill=_shade((38, 40, 42), fade))
    lit = int(rng.integers(3))
    on = [(255, 48, 36), (255, 184, 20), (40, 230, 110)]
    off = [(70, 24, 22), (70, 56, 18), (20, 62, 36)]
    r = w * 0.34
    for k in range(3):
        cy = h * (1 + 2 * k) / 6
        draw.ellipse((w / 2 - r, cy - r, w / 2 + r, cy + r), fill=on[k] if k == lit else off[k])


DRAWERS = {
    "stop": _stop, "yield": _yield, "speed_limit": _speed_limit, "no_entry": _no_entry,
    "priority_road": _priority_road, "pedestrian_crossing": _pedestrian_crossing, "parking": _parking,
    "mandatory": _mandatory, "warning": _warning, "traffic_light": _traffic_light,
}
assert set(DRAWERS) == set(CLASS_NAMES), "every class in classes.py needs a drawing"


def render_sign(name: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """An RGBA patch of exactly ``width`` x ``height`` pixels with the sign touching all four edges."""
    k = SUPERSAMPLE
    big = Image.new("RGBA", (width * k, height * k), (0, 0, 0, 0))
    fade = float(rng.uniform(0.82, 1.04))  # weathered or freshly painted
    DRAWERS[name](ImageDraw.Draw(big), width * k, height * k, rng, fade)
    return big.resize((width, height), Image.Resampling.BOX)
