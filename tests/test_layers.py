"""The layers of the tree: the app (``sr3desk``) never imports the pipeline (``training``).

``training/`` may import the app's model-reading code; the other way round the app
would need torch and the pipeline to start. The app reaches the exporter as a child
process (``python -m training.export``, :mod:`sr3desk.model.convert`) instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sr3desk"
FORBIDDEN = ("training", "torch")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a source file, lazy ones inside functions included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def test_the_app_imports_neither_training_nor_torch() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 50  # the whole package was found
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: imports {module}"
        for path in sources
        for line, module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN
    ]
    assert not offenders, "\n".join(offenders)


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "def f():\n    from training.export import convert\n"
        "import importlib\nimportlib.import_module('torch')\n"
    )
    assert sorted(m for _, m in imported_modules(sample)) == [
        "importlib",
        "torch",
        "training.export",
    ]
