"""Per-box checks folded into LeanEM (aggregation/checks.py) and the missed-sign round's silence rule, on
hand-computed cases.

Checker model used below: accuracy a = 0.85 (held fixed by a huge prior strength), yes_bias 2, so
P(v | s) = 0.85 for the true verdict; given T each wrong verdict has 0.15 / 3 = 0.05; given W, L or N "yes"
has 0.15 * 2 / 4 = 0.075 and each other wrong verdict 0.15 / 4 = 0.0375.
Prior of the checked box: p = 0.8, loose = 0.125, q(stop) = 6/7, so T = 0.8 * 0.875 * 6/7 = 0.6,
W = 0.1, L = 0.1, N = 0.2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers_aggregation import answers

from crowdboxes.aggregation import LeanEM
from crowdboxes.aggregation.checks import VERDICTS, confusion, fold_checks, state_posterior
from crowdboxes.aggregation.lean_em import _Evidence
from crowdboxes.aggregation.utils import cluster_boxes, first_round, prepare_answers

FIXED = 1e12  # prior strength that keeps the accuracy at its prior mean
PRIOR = np.array([[0.6, 0.1, 0.1, 0.2]])


def posterior(*verdicts: str) -> np.ndarray:
    n = len(verdicts)
    return state_posterior(PRIOR, np.zeros(n, dtype=np.int64), np.array([VERDICTS.index(v) for v in verdicts]),
                           np.arange(n), np.full(n, 0.85), yes_bias=2.0)[0]


def test_confusion_matrix_leans_to_yes():
    c = confusion(np.array([0.85]), 2.0)[0]
    assert c[0] == pytest.approx([0.85, 0.05, 0.05, 0.05])
    assert c[3] == pytest.approx([0.075, 0.0375, 0.0375, 0.85])
    assert c.sum(axis=1) == pytest.approx(np.ones(4))


@pytest.mark.parametrize("verdict, expected", [
    # yes: T .6*.85 = .51, W .1*.075, L .1*.075, N .2*.075 -> .51 / .54
    ("yes", [0.51 / 0.54, 0.0075 / 0.54, 0.0075 / 0.54, 0.015 / 0.54]),
    # no_sign: T .6*.05 = .03, W/L .1*.0375, N .2*.85 = .17 -> total .2075
    ("no_sign", [0.03 / 0.2075, 0.00375 / 0.2075, 0.00375 / 0.2075, 0.17 / 0.2075]),
    # loose: T .03, W .00375, L .085, N .0075 -> total .12625
    ("loose", [0.03 / 0.12625, 0.00375 / 0.12625, 0.085 / 0.12625, 0.0075 / 0.12625]),
    ("wrong_class", [0.03 / 0.12625, 0.085 / 0.12625, 0.00375 / 0.12625, 0.0075 / 0.12625]),
])
def test_one_checker(verdict, expected):
    assert posterior(verdict) == pytest.approx(expected)


def test_two_checkers_disagreeing():
    # yes and no_sign: T .6*.85*.05 = .0255, W = L = .1*.075*.0375, N .2*.075*.85 = .01275
    total = 0.0255 + 2 * 0.00028125 + 0.01275
    assert posterior("yes", "no_sign")[0] == pytest.approx(0.0255 / total)  # 0.6579
    assert posterior("yes", "no_sign")[3] == pytest.approx(0.01275 / total)


def one_candidate():
    """A prepared image with the labels parking, stop, yield and one candidate box (stop, the prior above)."""
    prep = prepare_answers(answers([("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 10, 10, 20, 20, "yield"),
                                    ("a", "w3", 10, 10, 20, 20, "parking")]))
    assert list(prep.label_names) == ["parking", "stop", "yield"]
    q = np.array([[0.05, 6 / 7, 1 - 0.05 - 6 / 7]])
    return prep, dict(obj_image=np.array([0]), obj_boxes=np.array([[10.0, 10.0, 20.0, 20.0]]), p=np.array([0.8]),
                      q=q, loose=np.array([0.125]), obj=np.array([0]), label=np.array([1]), score=np.array([0.6]))


def checks(*rows) -> pd.DataFrame:
    """rows: (image_id, x, y, label, worker, verdict, right_label), boxes 20 x 20."""
    frame = pd.DataFrame(rows, columns=["image_id", "x", "y", "label", "worker", "verdict", "right_label"])
    return frame.assign(w=20.0, h=20.0)


def test_fold_yes_sets_the_score_to_p_true():
    prep, arrays = one_candidate()
    folded = fold_checks(checks(("a", 11, 10, "stop", "c1", "yes", None)), prep, **arrays, strength=FIXED)
    assert folded.problems == []
    stop = folded.score[(folded.obj == 0) & (folded.label == 1)]
    assert stop == pytest.approx([0.51 / 0.54])
    assert folded.existence == pytest.approx([1 - 0.015 / 0.54])
    assert folded.checkers.loc["c1", "checks"] == 1


def test_wrong_class_with_right_label_moves_the_mass_to_that_class():
    prep, arrays = one_candidate()
    folded = fold_checks(checks(("a", 10, 10, "stop", "c1", "wrong_class", "yield")), prep, **arrays,
                         strength=FIXED)
    got = dict(zip(prep.label_names[folded.label], folded.score))
    p_w = 0.085 / 0.12625
    # other classes share P(W) by (q + 1e-3) times the checker: 0.85 for yield, 0.15 / (3 - 2) for parking
    yield_, parking = (1 - 0.05 - 6 / 7 + 1e-3) * 0.85, (0.05 + 1e-3) * 0.15
    assert got["stop"] == pytest.approx(0.03 / 0.12625)
    assert got["yield"] == pytest.approx(p_w * yield_ / (yield_ + parking))  # a new output box, 0.614
    assert "parking" not in got  # nobody output or named it


def test_checker_accuracy_is_estimated_from_agreement():
    prep = prepare_answers(answers([(f"i{k}", w, 10, 10, 20, 20, "stop") for k in range(20) for w in ("w1", "w2")]))
    n = 20
    sure_yes = dict(obj_image=np.arange(n), obj_boxes=np.tile([10.0, 10.0, 20.0, 20.0], (n, 1)),
                    p=np.where(np.arange(n) < 10, 0.99, 0.01), q=np.ones((n, 1)), loose=np.zeros(n),
                    obj=np.arange(n), label=np.zeros(n, dtype=np.int64), score=np.zeros(n))
    truthful = ["yes" if k < 10 else "no_sign" for k in range(n)]
    rows = [(f"i{k}", 10, 10, "stop", "good", v, None) for k, v in enumerate(truthful)]
    rows += [(f"i{k}", 10, 10, "stop", "bad", "no_sign" if v == "yes" else "yes", None) for k, v in enumerate(truthful)]
    folded = fold_checks(checks(*rows), prep, **sure_yes)
    acc = folded.checkers["accuracy"]
    assert acc["good"] > 0.85 > 0.5 > acc["bad"]


def test_unknown_box_and_bad_rows_are_skipped_and_counted():
    data = answers([("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 10, 10, 20, 20, "stop")])
    bad = checks(("a", 10, 10, "stop", "c1", "yes", None),  # used
                 ("a", 60, 60, "stop", "c1", "yes", None),  # no box there
                 ("zz", 10, 10, "stop", "c1", "yes", None),  # unknown image
                 ("a", 10, 10, "stop", "c1", "maybe", None))  # unknown verdict
    model = LeanEM().fit(data, checks=bad)
    assert model.checks_skipped_ == 3
    assert model.checks_problems_ == [(1, "no output box of its image matches it"),
                                      (2, "no output box of its image matches it"), (3, "unknown verdict 'maybe'")]
    assert model.problems_ == []
    assert model.boxes_["score"].iloc[0] > LeanEM().fit(data).boxes_["score"].iloc[0]  # one "yes" raised it
    with pytest.raises(ValueError, match="checks lack column"):
        LeanEM().fit(data, checks=bad.drop(columns="verdict"))


def test_missed_sign_worker_silence_counts_only_at_candidates_not_shown():
    rows = [("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 10, 10, 20, 20, "stop"),  # A: drawn by both
            ("a", "w1", 50, 50, 20, 20, "stop"),  # B: w1 alone
            ("a", "m1", 80, 10, 15, 15, "stop")]  # C: added in the missed-sign round
    data = answers(rows).assign(round=["drawing", "drawing", "drawing", "missed_signs"])
    prep = prepare_answers(data)
    cluster, nc = cluster_boxes(prep)
    obj_image = np.zeros(nc, dtype=np.int64)
    ev = _Evidence.build(prep, cluster, nc, obj_image)
    code = {w: prep.worker_names.get_loc(w) for w in ("w1", "w2", "m1")}
    miss, lam = np.zeros(3), np.zeros(3)
    for w, m, fp in (("w1", 0.2, 0.2), ("w2", 0.1, 0.4), ("m1", 0.3, 0.5)):
        miss[code[w]], lam[code[w]] = m, fp
    got = ev.logit(miss, lam, kappa=0.05, nu=2.0)
    by_x = {prep.boxes[np.flatnonzero(cluster == c)[0], 0]: got[c] for c in range(nc)}
    log = np.log
    assert list(ev.shown[[cluster[prep.boxes[:, 0] == x][0] for x in (10, 50, 80)]]) == [True, True, False]
    # A: both drew; m1 was shown A, so its silence is no evidence
    assert by_x[10] == pytest.approx(log(2) + log(0.8) + log(0.9) - log(0.2 + 0.4) - log(0.05))
    # B: w1 drew, w2 silent (m 0.1, no coincidence 0.95); m1 was shown B
    assert by_x[50] == pytest.approx(log(2) + log(0.8) + log(0.1) - log(0.2) - log(0.95))
    # C: not shown to anyone, so w1's and w2's silence counts
    assert by_x[80] == pytest.approx(log(2) + log(0.7) + log(0.2) + log(0.1) - log(0.5) - 2 * log(0.95))
    # the same rows as first-round drawings: m1's silence at B counts too
    plain = prepare_answers(answers(rows))
    cl, n = cluster_boxes(plain)
    ev_plain = _Evidence.build(plain, cl, n, np.zeros(n, dtype=np.int64))
    b = cl[plain.boxes[:, 0] == 50][0]
    assert ev_plain.logit(miss, lam, 0.05, 2.0)[b] == pytest.approx(by_x[50] + log(0.3) - log(0.95))


def test_missed_sign_round_keeps_images_risk_meaningful():
    first = answers([("a", w, 10, 10, 20, 20, "stop") for w in ("w1", "w2")] +
                    [("b", w, 10, 10, 20, 20, "stop") for w in ("w1", "w2")]).assign(round="drawing")
    before = LeanEM().fit(first).images_
    added = answers([("a", "m1", 60, 60, 20, 20, "stop"), ("b", "m1", None, None, None, None, None)])
    after_model = LeanEM().fit(pd.concat([first, added.assign(round="missed_signs")], ignore_index=True))
    after = after_model.images_
    assert (after["workers"] == 3).all()
    assert after.loc["b", "expected_missed"] < before.loc["b", "expected_missed"]  # one more searched
    # the shown box keeps (about) its score: m1's silence there is not a vote against it
    shown = after_model.boxes_[(after_model.boxes_["image_id"] == "b")]["score"].iloc[0]
    assert shown > 0.9


# ---- lazy "yes" and the misplaced share of the loose state (same checker and prior as above)

def test_a_lazy_checker_answers_yes_whatever_the_state():
    # pi = 0.2: given T, yes = 0.2 + 0.8 * 0.85 = 0.88, each other 0.8 * 0.05 = 0.04; given N, yes =
    # 0.2 + 0.8 * 0.075 = 0.26, no_sign 0.8 * 0.85 = 0.68, loose and wrong_class 0.8 * 0.0375 = 0.03
    c = confusion(np.array([0.85]), 2.0, lazy=np.array([0.2]))[0]
    assert c[0] == pytest.approx([0.88, 0.04, 0.04, 0.04])
    assert c[3] == pytest.approx([0.26, 0.03, 0.03, 0.68])
    assert c.sum(axis=1) == pytest.approx(np.ones(4))
    # one "yes": T .6 * .88 = .528, W = L = .1 * .26 = .026, N .2 * .26 = .052 -> .528 / .632 (0.835 < 0.944)
    got = state_posterior(PRIOR, np.zeros(1, dtype=np.int64), np.array([0]), np.array([0]), np.array([0.85]),
                          2.0, lazy=np.array([0.2]))[0]
    assert got == pytest.approx([0.528 / 0.632, 0.026 / 0.632, 0.026 / 0.632, 0.052 / 0.632])


def test_loose_verdict_on_a_box_that_may_be_a_sign_boxed_far_off():
    # phi = 0.5 (held): L = .8 * .125 + .2 * .5 = .2, N = .2 * .5 = .1; "loose": T .6 * .05 = .03,
    # W .1 * .0375 = .00375, L .2 * .85 = .17, N .1 * .0375 = .00375 -> total .2075
    prep, arrays = one_candidate()
    folded = fold_checks(checks(("a", 10, 10, "stop", "c1", "loose", None)), prep, **arrays, strength=FIXED,
                         misplaced_prior=0.5)
    stop = folded.score[(folded.obj == 0) & (folded.label == 1)]
    assert stop == pytest.approx([0.03 / 0.2075])  # 0.145; without phi 0.238 (test_one_checker)
    # existence: T + W + the real part of L (.1 of its .2 prior)
    assert folded.existence == pytest.approx([(0.03 + 0.00375 + 0.17 * 0.1 / 0.2) / 0.2075])
    assert folded.checkers.loc["c1", "lazy"] == 0.0


def test_a_checker_who_always_says_yes_is_found_lazy():
    n = 20
    prep = prepare_answers(answers([(f"i{k}", w, 10, 10, 20, 20, "stop") for k in range(n) for w in ("w1", "w2")]))
    half = dict(obj_image=np.arange(n), obj_boxes=np.tile([10.0, 10.0, 20.0, 20.0], (n, 1)),
                p=np.where(np.arange(n) < 10, 0.9, 0.1), q=np.ones((n, 1)), loose=np.zeros(n),
                obj=np.arange(n), label=np.zeros(n, dtype=np.int64), score=np.zeros(n))
    truthful = [(f"i{k}", 10, 10, "stop", "good", "yes" if k < 10 else "no_sign", None) for k in range(n)]
    yea = [(f"i{k}", 10, 10, "stop", "yea", "yes", None) for k in range(n)]
    folded = fold_checks(checks(*truthful, *yea), prep, **half, lazy_prior=0.1)
    lazy = folded.checkers["lazy"]
    assert lazy["yea"] > 0.5 > 0.1 > lazy["good"]
    # the boxes the truthful checker rejected stay unlikely despite the other's "yes"
    assert folded.score[folded.obj >= 10].max() < 0.05


# ---- what the missed-sign worker was shown

def test_first_round_part_keeps_the_codes():
    data = answers([("a", "w1", 10, 10, 20, 20, "stop"), ("a", "m1", 50, 50, 20, 20, "yield"),
                    ("b", "w1", None, None, None, None, None)]).assign(round=["drawing", "missed_signs", "drawing"])
    prep = prepare_answers(data)
    sub = first_round(prep)
    assert sub.n_boxes == 1 and list(sub.label_names) == ["stop", "yield"]
    assert list(sub.worker_names) == list(prep.worker_names) and list(sub.offsets) == [0, 1, 1]
    assert list(sub.n_seen) == [1, 1] and not sub.seen_later.any() and len(sub.later) == 1


def test_shown_boxes_are_those_the_first_round_model_kept_and_their_overlaps():
    rows = [("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 10, 10, 20, 20, "stop"),  # A: both (0.975)
            ("a", "w1", 60, 60, 20, 20, "stop"),  # B: w1 alone (0.547 in the first-round fit)
            ("a", "w2", 14, 14, 20, 20, "stop"),  # C: w2 alone (0.547) but IoU 256 / 544 = 0.47 with A
            ("a", "m1", 100, 100, 15, 15, "stop")]
    data = answers(rows).assign(round=["drawing"] * 4 + ["missed_signs"])
    prep = prepare_answers(data)
    corners = np.column_stack([prep.boxes[:, :2], prep.boxes[:, :2] + prep.boxes[:, 2:]])
    model = LeanEM(shown_min_score=0.6)
    model.n_iter_ = 0
    shown = model._shown_boxes(prep, corners)
    assert dict(zip(map(tuple, prep.boxes[:, :2]), shown)) == {
        (10, 10): True, (60, 60): False, (14, 14): True, (100, 100): False}
    assert LeanEM(shown_min_score=None)._shown_boxes(prep, corners) is None


def test_missed_sign_silence_counts_at_a_first_round_box_not_shown():
    rows = [("a", "w1", 10, 10, 20, 20, "stop"), ("a", "w2", 10, 10, 20, 20, "stop"),  # A: shown
            ("a", "w1", 50, 50, 20, 20, "stop"),  # B: w1 alone, not shown
            ("a", "m1", 80, 10, 15, 15, "stop")]
    prep = prepare_answers(answers(rows).assign(round=["drawing", "drawing", "drawing", "missed_signs"]))
    cluster, nc = cluster_boxes(prep)
    ev = _Evidence.build(prep, cluster, nc, np.zeros(nc, dtype=np.int64), shown_box=prep.boxes[:, 0] != 50)
    code = {w: prep.worker_names.get_loc(w) for w in ("w1", "w2", "m1")}
    miss, lam = np.zeros(3), np.zeros(3)
    for w, m, fp in (("w1", 0.2, 0.2), ("w2", 0.1, 0.4), ("m1", 0.3, 0.5)):
        miss[code[w]], lam[code[w]] = m, fp
    got = ev.logit(miss, lam, kappa=0.05, nu=2.0)
    b = cluster[prep.boxes[:, 0] == 50][0]
    log = np.log
    # w1 drew; w2 and m1 silent (m 0.1 and 0.3), two non-coincidences
    assert got[b] == pytest.approx(log(2) + log(0.8) + log(0.1) + log(0.3) - log(0.2) - 2 * log(0.95))
    a = cluster[prep.boxes[:, 0] == 10][0]
    assert got[a] == pytest.approx(log(2) + log(0.8) + log(0.9) - log(0.2 + 0.4) - log(0.05))
