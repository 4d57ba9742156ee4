"""Where output goes: results on stdout (JSON with ``--json``), progress and notes on stderr.

Progress is a Rich bar with a rate and an ETA when stderr is a terminal, and a line every
``CROSSROUTE_PROGRESS_EVERY`` seconds (default 5) otherwise. Progress never shows a phone number, BSUID
or body: only counts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

__all__ = ["Out", "Ticker"]

WIDTH = 200  # columns of tables written to a pipe or a file


class Ticker(Protocol):
    """What a long command reports as it goes: items done, and (when known) how far it is (0-1)."""

    def advance(self, items: int, *, fraction: float | None = None) -> None: ...


class Out:
    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        # Piped or redirected: tables as wide as they need (ids and timestamps on one line), up to WIDTH.
        width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else WIDTH
        self.stdout = Console(file=sys.stdout, highlight=False, soft_wrap=True, emoji=False, width=width)
        self.stderr = Console(file=sys.stderr, highlight=False, emoji=False)

    def emit(self, doc: Any) -> None:
        """One JSON document on stdout (``--json``), one line, keys sorted."""
        sys.stdout.write(json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()

    def line(self, text: str) -> None:
        """One plain result line on stdout (no markup)."""
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        """A message for the operator on stderr (never personal data)."""
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    @contextmanager
    def progress(self, label: str, unit: str, *, sized: bool) -> Iterator[Ticker]:
        """Progress of ``label`` counted in ``unit`` (e.g. ``rows``); ``sized``: fractions will be given,
        so an ETA can be shown."""
        if self.stderr.is_terminal:
            bar = _Bar(self.stderr, label, unit, sized=sized)
            with bar.progress:
                yield bar
        else:
            lines = _Lines(self, label, unit)
            yield lines
            lines.done()


class _RateColumn(ProgressColumn):
    """``1,234 rows · 567 rows/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        items = int(task.fields.get("items", 0))
        elapsed = task.elapsed or 0.0
        rate = items / elapsed if elapsed > 0 else 0.0
        return Text(f"{items:,} {self.unit} · {rate:,.0f} {self.unit}/s")


class _EtaColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        fraction = task.completed / task.total if task.total else 0.0
        elapsed = task.elapsed or 0.0
        if task.finished:
            return Text("done")
        if fraction <= 0 or elapsed <= 0:
            return Text("ETA -:--:--")
        left = int(elapsed * (1 - fraction) / fraction)
        return Text(f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")


class _Bar:
    SCALE = 10_000

    def __init__(self, console: Console, label: str, unit: str, *, sized: bool) -> None:
        columns: list[ProgressColumn] = [TextColumn("{task.description}")]
        if sized:
            columns += [BarColumn(), TextColumn("{task.percentage:>3.0f}%"), _RateColumn(unit), _EtaColumn()]
        else:
            columns += [SpinnerColumn(), _RateColumn(unit), TimeElapsedColumn()]
        self.progress = Progress(*columns, console=console, refresh_per_second=8)
        self.task = self.progress.add_task(label, total=self.SCALE if sized else None, items=0)
        self.items = 0

    def advance(self, items: int, *, fraction: float | None = None) -> None:
        self.items += items
        update: dict[str, Any] = {"items": self.items}
        if fraction is not None:
            update["completed"] = min(self.SCALE, int(fraction * self.SCALE))
        self.progress.update(self.task, **update)


class _Lines:
    """Not a terminal: a progress line every few seconds, and one at the end."""

    def __init__(self, out: Out, label: str, unit: str) -> None:
        self.out = out
        self.label = label
        self.unit = unit
        self.items = 0
        self.fraction: float | None = None
        self.started = time.monotonic()
        self.every = float(os.environ.get("CROSSROUTE_PROGRESS_EVERY", "") or 5)
        self.next = self.started + self.every

    def advance(self, items: int, *, fraction: float | None = None) -> None:
        self.items += items
        if fraction is not None:
            self.fraction = fraction
        now = time.monotonic()
        if now >= self.next:
            self.next = now + self.every
            self.out.note(self._line(now))

    def _line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        text = f"{self.label}: {self.items:,} {self.unit} ({self.items / elapsed:,.0f} {self.unit}/s"
        if self.fraction:
            left = elapsed * (1 - self.fraction) / self.fraction
            text += f", {self.fraction:.0%}, ETA {left:,.0f} s"
        return text + ")"

    def done(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = f"{self.items / elapsed:,.0f} {self.unit}/s"
        self.out.note(f"{self.label}: {self.items:,} {self.unit} in {elapsed:,.1f} s ({rate})")
