"""Box aggregation benchmark: quality and crowd cost of every method, plus speed and memory at 1M boxes.

Quality: for a fixed seed, a simulated crowd (``crowdboxes.local_toloka.crowd``: 40 workers, k drawers per
image, a share of spammers) draws on

* ``synth``: the truth of helper A's synthetic scenes (``python -m crowdboxes synth``, cached by seed/count);
* ``road``: the real box geometry of ``/work/shared/data/road-sign-detection`` (when present).

Every method runs in this process on the same answers and is scored with ``crowdboxes.evaluation.metrics.evaluate``.
``ceiling`` = share of true signs that at least one of the k drawers outlined (IoU >= 0.5, right label): an
upper bound on any aggregator's recall at IoU 0.5, hence on its AP50, for those drawings.
AP / AP50 use each method's full scored output (lean_em with ``min_score=0``, i.e. every candidate with its
posterior; wbf as packaged); precision, recall and mean IoU are taken at the operating point score >= 0.5
(for lean_em that is exactly its default output). Crowd cost per image = drawing assignments x (reward + 30 %
fee, at least $0.005) plus, for best_verified, the verification judgements (a suite of
``--verify-tasks-per-suite`` judgements costs one verification reward + fee).

best_verified follows the Toloka tutorial: the image's drawers are asked in turn; each drawing is judged by
``--verifiers`` other workers (``crowd.judge_outlines``) and the loop stops at the first drawing with a
majority OK, so it pays only for the drawings and judgements it used (at most k drawings).

``lean_em_adaptive`` rows replay Wait Pool's adaptive overlap (``--max_overlap``): every image starts with
2 drawings, and images whose LeanEM risk (expected box errors) is above 0.3 get one more, up to 5; its cost is
the mean number of drawings it paid for (``--adaptive``, ``--risk-threshold``).

``lean_em_rounds`` rows replay the rounds mode as Wait Pool runs it (``replay_rounds``): ``--rounds-drawers``
drawings per image (2), one more for the risky images up to ``--rounds-max-overlap`` (3), a missed-sign task (a new worker sees the current boxes and adds what is missing) for
the images LeanEM expects to have missed signs, and a per-box check for the boxes whose score is uncertain,
each round within its budget per image; the crowd's own noise models (``crowd.simulate_additions``,
``crowd.simulate_checks``: checker accuracy, bias toward "yes"). Money per image = Toloka's charges of every
drawing, missed-sign suite and check suite (``crowdboxes.toloka.pricing``), divided by the images.

Calibration: ``ECE`` is the expected calibration error of the ranked output (10 score bins; a box is right
when COCO's AP50 matching counts it, ``crowdboxes.evaluation.calibration``), ``tied`` the share of boxes
whose score equals another's. The verdict lines check issue #12's criteria: the rounds mode at no more than
60 % of the best 5-drawer baseline's money with at least its AP and AP50; lean_em's AP50 within 0.05 of
the ceiling; ECE <= 0.05; fewer than 1 % tied scores.

Speed: 100,000 images with about 10 answer boxes each (random sign geometry, 5 drawers, the same crowd model)
are aggregated by each fast method in a fresh child process; seconds and peak RSS against the targets
(30 s, 4 GB).

Modes: the rows of every annotation mode (overlap k=3/5, adaptive, verify, overlap+verify) on the local Toloka,
through the whole flow with Toloka's charges, come from ``bench_modes.py`` and are printed after the quality
table (``--skip-modes`` leaves them out).

Usage: ``python benchmarks/bench_aggregation.py`` (about 8-10 minutes on 2 cores, 5 of them the modes);
``--quick`` (small synth set, no road, modes --quick, speed at 200k boxes), ``--skip-speed``, ``--skip-modes``, ``--datasets synth``,
``--speed-boxes 1000000``, ``--synth-count 600``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crowdboxes.toloka.overlap import next_targets  # noqa: E402
from crowdboxes.toloka.pricing import assignment_price, check_price, missed_sign_price  # noqa: E402
from crowdboxes.aggregation import get_aggregator  # noqa: E402
from crowdboxes.evaluation.calibration import calibration  # noqa: E402
from crowdboxes.evaluation.metrics import evaluate  # noqa: E402
from crowdboxes.local_toloka import crowd  # noqa: E402
from crowdboxes.evaluation.truth import images_frame, load_coco, truth_boxes, voc_folder_to_coco  # noqa: E402

ROAD_DIR = Path("/work/shared/data/road-sign-detection")
SPAM_KINDS = ("spammer_empty", "spammer_random")
TARGET_SECONDS = 30.0
TARGET_RSS_GB = 4.0
# (row name, registry name, params); lean_em's ranked output = every candidate with its posterior
METHODS = (
    ("lean_em", "lean_em", {"min_score": 0.0}),
    ("iou_cluster", "iou_cluster", {}),
    ("wbf", "wbf", {}),
    ("wbf_agnostic", "wbf", {"class_aware": False}),
    ("best_verified", "best_verified", {}),
)
BASELINES = ("iou_cluster", "wbf", "wbf_agnostic", "best_verified")
# issue #12's criteria: the rounds mode at <= 60 % of the best 5-drawer baseline's money, calibrated scores
MONEY_SHARE, MAX_ECE, MAX_TIED, MAX_CEILING_GAP = 0.60, 0.05, 0.01, 0.05


def workforce(n: int, seed: int, spam: float) -> list:
    """The default crowd mix with ``spam`` of it replaced by the two spammer kinds (half each)."""
    base = {k: v for k, v in crowd.DEFAULT_MIX.items() if k not in SPAM_KINDS}
    total = sum(base.values())
    mix = {k: v / total * (1 - spam) for k, v in base.items()}
    mix.update({k: spam / len(SPAM_KINDS) for k in SPAM_KINDS})
    return crowd.make_workforce(n, seed, mix={k: v for k, v in mix.items() if v > 0})


def synth_truth(count: int, seed: int, cache: Path) -> dict:
    out = cache / f"synth-{seed}-{count}"
    coco_path = out / "truth.coco.json"
    if not coco_path.is_file():
        subprocess.run([sys.executable, "-m", "crowdboxes", "synth", "--count", str(count), "--seed", str(seed),
                        "--out", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return load_coco(coco_path)


def verify_loop(answers: pd.DataFrame, coco: dict, team: list, verifiers: int, seed: int
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Toloka's draw -> verify -> redraw loop over the k drawings each image already has.

    Returns the drawings used, their verification votes (image_id, worker=drawer, verdict) and counts.
    """
    rng = np.random.default_rng([seed, 0xBE57])
    truth = truth_boxes(coco)
    by_image = {k: g for k, g in truth.groupby("image_id", sort=False)}
    size = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    profiles = np.array(team, dtype=object)
    used_rows, votes = [], []
    n_draw = n_verify = 0
    for image_id, rows in answers.groupby("image_id", sort=False):
        true = by_image.get(image_id, truth.iloc[:0])[["x", "y", "w", "h", "label"]]
        width, height = size[image_id]
        drawers = list(dict.fromkeys(rows["assignment_id"]))
        taken = set(rows["worker"])
        for assignment in drawers:
            drawing = rows[rows["assignment_id"] == assignment]
            drawer = drawing["worker"].iloc[0]
            outlines = [tuple(r) for r in drawing[["x", "y", "w", "h", "label"]].dropna().itertuples(index=False)]
            n_draw += 1
            used_rows.append(drawing)
            pool = [p for p in profiles if p.worker_id not in taken]
            chosen = rng.choice(len(pool), size=min(verifiers, len(pool)), replace=False)
            ok = 0
            for c in chosen:
                verdict, _ = crowd.judge_outlines(pool[c], outlines, true, width, height, rng)
                votes.append((image_id, drawer, verdict))
                ok += verdict == "OK"
            n_verify += len(chosen)
            if ok * 2 > len(chosen):
                break
    verifications = pd.DataFrame(votes, columns=["image_id", "worker", "verdict"])
    return pd.concat(used_rows, ignore_index=True), verifications, {"drawings": n_draw, "judgements": n_verify}


