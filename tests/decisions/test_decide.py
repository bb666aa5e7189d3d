"""``python -m crowdboxes decide`` on the local Toloka over real HTTP: by policy and by CSV, money right, re-run
idempotent, refusals past the review period and for conflicting statuses.

The server runs in this process on a ManualClock with helpers_rounds' deterministic crowd: every drawer outlines
sign A (stop); on even images the "full" workers (w1, w3) also outline sign B (yield) and the "partial" ones
(w2, w4) miss it. The aggregate (boxes.csv) is written by hand: A everywhere, B on even images. So a partial
worker's drawing of an even image scores TP 1, FN 1: F1 = 2/3, every other drawing F1 = 1.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from crowdboxes.artifacts import BOXES, DECISIONS, DECISIONS_SUMMARY, read_frame_csv, write_csv
from crowdboxes.cli import main as cli_main
from crowdboxes.toloka.collection.collector import AnswerCollector
from helpers_rounds import (SIGN_A, SIGN_B, TOKEN, Local, drawn_for_review, pool_from_config, project_from_config,
                            local_fixture, review_pool)

TOKEN_ENV = "DECIDE_TEST_TOKEN"
N_IMAGES = 4
WIDTH, HEIGHT = 200.0, 100.0
PRICE = Decimal("0.026")  # reward 0.02 + Toloka's fee 0.006


local = local_fixture(TOKEN_ENV)


def drawn(local: Local, tmp_path: Path, review_days: int = 7) -> tuple[str, Path, pd.DataFrame]:
    """Every image drawn twice and collected (all SUBMITTED): (pool id, answers.csv, its frame)."""
    return drawn_for_review(local, tmp_path, N_IMAGES, review_days, size=(WIDTH, HEIGHT))


def aggregate(tmp_path: Path) -> Path:
    """boxes.csv by hand: sign A on every image, sign B on even ones, all kept (score 0.9)."""
    def box(image: int, sign: dict) -> dict:
        return {"image_id": f"im{image}", "label": sign["label"], "x": sign["left"] * WIDTH,
                "y": sign["top"] * HEIGHT, "w": sign["width"] * WIDTH, "h": sign["height"] * HEIGHT,
                "score": 0.9, "support": 2}
    rows = [box(i, SIGN_A) for i in range(N_IMAGES)] + [box(i, SIGN_B) for i in range(0, N_IMAGES, 2)]
    rows.append({**box(1, SIGN_B), "score": 0.2})  # below --min_score: not in the aggregate
    return write_csv(pd.DataFrame(rows), tmp_path / "aggregate", BOXES)


def decide(local: Local, *args: str) -> int:
    return cli_main(["decide", "--toloka_env", local.backend.base_url, "--token_env", TOKEN_ENV, *args])


def charges(local: Local) -> dict[str, Decimal]:
    """Assignment id -> what the local Toloka charged the requester for it (its sqlite charges table)."""
    with sqlite3.connect(f"file:{Path(local.backend.state_dir) / 'toloka.sqlite3'}?mode=ro", uri=True) as conn:
        return {aid: Decimal(amount) for aid, amount in conn.execute("SELECT assignment_id, amount FROM charges")}


def earnings(local: Local) -> dict:
    """The local Toloka's money side of reviews (GET /_local/earnings): per worker accepted, rejected and
    earned (rewards of accepted work), and the requester's balance and charges."""
    import requests

    response = requests.get(f"{local.backend.base_url}/_local/earnings", timeout=30,
                            headers={"Authorization": f"OAuth {TOKEN}"})
    response.raise_for_status()
    return response.json()


def statuses(local: Local, pool_id: str) -> dict[str, str]:
    return {a.id: a.status.value for a in local.client.get_assignments(pool_id=pool_id)}


