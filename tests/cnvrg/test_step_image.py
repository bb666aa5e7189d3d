"""The step image's Python environment, rebuilt the way the Dockerfile builds it, in a clean venv: only
requirements.txt, crowd-kit with --no-deps from requirements-crowdkit.txt, then the package with --no-deps.
Every step's ``--help`` and a real Aggregate Boxes -> Export run work there, crowd-kit's aggregation runs,
and the learning extras the cut left out (transformers, pyarrow, torch) are not installed. cnvrgv2, in a
venv of its own as the image's /opt/cnvrg-sdk, has the calls Export's cnvrg_put.py makes.

Building the venv takes about 45 s with pip's cache warm (83 s for the old, uncut requirements), so it
stays in the default suite, marked ``slow``; deselect it with ``-m "not slow"``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers_paths import REPO_ROOT

STEPS = sorted(p.name for p in (REPO_ROOT / "steps").glob("*.py"))
# the Dockerfile's install commands, with the folder it copies the files to; the test repeats them
INSTALLS = ("pip install --no-cache-dir -r /opt/crowdboxes/requirements.txt",
            "pip install --no-cache-dir --no-deps -r /opt/crowdboxes/requirements-crowdkit.txt",
            "pip install --no-cache-dir --no-deps /opt/crowdboxes")
LEFT_OUT = ("transformers", "pyarrow", "torch")

ANSWERS = ("assignment_id,task_id,image_id,worker_id,status,submitted_at,label,x,y,w,h\n"
           "as1,t1,a,w1,ACCEPTED,2026-11-23T09:00:00Z,stop,10,10,20,20\n"
           "as2,t1,a,w2,ACCEPTED,2026-11-23T09:00:01Z,stop,12,10,20,20\n"
           "as3,t1,a,w3,ACCEPTED,2026-11-23T09:00:02Z,stop,11,11,20,20\n"
           "as4,t2,b,w1,ACCEPTED,2026-11-23T09:00:03Z,,,,,\n"
           "as5,t2,b,w2,ACCEPTED,2026-11-23T09:00:04Z,yield,40,30,25,25\n"
           "as6,t2,b,w3,ACCEPTED,2026-11-23T09:00:05Z,yield,41,30,25,24\n")
IMAGES = ("image_id,file_name,url,width,height,sha256\n"
          "a,a.jpg,http://x/a.jpg,100,100,s1\n"
          "b,b.jpg,http://x/b.jpg,200,100,s2\n")
WAIT = {"spent_usd": 0.1, "counts": {"submitted": 0, "accepted": 6, "rejected": 0}, "images_answered": 2,
        "images_accepted": 2, "duration_seconds": 60.0, "first_started_at": "2026-11-23T09:00:00.000000Z"}
# crowd-kit's aggregation with the cut dependencies: DawidSkene and MajorityVote fit, named_series_attrib imports
CROWDKIT = """
import pandas as pd
from crowdkit.aggregation import DawidSkene, MajorityVote
from crowdkit.aggregation.utils import named_series_attrib
import crowdboxes, toloka.client
data = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": ["a", "b", "c", "a", "b", "c"],
                     "label": ["x", "x", "y", "y", "y", "y"]})
