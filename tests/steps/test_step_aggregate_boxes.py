"""Aggregate Boxes run as cnvrg runs it: a subprocess with string params, CSVs in, CSVs out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from crowdboxes.steps.aggregate_boxes import resolve_method, verifications_path

HEADER = "assignment_id,task_id,image_id,worker_id,status,submitted_at,label,x,y,w,h\n"
ONE_IMAGE = "image_id,file_name,url,width,height,sha256\na,a.jpg,http://x/a.jpg,100,100,s1\n"
TWO_IMAGES = ONE_IMAGE + "b,b.jpg,http://x/b.jpg,200,100,s2\n"


def _inputs(tmp_path: Path, answers: str, images: str | None, images_csv: Path | None = None) -> list[str]:
    (tmp_path / "answers.csv").write_text(answers)
    (tmp_path / "images.csv").write_text(images or TWO_IMAGES)
    return ["--answers_csv", str(tmp_path / "answers.csv"), "--images_csv", str(images_csv or tmp_path / "images.csv"),
            "--output_dir", str(tmp_path / "out")]


@pytest.fixture()
def run(tmp_path, run_step):
    """The step as cnvrg runs it: a subprocess with string params; returns (process, output folder)."""
    def go(answers: str, *extra: str, images: str | None = None):
        proc = run_step("aggregate_boxes.py", [*_inputs(tmp_path, answers, images), *extra], os.environ,
                        timeout=60, cwd=tmp_path)
        return proc, tmp_path / "out"
    return go


@pytest.fixture()
def run_in_process(tmp_path, run_step_in_process):
    """The step's main in this process (error paths: no need to pay for a new interpreter each time)."""
    def go(answers: str, *extra: str, images_csv: Path | None = None):
        proc = run_step_in_process("aggregate_boxes.py", [*_inputs(tmp_path, answers, ONE_IMAGE, images_csv), *extra])
        return proc.returncode, proc.stdout, proc.stderr
    return go


ANSWERS = HEADER + "".join([
    # image a: three workers agree on a stop sign; w4's answer was rejected and must not count
    "as1,t1,a,w1,ACCEPTED,2026-11-23T09:00:00Z,stop,10,10,20,20\n",
    "as2,t1,a,w2,SUBMITTED,2026-11-23T09:00:01Z,stop,12,10,20,20\n",
    "as3,t1,a,w3,ACCEPTED,2026-11-23T09:00:02Z,yield,11,10,20,20\n",
    "as4,t1,a,w4,REJECTED,2026-11-23T09:00:03Z,stop,60,60,30,30\n",
    # image b: w1 drew nothing, w2 drew a box outside the image (skipped with a warning), w3 drew nothing
    "as5,t2,b,w1,ACCEPTED,2026-11-23T09:00:04Z,,,,,\n",
    "as6,t2,b,w2,ACCEPTED,2026-11-23T09:00:05Z,parking,500,500,10,10\n",
    "as7,t2,b,w3,ACCEPTED,2026-11-23T09:00:06Z,,,,,\n",
])


def test_iou_cluster_boxes_and_workers(run):
    proc, out = run(ANSWERS, "--method", "iou_cluster")
    assert proc.returncode == 0, proc.stderr
    boxes = pd.read_csv(out / "boxes.csv")
    assert list(boxes.columns) == ["image_id", "label", "x", "y", "w", "h", "score", "support"]
    # the mean of the three corners: x = (10+12+11)/3 = 11; the rejected box at (60,60) is ignored
    assert boxes.values.tolist() == [["a", "stop", 11.0, 10.0, 20.0, 20.0, 1.0, 3]]
    workers = pd.read_csv(out / "workers.csv").set_index("worker_id")
    assert list(workers.columns[:2]) == ["answers", "skill"]
    assert workers.loc["w1", "answers"] == 2 and workers.loc["w1", "boxes"] == 1
    assert workers.loc["w1", "empty_answers"] == 1
    assert workers.loc["w4", "answers"] == 0 and workers.loc["w4", "rejected_assignments"] == 1
    assert pd.isna(workers.loc["w4", "skill"])
    assert workers.loc["w1", "skill"] == pytest.approx(1.0)
    # line 7 of answers.csv (as6) is the box outside image b: reported, not fatal
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "answers.csv line 7:" in warnings[0]
    assert "cnvrg_tag_boxes: 1" in proc.stdout and "cnvrg_tag_problem_rows: 1" in proc.stdout


def test_unknown_method_lists_valid_names(run):
    proc, out = run(ANSWERS, "--method", "magic")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "magic" in lines[0] and "iou_cluster" in lines[0]
    assert not (out / "boxes.csv").exists()


