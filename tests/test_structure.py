"""The shape of the code: dependencies point one way, runtime <- train <- export, with no cycle.

Every import of a nametool module counts, at the top of a file or inside a function (a
lazy import is still a dependency). The ``nametool`` CLI offers ``export`` by name
(train/cli.py), which is how the training package stays below the export package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "train", "export", "models")
# what each package may import besides itself (models holds only the bundled files)
ALLOWED = {"models": set(), "runtime": {"models"}, "train": {"runtime", "models"},
           "export": {"runtime", "train", "models"}}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            name = f"nametool.{package}" + ("" if path.stem == "__init__" else f".{path.stem}")
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The nametool modules a file imports, wherever the import statement stands."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name.startswith("nametool."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nametool."):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                out.add(child if child in known else node.module)
    return {name for name in out if name in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def package(module: str) -> str:
    return module.split(".")[1]


def test_packages_depend_one_way():
    wrong = sorted(f"{source} imports {target}" for source, targets in graph().items() for target in targets
                   if package(target) != package(source) and package(target) not in ALLOWED[package(source)])
    assert wrong == []


def test_no_module_imports_itself_round_a_cycle():
    assert cycle(graph()) is None


def test_the_cycle_finder_finds_cycles():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_lazy_imports():
    edges = graph()
    assert "nametool.train.checkpoint" in edges["nametool.train.commands"]  # imported inside functions only
    assert "nametool.runtime.generation" in edges["nametool.runtime.model"]  # "from nametool.runtime import x"


def test_no_module_shadows_the_standard_library():
    import sys

    shadows = [name for name in modules() if name.rsplit(".", 1)[-1] in sys.stdlib_module_names]
    assert shadows == []
