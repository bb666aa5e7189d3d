"""One synthetic street scene: a pinhole-camera view down a street with road signs on poles.

The camera sits ``CAMERA_HEIGHT`` metres above the road looking along +Z. A world point
``(X, Y, Z)`` (metres: right, up, forward) lands on pixel

    u = vx + f * X / Z,        v = vy - f * (Y - CAMERA_HEIGHT) / Z

with ``(vx, vy)`` the vanishing point on the horizon and ``f`` the focal length in pixels. A sign
of real size ``S`` metres drawn ``s`` pixels large therefore stands at depth ``Z = f * S / s``,
which places small signs far away near the horizon and large ones close by at the roadside.

Scenery is drawn back to front (painter's algorithm). A label image records which object owns each
pixel, so a sign's visible fraction (for occlusion by poles and foliage) is counted, not guessed.
The true box is the sign's whole outline whether or not parts are hidden.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from crowdboxes.sim.signs import DEFAULT_METRES, METRES, box_size, render_sign

CAMERA_HEIGHT = 1.5
JPEG_QUALITY = 90
MIN_SIGN_PX = 12
MAX_SIGN_SHARE = 0.4  # largest sign side as a share of the image's smaller side
SIGNS_PER_IMAGE_WEIGHTS = np.array([0.22, 0.24, 0.2, 0.14, 0.11, 0.09])  # 1..6 signs
OCCLUDE_SHARE = 0.22  # signs that get a pole or foliage put in front on purpose
OCCLUDED_BELOW = 0.98  # visible fraction under which a sign counts as occluded

_SIGN_LABEL0 = 10  # label-image values: 0 background, 1 scenery in front, 10+i sign i


@dataclass
class PlacedSign:
    label: str
    x: int
    y: int
    w: int
    h: int
    depth: float
    occluder: str | None = None
    visible: float = 1.0
    pole: tuple = (0, 0, 0, 0)  # the post under the plate, screen rectangle

    @property
    def box(self):
        return (self.x, self.y, self.x + self.w, self.y + self.h)


@dataclass
class _Camera:
    vx: float
    vy: float
    f: float

    def project(self, X, Y, Z):
        return self.vx + self.f * X / Z, self.vy - self.f * (Y - CAMERA_HEIGHT) / Z


@dataclass
class _Painter:
    """Draws on the picture and, for foreground objects, on the label image too."""
    image: Image.Image
    labels: Image.Image
    draw: ImageDraw.ImageDraw = field(init=False)
    ldraw: ImageDraw.ImageDraw = field(init=False)

    def __post_init__(self):
        self.draw = ImageDraw.Draw(self.image)
        self.ldraw = ImageDraw.Draw(self.labels)

    def polygon(self, points, fill, label=None):
        self.draw.polygon(points, fill=fill)
        if label is not None:
            self.ldraw.polygon(points, fill=label)

    def rectangle(self, box, fill, label=None):
        x0, y0, x1, y1 = box
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        self.draw.rectangle(box, fill=fill)
        if label is not None:
            self.ldraw.rectangle(box, fill=label)

    def ellipse(self, box, fill, label=None):
        self.draw.ellipse(box, fill=fill)
        if label is not None:
            self.ldraw.ellipse(box, fill=label)


def _jitter(rng, colour, spread=12):
    shifts = rng.integers(-spread, spread + 1, size=3)
    return tuple(min(255, max(0, int(c) + int(d))) for c, d in zip(colour, shifts))


def _grey(rng, level, spread=18, tint=4):
    # one brightness shift for all channels plus a slight tint: greys stay grey
    base = level + rng.integers(-spread, spread + 1)
    return tuple(min(255, max(0, int(base + d))) for d in rng.integers(-tint, tint + 1, size=3))


def _mix(a, b, t):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------- background
LIGHTS = {
    # sky top, sky at horizon, channel gains (r, g, b), brightness
    "day": ((70, 130, 210), (185, 215, 240), (1.0, 1.0, 1.0), 1.0),
    "overcast": ((150, 158, 168), (205, 208, 212), (0.97, 0.99, 1.03), 0.9),
    "dusk": ((60, 70, 120), (240, 160, 110), (1.1, 0.93, 0.85), 0.78),
    "bright": ((50, 120, 220), (170, 210, 245), (1.04, 1.02, 0.97), 1.1),
}


def _sky(rng, width, height, horizon, light):
    top, bottom = LIGHTS[light][:2]
    top, bottom = _jitter(rng, top, 10), _jitter(rng, bottom, 10)
    rows = np.arange(height, dtype=np.float32)[:, None]
    t = np.minimum(rows / max(horizon, 1.0), 1.0)
    column = np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t
    # a one-pixel-wide gradient stretched sideways: cheap and exact
    sky = Image.fromarray(column.round().astype(np.uint8)[:, None, :], "RGB").resize((width, height),
                                                                                    Image.Resampling.NEAREST)
    if light != "overcast" and rng.random() < 0.7:  # soft clouds, drawn small and blown up = blurred
        small = Image.new("L", (width // 16 + 1, height // 16 + 1), 0)
        d = ImageDraw.Draw(small)
        for _ in range(int(rng.integers(2, 7))):
            cx, cy = rng.uniform(0, small.width), rng.uniform(0, max(horizon / 16 * 0.8, 1))
            rx, ry = rng.uniform(2, 8), rng.uniform(0.8, 2.2)
            d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.integers(90, 200)))
        cloud = small.resize((width, height), Image.Resampling.BICUBIC)
        sky = Image.composite(Image.new("RGB", (width, height), (238, 238, 238)), sky, cloud)
    return sky


def _skyline(p, rng, cam, width):
    """Distant blocks just above the horizon, hazy like far-away buildings."""
    x = cam.vx - width * rng.uniform(0.15, 0.3)
    end = cam.vx + width * rng.uniform(0.15, 0.3)
    haze = _jitter(rng, (150, 160, 172), 12)
    while x < end:
        w = rng.uniform(6, 28)
        h = rng.uniform(3, 26)
        p.rectangle((x, cam.vy - h, x + w, cam.vy + 2), _jitter(rng, haze, 10))
        x += w


def _ground(p, rng, cam, width, height, road_half, walk):
    grass = _jitter(rng, (88, 118, 62), 14)
    p.rectangle((0, cam.vy, width, height), grass)
    far, near = 400.0, 0.6
    asphalt = _grey(rng, 90)
    paving = _grey(rng, 156)
    for side in (-1, 1):
        inner, outer = side * road_half, side * (road_half + walk)
        pts = [cam.project(inner, 0, near), cam.project(inner, 0, far), cam.project(outer, 0, far),
               cam.project(outer, 0, near)]
        p.polygon(pts, paving)
        curb = [cam.project(inner, 0, near), cam.project(inner, 0, far),
                cam.project(inner + side * 0.2, 0, far), cam.project(inner + side * 0.2, 0, near)]
        p.polygon(curb, _mix(paving, (210, 210, 210), 0.4))
    road = [cam.project(-road_half, 0, near), cam.project(-road_half, 0, far), cam.project(road_half, 0, far),
            cam.project(road_half, 0, near)]
    p.polygon(road, asphalt)
    paint = _jitter(rng, (225, 225, 215), 10)
    for side in (-1, 1):  # solid edge lines
        x0 = side * (road_half - 0.35)
        p.polygon([cam.project(x0, 0, near), cam.project(x0, 0, far), cam.project(x0 + 0.15, 0, far),
                   cam.project(x0 + 0.15, 0, near)], _mix(paint, asphalt, 0.15))
    z = rng.uniform(0.8, 6.0)
    lanes = int(rng.integers(1, 3)) if road_half > 5 else 1
    for lane in range(lanes):  # dashed centre (and lane) marks
        x0 = (lane - (lanes - 1) / 2) * road_half * 0.6 - 0.075
        zz = z + lane
        while zz < 160:
            p.polygon([cam.project(x0, 0, zz), cam.project(x0, 0, zz + 3), cam.project(x0 + 0.15, 0, zz + 3),
                       cam.project(x0 + 0.15, 0, zz)], paint)
            zz += 9
    if rng.random() < 0.3:  # zebra crossing
        zc = rng.uniform(5, 18)
        x = -road_half + 0.3
        while x < road_half - 0.6:
            p.polygon([cam.project(x, 0, zc), cam.project(x, 0, zc + 3), cam.project(x + 0.5, 0, zc + 3),
                       cam.project(x + 0.5, 0, zc)], paint)
            x += 1.0


def _facades(p, rng, cam, side, x_plane):
    """Buildings lining one side of the street, with rows of windows, drawn far to near."""
    blocks, z = [], rng.uniform(1.0, 4.0)
    while z < 220:
        length = rng.uniform(8, 26)
        if rng.random() < 0.1:  # a gap between blocks
            z += rng.uniform(3, 10)
            continue
        blocks.append((z, z + length, rng.uniform(7, 28)))
        z += length
    wall_base = [(196, 170, 140), (170, 110, 90), (210, 205, 195), (140, 140, 150), (225, 200, 160),
                 (120, 100, 90)]
    for z0, z1, top in reversed(blocks):
        wall = _jitter(rng, wall_base[int(rng.integers(len(wall_base)))], 16)
        pts = [cam.project(x_plane, 0, z0), cam.project(x_plane, 0, z1), cam.project(x_plane, top, z1),
               cam.project(x_plane, top, z0)]
        p.polygon(pts, wall)
        glass = _jitter(rng, (70, 90, 110), 20)
        lit = _mix(glass, (240, 220, 160), 0.6)
        floors = int(top // 3)
        step = rng.uniform(2.2, 3.4)
        for floor in range(floors):
            y0 = floor * 3 + 0.9
            zc = z0 + 0.6
            while zc + 1.2 < z1:
                a, b = cam.project(x_plane, y0, zc), cam.project(x_plane, y0 + 1.5, zc + 1.1)
                if abs(a[0] - b[0]) >= 1.5:  # windows smaller than a pixel are not worth drawing
                    colour = lit if rng.random() < 0.12 else glass
                    p.polygon([a, cam.project(x_plane, y0, zc + 1.1), b, cam.project(x_plane, y0 + 1.5, zc)],
                              colour)
                zc += step
        if rng.random() < 0.5:  # ground-floor shop front
            band = _jitter(rng, (60, 60, 64), 20)
            p.polygon([cam.project(x_plane, 0, z0), cam.project(x_plane, 0, z1), cam.project(x_plane, 2.6, z1),
                       cam.project(x_plane, 2.6, z0)], band)


# ---------------------------------------------------------------------------------- foreground
@dataclass
class _Thing:
    depth: float
    kind: str  # tree | foliage | lamp | car | sign
    params: dict
    bbox: tuple = (0, 0, 0, 0)  # screen extent, for keeping scenery out of signs' way


def _tree_shapes(rng, cam, X, Z, height, crown_r, trunk_w=0.35):
    base = cam.project(X, 0, Z)
    top = cam.project(X, height, Z)
    tw = max(1.0, cam.f * trunk_w / Z)
    r = cam.f * crown_r / Z
    cx, cy = top
    blobs = []
    green = np.array([[52, 92, 38], [70, 112, 46], [38, 74, 34], [92, 128, 56]])
    for _ in range(int(rng.integers(7, 14))):
        ox, oy = rng.normal(0, 0.45) * r, rng.normal(0, 0.35) * r
        br = r * rng.uniform(0.35, 0.7)
        blobs.append(((cx + ox - br, cy + oy - br, cx + ox + br, cy + oy + br),
                      _jitter(rng, tuple(green[int(rng.integers(len(green)))]), 14)))
    trunk = (base[0] - tw / 2, cy, base[0] + tw / 2, base[1])
    xs = [b[0][0] for b in blobs] + [b[0][2] for b in blobs] + [trunk[0], trunk[2]]
    ys = [b[0][1] for b in blobs] + [b[0][3] for b in blobs] + [trunk[3]]
    return {"trunk": trunk, "blobs": blobs, "bark": _jitter(rng, (92, 70, 52), 12)}, \
        (min(xs), min(ys), max(xs), max(ys))


def _draw_tree(p, shapes, label):
    if shapes["trunk"] is not None:
        p.rectangle(shapes["trunk"], shapes["bark"], label)
    for box, colour in shapes["blobs"]:
        p.ellipse(box, colour, label)


def _lamp_shapes(rng, cam, X, Z, side):
    base = cam.project(X, 0, Z)
    top = cam.project(X, rng.uniform(5.5, 8), Z)
    w = max(1.0, cam.f * 0.14 / Z)
    arm_end = cam.project(X - side * 1.4, 0, Z)[0]  # the arm reaches over the road
    arm = (min(base[0], arm_end), top[1], max(base[0], arm_end), top[1] + max(1.0, w * 0.7))
    pole = (base[0] - w / 2, top[1], base[0] + w / 2, base[1])
    colour = _jitter(rng, (78, 82, 86), 10)
    return {"pole": pole, "arm": arm, "colour": colour}, (min(pole[0], arm[0]), top[1], max(pole[2], arm[2]),
                                                          base[1])


def _draw_lamp(p, shapes, label):
    p.rectangle(shapes["pole"], shapes["colour"], label)
    p.rectangle(shapes["arm"], shapes["colour"], label)


CAR_COLOURS = [(180, 30, 30), (30, 60, 140), (220, 220, 220), (40, 40, 44), (150, 150, 156), (200, 160, 40),
               (60, 110, 70), (110, 40, 40)]


def _car_shapes(rng, cam, X, Z):
    """A car seen from behind: body, cabin with rear window, wheels, tail lights, and the side
    that faces the camera axis (a box in perspective)."""
    half, length = rng.uniform(0.85, 1.0), rng.uniform(3.8, 4.8)
    body_top, roof = rng.uniform(0.85, 1.0), rng.uniform(1.35, 1.6)
    paint = _jitter(rng, CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))], 14)
    near_x = X - half if X > 0 else X + half  # the side we can see
    side = [cam.project(near_x, 0.25, Z), cam.project(near_x, 0.25, Z + length),
            cam.project(near_x, body_top, Z + length), cam.project(near_x, body_top, Z)]
    cabin_side = [cam.project(near_x * 0.97, body_top, Z + 0.8), cam.project(near_x * 0.97, body_top, Z + length - 1),
                  cam.project(near_x * 0.97, roof, Z + length - 1.4), cam.project(near_x * 0.97, roof, Z + 1.2)]
    polys = [(side, _mix(paint, (0, 0, 0), 0.3)), (cabin_side, (40, 46, 54))]
    rects = [
        ((*cam.project(X - half + 0.05, 0.4, Z), *cam.project(X - half + 0.45, 0.0, Z)), (20, 20, 20)),
        ((*cam.project(X + half - 0.45, 0.4, Z), *cam.project(X + half - 0.05, 0.0, Z)), (20, 20, 20)),
        ((*cam.project(X - half, body_top, Z), *cam.project(X + half, 0.25, Z)), paint),
        ((*cam.project(X - half * 0.8, roof, Z + 1.0), *cam.project(X + half * 0.8, body_top, Z + 1.0)),
         _mix(paint, (0, 0, 0), 0.15)),
        ((*cam.project(X - half * 0.7, roof - 0.08, Z + 1.0), *cam.project(X + half * 0.7, body_top + 0.08, Z + 1.0)),
         (50, 58, 68)),
        ((*cam.project(X - half + 0.05, body_top - 0.1, Z), *cam.project(X - half + 0.3, body_top - 0.3, Z)),
         (200, 30, 30)),
        ((*cam.project(X + half - 0.3, body_top - 0.1, Z), *cam.project(X + half - 0.05, body_top - 0.3, Z)),
         (200, 30, 30)),
    ]
    points = [pt for poly, _ in polys for pt in poly] + [(r[0], r[1]) for r, _ in rects] + \
        [(r[2], r[3]) for r, _ in rects]
    xs, ys = [pt[0] for pt in points], [pt[1] for pt in points]
    return {"polys": polys, "rects": rects}, (min(xs), min(ys), max(xs), max(ys))


def _draw_car(p, shapes, label):
    for poly, colour in shapes["polys"]:
        p.polygon(poly, colour, label)
    for rect, colour in shapes["rects"]:
        p.rectangle(rect, colour, label)


def _boxes_overlap(a, b, pad=0.0):
    return not (a[2] + pad <= b[0] or b[2] + pad <= a[0] or a[3] + pad <= b[1] or b[3] + pad <= a[1])


@dataclass
class SceneSpec:
    index: int
    width: int
    height: int
    labels: list[str]  # the classes of the signs to draw (empty = a scene without signs)


def render_scene(spec: SceneSpec, rng: np.random.Generator, plates: bool = True) -> tuple[bytes, list[PlacedSign]]:
    """JPEG bytes of the scene and its signs (true boxes = full outlines, visible fraction counted).

    ``plates=False`` draws the same scene with the sign plates left out (posts stay), so tests can
    find the plates' pixels as the difference of the two pictures.
    """
    width, height = spec.width, spec.height
    light = str(rng.choice(list(LIGHTS), p=[0.45, 0.25, 0.15, 0.15]))
    cam = _Camera(vx=width * rng.uniform(0.32, 0.68), vy=height * rng.uniform(0.34, 0.5),
                  f=width * rng.uniform(0.75, 1.1))
    road_half = rng.uniform(3.5, 7.5)
    walk = rng.uniform(2.0, 4.5)

    image = _sky(rng, width, height, cam.vy, light)
    labels = Image.new("L", (width, height), 0)
    p = _Painter(image, labels)
    _skyline(p, rng, cam, width)
    _ground(p, rng, cam, width, height, road_half, walk)
    sides = {-1: rng.random() < 0.8, 1: rng.random() < 0.8}  # buildings, else a park with trees
    for side, built in sides.items():
        if built:
            _facades(p, rng, cam, side, side * (road_half + walk))

    signs = _place_signs(spec, rng, cam, road_half, walk)
    things: list[_Thing] = []
    for i, sign in enumerate(signs):
        things.append(_Thing(sign.depth, "sign", {"i": i}))
        if sign.occluder:
            # it must hide part of this sign only; give up after a few tries
            others = [o.box for o in signs if o is not sign]
            for _ in range(6):
                thing = _occluder(rng, cam, sign)
                if not any(_boxes_overlap(thing.bbox, box, 1) for box in others):
                    things.append(thing)
                    break
            else:
                sign.occluder = None
    things += _scenery(rng, cam, sides, road_half, walk, width, signs)

    patches = {}
    for thing in sorted(things, key=lambda t: -t.depth):
        if thing.kind == "sign":
            i = thing.params["i"]
            patches[i] = _draw_sign(p, rng, cam, signs[i], _SIGN_LABEL0 + i, plates)
        elif thing.kind in ("tree", "foliage"):
            _draw_tree(p, thing.params, 1)
        elif thing.kind == "car":
            _draw_car(p, thing.params, 1)
        else:
            _draw_lamp(p, thing.params, 1)

    label_px = np.asarray(labels)
    for i, sign in enumerate(signs):
        own = np.asarray(patches[i].getchannel("A")) >= 128
        seen = label_px[sign.y:sign.y + sign.h, sign.x:sign.x + sign.w] == _SIGN_LABEL0 + i
        sign.visible = round(float(seen.sum()) / max(int(own.sum()), 1), 3)

    return _finish(image, rng, light), signs


def _pole_rect(cam, x, y, w, h, depth, height):
    ground = cam.vy + cam.f * CAMERA_HEIGHT / depth
    pole_w = max(1.0, min(w * 0.12, cam.f * 0.07 / depth))
    cx = x + w / 2
    return (cx - pole_w / 2, y + h / 2, cx + pole_w / 2, min(max(ground, y + h + 1), height + 1))


def _fits(box, pole, placed, pad=3) -> bool:
    """No overlap with other plates, and no post running through another plate (either way)."""
    for other in placed:
        if (_boxes_overlap(box, other.box, pad) or _boxes_overlap(box, other.pole, 1)
                or _boxes_overlap(pole, other.box, 1)):
            return False
    return True


def _place_signs(spec, rng, cam, road_half, walk) -> list[PlacedSign]:
    width, height = spec.width, spec.height
    placed: list[PlacedSign] = []
    largest = max(MIN_SIGN_PX + 1, MAX_SIGN_SHARE * min(width, height))
    margin = 2
    for name in spec.labels:
        size = math.exp(rng.uniform(math.log(MIN_SIGN_PX), math.log(largest)))
        for attempt in range(60):
            if attempt and attempt % 6 == 0:
                size = max(MIN_SIGN_PX, size * 0.8)  # crowded scene: try smaller
            w, h = box_size(name, size)
            w, h = min(w, width - 2 * margin), min(h, height - 2 * margin)
            depth = cam.f * METRES.get(name, DEFAULT_METRES) / max(w, h)
            side = 1 if rng.random() < 0.65 else -1
            X = side * (road_half + rng.uniform(0.2, walk * 0.8)) + rng.normal(0, 0.6)
            mount = rng.uniform(3.2, 4.6) if name == "traffic_light" else rng.uniform(2.0, 3.0)
            cx, cy = cam.project(X, mount, depth)
            # keep the whole outline inside the picture; a sign near the camera slides inward
            x = int(round(min(max(cx - w / 2, margin), width - margin - w)))
            y = int(round(min(max(cy - h / 2, margin), height - margin - h)))
            pole = _pole_rect(cam, x, y, w, h, depth, height)
            if _fits((x, y, x + w, y + h), pole, placed):
                break
        else:
            # no free spot found: the smallest size at a random free place
            w, h = box_size(name, MIN_SIGN_PX)
            depth = cam.f * METRES.get(name, DEFAULT_METRES) / max(w, h)
            x, y, pole = _free_spot(rng, cam, placed, w, h, depth, width, height, margin)
        occluder = None
        if rng.random() < OCCLUDE_SHARE and max(w, h) >= 16:
            occluder = "pole" if rng.random() < 0.5 else "foliage"
        placed.append(PlacedSign(name, x, y, w, h, depth, occluder, pole=pole))
    return placed


def _free_spot(rng, cam, placed, w, h, depth, width, height, margin):
    """A random free grid place for a smallest-size sign (only crowded, small pictures get here)."""
    spots = [(x, y) for y in range(margin, height - h - margin, max(h // 2, 1))
             for x in range(margin, width - w - margin, max(w // 2, 1))]
    order = rng.permutation(len(spots))
    for k in order:
        x, y = spots[k]
        pole = _pole_rect(cam, x, y, w, h, depth, height)
        if _fits((x, y, x + w, y + h), pole, placed):
            return x, y, pole
    for k in order:  # last resort: posts may cross plates
        x, y = spots[k]
        if not any(_boxes_overlap((x, y, x + w, y + h), other.box, 3) for other in placed):
            return x, y, _pole_rect(cam, x, y, w, h, depth, height)
    raise ValueError(f"no room for a {w}x{h} sign in a {width}x{height} image")


def _occluder(rng, cam, sign: PlacedSign) -> _Thing:
    """A pole or a tree crown just in front of ``sign`` that hides part of it (not all)."""
    depth = sign.depth * rng.uniform(0.75, 0.92)
    scale = depth / cam.f  # metres per pixel at the occluder's depth
    if sign.occluder == "pole":
        pw = sign.w * rng.uniform(0.12, 0.3)
        centre = sign.x + sign.w * rng.choice([rng.uniform(0.1, 0.35), rng.uniform(0.65, 0.9)])
        ground = cam.vy + cam.f * CAMERA_HEIGHT / depth
        top = sign.y - sign.h * rng.uniform(0.5, 3.0)
        pole = (centre - pw / 2, top, centre + pw / 2, max(ground, sign.y + sign.h + 2))
        colour = _jitter(rng, (84, 88, 92), 12)
        arm = pole
        return _Thing(depth, "lamp", {"pole": pole, "arm": arm, "colour": colour},
                      (pole[0], pole[1], pole[2], pole[3]))
    # foliage: a crown centred off a corner of the sign so it covers a part
    angle = rng.uniform(0, 2 * math.pi)
    size = max(sign.w, sign.h)
    cx = sign.x + sign.w / 2 + math.cos(angle) * size * rng.uniform(0.55, 0.8)
    cy = sign.y + sign.h / 2 + math.sin(angle) * size * rng.uniform(0.55, 0.8)
    r = size * rng.uniform(0.3, 0.45)
    green = np.array([[52, 92, 38], [70, 112, 46], [38, 74, 34], [92, 128, 56]])
    blobs = []
    for _ in range(int(rng.integers(5, 10))):
        ox, oy = rng.normal(0, 0.3) * r, rng.normal(0, 0.3) * r
        br = r * rng.uniform(0.4, 0.75)
        blobs.append(((cx + ox - br, cy + oy - br, cx + ox + br, cy + oy + br),
                      _jitter(rng, tuple(green[int(rng.integers(len(green)))]), 14)))
    # a trunk only under a crown that sits below the sign's middle (it must not run through the
    # sign); crowns above or beside it are branches of a tree outside the picture
    if cy > sign.y + sign.h * 0.75:
        trunk_w = max(1.0, 0.15 / scale)
        ground = cam.vy + cam.f * CAMERA_HEIGHT / depth
        trunk = (cx - trunk_w / 2, cy, cx + trunk_w / 2, max(ground, cy))
    else:
        trunk = None
    extent = [b for b, _ in blobs] + ([trunk] if trunk is not None else [])
    bbox = (min(b[0] for b in extent), min(b[1] for b in extent), max(b[2] for b in extent),
            max(b[3] for b in extent))
    return _Thing(depth, "foliage", {"trunk": trunk, "blobs": blobs, "bark": _jitter(rng, (92, 70, 52), 12)},
                  bbox)


def _scenery(rng, cam, sides, road_half, walk, width, signs) -> list[_Thing]:
    """Trees and street lamps; any that would stand in front of a sign is left out, so only the
    deliberate occluders (and other signs' poles) hide signs."""
    things = []
    for side, built in sides.items():
        n_trees = int(rng.integers(0, 5)) if built else int(rng.integers(5, 12))
        for _ in range(n_trees):
            Z = rng.uniform(4, 90)
            X = side * (road_half + (rng.uniform(0.6, walk - 0.4) if built else rng.uniform(walk, walk + 14)))
            shapes, bbox = _tree_shapes(rng, cam, X, Z, rng.uniform(4, 8), rng.uniform(1.4, 3.0))
            things.append(_Thing(Z, "tree", shapes, bbox))
        for _ in range(int(rng.integers(0, 4))):
            Z = rng.uniform(5, 80)
            X = side * (road_half + rng.uniform(0.3, 0.8))
            shapes, bbox = _lamp_shapes(rng, cam, X, Z, side)
            things.append(_Thing(Z, "lamp", shapes, bbox))
    for _ in range(int(rng.integers(0, 5))):
        lane = rng.choice([-0.5, 0.5]) * road_half + rng.normal(0, 0.3)
        Z = rng.uniform(7, 70)
        shapes, bbox = _car_shapes(rng, cam, lane, Z)
        things.append(_Thing(Z, "car", shapes, bbox))
    keep = []
    for thing in things:
        blocks = any(thing.depth < s.depth and _boxes_overlap(thing.bbox, (s.x, s.y, s.x + s.w, s.y + s.h))
                     for s in signs)
        if not blocks:
            keep.append(thing)
    return keep


def _draw_sign(p, rng, cam, sign: PlacedSign, label, plates=True) -> Image.Image:
    # the post first: the plate hides its top end
    p.rectangle(sign.pole, _jitter(rng, (120, 124, 128), 14), 1)
    patch = render_sign(sign.label, sign.w, sign.h, rng)
    if plates:
        p.image.paste(patch, (sign.x, sign.y), patch)
    p.labels.paste(label, (sign.x, sign.y, sign.x + sign.w, sign.y + sign.h),
                   patch.getchannel("A").point(lambda a: 255 if a >= 128 else 0))
    return patch


_NORMAL_QUANTILES = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32)


