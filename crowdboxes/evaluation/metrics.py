"""Score boxes against a ground truth: COCO AP (pycocotools) and Hungarian-matched P / R / IoU.

``evaluate(pred_boxes, true_boxes)`` takes two long frames with ``image_id, label, x, y, w, h`` (pixels,
COCO ``[x, y, w, h]``); predictions may carry a ``score`` (missing = 1). Image ids and labels may be any
hashable values: they are mapped to the integers pycocotools needs here, in one place.

Conventions (box-aggregation.md section 3):

* ``AP`` = COCO AP@[.5:.95] (mean over IoU thresholds 0.50, 0.55, ..., 0.95 and over classes that have
  ground truth), ``AP50`` / ``AP75`` at one threshold, ``AP_agnostic`` the same with every label mapped to
  one class (``params.useCats = 0``), which separates localisation from class errors.
* Matched metrics: per image, the one-to-one matching of :func:`crowdboxes.geometry.match_boxes` (the most
  pairs with IoU >= 0.5 and, for the class-aware numbers, equal labels; then the largest total IoU; the same
  matcher scores the known-box drawings that ban workers). Each matched pair is a true positive (TP).
  ``precision = TP / n_pred``, ``recall = TP / n_true``, ``mean_iou`` = mean IoU over TPs (pure
  localisation), ``mean_iou_penalized`` = sum of TP IoUs / (TP + FP + FN) (the AWS convention).
* Images with truth but no predictions count (all their boxes are misses). Predictions on an image the
  truth does not know are an error naming the image, not silently ignored.

``python -m crowdboxes evaluate --pred annotations.coco.json --truth truth.coco.json [--json]`` scores two
COCO files, matching images by ``file_name``. When the detection project's labels are not the truth's class
names, ``--label-map`` (JSON text or a JSON file: truth class -> label value in the project's view) maps the
predicted labels back to the truth's classes before scoring.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crowdboxes.geometry import MATCH_IOU, match_boxes
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import read_json

BOX_COLUMNS = ("image_id", "label", "x", "y", "w", "h")
# Size buckets of COCO, by box area in px^2.
SMALL_AREA, LARGE_AREA = 32 ** 2, 96 ** 2

METRIC_KEYS = ("AP", "AP50", "AP75", "AP_agnostic", "AP50_agnostic", "AP_small", "AP_medium", "AP_large",
               "precision", "recall", "f1", "mean_iou", "mean_iou_penalized", "precision_agnostic",
               "recall_agnostic", "mean_iou_agnostic", "recall_small", "recall_medium", "recall_large",
               "n_pred", "n_true", "n_images")


def _check_frame(frame: pd.DataFrame, what: str, with_score: bool) -> pd.DataFrame:
    """The box columns of ``frame`` as floats (and ``score``, 1 when missing); CrowdboxesError naming a bad cell."""
    missing = [c for c in BOX_COLUMNS if c not in frame.columns]
    if missing:
        raise CrowdboxesError(f"{what} boxes: missing column(s) {', '.join(missing)}")
    columns = list(BOX_COLUMNS) + (["score"] if with_score and "score" in frame.columns else [])
    out = frame[columns].copy()
    for column in ("x", "y", "w", "h") + (("score",) if "score" in out.columns else ()):
        values = pd.to_numeric(out[column], errors="coerce")
        bad = values.isna() & out[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise CrowdboxesError(f"{what} boxes: row {row}, field {column!r}: {out[column].iloc[row]!r} is not a number")
        out[column] = values.astype(float)
    if with_score:
        out["score"] = out["score"].fillna(1.0) if "score" in out.columns else 1.0
    return out


def _coco_precision(true: pd.DataFrame, pred: pd.DataFrame, use_cats: bool) -> np.ndarray:
    """pycocotools' accumulated precision array ``[T, R, K, A, M]`` for these boxes (``pred`` not empty).

    Only images holding a box of either frame are evaluated: an image with neither adds nothing to COCO's
    precision/recall curves, but costs pycocotools a call per category and size bucket.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    image_ids = sorted(set(true["img"]) | set(pred["img"]))
    cat_ids = sorted(set(true["cat"]) | set(pred["cat"]))
    gt_dataset = {
        "images": [{"id": int(i)} for i in image_ids],
        "categories": [{"id": int(c), "name": str(c)} for c in cat_ids],
        "annotations": [
            {"id": n + 1, "image_id": int(r.img), "category_id": int(r.cat), "bbox": [r.x, r.y, r.w, r.h],
             "area": float(r.w * r.h), "iscrowd": 0}
            for n, r in enumerate(true.itertuples(index=False))
        ],
    }
    detections = [{"image_id": int(r.img), "category_id": int(r.cat), "bbox": [r.x, r.y, r.w, r.h],
                   "score": float(r.score)} for r in pred.itertuples(index=False)]
    # pycocotools narrates every stage on stdout; the caller only wants the numbers
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dataset
        gt.createIndex()
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = [int(i) for i in image_ids]
        ev.params.catIds = [int(c) for c in cat_ids]
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
    precision: np.ndarray = ev.eval["precision"]
    return precision