def recall_ceiling(answers: pd.DataFrame, true: pd.DataFrame) -> float:
    """Share of true signs that at least one drawer outlined with IoU >= 0.5 and the right label: no
    aggregator of these drawings can recall more at AP50 (so AP50 <= this)."""
    from crowdboxes.geometry import iou_matrix

    drawn = dict(list(answers.dropna(subset=["x"]).groupby("image_id", sort=False)))
    found = 0
    for image_id, t in true.groupby("image_id", sort=False):
        d = drawn.get(image_id)
        if d is None:
            continue
        hit = iou_matrix(t[["x", "y", "w", "h"]].to_numpy(), d[["x", "y", "w", "h"]].to_numpy()) >= 0.5
        hit &= t["label"].to_numpy()[:, None] == d["label"].to_numpy()[None, :]
        found += int(hit.any(axis=1).sum())
    return found / max(len(true), 1)


def score(boxes: pd.DataFrame, true: pd.DataFrame, image_ids) -> dict:
    full = evaluate(boxes, true, images=image_ids)
    operating = evaluate(boxes[boxes["score"] >= 0.5], true, images=image_ids)
    calibrated = calibration(boxes, true)
    return {"AP": full["AP"], "AP50": full["AP50"], "recall": operating["recall"],
            "precision": operating["precision"], "mean_iou": operating["mean_iou"], "ECE": calibrated.ece,
            "tied": calibrated.tied_share}