def _finish(image: Image.Image, rng, light) -> bytes:
    """Light, blur, sensor noise and JPEG: the same pixels always give the same bytes."""
    gains = np.array(LIGHTS[light][2], np.float32) * LIGHTS[light][3] * rng.uniform(0.9, 1.1)
    width, height = image.size
    # uneven light: a coarse random field blown up to the picture size
    coarse = rng.uniform(0.88, 1.12, size=(4, 5)).astype(np.float32)
    field_img = Image.fromarray(((coarse - 0.8) * 500).clip(0, 255).astype(np.uint8), "L")
    shade = np.asarray(field_img.resize((width, height), Image.Resampling.BICUBIC), np.float32) / 500 + 0.8
    if rng.random() < 0.4:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 1.4))))
    pixels = np.asarray(image, np.float32)
    pixels *= shade[..., None] * gains
    sigma = rng.uniform(1.5, 6.0)
    # Gaussian sensor noise from random bytes through the normal quantile table: 5x faster than
    # drawing normals, and 256 levels are plenty for noise of a few grey levels
    pixels += (_NORMAL_QUANTILES * np.float32(sigma))[rng.integers(0, 256, pixels.shape, dtype=np.uint8)]
    np.clip(pixels, 0, 255, out=pixels)
    out = Image.fromarray(pixels.astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return buffer.getvalue()
