"""Shared modules: artifact contracts, the step kit, geometry, classes, and the package's boundaries."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdboxes import artifacts, classes, credentials, files, geometry

from crowdboxes.cnvrg import stepkit
from crowdboxes.cnvrg.stepkit import StepError

REPO = Path(__file__).resolve().parents[2]


def test_read_csv_names_missing_file_and_column(tmp_path):
    with pytest.raises(StepError, match=r"images.csv does not exist"):
        artifacts.read_csv(tmp_path / "images.csv", artifacts.IMAGES)
    path = tmp_path / "images.csv"
    path.write_text("image_id,file_name,url,width,height\na,b.jpg,http://x,10,10\n")
    with pytest.raises(StepError, match=r"images.csv: missing column\(s\) sha256"):
        artifacts.read_csv(path, artifacts.IMAGES)


def test_require_numeric_names_row_and_field(tmp_path):
    path = tmp_path / "answers.csv"
    frame = pd.DataFrame({"x": ["1", "2", "oops"], "y": ["1", None, "3"]})
    with pytest.raises(StepError, match=r"row 4, field 'x': 'oops' is not a number"):
        artifacts.require_numeric(frame.copy(), path, ("x",))
    converted = artifacts.require_numeric(frame.copy(), path, ("y",), allow_empty=True)
    assert np.isnan(converted["y"].iloc[1]) and converted["y"].iloc[2] == 3


def test_write_csv_puts_contract_columns_first_and_is_atomic(tmp_path):
    frame = pd.DataFrame({"extra": [1], "file_name": ["a.jpg"], "reason": ["not an image"]})
    path = artifacts.write_csv(frame, tmp_path, artifacts.REJECTED_IMAGES)
    assert path.read_text().splitlines()[0] == "file_name,reason,extra"
    assert [p.name for p in tmp_path.iterdir()] == ["rejected_images.csv"]  # no temp file left
    assert path.stat().st_mode & 0o044 == 0o044  # readable by group and others, as with open()
    with pytest.raises(ValueError, match="lacks column"):
        artifacts.write_csv(frame.drop(columns="reason"), tmp_path, artifacts.REJECTED_IMAGES)


def test_atomic_path_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "boxes.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxes.csv"]


def test_run_step_prints_one_redacted_line(monkeypatch, capsys):
    monkeypatch.setenv("toloka_token", "SECRET-TOKEN-123")

    def failing(argv):
        raise RuntimeError("request with SECRET-TOKEN-123 failed\nsecond line")

    assert stepkit.run_step(failing, []) == stepkit.EXIT_STEP_ERROR
    err = capsys.readouterr().err
    assert err == "error: RuntimeError: request with *** failed\n"


def test_read_token_names_the_variable_not_a_value(monkeypatch):
    monkeypatch.delenv("my_token", raising=False)
    with pytest.raises(StepError, match="'my_token'"):
        credentials.read_token("my_token")
    monkeypatch.setenv("my_token", "  abc  ")
    assert credentials.read_token("my_token") == "abc"


def test_step_parser_errors_are_step_errors():
    parser = stepkit.step_parser("demo_step", "test")
    with pytest.raises(StepError, match="unrecognized arguments: --nope"):
        parser.parse_args(["--nope", "1"])


def test_connect_rejects_bad_environment_without_network(monkeypatch):
    from crowdboxes.toloka.client import connect

    monkeypatch.setenv("toloka_token", "abc")
    with pytest.raises(StepError, match="expected production, sandbox or an http"):
        connect("staging", "toloka_token")


def test_iou_matrix_hand_computed():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 0, 0]]
    np.testing.assert_allclose(geometry.iou_matrix(a, b), [[1.0, 50 / 150, 0.0, 0.0]])


def test_clip_and_normalisation_round_trip():
    clipped = geometry.clip_to_image([[-5, -5, 10, 10], [95, 45, 10, 10], [200, 200, 5, 5]], 100, 50)
    np.testing.assert_allclose(clipped, [[0, 0, 5, 5], [95, 45, 5, 5], [100, 50, 0, 0]])
    px = [[10, 20, 30, 40]]
    np.testing.assert_allclose(geometry.normalized_to_pixels(geometry.pixels_to_normalized(px, 200, 100), 200, 100), px)


def test_classes_are_unique_and_cover_the_issue_mix():
    assert len({c.id for c in classes.SIGN_CLASSES}) == len(classes.SIGN_CLASSES)
    for name in ("stop", "yield", "speed_limit", "no_entry", "priority_road", "pedestrian_crossing", "parking",
                 "mandatory", "warning"):
        assert classes.class_by_name(name).name == name
    with pytest.raises(ValueError, match="unknown sign class 'stopp'"):
        classes.class_by_name("stopp")
    assert set(classes.VOC_LABELS.values()) <= set(classes.CLASS_NAMES)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_library_and_steps_never_import_the_local_toloka():
    offenders = []
    for path in [*(REPO / "crowdboxes").rglob("*.py"), *(REPO / "steps").glob("*.py")]:
        if "local_toloka" in path.relative_to(REPO).parts:
            continue
        if any(name.startswith("crowdboxes.local_toloka") for name in _imports(path)):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_cli_unknown_command_is_one_line():
    result = subprocess.run([sys.executable, "-m", "crowdboxes", "nope"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown command 'nope'; choose one of: " + ", ".join(__import__("crowdboxes.cli").cli.COMMANDS)]
