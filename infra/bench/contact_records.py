"""Business records (I11, ``POST /contacts/batch``): DynamoDB round trips per record.

``Contacts.upsert`` over ``DynamoIdentityStore`` (moto in-process, the table provisioned from
template.yaml), batches of 100 generated records, every DynamoDB API call counted as the ingest bench
counts them (``DynamoCalls``): new records (an external id and a phone each), the same records again
(unchanged), and updates (a new name each).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from crossroute.contacts import BATCH_RECORDS, Contacts
from crossroute.store.identity_store import DynamoIdentityStore
from infra.bench import Context, Row, Table
from infra.bench.ingest import DynamoCalls, moto_table

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
        " one TransactWriteItems; an unchanged one writes nothing"
    )
    return table
