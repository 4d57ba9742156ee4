"""The shape of the package: use cases free of the AWS SDKs, and no import cycles.

Ports and adapters: the use cases (``ingest``, ``dispatch``, ``send_door``, the read side ``contacts``)
depend on ``crossroute.ports``; DynamoDB, SQS and EventBridge stay in the adapters the functions wire in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "crossroute"
SDKS = ("pynamodb", "botocore", "boto3", "aws_lambda_powertools")
USE_CASES = ("crossroute.ingest", "crossroute.dispatch", "crossroute.send_door", "crossroute.contacts")


@pytest.mark.parametrize("module", USE_CASES)
def test_a_use_case_imports_no_aws_sdk(module: str) -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(PACKAGE)!r}); import {module}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(SDKS)!r}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", f"import {module} loads {loaded.stdout.strip()}"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((PACKAGE / "crossroute").rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every crossroute module ``path`` imports, at any level (functions and TYPE_CHECKING included)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crossroute"):
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            yield from submodules or [node.module]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports(path, known)) - {name} for name, path in known.items()}


def package_of(module: str) -> str:
    """``crossroute.identity.rules`` -> ``crossroute.identity``; a top-level module is its own unit."""
    parts = module.split(".")
    return ".".join(parts[:2])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_is_read() -> None:
    edges = graph()
    assert "crossroute.ports" in edges["crossroute.ingest"]
    assert "crossroute.parsing.context" in edges["crossroute.parsing.meta"]


def test_no_import_cycles_between_modules() -> None:
    assert cycles(graph()) == []


def test_no_import_cycles_between_packages() -> None:
    edges: dict[str, set[str]] = {}
    for module, targets in graph().items():
        unit = package_of(module)
        edges.setdefault(unit, set()).update(package_of(t) for t in targets if package_of(t) != unit)
    assert cycles(edges) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
