"""The import pipeline of ``crossroute contacts import`` (``crossroute_cli.importer``) over an in-memory
batch door that keeps the door's contract (docs/api.md, ``POST /contacts/batch``): counts, the rejected
file in file order, duplicates in the file, a second run, an import that stopped, flat memory."""

from __future__ import annotations

import csv
import io
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossroute_cli.importer import BATCH, DoorError, Importer, RejectedFile, rejected_path, settle
from crossroute_cli.records import Rejection, Row, read_rows


class MemoryDoor:
    """Upserts by external id, else phone; a phone held by another customer is a conflict."""

    def __init__(self, *, fail_after: int | None = None, delay: float = 0.0) -> None:
        self.customers: dict[str, dict[str, Any]] = {}
        self.phones: dict[str, str] = {}
        self.batches = 0
        self.fail_after = fail_after
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, records: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
        assert 1 <= len(records) <= BATCH
        time.sleep(self.delay)
        with self.lock:
            self.batches += 1
            if self.fail_after is not None and self.batches > self.fail_after:
                raise DoorError("POST /contacts/batch answered 503: busy")
            return [{"index": i, **self._one(r, dry_run)} for i, r in enumerate(records)]

    def _one(self, record: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        cid = (
            record.get("external_id") or self.phones.get(record.get("phone", "")) or f"p{len(self.customers)}"
        )
        holder = self.phones.get(record.get("phone", ""))
        if holder is not None and holder != cid:
            return {
                "status": 409,
                "outcome": "conflict",
                "conflicts": [{"field": "phone", "customer_id": holder}],
            }
        refused = []
        if record.get("sms_opted_out") is False and self.customers.get(cid, {}).get("sms_opted_out"):
            refused = [
                {"field": "sms_opted_out", "code": "opt_in.needs_user", "problem": "only the user opts in"}
            ]
            record = {k: v for k, v in record.items() if k != "sms_opted_out"}
        before = self.customers.get(cid)
        after = {**(before or {}), **record}
        if not dry_run:
            self.customers[cid] = after
            if "phone" in record:
                self.phones[record["phone"]] = cid
        outcome = "created" if before is None else "unchanged" if after == before else "updated"
        return {
            "status": 201 if before is None else 200,
            "outcome": outcome,
            "customer_id": cid,
            "refused": refused,
        }


class Ticks:
    def __init__(self) -> None:
        self.items = 0
        self.fractions: list[float] = []

    def advance(self, items: int, *, fraction: float | None = None) -> None:
        self.items += items
        if fraction is not None:
            self.fractions.append(fraction)


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["external_id", "phone", "name", "sms_opted_out"], *rows])
    return path


def run(
    path: Path, door: MemoryDoor, *, workers: int = 4, dry_run: bool = False
) -> tuple[Any, list[list[str]]]:
    rejected = RejectedFile(rejected_path(path))
    ticks = Ticks()
    importer = Importer(
        door, workers=workers, dry_run=dry_run, rejected=rejected, ticker=ticks, size=path.stat().st_size
    )
    try:
        with path.open("rb") as raw:
            importer.run(read_rows(raw, "csv", region="US"))
    finally:
        rejected.close()
    assert ticks.items == importer.counts.rows
    listed = list(csv.reader(rejected.path.open())) if rejected.path.exists() else []
    return importer.counts, listed


def people(n: int, start: int = 0) -> list[list[str]]:
    return [[f"crm-{i}", f"+1650555{i:04d}", f"Person {i}", ""] for i in range(start, start + n)]


