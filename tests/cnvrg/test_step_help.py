"""Every step's ``--help`` (run in process, as cnvrg users read it): each option has a help line showing its
default, spelled as a flow param (``none`` for None)."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

from crowdboxes.cnvrg.stepkit import shown_default

STEPS = sorted((Path(__file__).resolve().parents[2] / "steps").glob("*.py"))


def load_step(path: Path):
    spec = importlib.util.spec_from_file_location(f"step_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def option_blocks(text: str) -> dict[str, str]:
    """``--name`` -> its help text with whitespace collapsed (argparse wraps long lines)."""
    section = text.split("\noptions:\n", 1)[1]
    blocks = re.split(r"\n(?=  -)", section)
    found = {}
    for block in blocks:
        match = re.match(r"\s*(?:-\w, )?(--\w+)(?: [A-Z_]+| \{[^}]*\})?(.*)", block, re.S)
        assert match, block
        found[match.group(1)] = " ".join(match.group(2).split())
    return found


@pytest.mark.parametrize("path", STEPS, ids=lambda p: p.name)
def test_every_option_has_a_help_line_with_its_default(path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    module = load_step(path)
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    blocks = option_blocks(capsys.readouterr().out)
    options = [a for a in module.build_parser()._actions if not isinstance(a, argparse._HelpAction)]
    assert options and set(blocks) == {a.option_strings[-1] for a in options} | {"--help"}
    for action in options:
        text = blocks[action.option_strings[-1]]
        assert action.help and text, f"{path.name} {action.option_strings[-1]}: no help"
        # the default as the formatter shows it, or the help's own "(default ..." wording
        assert f"(default: {shown_default(action.default)})" in text or "(default" in action.help, (
            f"{path.name} {action.option_strings[-1]}: the help does not show its default: {text!r}")


def test_a_default_with_a_percent_sign_is_shown_as_is(capsys):
    from crowdboxes.cnvrg.stepkit import step_parser

    parser = step_parser("demo", "demo")
    parser.add_argument("--ratio", default="50%", help="a share")
    parser.add_argument("--when", default=None, help="a time")
    text = " ".join(parser.format_help().split())
    assert "a share (default: 50%)" in text and "a time (default: none)" in text
