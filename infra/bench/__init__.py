"""`make bench` / `python -m infra.bench`: numbers about the Lambda functions, printed as tables.

Not a test: it measures. Each section is a function ``(Context) -> Table``, listed in ``sections()``;
add a section (DynamoDB round trips per event, CPU per event, ...) by writing one and listing it.
A row may carry a goal and whether it was met; ``--strict`` exits 1 when one is missed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.build.artifact import BUILT_TEMPLATE, REPO, SOURCE_TEMPLATE, Stack


@dataclass
class Context:
    runs: int = 9
    repo: Path = REPO

    @property
    def source(self) -> Stack:
        return Stack.load(SOURCE_TEMPLATE)

    @property
    def built(self) -> Stack | None:
        """The `sam build` output, if there is one."""
        return Stack.load(BUILT_TEMPLATE) if BUILT_TEMPLATE.is_file() else None


@dataclass
class Row:
    cells: list[str]
    goal: str = ""
    met: bool | None = None  # None: no goal


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def missed(self) -> list[Row]:
        return [row for row in self.rows if row.met is False]

    def render(self) -> str:
        has_goals = any(row.goal for row in self.rows)
        header = [*self.columns, *(["goal", ""] if has_goals else [])]
        body = [
            [*row.cells, *([row.goal, {True: "ok", False: "MISSED", None: ""}[row.met]] if has_goals else [])]
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

        def line(cells: Sequence[str]) -> str:
            # first column left-aligned (names), the others right-aligned (numbers)
            parts = [
                cells[0].ljust(widths[0]),
                *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)),
            ]
            return "  " + "  ".join(parts).rstrip()

        out = [self.title, line(header), "  " + "  ".join("-" * w for w in widths)]
        out += [line(cells) for cells in body]
        out += [f"  {note}" for note in self.notes]
        return "\n".join(out)


Section = Callable[[Context], Table]


def sections() -> dict[str, Section]:
    from infra.bench import contact_records, dispatch, fanout, imports, ingest, media, sizes

    return {
        "imports": imports.venv_imports,
        "lambda-imports": imports.lambda_imports,
        "sizes": sizes.artifact_sizes,
        "ingest-round-trips": ingest.round_trips,
        "ingest-cpu": ingest.consumer_cpu,
        "dispatch-round-trips": dispatch.round_trips,
        "routing-cpu": dispatch.routing_cpu,
        "webhook-fanout": fanout.fanout,
        "records-round-trips": contact_records.round_trips,
        "contacts-import": contact_records.import_throughput,
        "media-memory": media.memory,
    }
