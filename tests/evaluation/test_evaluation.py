"""evaluate() on hand-computed cases, and the ``python -m crowdboxes evaluate`` command."""

import json
import math

import pandas as pd
import pytest

from crowdboxes.evaluation.metrics import evaluate, main
from crowdboxes.cnvrg.stepkit import StepError

COLUMNS = ["image_id", "label", "x", "y", "w", "h"]

# two images, three signs of two classes, all medium/large (>= 32 px)
TRUTH = pd.DataFrame([
    ("a.jpg", "stop", 10, 10, 100, 100),
    ("a.jpg", "speed_limit", 300, 50, 60, 60),
    ("b.jpg", "stop", 20, 40, 80, 80),
], columns=COLUMNS)


def _pred(rows, scores=None):
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if scores is not None:
        frame["score"] = scores
    return frame


def _two_box_truth():
    return TRUTH[TRUTH.image_id == "a.jpg"].reset_index(drop=True)


def test_perfect_prediction_scores_one():
    r = evaluate(TRUTH.copy(), TRUTH)  # no score column: every score is 1
    for key in ("AP", "AP50", "AP75", "AP_agnostic", "precision", "recall", "recall_agnostic", "mean_iou", "f1",
                "mean_iou_penalized"):
        assert r[key] == pytest.approx(1.0), key
    assert (r["n_pred"], r["n_true"], r["n_images"]) == (3, 3, 2)


def test_box_shifted_to_iou_0_6_passes_ap50_not_ap75():
    # a 100x100 box shifted 25 px right: overlap 75*100, union 125*100 -> IoU 0.6 exactly
    truth = _pred([("a.jpg", "stop", 0, 0, 100, 100)])
    pred = _pred([("a.jpg", "stop", 25, 0, 100, 100)])
    r = evaluate(pred, truth)
    assert r["AP50"] == pytest.approx(1.0)
    assert r["AP75"] == pytest.approx(0.0)
    assert r["recall"] == 1.0 and r["precision"] == 1.0
    assert r["mean_iou"] == pytest.approx(0.6)


def test_ap_averages_over_ten_iou_thresholds():
    # shifted 24 px: IoU 76/124 = 0.613 clears the thresholds .50, .55, .60 and no other -> AP 3/10
    truth = _pred([("a.jpg", "stop", 0, 0, 100, 100)])
    pred = _pred([("a.jpg", "stop", 24, 0, 100, 100)])
    assert evaluate(pred, truth)["AP"] == pytest.approx(0.3)


def test_missed_box_halves_recall():
    truth = _two_box_truth()
    pred = truth.iloc[[0]].copy()
    r = evaluate(pred, truth)
    assert r["recall"] == pytest.approx(0.5)
    assert r["precision"] == pytest.approx(1.0)
    assert r["mean_iou"] == pytest.approx(1.0)
    assert r["mean_iou_penalized"] == pytest.approx(0.5)  # 1 / (TP 1 + FN 1)
    # the stop class is perfect, the speed-limit class has AP 0: mean over classes 0.5
    assert r["AP"] == pytest.approx(0.5)
    # class-agnostic: one of two boxes found at full precision -> AP 0.5 (101-point interpolation: 51/101)
    assert r["AP_agnostic"] == pytest.approx(51 / 101, abs=1e-6)


def test_low_score_false_positive_keeps_ap_but_lowers_precision():
    truth = _two_box_truth()
    pred = truth.copy()
    pred["score"] = 0.9
    fp = _pred([("a.jpg", "stop", 600, 300, 40, 40)], scores=[0.1])
    r = evaluate(pd.concat([pred, fp], ignore_index=True), truth)
    assert r["AP"] == pytest.approx(1.0)
    assert r["AP_agnostic"] == pytest.approx(1.0)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(1.0)


def test_high_score_false_positive_lowers_ap():
    truth = _two_box_truth()
    pred = truth.copy()
    pred["score"] = 0.5
    fp = _pred([("a.jpg", "stop", 600, 300, 40, 40)], scores=[0.9])
    assert evaluate(pd.concat([pred, fp], ignore_index=True), truth)["AP"] < 0.9


