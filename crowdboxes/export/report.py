"""``report.html``: one self-contained page a person looks at after a run.

:func:`write_report` writes a single HTML file with no network reference at all (no external CSS, script,
font or image): every picture is inline, images as ``data:image/jpeg`` URIs downscaled to at most
``max_side`` pixels, charts as inline SVG. It shows, top to bottom:

* **Cost**: ``wait_summary.json``'s ``spent_usd`` in total and per accepted image
  (``spent_usd / images_accepted``), the assignment counts, the reward/fee split and each round's spend.
* **Quality** (only when a truth is given): :func:`crowdboxes.evaluation.metrics.evaluate` of the kept boxes
  (``score >= min_score``) and :func:`crowdboxes.evaluation.calibration.calibration` of every scored box:
  ECE, the tied share and the reliability table with its diagram (a calibrated score p is right with
  probability p, so the bars lie on the diagonal).
* **Scores**: a histogram of every candidate's score (20 bins over [0, 1]); the kept boxes are those right
  of the ``min_score`` line.
* **Workers**: ``workers.csv`` (answers, skill, and LeanEM's ``miss_rate`` / ``fp_rate`` when present), the
  number of raw boxes each drew, and bans (``qc_summary.json``'s ``banned_workers``) with their reason.
* **Riskiest images first**: ``images_review.csv``'s rows by decreasing ``risk`` (at most ``max_images``),
  each image with an SVG overlay in the image's own pixel coordinates: kept boxes (solid, with label and
  score), low-score candidates (dashed) and each worker's raw boxes (thin, one colour per worker, the same
  colour as in the worker table).

Images come from ``image_dir / file_name`` when that file exists, else from the images.csv ``url`` fetched at
write time; an image that can be neither read nor fetched becomes a grey placeholder with a note (the report
is still written).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import atomic_path

__all__ = ["write_report", "fetch_url", "render_in_chromium", "worker_colour"]

# Workers' colours: hues a golden angle apart, so the few workers who drew one image get distinct colours
# however many workers the run had; kept boxes are drawn in KEPT_COLOUR.
GOLDEN_ANGLE = 137.508


def worker_colour(n: int) -> str:
    """The ``n``-th worker's colour (CSS hsl)."""
    return f"hsl({(n * GOLDEN_ANGLE) % 360:.0f},85%,{52 + 10 * (n % 2)}%)"


KEPT_COLOUR = "#ff1744"
CANDIDATE_COLOUR = "#ffffff"
USED_STATUSES = ("ACCEPTED", "SUBMITTED")
FETCH_TIMEOUT_SECONDS = 15.0

ImageSource = Callable[[str], bytes]


def fetch_url(url: str) -> bytes:
    """The bytes at ``url`` (HTTP GET with a timeout); any failure raises, the caller turns it into a note."""
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 (http/s only)
        data: bytes = response.read()
    return data


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 3) -> str:
    """A number for a table cell: empty for missing, ``digits`` decimals for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return _esc(value)


def _table(frame: pd.DataFrame, digits: Mapping[str, int] | None = None, css: str = "") -> str:
    digits = digits or {}
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record):
            text = _num(value, digits.get(column, 3)) if isinstance(value, (float, int, np.number)) else _esc(value)
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


# ------------------------------------------------------------------------------------------------ images

def _jpeg_data_uri(data: bytes | None, width: int, height: int, max_side: int) -> tuple[str, int, int]:
    """A downscaled JPEG of ``data`` as a data URI and its size; a grey ``width x height`` placeholder when
    ``data`` is None or not an image (raises nothing)."""
    from PIL import Image

    picture: Image.Image | None = None
    if data is not None:
        try:
            with Image.open(io.BytesIO(data)) as opened:
                picture = opened.convert("RGB")
        except Exception:  # noqa: BLE001 - an unreadable image becomes the placeholder
            picture = None
    if picture is None:
        picture = Image.new("RGB", (max(1, width), max(1, height)), (150, 150, 150))
    picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), *picture.size


def _image_bytes(row: Mapping[str, Any], image_dir: Path | None, fetch: ImageSource | None) -> tuple[bytes | None, str]:
    """The image's bytes and a note ('' when all went well): the local file first, then the URL."""
    name = str(row.get("file_name") or "")
    if image_dir is not None and name:
        local = image_dir / name
        if local.is_file():
            return local.read_bytes(), ""
    url = str(row.get("url") or "")
    if fetch is None or not url.startswith(("http://", "https://")):
        return None, "image not available (no local file and no URL to fetch)"
    try:
        return fetch(url), ""
    except Exception as exc:  # noqa: BLE001 - fail soft: a placeholder and a note
        return None, f"image not available: fetching its URL failed ({type(exc).__name__})"