def test_policy_rejects_the_missed_signs_pays_the_rest_and_a_rerun_changes_nothing(local, tmp_path, capsys):
    pool_id, answers_csv, frame = drawn(local, tmp_path)
    balance_before = Decimal(str(local.client.get_requester().balance))
    out = tmp_path / "decide"
    code = decide(local, "--policy", "disagree", "--answers", str(answers_csv), "--boxes", str(aggregate(tmp_path)),
                  "--threshold", "0.8", "--output_dir", str(out))
    assert code == 0, capsys.readouterr().err

    # the partial workers' drawings of even images (sign B missed) are rejected, named by class; the rest accepted
    first = frame.drop_duplicates("assignment_id")
    partial_even = set(first.loc[first["worker_id"].isin(["w2", "w4"]) & first["image_id"].isin(["im0", "im2"]),
                                 "assignment_id"])
    assert partial_even, "the crowd gave no even image to a partial worker"
    decisions = read_frame_csv(DECISIONS.path(out), dtype=str).set_index("assignment_id")
    assert set(decisions.index[decisions["decision"] == "reject"]) == partial_even
    for aid in partial_even:
        assert decisions.loc[aid, "comment"] == ("Rejected: your boxes disagree with the other workers' on 1 image "
                                                 "(F1 0.67, below 0.80): missed 1 sign (yield x1).")
    assert statuses(local, pool_id) == {aid: ("REJECTED" if aid in partial_even else "ACCEPTED")
                                        for aid in first["assignment_id"]}
    rejected = {a.id: a.public_comment for a in local.client.get_assignments(pool_id=pool_id, status=["REJECTED"])}
    assert all("missed 1 sign (yield x1)" in c for c in rejected.values())

    # money: every accepted assignment charged reward + fee once, nothing for the rejected ones
    accepted = set(first["assignment_id"]) - partial_even
    assert charges(local) == {aid: PRICE for aid in accepted}
    workers = first.set_index("assignment_id")["worker_id"]
    money = earnings(local)
    for worker in set(workers):  # each worker earns the reward (0.02) of their accepted work, nothing for the rest
        theirs = set(workers.index[workers == worker])
        paid = len(theirs & accepted)
        assert money["workers"][worker] == {"accepted": paid, "rejected": len(theirs) - paid,
                                            "earned": pytest.approx(0.02 * paid)}
    assert money["workers"]["w1"]["rejected"] == 0 and money["workers"]["w3"]["rejected"] == 0  # the full ones
    assert money["requester"]["charged"] == pytest.approx(float(PRICE * len(accepted)))
    assert Decimal(str(local.client.get_requester().balance)) == balance_before - PRICE * len(accepted)
    assert Decimal(str(money["requester"]["balance"])) == balance_before - PRICE * len(accepted)
    summary = json.loads(DECISIONS_SUMMARY.path(out).read_text())
    assert (summary["accepted"], summary["rejected"], summary["skipped"], summary["refused"]) == (
        len(accepted), len(partial_even), 0, 0)
    assert summary["released_usd"] == float(PRICE * len(accepted))
    assert summary["kept_usd"] == float(PRICE * len(partial_even))
    assert f"accepted {len(accepted)} (${PRICE * len(accepted):.4f} released)" in capsys.readouterr().out

    # a re-run (the same stale answers.csv) decides nothing again and charges nothing more
    code = decide(local, "--policy", "disagree", "--answers", str(answers_csv), "--boxes",
                  str(tmp_path / "aggregate" / "boxes.csv"), "--threshold", "0.8", "--output_dir", str(out))
    assert code == 0
    again = json.loads(DECISIONS_SUMMARY.path(out).read_text())
    assert (again["accepted"], again["rejected"], again["skipped"], again["refused"]) == (0, 0, 8, 0)
    assert charges(local) == {aid: PRICE for aid in accepted}
    assert TOKEN not in capsys.readouterr().out


def test_csv_decisions_refuse_conflicts_one_line_each_and_say_so_in_the_exit_code(local, tmp_path, capsys):
    pool_id, _, frame = drawn(local, tmp_path)
    ids = list(frame.drop_duplicates("assignment_id")["assignment_id"])
    path = tmp_path / "decisions.csv"
    pd.DataFrame({"assignment_id": [ids[0], ids[1], ids[2], ids[2], "no-such-id"],
                  "decision": ["accept", "REJECT", "accept", "accept", "accept"],
                  "comment": ["", "Sign B is missing.", "ok", "ok", ""]}).to_csv(path, index=False)
    out = tmp_path / "decide"
    assert decide(local, "--decisions", str(path), "--output_dir", str(out)) == 1  # the unknown id is refused
    assert statuses(local, pool_id)[ids[1]] == "REJECTED"
    assert local.client.get_assignment(ids[1]).public_comment == "Sign B is missing."
    summary = json.loads(DECISIONS_SUMMARY.path(out).read_text())
    assert (summary["accepted"], summary["rejected"], summary["refused"]) == (2, 1, 1)
    assert summary["refusals"] == ["assignment no-such-id (row 6): cannot accept: no such assignment on this Toloka"]
    capsys.readouterr()

    # the opposite decisions now: accepted work cannot be rejected (refused, one line); a rejection may be
    # changed within the worker's 9-day appeal period (accepted, and paid then)
    pd.DataFrame({"assignment_id": [ids[0], ids[1]], "decision": ["reject", "accept"],
                  "comment": ["changed my mind", ""]}).to_csv(path, index=False)
    before = charges(local)
    assert decide(local, "--decisions", str(path), "--output_dir", str(out)) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"refused: assignment {ids[0]} (row 2): cannot reject: already ACCEPTED")
    assert statuses(local, pool_id)[ids[0]] == "ACCEPTED" and statuses(local, pool_id)[ids[1]] == "ACCEPTED"
    assert charges(local) == {**before, ids[1]: PRICE}


