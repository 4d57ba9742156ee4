"""The tests' own layout: a test module never imports another test module (or a conftest).

What several modules share lives in ``tests/support.py`` (helpers and builders), ``tests/fakes/`` (the
in-memory fakes of the ports) or the ``conftest.py`` of the directory that needs it (pytest fixtures, which
pytest hands to the tests itself). Importing a test module instead runs its tests' imports and
module-level code, re-registers its fixtures, and ties its helpers to whatever that module tests.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
TEST_MODULES = sorted(TESTS.rglob("test_*.py"))
# tests.<dir>.test_<name> or tests.<dir>.conftest, and anything under them
FORBIDDEN = re.compile(r"^tests\.[A-Za-z_][A-Za-z0-9_]*\.(test_[A-Za-z0-9_]*|conftest)(\.|$)")


def imported_modules(source: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, a module of ``package`` (relative
    imports resolved); for ``from m import n``, both ``m`` and ``m.n`` (``n`` may be a module)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{module}" if module else base
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    parts = path.relative_to(REPO).with_suffix("").parts
    package = ".".join(parts if path.name == "__init__.py" else parts[:-1])
    return imported_modules(path.read_text(), package)


def forbidden_imports(path: Path) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for line, module in imports_of(path)
        if FORBIDDEN.match(module)
    ]


def test_there_are_test_modules_to_check() -> None:
    assert len(TEST_MODULES) > 20
    assert {p.parent.name for p in TEST_MODULES} >= {"unit", "adapters", "e2e", "build"}


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: str(p.relative_to(TESTS)))
def test_a_test_module_imports_no_other_test_module(path: Path) -> None:
    assert forbidden_imports(path) == []


def test_no_two_test_modules_share_a_name() -> None:
    """The test directories are not packages: pytest imports each module by its file name, so two
    ``test_x.py`` in two directories stop the run at collection ("import file mismatch")."""
    names = [path.name for path in TEST_MODULES]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_conftest_and_support_import_no_test_module() -> None:
    shared = [*TESTS.rglob("conftest.py"), TESTS / "support.py", *(TESTS / "fakes").rglob("*.py")]
    assert [problem for path in shared for problem in forbidden_imports(path)] == []


def test_the_check_sees_every_way_of_importing_a_test_module() -> None:
    source = "\n".join(
        [
            "from tests.unit.test_parse_meta import assert_clean",
            "import tests.adapters.test_dispatch",
            "from tests.adapters import test_ingest",
            "from .test_parse_twilio import shared_form",
            "from . import test_ids",
            "from tests.adapters.conftest import anything",
            "from ..adapters.test_dispatch import World",
            "from tests.support import fixture_bytes",
            "from tests.fakes import RecordingPublisher",
            "import tests.support",
            "from . import conftest_like",
        ]
    )
    found = {line for line, module in imported_modules(source, "tests.unit") if FORBIDDEN.match(module)}
    assert sorted(found) == [1, 2, 3, 4, 5, 6, 7]


def test_the_fakes_are_plain_python_the_bench_can_import() -> None:
    """``infra/bench`` runs the fakes outside pytest, without AWS: they import neither."""
    for path in sorted((TESTS / "fakes").rglob("*.py")):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            assert top not in {"pytest", "hypothesis", "boto3", "botocore", "moto", "pynamodb"}, (
                f"{path.relative_to(REPO)}:{line} imports {module}"
            )
