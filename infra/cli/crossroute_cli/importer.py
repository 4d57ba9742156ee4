"""``contacts import``: rows streamed from the file, checked, sent 100 at a time to the batch door
(``POST /contacts/batch``) by a pool of threads, and counted.

- Memory stays flat in the file's size: rows are read one at a time, at most ``2 x workers`` batches
  are in flight, and the external ids seen so far (to reject a duplicate in the file) live in a
  temporary on-disk SQLite database, not in memory.
- Batches are settled in the order they were read, so ``FILE.rejected.csv`` lists rows in file order.
- The door is an idempotent upsert: an import that stopped half-way (Ctrl-C, the API unavailable) is
  finished by running it again; rows already imported come back ``unchanged``.

The door's contract (one result per record, by ``index``): ``created`` / ``updated`` / ``unchanged``
(possibly with ``refused`` fields), ``conflict`` (with the ``conflicts``: field and the other customer's
id) or ``invalid`` (with ``errors``: field, code, problem).
"""

from __future__ import annotations

import csv
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .console import Ticker
from .records import Rejection, Row, dict_entries

__all__ = [
    "BATCH",
    "Counts",
    "DoorError",
    "Importer",
    "RejectedFile",
    "rejected_path",
    "settle",
]

BATCH = 100  # records per POST /contacts/batch (the door's maximum)
LEDGER = 1000  # rows (records and local rejections) held by one batch at most
OUTCOMES = ("created", "updated", "unchanged")

Door = Callable[[list[dict[str, Any]], bool], list[dict[str, Any]]]


class DoorError(RuntimeError):
    """The batch door did not answer with results (unavailable, missing, or refused the envelope)."""


@dataclass
class Counts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    refused_fields: int = 0  # fields the server did not apply on rows that were imported

    def summary(self) -> str:
        return (
            f"imported {self.rows} rows: created {self.created}, updated {self.updated}, "
            f"unchanged {self.unchanged}, rejected {self.rejected}"
        )

    def as_json(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "refused_fields": self.refused_fields,
        }


def rejected_path(source: Path) -> Path:
    return source.with_name(source.name + ".rejected.csv")


class RejectedFile:
    """``FILE.rejected.csv`` (``line,reason,detail``), opened on the first rejection; a stale one from an
    earlier run is removed when this run rejects nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._file: IO[str] | None = None
        self._writer: Any = None

    def add(self, rejection: Rejection) -> None:
        if self._file is None:
            self._file = self.path.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["line", "reason", "detail"])
        self._writer.writerow([rejection.line, rejection.reason, rejection.detail])
        self.lines += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        elif self.path.exists():
            self.path.unlink()

    @property
    def written(self) -> bool:
        return self._file is not None


class SeenIds:
    """External ids seen in the file, with the line of their first row: a temporary on-disk SQLite
    database (SQLite's page cache bounds the memory it uses)."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (external_id TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID")

    def first_line(self, external_id: str, line: int) -> int | None:
        """None the first time ``external_id`` is seen; else the line it was first seen on."""
        cursor = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (external_id, line))
        if cursor.rowcount:
            return None
        found = self._db.execute("SELECT line FROM seen WHERE external_id = ?", (external_id,)).fetchone()
        return int(found[0])

    def close(self) -> None:
        self._db.close()


def settle(line: int, result: Any) -> tuple[str, list[Rejection], list[Rejection]]:
    """What the door said of one record: (``created`` / ``updated`` / ``unchanged`` / ``rejected``,
    the rejections of a rejected record, notes on the fields it refused to apply)."""
    if not isinstance(result, dict):
        return "rejected", [Rejection(line, "server.no_result", "the batch answer has no result for it")], []
    outcome, status = result.get("outcome"), result.get("status")
    if outcome in OUTCOMES and (not isinstance(status, int) or status < 300):
        notes = [_rejection(line, r, "refused") for r in dict_entries(result.get("refused"))]
        return str(outcome), [], notes
    if outcome == "conflict" or status == 409:
        conflicts = [
            Rejection(line, f"conflict.{c.get('field', 'unknown')}", str(c.get("customer_id") or ""))
            for c in dict_entries(result.get("conflicts"))
        ]
        return "rejected", conflicts or [Rejection(line, "conflict", "")], []
    errors = [_rejection(line, e, "invalid") for e in dict_entries(result.get("errors"))]
    if errors:
        return "rejected", errors, []
    return "rejected", [Rejection(line, f"server.{outcome or status}", "")], []


def _rejection(line: int, entry: dict[str, Any], default: str) -> Rejection:
    name = str(entry.get("field") or "")
    reason = str(entry.get("code") or (f"{name}.{default}" if name else default))
    problem = str(entry.get("problem") or "")
    return Rejection(line, reason, f"{name}: {problem}" if name and problem else name or problem)