@pytest.mark.parametrize("answers, message", [
    (HEADER.replace(",status", "") + "as1,t1,a,w1,2026,stop,1,1,2,2\n", "missing column(s) status"),
    (HEADER + "as1,t1,a,w1,ACCEPTED,2026,stop,1,one,2,2\n", "row 2, field 'y': 'one' is not a number"),
    (HEADER + "as1,t1,a,w1,ACCEPTED,2026,stop,1,1,2,2\nas1,t1,a,w1,DONE,2026,stop,1,1,2,2\n",
     "row 3, field 'status': 'DONE'"),
])
def test_bad_answers_fail_with_one_line(tmp_path, answers, message, run_in_process):
    code, _, err = run_in_process(answers, "--method", "iou_cluster")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / "out" / "boxes.csv").exists()


def test_missing_images_file_is_named(tmp_path, run_in_process):
    code, _, err = run_in_process(ANSWERS, "--method", "iou_cluster",
                                  images_csv=tmp_path / "nope.csv")
    assert code == 2 and err.strip().splitlines() == [f"error: input file {tmp_path / 'nope.csv'} does not exist"]


def test_nothing_drawn_anywhere_gives_empty_boxes(tmp_path, run_in_process):
    answers = HEADER + "as1,t1,a,w1,ACCEPTED,2026,,,,,\nas2,t1,a,w2,ACCEPTED,2026,,,,,\n"
    code, out_text, err = run_in_process(answers, "--method", "iou_cluster")
    assert code == 0, err
    assert pd.read_csv(tmp_path / "out" / "boxes.csv").empty
    workers = pd.read_csv(tmp_path / "out" / "workers.csv")
    assert workers["answers"].tolist() == [1, 1] and workers["empty_answers"].tolist() == [1, 1]
    assert "cnvrg_tag_boxes: 0" in out_text


def test_aggregator_worker_estimates_become_extra_columns(tmp_path, monkeypatch, run_in_process):
    """An aggregator with a ``workers_`` frame (lean_em has one) adds its columns to workers.csv."""
    import crowdboxes.aggregation as aggregation
    from crowdboxes.aggregation import IoUClustering

    class WithWorkerModel(IoUClustering):
        def _fit_prepared(self, prep):
            super()._fit_prepared(prep)
            self.workers_ = pd.DataFrame({"miss_rate": [0.25] * prep.n_workers, "boxes": 99, "images": 7},
                                         index=prep.worker_names).rename_axis("worker")

    monkeypatch.setitem(aggregation.METHODS, "with_model", WithWorkerModel)
    code, _, err = run_in_process(ANSWERS, "--method", "with_model")
    assert code == 0, err
    workers = pd.read_csv(tmp_path / "out" / "workers.csv").set_index("worker_id")
    assert list(workers.columns) == ["answers", "skill", "boxes", "empty_answers", "rejected_assignments",
                                     "miss_rate"]
    assert workers.loc["w1", "boxes"] == 1 and workers.loc["w1", "miss_rate"] == 0.25  # ours win on a clash
    assert pd.isna(workers.loc["w4", "miss_rate"])  # only rejected answers: the model never saw w4


def test_best_verified_takes_the_verdicts_beside_answers_csv(tmp_path, run_in_process):
    answers = HEADER + "".join([
        "d1,t1,a,w1,ACCEPTED,2026,stop,10,10,20,20\n",
        "d1,t1,a,w1,ACCEPTED,2026,yield,50,50,10,10\n",
        "d2,t1,a,w2,ACCEPTED,2026,stop,12,12,30,30\n",
    ])
    code, _, err = run_in_process(answers, "--method", "best_verified")
    assert code == 2 and "needs the verification verdicts" in err and "verifications.csv does not exist" in err
    # worker_id in verifications.csv is the drawer; w1's drawing got 3 OK of 3, w2's 1 OK of 3
    (tmp_path / "verifications.csv").write_text(
        "image_id,assignment_id,worker_id,verdict,ok_votes,bad_votes,attempt,outcome,kind\n"
        "a,d1,w1,OK,3,0,1,accepted,verify\n"
        "a,d2,w2,BAD,1,2,1,rejected_final,verify\n"
        "a,d3,w9,OK,0,0,1,accepted,control\n")
    code, _, err = run_in_process(answers, "--method", "best_verified")
    assert code == 0, err
    boxes = pd.read_csv(tmp_path / "out" / "boxes.csv")
    assert sorted(boxes[["label", "x", "y", "w", "h", "score", "support"]].values.tolist()) == [
        ["stop", 10.0, 10.0, 20.0, 20.0, 1.0, 1], ["yield", 50.0, 50.0, 10.0, 10.0, 1.0, 1]]