def _rect(x: float, y: float, w: float, h: float, colour: str, width: float, dash: str = "",
          title: str = "") -> str:
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    tip = f"<title>{_esc(title)}</title>" if title else ""
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="none" stroke="{colour}" '
            f'stroke-width="{width:.2f}" vector-effect="non-scaling-stroke"{dash_attr}>{tip}</rect>')


def _overlay(width: float, height: float, kept: pd.DataFrame, candidates: pd.DataFrame, raw: pd.DataFrame,
             colour_of: Mapping[str, str]) -> str:
    """An SVG in the image's pixel coordinates laid over the picture (it scales with it)."""
    parts = []
    for r in raw.itertuples(index=False):
        parts.append(_rect(r.x, r.y, r.w, r.h, colour_of.get(str(r.worker_id), "#aaaaaa"), 1.2,
                           title=f"worker {r.worker_id}: {r.label}"))
    for r in candidates.itertuples(index=False):
        parts.append(_rect(r.x, r.y, r.w, r.h, CANDIDATE_COLOUR, 2.0, dash="5 4",
                           title=f"candidate {r.label} score {r.score:.2f}"))
    font = max(10.0, height / 40)
    for r in kept.itertuples(index=False):
        parts.append(_rect(r.x, r.y, r.w, r.h, KEPT_COLOUR, 3.0, title=f"{r.label} score {r.score:.3f}"))
        parts.append(f'<text x="{r.x:.1f}" y="{max(r.y - 3, font):.1f}" font-size="{font:.0f}" '
                     f'fill="{KEPT_COLOUR}" stroke="#000" stroke-width="0.4" paint-order="stroke">'
                     f'{_esc(r.label)} {r.score:.2f}</text>')
    return (f'<svg class="overlay" viewBox="0 0 {width:.0f} {height:.0f}" preserveAspectRatio="none">'
            f'{"".join(parts)}</svg>')


# ------------------------------------------------------------------------------------------------ charts