def _no_detection_precision(true: pd.DataFrame, params: Any) -> np.ndarray:
    """What COCOeval.accumulate gives a category with true boxes and no detection: precision 0 in every
    size bucket holding one of its true boxes (COCO bounds are inclusive), -1 (undefined) elsewhere."""
    areas = (true["w"] * true["h"]).to_numpy()
    out = np.full((len(params.iouThrs), len(params.recThrs), 1, len(params.areaRng), len(params.maxDets)), -1.0)
    for a, (lo, hi) in enumerate(params.areaRng):
        if ((areas >= lo) & (areas <= hi)).any():
            out[:, :, :, a, :] = 0.0
    return out


def _coco_ap(pred: pd.DataFrame, true: pd.DataFrame, agnostic: bool) -> dict[str, float]:
    """COCO AP numbers via pycocotools; NaN where COCO has nothing to average (no truth).

    Class-aware AP is computed one category at a time over the images that category occurs in, and the
    per-category precision arrays are averaged exactly as ``COCOeval.summarize`` does (categories without
    true boxes are undefined in COCO and left out either way). Same numbers, far fewer pycocotools calls.
    """
    from pycocotools.cocoeval import Params

    keys = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
    if true.empty:
        return dict.fromkeys(keys, math.nan)
    params = Params(iouType="bbox")
    if agnostic:
        parts = [_coco_precision(true, pred, use_cats=False) if len(pred) else
                 _no_detection_precision(true, params)]
    else:
        parts = []
        for cat, true_cat in true.groupby("cat", sort=True):
            pred_cat = pred[pred["cat"] == cat]
            parts.append(_coco_precision(true_cat, pred_cat, use_cats=True) if len(pred_cat) else
                         _no_detection_precision(true_cat, params))
    precision = np.concatenate(parts, axis=2)  # [T, R, K, A, M]
    m = list(params.maxDets).index(100)

    def summary(iou: float | None = None, area: int = 0) -> float:
        """COCOeval.summarize's mean precision at one IoU threshold (all when None) and size bucket."""
        p = precision[:, :, :, area, m]
        if iou is not None:
            p = p[np.isclose(params.iouThrs, iou)]
        p = p[p > -1]
        return float(p.mean()) if p.size else math.nan

    return {"AP": summary(), "AP50": summary(0.5), "AP75": summary(0.75), "AP_small": summary(area=1),
            "AP_medium": summary(area=2), "AP_large": summary(area=3)}


def _matched(pred: pd.DataFrame, true: pd.DataFrame, class_aware: bool) -> tuple[int, float, np.ndarray]:
    """(TP count, sum of TP IoUs, per-true-box matched flag in ``true`` order)."""
    tp, iou_sum = 0, 0.0
    hit = np.zeros(len(true), dtype=bool)
    # plain arrays sliced per image: pandas groupby/indexing per image costs ~1 ms each
    p_order = np.argsort(pred["img"].to_numpy(), kind="stable")
    p_img = pred["img"].to_numpy()[p_order]
    p_box = pred[["x", "y", "w", "h"]].to_numpy()[p_order]
    p_cat = pred["cat"].to_numpy()[p_order]
    t_order = np.argsort(true["img"].to_numpy(), kind="stable")
    t_img = true["img"].to_numpy()[t_order]
    t_box = true[["x", "y", "w", "h"]].to_numpy()[t_order]
    t_cat = true["cat"].to_numpy()[t_order]
    images, t_start = np.unique(t_img, return_index=True)
    t_end = np.append(t_start[1:], len(t_img))
    p_start, p_end = np.searchsorted(p_img, images, "left"), np.searchsorted(p_img, images, "right")
    for ts, te, ps, pe in zip(t_start, t_end, p_start, p_end):
        if pe == ps:
            continue
        matches = match_boxes(p_box[ps:pe], t_box[ts:te], MATCH_IOU, p_cat[ps:pe] if class_aware else None,
                              t_cat[ts:te] if class_aware else None)
        tp += len(matches.true)
        iou_sum += float(matches.iou.sum())
        hit[t_order[ts + matches.true]] = True
    return tp, iou_sum, hit


