"""Box aggregation: every method on hand-computed cases (agreement, outliers, spammers, empty images, clipping,
bad rows, tie rules) plus the registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdboxes.aggregation import (METHODS, BestVerified, IoUClustering, LeanEM, WeightedBoxesFusion,
                                    get_aggregator)

COLS = ["image_id", "label", "x", "y", "w", "h"]
from helpers_aggregation import answers, images



def all_ok(frame: pd.DataFrame) -> pd.DataFrame:
    """Every drawing judged OK by 3 verifiers."""
    pairs = frame[["image_id", "worker"]].drop_duplicates()
    return pairs.assign(ok_votes=3, bad_votes=0)


def fit(method: str, data: pd.DataFrame, imgs: pd.DataFrame | None = None, **params):
    agg = get_aggregator(method, **params)
    if method == "best_verified":
        agg.fit(data, imgs, verifications=all_ok(data))
    else:
        agg.fit(data, imgs)
    return agg


PERFECT = answers([(t, w, *box, lab) for w in ("w1", "w2", "w3") for t, box, lab in
                   (("a", (10, 10, 20, 20), "stop"), ("a", (50, 40, 30, 25), "yield"),
                    ("b", (5, 60, 15, 15), "speed_limit"))])
EXPECTED = pd.DataFrame([("a", "stop", 10.0, 10.0, 20.0, 20.0), ("a", "yield", 50.0, 40.0, 30.0, 25.0),
                         ("b", "speed_limit", 5.0, 60.0, 15.0, 15.0)], columns=COLS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_perfect_agreement_returns_exactly_the_boxes(method):
    agg = fit(method, PERFECT, images("a", "b"))
    got = agg.boxes_.sort_values(["image_id", "x"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[COLS], EXPECTED, check_dtype=False)
    assert (got["score"] > 0.9).all() and (got["score"] <= 1.0).all()
    assert agg.problems_ == []
    if method != "best_verified":
        assert (got["support"] == 3).all()
    assert set(agg.skills_.index) == {"w1", "w2", "w3"}


@pytest.mark.parametrize("method", ["lean_em", "iou_cluster", "wbf"])
def test_one_outlier_worker_is_outvoted(method):
    # w3 puts its box somewhere else and calls it "yield": the two others win on place and on class
    data = answers([("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 12, 10, 20, 20, "stop"),
                    ("a", "w3", 60, 60, 20, 20, "yield"),
                    ("b", "w1", 10, 10, 20, 20, "stop"), ("b", "w2", 10, 10, 20, 20, "stop"),
                    ("b", "w3", 10, 10, 20, 20, "yield")])
    agg = fit(method, data, images("a", "b"), **({"min_score": 0.5} if method != "iou_cluster" else {}))
    got = agg.boxes_.sort_values("image_id").reset_index(drop=True)
    if method == "wbf":  # class-aware as packaged: the minority label survives as its own, weaker box
        got = got[got["score"] >= 0.5].reset_index(drop=True)
    assert got["image_id"].tolist() == ["a", "b"]
    assert got["label"].tolist() == ["stop", "stop"]
    assert got.loc[0, ["x", "y", "w", "h"]].tolist() == pytest.approx([11, 10, 20, 20], abs=0.01)


def test_iou_cluster_hand_case_mean_majority_and_score():
    data = answers([("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 14, 12, 20, 24, "stop"),
                    ("a", "w3", 12, 8, 22, 20, "yield"), ("a", "w4", None, None, None, None, None)])
    box = IoUClustering().fit_predict(data).iloc[0]
    # corners: x1 (10+14+12)/3=12, y1 (10+12+8)/3=10, x2 (30+34+34)/3=32.667, y2 (30+36+28)/3=31.333
    assert box[["x", "y", "w", "h"]].tolist() == pytest.approx([12, 10, 20.6667, 21.3333], abs=1e-3)
    assert box["label"] == "stop" and box["support"] == 3 and box["score"] == pytest.approx(0.75)


def test_iou_cluster_keeps_a_half_support_tie_and_drops_less():
    # 4 workers answered; object A drawn by 2 (2/4 = 0.5, kept), object B by 1 (dropped)
    data = answers([("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 10, 10, 20, 20, "stop"),
                    ("a", "w3", 60, 60, 20, 20, "stop"), ("a", "w4", None, None, None, None, None)])
    got = IoUClustering().fit_predict(data)
    assert got[["x", "y"]].values.tolist() == [[10, 10]] and got["score"].tolist() == [0.5]


def test_wbf_hand_case_running_mean_class_aware_and_agnostic():
    data = answers([("a", "w1", 0, 0, 10, 10, "stop"), ("a", "w2", 1, 0, 10, 10, "stop"),
                    ("a", "w3", 0, 0, 10, 10, "yield"), ("a", "w3", 30, 30, 10, 10, "stop")])
    aware = WeightedBoxesFusion().fit_predict(data).sort_values(["score", "x"], ascending=[False, True])
    # stop: w1 and w2 fuse (IoU 9/11 > 0.55) into (0.5, 0, 10, 10) with score min(2, 3)/3; the far box is
    # its own fused box (1/3); yield is fused on its own (1/3)
    assert aware[["label", "x", "y", "w", "h"]].values.tolist() == [
        ["stop", 0.5, 0, 10, 10], ["yield", 0, 0, 10, 10], ["stop", 30, 30, 10, 10]]
    assert aware["score"].tolist() == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    agnostic = WeightedBoxesFusion(class_aware=False).fit_predict(data).sort_values("x")
    assert agnostic[["label", "x"]].values.tolist() == [["stop", 1 / 3], ["stop", 30]]
    assert agnostic["score"].tolist() == pytest.approx([1.0, 1 / 3])
    assert agnostic["support"].tolist() == [3, 1]


def test_wbf_threshold_is_strict_and_against_the_running_fused_box():
    # IoU(A, B) = 0.6 (w 10 vs overlap 7.5 -> 75/125); with iou_thr 0.6 (strict) they stay apart
    data = answers([("a", "w1", 0, 0, 10, 10, "stop"), ("a", "w2", 2.5, 0, 10, 10, "stop")])
    assert len(WeightedBoxesFusion(iou_thr=0.6).fit_predict(data)) == 2
    assert len(WeightedBoxesFusion(iou_thr=0.59).fit_predict(data)) == 1


def test_best_verified_takes_the_drawing_with_most_ok_support():
    data = answers([("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 11, 11, 20, 20, "stop"),
                    ("a", "w2", 50, 50, 10, 10, "yield"), ("b", "w1", 5, 5, 10, 10, "stop"),
                    ("c", "w1", 5, 5, 10, 10, "stop")])
    votes = pd.DataFrame({"image_id": ["a", "a", "b", "c", "c"], "worker": ["w1", "w2", "w1", "w1", "w1"],
                          "ok_votes": [2, 3, 1, 1, 0], "bad_votes": [1, 0, 2, 0, 1]})
    agg = BestVerified().fit(data, verifications=votes)
    got = agg.boxes_.sort_values(["image_id", "x"])
    # a: w2 (3/3) beats w1 (2/3); b: the only drawing is BAD -> nothing; c: one OK vote, one BAD (tie, not OK)
    assert got[["image_id", "label", "x"]].values.tolist() == [["a", "stop", 11], ["a", "yield", 50]]
    assert got["score"].tolist() == [1.0, 1.0] and got["support"].tolist() == [1, 1]
    assert agg.skills_.to_dict() == pytest.approx({"w1": 4 / 8, "w2": 1.0})
    loose = BestVerified(require_ok=False).fit_predict(data, verifications=votes)
    assert sorted(loose["image_id"]) == ["a", "a", "b", "c"]


def test_best_verified_counts_single_verdict_rows_and_breaks_ties_by_input_order():
    data = answers([("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 30, 30, 20, 20, "stop")])
    votes = pd.DataFrame({"image_id": ["a"] * 4, "worker": ["w2", "w1", "w2", "w1"],
                          "verdict": ["OK", "OK", "OK", "OK"]})
    got = BestVerified().fit_predict(data, verifications=votes)
    assert got["x"].tolist() == [10]  # equal support and votes: w1's drawing comes first in the input
    with pytest.raises(ValueError, match="needs verifications"):
        BestVerified().fit(data)


def test_lean_em_spammer_skills_end_low_and_careful_high():
    rng = np.random.default_rng(0)
    rows = []
    for t in range(40):
        truth = [(rng.uniform(0, 300), rng.uniform(0, 200), s, s) for s in rng.uniform(20, 60, 2)]
        for w in ("good1", "good2", "good3", "good4"):
            for x, y, bw, bh in truth:
                if rng.random() < 0.9:  # 10 % misses
                    j = rng.normal(0, 1.0, 4)
                    rows.append((t, w, x + j[0], y + j[1], bw + j[2], bh + j[3], "stop"))
        rows.append((t, "empty", None, None, None, None, None))
        for _ in range(2):  # random boxes
            rows.append((t, "random", rng.uniform(0, 300), rng.uniform(0, 200), 30, 30, "yield"))
    agg = LeanEM().fit(answers(rows), images(*range(40), width=400, height=300))
    skills = agg.skills_
    assert skills[["good1", "good2", "good3", "good4"]].min() > 0.8
    assert skills["random"] < 0.3 and skills["empty"] < 0.3
    assert agg.workers_.loc["empty", "miss_rate"] > 0.8
    assert agg.workers_.loc["random", "fp_rate"] > 0.5
    assert agg.workers_.loc["good1", "miss_rate"] < 0.2
    # the 80 true signs are found, the spammer's boxes are not output
    assert len(agg.boxes_) == pytest.approx(80, abs=3)
    assert (agg.boxes_["label"] == "stop").all()


def test_lean_em_weights_precise_workers_more():
    rng = np.random.default_rng(1)
    rows, truth = [], {}
    for t in range(30):
        x, y = rng.uniform(0, 200, 2)
        truth[t] = np.array([x, y, 40.0, 40.0])
        for w, sd in (("p1", 0.3), ("p2", 0.3), ("sloppy", 5.0)):
            rows.append((t, w, *(truth[t] + rng.normal(0, sd, 4)), "stop"))
    data = answers(rows)
    ours = LeanEM(min_score=0.5).fit(data)
    mean = IoUClustering().fit_predict(data)
    err = lambda frame: np.mean([np.abs(r[["x", "y", "w", "h"]].to_numpy(float) - truth[r["image_id"]]).mean()
                                 for _, r in frame.iterrows()])
    assert len(ours.boxes_) == 30
    assert err(ours.boxes_) < 0.5 * err(mean)
    assert ours.workers_.loc["sloppy", "sigma"] > 3 * ours.workers_.loc["p1", "sigma"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_empty_images_stay_empty(method):
    data = answers([("a", w, None, None, None, None, None) for w in ("w1", "w2", "w3")]
                   + [("b", "w1", 10, 10, 20, 20, "stop"), ("b", "w2", 10, 10, 20, 20, "stop"),
                      ("b", "w3", None, None, None, None, None)])
    agg = fit(method, data, images("a", "b"))
    assert set(agg.boxes_["image_id"]) == {"b"} and agg.problems_ == []
    nothing = fit(method, data[data["image_id"] == "a"], images("a"))
    assert nothing.boxes_.empty and list(nothing.boxes_.columns) == ["image_id", "label", "x", "y", "w", "h",
                                                                      "score", "support"]
    assert nothing.skills_.isna().all() or method == "best_verified"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_boxes_outside_the_image_are_clipped(method):
    data = answers([(("a", w, -10, -5, 30, 25, "stop")) for w in ("w1", "w2", "w3")]
                   + [("a", "w1", 95, 90, 20, 20, "stop"), ("a", "w2", 95, 90, 20, 20, "stop"),
                      ("a", "w3", 95, 90, 20, 20, "stop"), ("a", "w1", 150, 150, 10, 10, "stop")])
    agg = fit(method, data, images("a"))
    got = agg.boxes_.sort_values("x")
    assert got[["x", "y", "w", "h"]].values.tolist() == [[0, 0, 20, 20], [95, 90, 5, 10]]
    assert agg.problems_ == [(6, "box outside the image")]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_bad_rows_are_reported_with_row_numbers_and_never_crash(method):
    data = answers([("a", "w1", 10, 10, 20, 20, "stop"),       # 0 fine
                    ("a", "w2", None, 10, 20, 20, "stop"),     # 1 NaN x
                    ("a", "w3", 10, 10, -20, 20, "stop"),      # 2 negative width
                    ("a", "w4", 10, 10, 20, 0, "stop"),        # 3 zero height
                    ("zz", "w1", 10, 10, 20, 20, "stop"),      # 4 unknown image
                    ("a", "w5", 10, 10, 20, 20, None),         # 5 no label
                    ("a", None, 10, 10, 20, 20, "stop"),       # 6 no worker
                    ("a", "w6", 10, 10, 20, 20, "stop")])      # 7 fine
    data.loc[3, "x"] = np.nan
    data.loc[3, ["y", "w", "h"]] = [np.nan, np.nan, np.nan]  # row 3 becomes a legal "drew nothing"
    data = pd.concat([data, answers([("a", "w7", 10, 10, 20, 0, "stop")])], ignore_index=True)  # 8 zero h
    data["x"] = data["x"].astype(object)
    data.loc[len(data)] = ["a", "w8", "ten", 10, 20, 20, "stop"]  # 9 non-numeric x
    agg = fit(method, data, images("a"))
    assert agg.problems_ == [(1, "NaN in x"), (2, "negative width or height"), (4, "unknown image id 'zz'"),
                             (5, "box without a label"), (6, "missing worker id"), (8, "zero-size box"),
                             (9, "non-numeric x")]
    assert agg.boxes_[["x", "y", "w", "h"]].values.tolist() == [[10, 10, 20, 20]]


def test_bad_rows_without_image_table_and_all_rows_bad():
    data = answers([("a", "w1", None, 1, 2, 3, "stop"), ("a", "w2", 1, 1, 0, 3, "stop")])
    for method in ("lean_em", "iou_cluster", "wbf"):
        agg = get_aggregator(method).fit(data)
        assert agg.boxes_.empty and [r for r, _ in agg.problems_] == [0, 1]


def test_missing_column_is_a_clear_error():
    with pytest.raises(ValueError, match="lack column.*label"):
        LeanEM().fit(PERFECT.drop(columns="label"))


def test_class_tie_goes_to_the_alphabetically_first_label():
    data = answers([("a", "w1", 10, 10, 20, 20, "yield"), ("a", "w2", 10, 10, 20, 20, "stop")])
    for method in ("lean_em", "iou_cluster"):
        got = get_aggregator(method, **({"min_score": 0.5} if method == "lean_em" else {})).fit_predict(data)
        assert got["label"].tolist() == ["stop"], method
    assert WeightedBoxesFusion(class_aware=False).fit_predict(data)["label"].tolist() == ["stop"]


def test_matching_takes_one_box_per_worker_and_the_earliest_on_equal_iou():
    # w2 drew two boxes equally close to w1's (IoU 0.6 each): the first row joins, the other stays alone
    data = answers([("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 15, 10, 20, 20, "stop"),
                    ("a", "w2", 5, 10, 20, 20, "stop")])
    got = IoUClustering(min_support=0).fit_predict(data).sort_values("score", ascending=False)
    assert got["support"].tolist() == [2, 1]
    assert got.iloc[0]["x"] == pytest.approx(12.5) and got.iloc[1]["x"] == 5


def test_lean_em_scores_rank_and_alternatives_only_below_half():
    data = answers([("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 10, 10, 20, 20, "stop"),
                    ("a", "w3", 10, 10, 20, 20, "yield"), ("a", "w1", 60, 60, 20, 20, "stop")])
    ranked = LeanEM(min_score=0.0).fit_predict(data)
    assert ranked["score"].is_monotonic_decreasing
    top = ranked.iloc[0]
    assert (top["label"], top["x"], top["support"]) == ("stop", 10, 3)
    alt = ranked[(ranked["label"] == "yield")]
    assert len(alt) == 1 and alt["score"].iloc[0] < 0.5
    operating = LeanEM(min_score=0.5).fit_predict(data)
    assert len(operating) == 1 and operating["label"].iloc[0] == "stop"
    default = LeanEM().fit_predict(data)  # min_score 0.01: every candidate, ranked
    assert len(default) == 3 and (default["score"] >= 0.01).all() and default["score"].is_unique


def test_lean_em_dawid_skene_labels_agree_on_a_clear_case():
    agg = LeanEM(label_method="dawid_skene").fit(PERFECT, images("a", "b"))
    assert sorted(agg.boxes_["label"]) == ["speed_limit", "stop", "yield"]
    with pytest.raises(ValueError, match="label_method"):
        LeanEM(label_method="vote")


def test_registry_names_and_errors():
    assert set(METHODS) == {"lean_em", "iou_cluster", "wbf", "best_verified"}
    assert isinstance(get_aggregator(), LeanEM)
    assert isinstance(get_aggregator("wbf", class_aware=False), WeightedBoxesFusion)
    with pytest.raises(ValueError, match="unknown aggregation method 'nope'; known: lean_em, iou_cluster"):
        get_aggregator("nope")
    with pytest.raises(ValueError, match="bad parameters for aggregation method 'iou_cluster'"):
        get_aggregator("iou_cluster", colour="red")


def test_candidate_pairs_match_a_brute_force_per_image_and_do_not_depend_on_chunking():
    from crowdboxes.aggregation.utils import candidate_pairs, prepare_answers
    from crowdboxes.geometry import iou_matrix

    rng = np.random.default_rng(3)
    rows = [(t, f"w{rng.integers(4)}", *rng.uniform(0, 50, 2), *rng.uniform(5, 30, 2), "stop")
            for t in range(60) for _ in range(rng.integers(0, 9))]
    prep = prepare_answers(answers(rows))
    expected = set()
    for g in range(prep.n_images):
        lo, hi = prep.offsets[g], prep.offsets[g + 1]
        m = iou_matrix(prep.boxes[lo:hi], prep.boxes[lo:hi])
        for a in range(lo, hi):
            for b in range(lo, hi):
                if a != b and prep.worker[a] != prep.worker[b] and m[a - lo, b - lo] >= 0.3:
                    expected.add((a, b))
    for chunk in (1, 50, 10_000_000):
        i, j, v = candidate_pairs(prep.offsets, prep.boxes, prep.worker, 0.3, chunk_pairs=chunk)
        assert set(zip(i.tolist(), j.tolist())) == expected and len(i) == len(expected)
        assert (v >= 0.3).all()