print(DawidSkene(n_iter=10).fit_predict(data).to_dict(), MajorityVote().fit_predict(data).to_dict())
print(crowdboxes.__file__)
"""


def test_the_dockerfile_installs_as_this_test_does():
    text = " ".join((REPO_ROOT / "Dockerfile").read_text().split())
    for command in INSTALLS:
        assert command in text, command
    assert text.index(INSTALLS[0]) < text.index(INSTALLS[1]) < text.index(INSTALLS[2])


def _pip(venv: Path, *args: str) -> None:
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.server
def test_every_step_runs_in_a_clean_venv_made_as_the_image_makes_it(tmp_path):
    venv, opt = tmp_path / "venv", tmp_path / "opt"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    _pip(venv, "-r", str(REPO_ROOT / "requirements.txt"))
    _pip(venv, "--no-deps", "-r", str(REPO_ROOT / "requirements-crowdkit.txt"))
    # the package as the Dockerfile copies it (pyproject.toml, README.md, crowdboxes/), built outside the repo
    opt.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, opt / name)
    shutil.copytree(REPO_ROOT / "crowdboxes", opt / "crowdboxes", ignore=shutil.ignore_patterns("__pycache__"))
    _pip(venv, "--no-deps", str(opt))
    print(f"venv built in {time.monotonic() - started:.0f} s")

    python = str(venv / "bin" / "python")
    work = tmp_path / "cnvrg"  # a working folder outside the repo: nothing is imported from the test's venv
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    installed = run("-m", "pip", "list", "--format=json")
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert not names & set(LEFT_OUT), names & set(LEFT_OUT)
    assert {"crowd-kit", "toloka-kit", "crowdboxes"} <= names

    kit = run("-c", CROWDKIT)
    assert kit.returncode == 0, kit.stderr
    assert "{1: 'x', 2: 'y'}" in kit.stdout and str(venv) in kit.stdout  # the installed package, not the repo's

    assert run("-m", "crowdboxes", "--help").returncode == 0
    for step in STEPS:
        done = run(str(REPO_ROOT / "steps" / step), "--help")
        assert done.returncode == 0 and "usage:" in done.stdout, (step, done.stderr[-2000:])

    (work / "answers.csv").write_text(ANSWERS)
    (work / "images.csv").write_text(IMAGES)
    (work / "wait_summary.json").write_text(json.dumps(WAIT))
    agg = run(str(REPO_ROOT / "steps" / "aggregate_boxes.py"), "--answers_csv", "answers.csv",
              "--images_csv", "images.csv", "--output_dir", "aggregate")
    assert agg.returncode == 0, agg.stderr[-3000:]
    assert "cnvrg_tag_boxes:" in agg.stdout and (work / "aggregate" / "boxes.csv").is_file()
    export = run(str(REPO_ROOT / "steps" / "export.py"), "--boxes_csv", "aggregate/boxes.csv",
                 "--images_csv", "images.csv", "--wait_summary", "wait_summary.json",
                 "--dataset", "ds", "--dataset_root", "datasets", "--output_dir", "export")
    assert export.returncode == 0, export.stderr[-3000:]
    # a package the image lacks shows as a warning (the report, an export format), not as a failure
    assert "warning" not in export.stderr, export.stderr[-3000:]
    coco = json.loads((work / "export" / "annotations.coco.json").read_text())
    assert {a["image_id"] for a in coco["annotations"]} == {1, 2}
    assert (work / "datasets" / "ds" / "v1" / "annotations.coco.json").is_file()


def test_the_sdk_environment_is_where_export_looks_for_it():
    from crowdboxes.cnvrg import datasets
    text = " ".join((REPO_ROOT / "Dockerfile").read_text().split())
    assert f"python -m venv {Path(datasets.SDK_PYTHON).parent.parent}" in text
    assert f"{datasets.SDK_PYTHON} -c \"import cnvrgv2\"" in text


# The calls cnvrg_put.py makes, against the real SDK's signatures (the fake in test_publish_cnvrg.py copies them)
SDK_SURFACE = """
import inspect, cnvrgv2
from cnvrgv2.modules.datasets_client import DatasetsClient
from cnvrgv2.modules.dataset import Dataset
assert callable(cnvrgv2.Cnvrg)
assert {"slug"} <= set(inspect.signature(DatasetsClient.get).parameters)
assert {"name"} <= set(inspect.signature(DatasetsClient.create).parameters)
assert {"paths", "message"} <= set(inspect.signature(Dataset.put_files).parameters)
assert callable(Dataset.reload) and "last_commit" in Dataset.available_attributes
print("sdk ok")
"""


@pytest.mark.slow
def test_cnvrg_put_runs_under_the_real_sdk_as_the_image_installs_it(tmp_path):
    """cnvrgv2 1.1.8 in a venv of its own (the Dockerfile's /opt/cnvrg-sdk): the SDK has the calls we make, and
    cnvrg_put.py runs under it up to the first HTTP call, which a closed loopback port refuses: exit 1 and
    one line on stderr, no result line."""
    from crowdboxes.cnvrg import datasets
    venv = tmp_path / "cnvrg-sdk"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    _pip(venv, "cnvrgv2==1.1.8")
    python = str(venv / "bin" / "python")
    surface = subprocess.run([python, "-c", SDK_SURFACE], capture_output=True, text=True, timeout=120)
    assert surface.returncode == 0 and "sdk ok" in surface.stdout, surface.stderr[-2000:]

    (tmp_path / "a.json").write_text("{}")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "CNVRG_URL": "http://127.0.0.1:9",
           "CNVRG_JWT_TOKEN": "not-a-token", "CNVRG_EMAIL": "ci@example.com", "CNVRG_ORGANIZATION": "org"}
    done = subprocess.run([python, "-P", str(datasets.PUT_SCRIPT), "--slug", "ds", "--folder", str(tmp_path),
                           "a.json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.startswith("ConnectionError") and len(done.stderr.strip().splitlines()) == 1
    assert "not-a-token" not in done.stderr
