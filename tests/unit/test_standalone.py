"""The repository stands alone: someone who clones it gets everything its code, tests and docs refer to.

- No file of the repository points at the folder of design notes that sat next to it during
  development (the notes are not shipped: whatever the code relies on is written down in docs/).
- Every identity rule (I1-I12) and routing rule (R1-R15) cited in the package or the functions has a
  heading of its own in docs/identity.md or docs/routing.md, so "I4" in a comment can be looked up.
- Every relative link in README.md and docs/*.md leads to a file (and heading) of the repository.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RULE_DOCS = (DOCS / "identity.md", DOCS / "routing.md")
CODE_DIRS = (ROOT / "layers" / "crossroute" / "crossroute", ROOT / "functions")

# Built from pieces so that this file does not contain what it looks for.
_OUTSIDE = ".." + "/" + "shared"
OUTSIDE_NEEDLES = (_OUTSIDE, "shared" + "/spec", "shared" + "/fixtures")

RULE_ID = re.compile(r"\b([IR])(\d{1,2})\b")
RULE_HEADING = re.compile(r"^#{2,6}\s+([IR]\d{1,2})\b", re.MULTILINE)
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...
FENCE = re.compile(r"^\s*(```|~~~)")


def repository_files() -> list[Path]:
    """Files of the repository as a clone would have them: tracked, plus new ones not ignored."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError:
        pytest.skip("not a git checkout")
    names = sorted({name for name in listed.decode().split("\0") if name})
    return [ROOT / name for name in names if (ROOT / name).is_file()]  # deleted in the work tree: gone


def text_of(path: Path) -> str | None:
    """The file as text, or None for binary content."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ------------------------------------------------------------------ nothing points outside


def test_no_file_refers_to_the_development_notes_outside_the_repository() -> None:
    hits = []
    for path in repository_files():
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for needle in OUTSIDE_NEEDLES:
                if needle in line:
                    hits.append(f"{path.relative_to(ROOT)}:{number}: {needle!r}")
    assert not hits, "files refer to a folder outside the repository:\n" + "\n".join(hits)


# ------------------------------------------------------------------ rule ids can be looked up


def comments_and_strings(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every comment and string literal (docstrings included) of a Python file."""
    kinds = {tokenize.COMMENT, tokenize.STRING}
    if hasattr(tokenize, "FSTRING_MIDDLE"):  # Python 3.12+: f-strings come in pieces
        kinds.add(tokenize.FSTRING_MIDDLE)
    source = path.read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in kinds:
            for offset, line in enumerate(token.string.splitlines()):
                yield token.start[0] + offset, line


def cited_rules() -> dict[str, list[str]]:
    """Rule id -> where the package and the functions cite it (file:line)."""
    cited: dict[str, list[str]] = {}
    for directory in CODE_DIRS:
        for path in sorted(directory.rglob("*.py")):
            for number, text in comments_and_strings(path):
                for kind, digits in RULE_ID.findall(text):
                    where = f"{path.relative_to(ROOT)}:{number}"
                    cited.setdefault(f"{kind}{int(digits)}", []).append(where)
    return cited


def documented_rules() -> set[str]:
    headings: set[str] = set()
    for doc in RULE_DOCS:
        headings |= set(RULE_HEADING.findall(doc.read_text(encoding="utf-8")))
    return headings


def test_the_code_cites_rules_by_id() -> None:
    """The check below is only worth something if it finds the citations."""
    cited = cited_rules()
    assert {"I4", "I6", "R7", "R8"} <= cited.keys()


def test_every_rule_the_code_cites_has_a_heading_in_the_docs() -> None:
    documented = documented_rules()
    missing = {rule: places for rule, places in cited_rules().items() if rule not in documented}
    lines = [f"{rule}: cited at {', '.join(places[:5])}" for rule, places in sorted(missing.items())]
    assert not missing, (
        "rules cited in the code without a '## <id>: ...' heading in docs/identity.md or docs/routing.md:\n"
        + "\n".join(lines)
    )


def test_every_identity_and_routing_rule_has_its_heading() -> None:
    expected = {f"I{n}" for n in range(1, 13)} | {f"R{n}" for n in range(1, 16)}
    assert expected <= documented_rules()


# ------------------------------------------------------------------ links lead somewhere


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans blanked out."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), line)


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def broken_links(page: Path) -> Iterator[str]:
    text = page.read_text(encoding="utf-8")
    for number, line in prose_lines(text):
        for target in LINK.findall(line):
            if EXTERNAL.match(target):
                continue
            where = f"{page.relative_to(ROOT)}:{number}: {target}"
            path_part, _, anchor = target.partition("#")
            resolved = (page.parent / path_part).resolve() if path_part else page
            if not resolved.is_relative_to(ROOT):
                yield f"{where} (outside the repository)"
            elif not resolved.exists():
                yield f"{where} (no such file)"
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                yield f"{where} (no such heading)"


def test_markdown_links_lead_to_files_and_headings_of_the_repository() -> None:
    broken = [problem for page in markdown_files() for problem in broken_links(page)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_docs_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    pages = {page.name for page in DOCS.glob("*.md")} - {"README.md"}
    unlisted = sorted(name for name in pages if f"]({name})" not in index)
    assert not unlisted, f"docs/README.md does not link: {unlisted}"