def test_every_row_is_counted_and_the_rejected_file_lists_rows_in_file_order(tmp_path: Path) -> None:
    rows = people(250)
    rows[10][1] = "not a phone"  # line 12
    rows[120][0] = "crm-3"  # line 122: a duplicate of line 5
    rows[230][1] = rows[7][1]  # line 232: crm-7's phone
    door = MemoryDoor(delay=0.01)
    counts, listed = run(write_csv(tmp_path / "c.csv", rows), door, workers=4)
    assert counts.summary() == "imported 250 rows: created 247, updated 0, unchanged 0, rejected 3"
    assert listed == [
        ["line", "reason", "detail"],
        ["12", "phone.invalid", "not a phone number"],
        ["122", "external_id.duplicate_in_file", "first on line 5"],
        ["232", "conflict.phone", "crm-7"],
    ]
    assert door.batches == 3  # 100 records a request


def test_running_the_same_file_again_reports_every_row_unchanged(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", people(120))
    door = MemoryDoor()
    first, _ = run(path, door)
    again, listed = run(path, door)
    assert (first.created, first.unchanged) == (120, 0)
    assert again.summary() == "imported 120 rows: created 0, updated 0, unchanged 120, rejected 0"
    assert listed == []
    assert not rejected_path(path).exists()


def test_a_stale_rejected_file_is_removed_when_nothing_is_rejected(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", people(3))
    rejected_path(path).write_text("line,reason,detail\n2,phone.invalid,\n")
    run(path, MemoryDoor())
    assert not rejected_path(path).exists()


def test_refused_fields_are_listed_but_the_row_counts_as_imported(tmp_path: Path) -> None:
    door = MemoryDoor()
    run(write_csv(tmp_path / "a.csv", [["crm-1", "+16505550001", "Ana", "true"]]), door)
    counts, listed = run(write_csv(tmp_path / "b.csv", [["crm-1", "+16505550001", "Ana", "false"]]), door)
    assert (counts.unchanged, counts.rejected, counts.refused_fields) == (1, 0, 1)
    assert listed[1:] == [["2", "opt_in.needs_user", "sms_opted_out: only the user opts in"]]


def test_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    door = MemoryDoor()
    counts, _ = run(write_csv(tmp_path / "c.csv", people(5)), door, dry_run=True)
    assert counts.created == 5
    assert door.customers == {}


def test_an_import_that_stopped_is_finished_by_running_it_again(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", people(450))
    door = MemoryDoor(fail_after=2)
    with pytest.raises(DoorError):
        run(path, door, workers=1)
    assert len(door.customers) == 200
    door.fail_after = None
    counts, _ = run(path, door, workers=3)
    assert (counts.created, counts.unchanged, counts.rows) == (250, 200, 450)
    assert len(door.customers) == 450


def test_progress_fractions_end_at_the_whole_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", people(350))
    ticks = Ticks()
    rejected = RejectedFile(rejected_path(path))
    importer = Importer(
        MemoryDoor(), workers=2, dry_run=False, rejected=rejected, ticker=ticks, size=path.stat().st_size
    )
    with path.open("rb") as raw:
        importer.run(read_rows(raw, "csv"))
    rejected.close()
    assert ticks.fractions == sorted(ticks.fractions)
    assert len(ticks.fractions) == 4
    assert ticks.fractions[-1] == 1.0


class Generated(io.RawIOBase):
    """A CSV of ``n`` rows made on the fly (no file on disk, no copy in memory)."""

    def __init__(self, n: int) -> None:
        self.lines = self._lines(n)
        self.pending = b""

    @staticmethod
    def _lines(n: int) -> Iterator[bytes]:
        yield b"external_id,phone,name\n"
        for i in range(n):
            yield f"crm-{i},+1650{i:07d},Person number {i}\n".encode()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self.pending) < len(buffer):
            more = next(self.lines, None)
            if more is None:
                break
            self.pending += more
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        return size


class CountingDoor:
    """Answers ``created`` for every record and keeps nothing."""

    def __call__(self, records: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
        return [
            {"index": i, "status": 201, "outcome": "created", "customer_id": "x"} for i in range(len(records))
        ]


def peak_memory(rows: int, tmp_path: Path) -> int:
    rejected = RejectedFile(tmp_path / f"{rows}.rejected.csv")
    importer = Importer(CountingDoor(), workers=4, dry_run=False, rejected=rejected, ticker=Ticks(), size=1)
    tracemalloc.start()
    try:
        counts = importer.run(read_rows(io.BufferedReader(Generated(rows)), "csv", region=None))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        rejected.close()
    assert counts.created == rows
    return peak


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    small, large = peak_memory(1_000, tmp_path), peak_memory(20_000, tmp_path)
    # 20 times the rows: the peak stays within a small margin (in-flight batches, buffers), not 20 times.
    assert large < small * 1.5 + 200_000, (small, large)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"index": 0, "status": 201, "outcome": "created", "customer_id": "c"}, ("created", [], [])),
        ({"index": 0, "status": 200, "outcome": "unchanged", "customer_id": "c"}, ("unchanged", [], [])),
        (
            {
                "index": 0,
                "status": 409,
                "outcome": "conflict",
                "conflicts": [{"field": "bsuid", "customer_id": "c9"}],
            },
            ("rejected", [Rejection(5, "conflict.bsuid", "c9")], []),
        ),
        (
            {
                "index": 0,
                "status": 400,
                "outcome": "invalid",
                "errors": [{"field": "name", "code": "name.invalid", "problem": "too long"}],
            },
            ("rejected", [Rejection(5, "name.invalid", "name: too long")], []),
        ),
        (
            {
                "index": 0,
                "status": 200,
                "outcome": "updated",
                "refused": [{"field": "bsuid", "code": "bsuid.other_current", "problem": "p"}],
            },
            ("updated", [], [Rejection(5, "bsuid.other_current", "bsuid: p")]),
        ),
        (None, ("rejected", [Rejection(5, "server.no_result", "the batch answer has no result for it")], [])),
        ({"index": 0, "status": 503, "outcome": "busy"}, ("rejected", [Rejection(5, "server.busy", "")], [])),
    ],
)
def test_settle_reads_each_result_of_the_door(result: Any, expected: Any) -> None:
    outcome, rejections, notes = settle(5, result)
    assert (outcome, rejections, notes) == expected