def _ratio(a: float, b: float) -> float:
    """a / b, NaN when b is 0 (an undefined ratio, e.g. precision without predictions)."""
    return float(a) / float(b) if b else math.nan


def evaluate(pred_boxes: pd.DataFrame, true_boxes: pd.DataFrame,
             images: Iterable[Hashable] | None = None) -> dict[str, float | int]:
    """Score ``pred_boxes`` against ``true_boxes`` (see the module docstring for every number).

    ``images``: optional ids of every image in the truth, including images with no true box (a prediction
    there is a false positive, not an unknown image). Rows whose box is all-NaN (a worker who drew nothing)
    are ignored as boxes. Undefined ratios (e.g. precision with no prediction) are NaN.
    """
    pred = _check_frame(pred_boxes, "predicted", with_score=True)
    true = _check_frame(true_boxes, "true", with_score=False)
    true_images = set(true["image_id"]) | set(images if images is not None else ())
    unknown = sorted({str(i) for i in set(pred["image_id"]) - true_images})
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise CrowdboxesError(f"predictions on {len(unknown)} image(s) absent from the truth: {shown}")
    box = ["x", "y", "w", "h"]
    pred = pred[pred[box].notna().all(axis=1)].reset_index(drop=True)
    true = true[true[box].notna().all(axis=1)].reset_index(drop=True)

    # integer ids for pycocotools; one mapping for both frames so equal values stay equal
    image_codes = {v: n + 1 for n, v in enumerate(sorted(true_images, key=str))}
    labels = sorted(set(pred["label"].astype(str)) | set(true["label"].astype(str)))
    label_codes = {v: n + 1 for n, v in enumerate(labels)}
    for frame in (pred, true):
        frame["img"] = frame["image_id"].map(image_codes).astype(int)
        frame["cat"] = frame["label"].astype(str).map(label_codes).astype(int)
    image_ids = sorted(image_codes.values())

    result = _coco_ap(pred, true, agnostic=False)
    agnostic = _coco_ap(pred, true, agnostic=True)
    result["AP_agnostic"], result["AP50_agnostic"] = agnostic["AP"], agnostic["AP50"]

    n_pred, n_true = len(pred), len(true)
    tp, iou_sum, hit = _matched(pred, true, class_aware=True)
    tp_a, iou_sum_a, _ = _matched(pred, true, class_aware=False)
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_true)
    result.update({
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * tp, n_pred + n_true),  # = 2PR / (P + R)
        "mean_iou": _ratio(iou_sum, tp),
        "mean_iou_penalized": _ratio(iou_sum, n_pred + n_true - tp),
        "precision_agnostic": _ratio(tp_a, n_pred),
        "recall_agnostic": _ratio(tp_a, n_true),
        "mean_iou_agnostic": _ratio(iou_sum_a, tp_a),
    })
    areas = (true["w"] * true["h"]).to_numpy()
    for name, mask in (("small", areas < SMALL_AREA), ("medium", (areas >= SMALL_AREA) & (areas <= LARGE_AREA)),
                       ("large", areas > LARGE_AREA)):
        result[f"recall_{name}"] = _ratio(hit[mask].sum(), mask.sum())
    result.update({"n_pred": n_pred, "n_true": n_true, "n_images": len(image_ids)})
    return {k: result[k] for k in METRIC_KEYS}


# ------------------------------------------------------------------------------------------------ CLI

def _load_coco(path: str, what: str) -> dict[str, Any]:
    """A JSON file that has COCO's ``images`` and ``annotations`` lists."""
    p = Path(path)
    coco = read_json(p, what)
    if not isinstance(coco, dict):
        raise CrowdboxesError(f"{p}: a JSON {type(coco).__name__}, not a COCO object")
    for key in ("images", "annotations"):
        if not isinstance(coco.get(key), list):
            raise CrowdboxesError(f"{p}: no {key!r} list (not a COCO file)")
    return coco


