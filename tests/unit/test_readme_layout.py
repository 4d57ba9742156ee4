"""The README's layout table matches the tree: every path it names exists, and every function folder and
every module or package of ``crossroute`` is named in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "crossroute" / "crossroute"


def layout_rows() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Layout") :].split("\n\n")[1]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    return [(cells[0].strip("| "), cells[1].strip("| ")) for cells in rows]


def named(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_table_is_read() -> None:
    assert len(layout_rows()) >= 8


def test_every_path_in_the_first_column_exists() -> None:
    for where, _ in layout_rows():
        for path in named(where):
            if "*" in path:
                assert list(ROOT.glob(path)), path
            else:
                assert (ROOT / path).exists(), path


def test_every_function_folder_is_named_and_exists() -> None:
    (cell,) = [what for where, what in layout_rows() if named(where) == ["functions/"]]
    assert set(named(cell)) == {p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists()}


def test_every_module_of_the_package_is_named_and_exists() -> None:
    package_rows = [what for where, what in layout_rows() if "layers/crossroute/crossroute/" in where]
    mentioned = {name.rstrip("/") for cell in package_rows for name in named(cell)}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    on_disk = {f"{m}.py" for m in modules} | packages
    listed = {name for name in mentioned if name.endswith(".py") or name in packages or "/" not in name}
    assert on_disk - listed == set(), "not in the README's layout table"
    missing = {name for name in listed if (name.endswith(".py") or name in packages) and name not in on_disk}
    assert missing == set(), "named in the README's layout table but not in the package"