def test_a_bad_decisions_csv_fails_before_toloka_is_asked(local, tmp_path, capsys):
    path = tmp_path / "decisions.csv"
    path.write_text("assignment_id,decision,comment\na1,accept,\na2,reject,\n")
    assert decide(local, "--decisions", str(path), "--output_dir", str(tmp_path / "out")) == 2
    assert capsys.readouterr().err.strip() == (f"error: {path}: row 3, field 'comment' is empty: a rejection needs a "
                                               "public comment that tells the worker why")


def test_past_the_review_period_a_rejection_is_refused_and_an_acceptance_skipped(local, tmp_path, capsys):
    pool_id, _, frame = drawn(local, tmp_path, review_days=1)
    ids = list(frame.drop_duplicates("assignment_id")["assignment_id"])
    local.backend.clock.advance(3600)  # a day is 0.0864 s at speed 1e6: the review period is long over
    local.step(1)  # the scheduler accepts what the period left undecided
    path = tmp_path / "decisions.csv"
    pd.DataFrame({"assignment_id": [ids[0], ids[1]], "decision": ["reject", "accept"],
                  "comment": ["too late", ""]}).to_csv(path, index=False)
    out = tmp_path / "decide"
    assert decide(local, "--decisions", str(path), "--output_dir", str(out)) == 1
    summary = json.loads(DECISIONS_SUMMARY.path(out).read_text())
    assert (summary["accepted"], summary["rejected"], summary["skipped"], summary["refused"]) == (0, 0, 1, 1)
    assert "review period" in summary["refusals"][0] and "cannot reject" in summary["refusals"][0]
    assert summary["released_usd"] == 0 and summary["skipped_accepted_usd"] == float(PRICE)
    assert statuses(local, pool_id)[ids[0]] == "ACCEPTED"



def test_a_submitted_assignment_past_the_review_period_on_our_clock_is_refused_before_toloka_is_asked(local, tmp_path):
    from crowdboxes.decisions.apply import Decision, apply_decisions

    pool_id, _, frame = drawn(local, tmp_path, review_days=7)
    aid = frame["assignment_id"].iloc[0]
    submitted = local.client.get_assignment(aid).submitted
    ended = submitted + dt.timedelta(days=7)
    summary = apply_decisions(local.client, [Decision(aid, "reject", "late", 2)], now=lambda: ended)
    assert (summary.rejected, summary.refused) == (0, 1)
    assert summary.refusals == [f"assignment {aid} (row 2): cannot reject: past the review period: it ended at "
                                f"{ended.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}; Toloka accepts it"]
    assert statuses(local, pool_id)[aid] == "SUBMITTED"  # nothing was asked of Toloka
    summary = apply_decisions(local.client, [Decision(aid, "reject", "in time", 2)],
                              now=lambda: ended - dt.timedelta(seconds=1))
    assert (summary.rejected, summary.as_dict()["kept_usd"]) == (1, float(PRICE))


def test_the_overlap_wait_collects_submitted_work_and_leaves_the_review_to_the_requester(local, tmp_path):
    """Wait Pool's wait in mode overlap (collection.wait.wait_for_pool) with --auto_accept false ends when the
    pool completes, with every assignment SUBMITTED: it neither waits for acceptance nor decides anything."""
    import io

    from toloka.client import Task

    from crowdboxes.toloka.collection.progress import Progress
    from crowdboxes.toloka.collection.wait import wait_for_pool

    client = local.client
    pool_id = review_pool(client, project_from_config(client, "detection_project.json"))
    client.create_tasks([Task(pool_id=pool_id, input_values={"image": f"http://127.0.0.1:9/w/im{i}.jpg"})
                         for i in range(N_IMAGES)], allow_defaults=True, open_pool=True)
    collector = AnswerCollector(client, [pool_id], tmp_path / "wait", lag_seconds=0)
    outcome = wait_for_pool(client, pool_id, collector, Progress(2 * N_IMAGES, "wait", stream=io.StringIO()),
                            poll_seconds=1, deadline=None, expected_answers=2 * N_IMAGES,
                            sleep=lambda _: local.step(1))
    assert outcome.done
    collector.rescan()
    assert collector.counts(pool_id) == {"submitted": 8, "accepted": 0, "rejected": 0, "pending_review": 8,
                                         "task_answers": 8}
    assert set(statuses(local, pool_id).values()) == {"SUBMITTED"} and charges(local) == {}


