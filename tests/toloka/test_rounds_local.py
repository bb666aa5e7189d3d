"""The rounds on the local Toloka, over real HTTP: both rounds end to end, a crash between task creation and
collection followed by a re-run, each round's budget cap, and a check answer for a box nobody output.

The server runs in this process on a :class:`ManualClock`; the crowd (helpers_rounds) is deterministic and moves only
when the rounds' injected ``sleep`` steps it, so nothing depends on wall-clock speed. The projects and pools
are made from configs/ (box_check_*.json, missed_signs_*.json) through toloka-kit, as Create Project and
Launch Pool make them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from crowdboxes.aggregation import LeanEM
from crowdboxes.artifacts import ANSWERS, CHECKS
from crowdboxes.errors import CrowdboxesError
from crowdboxes.toloka.collection.collector import AnswerCollector
from crowdboxes.toloka.collection.solutions import answers_frame
from crowdboxes.toloka.rounds import box_key
from crowdboxes.toloka.rounds.runner import Rounds, RoundSettings, round_pools
from crowdboxes.toloka.spending import money_spent
from helpers_rounds import Local, pool_from_config, project_from_config, start_local

N_IMAGES = 8
WIDTH, HEIGHT = 200.0, 100.0


@pytest.fixture()
def local(tmp_path):
    with start_local(tmp_path) as handle:
        yield handle


@dataclass
class Setup:
    images: pd.DataFrame
    tasks: pd.DataFrame
    drawings: pd.DataFrame
    pools: pd.DataFrame  # pool.csv's round rows
    drawing_pool: str


def detection_round(local: Local, tmp_path: Path, *, missed_budget=1.0, check_budget=1.0,
                    check_per_suite=2) -> Setup:
    """Draw every image twice in a detection pool and collect the drawings, as Wait Pool has them when its
    detection pool is done; create the round pools (pool.csv rows with ``estimated_cost`` = budget)."""
    from toloka.client import Task

    client = local.client
    detection = project_from_config(client, "detection_project.json")
    drawing_pool = pool_from_config(client, detection, None, overlap=2)
    urls = [f"http://127.0.0.1:9/rounds/im{i}.jpg" for i in range(N_IMAGES)]
    created = client.create_tasks([Task(pool_id=drawing_pool, input_values={"image": u}) for u in urls],
                                  allow_defaults=True, open_pool=True)
    images = pd.DataFrame({"image_id": [f"im{i}" for i in range(N_IMAGES)], "url": urls, "width": WIDTH,
                           "height": HEIGHT, "file_name": [f"im{i}.jpg" for i in range(N_IMAGES)],
                           "sha256": "0" * 64})
    by_url = {t.input_values["image"]: t.id for t in created.items.values()}
    tasks = pd.DataFrame({"task_id": [by_url[u] for u in urls], "pool_id": drawing_pool,
                          "image_id": images["image_id"], "url": urls})
    for _ in range(200):
        local.step(1)
        if client.get_pool(drawing_pool).status.value == "CLOSED":
            break
    collector = AnswerCollector(client, [drawing_pool], tmp_path / "detection", lag_seconds=0)
    collector.rescan()
    drawings, problems = answers_frame(collector.records(drawing_pool), tasks, images)
    assert problems == [] and drawings["image_id"].nunique() == N_IMAGES
    missed = pool_from_config(client, project_from_config(client, "missed_signs_project.json"),
                              "missed_signs_pool.json")
    check = pool_from_config(client, project_from_config(client, "box_check_project.json"), "box_check_pool.json",
                             per_suite=check_per_suite)
    pools = pd.DataFrame({"pool_id": [missed, check], "role": ["missed_signs", "box_check"],
                          "reward_per_assignment": [0.02, 0.02], "estimated_cost": [missed_budget, check_budget]})
    return Setup(images, tasks, drawings, pools, drawing_pool)


def rounds(local: Local, setup: Setup, out: Path, *, sleep=None, total_budget=None, **settings) -> Rounds:
    """The rounds over ``setup``; by default every image is at risk (threshold 0) and the boxes scored 0.01 to
    0.99 are checked; ``sleep`` lets the crowd work."""
    settings = {"missed_threshold": 0.0, "check_low": 0.01, "check_high": 0.99, "poll_seconds": 1.0,
                "lag_seconds": 0.0, **settings}
    return Rounds(local.client, round_pools(setup.pools), RoundSettings(**settings), images=setup.images,
                  tasks=setup.tasks, out=out, labels={"stop": "Stop", "yield": "Yield / give way"},
                  total_budget=total_budget, all_pool_ids=[setup.drawing_pool, *setup.pools["pool_id"]],
                  sleep=sleep or (lambda seconds: local.step()), clock=lambda: 0.0)


def pool_tasks(client, pool_id):
    return list(client.get_tasks(pool_id=pool_id))


def lean_em(answers: pd.DataFrame, images: pd.DataFrame) -> LeanEM:
    """The test's own LeanEM over answers.csv-like rows (not rejected), to say what should have been selected."""
    valid = answers[answers["status"] != "REJECTED"].rename(columns={"worker_id": "worker"})
    return LeanEM(min_score=0.01).fit(valid, images[["image_id", "width", "height"]])


