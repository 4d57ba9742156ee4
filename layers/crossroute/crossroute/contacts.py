"""The contacts API's use cases over the ``ContactBook`` port (docs/api.md): a customer found by phone,
BSUID, id or external id, as ``GET /contacts`` shows it; its timeline; its erasure (I10); and records
from the business's own systems upserted by I11 (``POST /contacts`` and its batch form), one at a
time or a hundred with one read of their keys. Timeline entries come ready from the store.
``NoSuchContact`` and ``BadQuery`` are what the API answers 404 and 400 for.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crossroute import correlation, ids, media
from crossroute.bus import BusEvent
from crossroute.identity.business_records import (
    MAX_EXTERNAL_ID,
    BusinessRecord,
    InvalidRecord,
    Problem,
    Upsert,
    parse_record,
    upsert,
)
from crossroute.identity.model import Customer, Key
from crossroute.identity.rules import Resolution
from crossroute.ports import Conflict, ContactBook, Erasure, EventPublisher
from crossroute.routing.policy import WINDOW

TIMELINE_PAGE = 50  # entries per page unless ``limit`` says otherwise (1-200)
BATCH_RECORDS = 100  # records per batch request (``POST /contacts/batch``)
TRANSACTION_ITEMS = 100  # DynamoDB's limit on the items of one transaction
RACES = 5  # times one record is tried again when another writer changed its customer or keys meanwhile
STATUS = {"created": 201, "updated": 200, "unchanged": 200, "conflict": 409, "invalid": 400}


class NoSuchContact(LookupError):
    pass


class BadQuery(ValueError):
    pass


class Busy(RuntimeError):
    """A record kept racing other writers of its customer: the caller should try again later."""


@dataclass(frozen=True)
class RecordAnswer:
    """What one record came to: ``outcome`` (created, updated, unchanged, conflict, invalid), the
    customer, and the customer's state after it (None for a conflict, an invalid record, a dry run)."""

    outcome: str
    customer_id: str | None = None
    customer: Customer | None = None
    conflicts: tuple[tuple[str, str], ...] = ()
    refused: tuple[Problem, ...] = ()
    errors: tuple[Problem, ...] = ()

    @property
    def status(self) -> int:
        return STATUS[self.outcome]

    def as_doc(self) -> dict[str, Any]:
        """The record's entry in a batch answer (docs/api.md)."""
        doc: dict[str, Any] = {
            "status": self.status,
            "outcome": self.outcome,
            "customer_id": self.customer_id,
        }
        if self.conflicts:
            doc["conflicts"] = [{"field": f, "customer_id": cid} for f, cid in self.conflicts]
        if self.refused:
            doc["refused"] = [p.as_doc() for p in self.refused]
        if self.errors:
            doc["errors"] = [p.as_doc() for p in self.errors]
        return doc


@dataclass
class _Known:
    """The holders of a batch's keys, read once; a key a committed record touched is read again."""

    holders: dict[Key, Customer]
    stale: set[Key] = field(default_factory=set)


@dataclass(frozen=True)
class _Pending:
    index: int
    record: BusinessRecord
    done: Upsert
    seen: dict[Key, Customer]


@dataclass
class _Group:
    """Records decided and not yet committed: no two touch one customer or key (one transaction may
    not name an item twice), at most ``TRANSACTION_ITEMS`` items."""

    pending: list[_Pending] = field(default_factory=list)
    keys: set[Key] = field(default_factory=set)
    customers: set[str] = field(default_factory=set)
    items: int = 0

    def clashes(self, change: Resolution) -> bool:
        return bool(self.customers & change.customers.keys() or self.keys & _touched_keys(change))

    def fits(self, change: Resolution) -> bool:
        return self.items + _items(change) <= TRANSACTION_ITEMS

    def add(self, pending: _Pending) -> None:
        change = pending.done.resolution
        assert change is not None
        self.pending.append(pending)
        self.keys |= _touched_keys(change, pending.record)
        self.customers |= change.customers.keys()
        self.items += _items(change)

    def merged(
        self,
    ) -> tuple[dict[str, Customer], dict[str, int], dict[Key, tuple[str | None, str]], list[Any]]:
        customers: dict[str, Customer] = {}
        versions: dict[str, int] = {}
        owners: dict[Key, tuple[str | None, str]] = {}
        events: list[Any] = []
        for pending in self.pending:
            change = pending.done.resolution
            assert change is not None
            customers.update(change.customers)
            versions.update(change.base_versions)
            owners.update(change.key_owners)
            events.extend(change.events)
        return customers, versions, owners, events

    def clear(self) -> None:
        self.pending, self.keys, self.customers, self.items = [], set(), set(), 0


