"""The ``disagree`` policy on hand-made answers.csv and boxes.csv files: F1 per assignment by hand, the
comment naming missed signs, wrong classes and stray boxes by class, what is left out."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from crowdboxes.decisions.policy import disagree_policy, read_kept_boxes
from crowdboxes.errors import CrowdboxesError
from crowdboxes.steps.aggregate_boxes import read_answers

# two images: i1 has a stop (0,0,10,10) and a yield (50,50,10,10); i2 has nothing
BOXES = ("image_id,label,x,y,w,h,score,support\n"
         "i1,stop,0,0,10,10,0.9,3\n"
         "i1,yield,50,50,10,10,0.8,3\n"
         "i1,parking,80,80,10,10,0.3,1\n")  # below --min_score 0.5: not kept
HEADER = "assignment_id,task_id,image_id,worker_id,status,submitted_at,label,x,y,w,h\n"
ANSWERS = HEADER + (
    # a1: both signs on i1 -> F1 1
    "a1,t1,i1,w1,SUBMITTED,2026-01-01T00:00:01Z,stop,0,0,10,10\n"
    "a1,t1,i1,w1,SUBMITTED,2026-01-01T00:00:01Z,yield,51,50,10,10\n"
    # a2: the yield drawn as a stop, and a box on nothing -> TP 1, FP 2, FN 1: F1 2/5
    "a2,t1,i1,w2,SUBMITTED,2026-01-01T00:00:02Z,stop,0,0,10,10\n"
    "a2,t1,i1,w2,SUBMITTED,2026-01-01T00:00:02Z,stop,50,50,10,10\n"
    "a2,t1,i1,w2,SUBMITTED,2026-01-01T00:00:02Z,stop,20,20,5,5\n"
    # a3: nothing drawn on i1 -> FN 2: F1 0
    "a3,t1,i1,w3,SUBMITTED,2026-01-01T00:00:03Z,,,,,\n"
    # a4: nothing drawn on the empty i2 -> F1 1
    "a4,t2,i2,w1,SUBMITTED,2026-01-01T00:00:04Z,,,,,\n"
    # a5: accepted already -> no decision
    "a5,t2,i2,w2,ACCEPTED,2026-01-01T00:00:05Z,stop,1,1,5,5\n"
    # a6: a missed-sign round's additions are not drawings -> no decision
    "a6,t9,i1,w3,SUBMITTED,2026-01-01T00:00:06Z,parking,80,80,10,10\n")


def policy(tmp_path, answers: str = ANSWERS, threshold: float = 0.5, min_score: float = 0.5) -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(answers), dtype=str)
    frame["round"] = ["drawing"] * (len(frame) - 1) + ["missed_signs"]
    (tmp_path / "answers.csv").write_text(frame.to_csv(index=False))
    (tmp_path / "boxes.csv").write_text(BOXES)
    return disagree_policy(read_answers(tmp_path / "answers.csv"), read_kept_boxes(tmp_path / "boxes.csv", min_score),
                           threshold).set_index("assignment_id")


def test_disagreement_is_scored_and_named_by_class(tmp_path):
    decisions = policy(tmp_path)
    assert list(decisions.index) == ["a1", "a2", "a3", "a4"]  # SUBMITTED drawings only, oldest first
    assert list(decisions["decision"]) == ["accept", "reject", "reject", "accept"]
    assert list(decisions["f1"]) == [1.0, 0.4, 0.0, 1.0]
    assert decisions.loc["a2", ["tp", "fp", "fn"]].tolist() == [1, 2, 1]
    assert decisions.loc["a2", "comment"] == (
        "Rejected: your boxes disagree with the other workers' on 1 image (F1 0.40, below 0.50): wrong class on "
        "1 sign (stop drawn where it is yield); 1 box where there is no sign (stop x1).")
    assert decisions.loc["a3", "comment"] == (
        "Rejected: your boxes disagree with the other workers' on 1 image (F1 0.00, below 0.50): missed 2 signs "
        "(stop x1, yield x1).")
    assert decisions.loc["a1", "comment"] == "Accepted: your boxes agree with the other workers' (F1 1.00). Thank you."


def test_the_kept_boxes_follow_min_score_and_the_threshold_is_checked(tmp_path):
    # with the parking box kept, a1 misses it: TP 2, FN 1 -> F1 0.8, still above 0.5
    assert policy(tmp_path, min_score=0.2).loc["a1", "f1"] == 0.8
    assert policy(tmp_path, threshold=0.0)["decision"].eq("accept").all()  # nothing is below 0
    with pytest.raises(CrowdboxesError, match=r"--threshold 1.5: must be between 0 and 1"):
        policy(tmp_path, threshold=1.5)
