"""``SendStore`` and ``SendRequests`` (``crossroute.ports``) in memory, with ``DynamoSendStore``'s conditions.

``tests/adapters/test_send_store_agreement.py`` runs the same operations on both and compares every
answer, so what a test proves over this fake holds over the table.

Conditions kept: a request's first request id, request and decision win (a later ``begin``/``accept``
keeps them); a channel is claimed at most once per key (R8); only the attempt that claimed a channel
settles it, once; a sent message records the request's key (``request_of``, for R7) and moves the pair's
pace; a request is marked dead-lettered once (``dead_lettered``, R12); the SMS suppression of each
phone asked for is read with the recipient (from ``customers``: the identity store's erasures, I10, R4).
``accept`` refuses a key holding a request of another canonical hash (``IdempotencyKeyReused``) and
remembers the request id it answered (``progress``). Not modelled: expiry (``KEEP``), the message item a
send puts on the customer's timeline (``progress`` reports only a status, no time or errors), and the
orphan index (``to``: where a request or message for no known customer is indexed, for erasure).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from crossroute.identity.model import Customer, Key
from crossroute.ports import IdempotencyKeyReused, ProviderStatus, RecipientRead, SendProgress, SendRecord
from crossroute.replies import Offer
from crossroute.routing.pacing import Pair
from crossroute.routing.request import Address, canonical_hash
from crossroute.routing.settlement import Claim, Settlement


class Customers(Protocol):
    """What the fake reads recipients from (``MemoryIdentityStore`` is one)."""

    def holders(self, tenant: str, keys: Sequence[Key]) -> dict[Key, Customer]: ...

    def customer(self, tenant: str, customer_id: str) -> Customer | None: ...

    def suppression(self, tenant: str, phone: str) -> datetime | None: ...


class NoCustomers:
    def holders(self, tenant: str, keys: Sequence[Key]) -> dict[Key, Customer]:
        return {}

    def customer(self, tenant: str, customer_id: str) -> Customer | None:
        return None

    def suppression(self, tenant: str, phone: str) -> datetime | None:
        return None


@dataclass
class _Request:
    tenant: str
    key: str
    request_id: str
    request: dict[str, Any]
    decision: list[dict[str, Any]] | None
    customer_id: str | None
    created_at: datetime
    sends: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead_lettered_at: datetime | None = None  # R12: set once
    external_id: str | None = None  # with the first customer (I11)


@dataclass
class MemorySendStore:
    customers: Customers = field(default_factory=NoCustomers)
    requests: dict[tuple[str, str], _Request] = field(default_factory=dict)
    sent_by: dict[tuple[str, str, str], str] = field(default_factory=dict)  # provider message -> key
    tats: dict[Pair, float] = field(default_factory=dict)
    # R14: a provider message's latest status, as the identity store's message item keeps it
    statuses: dict[tuple[str, str, str], str] = field(default_factory=dict)
    suppression_reads: int = 0  # ``suppression`` calls: reads on top of the recipient's (a round trip each)
    request_ids: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, request id) -> key

    def recipient_and_pace(
        self, tenant: str, *, customer_id: str | None, keys: Sequence[Key], pair: Pair | None
    ) -> RecipientRead:
        tat = self.tats.get(pair) if pair else None
        phones = [k.value for k in keys if k.kind == "phone"]
        suppressions = {phone: self.customers.suppression(tenant, phone) for phone in phones}
        if customer_id:
            customer = self.customers.customer(tenant, customer_id)
            return RecipientRead(customer=customer, pair_tat=tat, suppressions=suppressions)
        holders = self.customers.holders(tenant, keys)
        return RecipientRead(holders=holders, pair_tat=tat, suppressions=suppressions)

    def suppression(self, tenant: str, phone: str) -> datetime | None:
        self.suppression_reads += 1
        return self.customers.suppression(tenant, phone)

    def begin(
        self,
        *,
        tenant: str,
        key: str,
        request_id: str,
        request: dict[str, Any],
        decision: list[dict[str, Any]],
        customer_id: str | None,
        claim: Claim | None,
        now: datetime,
        to: Address | None = None,
        external_id: str | None = None,
    ) -> SendRecord:
        stored = self._remember(tenant, key, request_id, request, now)
        if stored.decision is None:
            stored.decision = copy.deepcopy(decision)
        if stored.customer_id is None and customer_id:
            stored.customer_id = customer_id
            stored.external_id = external_id
        claimed = claim is not None and self.claim(claim, now)
        return self._record(stored, claim.channel if claim and claimed else None)

    def accept(
        self,
        *,
        tenant: str,
        key: str,
        request_id: str,
        request: dict[str, Any],
        now: datetime,
        to: Address | None = None,
    ) -> str:
        held = self.requests.get((tenant, key))
        if held is not None and canonical_hash(held.request) != canonical_hash(request):
            raise IdempotencyKeyReused(held.request_id)
        stored = self._remember(tenant, key, request_id, request, now)
        self.request_ids[(tenant, stored.request_id)] = key
        return stored.request_id

    def progress(self, tenant: str, request_id: str) -> SendProgress | None:
        key = self.request_ids.get((tenant, request_id))
        stored = self.requests.get((tenant, key)) if key else None
        if stored is None or stored.request_id != request_id:
            return None
        deliveries = {}
        for channel, state in stored.sends.items():
            if state.get("provider") and state.get("provider_message_id"):
                message = (tenant, state["provider"], state["provider_message_id"])
                deliveries[channel] = ProviderStatus(self.statuses.get(message))
        return SendProgress(
            self._record(stored, None), stored.created_at, stored.dead_lettered_at, deliveries
        )

    def claim(self, claim: Claim, now: datetime) -> bool:
        stored = self.requests.get((claim.tenant, claim.key))
        if stored is None or claim.channel in stored.sends:
            return False
        stored.sends[claim.channel] = {"state": "sending", "at": now, "attempt": claim.attempt}
        return True

    def settle(self, settlement: Settlement) -> bool:
        claim = settlement.claim
        stored = self.requests.get((claim.tenant, claim.key))
        state = stored.sends.get(claim.channel) if stored else None
        if (
            stored is None
            or state is None
            or (state["state"], state["attempt"]) != ("sending", claim.attempt)
        ):
            return False
        if settlement.result == "released":
            del stored.sends[claim.channel]
            return True
        stored.sends[claim.channel] = settlement.state()
        if settlement.result == "sent" and settlement.sent:
            self.sent_by[(claim.tenant, settlement.sent.provider, settlement.sent.message_id)] = claim.key
            self._move_pace(settlement)
            self._offer(settlement)
        return True

    def get(self, tenant: str, key: str) -> SendRecord | None:
        stored = self.requests.get((tenant, key))
        return self._record(stored, None) if stored else None

    def request_of(self, tenant: str, provider: str, message_id: str) -> str | None:
        return self.sent_by.get((tenant, provider, message_id))

    def record_and_status(
        self, tenant: str, key: str, provider: str, message_id: str
    ) -> tuple[SendRecord | None, str | None]:
        return self.get(tenant, key), self.statuses.get((tenant, provider, message_id))

    def dead_lettered(
        self, *, tenant: str, key: str, request_id: str, request: dict[str, Any], now: datetime
    ) -> SendRecord | None:
        stored = self.requests.get((tenant, key))
        if stored is not None and stored.dead_lettered_at is not None:
            return None
        stored = self._remember(tenant, key, request_id, request, now)
        stored.dead_lettered_at = now
        return self._record(stored, None)

    def _remember(
        self, tenant: str, key: str, request_id: str, request: dict[str, Any], now: datetime
    ) -> _Request:
        """The stored request, made with these values when the key is new (the first ones win)."""
        if (tenant, key) not in self.requests:
            self.requests[(tenant, key)] = _Request(
                tenant, key, request_id, copy.deepcopy(request), None, None, now
            )
        return self.requests[(tenant, key)]

    def _offer(self, settlement: Settlement) -> None:
        """R13: numbered options sent to a phone, kept where ingest reads them (``customers.offers``,
        when the identity fake is one: the table keeps them in the same table)."""
        outbound, offers = settlement.outbound, getattr(self.customers, "offers", None)
        if outbound is None or not outbound.options or not outbound.to or offers is None:
            return
        offer = Offer(outbound.channel, outbound.options, settlement.at, settlement.claim.key)
        offers[(settlement.claim.tenant, outbound.to)] = offer

    def _move_pace(self, settlement: Settlement) -> None:
        pair, pace = settlement.pair, settlement.pace
        if pair is None or pace is None:
            return
        if pace.add is not None:
            self.tats[pair] = self.tats.get(pair, 0.0) + pace.add
        elif pace.set_to is not None:
            self.tats[pair] = pace.set_to

    @staticmethod
    def _record(stored: _Request, claimed: Any) -> SendRecord:
        return SendRecord(
            tenant=stored.tenant,
            idempotency_key=stored.key,
            request_id=stored.request_id,
            request=copy.deepcopy(stored.request),
            decision=copy.deepcopy(stored.decision or []),
            customer_id=stored.customer_id,
            sends=copy.deepcopy(stored.sends),
            claimed=claimed,
            external_id=stored.external_id,
        )
