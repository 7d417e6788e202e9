"""No import cycles: each train module imports alone, and the module graph of crowdvlm has no loop.

The graph counts every ``import`` statement, those inside functions too (a lazy import that closes a loop is
still a cycle: it only moves the failure to run time), except those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

import crowdvlm

PACKAGE = Path(crowdvlm.__file__).parent
TRAIN_MODULES = sorted(
    f"crowdvlm.train.{p.stem}" for p in (PACKAGE / "train").glob("*.py") if p.stem != "__init__"
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The crowdvlm modules ``path`` imports (``from a.b import c`` counts ``a.b.c`` when that is a module)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in known}


@functools.cache
def module_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    # A package's __init__ is not an edge target: importing a.b runs a/__init__ first, but that is no
    # dependency of a.b on a's other modules unless a/__init__ imports them at module level (checked below).
    return {name: imports_of(path, known) - {name} for name, path in files.items()}


def cycles_through(graph: dict[str, set[str]], start: str) -> list[list[str]]:
    """Every simple import loop that returns to ``start`` (depth-first)."""
    loops, stack = [], [(start, [start])]
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                loops.append([*path, start])
            elif nxt not in path:
                stack.append((nxt, [*path, nxt]))
    return loops


def test_the_graph_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a.b\ndef f():\n    from a import c\n"
    )
    assert imports_of(source, {"a", "a.b", "a.c"}) == {"a", "a.c"}


@pytest.mark.parametrize("module", TRAIN_MODULES)
def test_train_module_is_in_no_import_cycle(module):
    loops = cycles_through(module_graph(), module)
    assert not loops, f"{module} imports itself through: " + "; ".join(" -> ".join(loop) for loop in loops)


def test_no_crowdvlm_module_is_in_an_import_cycle():
    graph = module_graph()
    loops = [loop for module in sorted(graph) for loop in cycles_through(graph, module)[:1]]
    assert not loops, "import cycles: " + "; ".join(" -> ".join(loop) for loop in loops)


# The modules of the two cycles that were broken (checks <-> config, cli <-> grpo/sft), each imported first
# in a fresh interpreter; grpo stands for sft too (the same imports; each costs ~10 s of transformers import).
ALONE = ["crowdvlm.train.checks", "crowdvlm.train.config", "crowdvlm.train.cli", "crowdvlm.train.grpo"]


@pytest.mark.parametrize("module", ALONE)
def test_train_module_imports_alone_in_a_fresh_interpreter(module):
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"importing {module} alone failed:\n{result.stderr[-2000:]}"
