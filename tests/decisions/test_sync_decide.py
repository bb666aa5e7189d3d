"""Sync (issue 15, item 5) through ``decide``: after applying its decisions it re-reads every assignment of
``--answers`` and writes answers.csv to its ``--output_dir`` with the statuses Toloka has now: its own decisions,
the ones a requester made by hand in Toloka (toloka-kit's ``accept_assignment``/``reject_assignment``, a PATCH of
``/assignments/{id}``), and the acceptances Toloka made when the review period ended.

The local Toloka runs in this process on a ManualClock (helpers_rounds) and is reached over real HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from crowdboxes.artifacts import ANSWERS, DECISIONS_SUMMARY, read_frame_csv, write_csv
from crowdboxes.cli import main as cli_main
from helpers_rounds import DAY_REAL_SECONDS, Local, drawn_for_review, local_fixture

TOKEN_ENV = "SYNC_DECIDE_TEST_TOKEN"
N_IMAGES = 4
REVIEW_DAYS = 1

# a local Toloka served over HTTP in this process: seconds per test, so not in make test-fast
pytestmark = pytest.mark.server


local = local_fixture(TOKEN_ENV)


def collected(local: Local, tmp_path: Path) -> tuple[str, Path]:
    """A pool with ``--auto_accept false``, every image drawn twice, collected into answers.csv as Wait Pool
    writes it (every assignment SUBMITTED): (pool id, answers.csv)."""
    pool_id, answers_csv, _ = drawn_for_review(local, tmp_path, N_IMAGES, REVIEW_DAYS)
    return pool_id, answers_csv


def decide(local: Local, *args: str) -> int:
    return cli_main(["decide", "--toloka_env", local.backend.base_url, "--token_env", TOKEN_ENV, *args])


def statuses_in(answers_csv: Path) -> dict[str, str]:
    answers = read_frame_csv(answers_csv, dtype=str)
    per_assignment = answers.groupby("assignment_id")["status"].agg(set)
    assert (per_assignment.map(len) == 1).all()
    return {aid: next(iter(s)) for aid, s in per_assignment.items()}


def on_toloka(local: Local, pool_id: str) -> dict[str, str]:
    return {a.id: a.status.value for a in local.client.get_assignments(pool_id=pool_id)}


def decisions_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    pd.DataFrame(rows, columns=["assignment_id", "decision", "comment"]).to_csv(path, index=False)
    return path


def test_decide_writes_answers_with_its_own_the_hand_made_and_the_expired_review_statuses(local, tmp_path, capsys):
    pool_id, answers_csv = collected(local, tmp_path)
    stale = answers_csv.read_bytes()
    ids = sorted(statuses_in(answers_csv))
    client = local.client
    client.accept_assignment(ids[0], "fine")  # by hand in Toloka, outside the flow
    client.reject_assignment(ids[1], "the yield sign is not outlined")

    out = tmp_path / "decide"
    decisions = decisions_csv(tmp_path / "decisions.csv", [(ids[0], "accept", ""), (ids[2], "reject", "no box B")])
    assert decide(local, "--decisions", str(decisions), "--answers", str(answers_csv), "--output_dir", str(out)) == 0
    synced = statuses_in(ANSWERS.path(out))
    assert synced == on_toloka(local, pool_id)
    assert (synced[ids[0]], synced[ids[1]], synced[ids[2]]) == ("ACCEPTED", "REJECTED", "REJECTED")
    assert sorted(synced.values()).count("SUBMITTED") == 2 * N_IMAGES - 3
    summary = json.loads(DECISIONS_SUMMARY.path(out).read_text())["answers_sync"]
    assert (summary["assignments"], summary["changed"], summary["changed_by_this_run"], summary["changed_outside"]) == (
        2 * N_IMAGES, 3, 1, 2)
    assert summary["changes"] == {"SUBMITTED -> ACCEPTED": 1, "SUBMITTED -> REJECTED": 2}
    assert "answers.csv synced with Toloka: 8 assignments, 3 changed" in capsys.readouterr().out
    # only the statuses changed; Wait Pool's file is left as it was
    before, after = read_frame_csv(answers_csv, dtype=str), read_frame_csv(ANSWERS.path(out), dtype=str)
    assert before.drop(columns="status").equals(after.drop(columns="status"))
    assert answers_csv.read_bytes() == stale

    # the review period ends: Toloka accepts what is left; a decision on one of those is skipped, and the
    # sync of the (still stale) answers.csv shows every acceptance
    local.backend.clock.advance(2 * REVIEW_DAYS * DAY_REAL_SECONDS)
    local.step(1)
    later = tmp_path / "decide_later"
    decisions = decisions_csv(tmp_path / "later.csv", [(ids[3], "accept", "")])
    assert decide(local, "--decisions", str(decisions), "--answers", str(answers_csv), "--output_dir", str(later)) == 0
    synced = statuses_in(ANSWERS.path(later))
    assert synced == on_toloka(local, pool_id)
    assert sorted(synced.values()) == ["ACCEPTED"] * (2 * N_IMAGES - 2) + ["REJECTED"] * 2
    record = json.loads(DECISIONS_SUMMARY.path(later).read_text())
    assert (record["accepted"], record["skipped"]) == (0, 1)
    synced_record = record["answers_sync"]
    assert (synced_record["changed"], synced_record["changed_outside"]) == (2 * N_IMAGES, 2 * N_IMAGES)

    # a re-run into the first folder: the same answers.csv as the later one
    assert decide(local, "--decisions", str(decisions), "--answers", str(answers_csv), "--output_dir", str(out)) == 0
    assert ANSWERS.path(out).read_bytes() == ANSWERS.path(later).read_bytes()


def test_an_answers_csv_without_pool_ids_is_synced_one_assignment_at_a_time(local, tmp_path):
    pool_id, answers_csv = collected(local, tmp_path)
    frame = read_frame_csv(answers_csv, dtype=str)
    ids = sorted(frame["assignment_id"].unique())
    local.client.reject_assignment(ids[0], "no box B")
    old = frame.drop(columns="pool_id")
    old.loc[len(old)] = {**old.iloc[0].to_dict(), "assignment_id": "no-such-assignment"}
    old_csv = write_csv(old, tmp_path / "old", ANSWERS)
    out = tmp_path / "decide"
    assert decide(local, "--decisions", str(decisions_csv(tmp_path / "d.csv", [])), "--answers", str(old_csv),
                  "--output_dir", str(out)) == 0
    synced = statuses_in(ANSWERS.path(out))
    assert synced == {**on_toloka(local, pool_id), "no-such-assignment": "SUBMITTED"}
    record = json.loads(DECISIONS_SUMMARY.path(out).read_text())["answers_sync"]
    assert (record["changed"], record["changed_outside"], record["missing"]) == (1, 1, ["no-such-assignment"])


def test_answers_none_syncs_nothing(local, tmp_path, capsys):
    pool_id, answers_csv = collected(local, tmp_path)
    out = tmp_path / "decide"
    assert decide(local, "--decisions", str(decisions_csv(tmp_path / "d.csv", [])), "--answers", "none",
                  "--output_dir", str(out)) == 0
    assert not ANSWERS.path(out).exists()
    assert json.loads(DECISIONS_SUMMARY.path(out).read_text())["answers_sync"] is None
