"""``python -m crowdboxes contact-sheet``: scenes with their true boxes and class names in one PNG.

Sample command::

    python -m crowdboxes contact-sheet --truth data/synth/truth.coco.json --images data/synth \\
        --out img/contact_sheet.png --count 12 --columns 4

Boxes of partly hidden signs (``occluded`` in the truth) are drawn dashed.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from crowdboxes.classes import CLASS_NAMES
from crowdboxes.cnvrg.stepkit import StepArgumentParser
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import atomic_path
from crowdboxes.evaluation.truth import images_frame, load_coco, truth_boxes

# one distinct colour per class, in classes.py order
PALETTE = [(255, 59, 48), (255, 149, 0), (255, 214, 10), (52, 199, 89), (0, 199, 190), (50, 173, 230),
           (0, 122, 255), (88, 86, 214), (175, 82, 222), (255, 45, 85)]


def _colour(label: str):
    return PALETTE[CLASS_NAMES.index(label) % len(PALETTE)] if label in CLASS_NAMES else (255, 255, 255)


def _dashed_rectangle(draw, box, colour, width, dash=6):
    x0, y0, x1, y1 = box
    for a, b, horizontal, fixed in ((x0, x1, True, y0), (x0, x1, True, y1), (y0, y1, False, x0),
                                    (y0, y1, False, x1)):
        pos = a
        while pos < b:
            end = min(pos + dash, b)
            draw.line([(pos, fixed), (end, fixed)] if horizontal else [(fixed, pos), (fixed, end)],
                      fill=colour, width=width)
            pos += 2 * dash


def render_sheet(truth_path, images_dir, count: int = 12, columns: int = 4, tile_width: int = 400) -> Image.Image:
    """The first ``count`` images of the truth, ``columns`` per row, boxes and labels drawn on."""
    coco = load_coco(truth_path)
    images = images_frame(coco).head(count)
    if images.empty:
        raise CrowdboxesError(f"{truth_path}: no images to show")
    boxes = truth_boxes(coco)
    visible = {a["id"]: a for a in coco["annotations"]}
    boxes["occluded"] = [bool(visible[a["id"]].get("occluded")) for a in coco["annotations"]]
    tiles = []
    font = ImageFont.load_default(size=13)
    for row in images.itertuples():
        path = Path(images_dir) / row.file_name
        try:
            with Image.open(path) as im:
                picture = im.convert("RGB")
        except FileNotFoundError:
            raise CrowdboxesError(f"image {path} (listed in {truth_path}) does not exist") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise CrowdboxesError(f"{path}: not a readable image ({exc})") from None
        scale = tile_width / picture.width
        tile = picture.resize((tile_width, max(1, round(picture.height * scale))), Image.Resampling.LANCZOS)
        draw = ImageDraw.Draw(tile)
        # the name first, so that boxes in the corner stay visible
        draw.rectangle((0, 0, draw.textlength(row.file_name, font=font) + 6, 16), fill=(0, 0, 0))
        draw.text((3, 1), row.file_name, fill=(255, 255, 255), font=font)
        for box in boxes[boxes.image_id == row.image_id].itertuples():
            rect = (box.x * scale - 1, box.y * scale - 1, (box.x + box.w) * scale, (box.y + box.h) * scale)
            colour = _colour(box.label)
            if box.occluded:
                _dashed_rectangle(draw, rect, colour, 2, dash=4)
            else:
                draw.rectangle(rect, outline=colour, width=2)
            text_y = rect[1] - 14 if rect[1] >= 14 else rect[3] + 1
            text_box = draw.textbbox((rect[0], text_y), box.label, font=font)
            draw.rectangle(text_box, fill=(0, 0, 0))
            draw.text((rect[0], text_y), box.label, fill=colour, font=font)
        tiles.append(tile)
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    gap = 6
    tile_h = max(t.height for t in tiles)
    sheet = Image.new("RGB", (columns * tile_width + (columns + 1) * gap, rows * tile_h + (rows + 1) * gap),
                      (255, 255, 255))
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet.paste(tile, (gap + c * (tile_width + gap), gap + r * (tile_h + gap)))
    return sheet


def build_parser() -> StepArgumentParser:
    parser = StepArgumentParser(prog="crowdboxes contact-sheet", description=__doc__.splitlines()[0])
    parser.add_argument("--truth", required=True, help="COCO truth file (e.g. data/synth/truth.coco.json)")
    parser.add_argument("--images", required=True, help="folder holding the images named in the truth")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--tile-width", type=int, default=400)
    parser.add_argument("--colors", type=int, default=256,
                        help="palette size of the PNG (keeps the committed figure small); 0 = full colour")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("count", "columns", "tile_width"):
        if getattr(args, name) < 1:
            raise CrowdboxesError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be 1 or more")
    if not 0 <= args.colors <= 256:
        raise CrowdboxesError(f"--colors {args.colors}: must be 0 (full colour) or 1..256")
    sheet = render_sheet(args.truth, args.images, args.count, args.columns, args.tile_width)
    if args.colors:
        sheet = sheet.quantize(args.colors, method=Image.Quantize.FASTOCTREE)
    try:
        with atomic_path(args.out) as tmp:
            sheet.save(tmp, format="PNG", optimize=True)
    except OSError as exc:
        raise CrowdboxesError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"wrote {args.out} ({sheet.width}x{sheet.height}, {min(args.count, len(load_coco(args.truth)['images']))} scenes)")
    return 0