def _touched_keys(change: Resolution, record: BusinessRecord | None = None) -> set[Key]:
    """Every key a change may alter who holds (and the keys its record names)."""
    keys = {k for c in change.customers.values() for k in c.keys} | change.key_owners.keys()
    return keys | set(record.keys) if record else keys


def _items(change: Resolution) -> int:
    return len(change.customers) + len(change.key_owners) + len(change.events)


class Contacts:
    def __init__(
        self,
        book: ContactBook,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        events: EventPublisher | None = None,
        media_links: Callable[[str], str] | None = None,
    ) -> None:
        """``events``: where ``CustomerErased`` is published (I10); None: nowhere. ``media_links``: a
        short-lived URL of a media bucket object (the timeline's attachments); None: no URLs."""
        self._book = book
        self._clock = clock
        self._new_id = new_id
        self._events = events
        self._media_links = media_links

    def find(self, tenant: str, query: Mapping[str, str], *, region: str) -> dict[str, Any]:
        """The contact named by exactly one of ``phone`` (national formats read in ``region``),
        ``bsuid``, ``id`` or ``external_id``; a merged-away id finds its survivor (I4)."""
        asked = {name: query[name] for name in ("phone", "bsuid", "id", "external_id") if query.get(name)}
        if len(asked) != 1:
            raise BadQuery("give exactly one of phone, bsuid, id, external_id")
        name, value = next(iter(asked.items()))
        if name == "id":
            return contact_view(self._customer(tenant, value))
        key = _key(name, value, region)
        holder = self._book.holders(tenant, [key]).get(key)
        if holder is None:
            raise NoSuchContact("no such contact")
        return contact_view(holder)

    def timeline(
        self, tenant: str, customer_id: str, *, limit: str | None, before: str | None
    ) -> dict[str, Any]:
        """One page, newest first, of the customer's timeline and of every id merged into it."""
        customer = self._customer(tenant, customer_id)
        raw_limit = limit or str(TIMELINE_PAGE)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
            raise BadQuery("limit: 1-200")
        items, cursor = self._book.timeline(
            tenant, [customer.id, *customer.merged_from], before=before, limit=int(raw_limit)
        )
        shown = [self._with_media(item) for item in items]
        return {"customer_id": customer.id, "items": shown, "next": cursor}

    def _with_media(self, item: dict[str, Any]) -> dict[str, Any]:
        """A message's stored attachments as the timeline shows them (``media.timeline_view``)."""
        if "media" not in item:
            return item
        rest = {k: v for k, v in item.items() if k != "media"}
        return {**rest, "media": None, **media.timeline_view(item["media"], self._media_links)}

    def upsert(
        self, tenant: str, docs: Sequence[Any], *, region: str, dry_run: bool = False
    ) -> list[RecordAnswer]:
        """I11 for each record, in order: one read of every key they name; the records that change
        something are committed together, as few transactions as DynamoDB's 100 items allow, each record
        seeing what the ones before it did (a record naming what an earlier one touches waits for that
        one's commit). A transaction another writer raced is redone record by record. ``dry_run``:
        every answer as it would be, nothing written. Raises ``BadQuery`` for more than
        ``BATCH_RECORDS`` records."""
        if len(docs) > BATCH_RECORDS:
            raise BadQuery(f"records: at most {BATCH_RECORDS} a request")
        at = self._clock()
        parsed: list[BusinessRecord | InvalidRecord] = []
        for doc in docs:
            try:
                parsed.append(parse_record(doc, region=region, at=at, event_id=f"record:{self._new_id()}"))
            except InvalidRecord as exc:
                parsed.append(exc)
        keys = list(dict.fromkeys(k for r in parsed if isinstance(r, BusinessRecord) for k in r.keys))
        known = _Known(self._book.holders(tenant, keys) if keys else {})
        answers: list[RecordAnswer | None] = [None] * len(parsed)
        group = _Group()
        for index, record in enumerate(parsed):
            if isinstance(record, InvalidRecord):
                answers[index] = RecordAnswer("invalid", errors=tuple(record.problems))
            elif dry_run:
                done, seen = self._decide(tenant, record, known)
                answers[index] = _answer(done, seen, dry_run=True)
            else:
                self._add(tenant, index, record, known, group, answers)
        self._flush(tenant, known, group, answers)
        return [a for a in answers if a is not None]

    def _add(
        self,
        tenant: str,
        index: int,
        record: BusinessRecord,
        known: _Known,
        group: _Group,
        answers: list[RecordAnswer | None],
    ) -> None:
        """Decide ``record`` and add what it changes to ``group`` (committed first when they overlap or
        the transaction would be too big)."""
        if group.keys & set(record.keys):
            self._flush(tenant, known, group, answers)
        done, seen = self._decide(tenant, record, known)
        change = done.resolution
        if change is not None and (group.clashes(change) or not group.fits(change)):
            self._flush(tenant, known, group, answers)
            done, seen = self._decide(tenant, record, known)  # what the flush changed, it finds
        if done.resolution is None:
            answers[index] = _answer(done, seen, dry_run=False)
        else:
            group.add(_Pending(index, record, done, seen))

    def _decide(
        self, tenant: str, record: BusinessRecord, known: _Known
    ) -> tuple[Upsert, dict[Key, Customer]]:
        if known.stale & set(record.keys):
            self._reread(tenant, record.keys, known)
        seen = {k: known.holders[k] for k in record.keys if k in known.holders}
        return upsert(tenant, record, seen, self._new_id), seen

    def _flush(self, tenant: str, known: _Known, group: _Group, answers: list[RecordAnswer | None]) -> None:
        """Commit the group's records in one transaction; raced, each one again on its own."""
        if not group.pending:
            return
        known.stale.update(group.keys)  # whatever happens next, these were changed or may have been
        try:
            self._book.commit(tenant, *group.merged())
        except Conflict:
            for pending in group.pending:
                answers[pending.index] = self._upsert_one(tenant, pending.record, known)
        else:
            for pending in group.pending:
                answers[pending.index] = _answer(pending.done, pending.seen, dry_run=False)
        group.clear()

    def _upsert_one(self, tenant: str, record: BusinessRecord, known: _Known) -> RecordAnswer:
        """``record`` alone, decided again on fresh holders until no other writer races it."""
        for _ in range(RACES):
            done, seen = self._decide(tenant, record, known)
            if done.resolution is None:
                return _answer(done, seen, dry_run=False)
            change = done.resolution
            try:
                self._book.commit(
                    tenant, change.customers, change.base_versions, change.key_owners, change.events
                )
            except Conflict:  # another writer got there first: read its keys again and decide again
                known.stale.update(record.keys)
                continue
            known.stale.update(_touched_keys(change, record))
            return _answer(done, seen, dry_run=False)
        raise Busy("the record's customer kept changing: try again")

    def _reread(self, tenant: str, keys: Sequence[Key], known: _Known) -> None:
        fresh = self._book.holders(tenant, keys)
        for key in keys:
            known.stale.discard(key)
            if key in fresh:
                known.holders[key] = fresh[key]
            else:
                known.holders.pop(key, None)

    def erase(self, tenant: str, customer_id: str) -> dict[str, Any]:
        """I10: the customer (a merged-away id: its survivor) and everything stored about it, its STOP
        kept as SMS suppressions; then ``CustomerErased`` is published. The answer is that event's
        detail: ids, time and counts, no personal data. If publishing fails the erasure stands (the
        error is raised: a DELETE asked again answers 404 and publishes nothing)."""
        customer = self._customer(tenant, customer_id)
        at = self._clock()
        detail = customer_erased(tenant, customer, self._book.erase(tenant, customer, now=at), at)
        if self._events is not None:
            self._events.publish([BusEvent("CustomerErased", detail)])
        return detail

    def _customer(self, tenant: str, customer_id: str) -> Customer:
        customer = self._book.customer(tenant, customer_id)
        if customer is None:
            raise NoSuchContact("no such contact")
        return customer


