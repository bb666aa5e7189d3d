"""Export's publishing on cnvrg through the SDK's own interpreter (``crowdboxes.cnvrg.cnvrg_put`` run as a
script, as the step image does with ``/opt/cnvrg-sdk/bin/python``), against a fake ``cnvrgv2`` package put
on that interpreter's path: it records every call in a JSON file and never touches a network."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from crowdboxes.cnvrg import datasets
from crowdboxes.cnvrg.cnvrg_put import put_files_with_sdk
from crowdboxes.errors import CrowdboxesError

FAKE_SDK = '''
"""A fake cnvrgv2: datasets kept in $FAKE_CNVRG_STATE (JSON), every call appended to it."""
import json, os, hashlib

STATE = os.environ["FAKE_CNVRG_STATE"]


def _load():
    with open(STATE) as f:
        return json.load(f)


def _save(state):
    with open(STATE, "w") as f:
        json.dump(state, f)


class Dataset:
    def __init__(self, slug):
        self.slug = slug

    def reload(self):
        if self.slug not in _load()["datasets"]:
            raise RuntimeError("dataset not found")

    @property
    def last_commit(self):
        return _load()["datasets"][self.slug][-1] if _load()["datasets"][self.slug] else None

    def put_files(self, paths, message=""):
        if os.environ.get("FAKE_CNVRG_ECHO_TOKEN"):  # an SDK error that quotes its credentials
            raise RuntimeError(f"401 Unauthorized for token {os.environ['CNVRG_TOKEN']}")
        state = _load()
        digest = hashlib.sha1()
        for p in paths:  # relative to the working folder, as the SDK stores them
            with open(p, "rb") as f:
                digest.update(p.encode() + f.read())
        sha1 = digest.hexdigest()
        state["calls"].append(["put_files", self.slug, paths, message, os.getcwd()])
        commits = state["datasets"][self.slug]
        if not commits or commits[-1] != sha1:  # override=False: no commit when nothing changed
            commits.append(sha1)
        _save(state)
        print("uploading... done")  # the SDK may log on stdout before the result line
        return commits[-1]


class Datasets:
    def get(self, slug):
        return Dataset(slug)

    def create(self, name, category="general"):
        state = _load()
        state["calls"].append(["create", name])
        state["datasets"][name] = []
        _save(state)
        return Dataset(name)


class Cnvrg:
    def __init__(self):
        if not (os.environ.get("CNVRG_URL") and os.environ.get("CNVRG_TOKEN")):
            raise RuntimeError("CnvrgLoginError: Can't authenticate using environment variables/config")
        state = _load()
        state["calls"].append(["login", os.environ["CNVRG_URL"]])
        _save(state)
        self.datasets = Datasets()
'''


@pytest.fixture()
def fake_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake cnvrgv2 for a separate interpreter (this one, with the fake on PYTHONPATH) and cnvrg's job
    variables set; returns the state file. cnvrgv2 is not importable in this process."""
    site = tmp_path / "sdk-site"
    (site / "cnvrgv2").mkdir(parents=True)
    (site / "cnvrgv2" / "__init__.py").write_text(textwrap.dedent(FAKE_SDK))
    state = tmp_path / "cnvrg-state.json"
    state.write_text(json.dumps({"datasets": {}, "calls": []}))
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("FAKE_CNVRG_STATE", str(state))
    monkeypatch.setenv(datasets.SDK_PYTHON_ENV, sys.executable)
    monkeypatch.setenv("CNVRG_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CNVRG_TOKEN", "fake-token-for-tests")
    monkeypatch.delitem(sys.modules, "cnvrgv2", raising=False)
    assert not datasets._sdk_in_process()
    return state


