"""The README's run command, small: the whole flow on the local Toloka, scored, with no token leak."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.server  # the whole flow: local Toloka, step processes

REPO = Path(__file__).resolve().parents[2]


TOKEN = "demo-test-token-5f1c9e77a0b34d21"


def test_demo_runs_the_whole_flow_and_never_leaks_the_token(tmp_path):
    workdir = tmp_path / "demo"
    env = {**os.environ, "toloka_token": TOKEN}
    result = subprocess.run([sys.executable, "-m", "crowdboxes", "demo", "--count", "12", "--workdir", str(workdir),
                             "--min-ap50", "0.5"], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((workdir / "last_demo.json").read_text())
    coco = json.loads(Path(summary["coco"]).read_text())
    assert len(coco["images"]) == 12 and coco["annotations"]
    assert 0.5 <= summary["AP50"] <= 1.0

    assert TOKEN not in result.stdout + result.stderr
    leaked = [str(p) for p in workdir.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []
