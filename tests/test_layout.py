"""The package's layout rules: imports point down only, the core stays independent, and
the library imports nothing of the command line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import dumpling_async

PACKAGE = Path(dumpling_async.__file__).parent
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = ["dumpling_async", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules *name* imports anywhere (functions included), except under
    ``if TYPE_CHECKING:``."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {module for module in found if module in modules and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles() -> None:
    """No two modules of the package import each other, directly or around a circle."""
    graph = _graph()
    assert len(graph) > 30  # the walk found the package
    assert _cycles(graph) == []


def test_the_core_imports_nothing_above_it() -> None:
    """No core module imports the client, the command line, the fake server or redis."""
    above = ("dumpling_async._client", "dumpling_async.cli", "dumpling_async.testing")
    above += ("dumpling_async.redis",)
    for name, targets in _graph().items():
        if name.startswith("dumpling_async._core"):
            bad = {t for t in targets if t.startswith(above) or t == "dumpling_async"}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_models_and_errors_are_leaves() -> None:
    """Errors, models and results import no part of the library but each other."""
    graph = _graph()
    leaves = {"dumpling_async._errors", "dumpling_async._models", "dumpling_async._webvtt"}
    allowed = leaves | {"dumpling_async._results", "dumpling_async._version"}
    for name in (*leaves, "dumpling_async._results"):
        assert graph[name] <= allowed, (name, graph[name])
    assert graph["dumpling_async._errors"] == set()


def test_importing_the_library_imports_no_command_line_dependency() -> None:
    """`import dumpling_async` loads neither click nor rich (a web backend needs neither)."""
    code = "import dumpling_async, sys; print(sorted({'click', 'rich'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    assert result.stdout.strip() == "[]"


def test_modules_and_functions_stay_small() -> None:
    """No module over 500 lines, no function over 80: each stays readable on its own."""
    for name, path in _modules().items():
        source = path.read_text(encoding="utf-8")
        assert source.count("\n") <= MAX_MODULE_LINES, f"{name} has {source.count(chr(10))} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= MAX_FUNCTION_LINES, f"{name}.{node.name}: {length} lines"


def test_command_line_without_its_extra_names_the_extra() -> None:
    """Without click or rich, `dumpling-async` says which extra to install, no traceback."""
    for missing in ("click", "rich"):
        code = (
            f"import sys; sys.modules[{missing!r}] = None\n"
            "from dumpling_async.cli import main; main(['--help'])"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert result.returncode == 2, result.stderr
        assert "pip install 'dumpling-async[cli]'" in result.stderr
        assert missing in result.stderr and "Traceback" not in result.stderr
