"""``IdentityStore`` and ``ContactBook`` (``crossroute.ports``) in memory, with ``DynamoIdentityStore``'s
conditions and read side.

The unit property tests (``tests/unit/test_identity_properties.py``), the read-side unit tests
(``tests/unit/test_contacts.py``) and the bench (``infra/bench``) run the real use cases over it;
``tests/adapters/test_ingest_properties.py`` checks that it ends in the same state as the DynamoDB store
for the same histories, and ``tests/adapters/test_contact_book_agreement.py`` that ``Contacts`` answers
the same over both, so what holds here holds there.

Conditions kept (else a property over it proves nothing): creating a customer that exists, writing one
whose version moved, or claiming a key someone else took since it was read raises ``Conflict`` and writes
nothing; a message stored once is not stored again (``commit`` answers False); a status only moves up
its ladder (on the same rung, the later provider time wins). A customer is kept as the table gives it
back (its WhatsApp windows in whole seconds).

The read side: ``timeline`` gives the entries ``DynamoIdentityStore`` gives for messages (with their
latest status) and identity events, with the same keys and value formats (times as UTC ISO strings,
a text cut as the table cuts it), newest first by the same sort key (the table's ``gsi1sk``), which is
also the cursor: ``<time>#message#<provider>#<id>``, and ``<time>#identity#<n>`` where the table has a
random ``n`` and this store a counter (identity events of the same time may come in another order).
``erase`` deletes what ``DynamoIdentityStore.erase`` deletes: the customer and every id merged into it,
the keys it still holds, the messages on their timelines and their identity events; and keeps the same
SMS suppressions (``suppression``: by phone, as the table keys them by a keyed hash of it).

Not modelled: erasure tombstones (a replayed event of an erased customer is stored again, ``Erased`` is
never raised: as ``DynamoIdentityStore`` without a masking key), send-request decisions on the timeline
and what was sent to an address no customer held (the orphan index: the send store's,
``tests/fakes/send_store.py``, keeps neither), expiry, and content the table would refuse
(``Unstorable``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from crossroute import limits
from crossroute.identity.model import Customer, Key
from crossroute.identity.rules import IdentityEvent
from crossroute.ids import content_digest
from crossroute.inbound import STATUS_RANK
from crossroute.ports import Conflict, Erasure, MessageRecord, StatusApplied, StatusRecord
from crossroute.replies import Offer

# ``crossroute.store.identity_store.TEXT_BYTES`` (not imported: that module loads PynamoDB, which the fakes
# do not); tests/adapters/test_contact_book_agreement.py checks that they are equal.
TEXT_BYTES = 256 * 1024


@dataclass
class StoredMessage:
    """What the store keeps of one provider message id (its status may arrive before the message)."""

    customer_id: str | None = None
    direction: str | None = None  # None: only a status was stored so far
    channel: str | None = None
    business: str | None = None
    message_type: str | None = None
    text: str | None = None
    sent_at: datetime | None = None
    historical: bool = False
    status: str | None = None
    rank: int | None = None
    status_at: datetime | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # the latest status's
    published: list[dict[str, Any]] = field(default_factory=list)
    choice: dict[str, str] | None = None  # the option a message in picked (R13)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)  # attachments by index (crossroute.media)


@dataclass(frozen=True)
class StoredIdentityEvent:
    """An identity event as committed, under its timeline sort key ``<time>#identity#<n>``."""

    tenant: str
    sort_key: str
    event: IdentityEvent


@dataclass(frozen=True)
class KeptUnrecognised:
    tenant: str
    provider: str
    kind: str
    reason: str
    raw: dict[str, Any]