def test_a_row_rejected_before_sending_is_not_sent(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def door(records: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
        seen.extend(records)
        return [{"index": i, "status": 201, "outcome": "created"} for i in range(len(records))]

    path = write_csv(tmp_path / "c.csv", [["crm-1", "x", "", ""], ["crm-2", "+16505550002", "", ""]])
    rejected = RejectedFile(rejected_path(path))
    with path.open("rb") as raw:
        Importer(door, workers=1, dry_run=False, rejected=rejected, ticker=Ticks(), size=1).run(
            read_rows(raw, "csv")
        )
    rejected.close()
    assert seen == [{"external_id": "crm-2", "phone": "+16505550002"}]
    assert [r.line for r in [Row(3, seen[0])]] == [3]


def test_a_stopped_import_counts_exactly_what_the_server_did(tmp_path: Path) -> None:
    """Ctrl-C (``stop``) while batches are in flight: no more are sent, those sent are counted once."""
    path = write_csv(tmp_path / "c.csv", people(1000))
    door = MemoryDoor(delay=0.02)
    rejected = RejectedFile(rejected_path(path))
    importer = Importer(door, workers=3, dry_run=False, rejected=rejected, ticker=Ticks(), size=1)

    def stopping(records: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
        answer = door(records, dry_run)
        if door.batches == 2:
            importer.stop.set()
        return answer

    importer.door = stopping
    with path.open("rb") as raw, pytest.raises(KeyboardInterrupt):
        importer.run(read_rows(raw, "csv"))
    rejected.close()
    assert 200 <= importer.counts.created == len(door.customers) < 1000
    assert importer.counts.rows == importer.counts.created
    counts, _ = run(path, door)
    assert (counts.created + importer.counts.created, counts.unchanged) == (1000, importer.counts.created)
