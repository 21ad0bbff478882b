"""The floor plan, read from the code: which package may import which, no import circles, and
light imports where apps and the CLI start.

Imports are read with `ast` from every module (function-level imports included), so a lazy
import that breaks the layering fails here as well as a top-level one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "compiler": "bertc.compiler",
    "targets": "bertc.targets",
    "calibration": "bertc.calibration",
}


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    parts[0] = PACKAGES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for folder in PACKAGES
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Absolute names of the bertc modules this file imports (`from x import y` counts x, and
    x.y where that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    known = modules()
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("bertc")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bertc"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & set(known)
    return found


@pytest.mark.parametrize("layer", ["bertc.targets", "bertc.calibration"])
def test_targets_and_calibration_import_only_the_core_of_the_compiler(layer: str) -> None:
    offending = {
        name: sorted(
            imported
            for imported in imports(path)
            if imported.startswith("bertc.compiler")
            and not imported.startswith("bertc.compiler.core")
        )
        for name, path in modules().items()
        if name.startswith(layer)
    }
    assert {name: found for name, found in offending.items() if found} == {}


def test_the_core_imports_nothing_above_it() -> None:
    offending = {
        name: sorted(i for i in imports(path) if not i.startswith("bertc.compiler.core"))
        for name, path in modules().items()
        if name.startswith("bertc.compiler.core")
    }
    assert {name: found for name, found in offending.items() if found} == {}


def test_a_runtime_package_does_not_import_another_runtime_package() -> None:
    runtime_packages = ("bertc.targets.ort", "bertc.targets.ov")
    offending = {}
    for name, path in modules().items():
        own = next((p for p in runtime_packages if name.startswith(p + ".")), None)
        if own is None:
            continue
        other = sorted(
            i for i in imports(path) if i.startswith(runtime_packages) and not i.startswith(own)
        )
        if other:
            offending[name] = other
    assert offending == {}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph as a list of module names, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_finds_a_circle_and_only_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_between_modules() -> None:
    known = modules()
    graph = {}
    for name, path in known.items():
        targets = set()
        for imported in imports(path):
            # `from bertc.targets import x` reads the package's __init__.
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    # A package's __init__ that lazily re-exports its own modules is not a circle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    assert find_cycle(graph) is None


LIGHT_IMPORTS = {
    "bertc.compiler": ("torch", "transformers", "onnxruntime", "openvino", "nncf"),
    "bertc.targets": ("torch", "transformers"),
    "bertc.targets.base": ("torch", "transformers"),
    "bertc.compiler.core.manifest": ("torch", "transformers", "onnxruntime", "openvino"),
    # The CLI checks --task with the task table while it parses: no readers (pandas), no metrics.
    "bertc.calibration": ("torch", "transformers", "pandas", "scipy", "sklearn"),
    "bertc.calibration.tasks": ("torch", "transformers", "pandas", "scipy", "sklearn", "numpy"),
    # The CLI refuses a bad flag before anything heavy loads (tests/compiler/cli).
    "bertc.compiler.cli": ("torch", "transformers", "onnx", "onnxruntime", "openvino", "numpy"),
}


@pytest.mark.parametrize("module", sorted(LIGHT_IMPORTS))
def test_importing_stays_light(module: str) -> None:
    heavy = LIGHT_IMPORTS[module]
    code = f"import sys, {module}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"import {module} pulled in {result.stdout.strip()}"