def replay_adaptive(answers: pd.DataFrame, img: pd.DataFrame, start: int, most: int, threshold: float
                    ) -> tuple[pd.DataFrame, pd.Series]:
    """Wait Pool's adaptive overlap (``crowdboxes.toloka.overlap.next_targets``) replayed on simulated answers.

    ``answers`` hold ``most`` drawings per image in arrival order; every image starts with ``start`` of them,
    and each round reveals one more drawing of the images the rule raises (all images decide together, as
    when a live pool's first round completes). Returns the revealed answers and the final overlap per image.
    """
    first = answers.drop_duplicates("assignment_id")[["assignment_id", "image_id"]]
    rank = pd.Series(first.groupby("image_id").cumcount().to_numpy(), index=first["assignment_id"].to_numpy())
    answers = answers.assign(rank=answers["assignment_id"].map(rank).to_numpy())
    targets = pd.Series(start, index=img["image_id"].to_numpy())
    while True:
        revealed = answers[answers["rank"].to_numpy() < answers["image_id"].map(targets).to_numpy()]
        raised, _ = next_targets(revealed, img, targets, most, threshold)
        if raised.empty:
            return revealed, targets
        targets[raised.index] = raised


def round_prices(args) -> tuple[float, float, float]:
    """Toloka's charge for one drawing, one missed-sign task and one check, priced as Launch Pool prices the
    rounds' pools from the drawing reward (``crowdboxes.toloka.pricing``: by their time, in suites that
    clear the minimum fee)."""
    return (assignment_price(args.draw_reward), missed_sign_price(args.draw_reward).price_per_task,
            check_price(args.draw_reward, min_tasks_per_suite=args.checks_per_suite).price_per_task)


