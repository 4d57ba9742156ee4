"""Business records (I11, ``POST /contacts/batch``): DynamoDB round trips per record, and the CLI import
end to end (rows/s and memory).

``Contacts.upsert`` over ``DynamoIdentityStore`` (moto in-process, the table provisioned from
template.yaml), batches of 100 generated records, every DynamoDB API call counted as the ingest bench
counts them (``DynamoCalls``): new records (an external id and a phone each), the same records again
(unchanged), and updates (a new name each).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crossroute.contacts import BATCH_RECORDS, Contacts
from crossroute.store.identity_store import DynamoIdentityStore
from infra.bench import Context, Row, Table
from infra.bench.ingest import DynamoCalls, moto_table
from infra.local import StackProcess

TENANT = "demo"
RECORDS = 1000
NEW_ROW_TARGET = 2.0  # round trips per new row (issue 11)


def generated(count: int, *, first: int = 0, name: str | None = None) -> Iterator[dict[str, object]]:
    """Records as an import file would hold them: an external id and a US phone each."""
    for n in range(first, first + count):
        record: dict[str, object] = {"external_id": f"crm-{n:07d}", "phone": f"+1650{2000000 + n:07d}"}
        if name:
            record["name"] = f"{name} {n}"
        yield record


def measure(records: list[dict[str, object]], book: Contacts) -> tuple[int, Counter[str], Counter[str]]:
    """DynamoDB calls for ``records`` in batches of ``BATCH_RECORDS``; calls and outcomes by kind."""
    outcomes: Counter[str] = Counter()
    with DynamoCalls() as calls:
        for start in range(0, len(records), BATCH_RECORDS):
            answers = book.upsert(TENANT, records[start : start + BATCH_RECORDS], region="US")
            outcomes.update(a.outcome for a in answers)
    return len(calls.calls), Counter(c.operation for c in calls.calls), outcomes


def round_trips(context: Context) -> Table:
    table = Table(
        f"DynamoDB round trips per business record (Contacts.upsert, batches of {BATCH_RECORDS}, moto)",
        ["records", "outcomes", "calls", "per record", "breakdown"],
    )
    new = list(generated(RECORDS))
    with moto_table():
        book = Contacts(DynamoIdentityStore())
        for label, records in (
            ("new (external id + phone)", new),
            ("the same again", new),
            ("a new name each", list(generated(RECORDS, name="Renamed"))),
        ):
            total, operations, outcomes = measure(records, book)
            per_row = total / len(records)
            target = NEW_ROW_TARGET if label.startswith("new") else None
            table.rows.append(
                Row(
                    [
                        f"{len(records)} {label}",
                        ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())),
                        str(total),
                        f"{per_row:.2f}",
                        ", ".join(f"{n} {op}" for op, n in operations.most_common()),
                    ],
                    f"<= {target:.0f}" if target else "",
                    None if target is None else per_row <= target,
                )
            )
    table.notes.append(
        "one BatchGetItem (100 keys a call) reads every key of a batch; a record that changes something is"
        " written with others in one TransactWriteItems (at most 100 items: 6 for a new record); an"
        " unchanged one writes nothing"
    )
    return table


# ---------------------------------------------------------------------- the CLI import, end to end

IMPORT_SIZES = (10_000, 100_000)  # rows; CROSSROUTE_BENCH_IMPORT_ROWS=a,b overrides
IMPORT_RATE_TARGET = 300.0  # rows/s on this 2-core machine, default workers


@dataclass(frozen=True)
class ImportRun:
    rows: int
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float  # the CLI's own, user + system
    summary: str


def import_throughput(context: Context) -> Table:
    """``crossroute contacts import`` of a generated CSV into a fresh local stack (subprocess), then the
    same file again; wall time, rows/s and the CLI process's peak RSS (``wait4``)."""
    sizes = [
        int(n) for n in os.environ.get("CROSSROUTE_BENCH_IMPORT_ROWS", "").split(",") if n
    ] or IMPORT_SIZES
    table = Table(
        "crossroute contacts import: a generated CSV into a fresh local stack (default workers)",
        ["rows", "run", "seconds", "rows/s", "CLI peak RSS MB", "CLI CPU s", "summary"],
    )
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "contacts.csv"
            write_csv(path, size)
            stack = StackProcess(env={"CROSSROUTE_EVENT_SOURCES": "off"}, log_path=Path(folder) / "stack.log")
            client = stack.start(timeout=60)
            try:
                for run in ("first", "again"):
                    done = run_import(client.base_url, path)
                    rate = done.rows / done.seconds
                    target = IMPORT_RATE_TARGET if run == "first" else None
                    cells = [
                        f"{size:,}",
                        run,
                        f"{done.seconds:.1f}",
                        f"{rate:.0f}",
                        f"{done.peak_rss_mb:.0f}",
                        f"{done.cpu_seconds:.1f}",
                    ]
                    table.rows.append(
                        Row(
                            [*cells, done.summary],
                            f">= {target:.0f}/s" if target else "",
                            None if target is None else rate >= target,
                        )
                    )
            finally:
                stack.stop()
    table.notes.append(
        "each row: an external id, a US phone, a name; the local stack and the CLI share this machine's"
        " 2 cores; peak RSS is the CLI's own (the stack's not included)"
    )
    return table


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["external_id", "phone", "name"])
        for n in range(rows):
            writer.writerow([f"crm-{n:07d}", f"+1650{2000000 + n:07d}", f"Customer {n}"])


def run_import(base_url: str, path: Path) -> ImportRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CROSSROUTE_"))}
    env.update({"CROSSROUTE_PORT": base_url.rsplit(":", 1)[1], "NO_COLOR": "1"})
    argv = [sys.executable, "-m", "crossroute_cli", "contacts", "import", str(path)]
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    summary = next(
        (line for line in output.splitlines() if line.startswith("imported ")), output.strip()[-120:]
    )
    if process.returncode not in (0, 1):
        raise RuntimeError(f"the import failed ({process.returncode}): {output[-2000:]}")
    rows = int(summary.split()[1].replace(",", "")) if summary.startswith("imported ") else 0
    return ImportRun(rows, seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, summary)