def test_class_mismatch_hits_class_aware_metrics_only():
    truth = _pred([("a.jpg", "stop", 10, 10, 100, 100)])
    pred = _pred([("a.jpg", "yield", 10, 10, 100, 100)])
    r = evaluate(pred, truth)
    assert r["AP"] == pytest.approx(0.0)
    assert r["AP_agnostic"] == pytest.approx(1.0)
    assert r["precision"] == 0.0 and r["recall"] == 0.0
    assert r["recall_agnostic"] == 1.0 and r["precision_agnostic"] == 1.0
    assert math.isnan(r["mean_iou"]) and r["mean_iou_agnostic"] == pytest.approx(1.0)


def test_image_without_predictions_counts_as_misses():
    pred = TRUTH[TRUTH.image_id == "a.jpg"].copy()
    r = evaluate(pred, TRUTH)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["precision"] == pytest.approx(1.0)
    assert r["n_images"] == 2


def test_no_predictions_at_all():
    r = evaluate(_pred([]), TRUTH)
    assert r["AP"] == 0.0 and r["recall"] == 0.0 and r["n_pred"] == 0
    assert math.isnan(r["precision"])


def test_prediction_on_unknown_image_is_an_error_naming_it():
    pred = pd.concat([TRUTH, _pred([("zzz.jpg", "stop", 1, 1, 10, 10)])], ignore_index=True)
    with pytest.raises(StepError, match="zzz.jpg"):
        evaluate(pred, TRUTH)


def test_prediction_on_truth_image_without_signs_is_a_false_positive():
    pred = pd.concat([TRUTH, _pred([("empty.jpg", "stop", 1, 1, 40, 40)])], ignore_index=True)
    r = evaluate(pred, TRUTH, images=["a.jpg", "b.jpg", "empty.jpg"])
    assert r["precision"] == pytest.approx(3 / 4)
    assert r["recall"] == pytest.approx(1.0)
    assert r["n_images"] == 3


def test_bad_number_names_row_and_field():
    pred = TRUTH.copy().astype({"w": object})
    pred.loc[1, "w"] = "wide"
    with pytest.raises(StepError, match=r"row 1, field 'w'"):
        evaluate(pred, TRUTH)


def test_duplicate_prediction_is_one_tp_one_fp():
    truth = _pred([("a.jpg", "stop", 10, 10, 100, 100)])
    pred = _pred([("a.jpg", "stop", 10, 10, 100, 100), ("a.jpg", "stop", 12, 10, 100, 100)])
    r = evaluate(pred, truth)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == 1.0


def test_recall_by_size_bucket():
    truth = _pred([("a.jpg", "stop", 0, 0, 20, 20), ("a.jpg", "stop", 100, 100, 50, 50),
                   ("a.jpg", "stop", 300, 300, 120, 120)])
    pred = truth.iloc[[1, 2]]
    r = evaluate(pred, truth)
    assert (r["recall_small"], r["recall_medium"], r["recall_large"]) == (0.0, 1.0, 1.0)


def _write_coco(path, boxes, file_names, with_scores=False, folder=""):
    from crowdboxes.classes import class_by_name, coco_categories

    ids = {name: n + 10 for n, name in enumerate(file_names)}
    coco = {"images": [{"id": i, "file_name": folder + name, "width": 640, "height": 480} for name, i in ids.items()],
            "categories": coco_categories(),
            "annotations": [{"id": n + 1, "image_id": ids[r.image_id], "category_id": class_by_name(r.label).id,
                             "bbox": [r.x, r.y, r.w, r.h], "area": r.w * r.h, "iscrowd": 0,
                             **({"score": 0.8} if with_scores else {})}
                            for n, r in enumerate(boxes.itertuples())]}
    path.write_text(json.dumps(coco))
    return path