def replay_rounds(coco: dict, team: list, img: pd.DataFrame, args) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The rounds mode replayed as Wait Pool runs it (``crowdboxes.toloka.rounds``), on simulated answers.

    ``--rounds-drawers`` drawings per image, raised by adaptive overlap up to ``--rounds-max-overlap``
    (``replay_adaptive``, as Wait Pool's ``--max_overlap`` runs before the rounds); LeanEM; a missed-sign task for each image whose
    ``expected_missed`` is above ``--missed-threshold`` (most at risk first, within ``--missed-budget`` per
    image), drawn by a new worker who sees the current boxes (``crowd.simulate_additions``); LeanEM again;
    a check by ``--checkers`` workers of every box scored in [``--check-low``, ``--check-high``] (most
    uncertain first, within ``--check-budget`` per image; ``crowd.simulate_checks``: the checkers'
    accuracy and their bias toward "yes"); LeanEM with the checks. Returns the final boxes, every answer
    used, and the counts and money per image.
    """
    n_img = len(img)
    draw_cost, missed_cost, check_cost = round_prices(args)
    most = max(args.rounds_max_overlap or 0, args.rounds_drawers)
    first = crowd.simulate_answers(coco, team, most, args.seed).rename(columns={"worker_id": "worker"})
    drawings = args.rounds_drawers * n_img
    if most > args.rounds_drawers:  # adaptive overlap first, as Wait Pool runs it before the rounds
        first, targets = replay_adaptive(first, img, args.rounds_drawers, most, args.risk_threshold)
        first = first.drop(columns="rank")
        drawings = int(targets.sum())
    first = first.assign(round="drawing")
    drew = first.groupby("image_id")["worker"].agg(set).to_dict()
    model = get_aggregator("lean_em", min_score=0.01).fit(first, img)
    risk = model.images_["expected_missed"]
    wanted = risk[risk > args.missed_threshold].sort_values(ascending=False, kind="stable")
    n_missed = min(len(wanted), int(args.missed_budget * draw_cost * n_img / missed_cost + 1e-9))
    shown = model.boxes_[model.boxes_["score"] >= 0.5]
    answers = first
    if n_missed:
        # anyone may take a task (Toloka cannot keep one worker from one task); a drawer's additions are paid
        # and dropped, as Wait Pool drops them
        added = crowd.simulate_additions(coco, team, shown, list(wanted.index[:n_missed]), args.seed)
        added = added.rename(columns={"worker_id": "worker"})
        added = added[[w not in drew.get(i, set()) for i, w in zip(added["image_id"], added["worker"])]]
        answers = pd.concat([first, added], ignore_index=True)
        model = get_aggregator("lean_em", min_score=0.01).fit(answers, img)
    boxes = model.boxes_
    places = boxes.sort_values("score", ascending=False, kind="stable").drop_duplicates(["image_id", "x", "y", "w", "h"])
    band = places[(places["score"] >= args.check_low) & (places["score"] <= args.check_high)]  # one per place
    band = band.iloc[np.argsort(np.abs(band["score"].to_numpy() - 0.5), kind="stable")]
    n_boxes = min(len(band), int(args.check_budget * draw_cost * n_img / (check_cost * args.checkers) + 1e-9))
    band = band.iloc[:n_boxes].assign(box_id=[f"b{n}" for n in range(n_boxes)])
    checks = None
    if n_boxes:
        verdicts = crowd.simulate_checks(coco, team, band, args.checkers, args.seed)
        checks = verdicts.merge(band[["box_id", "x", "y", "w", "h", "label"]], on="box_id", how="left")
        checks = checks.rename(columns={"worker_id": "worker"})
        checks = checks[[w not in drew.get(i, set()) for i, w in zip(checks["image_id"], checks["worker"])]]
    final = get_aggregator("lean_em", min_score=0.01).fit(answers, img, checks=checks).boxes_
    cost = (drawings * draw_cost + n_missed * missed_cost
            + n_boxes * args.checkers * check_cost) / n_img
    return final, answers, {"cost_per_image": cost, "missed_tasks": n_missed / n_img,
                            "checks": n_boxes * args.checkers / n_img}


def quality(datasets: dict, drawers: list[int], spams: list[float], args) -> pd.DataFrame:
    draw_cost = assignment_price(args.draw_reward)
    judge_cost = assignment_price(args.verify_reward) / args.verify_tasks_per_suite
    rows = []
    for name, coco in datasets.items():
        true = truth_boxes(coco)
        images = images_frame(coco)
        image_ids = images["image_id"]
        img = images[["image_id", "width", "height"]]
        n_img = len(images)
        for spam in spams:
            team = workforce(args.workers, args.seed, spam)
            for k in drawers:
                raw = crowd.simulate_answers(coco, team, k, args.seed)
                answers = raw.rename(columns={"worker_id": "worker"})
                ceiling = recall_ceiling(answers, true)
                for row_name, method, params in METHODS:
                    extra = {}
                    if method == "best_verified":
                        used, verifications, counts = verify_loop(answers, coco, team, args.verifiers, args.seed)
                        data = used
                        extra["verifications"] = verifications
                        cost = (counts["drawings"] * draw_cost + counts["judgements"] * judge_cost) / n_img
                    else:
                        data = answers
                        cost = k * draw_cost
                    aggregator = get_aggregator(method, **params)
                    start = time.perf_counter()
                    boxes = aggregator.fit_predict(data, img, **extra)
                    seconds = time.perf_counter() - start
                    rows.append({"dataset": name, "drawers": k, "spammers": spam, "method": row_name,
                                 **score(boxes, true, image_ids), "ceiling": ceiling, "cost_per_image": cost,
                                 "s_per_100k": seconds / max(len(data), 1) * 1e5})
                print(f"  done {name} spammers={spam:.0%} drawers={k}", file=sys.stderr, flush=True)
            if args.adaptive:
                start, most = args.adaptive
                raw = crowd.simulate_answers(coco, team, most, args.seed)
                answers = raw.rename(columns={"worker_id": "worker"})
                begin = time.perf_counter()
                revealed, targets = replay_adaptive(answers, img, start, most, args.risk_threshold)
                boxes = get_aggregator("lean_em", min_score=0.0).fit_predict(revealed, img)
                seconds = time.perf_counter() - begin
                rows.append({"dataset": name, "drawers": f"{start}-{most}", "spammers": spam,
                             "method": "lean_em_adaptive", **score(boxes, true, image_ids),
                             "ceiling": recall_ceiling(revealed, true), "cost_per_image": targets.mean() * draw_cost,
                             "s_per_100k": seconds / max(len(revealed), 1) * 1e5, "mean_drawers": targets.mean()})
                print(f"  done {name} spammers={spam:.0%} adaptive {start}-{most}", file=sys.stderr, flush=True)
            if args.rounds:
                begin = time.perf_counter()
                boxes, used, counts = replay_rounds(coco, team, img, args)
                seconds = time.perf_counter() - begin
                drawn = (f"{args.rounds_drawers}-{args.rounds_max_overlap}" if args.rounds_max_overlap
                         else str(args.rounds_drawers))
                rows.append({"dataset": name, "drawers": f"{drawn}+r", "spammers": spam,
                             "method": "lean_em_rounds", **score(boxes, true, image_ids),
                             "ceiling": recall_ceiling(used, true), **counts,
                             "s_per_100k": seconds / max(len(used), 1) * 1e5})
                print(f"  done {name} spammers={spam:.0%} rounds", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def verdicts(table: pd.DataFrame) -> list[str]:
    lines, all_ok = [], True
    adaptive = table[table["method"] == "lean_em_adaptive"]
    rounds = table[table["method"] == "lean_em_rounds"]
    table = table[~table["method"].isin(["lean_em_adaptive", "lean_em_rounds"])]
    for (ds, spam), g in table.groupby(["dataset", "spammers"], sort=False):
        for k, gk in g.groupby("drawers"):
            ours = gk[gk["method"] == "lean_em"].iloc[0]
            base = gk[gk["method"].isin(BASELINES)]
            best_ap, best_ap50 = base["AP"].max(), base["AP50"].max()
            ok = ours["AP"] > best_ap and ours["AP50"] > best_ap50
            all_ok &= ok
            lines.append(f"{ds:6} spam {spam:4.0%} k={k}: lean_em AP {ours['AP']:.3f} vs best baseline "
                         f"{best_ap:.3f} ({ours['AP'] - best_ap:+.3f}); AP50 {ours['AP50']:.3f} vs {best_ap50:.3f} "
                         f"({ours['AP50'] - best_ap50:+.3f}) -> {'beats' if ok else 'DOES NOT beat'}")
        ks = sorted(g["drawers"].unique())
        if len(ks) >= 2:
            lo, hi = ks[0], ks[-1]
            ours = g[(g["method"] == "lean_em") & (g["drawers"] == lo)].iloc[0]
            parts = []
            for name in BASELINES:
                base = g[(g["method"] == name) & (g["drawers"] == hi)].iloc[0]
                ok = ours["AP"] >= base["AP"] and ours["AP50"] >= base["AP50"]
                all_ok &= ok
                parts.append(f"{name} {base['AP']:.3f}/{base['AP50']:.3f} {'ok' if ok else 'BELOW'}")
            lines.append(f"{ds:6} spam {spam:4.0%}: lean_em k={lo} AP/AP50 {ours['AP']:.3f}/{ours['AP50']:.3f} "
                         f"(AP50 ceiling of k={lo} drawings {ours['ceiling']:.3f}) vs k={hi}: " + "; ".join(parts))
        ours = adaptive[(adaptive["dataset"] == ds) & (adaptive["spammers"] == spam)]
        if len(ks) and not ours.empty:
            ours, hi = ours.iloc[0], ks[-1]
            at_hi = g[g["drawers"] == hi]
            base = at_hi[at_hi["method"].isin(BASELINES)]
            best = base.loc[base["AP50"].idxmax()]
            lean = at_hi[at_hi["method"] == "lean_em"].iloc[0]
            ok = ours["AP"] >= base["AP"].max() and ours["AP50"] >= base["AP50"].max()
            lines.append(
                f"{ds:6} spam {spam:4.0%}: lean_em adaptive {ours['drawers']} (mean {ours['mean_drawers']:.2f} drawers, "
                f"{ours['cost_per_image'] / lean['cost_per_image']:.0%} of k={hi}'s cost) AP/AP50 "
                f"{ours['AP']:.3f}/{ours['AP50']:.3f} vs best baseline at k={hi} ({best['method']}) "
                f"{base['AP'].max():.3f}/{base['AP50'].max():.3f} -> {'matches or beats' if ok else 'below'}; "
                f"lean_em k={hi} {lean['AP']:.3f}/{lean['AP50']:.3f}")
        ours = rounds[(rounds["dataset"] == ds) & (rounds["spammers"] == spam)]
        if len(ks) and not ours.empty:
            ours, hi = ours.iloc[0], ks[-1]
            base = g[(g["drawers"] == hi) & g["method"].isin(BASELINES)]
            best = base.loc[base["AP50"].idxmax()]  # the best baseline: its money is the yardstick
            best_ap, best_ap50 = base["AP"].max(), base["AP50"].max()
            share = ours["cost_per_image"] / best["cost_per_image"]
            ok = (ours["AP"] >= best_ap and ours["AP50"] >= best_ap50 and share <= MONEY_SHARE
                  and ours["ECE"] <= MAX_ECE and ours["tied"] < MAX_TIED)
            all_ok &= ok
            lines.append(
                f"{ds:6} spam {spam:4.0%}: lean_em rounds ({ours['drawers']}: {ours['missed_tasks']:.2f} missed-sign "
                f"tasks, {ours['checks']:.2f} checks per image; {share:.0%} of {best['method']} k={hi}'s money) "
                f"AP/AP50 {ours['AP']:.3f}/{ours['AP50']:.3f} vs the baselines' best {best_ap:.3f}/{best_ap50:.3f}, ECE "
                f"{ours['ECE']:.3f}, tied {ours['tied']:.1%} -> {'meets' if ok else 'DOES NOT meet'} "
                f"(>= AP and AP50, <= {MONEY_SHARE:.0%} of the money, ECE <= {MAX_ECE}, tied < {MAX_TIED:.0%})")
        lean = g[g["method"] == "lean_em"]
        for r in lean.itertuples(index=False):
            ok = r.ceiling - r.AP50 <= MAX_CEILING_GAP and r.ECE <= MAX_ECE and r.tied < MAX_TIED
            all_ok &= ok
            lines.append(f"{ds:6} spam {spam:4.0%} k={r.drawers}: lean_em AP50 {r.AP50:.3f} vs ceiling {r.ceiling:.3f} "
                         f"({r.AP50 - r.ceiling:+.3f}), ECE {r.ECE:.3f}, tied {r.tied:.1%} -> "
                         f"{'ok' if ok else 'NOT ok'} (within {MAX_CEILING_GAP} of the ceiling, ECE <= {MAX_ECE}, "
                         f"tied < {MAX_TIED:.0%})")
    lines.append("ALL QUALITY CRITERIA MET" if all_ok else "SOME QUALITY CRITERIA NOT MET")
    return lines


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table["dataset"].unique())
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
    markers = {3: "o", 5: "s"}
    for ax, ds in zip(axes[0], names):
        g = table[table["dataset"] == ds]
        for method, gm in g.groupby("method", sort=False):
            if method in ("lean_em_adaptive", "lean_em_rounds"):
                for label, r in gm.groupby("drawers").agg(AP=("AP", "mean"), cost=("cost_per_image", "mean")).iterrows():
                    ax.plot(r["cost"], r["AP"], "*" if method == "lean_em_adaptive" else "P", markersize=12,
                            label=f"{method.replace('_', ' ')} {label}")
                continue
            mean = gm.groupby("drawers").agg(AP=("AP", "mean"), cost=("cost_per_image", "mean"))
            line, = ax.plot(mean["cost"], mean["AP"], "-", label=method)
            for k, r in mean.iterrows():
                ax.plot(r["cost"], r["AP"], markers.get(k, "^"), color=line.get_color())
                ax.annotate(f"k={k}", (r["cost"], r["AP"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_title(f"{ds}: COCO AP vs crowd cost (mean over spammer shares)")
        ax.set_xlabel("crowd cost per image, USD")
        ax.set_ylabel("AP@[.5:.95]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ speed

def speed_answers(n_boxes: int, seed: int) -> pd.DataFrame:
    """About ``n_boxes`` answer rows: 5 drawers per image on ~2 random signs per image (crowd model)."""
    rng = np.random.default_rng(seed)
    n_img = max(1, n_boxes // 10)
    per = rng.poisson(1.2, n_img) + 1
    img_id = np.repeat(np.arange(n_img), per)
    side = np.exp(rng.uniform(np.log(14), np.log(140), len(img_id)))
    aspect = rng.uniform(0.8, 1.25, len(img_id))
    w, h = side * aspect, side / aspect
    x = rng.uniform(0, 800 - w)
    y = rng.uniform(0, 600 - h)
    labels = np.array(crowd.CLASS_NAMES)[rng.integers(0, len(crowd.CLASS_NAMES), len(img_id))]
    coco = {"images": [{"id": int(i), "file_name": f"{i}.jpg", "width": 800, "height": 600} for i in range(n_img)],
            "categories": [{"id": n + 1, "name": c} for n, c in enumerate(crowd.CLASS_NAMES)],
            "annotations": []}
    cat = {c: n + 1 for n, c in enumerate(crowd.CLASS_NAMES)}
    coco["annotations"] = [{"id": n, "image_id": int(i), "bbox": [float(a), float(b), float(c), float(d)],
                            "category_id": cat[lab]} for n, (i, a, b, c, d, lab) in
                           enumerate(zip(img_id, x, y, w, h, labels))]
    raw = crowd.simulate_answers(coco, workforce(40, seed, 0.1), 5, seed)
    return raw.rename(columns={"worker_id": "worker"})[["image_id", "worker", "x", "y", "w", "h", "label"]]


def speed_child(path: str, method: str) -> None:
    """Child process: load the answers, aggregate once, print seconds and peak RSS as JSON."""
    answers = pd.read_pickle(path)
    images = pd.DataFrame({"image_id": np.unique(answers["image_id"].to_numpy()), "width": 800, "height": 600})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    boxes = get_aggregator(method).fit_predict(answers, images)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_gb": peak / 1024 ** 2, "input_gb": before / 1024 ** 2,
                      "rows": len(answers), "boxes": int(answers["x"].notna().sum()), "out": len(boxes)}))


def speed(n_boxes: int, seed: int, methods: list[str]) -> pd.DataFrame:
    answers = speed_answers(n_boxes, seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "answers.pkl")
        answers.to_pickle(path)
        del answers
        for method in methods:
            out = subprocess.run([sys.executable, __file__, "--speed-child", path, method], capture_output=True,
                                 text=True, cwd=ROOT)
            if out.returncode:
                raise SystemExit(f"speed child for {method} failed: {out.stderr.strip().splitlines()[-1]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"method": method, "answer_rows": r["rows"], "boxes": r["boxes"], "output_boxes": r["out"],
                         "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"],
                         "x_target_time": r["seconds"] / TARGET_SECONDS,
                         "peak_rss_gb": r["peak_gb"], "x_target_rss": r["peak_gb"] / TARGET_RSS_GB,
                         "rss_before_fit_gb": r["input_gb"]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=40)
    parser.add_argument("--datasets", default="synth,road", help="comma list of synth, road")
    parser.add_argument("--synth-count", type=int, default=600)
    parser.add_argument("--drawers", default="3,5")
    parser.add_argument("--spammers", default="0,0.1,0.25")
    parser.add_argument("--verifiers", type=int, default=3)
    parser.add_argument("--adaptive", default="2,5",
                        help="start,max drawers of the adaptive-overlap rows (none: no such rows)")
    parser.add_argument("--risk-threshold", type=float, default=0.3, help="adaptive overlap's risk threshold")
    parser.add_argument("--rounds", default="on", help="on: rows of the rounds mode (lean_em_rounds); off: none")
    parser.add_argument("--rounds-drawers", type=int, default=2, help="rounds mode: drawers per image")
    parser.add_argument("--rounds-max-overlap", type=int, default=3,
                        help="rounds mode: adaptive overlap up to this many drawers before the rounds "
                             "(--risk-threshold), as Wait Pool's --max_overlap (0: none)")
    parser.add_argument("--missed-threshold", type=float, default=0.1,
                        help="rounds mode: expected missed signs above which an image gets a missed-sign task")
    parser.add_argument("--check-low", type=float, default=0.05, help="rounds mode: lowest score checked")
    parser.add_argument("--check-high", type=float, default=0.97, help="rounds mode: highest score checked")
    parser.add_argument("--checkers", type=int, default=1, help="rounds mode: checkers per box")
    parser.add_argument("--missed-budget", type=float, default=0.5,
                        help="rounds mode: the missed-sign round's budget per image, in drawings' money")
    parser.add_argument("--check-budget", type=float, default=0.5,
                        help="rounds mode: the check round's budget per image, in drawings' money")
    parser.add_argument("--checks-per-suite", type=int, default=10, help="as configs/box_check_pool.json")
    parser.add_argument("--draw-reward", type=float, default=0.01, help="USD per drawing assignment")
    parser.add_argument("--verify-reward", type=float, default=0.01, help="USD per verification suite")
    parser.add_argument("--verify-tasks-per-suite", type=int, default=10)
    parser.add_argument("--speed-boxes", type=int, default=1_000_000)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-modes", action="store_true", help="leave out bench_modes' rows (local Toloka)")
    parser.add_argument("--quick", action="store_true", help="150 synth scenes, no road, speed at 200k boxes")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "crowdboxes-bench-cache"))
    parser.add_argument("--plot", default=str(ROOT / "img" / "aggregation_ap_vs_cost.png"))
    parser.add_argument("--speed-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.speed_child:
        speed_child(*args.speed_child)
        return 0
    args.adaptive = None if args.adaptive == "none" else tuple(int(x) for x in args.adaptive.split(","))
    args.rounds = args.rounds == "on"
    if args.quick:
        args.synth_count, args.datasets, args.speed_boxes = 150, "synth", 200_000
    pd.set_option("display.width", 200)

    if not args.skip_quality:
        datasets = {}
        wanted = [d.strip() for d in args.datasets.split(",") if d.strip()]
        if "synth" in wanted:
            datasets["synth"] = synth_truth(args.synth_count, args.seed, Path(args.cache))
        if "road" in wanted:
            if ROAD_DIR.is_dir():
                datasets["road"] = voc_folder_to_coco(ROAD_DIR)
            else:
                print(f"(road skipped: {ROAD_DIR} absent)")
        drawers = [int(x) for x in args.drawers.split(",")]
        spams = [float(x) for x in args.spammers.split(",")]
        start = time.perf_counter()
        table = quality(datasets, drawers, spams, args)
        sizes = ", ".join(f"{n}: {len(c['images'])} images, {len(c['annotations'])} signs"
                          for n, c in datasets.items())
        print(f"\nQuality (seed {args.seed}; {sizes}; "
              f"{args.workers} workers; AP/AP50 on the full ranked output, P/R/mIoU at score >= 0.5; "
              f"{time.perf_counter() - start:.0f} s)")
        shown = table.copy()
        shown["spammers"] = (shown["spammers"] * 100).round().astype(int).astype(str) + "%"
        shown = shown.drop(columns=["mean_drawers", "missed_tasks", "checks"], errors="ignore")
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}",
                              formatters={"cost_per_image": "${:.4f}".format, "s_per_100k": "{:.2f}".format}))
        print()
        for line in verdicts(table):
            print(line)
        plot(table, Path(args.plot))
        print(f"wrote {args.plot}")

    if not args.skip_modes:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_modes

        print("\nModes on the local Toloka (bench_modes.py)", flush=True)
        bench_modes.main(["--quick"] if args.quick else [])

    if not args.skip_speed:
        res = speed(args.speed_boxes, args.seed, ["lean_em", "iou_cluster", "wbf"])
        print(f"\nSpeed and memory ({args.speed_boxes:,} target answer boxes, one fresh process per method; "
              f"targets {TARGET_SECONDS:.0f} s and {TARGET_RSS_GB:.0f} GB peak RSS)")
        print(res.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        load = os.getloadavg()[0]
        print(f"(wall seconds on a shared machine: 1-minute load average {load:.1f} on {os.cpu_count()} cores; "
              f"peak RSS includes the loaded answers frame, rss_before_fit_gb)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
