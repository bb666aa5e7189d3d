"""The local Toloka (server, scheduler, crowd) must not import the product it is used to test: a simulator
that shares the product's idea of a right answer cannot show the product's bugs."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "crowdboxes" / "local_toloka"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent.parent).with_suffix("").parts)


def _imported_modules(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file; ``package``: its dotted module name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = package or _module_name(path)  # a/b/__init__ -> level 1 is a.b, like a module a.b.x
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            if name == "crowdboxes":  # from crowdboxes import x
                out += [(node.lineno, f"crowdboxes.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            out.append((node.lineno, str(node.args[0].value)))
    return out


def _is_product(name: str) -> bool:
    return (name == "crowdboxes" or name.startswith("crowdboxes.")) and not (
        name == "crowdboxes.local_toloka" or name.startswith("crowdboxes.local_toloka."))


def test_nothing_under_local_toloka_imports_the_product():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10 and any(f.parent.name == "crowd" for f in files)
    offenders = [f"{f.relative_to(PACKAGE)}:{line}: {name}" for f in files for line, name in _imported_modules(f)
                 if _is_product(name)]
    assert not offenders, "local Toloka modules import the product:\n" + "\n".join(offenders)


def test_the_check_catches_product_imports(tmp_path):
    fake = tmp_path / "probe.py"
    where = "crowdboxes.local_toloka.crowd.probe"
    samples = ["from crowdboxes.evaluation.truth import TruthIndex\n", "import crowdboxes.evaluation.metrics\n",
               "from crowdboxes import artifacts\n", "from ... import geometry\n",
               "def f():\n    from crowdboxes.classes import CLASS_NAMES\n",
               "import importlib\nimportlib.import_module('crowdboxes.cnvrg.stepkit')\n"]
    for sample in samples:
        fake.write_text(sample)
        assert any(_is_product(name) for _, name in _imported_modules(fake, where)), sample
    fake.write_text("from crowdboxes.local_toloka.crowd import spec\nfrom . import values\nfrom .. import db\n")
    assert not any(_is_product(name) for _, name in _imported_modules(fake, where))
