"""``IdentityStore`` (``crossroute.ports``) in memory, with ``DynamoIdentityStore``'s conditions.

The unit property tests (``tests/unit/test_identity_properties.py``) and the bench (``infra/bench``) run
the real ``Ingest`` over it; ``tests/adapters/test_ingest_properties.py`` checks that it ends in the same
state as the DynamoDB store for the same histories, so what holds here holds there.

Conditions kept (else a property over it proves nothing): creating a customer that exists, writing one
whose version moved, or claiming a key someone else took since it was read raises ``Conflict`` and writes
nothing; a message stored once is not stored again (``commit`` answers False); a status only moves up
its ladder (on the same rung, the later provider time wins). Not modelled: erasure (nothing is ever
erased, so ``Erased`` is never raised) and content the table would refuse (``Unstorable``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from crossroute.identity.model import Customer, Key
from crossroute.identity.rules import IdentityEvent
from crossroute.inbound import STATUS_RANK
from crossroute.ports import Conflict, MessageRecord, StatusApplied, StatusRecord


@dataclass
class StoredMessage:
    """What the store keeps of one provider message id (its status may arrive before the message)."""

    customer_id: str | None = None
    direction: str | None = None  # None: only a status was stored so far
    channel: str | None = None
    status: str | None = None
    rank: int | None = None
    status_at: datetime | None = None
    published: list[dict[str, Any]] = field(default_factory=list)


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
    events: list[IdentityEvent] = field(default_factory=list)  # every identity change committed
    unrecognised: dict[tuple[str, str], KeptUnrecognised] = field(default_factory=dict)  # once per content

    # ------------------------------------------------------------------ IdentityStore

    def holders(self, tenant: str, keys: Sequence[Key]) -> dict[Key, Customer]:
        found = {}
        for key in keys:
            cid = self.keys.get((tenant, key))
            customer = self.customer(tenant, cid) if cid is not None else None
            if customer is not None:
                found[key] = customer
        return found

    def commit(
        self,
        tenant: str,
        customers: dict[str, Customer],
        base_versions: dict[str, int],
        key_owners: dict[Key, tuple[str | None, str]],
        events: Sequence[IdentityEvent],
        message: MessageRecord | None = None,
        *,
        event_id: str | None = None,  # no erasure here: nothing is ever erased
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
            self.customers[(tenant, cid)] = replace(customer, version=base_versions.get(cid, 0) + 1)
        for key, (_, after) in key_owners.items():
            self.keys[(tenant, key)] = after
        self.events.extend(events)
        if message is not None:
            stored = self.messages.setdefault((tenant, message.provider, message.message_id), StoredMessage())
            stored.customer_id, stored.direction = message.customer_id, message.direction
            stored.channel, stored.published = message.channel, list(message.published)
        return True

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
        return StatusApplied(True, stored.customer_id, previous, stored.channel)

    def published(self, tenant: str, provider: str, message_id: str) -> list[dict[str, Any]]:
        stored = self.messages.get((tenant, provider, message_id))
        return list(stored.published) if stored else []

    def keep_unrecognised(
        self, tenant: str, provider: str, kind: str, reason: str, raw: dict[str, Any]
    ) -> None:
        digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
        self.unrecognised[(tenant, digest)] = KeptUnrecognised(tenant, provider, kind, reason[:200], raw)

    # ------------------------------------------------------------------ reading it back

    def customer(self, tenant: str, customer_id: str) -> Customer | None:
        """The customer by id; a merged-away id answers with its survivor (as ``DynamoIdentityStore``)."""
        customer = self.customers.get((tenant, customer_id))
        while customer is not None and customer.merged_into:
            customer = self.customers.get((tenant, customer.merged_into))
        return customer

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
        self.messages = {k: replace(m, published=list(m.published)) for k, m in other.messages.items()}
        self.events = list(other.events)
        self.unrecognised = dict(other.unrecognised)
