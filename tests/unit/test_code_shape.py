"""Every function stays small enough to read as the rule it implements: at most cyclomatic complexity
``MAX_COMPLEXITY`` as radon counts it (boolean operators included) and at most ``MAX_LINES`` lines.

Covers the shared package, the Lambda handlers, the local stack (``infra/local``) and the operator CLI
(``infra/cli``). A function over a limit is split into named steps.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from radon.complexity import cc_visit
from radon.visitors import Class, Function

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (
    ROOT / "layers" / "crossroute" / "crossroute",
    ROOT / "functions",
    ROOT / "infra" / "local",
    ROOT / "infra" / "cli",
)
MAX_COMPLEXITY = 15
MAX_LINES = 60


def _files() -> list[Path]:
    return sorted(path for source in SOURCES for path in source.rglob("*.py"))


def _functions(blocks: list[Function | Class]) -> list[Function]:
    """Every function radon found, once: top level, methods, nested classes' methods and closures
    (``cc_visit`` lists a class's methods both on their own and inside the class)."""
    found: dict[tuple[int, int], Function] = {}
    pending = list(blocks)
    while pending:
        block = pending.pop()
        if isinstance(block, Class):
            pending.extend([*block.methods, *block.inner_classes])
        else:
            found[(block.lineno, block.col_offset)] = block
            pending.extend(block.closures)
    return list(found.values())


def _lengths(tree: ast.Module) -> dict[tuple[int, int], int]:
    """(line, column) of each ``def`` -> its length in lines, from the ``def`` to its last line."""
    return {
        (node.lineno, node.col_offset): (node.end_lineno or node.lineno) - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


class Shape(NamedTuple):
    where: str  # path:line name
    complexity: int
    lines: int


def _shapes() -> Iterator[Shape]:
    """The complexity and length of every function in ``SOURCES``."""
    for path in _files():
        code = path.read_text(encoding="utf-8")
        lengths = _lengths(ast.parse(code, filename=str(path)))
        for function in _functions(cc_visit(code)):
            where = f"{path.relative_to(ROOT)}:{function.lineno} {function.fullname}"
            yield Shape(where, function.complexity, lengths[(function.lineno, function.col_offset)])


def test_the_sources_are_found() -> None:
    files = _files()
    assert any(path.name == "rules.py" for path in files)
    assert any(path.parts[-3:-1] == ("functions", "dispatch") for path in files)
    assert any(path.parts[-3:] == ("infra", "local", "stack.py") for path in files)
    assert any(path.parts[-4:-1] == ("infra", "local", "sandbox") for path in files)
    assert any(path.parts[-4:] == ("infra", "cli", "crossroute_cli", "importer.py") for path in files)
    assert sum(1 for _ in _shapes()) > 100


@pytest.mark.parametrize(("measure", "limit"), [("complexity", MAX_COMPLEXITY), ("lines", MAX_LINES)])
def test_no_function_is_over_the_limit(measure: str, limit: int) -> None:
    over = sorted(
        f"{shape.where}: {measure} {getattr(shape, measure)}"
        for shape in _shapes()
        if getattr(shape, measure) > limit
    )
    assert not over, f"{len(over)} function(s) over {limit} {measure}; split them into named steps:\n" + (
        "\n".join(over)
    )
