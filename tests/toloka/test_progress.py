"""Wait Pool's progress: rate, ETA and projected spend by hand, with an injected clock; the charts' time key
read back by the local cnvrg runner's parser."""

from __future__ import annotations

import pytest

from crowdboxes.cnvrg.metrics import linechart_line
from crowdboxes.cnvrg.runner import parse_linechart
from crowdboxes.toloka.collection.progress import Pace, Progress, duration_text, pace
from helpers_collection import Terminal

COUNTS = {"submitted": 6, "accepted": 5, "rejected": 1}


def test_pace_by_hand():
    # first update at t=60 s with 2 done; at t=180 s 6 of 10 done, $0.09 spent
    step = pace(6, 10, 0.09, 180.0, (60.0, 2))
    assert step.rate_per_minute == pytest.approx(2.0)  # 4 answers in 2 minutes
    assert step.eta_seconds == pytest.approx(120.0)  # 4 left at 2 a minute
    assert step.projected_usd == pytest.approx(0.15)  # 0.09 / 6 * 10
    assert pace(2, 10, 0.03, 60.0, (60.0, 2)) == Pace(None, None, pytest.approx(0.15))  # no pace measured yet
    assert pace(4, None, 0.03, 90.0, (60.0, 2)) == Pace(pytest.approx(4.0), None, None)  # total unknown
    assert pace(0, 10, 0.0, 90.0, (60.0, 0)) == Pace(None, None, None)  # nothing done, nothing to scale
    assert pace(12, 10, 0.24, 90.0, (60.0, 8)).eta_seconds == 0.0  # over the total (adaptive overlap): done
    assert pace(12, 10, 0.24, 90.0, (60.0, 8)).projected_usd == pytest.approx(0.24)  # never below the spend


def test_duration_text():
    assert [duration_text(s) for s in (None, 0, 40.4, 59.4, 150, 3600, 3 * 3600 + 5 * 60)] == [
        "?", "0 s", "40 s", "59 s", "2 min", "1 h 00 min", "3 h 05 min"]


def test_progress_line_and_time_keyed_charts_with_an_injected_clock(capsys):
    now = [20.0]
    log = Terminal(False)
    progress = Progress(10, "wait_pool 7", stream=log, clock=lambda: now[0], origin=0.0)
    now[0] = 60.0
    progress.update(2, COUNTS, 0.03, "OPEN")
    now[0] = 180.0
    step = progress.update(6, COUNTS, 0.09, "OPEN")
    assert step == Pace(pytest.approx(2.0), pytest.approx(120.0), pytest.approx(0.15))
    first, second = log.text.splitlines()
    assert first == ("wait_pool 7: 2/10 answers (20.0%), ? answers/min, ETA ?, submitted 6, accepted 5, rejected 1, "
                     "spent $0.03 (projected $0.15), pool OPEN, 40 s")
    assert second == ("wait_pool 7: 6/10 answers (60.0%), 2.0 answers/min, ETA 2 min, submitted 6, accepted 5, "
                      "rejected 1, spent $0.09 (projected $0.15), pool OPEN, 3 min")
    charts = [parse_linechart(line) for line in capsys.readouterr().out.splitlines()]
    assert charts == [("Progress", {"key": 1.0, "value": 20.0}), ("Spent", {"key": 1.0, "value": 0.03}),
                      ("Progress", {"key": 3.0, "value": 60.0}), ("Spent", {"key": 3.0, "value": 0.09})]


def test_a_round_continues_the_time_axis_in_its_own_series(capsys):
    now = [600.0]
    Progress(4, "round", stream=Terminal(False), clock=lambda: now[0], origin=300.0,
             group="box_check").update(1, COUNTS, 0.01, "OPEN")
    (line,) = capsys.readouterr().out.splitlines()[:1]
    assert line == "cnvrg_linechart_Progress key: 5.0 group: 'box_check' value: 25.0"
    assert parse_linechart(line) == ("Progress", {"key": 5.0, "group": "box_check", "value": 25.0})


def test_a_change_of_unit_measures_the_rate_afresh():
    now = [0.0]
    progress = Progress(100, "w", stream=Terminal(False), clock=lambda: now[0])
    progress.update(50, COUNTS, 0.5, "OPEN")  # answers
    progress.total, progress.unit = 10, "images done"  # the verification loop counts images
    now[0] = 60.0
    assert progress.update(2, COUNTS, 0.6, "running").rate_per_minute is None  # not 50 answers -> 2 images
    now[0] = 120.0
    assert progress.update(5, COUNTS, 0.9, "running") == Pace(pytest.approx(3.0), pytest.approx(100.0),
                                                              pytest.approx(1.8))


def test_the_writer_and_the_runner_agree_on_every_chart_form():
    assert parse_linechart(linechart_line("Loss", 0.42)) == ("Loss", {"value": 0.42})
    assert parse_linechart(linechart_line("Loss", 0.42, key=2.5)) == ("Loss", {"key": 2.5, "value": 0.42})
    assert parse_linechart(linechart_line("Acc", 0.7, key=3, group="val set")) == (
        "Acc", {"key": 3.0, "group": "val set", "value": 0.7})
