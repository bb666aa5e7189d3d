"""The shipped flow cut down to a few of its tasks, run by the local flow runner from the repository."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from crowdboxes.cnvrg.flow import load_flow
from crowdboxes.cnvrg.runner import FlowRunner

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_FLOW = REPO_ROOT / "traffic_signs_annotation.yaml"


def sub_flow(tmp_path: Path, titles: list[str]) -> Path:
    """A flow YAML in ``tmp_path`` holding the shipped flow's tasks ``titles`` (as shipped) and their relations."""
    spec = yaml.safe_load(SHIPPED_FLOW.read_text())
    spec["tasks"] = [t for t in spec["tasks"] if t["title"] in titles]
    spec["relations"] = [r for r in spec.get("relations") or [] if r["from"] in titles and r["to"] in titles]
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def runner(tmp_path: Path, titles: list[str], **kw) -> tuple[FlowRunner, io.StringIO, io.StringIO]:
    """A runner of :func:`sub_flow` over the repository's code, runs in ``tmp_path/runs``; (runner, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    made = FlowRunner(load_flow(sub_flow(tmp_path, titles)), project_dir=REPO_ROOT, runs_dir=tmp_path / "runs",
                      out=out, err=err, check_steps=False, env_file=kw.pop("env_file", None) or _no_env(tmp_path),
                      **kw)
    return made, out, err


def _no_env(tmp_path: Path) -> Path:
    """An empty secrets file (the repository's own .env, if any, is not this test's business)."""
    path = tmp_path / "empty.env"
    path.write_text("")
    return path


def every_text(*roots: Path) -> str:
    """The text of every file under ``roots`` (undecodable bytes replaced)."""
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for root in roots for p in root.rglob("*")
                     if p.is_file() and not p.is_symlink())
