"""``contacts export``: every live customer of a tenant (not merged away), streamed from a parallel
DynamoDB Scan of the table (PynamoDB ``scan(segment=, total_segments=)``, one thread per segment), each as
``GET /contacts`` shows it (``crossroute.contacts.contact_view``).

JSONL: one contact JSON per line. CSV: the flat columns ``CSV_COLUMNS``; ``phone`` and ``bsuid`` are the
first current ones (what ``contacts import`` reads back), ``phones`` and ``bsuids`` list them all as
``value:status`` separated by spaces. At most ``QUEUED`` contacts wait between the scan and the writer,
so memory stays flat in the table's size.
"""

from __future__ import annotations

import csv
import json
import queue
import threading
from collections.abc import Iterator
from typing import IO, Any

from .records import dict_entries, first_current

__all__ = ["CSV_COLUMNS", "CsvWriter", "JsonlWriter", "customers", "flat"]

QUEUED = 1000
PAGE = 1000  # items scanned per request at most (DynamoDB stops at 1 MB; the emulator pays per request)

CSV_COLUMNS = (
    "id",
    "external_id",
    "phone",
    "bsuid",
    "name",
    "username",
    "sms_opted_out",
    "marketing_opted_out",
    "whatsapp_opt_in",
    "phones",
    "bsuids",
    "parent_bsuid",
    "window_open_until",
    "merged_from",
    "created_at",
    "updated_at",
)


def customers(tenant: str, segments: int) -> Iterator[dict[str, Any]]:
    """The tenant's live customers as contact JSON, in no particular order (the table must be bound:
    ``Target.bind_table``)."""
    from crossroute.contacts import contact_view
    from crossroute.store.identity_store import to_customer
    from crossroute.store.tables import CustomerItem, customer_pk

    keys = customer_pk(tenant, "")  # the prefix of every customer key of the tenant
    condition = CustomerItem.pk.startswith(keys) & CustomerItem.merged_into.does_not_exist()
    found: queue.Queue[Any] = queue.Queue(QUEUED)
    stop = threading.Event()

    def scan(segment: int) -> None:
        try:
            pages = CustomerItem.scan(condition, segment=segment, total_segments=segments, page_size=PAGE)
            for item in pages:
                if stop.is_set():
                    return
                found.put(contact_view(to_customer(item)))
            found.put(_Done())
        except Exception as exc:
            found.put(exc)

    threads = [threading.Thread(target=scan, args=(s,), daemon=True) for s in range(segments)]
    for thread in threads:
        thread.start()
    try:
        yield from _drain(found, segments)
    finally:
        stop.set()


class _Done:
    """A segment's scan ended."""


def _drain(found: queue.Queue[Any], segments: int) -> Iterator[dict[str, Any]]:
    running = segments
    while running:
        got = found.get()
        if isinstance(got, _Done):
            running -= 1
        elif isinstance(got, Exception):
            raise got
        else:
            yield got


def flat(contact: dict[str, Any]) -> dict[str, str]:
    """A contact as the CSV export's columns."""
    phones, bsuids = dict_entries(contact.get("phones")), dict_entries(contact.get("bsuids"))
    row = {name: _text(contact.get(name)) for name in CSV_COLUMNS}
    row.update(
        phone=first_current(phones, "e164") or "",
        bsuid=first_current(bsuids, "id") or "",
        sms_opted_out=_flag(contact.get("sms_opted_out")),
        marketing_opted_out=_flag(contact.get("marketing_opted_out")),
        whatsapp_opt_in=_flag((contact.get("whatsapp_opt_in") or {}).get("value")),
        phones=" ".join(f"{p.get('e164')}:{p.get('status')}" for p in phones),
        bsuids=" ".join(f"{b.get('id')}:{b.get('status')}" for b in bsuids),
        window_open_until=_text((contact.get("whatsapp") or {}).get("window_open_until")),
        merged_from=" ".join(str(m) for m in contact.get("merged_from") or []),
    )
    return row


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value)


def _flag(value: Any) -> str:
    return "true" if value else "false"


class JsonlWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, contact: dict[str, Any]) -> None:
        self.out.write(json.dumps(contact, sort_keys=True, ensure_ascii=False) + "\n")


class CsvWriter:
    def __init__(self, out: IO[str]) -> None:
        self.writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        self.writer.writeheader()

    def write(self, contact: dict[str, Any]) -> None:
        self.writer.writerow(flat(contact))