def _files(folder: Path, **contents: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        (folder / name.replace("_json", ".json")).write_text(text)
    return [folder / name.replace("_json", ".json") for name in contents]


def test_export_on_cnvrg_publishes_through_the_sdk_interpreter(tmp_path, fake_sdk):
    files = _files(tmp_path / "out", annotations_json='{"images": []}', summary_json="{}")
    cwd = os.getcwd()
    first = datasets.publish("road_signs_annotations", files, root=tmp_path / "local", message="run 1")
    assert os.getcwd() == cwd
    state = json.loads(fake_sdk.read_text())
    assert state["calls"] == [["login", "http://127.0.0.1:9"], ["create", "road_signs_annotations"],
                              ["put_files", "road_signs_annotations", ["annotations.json", "summary.json"], "run 1",
                               str((tmp_path / "out").resolve())]]
    assert first.kind == "cnvrg" and first.created and first.version == state["datasets"]["road_signs_annotations"][0]
    assert not (tmp_path / "local").exists()  # nothing went to the local store

    # the same files again: the dataset exists (no create), cnvrg keeps the latest commit
    again = datasets.publish("road_signs_annotations", files, root=tmp_path / "local", message="run 2")
    assert (again.version, again.created) == (first.version, False)
    # changed files: a new commit
    files[1].write_text('{"n": 1}')
    third = datasets.publish("road_signs_annotations", files, root=tmp_path / "local")
    assert third.created and third.version != first.version
    calls = [c[0] for c in json.loads(fake_sdk.read_text())["calls"]]
    assert calls == ["login", "create", "put_files", "login", "put_files", "login", "put_files"]


def test_an_sdk_failure_is_one_clear_line_without_the_token(tmp_path, fake_sdk, monkeypatch):
    monkeypatch.delenv("CNVRG_TOKEN")
    monkeypatch.setenv("CNVRG_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CNVRG_JWT_TOKEN", "jwt-secret-value")  # on_cnvrg() is true, the fake refuses it
    files = _files(tmp_path / "out", a_json="{}")
    with pytest.raises(CrowdboxesError) as caught:
        datasets.publish("ds", files)
    message = str(caught.value)
    assert "\n" not in message and "CnvrgLoginError" in message and "output folder" in message
    assert "jwt-secret-value" not in message


def test_without_any_sdk_the_error_names_the_image_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "cnvrgv2", raising=False)
    monkeypatch.setattr(datasets, "_sdk_in_process", lambda: False)
    monkeypatch.setattr(datasets, "SDK_PYTHON", str(tmp_path / "no" / "python"))
    monkeypatch.delenv(datasets.SDK_PYTHON_ENV, raising=False)
    files = _files(tmp_path / "out", a_json="{}")
    with pytest.raises(CrowdboxesError, match=f"not installed.*{datasets.SDK_PYTHON_ENV}"):
        datasets.publish_cnvrg("ds", files)


def test_the_sdk_interpreter_is_the_variable_then_the_image_path(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "SDK_PYTHON", str(tmp_path / "python"))
    assert datasets.sdk_python({}) is None
    (tmp_path / "python").write_text("")
    assert datasets.sdk_python({}) == str(tmp_path / "python")
    assert datasets.sdk_python({datasets.SDK_PYTHON_ENV: "/x/python"}) == "/x/python"


def test_the_script_imports_nothing_of_crowdboxes():
    """It runs in the SDK's environment, where crowdboxes' dependencies are not installed."""
    import ast
    tree = ast.parse(Path(datasets.PUT_SCRIPT).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"cnvrgv2"}, imported


def test_put_files_with_sdk_reports_an_unchanged_commit(tmp_path):
    """In-process use: an existing dataset whose last commit equals the returned one is not a new version."""
    class Dataset:
        last_commit = "abc"

        def reload(self) -> None:
            pass

        def put_files(self, paths: list[str], message: str = "") -> str:
            assert os.getcwd() == str(tmp_path)
            return "abc"

    class Sdk:
        class Cnvrg:
            def __init__(self) -> None:
                self.datasets = type("D", (), {"get": lambda self, slug: Dataset()})()

    assert put_files_with_sdk(Sdk, "ds", str(tmp_path), ["a.json"]) == ("abc", False)


def test_an_sdk_failure_in_process_is_one_clear_line(tmp_path, monkeypatch):
    import types

    def refuse() -> None:
        raise ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded\nmore")

    monkeypatch.setitem(sys.modules, "cnvrgv2", types.SimpleNamespace(Cnvrg=refuse))
    files = _files(tmp_path / "out", a_json="{}")
    with pytest.raises(CrowdboxesError, match=r"^publishing to cnvrg dataset ds failed: ConnectionError: "
                                              r"HTTPConnectionPool.*retries exceeded; the files are in") as caught:
        datasets.publish_cnvrg("ds", files)
    assert "\n" not in str(caught.value)


def test_an_sdk_error_that_quotes_the_token_reaches_the_log_redacted(tmp_path, fake_sdk, monkeypatch):
    monkeypatch.setenv("FAKE_CNVRG_ECHO_TOKEN", "1")
    files = _files(tmp_path / "out", a_json="{}")
    with pytest.raises(CrowdboxesError) as caught:
        datasets.publish("ds", files)
    message = str(caught.value)
    assert "401 Unauthorized" in message and "fake-token-for-tests" not in message and "***" in message