def _key(name: str, value: str, region: str) -> Key:
    """The key a ``GET /contacts`` query names, normalised as the store writes it (I12)."""
    if name == "external_id":
        if len(value) > MAX_EXTERNAL_ID:
            raise BadQuery(f"external_id: at most {MAX_EXTERNAL_ID} characters")
        return Key("external", value)
    try:
        return Key("phone", ids.e164(value, region)) if name == "phone" else Key("bsuid", ids.bsuid(value))
    except ids.InvalidIdentifier as exc:
        raise BadQuery(f"{name}: {exc}") from None


def _answer(done: Upsert, seen: Mapping[Key, Customer], *, dry_run: bool) -> RecordAnswer:
    """The answer to one record, with the customer's state after it (not for a dry run's creation)."""
    after = done.resolution.customers.get(done.customer_id or "") if done.resolution else None
    before = next((c for c in seen.values() if c.id == done.customer_id), None)
    customer = None if done.outcome == "conflict" else (after or before)
    if dry_run and done.outcome == "created":
        return RecordAnswer("created", refused=done.refused)
    return RecordAnswer(done.outcome, done.customer_id, customer, done.conflicts, done.refused)


def customer_erased(tenant: str, customer: Customer, erasure: Erasure, at: datetime) -> dict[str, Any]:
    """The detail of ``CustomerErased`` (docs/events.md): no phone, BSUID, name, username or text."""
    detail: dict[str, Any] = {
        "tenant": tenant,
        "customer_id": customer.id,
        "merged_from": list(customer.merged_from),
        "erased_at": at.isoformat(),
        "counts": {"items_deleted": erasure.items, "phones_suppressed": erasure.suppressed},
    }
    if erasure.media_objects:  # copies of its attachments in the media bucket (docs/media.md)
        detail["counts"]["media_objects_deleted"] = erasure.media_objects
    if customer.external_id:
        detail["external_id"] = customer.external_id
    if (correlation_id := correlation.current()) is not None:
        detail["correlation_id"] = correlation_id
    return detail


def contact_view(customer: Customer) -> dict[str, Any]:
    """Contract §6: fields may grow, never shrink."""
    windows = {b: (at + WINDOW).isoformat() for b, at in sorted(customer.whatsapp_last_inbound.items())}
    return {
        "id": customer.id,
        "tenant": customer.tenant,
        "phones": [{"e164": p.e164, "status": p.status, "source": p.source} for p in customer.phones],
        "bsuids": [{"id": b.id, "status": b.status} for b in customer.bsuids],
        "parent_bsuid": customer.parent_bsuid,
        "username": customer.username,
        "name": customer.name,
        "sms_opted_out": customer.sms_opted_out,
        "marketing_opted_out": customer.marketing_opted_out,
        "whatsapp_opt_in": {  # R15
            "value": customer.whatsapp_opt_in,
            "at": customer.whatsapp_opt_in_at.isoformat() if customer.whatsapp_opt_in_at else None,
            "source": customer.whatsapp_opt_in_source,
        },
        "whatsapp": {"window_open_until": max(windows.values(), default=None), "windows": windows},
        "external_id": customer.external_id,
        "merged_from": list(customer.merged_from),
        "created_at": customer.created_at.isoformat(),
        "updated_at": customer.updated_at.isoformat(),
    }
