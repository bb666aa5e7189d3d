"""Two demos in one workdir get different run tags, hence their own state, ready files, runs and keys."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from crowdboxes.demo import REPO_ROOT, _publish_index, run_tag
from crowdboxes.toloka.projects import _KEY_RE


def test_the_tag_is_time_pid_and_suffix():
    assert run_tag(now=0, pid=42, suffix="abc123") == "19700101-000000-42-abc123"
    assert run_tag(now=86400 + 3661, pid=7, suffix="ff") == "19700102-010101-7-ff"
    tag = run_tag()
    assert len(tag.split("-")) == 4 and len(tag.split("-")[3]) == 6
    assert _KEY_RE.match(f"demo-{tag}")  # the demo's --project_key


def test_two_tags_computed_at_once_differ_in_one_process_and_in_two():
    barrier, tags = threading.Barrier(2), []

    def compute() -> None:
        barrier.wait()
        tags.append(run_tag(now=0))  # same second, same pid: the random suffix tells them apart

    threads = [threading.Thread(target=compute) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(tags)) == 2
    code = "from crowdboxes.demo import run_tag; print(run_tag(now=0, suffix='same'))"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert len(set(outs)) == 2 and all(o.startswith("19700101-000000-") for o in outs)  # the pids differ


def test_a_demo_publishes_its_own_index_to_the_shared_one(tmp_path):
    own = tmp_path / "runs" / run_tag()
    own.mkdir(parents=True)
    (own / "latest.json").write_text(json.dumps({"export": str(own / "x" / "export")}))
    _publish_index(own, tmp_path / "runs")
    assert json.loads((tmp_path / "runs" / "latest.json").read_text()) == {"export": str(own / "x" / "export")}