@dataclass
class _Batch:
    """Rows in file order: those sent (``records``, by index) and those rejected before sending."""

    rows: list[tuple[Row, int | None]] = field(default_factory=list)  # (row, index in records)
    records: list[dict[str, Any]] = field(default_factory=list)
    offset: int = 0

    def full(self) -> bool:
        return len(self.records) >= BATCH or len(self.rows) >= LEDGER


class Importer:
    """Runs one import; ``door(records, dry_run)`` returns the door's ``results``."""

    def __init__(
        self, door: Door, *, workers: int, dry_run: bool, rejected: RejectedFile, ticker: Ticker, size: int
    ) -> None:
        self.door = door
        self.workers = workers
        self.dry_run = dry_run
        self.rejected = rejected
        self.ticker = ticker
        self.size = max(size, 1)
        self.counts = Counts()
        self.seen = SeenIds()
        self.stop = threading.Event()  # set on Ctrl-C: no more batches are sent

    def run(self, rows: Iterable[Row]) -> Counts:
        """Import every row. Raises ``DoorError`` when the door fails for good, and ``KeyboardInterrupt``
        once ``stop`` is set (Ctrl-C); either way the batches already sent are waited for and counted
        (a failed one is not), so ``counts`` says what the server did."""
        pending: deque[tuple[_Batch, Future[list[dict[str, Any]]]]] = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="import") as pool:
            try:
                for batch in self._batches(rows):
                    pending.append((batch, pool.submit(self._send, batch)))
                    while len(pending) >= 2 * self.workers and not self.stop.is_set():
                        self._settle_next(pending)
                    if self.stop.is_set():
                        break
                while pending and not self.stop.is_set():
                    self._settle_next(pending)
            except BaseException:
                self._wind_down(pending)
                raise
            finally:
                self.seen.close()
            self._wind_down(pending)
        if self.stop.is_set():
            raise KeyboardInterrupt
        return self.counts

    def _settle_next(self, pending: deque[tuple[_Batch, Future[list[dict[str, Any]]]]]) -> None:
        """Wait for the oldest batch and count it (it leaves ``pending`` only once its answer is in)."""
        batch, future = pending[0]
        results = future.result()
        pending.popleft()
        self._count(batch, results)

    def _wind_down(self, pending: deque[tuple[_Batch, Future[list[dict[str, Any]]]]]) -> None:
        """After a failure or a stop: batches not sent yet are dropped; those sent are waited for and
        counted, in order (a batch that failed is not)."""
        for _, future in pending:
            future.cancel()
        while pending:
            batch, future = pending.popleft()
            if not future.cancelled() and future.exception() is None:
                self._count(batch, future.result())

    def _send(self, batch: _Batch) -> list[dict[str, Any]]:
        return self.door(batch.records, self.dry_run) if batch.records else []

    def _batches(self, rows: Iterable[Row]) -> Iterator[_Batch]:
        batch = _Batch()
        for row in rows:
            batch.offset = row.offset
            row = self._unique(row)
            if row.record is None:
                batch.rows.append((row, None))
            else:
                batch.rows.append((row, len(batch.records)))
                batch.records.append(row.record)
            if batch.full():
                yield batch
                batch = _Batch()
        if batch.rows:
            yield batch

    def _unique(self, row: Row) -> Row:
        """A second row with an external id seen before is rejected (detail: the first row's line)."""
        external_id = (row.record or {}).get("external_id")
        if not isinstance(external_id, str):
            return row
        first = self.seen.first_line(external_id, row.line)
        if first is None:
            return row
        duplicate = Rejection(row.line, "external_id.duplicate_in_file", f"first on line {first}")
        return Row(row.line, None, (duplicate,), row.offset)

    def _count(self, batch: _Batch, results: list[dict[str, Any]]) -> None:
        by_index = {r.get("index"): r for r in results if isinstance(r, dict)}
        for row, index in batch.rows:
            if index is None:
                self._reject(row.problems)
                continue
            outcome, rejections, notes = settle(row.line, by_index.get(index))
            for note in notes:
                self.rejected.add(note)
            self.counts.refused_fields += len(notes)
            if outcome == "rejected":
                self._reject(rejections)
            else:
                self.counts.rows += 1
                setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)
        self.ticker.advance(len(batch.rows), fraction=batch.offset / self.size)

    def _reject(self, rejections: Iterable[Rejection]) -> None:
        self.counts.rows += 1
        self.counts.rejected += 1
        for rejection in rejections:
            self.rejected.add(rejection)