def test_auto_method_takes_best_verified_after_mode_verify_and_lean_em_otherwise(tmp_path, run_in_process):
    answers = HEADER + "".join([
        "d1,t1,a,w1,ACCEPTED,2026,stop,10,10,20,20\n",
        "d2,t1,a,w2,REJECTED,2026,yield,50,50,10,10\n",
    ])
    (tmp_path / "verifications.csv").write_text(
        "image_id,assignment_id,worker_id,verdict,ok_votes,bad_votes,attempt,outcome\n"
        "a,d1,w1,OK,2,1,1,accepted\n"
        "a,d2,w2,BAD,0,3,1,rejected\n")
    expected = {"verify": "best_verified", "overlap+verify": "lean_em", "overlap": "lean_em", None: "lean_em"}
    for mode, method in expected.items():
        summary = tmp_path / "wait_summary.json"
        summary.unlink(missing_ok=True)
        if mode is not None:
            summary.write_text(json.dumps({"mode": mode}))
        code, _, err = run_in_process(answers)  # --method auto is the default
        assert code == 0, err
        assert f"aggregate_boxes ({method}):" in err, (mode, err)
        boxes = pd.read_csv(tmp_path / "out" / "boxes.csv")
        assert boxes[["label", "x", "y", "w", "h"]].values.tolist() == [["stop", 10.0, 10.0, 20.0, 20.0]]
        # best_verified scores by the verdicts (2 OK of 3), LeanEM by its existence posterior
        assert method != "best_verified" or boxes["score"].iloc[0] == pytest.approx(2 / 3)


def test_auto_reads_the_mode_from_the_wait_summary_beside_answers_csv(tmp_path):
    answers_csv = tmp_path / "answers.csv"
    assert resolve_method("iou_cluster", answers_csv) == "iou_cluster"  # a named method is taken as it is
    assert resolve_method("auto", answers_csv) == "lean_em"  # no wait_summary.json
    (tmp_path / "wait_summary.json").write_text(json.dumps({"mode": "verify"}))
    assert resolve_method(" AUTO ", answers_csv) == "best_verified"
    assert verifications_path("none", answers_csv) == tmp_path / "verifications.csv"
    assert verifications_path("/x/v.csv", answers_csv) == Path("/x/v.csv")


ROUND_ANSWERS = HEADER.replace("\n", ",round\n") + "".join([
    "d1,t1,a,w1,ACCEPTED,2026,stop,10,10,20,20,drawing\n",
    "d1,t1,a,w1,ACCEPTED,2026,stop,60,60,20,20,drawing\n",  # a lone box: uncertain
    "d2,t1,a,w2,ACCEPTED,2026,stop,10,10,20,20,drawing\n",
    "d3,t1,a,w3,ACCEPTED,2026,stop,11,10,20,20,drawing\n",
    "m1,t9,a,m1,ACCEPTED,2026,yield,40,75,15,15,missed_signs\n",  # added in the missed-sign round
])
CHECKS_HEADER = "image_id,box_id,label,x,y,w,h,worker_id,verdict,right_label,assignment_id,status,submitted_at\n"


def test_lean_em_folds_the_checks_beside_answers_csv_and_keeps_ranked_candidates(tmp_path, run_in_process):
    code, _, err = run_in_process(ROUND_ANSWERS, "--method", "lean_em")
    assert code == 0, err
    before = pd.read_csv(tmp_path / "out" / "boxes.csv").set_index("x")
    assert set(before.index) >= {60.0, 40.0}  # the lone box and the addition are ranked candidates
    assert (before["score"] < 1).all() and before["score"].is_unique
    (tmp_path / "checks.csv").write_text(CHECKS_HEADER + "".join([
        "a,k1,stop,60,60,20,20,c1,yes,,ca1,ACCEPTED,2026\n",
        "a,k2,stop,5,80,10,10,c1,yes,,ca1,ACCEPTED,2026\n",  # no such box: skipped, line 3
        "a,k1,stop,60,60,20,20,c2,no_sign,,ca2,REJECTED,2026\n",  # rejected: ignored
    ]))
    code, out_text, err = run_in_process(ROUND_ANSWERS, "--method", "lean_em")
    assert code == 0, err
    after = pd.read_csv(tmp_path / "out" / "boxes.csv").set_index("x")
    assert after.loc[60.0, "score"] > before.loc[60.0, "score"]  # "yes" raised it
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {tmp_path / 'checks.csv'} line 3: no output box of its image matches it "
                        "(skipped)"]
    assert "cnvrg_tag_checks: 2" in out_text and "cnvrg_tag_checks_skipped: 1" in out_text