class LosesTheThirdAnswer:
    """A toloka-kit client whose third accept reaches Toloka but whose answer is lost (a kill, a dropped
    connection after the request): the worst moment for a run to stop."""

    def __init__(self, client) -> None:
        self.client, self.accepts = client, 0

    def __getattr__(self, name):
        return getattr(self.client, name)

    def accept_assignment(self, assignment_id, public_comment):
        self.accepts += 1
        done = self.client.accept_assignment(assignment_id, public_comment)
        if self.accepts == 3:
            raise ConnectionError("connection reset by peer")
        return done


def test_a_run_stopped_after_an_action_is_finished_by_a_rerun_paying_each_assignment_once(local, tmp_path, capsys):
    from crowdboxes.decisions.apply import apply_decisions, read_decisions
    from crowdboxes.errors import CrowdboxesError

    pool_id, _, frame = drawn(local, tmp_path)
    ids = list(frame.drop_duplicates("assignment_id")["assignment_id"])
    path = tmp_path / "decisions.csv"
    pd.DataFrame({"assignment_id": ids, "decision": "accept", "comment": "ok"}).to_csv(path, index=False)
    with pytest.raises(CrowdboxesError, match=rf"decide: stopped at assignment {ids[2]} \(row 4\): ConnectionError: "
                                              r"connection reset by peer \(done so far: accepted 2, rejected 0, "
                                              r"skipped 0, refused 0; a re-run skips them\)"):
        apply_decisions(LosesTheThirdAnswer(local.client), read_decisions(path))
    assert len(charges(local)) == 3  # the third acceptance reached Toloka

    out = tmp_path / "decide"
    assert decide(local, "--decisions", str(path), "--output_dir", str(out)) == 0
    summary = json.loads(DECISIONS_SUMMARY.path(out).read_text())
    assert (summary["accepted"], summary["skipped"]) == (len(ids) - 3, 3)
    assert charges(local) == {aid: PRICE for aid in ids}  # each paid once
    assert set(statuses(local, pool_id).values()) == {"ACCEPTED"}


def test_a_rejection_in_a_pool_that_accepts_at_submission_is_refused_saying_why(local, tmp_path):
    from toloka.client import Task

    from crowdboxes.decisions.apply import Decision, apply_decisions

    client = local.client
    pool_id = pool_from_config(client, project_from_config(client, "detection_project.json"), None)  # auto-accept
    client.create_tasks([Task(pool_id=pool_id, input_values={"image": "http://127.0.0.1:9/z/im0.jpg"})],
                        allow_defaults=True, open_pool=True)
    for _ in range(200):
        local.step(1)
        if list(client.get_assignments(pool_id=pool_id, status=["ACCEPTED"])):
            break
    assignment, = client.get_assignments(pool_id=pool_id, status=["ACCEPTED"])
    summary = apply_decisions(client, [Decision(assignment.id, "reject", "no", 2)])
    assert summary.refusals == [f"assignment {assignment.id} (row 2): cannot reject: already ACCEPTED at "
                                f"{assignment.accepted.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}: the pool accepts work when "
                                "it is submitted (auto_accept_solutions; launch with --auto_accept false to review "
                                "by hand)"]


def test_a_comment_longer_than_toloka_takes_is_refused_with_its_row(local, tmp_path, capsys):
    path = tmp_path / "decisions.csv"
    pd.DataFrame({"assignment_id": ["a1"], "decision": ["reject"], "comment": ["x" * 2049]}).to_csv(path, index=False)
    assert decide(local, "--decisions", str(path), "--output_dir", str(tmp_path / "out")) == 2
    assert capsys.readouterr().err.strip() == (f"error: {path}: row 2, field 'comment': 2049 characters, Toloka "
                                               "takes at most 2048")