def _coco_frame(coco: dict[str, Any], path: str,
                key_of: Callable[[str], Hashable]) -> tuple[pd.DataFrame, list[Hashable]]:
    """(boxes keyed by ``key_of(file_name)``, keys of every image in the file)."""
    from crowdboxes.classes import CLASS_BY_ID

    names = {c.id: c.name for c in CLASS_BY_ID.values()}
    names.update({c["id"]: c["name"] for c in coco.get("categories", []) if "id" in c and "name" in c})
    keys = {}
    for n, image in enumerate(coco["images"]):
        if "id" not in image or "file_name" not in image:
            raise CrowdboxesError(f"{path}: images[{n}] lacks 'id' or 'file_name'")
        keys[image["id"]] = key_of(image["file_name"])
    rows = []
    for n, a in enumerate(coco["annotations"]):
        bbox = a.get("bbox")
        if a.get("image_id") not in keys:
            raise CrowdboxesError(f"{path}: annotations[{n}]: image_id {a.get('image_id')!r} is not in 'images'")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise CrowdboxesError(f"{path}: annotations[{n}]: 'bbox' must be [x, y, w, h], got {bbox!r}")
        if a.get("category_id") not in names:
            raise CrowdboxesError(f"{path}: annotations[{n}]: unknown category_id {a.get('category_id')!r}")
        rows.append({"image_id": keys[a["image_id"]], "label": names[a["category_id"]], "x": bbox[0],
                     "y": bbox[1], "w": bbox[2], "h": bbox[3], "score": a.get("score", 1.0)})
    return pd.DataFrame(rows, columns=list(BOX_COLUMNS) + ["score"]), list(keys.values())


def evaluate_coco_files(pred_path: str, truth_path: str,
                        label_map: Mapping[str, str] | str | Path | None = None) -> dict[str, float | int]:
    """Score two COCO files; images are matched by ``file_name`` (by base name when only that agrees).

    ``label_map``: ``{truth class: label value}`` (dict, JSON text or a JSON file path; see
    :func:`crowdboxes.toloka.fields.read_label_map`); predicted labels found among its values become their truth
    class, others stay as they are.
    """
    from crowdboxes.toloka.fields import inverse_label_map, read_label_map

    back = inverse_label_map(read_label_map(label_map))
    truth = _load_coco(truth_path, "truth")
    pred = _load_coco(pred_path, "predictions")
    truth_names = [im.get("file_name") for im in truth["images"]]
    exact = set(truth_names)
    base_count = pd.Series([Path(str(n)).name for n in truth_names]).value_counts()

    def pred_key(name: str) -> str:
        """The truth's file name for a predicted image's file name (itself when nothing fits)."""
        # exports often store bare file names while the truth keeps folders (or the reverse)
        if name in exact:
            return name
        base = Path(str(name)).name
        if base_count.get(base, 0) == 1:
            return str(next(n for n in truth_names if Path(str(n)).name == base))
        return name

    true_frame, true_keys = _coco_frame(truth, truth_path, lambda n: n)
    pred_frame, _ = _coco_frame(pred, pred_path, pred_key)
    if back:
        pred_frame["label"] = pred_frame["label"].map(lambda value: back.get(value, value))
    return evaluate(pred_frame, true_frame, images=true_keys)


def _format(value: float | int | None) -> str:
    """A metric for the table: integers as they are, NaN/None as ``n/a``, floats with three decimals."""
    if isinstance(value, int):
        return str(value)
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m crowdboxes evaluate`` command line."""
    from crowdboxes.cnvrg.stepkit import StepArgumentParser

    parser = StepArgumentParser(prog="python -m crowdboxes evaluate",
                                description="score a COCO file of boxes against a COCO ground truth")
    parser.add_argument("--pred", required=True, help="COCO JSON with the boxes to score (e.g. annotations.coco.json)")
    parser.add_argument("--truth", required=True, help="COCO JSON with the true boxes")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    parser.add_argument("--label-map", default=None,
                        help="JSON text or file {truth class: label value in the project's view}: predicted "
                             "labels are mapped back to the truth's classes")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m crowdboxes evaluate``: print the metrics as a table or as one JSON object."""
    args = build_parser().parse_args(argv)
    result = evaluate_coco_files(args.pred, args.truth, label_map=args.label_map)
    if args.json:
        # JSON has no NaN: undefined numbers become null
        print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}))
        return 0
    width = max(map(len, result))
    print(f"{'metric':<{width}}  value")
    for key, value in result.items():
        print(f"{key:<{width}}  {_format(value)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from crowdboxes.cnvrg.stepkit import run_step

    sys.exit(run_step(main))
