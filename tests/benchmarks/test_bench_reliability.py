"""benchmarks/bench_reliability.py: its table from hand-made probes, and a real ``--quick`` run of one group."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_reliability import table  # noqa: E402
from reliability_probes.world import Probe  # noqa: E402


def test_table_counts_per_group_and_lists_what_did_not_hold() -> None:
    probes = [Probe("re-runs", "a", "held", "ok"),
              Probe("re-runs", "b", "failed", "new assignments +36", duplicates=36, over_usd=2.5),
              Probe("kill points", "c", "failed", "2 images | over", lost=3, over_usd=0.25),
              Probe("kill points", "d", "skipped", "the step ended before 30%")]
    lines = table(probes, ["re-runs", "kill points"]).splitlines()
    assert lines[2] == "| re-runs | 2 | 1 | 1 | 0 | 36 | 0 | $2.50 |"
    assert lines[3] == "| kill points | 2 | 0 | 1 | 1 | 0 | 3 | $0.25 |"
    assert lines[4] == "| **all** | **4** | **1** | **2** | **1** | **36** | **3** | **$2.75** |"
    assert "| re-runs | b | failed | new assignments +36 |" in lines
    assert "| kill points | c | failed | 2 images / over |" in lines  # a | in a reason cannot break the table
    assert not any("| a |" in line for line in lines)


@pytest.mark.server
def test_quick_run_of_one_group_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "probes.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_reliability.py"), "--quick", "--groups",
                           "concurrency", "--count", "4", "--json", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| concurrency | 1 |" in done.stdout, done.stdout
    probes = json.loads(out.read_text())["probes"]
    assert [p["name"] for p in probes] == ["two Create Project at once"]
    assert probes[0]["status"] in ("held", "failed"), probes[0]  # the case was set up and judged
