"""benchmarks/bench_wait_memory.py: a real small run, both phases, the answers it writes and its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_run_collects_every_assignment_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_wait_memory.py"), "--sizes", "150",
                           "--baseline", "none", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [(r["phase"], r["code"]) for r in rows] == [("collect", "after"), ("resume", "after")]
    for row in rows:
        # 150 images at overlap 3, 1-3 rectangles each; the resumed collector reads the same from the journal
        assert row["assignments"] == 450 and row["problems"] == 0 and 450 <= row["rows"] <= 1350, row
        assert 0 < row["peak_mb"] < 2048
    assert rows[0]["answers_sha256"] == rows[1]["answers_sha256"]  # the same answers.csv after a resume
    assert "answers.csv identical across versions and phases: yes" in done.stdout
    assert "| 150 | 450 | collect | after |" in done.stdout, done.stdout
