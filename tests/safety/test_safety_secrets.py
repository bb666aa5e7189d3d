"""A planted token appears nowhere the flow runner writes or prints, whatever param it arrives in.

The token's variable has a name that does not say "secret" (``TOLOKA_OAUTH``), so only the runner's rule
"the variable a token_env param names is a secret, and so is a token_env value that is not a name" hides it.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from crowdboxes.cnvrg.flow import FlowError, check_flow
from crowdboxes.credentials import is_variable_name
from helpers_safety import REPO_ROOT, every_text, runner

PLANTED = "AQAAAAAplantedTokenQ7x9Zk"  # shaped like a Toloka OAuth token (mixed case: not a variable's name)
DEAD_TOLOKA = "http://127.0.0.1:9"  # nothing listens: no step may get further than reading its token


def test_a_token_pasted_into_token_env_is_refused_before_anything_runs_without_showing_it(tmp_path, monkeypatch):
    monkeypatch.delenv("toloka_token", raising=False)
    run, out, err = runner(tmp_path, ["Create Project"],
                           overrides=[f"token_env={PLANTED}", f"toloka_env={DEAD_TOLOKA}"])
    with pytest.raises(FlowError) as caught:
        run.run()
    assert "param 'token_env': its value contains a secret (***)" in str(caught.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert PLANTED not in str(caught.value) + every_text(tmp_path) + out.getvalue() + err.getvalue()


def test_a_token_in_any_other_param_is_refused_without_showing_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TOLOKA_OAUTH", PLANTED)
    run, out, err = runner(tmp_path, ["Create Project"],
                           overrides=["token_env=TOLOKA_OAUTH", f"toloka_env={DEAD_TOLOKA}",
                                      f"project_key={PLANTED}"])
    with pytest.raises(FlowError) as caught:
        run.run()
    assert "param 'project_key': its value contains a secret (***)" in str(caught.value)
    assert PLANTED not in str(caught.value) + every_text(tmp_path) + out.getvalue() + err.getvalue()


@pytest.fixture()
def echoing_toloka():
    """An HTTP server that refuses every request with 401 and quotes the Authorization header it got."""
    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's API
            body = json.dumps({"code": "AUTHENTICATION_ERROR",
                               "message": f"bad token {self.headers.get('Authorization')}"}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_step_that_fails_after_reading_the_token_leaves_it_nowhere(tmp_path, monkeypatch, echoing_toloka):
    monkeypatch.setenv("TOLOKA_OAUTH", PLANTED)
    run, out, err = runner(tmp_path, ["Create Project"], overrides=["token_env=TOLOKA_OAUTH",
                                                                    f"toloka_env={echoing_toloka}"])
    report = run.run()
    assert not report.ok and "rejected the token" in report.results[0].error, report.results[0].error
    assert PLANTED not in every_text(tmp_path / "runs") + out.getvalue() + err.getvalue()
    assert PLANTED in run.redact.values  # the runner knows it as a secret although its name says nothing


@pytest.mark.parametrize("value", [PLANTED, "abc-123-def", "1fa3c0ffee", "x y"])
def test_the_step_alone_never_quotes_a_token_env_that_is_not_a_name(value, run_step_in_process):
    proc = run_step_in_process("create_project.py", ["--token_env", value, "--toloka_env", DEAD_TOLOKA])
    assert proc.returncode == 2 and value not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_what_reads_as_a_variable_name():
    assert is_variable_name("toloka_token") and is_variable_name("MY_TOLOKA") and is_variable_name("_X1")
    assert not any(map(is_variable_name, [PLANTED, "y0_AgAAAAB", "1abc", "a-b", "", "x" * 65]))


def test_the_step_alone_masks_the_token_its_token_env_names_in_whatever_param_it_lands(run_step_in_process):
    proc = run_step_in_process("create_project.py", ["--token_env", "TOLOKA_OAUTH", "--toloka_env", DEAD_TOLOKA,
                                                     "--config_dir", PLANTED], {"TOLOKA_OAUTH": PLANTED})
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --config_dir *** is not a folder"


def test_flow_checks_never_quote_a_token_env_value(tmp_path):
    run, _, _ = runner(tmp_path, ["Create Project"], overrides=[f"token_env={PLANTED}|x y"])
    with pytest.raises(FlowError) as caught:
        run.run()
    assert "param 'token_env'" in str(caught.value) and PLANTED not in str(caught.value)
    problems = check_flow(run.flow, REPO_ROOT, check_steps=False)
    assert any("param 'token_env': value (not shown) has" in p for p in problems), problems
    assert not any(PLANTED in p for p in problems)


def test_a_set_item_without_a_value_is_quoted_only_when_it_reads_as_a_param(tmp_path):
    for item, shown in [(PLANTED, "(not shown)"), ("toloka_env", "'toloka_env'"),
                        ("Create Project.toloka_env", "'Create Project.toloka_env'")]:
        with pytest.raises(FlowError) as caught:
            runner(tmp_path, ["Create Project"], overrides=[item])
        assert str(caught.value).startswith(f"--set {shown}: expected key=value")
