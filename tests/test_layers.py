"""The layers of the tree and the shape of its modules.

The app (``sr3desk``) never imports the pipeline (``training``): ``training/`` may
import the app's model-reading code; the other way round the app would need torch
and the pipeline to start. The app reaches the exporter as a child process
(``python -m training.export``, :mod:`sr3desk.model.convert`) instead.

Within both packages: no import cycle (lazy imports and ``TYPE_CHECKING`` ones
count: a cycle broken by an import inside a function is still one), no private
name of another module (``from x import _name``, ``obj._name``), no function over
:data:`MAX_FUNCTION_LINES` lines.
"""

from __future__ import annotations

import ast
import itertools
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sr3desk"
FORBIDDEN = ("training", "torch")
CHECKED = ("sr3desk", "training")
MAX_FUNCTION_LINES = 80

# Underscored names of the standard library and of dependencies that are their
# public (or only) way to do a thing, as written at the use: ``module._name``.
ALLOWED_PRIVATE = frozenset(
    {
        "os._exit",  # leave a forked child without running the parent's cleanup
        "argparse._SubParsersAction",  # the type of add_subparsers()'s result
    }
)
# namedtuple's documented API is underscored so as not to clash with field names.
NAMEDTUPLE_API = frozenset({"_asdict", "_fields", "_make", "_replace", "_field_defaults"})


def _import_statements(path: Path, package: str = "") -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, module, imported names) of every import in ``path``; relative imports
    are resolved against ``package`` (the dotted package the file is in) when given,
    skipped otherwise."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            if node.level == 0 and node.module:
                yield node.lineno, node.module, names
            elif node.level and package:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])]), names
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield node.lineno, str(node.args[0].value), ()


def imported_modules(path: Path, package: str = "") -> list[tuple[int, str]]:
    """(line, module) of every import in a source file, lazy ones inside functions included.

    Relative imports are resolved against ``package`` (the dotted package of the
    file) when it is given, and left out otherwise.
    """
    return [(line, module) for line, module, _names in _import_statements(path, package)]


def module_files(root: Path, packages: Sequence[str]) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` file of ``packages`` under ``root``."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def module_graph(root: Path, packages: Sequence[str]) -> dict[str, dict[str, int]]:
    """module -> {imported module of ``packages``: line of the import} over every import.

    ``from package import name`` points at the submodule ``package.name`` when there
    is one, at ``package`` otherwise.
    """
    files = module_files(root, packages)
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for line, module, names in _import_statements(path, package):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in files]
            if len(targets) < len(names) or not names:
                targets.append(module)
            for target in targets:
                if target in files and target != name:
                    edges.setdefault(target, line)
        graph[name] = edges
    return graph


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _shortest_cycle(graph: dict[str, dict[str, int]], start: str, within: set[str]) -> list[str]:
    """The shortest import path from ``start`` back to itself inside ``within``."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                return [*paths[node], start]
            if nxt in within and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return [start]


def import_cycles(root: Path, packages: Sequence[str]) -> list[str]:
    """One cycle per knot of mutually importing modules, as ``a:line -> b:line -> a``."""
    graph = module_graph(root, packages)
    described = []
    for component in _strongly_connected(graph):
        cycle = _shortest_cycle(graph, component[0], set(component))
        hops = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
        described.append(" -> ".join([*hops, cycle[0]]) + f"  [{len(component)} modules knotted]")
    return described


def _own_private_names(tree: ast.AST) -> set[str]:
    """Underscored names that a module defines itself: functions, classes, module
    names and attributes set on ``self``/``cls``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_")}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(path: Path, packages: Sequence[str] = CHECKED) -> list[tuple[int, str]]:
    """(line, what) for each private name of another module that ``path`` uses.

    That is ``from x import _name`` of a module of ``packages`` (relative imports
    included), and ``obj._name`` where ``obj`` is not ``self``/``cls``/``super()``
    and the module does not define ``_name`` itself (an object of the module's own
    class), except :data:`ALLOWED_PRIVATE` and namedtuple's API.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    own = _own_private_names(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            project = node.level > 0 or (node.module or "").split(".")[0] in packages
            found += [
                (node.lineno, f"from {'.' * node.level}{node.module or ''} import {a.name}")
                for a in node.names
                if project and _is_private(a.name)
            ]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            written = ast.unparse(node)
            if (
                node.attr in own
                or node.attr in NAMEDTUPLE_API
                or written in ALLOWED_PRIVATE
                or (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                or (
                    isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Name)
                    and node.value.func.id == "super"
                )
            ):
                continue
            found.append((node.lineno, written))
    return sorted(found)


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[tuple[int, str, int]]:
    """(line, name, length) of each function in ``path`` longer than ``limit`` lines,
    counted from its ``def`` line to its last line (decorators left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return sorted(
        (node.lineno, node.name, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > limit
    )


def _sources(packages: Iterable[str] = CHECKED) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


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


def test_no_import_cycle() -> None:
    graph = module_graph(ROOT, CHECKED)
    assert len(graph) > 150  # both packages were found
    cycles = import_cycles(ROOT, CHECKED)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_check_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nfrom . import c\n")
    (pkg / "sub" / "c.py").write_text("if True:\n    from ..a import f\n")
    (pkg / "d.py").write_text("import pkg.a\n")
    assert import_cycles(tmp_path, ["pkg"]) == [
        "pkg.a (line 2) -> pkg.sub.b (line 2) -> pkg.sub.c (line 2) -> pkg.a  [3 modules knotted]"
    ]
    (pkg / "sub" / "c.py").write_text("")
    assert import_cycles(tmp_path, ["pkg"]) == []


def test_no_private_name_of_another_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in _sources()
        for line, what in private_uses(path)
    ]
    assert not offenders, "private names used across modules:\n" + "\n".join(offenders)


def test_the_private_check_sees_imports_and_attributes(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "import os\nfrom sr3desk.index.scan import _rules, walk\nfrom . import _near\n"
        "from json import _private_but_not_ours\n"
        "class A:\n    def __init__(self):\n        self._own = 1\n"
        "    def same(self, other):\n        return other._own + self._x + super()._y\n"
        "def f(embedder, point):\n    os._exit(0)\n    point._replace(x=1)\n"
        "    embedder._decode = print\n"
        "    return embedder._model, type(embedder).__name__\n"
    )
    assert private_uses(sample) == [
        (2, "from sr3desk.index.scan import _rules"),
        (3, "from . import _near"),
        (13, "embedder._decode"),
        (14, "embedder._model"),
    ]


def test_no_long_function() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name} is {length} lines"
        for path in _sources()
        for line, name, length in long_functions(path)
    ]
    assert not offenders, (
        f"functions over {MAX_FUNCTION_LINES} lines (def line to last line):\n"
        + "\n".join(offenders)
    )


def test_the_length_check_counts_from_def_to_last_line(tmp_path: Path) -> None:
    body = "".join(f"x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))
    sample = tmp_path / "m.py"
    sample.write_text(
        "@decorated\ndef fits():\n" + textwrap.indent(body, "    ") + "\n"
        "class C:\n    def too_long(self):\n" + textwrap.indent(body + "return 1\n", "        ")
    )
    # fits: def + 79 lines = 80; too_long: def + 79 + return = 81
    assert long_functions(sample) == [(MAX_FUNCTION_LINES + 4, "too_long", 81)]