def _histogram_svg(scores: np.ndarray, min_score: float, bins: int = 20) -> str:
    """Bars of the score counts in ``bins`` equal bins over [0, 1], with the ``min_score`` cut."""
    width, height, pad = 520, 220, 34
    counts, _ = np.histogram(np.clip(scores, 0, 1), bins=bins, range=(0.0, 1.0))
    top = max(int(counts.max()) if len(counts) else 0, 1)
    bar = (width - 2 * pad) / bins
    parts = [f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>']
    for b, count in enumerate(counts):
        h = (height - 2 * pad) * count / top
        parts.append(f'<rect x="{pad + b * bar + 1:.1f}" y="{height - pad - h:.1f}" width="{bar - 2:.1f}" '
                     f'height="{h:.1f}" fill="#4a78b5"><title>{b / bins:.2f}-{(b + 1) / bins:.2f}: '
                     f'{count}</title></rect>')
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = pad + tick * (width - 2 * pad)
        parts.append(f'<text x="{x:.1f}" y="{height - pad + 14}" font-size="11" text-anchor="middle">{tick:g}</text>')
    cut = pad + min_score * (width - 2 * pad)
    parts.append(f'<line x1="{cut:.1f}" y1="{pad - 10}" x2="{cut:.1f}" y2="{height - pad}" stroke="{KEPT_COLOUR}" '
                 f'stroke-dasharray="4 3"/><text x="{cut + 4:.1f}" y="{pad - 2}" font-size="11" '
                 f'fill="{KEPT_COLOUR}">kept from {min_score:g}</text>')
    parts.append(f'<text x="{pad}" y="14" font-size="11">boxes (max {top} per bin)</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 4}" font-size="11" text-anchor="middle">score</text>')
    return f'<svg class="chart" width="{width}" height="{height}">{"".join(parts)}</svg>'


def _reliability_svg(table: pd.DataFrame) -> str:
    """The reliability diagram: per score bin the share of right boxes against the mean score."""
    size, pad = 240, 30
    span = size - 2 * pad
    parts = [f'<rect x="{pad}" y="{pad}" width="{span}" height="{span}" fill="none" stroke="#333"/>',
             f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#999" stroke-dasharray="4 3"/>']
    for row in table.itertuples(index=False):
        if not row.boxes:
            continue
        x0, share = pad + row.low * span, float(row.right_share)
        h = share * span
        parts.append(f'<rect x="{x0 + 1:.1f}" y="{size - pad - h:.1f}" width="{(row.high - row.low) * span - 2:.1f}" '
                     f'height="{h:.1f}" fill="#4a78b5" fill-opacity="0.8"><title>{row.low:.1f}-{row.high:.1f}: '
                     f'{share:.2f} right of {row.boxes}</title></rect>')
    parts.append(f'<text x="{size / 2}" y="{size - 8}" font-size="11" text-anchor="middle">score</text>')
    parts.append(f'<text x="10" y="{size / 2}" font-size="11" transform="rotate(-90 10 {size / 2})" '
                 f'text-anchor="middle">share right</text>')
    return f'<svg class="chart" width="{size}" height="{size}">{"".join(parts)}</svg>'


# ------------------------------------------------------------------------------------------------ sections

def _cost_section(wait_summary: Mapping[str, Any] | None, images: pd.DataFrame) -> str:
    if not wait_summary:
        return '<section id="cost"><h2>Cost</h2><p class="note">No wait_summary.json: cost unknown.</p></section>'
    spent = wait_summary.get("spent_usd")
    accepted = wait_summary.get("images_accepted") or wait_summary.get("images_answered") or len(images)
    per_image = float(spent) / accepted if spent is not None and accepted else None
    counts = wait_summary.get("counts") or {}
    rows = [("spent in total (USD)", _num(spent, 4)), ("images", str(len(images))),
            ("images accepted", _num(accepted)), ("per accepted image (USD)", _num(per_image, 4)),
            ("detection rewards (USD)", _num(wait_summary.get("detection_reward_usd"), 4)),
            ("detection fees (USD)", _num(wait_summary.get("detection_fee_usd"), 4)),
            ("answer rows", _num(wait_summary.get("answer_rows"))),
            ("crowd wait (s)", _num(wait_summary.get("duration_seconds"), 0))]
    rows = [(k, v) for k, v in rows if v != ""]
    rows += [(f"assignments {name}", _num(value)) for name, value in sorted(counts.items())]
    rounds = wait_summary.get("rounds") or {}
    if isinstance(rounds, Mapping):
        for name, info in rounds.items():
            if isinstance(info, Mapping) and info.get("spent_usd") is not None:
                rows.append((f"round {name} (USD)", _num(info.get("spent_usd"), 4)))
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return (f'<section id="cost"><h2>Cost</h2><p class="big">${_num(spent, 2)} in total, '
            f'${_num(per_image, 4)} per image</p><table class="kv">{body}</table></section>')


def _truth_by_image_id(truth: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Truth boxes keyed by images.csv's ``image_id`` (a truth keyed by ``file_name`` is mapped through it)."""
    if "file_name" in truth.columns:
        ids = dict(zip(images["file_name"].astype(str), images["image_id"].astype(str)))
        mapped = truth.assign(image_id=truth["file_name"].astype(str).map(ids))
        return mapped[mapped["image_id"].notna()]
    return truth.assign(image_id=truth["image_id"].astype(str))


def _quality_section(boxes: pd.DataFrame, truth: pd.DataFrame | None, images: pd.DataFrame,
                     min_score: float) -> str:
    from crowdboxes.evaluation.calibration import calibration
    from crowdboxes.evaluation.metrics import evaluate

    if truth is None:
        return ('<section id="quality"><h2>Quality</h2><p class="note">No truth given: quality against truth '
                'is not measured.</p></section>')
    true = _truth_by_image_id(truth, images)
    pred = boxes.assign(image_id=boxes["image_id"].astype(str))
    try:
        metrics = evaluate(pred[pred["score"] >= min_score], true, images=images["image_id"].astype(str))
        calib = calibration(pred, true)
    except Exception as exc:  # noqa: BLE001 - the rest of the report is still worth having
        return f'<section id="quality"><h2>Quality</h2><p class="note">not measured: {_esc(exc)}</p></section>'
    keys = ("AP", "AP50", "AP75", "precision", "recall", "f1", "mean_iou", "n_pred", "n_true", "n_images")
    body = "".join(f"<tr><th>{k}</th><td>{_num(metrics[k])}</td></tr>" for k in keys)
    body += f"<tr><th>ECE</th><td>{_num(calib.ece)}</td></tr><tr><th>tied share</th><td>{_num(calib.tied_share)}</td></tr>"
    return (f'<section id="quality"><h2>Quality against truth</h2><p>Kept boxes (score &ge; {min_score:g}) '
            f'against {len(true)} true boxes.</p><div class="row"><table class="kv">{body}</table>'
            f'<div id="calibration"><h3>Calibration</h3>{_reliability_svg(calib.bins)}'
            f'{_table(calib.bins[calib.bins["boxes"] > 0], {"low": 1, "high": 1}, "small")}</div></div></section>')


def _workers_section(workers: pd.DataFrame | None, raw: pd.DataFrame, colour_of: Mapping[str, str],
                     banned: Mapping[str, str] | None) -> str:
    if workers is None or workers.empty:
        frame = pd.DataFrame({"worker_id": sorted(colour_of)})
    else:
        frame = workers.copy()
    frame["worker_id"] = frame["worker_id"].astype(str)
    drawn = raw.groupby(raw["worker_id"].astype(str)).size() if not raw.empty else pd.Series(dtype=int)
    frame["raw_boxes"] = frame["worker_id"].map(drawn).fillna(0).astype(int)
    banned = dict(banned or {})
    frame["banned"] = frame["worker_id"].map(lambda w: banned.get(w, ""))
    columns = [c for c in ("worker_id", "answers", "skill", "miss_rate", "fp_rate", "raw_boxes", "banned")
               if c in frame.columns]
    frame = frame[columns].sort_values("skill" if "skill" in columns else "worker_id", ascending=False)
    head = "<th>colour</th>" + "".join(f"<th>{_esc(c)}</th>" for c in columns)
    rows = []
    for record in frame.itertuples(index=False):
        values = dict(zip(columns, record))
        swatch = f'<span class="swatch" style="background:{colour_of.get(values["worker_id"], "#aaaaaa")}"></span>'
        cells = "".join(f"<td>{_num(values[c]) if isinstance(values[c], (float, np.floating)) else _esc(values[c])}</td>"
                        for c in columns)
        css = ' class="banned"' if values.get("banned") else ""
        rows.append(f"<tr{css}><td>{swatch}</td>{cells}</tr>")
    note = f"{len(banned)} banned." if banned else "No bans."
    return (f'<section id="workers"><h2>Workers</h2><p>{len(frame)} workers. {note}</p>'
            f'<div class="scroll"><table class="workers"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div></section>')


def _review_order(review: pd.DataFrame | None, images: pd.DataFrame, boxes: pd.DataFrame) -> pd.DataFrame:
    """images_review.csv by decreasing risk; without it, images by their lowest kept score (lowest first)."""
    if review is not None and not review.empty:
        return review.assign(image_id=review["image_id"].astype(str)).sort_values("risk", ascending=False,
                                                                                 kind="stable")
    lowest = boxes.groupby(boxes["image_id"].astype(str))["score"].min()
    order = images.assign(image_id=images["image_id"].astype(str))
    order = order.assign(min_score=order["image_id"].map(lowest))
    return order.sort_values("min_score", na_position="last", kind="stable")


def _images_section(order: pd.DataFrame, images: pd.DataFrame, boxes: pd.DataFrame, raw: pd.DataFrame,
                    colour_of: Mapping[str, str], min_score: float, max_images: int, max_side: int,
                    image_dir: Path | None, fetch: ImageSource | None) -> str:
    by_id = {str(r["image_id"]): r for r in images.to_dict("records")}
    boxes = boxes.assign(image_id=boxes["image_id"].astype(str))
    raw = raw.assign(image_id=raw["image_id"].astype(str))
    cards = []
    for row in order.head(max_images).to_dict("records"):
        image_id = str(row["image_id"])
        meta = by_id.get(image_id, {"image_id": image_id, "file_name": row.get("file_name", "")})
        data, note = _image_bytes(meta, image_dir, fetch)
        width = float(meta.get("width") or 0)
        height = float(meta.get("height") or 0)
        if (not width or not height) and data is not None:
            from PIL import Image
            try:
                width, height = map(float, Image.open(io.BytesIO(data)).size)
            except Exception:  # noqa: BLE001 - drawn on the placeholder's size below
                pass
        width, height = width or 640.0, height or 480.0
        uri, _, _ = _jpeg_data_uri(data, int(width), int(height), max_side)
        own = boxes[boxes["image_id"] == image_id]
        kept, candidates = own[own["score"] >= min_score], own[own["score"] < min_score]
        drawn = raw[raw["image_id"] == image_id]
        facts = " · ".join(f"{k} {_num(row.get(k))}" for k in ("risk", "expected_missed", "expected_spurious",
                                                              "n_boxes", "min_score") if k in row)
        caption = (f"{len(kept)} kept, {len(candidates)} low-score candidates, {len(drawn)} raw boxes by "
                   f"{drawn['worker_id'].nunique()} workers")
        note_html = f'<p class="note">{_esc(note)}</p>' if note else ""
        cards.append(f'<figure class="card" data-image-id="{_esc(image_id)}"><figcaption><b>'
                     f'{_esc(meta.get("file_name") or image_id)}</b><br>{facts}<br>{caption}</figcaption>{note_html}'
                     f'<div class="pic"><img src="{uri}" alt="{_esc(meta.get("file_name") or image_id)}">'
                     f'{_overlay(width, height, kept, candidates, drawn, colour_of)}</div></figure>')
    legend = (f'<p class="legend"><span class="swatch" style="background:{KEPT_COLOUR}"></span> kept box '
              f'(score &ge; {min_score:g}) <span class="swatch dashed"></span> low-score candidate; thin boxes: '
              f'each worker\'s raw boxes in the worker\'s colour (worker table).</p>')
    shown = min(len(order), max_images)
    return (f'<section id="images"><h2>Riskiest images first</h2><p>{shown} of {len(images)} images, by '
            f'decreasing risk.</p>{legend}<div class="cards">{"".join(cards)}</div></section>')


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:24px}
.dash{display:flex;gap:40px;flex-wrap:wrap;align-items:flex-start}.dash h3{margin:0 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f0f0f0}table.kv th{text-align:left}td:first-child{text-align:left}
tr.banned{background:#fde0e0}.big{font-size:22px;font-weight:600}.note{color:#a15c00}
.row{display:flex;gap:32px;flex-wrap:wrap;align-items:flex-start}
.swatch{display:inline-block;width:14px;height:14px;border-radius:2px;vertical-align:middle}
.swatch.dashed{border:2px dashed #555;width:10px;height:10px}
.cards{display:flex;flex-wrap:wrap;gap:16px}.card{margin:0;background:#fff;border:1px solid #ddd;padding:8px;
width:540px}figcaption{font-size:12px;margin-bottom:6px}.pic{position:relative;line-height:0}
.scroll{max-height:420px;overflow:auto;display:inline-block}.pic img{width:100%;height:auto;display:block}.pic .overlay{position:absolute;left:0;top:0;width:100%;height:100%}
"""


def write_report(path: str | os.PathLike[str], *, boxes: pd.DataFrame, images: pd.DataFrame,
                 answers: pd.DataFrame | None = None, workers: pd.DataFrame | None = None,
                 review: pd.DataFrame | None = None, wait_summary: Mapping[str, Any] | None = None,
                 truth: pd.DataFrame | None = None, banned: Mapping[str, str] | None = None,
                 image_dir: str | os.PathLike[str] | None = None, fetch: ImageSource | None = fetch_url,
                 min_score: float = 0.5, max_images: int = 24, max_side: int = 640,
                 title: str = "crowdboxes run report") -> Path:
    """Write the self-contained ``report.html`` at ``path`` and return its path (module docstring).

    Args:
        boxes: boxes.csv (``image_id, label, x, y, w, h, score``), every candidate down to its min score.
        images: images.csv (``image_id, file_name, url, width, height``).
        answers: answers.csv (workers' raw boxes; rows with status ACCEPTED or SUBMITTED are drawn).
        workers: workers.csv (``worker_id, answers, skill`` and optional ``miss_rate, fp_rate``).
        review: images_review.csv (``image_id, file_name, risk, expected_missed, ...``); None: images by
            their lowest score.
        wait_summary: wait_summary.json's content (cost and counts).
        truth: true boxes (``image_id`` or ``file_name``, ``label, x, y, w, h``); None: no quality section.
        banned: worker id -> ban reason (qc_summary.json's ``banned_workers``).
        image_dir: the folder holding the images by ``file_name`` (read before any URL is fetched).
        fetch: gets a URL's bytes (None: never fetch; failures become placeholders).
        min_score: kept boxes are those with ``score >= min_score``.
        max_images: how many of the riskiest images are shown.
        max_side: the longest side, in pixels, of an inlined image.
    """
    boxes = boxes.copy()
    if "score" not in boxes.columns:
        boxes["score"] = 1.0
    raw = pd.DataFrame(columns=["image_id", "worker_id", "label", "x", "y", "w", "h"])
    if answers is not None and not answers.empty:
        raw = answers
        if "status" in raw.columns:
            raw = raw[raw["status"].isin(USED_STATUSES)]
        raw = raw.dropna(subset=["x", "y", "w", "h"])
    worker_ids = sorted(set(raw["worker_id"].astype(str)) | (set(workers["worker_id"].astype(str))
                                                           if workers is not None else set()))
    colour_of = {w: worker_colour(n) for n, w in enumerate(worker_ids)}
    scores = pd.to_numeric(boxes["score"], errors="coerce").dropna().to_numpy(dtype=float)
    order = _review_order(review, images, boxes)
    kept = int((scores >= min_score).sum())
    sections = [
        '<div class="dash">',
        _cost_section(wait_summary, images),
        f'<section id="scores"><h2>Scores</h2><p>{len(scores)} candidate boxes, {kept} kept '
        f'(score &ge; {min_score:g}).</p>{_histogram_svg(scores, min_score)}</section>',
        _quality_section(boxes, truth, images, min_score),
        '</div>',
        _images_section(order, images, boxes, raw, colour_of, min_score, max_images, max_side,
                        Path(image_dir) if image_dir is not None else None, fetch),
        _workers_section(workers, raw, colour_of, banned),
    ]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
            f'<body><h1>{_esc(title)}</h1><p>{len(images)} images, {len(boxes)} scored boxes, '
            f'{len(raw)} raw boxes from {len(worker_ids)} workers.</p>{"".join(sections)}</body></html>\n')
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return target


# ------------------------------------------------------------------------------------------------ Chromium

CHROMIUM = "/usr/bin/chromium"
# Headless flags for this machine's closed network: without the background-networking ones Chromium keeps
# trying Google's hosts; root needs --no-sandbox.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=10000")


def render_in_chromium(page: str | os.PathLike[str], *, screenshot: str | os.PathLike[str] | None = None,
                       window: tuple[int, int] = (1200, 2000), chromium: str = CHROMIUM,
                       timeout: float = 180.0) -> tuple[str, str]:
    """Open ``page`` in headless Chromium: its DOM after load (``--dump-dom``) and Chromium's stderr (console
    messages appear there as ``CONSOLE`` lines); with ``screenshot``, a PNG of the window is written too."""
    import subprocess
    import tempfile

    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="crowdboxes-chromium-") as profile:
        base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
                "--enable-logging=stderr", "--v=0"]
        done = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout,
                              check=False)
        if screenshot is not None:
            shot = subprocess.run([*base, f"--screenshot={Path(screenshot).resolve()}", url], capture_output=True,
                                  text=True, timeout=timeout, check=False)
            if shot.returncode != 0 or not Path(screenshot).is_file():
                raise CrowdboxesError(f"chromium --screenshot failed (exit {shot.returncode}): {shot.stderr[-500:]}")
    if done.returncode != 0:
        raise CrowdboxesError(f"chromium --dump-dom failed (exit {done.returncode}): {done.stderr[-500:]}")
    return done.stdout, done.stderr
