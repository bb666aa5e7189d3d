"""The layout rules a newcomer relies on: thin steps, modules of readable size."""

import ast
import io
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEP_LIMIT, MODULE_LIMIT = 60, 600


def code_lines(path: Path) -> int:
    """Lines holding code: blank lines, comments and docstrings are left out."""
    source = path.read_text(encoding="utf-8")
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                          tokenize.ENDMARKER):
            continue
        lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in docstrings)
    return len(lines)


def test_code_lines_leave_out_docstrings_comments_and_blanks(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('"""Doc\n\nstring."""\n\n# comment\nx = 1  # trailing\n\n\ndef f():\n    """Doc."""\n'
                    '    return (1,\n            2)\n')
    assert code_lines(path) == 4  # x = 1, def f, and the two lines of the return


@pytest.mark.parametrize("step", sorted((REPO / "steps").glob("*.py")), ids=lambda p: p.name)
def test_each_step_is_a_thin_script(step):
    assert code_lines(step) <= STEP_LIMIT, f"{step.name}: {code_lines(step)} lines of code; move logic into the package"


def test_no_package_module_is_too_long():
    too_long = {str(p.relative_to(REPO)): n for p in sorted((REPO / "crowdboxes").rglob("*.py"))
                if (n := code_lines(p)) > MODULE_LIMIT}
    assert not too_long, f"modules over {MODULE_LIMIT} lines of code: {too_long}"
