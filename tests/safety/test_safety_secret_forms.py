"""A planted token appears nowhere, in whichever form its param arrives: ``--token_env=VALUE`` (one word) as
well as ``--token_env VALUE``, in a task's command as well as in its YAML params.

The flows are the shipped flow's Create Project task with its command edited as a user would edit the
``input`` line; they run through the local flow runner, and every file it writes is searched.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from crowdboxes.cnvrg.flow import FlowError, load_flow
from crowdboxes.cnvrg.runner import FlowRunner
from crowdboxes.credentials import param_secrets
from helpers_safety import REPO_ROOT, every_text, sub_flow

PLANTED = "AQAAAAAplantedTokenQ7x9Zk"  # shaped like a Toloka OAuth token (mixed case: not a variable's name)
DEAD_TOLOKA = "http://127.0.0.1:9"  # nothing listens: no step may get further than reading its token


def edited_runner(tmp_path: Path, edit: Callable[[dict[str, Any]], None],
                  overrides: list[str] | None = None) -> tuple[FlowRunner, io.StringIO, io.StringIO]:
    """A runner of the shipped Create Project task after ``edit(task)`` (the task's YAML as a dict)."""
    path = sub_flow(tmp_path, ["Create Project"])
    spec = yaml.safe_load(path.read_text())
    edit(spec["tasks"][0])
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    out, err = io.StringIO(), io.StringIO()
    made = FlowRunner(load_flow(path), project_dir=REPO_ROOT, runs_dir=tmp_path / "runs", out=out, err=err,
                      check_steps=False, env_file=empty_env, overrides=overrides)
    return made, out, err


def command_says(words: str) -> Callable[[dict[str, Any]], None]:
    """An edit that appends ``words`` to the task's command and drops the params they set (so they count)."""
    keys = {w[2:].partition("=")[0] for w in words.split() if w.startswith("--")}

    def edit(task: dict[str, Any]) -> None:
        task["input"] += f" {words}"
        task["params"] = [p for p in task["params"] if p["key"] not in keys]
    return edit


@pytest.mark.parametrize("words", [f"--token_env={PLANTED}", f"--token_env {PLANTED}"])
def test_a_token_pasted_into_the_command_is_refused_before_anything_runs_without_showing_it(tmp_path, words):
    run, out, err = edited_runner(tmp_path, command_says(words))
    with pytest.raises(FlowError) as caught:
        run.run()
    assert "task 'Create Project' command: it contains a secret" in str(caught.value), str(caught.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert PLANTED not in str(caught.value) + every_text(tmp_path / "runs") + out.getvalue() + err.getvalue()


def test_a_token_env_joined_with_its_value_in_a_yaml_param_is_refused_without_showing_it(tmp_path):
    run, out, err = edited_runner(tmp_path, lambda task: None, overrides=[f"project_key=--token_env={PLANTED}"])
    with pytest.raises(FlowError) as caught:
        run.run()
    assert "param 'project_key': its value contains a secret (--token_env=***)" in str(caught.value)
    assert PLANTED not in str(caught.value) + out.getvalue() + err.getvalue()


@pytest.mark.parametrize("form", ["--token_env=TOLOKA_OAUTH", "--token_env TOLOKA_OAUTH"])
def test_the_variable_a_joined_token_env_names_is_a_secret_in_every_param(tmp_path, monkeypatch, form):
    monkeypatch.setenv("TOLOKA_OAUTH", PLANTED)  # its name does not say "secret": only token_env tells
    run, out, err = edited_runner(tmp_path, command_says(form), overrides=[f"project_key={PLANTED}"])
    with pytest.raises(FlowError) as caught:
        run.run()
    assert "param 'project_key': its value contains a secret (***)" in str(caught.value)
    assert PLANTED not in str(caught.value) + out.getvalue() + err.getvalue()


def test_a_step_run_with_a_joined_token_env_leaves_the_token_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv("TOLOKA_OAUTH", PLANTED)  # its name does not say "secret": only token_env tells
    run, out, err = edited_runner(tmp_path, command_says(f"--token_env=TOLOKA_OAUTH --toloka_env={DEAD_TOLOKA} "
                                                         "--config_dir=no_such_configs"))
    report = run.run()
    assert not report.ok and "--config_dir no_such_configs is not a folder" in report.results[0].error
    assert {"log.txt", "result.json", "run.json"} <= {p.name for p in (tmp_path / "runs").rglob("*")}
    assert PLANTED not in every_text(tmp_path / "runs") + out.getvalue() + err.getvalue()
    assert PLANTED in run.redact.values  # masked wherever the step or Toloka might quote it


@pytest.mark.parametrize("args", [["--token_env=TOLOKA_OAUTH", f"--config_dir={PLANTED}"],
                                  ["--token_env=TOLOKA_OAUTH", "--config_dir", PLANTED],
                                  ["--token_env", "TOLOKA_OAUTH", f"--config_dir={PLANTED}"]])
def test_the_step_alone_masks_the_token_a_joined_token_env_names(run_step_in_process, args):
    proc = run_step_in_process("create_project.py", [*args, "--toloka_env", DEAD_TOLOKA], {"TOLOKA_OAUTH": PLANTED})
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --config_dir *** is not a folder"


def test_param_secrets_reads_both_forms_and_never_takes_the_next_option_for_a_value(monkeypatch):
    monkeypatch.setenv("TOLOKA_OAUTH", PLANTED)
    assert param_secrets(["--token_env=TOLOKA_OAUTH"]) == [PLANTED]
    assert param_secrets(["--token_env", "TOLOKA_OAUTH"]) == [PLANTED]
    assert param_secrets([f"--token_env={PLANTED}"]) == [PLANTED]
    assert param_secrets(["--s3_secret_env=OTHER"], {"OTHER": "s3-secret-value"}) == ["s3-secret-value"]
    assert param_secrets(["--token_env", "--toloka_env", "x", "--token_env=", "--token_env=toloka_token"]) == []