# ------------------------------------------------------------------ the tests

def test_both_rounds_create_tasks_only_for_the_selected_images_and_boxes(local, tmp_path):
    setup = detection_round(local, tmp_path)
    # a threshold between the least and the most expected missed signs: some images are selected, not all
    risk = lean_em(setup.drawings, setup.images).images_
    threshold = float(risk["expected_missed"].min() + risk["expected_missed"].max()) / 2
    wanted = set(risk.index[risk["expected_missed"] > threshold])
    assert 0 < len(wanted) < N_IMAGES
    answers, summary = rounds(local, setup, tmp_path / "out", missed_threshold=threshold, check_low=0.01,
                              check_high=0.99).run(setup.drawings)
    missed_pool, check_pool = setup.pools["pool_id"]

    # missed signs: one task per image with expected_missed above the threshold
    made = {t.input_values["image_id"]: t for t in pool_tasks(local.client, missed_pool)}
    assert set(made) == wanted
    assert all(t.overlap == 1 for t in made.values())
    m = summary["missed_signs"]
    assert m["tasks_created"] == len(wanted) and m["skipped_for_budget"] == 0 and m["answers"] == len(wanted)

    # answers.csv: the drawings are round "drawing", the additions "missed_signs", none by a drawer of the image
    written = pd.read_csv(ANSWERS.path(tmp_path / "out"), dtype={"image_id": str, "worker_id": str})
    assert set(written["round"]) <= {"drawing", "missed_signs"}
    assert (written["round"] == "drawing").sum() == len(setup.drawings)
    added = written[written["round"] == "missed_signs"]
    drawers = setup.drawings.groupby("image_id")["worker_id"].agg(set)
    assert not any(w in drawers[i] for i, w in zip(added["image_id"], added["worker_id"]))
    by_drawers = sum(1 for a in local.client.get_assignments(pool_id=missed_pool)
                     if a.user_id in drawers[a.tasks[0].input_values["image_id"]]
                     for _ in (a.solutions[0].output_values["result"] or [None]))
    assert m["dropped_drawer_rows"] == by_drawers
    assert len(added) + by_drawers == sum(max(1, len(a.solutions[0].output_values["result"]))
                                          for a in local.client.get_assignments(pool_id=missed_pool))

    # checks: one task per place (its best-scored label) with score in [0.01, 0.99] after the missed-sign
    # round, and checks.csv
    model = lean_em(answers, setup.images)
    boxes = model.boxes_.sort_values("score", ascending=False, kind="stable")
    boxes = boxes.drop_duplicates(["image_id", "x", "y", "w", "h"])
    uncertain = boxes[(boxes["score"] >= 0.01) & (boxes["score"] <= 0.99)]
    wanted_boxes = {box_key(r.image_id, r.label, r.x, r.y, r.w, r.h) for r in uncertain.itertuples()}
    checks_made = [t.input_values for t in pool_tasks(local.client, check_pool)]
    assert {t["box_id"] for t in checks_made} == wanted_boxes and len(checks_made) == len(wanted_boxes)
    assert 0 < len(wanted_boxes)
    checks = pd.read_csv(CHECKS.path(tmp_path / "out"), dtype={"image_id": str, "right_label": str},
                         keep_default_na=False)
    assert list(checks.columns) == list(CHECKS.columns)
    c = summary["box_check"]
    # a check by a drawer of the image (4 workers here) is paid but not used: no independent evidence
    drawers = setup.drawings.groupby("image_id")["worker_id"].agg(set)
    by_drawers = sum(1 for a in local.client.get_assignments(pool_id=check_pool) for t in a.tasks
                     if a.user_id in drawers[t.input_values["image_id"]])
    assert c["dropped_drawer_checks"] == by_drawers and not any(w in drawers[i] for i, w in
                                                                 zip(checks["image_id"], checks["worker_id"]))
    assert set(checks["box_id"]) <= wanted_boxes and len(checks) + by_drawers == len(wanted_boxes)
    assert set(checks.loc[checks["label"] == "stop", "verdict"]) <= {"yes"}
    assert set(checks.loc[checks["verdict"] == "wrong_class", "right_label"]) <= {"stop"}
    assert c["tasks_created"] == len(wanted_boxes) and c["check_rows"] == len(checks) and c["unknown_box"] == 0
    assert c["spent_usd"] == pytest.approx(-(-len(wanted_boxes) // 2) * 0.026)  # suites of 2 at 0.02 + fee


def test_a_crash_between_creation_and_collection_then_a_rerun_creates_and_pays_nothing_twice(local, tmp_path):
    setup = detection_round(local, tmp_path)

    def crash(seconds):
        raise KeyboardInterrupt("crash")

    with pytest.raises(KeyboardInterrupt):
        rounds(local, setup, tmp_path / "first", sleep=crash).run(setup.drawings)
    missed_pool, check_pool = setup.pools["pool_id"]
    first = pool_tasks(local.client, missed_pool)
    assert first and pool_tasks(local.client, check_pool) == []  # crashed while waiting for the missed signs

    # a re-run into a fresh folder finds the tasks on Toloka, creates none of them again, and crashes in turn
    # once the check tasks are made, before any is answered
    def crash_in_the_checks(seconds):
        if pool_tasks(local.client, check_pool):
            raise KeyboardInterrupt("crash")
        local.step()

    with pytest.raises(KeyboardInterrupt):
        rounds(local, setup, tmp_path / "second", sleep=crash_in_the_checks).run(setup.drawings)
    assert len(pool_tasks(local.client, missed_pool)) == len(first)
    n_checks = len(pool_tasks(local.client, check_pool))
    assert n_checks and not list(local.client.get_assignments(pool_id=check_pool))

    # the third run, in the first run's folder, makes nothing new and collects everything
    _, summary = rounds(local, setup, tmp_path / "first").run(setup.drawings)
    m, c = summary["missed_signs"], summary["box_check"]
    assert m["tasks_created"] == 0 and m["tasks_already_there"] == len(first) == m["tasks_in_pool"]
    assert c["tasks_created"] == 0 and c["tasks_already_there"] == n_checks == c["tasks_in_pool"]
    assert len(pool_tasks(local.client, missed_pool)) == len(first) and m["answers"] == len(first)
    assert len(pool_tasks(local.client, check_pool)) == n_checks
    assert c["answers"] == n_checks == c["check_rows"] + c["dropped_drawer_checks"]
    spent = (m["spent_usd"], c["spent_usd"])

    # and once more, after everything was done: nothing new, nothing paid again, the same files
    answers_then = pd.read_csv(ANSWERS.path(tmp_path / "first"))
    _, again = rounds(local, setup, tmp_path / "third").run(setup.drawings)
    assert again["missed_signs"]["tasks_created"] == again["box_check"]["tasks_created"] == 0
    assert len(pool_tasks(local.client, check_pool)) == n_checks
    assert (again["missed_signs"]["spent_usd"], again["box_check"]["spent_usd"]) == spent
    pd.testing.assert_frame_equal(pd.read_csv(ANSWERS.path(tmp_path / "third")), answers_then)
    pd.testing.assert_frame_equal(pd.read_csv(CHECKS.path(tmp_path / "third")),
                                  pd.read_csv(CHECKS.path(tmp_path / "first")))


def test_each_rounds_budget_is_a_hard_cap_and_what_it_leaves_out_is_counted(local, tmp_path):
    # 0.02 + fee 0.006 = 0.026 per assignment: the missed-sign budget pays 2 tasks (1 per suite); the check
    # budget one suite of 2 boxes with 1 checker
    setup = detection_round(local, tmp_path, missed_budget=0.06, check_budget=0.05)
    _, summary = rounds(local, setup, tmp_path / "out", check_low=0.0, check_high=1.0).run(setup.drawings)
    missed_pool, check_pool = setup.pools["pool_id"]
    m, c = summary["missed_signs"], summary["box_check"]
    assert len(pool_tasks(local.client, missed_pool)) == m["tasks_created"] == 2
    assert m["skipped_for_budget"] == m["images_at_risk"] - 2 > 0
    assert m["spent_usd"] == pytest.approx(0.052) and m["spent_usd"] <= 0.06
    assert len(pool_tasks(local.client, check_pool)) == c["tasks_created"] == 2
    assert c["skipped_for_budget"] == c["boxes_uncertain"] - 2 > 0
    assert c["spent_usd"] == pytest.approx(0.026) and c["spent_usd"] <= 0.05
    # the selected ones are the most at risk: the missed-sign tasks went to the two top expected_missed images
    risk = lean_em(setup.drawings, setup.images).images_["expected_missed"].sort_values(ascending=False,
                                                                                        kind="stable")
    made = {t.input_values["image_id"] for t in pool_tasks(local.client, missed_pool)}
    assert made == set(risk.index[:2]) or risk.iloc[1] == risk.iloc[2]


def test_the_steps_budget_caps_the_rounds_after_what_the_other_pools_spent(local, tmp_path):
    from crowdboxes.toloka.spending import money_spent

    setup = detection_round(local, tmp_path)  # round budgets $1 each
    drawn = money_spent(local.client, [setup.drawing_pool])
    assert drawn == pytest.approx(2 * N_IMAGES * 0.026)
    # --budget leaves $0.06 after the drawings: two missed-sign tasks ($0.052), then nothing for the checks
    _, summary = rounds(local, setup, tmp_path / "out", total_budget=drawn + 0.06).run(setup.drawings)
    m, c = summary["missed_signs"], summary["box_check"]
    assert m["budget_usd"] == pytest.approx(0.06) and m["round_budget_usd"] == 1.0 and m["tasks_created"] == 2
    assert c["budget_usd"] == pytest.approx(0.008) and c["tasks_created"] == 0 and c["skipped_for_budget"] > 0
    assert money_spent(local.client, [setup.drawing_pool, *setup.pools["pool_id"]]) <= drawn + 0.06 + 1e-9


def test_a_check_answer_about_a_box_nobody_output_is_skipped_and_counted(local, tmp_path):
    from toloka.client import Task

    setup = detection_round(local, tmp_path)
    check_pool = setup.pools["pool_id"][1]
    stray = {"image": setup.images["url"][1], "image_id": "im1", "box_id": "0123456789abcdef", "label_text": "Stop",
             "box": [{"shape": "rectangle", "left": 0.0, "top": 0.0, "width": 0.05, "height": 0.05, "label": "stop"}]}
    local.client.create_tasks([Task(pool_id=check_pool, input_values=stray, overlap=1)], allow_defaults=False)
    _, summary = rounds(local, setup, tmp_path / "out", missed_threshold=None).run(setup.drawings)
    c = summary["box_check"]
    assert c["unknown_box"] == 1 and any("0123456789abcdef" in p for p in c["problems"])
    assert summary["missed_signs"] == {"pool_id": setup.pools["pool_id"][0], "off": "--missed_threshold none"}
    checks = pd.read_csv(CHECKS.path(tmp_path / "out"))
    assert "0123456789abcdef" not in set(checks["box_id"])
    assert len(checks) == c["check_rows"] == c["tasks_created"] - c["dropped_drawer_checks"]
    assert c["tasks_in_pool"] == c["tasks_created"] + 1


def test_the_deadline_ends_a_round_with_one_line_and_the_tasks_stay(local, tmp_path):
    setup = detection_round(local, tmp_path)
    run = rounds(local, setup, tmp_path / "out", deadline=0.0, sleep=lambda s: None)
    with pytest.raises(CrowdboxesError, match="timed out in round missed_signs") as err:
        run.run(setup.drawings)
    assert "\n" not in str(err.value) and pool_tasks(local.client, setup.pools["pool_id"][0])


def test_a_second_pass_with_other_thresholds_keeps_the_cap_despite_the_first_passs_partial_suite(local, tmp_path):
    # the check pool takes 3 tasks per suite at $0.026: a $0.05 budget pays one suite. A first run checks one
    # or two boxes (a partial suite, paid in full); a re-run with a wider band may add nothing: counted as
    # ceil(tasks / 3) suites the pool would still have room, but the new tasks would come in a second suite
    setup = detection_round(local, tmp_path, missed_budget=0.0, check_budget=0.05, check_per_suite=3)
    scores = lean_em(setup.drawings, setup.images).boxes_["score"]
    one = float(scores[(scores > 0.01) & (scores < 0.99)].iloc[0])
    _, first = rounds(local, setup, tmp_path / "first", check_low=one, check_high=one).run(setup.drawings)
    assert first["box_check"]["tasks_created"] in (1, 2)  # the premise: a partial suite
    _, second = rounds(local, setup, tmp_path / "second", check_low=0.0, check_high=1.0).run(setup.drawings)
    check_pool = setup.pools["pool_id"].iloc[1]
    assert second["box_check"]["tasks_created"] == 0 and second["box_check"]["skipped_for_budget"] > 0
    assert len(pool_tasks(local.client, check_pool)) == first["box_check"]["tasks_created"]
    assert money_spent(local.client, [check_pool]) <= 0.05
