"""The ports: what the use cases need of the world, as small typed protocols, and the records that
cross them. Nothing here imports an AWS SDK or PynamoDB.

| port | used by | adapter | fake (tests/fakes) |
|---|---|---|---|
| ``IdentityStore`` | ``ingest`` | ``store.identity_store.DynamoIdentityStore`` | ``identity_store`` |
| ``ContactBook`` | the read side (API) | ``DynamoIdentityStore`` | |
| ``SendStore`` | ``dispatch`` | ``store.sends.DynamoSendStore`` | ``send_store`` |
| ``SendRequests`` | ``send_door`` | ``DynamoSendStore`` | ``send_store`` |
| ``EventPublisher`` | ``ingest``, ``dispatch``, ``contacts`` | ``bus.EventBridgePublisher`` | ``bus`` |
| ``DeadLetters`` | ``ingest``, ``send_queue`` | ``SqsDeadLetters``, ``SqsSendDeadLetters`` | ``queues`` |
| ``SendQueue`` | ``send_door``, ``send_queue`` | ``send_queue.SqsSendQueue`` | ``queues`` |
| ``channels.Sender`` | ``dispatch`` | ``channels.meta``, ``channels.twilio_sms`` | ``senders`` |
| ``Metrics`` | every function | ``metrics.EmfMetrics`` | ``metrics`` |

Two ports live next to their records instead, so that the webhook functions (which need only them) do
not load this module at cold start: ``inbound_queue.InboundQueue`` and ``channels.Sender``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from crossroute.bus import BusEvent
from crossroute.channels import Channel
from crossroute.identity.model import Customer, Key
from crossroute.identity.rules import IdentityEvent
from crossroute.inbound import Choice
from crossroute.replies import Offer
from crossroute.routing.pacing import Pair
from crossroute.routing.request import Address
from crossroute.routing.settlement import Claim, Settlement

# ---------------------------------------------------------------------- errors a store raises


class Conflict(Exception):
    """Someone else changed a customer or key between our read and our write: read again and retry."""


class Erased(Exception):
    """The event belongs to a customer that was erased (I10): it must not be stored again."""


class Unstorable(Exception):
    """The store refuses this content for good (a validation error): retrying cannot help. ``reason`` is a
    short, PII-free code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------- records


@dataclass(frozen=True)
class MessageRecord:
    """A message in or out, as stored once per provider message id."""

    tenant: str
    provider: str
    message_id: str
    customer_id: str | None  # None: sent to a phone no customer holds (no timeline)
    direction: str  # "in" | "out"
    channel: str
    business: str
    message_type: str
    sent_at: datetime
    text: str | None = None
    historical: bool = False
    raw: dict[str, Any] = field(default_factory=dict)
    published: list[dict[str, Any]] = field(default_factory=list)
    request_key: str | None = None  # the send request's idempotency key, for a message crossroute sent
    choice: Choice | None = None  # a message in that picks an option (R13)
    # Its attachments by index, as ``media.stored_media`` records them (pending until they are copied).
    media: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusRecord:
    tenant: str
    provider: str
    message_id: str
    status: str
    at: datetime
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StatusApplied:
    """What storing a status did: ``applied`` is False when the message already had a later one."""

    applied: bool
    customer_id: str | None
    previous: str | None
    channel: str | None


@dataclass(frozen=True)
class SendRecord:
    """A send request as recorded under its idempotency key (R8): the request, its decision (R9) and
    each channel's send state."""

    tenant: str
    idempotency_key: str
    request_id: str
    request: dict[str, Any]
    decision: list[dict[str, Any]]
    customer_id: str | None
    sends: dict[str, dict[str, Any]] = field(default_factory=dict)
    claimed: Channel | None = None  # the channel this call claimed, if any
    external_id: str | None = None  # the customer's external id when the request was recorded (I11)