def test_other_methods_ignore_checks_with_one_warning(tmp_path, run_in_process):
    (tmp_path / "checks.csv").write_text(CHECKS_HEADER + "a,k1,stop,10,10,20,20,c1,yes,,ca1,ACCEPTED,2026\n")
    code, _, err = run_in_process(ROUND_ANSWERS, "--method", "iou_cluster")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    # one line for the checks, one for the missed-sign additions it counts as full drawings
    assert len(warnings) == 2 and "does not use per-box checks" in warnings[1]
    assert "counts the missed-sign round's additions as full drawings" in warnings[0]


def test_images_review_lists_every_image_riskiest_first_with_hand_computed_columns():
    from crowdboxes.steps.aggregate_boxes import review_frame

    boxes = pd.DataFrame({"image_id": ["a", "a", "a", "b"], "label": ["stop"] * 4, "x": [0.0] * 4, "y": [0.0] * 4,
                          "w": [5.0] * 4, "h": [5.0] * 4, "score": [0.9, 0.6, 0.2, 0.99], "support": [3, 2, 1, 3]})
    images = pd.DataFrame({"image_id": ["a", "b", "c"], "file_name": ["a.jpg", "b.jpg", "c.jpg"]})
    risk = pd.DataFrame({"expected_missed": [0.1, 0.05, 0.4], "risk": [0.7, 0.06, 0.9]},
                        index=pd.Index(["a", "b", "c"], name="image_id"))
    review = review_frame(boxes, images, risk)
    assert list(review.columns) == ["image_id", "file_name", "risk", "expected_missed", "expected_spurious",
                                    "n_boxes", "min_score"]
    assert review["image_id"].tolist() == ["c", "a", "b"]  # riskiest first; c has no box at all
    a = review.set_index("image_id").loc["a"]
    # the boxes kept at 0.5: scores 0.9 and 0.6 -> 2 boxes, lowest 0.6, expected wrong (1-0.9)+(1-0.6) = 0.5
    assert (a["n_boxes"], a["min_score"]) == (2, 0.6) and a["expected_spurious"] == pytest.approx(0.5)
    c = review.set_index("image_id").loc["c"]
    assert c["n_boxes"] == 0 and pd.isna(c["min_score"]) and c["expected_spurious"] == 0
    # without a risk model (other methods): risk is the expected number of wrong boxes kept
    plain = review_frame(boxes, images, None).set_index("image_id")
    assert plain["risk"].to_dict() == pytest.approx({"a": 0.5, "b": 0.01, "c": 0.0})
    assert plain["expected_missed"].isna().all()


def test_the_step_writes_images_review_csv(run):
    proc, out = run(ANSWERS)
    assert proc.returncode == 0, proc.stderr
    review = pd.read_csv(out / "images_review.csv", dtype={"image_id": str})
    assert sorted(review["image_id"]) == ["a", "b"] and review["risk"].is_monotonic_decreasing
    assert review.set_index("image_id").loc["a", "file_name"] == "a.jpg"


@pytest.mark.parametrize("answers, message", [
    (HEADER, "answers.csv: no answer rows (header only): nothing to aggregate"),
    (HEADER + "as1,t1,a,w1,REJECTED,2026,stop,1,1,20,20\nas1,t1,a,w1,REJECTED,2026,stop,30,30,20,20\n"
     "as2,t1,a,w2,rejected,2026,,,,,\n",
     "answers.csv: all 3 answer rows are REJECTED (0 SUBMITTED or ACCEPTED, 2 assignments): nothing to aggregate"),
])
@pytest.mark.parametrize("method", ["lean_em", "iou_cluster"])
def test_nothing_to_aggregate_fails_in_one_line_before_anything_is_written(tmp_path, answers, message, method,
                                                                           run_in_process):
    code, out_text, err = run_in_process(answers, "--method", method)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "out").exists() and "cnvrg_tag" not in out_text


@pytest.mark.parametrize("row, message", [
    ("a,a.jpg,http://x/a.jpg,0,100,s1", "row 2, field 'width': 0 is not a positive number"),
    ("a,a.jpg,http://x/a.jpg,100,-5,s1", "row 2, field 'height': -5 is not a positive number"),
    ("a,a.jpg,http://x/a.jpg,inf,100,s1", "row 2, field 'width': inf is not a positive number"),
    ("a,a.jpg,http://x/a.jpg,100,nan,s1", "row 2, field 'height': empty or NaN, not a number"),
])
def test_images_with_a_size_that_is_not_positive_and_finite_are_refused(tmp_path, row, message, run_in_process):
    (tmp_path / "bad_images.csv").write_text("image_id,file_name,url,width,height,sha256\n" + row + "\n")
    code, _, err = run_in_process(ANSWERS, "--method", "iou_cluster", images_csv=tmp_path / "bad_images.csv")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "bad_images.csv: " + message in lines[0], lines
    assert not (tmp_path / "out").exists()