def test_cli_matches_images_by_file_name(tmp_path, capsys):
    truth = _write_coco(tmp_path / "truth.json", TRUTH, ["a.jpg", "b.jpg", "c.jpg"], folder="scenes/")
    # the predictions list images in another order (other ids) and without the folder
    pred = _write_coco(tmp_path / "pred.json", TRUTH[TRUTH.image_id == "a.jpg"], ["c.jpg", "a.jpg"],
                       with_scores=True)
    assert main(["--pred", str(pred), "--truth", str(truth), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["recall"] == pytest.approx(2 / 3) and r["precision"] == 1.0
    assert r["n_images"] == 3 and r["n_true"] == 3
    assert main(["--pred", str(pred), "--truth", str(truth)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["metric", "value"]
    assert any(line.split() == ["recall", "0.667"] for line in table.splitlines())


def test_cli_missing_file_fails_with_one_line(tmp_path, capsys):
    from crowdboxes.cli import main as cli_main

    truth = _write_coco(tmp_path / "truth.json", TRUTH, ["a.jpg", "b.jpg"])
    code = cli_main(["evaluate", "--pred", str(tmp_path / "nope.json"), "--truth", str(truth)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope.json" in err[0]


def test_cli_json_that_is_not_an_object_is_named(tmp_path, capsys):
    from crowdboxes.evaluation.metrics import evaluate_coco_files

    truth = _write_coco(tmp_path / "truth.json", TRUTH, ["a.jpg", "b.jpg"])
    listed = tmp_path / "pred.json"
    listed.write_text("[]")
    with pytest.raises(StepError, match=r"pred.json: a JSON list, not a COCO object"):
        evaluate_coco_files(str(listed), str(truth))


def test_ap_equals_one_plain_pycocotools_run():
    """Per-category evaluation over each category's images gives COCO's own numbers (random case with
    misses, false positives on empty images, a class without truth and all size buckets)."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(7)
    labels = ["stop", "yield", "parking", "warning"]
    true_rows, pred_rows = [], []
    for image in range(60):
        for _ in range(rng.integers(0, 4)):
            side = float(np.exp(rng.uniform(np.log(12), np.log(150))))
            box = [float(rng.uniform(0, 400)), float(rng.uniform(0, 300)), side, side * rng.uniform(0.8, 1.2)]
            label = labels[rng.integers(0, 3)]  # "warning" never occurs in the truth
            true_rows.append((image, label, *box))
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.08 * side, 4)
                pred_label = label if rng.random() < 0.85 else labels[rng.integers(0, 4)]
                pred_rows.append((image, pred_label, *(np.array(box) + jitter), float(rng.random())))
        for _ in range(rng.poisson(0.5)):
            pred_rows.append((image, labels[rng.integers(0, 4)], *rng.uniform(0, 300, 2), 20.0, 20.0,
                              float(rng.random())))
    truth = pd.DataFrame(true_rows, columns=COLUMNS)
    pred = pd.DataFrame(pred_rows, columns=COLUMNS + ["score"])

    def plain(use_cats):
        code = {name: i + 1 for i, name in enumerate(labels)}
        gt = COCO()
        gt.dataset = {"images": [{"id": i} for i in range(60)],
                      "categories": [{"id": c, "name": n} for n, c in code.items()],
                      "annotations": [{"id": n + 1, "image_id": r.image_id, "category_id": code[r.label],
                                       "bbox": [r.x, r.y, r.w, r.h], "area": r.w * r.h, "iscrowd": 0}
                                      for n, r in enumerate(truth.itertuples())]}
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            dt = gt.loadRes([{"image_id": r.image_id, "category_id": code[r.label], "bbox": [r.x, r.y, r.w, r.h],
                              "score": r.score} for r in pred.itertuples()])
            ev = COCOeval(gt, dt, "bbox")
            ev.params.useCats = use_cats
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev.stats

    r = evaluate(pred, truth, images=list(range(60)))
    stats = plain(1)
    for key, index in (("AP", 0), ("AP50", 1), ("AP75", 2), ("AP_small", 3), ("AP_medium", 4), ("AP_large", 5)):
        assert r[key] == pytest.approx(stats[index], abs=1e-12), key
    assert r["AP_agnostic"] == pytest.approx(plain(0)[0], abs=1e-12)
    assert 0.2 < r["AP"] < 0.9  # a non-trivial case


def test_rows_without_a_box_are_not_predictions():
    # answers.csv style: a worker who drew nothing leaves a row with empty label and box
    pred = pd.concat([TRUTH, pd.DataFrame([("b.jpg", None, None, None, None, None)], columns=COLUMNS)],
                     ignore_index=True)
    r = evaluate(pred, TRUTH)
    assert r["n_pred"] == 3 and r["precision"] == 1.0 and r["AP"] == pytest.approx(1.0)