@dataclass(frozen=True)
class RecipientRead:
    """Who a send request names, and the pair's pace, read together (one round trip on DynamoDB).

    ``customer``: the customer asked for by id (its survivor when merged), when an id was given;
    ``holders``: the live customer holding each key asked for; ``pair_tat``: the pair's stored
    theoretical arrival time (``routing.pacing``), None when it has none or none was asked for;
    ``suppressions``: for each phone key asked for, when an erasure suppressed SMS to it (I10, R4),
    None when it is not suppressed."""

    customer: Customer | None = None
    holders: dict[Key, Customer] = field(default_factory=dict)
    pair_tat: float | None = None
    suppressions: dict[str, datetime | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Erasure:
    """What erasing a customer deleted and kept (I10): ``items`` deleted (profiles, keys, identity
    events, messages and send requests, those sent before it was known included), ``suppressed``
    phones kept as SMS suppressions (STOP outlives the erasure)."""

    items: int
    suppressed: int
    media_objects: int = 0  # copies of its attachments deleted from the media bucket


@dataclass(frozen=True)
class Delivery:
    """One record as a queue delivered it to a consumer."""

    body: str
    message_id: str
    receive_count: int  # 1 on the first delivery
    group_id: str = ""  # FIFO queues
    receipt_handle: str = ""


# ---------------------------------------------------------------------- ports


class IdentityStore(Protocol):
    """Ingest's store: who holds keys, and one atomic write of a resolution and its message."""

    def holders(self, tenant: str, keys: Sequence[Key]) -> dict[Key, Customer]: ...

    def holders_and_offer(
        self, tenant: str, keys: Sequence[Key], phone: str
    ) -> tuple[dict[Key, Customer], Offer | None]:
        """``holders``, and the numbered options last sent to ``phone`` (R13), read together."""

    def commit(
        self,
        tenant: str,
        customers: dict[str, Customer],
        base_versions: dict[str, int],
        key_owners: dict[Key, tuple[str | None, str]],
        events: Sequence[IdentityEvent],
        message: MessageRecord | None = None,
        *,
        event_id: str | None = None,
    ) -> bool:
        """Write it all or nothing; False when ``message`` was stored already. Raises ``Conflict`` when a
        customer or key changed since it was read, ``Erased`` for an erased customer's event."""

    def apply_status(self, update: StatusRecord) -> StatusApplied: ...

    def published(self, tenant: str, provider: str, message_id: str) -> list[dict[str, Any]]:
        """The events a stored message caused, to publish again when it is redelivered."""

    def keep_unrecognised(
        self, tenant: str, provider: str, kind: str, reason: str, raw: dict[str, Any]
    ) -> None: ...


class ContactBook(Protocol):
    """The API's side: customers by key or id, their timelines, erasure (I10), and records from the
    business's own systems (I11), committed as ``IdentityStore.commit`` does (no message)."""

    def holders(self, tenant: str, keys: Sequence[Key]) -> dict[Key, Customer]: ...

    def commit(
        self,
        tenant: str,
        customers: dict[str, Customer],
        base_versions: dict[str, int],
        key_owners: dict[Key, tuple[str | None, str]],
        events: Sequence[IdentityEvent],
    ) -> bool:
        """Raises ``Conflict`` when a customer or key changed since it was read."""

    def customer(self, tenant: str, customer_id: str) -> Customer | None: ...

    def timeline(
        self, tenant: str, customer_ids: Sequence[str], *, before: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Entries (messages, identity events, decisions) newest first, and the next page's cursor."""

    def erase(self, tenant: str, customer: Customer, *, now: datetime) -> Erasure:
        """I10: delete the customer and everything stored about it; suppress SMS to its phones (at
        ``now``) if it had opted out."""


class SendStore(Protocol):
    """Dispatch's store: send requests under their idempotency keys, claims on channels (R8)."""

    def recipient_and_pace(
        self, tenant: str, *, customer_id: str | None, keys: Sequence[Key], pair: Pair | None
    ) -> RecipientRead:
        """The customer by id, or the holders of ``keys``; the pair's pace; the SMS suppression of each
        phone in ``keys`` (I10, R4): one round trip."""

    def suppression(self, tenant: str, phone: str) -> datetime | None:
        """When an erasure suppressed SMS to ``phone`` (I10, R4); None when it is not suppressed."""

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
        """Record the request and its decision (the first ones win) and take ``claim`` if it is free.
        ``to``: the request's address, under which a request for no known customer is indexed (I10);
        ``external_id``: the customer's (I11), kept with the first customer, for the events."""

    def claim(self, claim: Claim, now: datetime) -> bool:
        """Claim a further channel: False when it was claimed already."""

    def settle(self, settlement: Settlement) -> bool:
        """Record how a claimed send ended; False when it was settled already."""

    def get(self, tenant: str, key: str) -> SendRecord | None: ...

    def request_of(self, tenant: str, provider: str, message_id: str) -> str | None:
        """The idempotency key of the request that sent this provider message, if crossroute sent it."""

    def record_and_status(
        self, tenant: str, key: str, provider: str, message_id: str
    ) -> tuple[SendRecord | None, str | None]:
        """R14: the request under ``key`` and the latest status of the provider message it sent (None when
        no status was stored): one round trip."""

    def dead_lettered(
        self, *, tenant: str, key: str, request_id: str, request: dict[str, Any], now: datetime
    ) -> SendRecord | None:
        """R12: mark the request under ``key`` as dead-lettered (the request is remembered as ``accept``
        does when it never was). The record when this call set the mark, so its caller reports it;
        None when it was marked already (once per key, whatever the copies and redrives)."""


class IdempotencyKeyReused(ValueError):
    """The idempotency key is already held by a different request (its canonical hash differs)."""

    def __init__(self, request_id: str) -> None:
        super().__init__("the idempotency key is already used by a different request")
        self.request_id = request_id  # the first request's


@dataclass(frozen=True)
class ProviderStatus:
    """The latest provider status of a message a send request sent (as ingest stored it)."""

    status: str | None
    at: datetime | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SendProgress:
    """``GET /messages/{request_id}``: a send request as recorded, with what became of each message."""

    record: SendRecord
    created_at: datetime
    dead_lettered_at: datetime | None
    deliveries: dict[str, ProviderStatus]  # by channel, for each channel whose send has a provider message id


class SendRequests(Protocol):
    """The send door's store: remember a request under its key; the first request id is the answer."""

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
        """``to``: the request's address: the request is indexed under its customer id, else under the
        phone or BSUID it names (I10), until dispatch knows its customer. A key already holding a request of
        another canonical hash (``routing.request.canonical_hash``) raises ``IdempotencyKeyReused`` and
        changes nothing."""

    def progress(self, tenant: str, request_id: str) -> SendProgress | None:
        """The request given ``request_id`` (None: no such request in ``tenant``, or erased)."""


class EventPublisher(Protocol):
    def publish(self, events: Sequence[BusEvent]) -> None:
        """Publish every event or raise: the caller retries (consumers must tolerate duplicates)."""


class DeadLetters(Protocol):
    def park(self, body: str, *, group_id: str, message_id: str, reason: str) -> None:
        """Put a record that failed for good on the dead-letter queue, or raise."""


class SendQueue(Protocol):
    """The send queue, as the send door and the dispatch consumer use it."""

    def enqueue(self, body: str, *, delay: int = 0) -> None:
        """Put a message on the queue (``delay`` seconds, at most 900), or raise."""

    def retry_later(self, receipt_handle: str, delay: int) -> None:
        """Bring a received message back after ``delay`` seconds instead of the visibility timeout."""


class Metrics(Protocol):
    """Counts of what happened (``crossroute.metrics.CATALOGUE`` names each metric and its dimension).
    A dimension value is a code from a bounded set (a reason, a kind, a channel, a provider): never an
    identifier, so no customer ever becomes a dimension."""

    def count(self, name: str, value: int = 1, *, dimension: str | None = None) -> None: ...


class NoMetrics:
    """``Metrics`` that counts nothing: the default of a use case built without metrics."""

    def count(self, name: str, value: int = 1, *, dimension: str | None = None) -> None:
        return None