@dataclass
class MemoryIdentityStore:
    """Everything keyed by tenant, as the table is: tenants never see each other's customers or keys."""

    customers: dict[tuple[str, str], Customer] = field(default_factory=dict)  # (tenant, id); merged too
    keys: dict[tuple[str, Key], str] = field(default_factory=dict)  # (tenant, key) -> customer id
    messages: dict[tuple[str, str, str], StoredMessage] = field(default_factory=dict)  # tenant, provider, id
    events: list[StoredIdentityEvent] = field(default_factory=list)  # every identity change committed
    unrecognised: dict[tuple[str, str], KeptUnrecognised] = field(default_factory=dict)  # (tenant, digest)
    events_committed: int = 0  # the ``n`` of the next identity event's sort key
    suppressions: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (tenant, phone) -> at
    offers: dict[tuple[str, str], Offer] = field(default_factory=dict)  # (tenant, phone): R13

    # ------------------------------------------------------------------ IdentityStore

    def holders(self, tenant: str, keys: Sequence[Key]) -> dict[Key, Customer]:
        found = {}
        for key in keys:
            cid = self.keys.get((tenant, key))
            customer = self.customer(tenant, cid) if cid is not None else None
            if customer is not None:
                found[key] = customer
        return found

    def holders_and_offer(
        self, tenant: str, keys: Sequence[Key], phone: str
    ) -> tuple[dict[Key, Customer], Offer | None]:
        return self.holders(tenant, keys), self.offers.get((tenant, phone))

    def commit(
        self,
        tenant: str,
        customers: dict[str, Customer],
        base_versions: dict[str, int],
        key_owners: dict[Key, tuple[str | None, str]],
        events: Sequence[IdentityEvent],
        message: MessageRecord | None = None,
        *,
        event_id: str | None = None,  # no tombstones here: an erased customer's event is stored again
    ) -> bool:
        if message is not None:
            stored = self.messages.get((tenant, message.provider, message.message_id))
            if stored is not None and stored.direction is not None:
                return False
        for cid in customers:
            have = self.customers.get((tenant, cid))
            if (have.version if have is not None else None) != base_versions.get(cid):
                raise Conflict(cid)
        for key, (before, _) in key_owners.items():
            if self.keys.get((tenant, key)) != before:
                raise Conflict(str(key))
        for cid, customer in customers.items():
            self.customers[(tenant, cid)] = _as_read_back(customer, version=base_versions.get(cid, 0) + 1)
        for key, (_, after) in key_owners.items():
            self.keys[(tenant, key)] = after
        for event in events:
            sort_key = f"{event.at.isoformat()}#identity#{self.events_committed:012x}"
            self.events_committed += 1
            self.events.append(StoredIdentityEvent(tenant, sort_key, event))
        if message is not None:
            self._store_message(tenant, message)
        return True

    def _store_message(self, tenant: str, message: MessageRecord) -> None:
        stored = self.messages.setdefault((tenant, message.provider, message.message_id), StoredMessage())
        stored.customer_id, stored.direction = message.customer_id, message.direction
        stored.channel, stored.business = message.channel, message.business
        stored.message_type, stored.sent_at = message.message_type, message.sent_at
        stored.text = limits.cut_to_bytes(message.text, TEXT_BYTES) if message.text is not None else None
        stored.historical, stored.published = message.historical, list(message.published)
        stored.choice = asdict(message.choice) if message.choice else None
        stored.media = {index: dict(state) for index, state in message.media.items()}

    def apply_status(self, update: StatusRecord) -> StatusApplied:
        rank = STATUS_RANK.get(update.status, 0)
        stored = self.messages.setdefault(
            (update.tenant, update.provider, update.message_id), StoredMessage()
        )
        previous = stored.status
        if stored.rank is not None and stored.status_at is not None:
            same_rung_later = stored.rank == rank and stored.status_at < update.at
            if not (stored.rank < rank or same_rung_later):  # up the ladder; same rung: later wins
                return StatusApplied(False, stored.customer_id, previous, stored.channel)
        stored.status, stored.rank, stored.status_at = update.status, rank, update.at
        stored.errors = json.loads(json.dumps(update.errors))  # kept as JSON, as the table does
        return StatusApplied(True, stored.customer_id, previous, stored.channel)

    def published(self, tenant: str, provider: str, message_id: str) -> list[dict[str, Any]]:
        stored = self.messages.get((tenant, provider, message_id))
        return list(stored.published) if stored else []

    def keep_unrecognised(
        self, tenant: str, provider: str, kind: str, reason: str, raw: dict[str, Any]
    ) -> None:
        digest = content_digest(raw, compact=False)  # the table's key: once per distinct content
        self.unrecognised[(tenant, digest)] = KeptUnrecognised(tenant, provider, kind, reason[:200], raw)

    # ------------------------------------------------------------------ ContactBook

    def customer(self, tenant: str, customer_id: str) -> Customer | None:
        """The customer by id; a merged-away id answers with its survivor (as ``DynamoIdentityStore``)."""
        customer = self.customers.get((tenant, customer_id))
        while customer is not None and customer.merged_into:
            customer = self.customers.get((tenant, customer.merged_into))
        return customer

    def timeline(
        self, tenant: str, customer_ids: Sequence[str], *, before: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Entries of these customers' messages and identity events, newest first (by sort key), those
        before ``before`` when given; the cursor (the last entry's sort key) is None on the last page."""
        wanted = set(customer_ids)
        rows = [
            *(
                (_message_sort_key(provider, mid, m), _message_entry(provider, mid, m))
                for (t, provider, mid), m in self.messages.items()
                if t == tenant and m.customer_id in wanted and m.direction is not None
            ),
            *(
                (e.sort_key, _identity_entry(e.event))
                for e in self.events
                if e.tenant == tenant and e.event.customer_id in wanted
            ),
        ]
        rows = sorted((r for r in rows if not before or r[0] < before), key=lambda r: r[0], reverse=True)
        page = rows[:limit]
        more = len(rows) > limit
        return [entry for _, entry in page], (page[-1][0] if more and page else None)

    def erase(self, tenant: str, customer: Customer, *, now: datetime | None = None) -> Erasure:
        """I10: delete the customer, every id merged into it, the keys it still holds (a stale number
        someone else holds now stays theirs), the messages on their timelines and their identity events;
        if their latest word was STOP, suppress SMS (at ``now``) to each of their phones nobody else
        holds. Counts what it deleted: profiles (merged-away ones too), keys, messages and identity
        events, the items ``DynamoIdentityStore.erase`` deletes of these (it also deletes send requests
        and what was sent to their addresses before they were known, which this store does not keep)."""
        ids = {customer.id, *customer.merged_from}
        profiles = [k for k in self.customers if k[0] == tenant and k[1] in ids]
        suppressed = self._suppress(tenant, customer, ids, now or datetime.now(UTC))
        keys = [(tenant, k) for k in set(customer.keys) if self.keys.get((tenant, k)) in ids]
        messages = [k for k, m in self.messages.items() if k[0] == tenant and m.customer_id in ids]
        kept = [e for e in self.events if not (e.tenant == tenant and e.event.customer_id in ids)]
        events = len(self.events) - len(kept)
        for profile in profiles:
            del self.customers[profile]
        for key in keys:
            del self.keys[key]
            if key[1].kind == "phone":  # the options offered to it (R13): not counted, as in the table
                self.offers.pop((tenant, key[1].value), None)
        for message in messages:
            del self.messages[message]
        self.events = kept
        return Erasure(items=len(profiles) + len(keys) + len(messages) + events, suppressed=suppressed)

    def _suppress(self, tenant: str, customer: Customer, ids: set[str], now: datetime) -> int:
        """As ``DynamoIdentityStore.erase``: every phone of the customer and of those merged into it,
        unless someone else holds it now, when their latest word was STOP (a merged one's counts when it
        is later than the survivor's)."""
        survivor = self.customers.get((tenant, customer.id), customer)
        merged = [
            c for (t, cid), c in self.customers.items() if t == tenant and cid in ids and cid != customer.id
        ]
        since = survivor.sms_opt_at
        later_stop = any(
            m.sms_opted_out and (since is None or (m.sms_opt_at is not None and m.sms_opt_at > since))
            for m in merged
        )
        if not (survivor.sms_opted_out or later_stop):
            return 0
        phones = {p.e164 for c in (survivor, *merged) for p in c.phones}
        kept = [p for p in phones if self.keys.get((tenant, Key("phone", p))) in (None, *ids)]
        for phone in kept:
            self.suppressions[(tenant, phone)] = now
        return len(kept)

    def suppression(self, tenant: str, phone: str) -> datetime | None:
        """When an erasure suppressed SMS to ``phone`` (I10, R4)."""
        return self.suppressions.get((tenant, phone))

    # ------------------------------------------------------------------ reading it back

    def live_customers(self, tenant: str) -> list[Customer]:
        return [c for (t, _), c in self.customers.items() if t == tenant and c.live]

    def message(self, tenant: str, provider: str, message_id: str) -> StoredMessage | None:
        return self.messages.get((tenant, provider, message_id))

    def copy(self) -> MemoryIdentityStore:
        """An independent copy (``Customer`` values are immutable; stored messages are copied)."""
        other = MemoryIdentityStore()
        other.restore(self)
        return other

    def restore(self, other: MemoryIdentityStore) -> None:
        """Become a copy of ``other`` (in place: whatever holds this store sees the new state)."""
        self.customers = dict(other.customers)
        self.keys = dict(other.keys)
        self.messages = {k: _copied(m) for k, m in other.messages.items()}
        self.events = list(other.events)
        self.unrecognised = dict(other.unrecognised)
        self.events_committed = other.events_committed
        self.suppressions = dict(other.suppressions)


def _as_read_back(customer: Customer, *, version: int) -> Customer:
    """The customer as the table gives it back: its WhatsApp windows in whole seconds (the table keeps
    epoch seconds), and its new version."""
    windows = {
        b: datetime.fromtimestamp(int(at.timestamp()), UTC)
        for b, at in customer.whatsapp_last_inbound.items()
    }
    return replace(customer, whatsapp_last_inbound=windows, version=version)


def _copied(message: StoredMessage) -> StoredMessage:
    return replace(message, errors=list(message.errors), published=list(message.published))


def _utc(at: datetime) -> str:
    """A time as the table gives it back: in UTC (a naive one taken as UTC), as ISO 8601."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _message_sort_key(provider: str, message_id: str, message: StoredMessage) -> str:
    assert message.sent_at is not None  # a stored message (not only its status) has its time
    return f"{message.sent_at.isoformat()}#message#{provider}#{message_id}"


def _message_entry(provider: str, message_id: str, message: StoredMessage) -> dict[str, Any]:
    """As ``crossroute.store.identity_store._timeline_entry`` gives a message item."""
    return {
        "kind": "message",
        "direction": message.direction,
        "channel": message.channel,
        "provider": provider,
        "message_id": message_id,
        "business": message.business,
        "type": message.message_type,
        "text": message.text,
        "at": _utc(message.sent_at) if message.sent_at else None,
        "status": message.status,
        "status_at": _utc(message.status_at) if message.status_at else None,
        "errors": json.loads(json.dumps(message.errors)),
        "historical": message.historical,
        "customer_id": message.customer_id,
        "choice": dict(message.choice) if message.choice else None,
        "media": {index: dict(state) for index, state in message.media.items()} or None,
    }


def _identity_entry(event: IdentityEvent) -> dict[str, Any]:
    """As ``crossroute.store.identity_store._timeline_entry`` gives an identity event item."""
    return {
        "kind": "identity",
        "change": event.kind,
        "at": _utc(event.at),
        "source": event.source,
        "event_id": event.event_id,
        "detail": json.loads(json.dumps(event.detail, sort_keys=True)),
        "customer_id": event.customer_id,
    }
