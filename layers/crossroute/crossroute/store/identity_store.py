"""The identity store on DynamoDB: read who holds keys, write a resolution and a message atomically."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException, TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from crossroute import limits
from crossroute.identity.model import BsuidRecord, BsuidStatus, Customer, Key, PhoneRecord, PhoneStatus
from crossroute.identity.rules import IdentityEvent
from crossroute.privacy import keyed_digest
from crossroute.store.tables import (
    BsuidMap,
    CustomerItem,
    ErasedItem,
    IdentityEventItem,
    KeyItem,
    MessageItem,
    PhoneMap,
    ReadAlong,
    TableItem,
    UnrecognisedItem,
    customer_pk,
    erased_pk,
    key_pk,
    message_pk,
)

PROFILE, KEY, MSG, ERASED = "PROFILE", "KEY", "MSG", "ERASED"
# A provider retries a webhook for up to 7 days (Meta), and an event may wait 14 days on the inbound
# queue or its DLQ before a redrive: an erased customer's events are recognised for this long.
ERASED_FOR = timedelta(days=15)
# What one message item may spend on each of its large attributes: together under DynamoDB's 400 KB.
TEXT_BYTES = 256 * 1024  # the queue's message size: every text the webhooks accept fits whole
RAW_BYTES = 96 * 1024  # the provider's item, without the text (kept once, in ``text``)
PUBLISHED_BYTES = 16 * 1024
UNRECOGNISED_BYTES = 300 * 1024
# In a stored ``raw`` and ``published``, where the message text was (it is stored once, in ``text``).
TEXT_REF = "crossroute:text"

# Delivery progress: a status only ever moves up this ladder ("delivered" may be skipped).
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "read": 4,
    "played": 5,
    "failed": 6,
    "undelivered": 6,
    "canceled": 6,
}


class Conflict(Exception):
    """Someone else changed a customer or key between our read and our write: read again and retry."""


class Erased(Exception):
    """The event belongs to a customer that was erased (I10): it must not be stored again."""


class Unstorable(Exception):
    """DynamoDB refuses this content for good (a validation error): retrying cannot help. ``reason`` is a
    short, PII-free code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


@dataclass(frozen=True)
class StatusRecord:
    tenant: str
    provider: str
    message_id: str
    status: str
    at: datetime
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StatusOutcome:
    applied: bool
    customer_id: str | None
    previous: str | None
    channel: str | None


class DynamoIdentityStore:
    """``TableItem`` models over the table named in ``crossroute.store.tables.bind``."""

    def __init__(
        self, *, remembered_keys: int = 10_000, masking_key: Callable[[], bytes] | None = None
    ) -> None:
        """``masking_key``: the stack's secret key for erasure tombstones (I10); without one (tests that
        do not erase), erased events are not recognised."""
        # Which customer held a key when this container last looked: a guess that lets the key items and
        # the profiles be read in one batch. The key items are always read too, so the guess never decides.
        self._owners: OrderedDict[tuple[str, Key], str] = OrderedDict()
        self._remembered = remembered_keys
        self._masking_key = masking_key

    def holders(
        self, tenant: str, keys: Sequence[Key], *, along: ReadAlong | None = None
    ) -> dict[Key, Customer]:
        """The live customer holding each key that has one: one consistent batch read when this container
        has seen the keys before, two otherwise. ``along``: other items to read in the first one."""
        if not keys:
            return {}
        by_pk = {key_pk(tenant, k): k for k in keys}
        guesses = {cid for k in keys if (cid := self._owners.get((tenant, k)))}
        wanted = [(pk, KEY) for pk in by_pk] + [(customer_pk(tenant, cid), PROFILE) for cid in guesses]
        items = self._get(wanted, along)
        owners = {by_pk[i.pk]: i.customer_id for i in items if isinstance(i, KeyItem)}
        read = {i.customer_id: i for i in items if isinstance(i, CustomerItem) and not i.merged_into}
        customers = {cid: to_customer(read[cid]) for cid in set(owners.values()) if cid in read}
        missing = set(owners.values()) - set(customers)
        if missing:
            customers.update(self.customers(tenant, missing))
        self._remember(tenant, keys, owners)
        return {k: customers[cid] for k, cid in owners.items() if cid in customers}

    def _remember(self, tenant: str, keys: Sequence[Key], owners: dict[Key, str]) -> None:
        for key in keys:
            if key in owners:
                self._owners[(tenant, key)] = owners[key]
                self._owners.move_to_end((tenant, key))
            else:
                self._owners.pop((tenant, key), None)
        while len(self._owners) > self._remembered:
            self._owners.popitem(last=False)

    def customers(
        self, tenant: str, ids: Iterable[str], *, along: ReadAlong | None = None
    ) -> dict[str, Customer]:
        """Customers by id; a merged-away id answers with its survivor. ``along``: other items to read in
        the first batch read."""
        wanted = {customer_pk(tenant, cid): cid for cid in ids}
        found: dict[str, Customer] = {}
        while wanted:
            batch = self._get(((pk, PROFILE) for pk in wanted), along)
            along = None
            items = [i for i in batch if isinstance(i, CustomerItem)]
            follow: dict[str, str] = {}
            for item in items:
                asked = wanted[item.pk]
                if item.merged_into:
                    follow[customer_pk(tenant, item.merged_into)] = asked
                else:
                    found[asked] = to_customer(item)
            wanted = follow
        return found

    def customer(self, tenant: str, customer_id: str, *, along: ReadAlong | None = None) -> Customer | None:
        return self.customers(tenant, [customer_id], along=along).get(customer_id)

    def message(self, tenant: str, provider: str, message_id: str) -> MessageItem | None:
        try:
            item = MessageItem.get(message_pk(tenant, provider, message_id), MSG, consistent_read=True)
        except MessageItem.DoesNotExist:
            return None
        return item

    def published(self, tenant: str, provider: str, message_id: str) -> list[dict[str, Any]]:
        """The events a stored message caused, to publish again when it is redelivered."""
        item = self.message(tenant, provider, message_id)
        if item is None or not item.published:
            return []
        kept = json.loads(item.published)
        if not isinstance(kept, list):  # trimmed beyond use (see PUBLISHED_BYTES): nothing to replay
            return []
        return [_with_text(event, item.text) for event in kept if isinstance(event, dict)]

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
        """Write it all in one transaction. False: the message was already stored (a redelivery).

        Raises ``Conflict`` when a customer or key changed since it was read, ``Erased`` when
        ``event_id`` (the provider event's id) belongs to an erased customer, and ``Unstorable`` when
        DynamoDB refuses the content itself.
        """
        with_message = message is not None
        tombstone = self._tombstone(tenant, event_id) if event_id else None
        try:
            with TransactWrite(connection=self._connection()) as tx:
                if tombstone is not None:  # first in the request: its reason is the first
                    tx.condition_check(
                        ErasedItem, tombstone, ERASED, condition=ErasedItem.pk.does_not_exist()
                    )
                for cid, customer in customers.items():
                    profile = to_item(customer)
                    if cid in base_versions:
                        profile.version = base_versions[cid]
                    tx.save(profile)  # conditional on the version we read (new: must not exist)
                for key, (before, after) in key_owners.items():
                    owner = KeyItem(key_pk(tenant, key), KEY, customer_id=after)
                    condition = (
                        KeyItem.pk.does_not_exist() if before is None else KeyItem.customer_id == before
                    )
                    tx.save(owner, condition=condition)
                for event in events:
                    tx.save(_event_item(tenant, event))
                if message is not None:
                    tx.update(
                        message_shell(message),
                        message_actions(message),
                        MessageItem.direction.does_not_exist(),
                    )
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            codes = [r.code if r is not None else None for r in reasons]
            if tombstone is not None and codes and codes[0] == "ConditionalCheckFailed":
                raise Erased(event_id) from None
            # PynamoDB sends condition checks, then puts, then updates: the message update is the last.
            if with_message and codes and codes[-1] == "ConditionalCheckFailed":
                return False
            if any(code in _RETRYABLE for code in codes):
                raise Conflict(str(exc)) from exc
            if any(code == "ValidationError" for code in codes) or _refused(exc):
                raise Unstorable("dynamodb.validation") from exc
            raise
        for key, (_, holder) in key_owners.items():  # what this container just wrote, it knows
            self._owners[(tenant, key)] = holder
        return True

    def keep_unrecognised(
        self, tenant: str, provider: str, kind: str, reason: str, raw: dict[str, Any]
    ) -> None:
        """Keep what the parser did not understand (90 days), once per distinct content; content over
        the item limit is trimmed with a marker."""
        digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:32]
        text = limits.fitted_json(raw, UNRECOGNISED_BYTES)
        UnrecognisedItem(
            f"T#{tenant}#U#{digest}",
            "RAW",
            provider=provider,
            kind=kind,
            reason=reason[:200],
            raw=text,
            expires_at=timedelta(days=90),
        ).save()

    def apply_status(self, update: StatusRecord) -> StatusOutcome:
        """Move a message's status forward, never back; a status may arrive before its message."""
        rank = STATUS_RANK.get(update.status, 0)
        actions: list[Action] = [
            MessageItem.type.set(MessageItem),
            MessageItem.tenant.set(update.tenant),
            MessageItem.provider.set(update.provider),
            MessageItem.message_id.set(update.message_id),
            MessageItem.status.set(update.status),
            MessageItem.status_rank.set(rank),
            MessageItem.status_at.set(update.at),
            MessageItem.errors.set(json.dumps(update.errors))
            if update.errors
            else MessageItem.errors.remove(),
        ]
        # Up the ladder; on the same rung (queued after accepted, failed or undelivered) the later wins.
        forward = (MessageItem.status_rank < rank) | (
            (MessageItem.status_rank == rank) & (MessageItem.status_at < update.at)
        )
        pk = message_pk(update.tenant, update.provider, update.message_id)
        try:
            # One round trip: the old item comes back, with the status it had and whose message it is.
            answer = MessageItem._get_connection().update_item(
                pk,
                MSG,
                actions=actions,
                condition=MessageItem.status_rank.does_not_exist() | forward,
                return_values="ALL_OLD",
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            current = self.message(
                update.tenant, update.provider, update.message_id
            )  # rare: stale or repeated
            return StatusOutcome(
                False,
                current.customer_id if current else None,
                current.status if current else None,
                current.channel if current else None,
            )
        old = answer.get("Attributes")
        before = MessageItem.from_raw_data(old) if old else None
        return StatusOutcome(
            True,
            before.customer_id if before else None,
            before.status if before else None,
            before.channel if before else None,
        )

    def timeline(
        self, tenant: str, customer_ids: Sequence[str], *, before: str | None, limit: int
    ) -> tuple[list[TableItem], str | None]:
        """Timeline entries of these customers (a survivor and the ids merged into it), newest first.

        ``before`` is the cursor a previous page returned; the answer's cursor is None on the last page.
        """
        entries: list[TableItem] = []
        for cid in customer_ids:
            condition = TableItem.gsi1sk < before if before else None
            query = TableItem.timeline.query(
                customer_pk(tenant, cid), condition, scan_index_forward=False, limit=limit + 1
            )
            entries.extend(query)
        entries.sort(key=lambda e: e.gsi1sk or "", reverse=True)
        page = entries[:limit]
        more = len(entries) > limit
        return page, (page[-1].gsi1sk if more and page else None)

    def erase(self, tenant: str, customer: Customer) -> int:
        """I10: delete the customer, every id merged into it, their keys, timelines and identity events,
        and leave a tombstone (a keyed hash, for ``ERASED_FOR``) of each provider event that named it, so
        a replayed webhook does not bring it back."""
        doomed: list[TableItem] = []
        ids = {customer.id, *customer.merged_from}
        for cid in ids:
            doomed.extend(TableItem.query(customer_pk(tenant, cid), consistent_read=True))
            doomed.extend(TableItem.timeline.query(customer_pk(tenant, cid)))
        # Only keys it still holds: a stale number that passed to someone else (I6) is theirs now.
        listed = self._get((key_pk(tenant, key), KEY) for key in customer.keys)
        keys = [k for k in listed if isinstance(k, KeyItem) and k.customer_id in ids]
        unique = {(i.pk, i.sk): i for i in [*doomed, *keys]}
        events = {i.message_id for i in doomed if isinstance(i, MessageItem)}
        events |= {i.event_id for i in doomed if isinstance(i, IdentityEventItem)}
        tombstones = {self._tombstone(tenant, e) for e in events if e} if self._masking_key else set()
        with TableItem.batch_write() as batch:
            for item in unique.values():
                batch.delete(item)
            for pk in tombstones:
                batch.save(ErasedItem(pk, ERASED, expires_at=ERASED_FOR))
        return len(unique)

    def _tombstone(self, tenant: str, event_id: str) -> str | None:
        if self._masking_key is None:
            return None
        return erased_pk(tenant, keyed_digest(self._masking_key(), tenant, event_id))

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _get(keys: Iterable[tuple[str, str]], along: ReadAlong | None = None) -> list[TableItem]:
        wanted = list(keys)
        if along:
            wanted += [k for k in along.keys if k not in wanted]
        items = list(TableItem.batch_get(wanted, consistent_read=True))
        if along:
            along.take(items)
        return items

    @staticmethod
    def _connection() -> Connection:
        return TableItem._get_connection().connection


_RETRYABLE = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


def _refused(exc: PynamoDBException) -> bool:
    """DynamoDB said the request itself is invalid (an item too large, a key too long): final."""
    return exc.cause_response_code in ("ValidationException", "SerializationException")


def to_item(customer: Customer) -> CustomerItem:
    return CustomerItem(
        customer_pk(customer.tenant, customer.id),
        PROFILE,
        customer_id=customer.id,
        tenant=customer.tenant,
        created_at=customer.created_at,
        updated_at=customer.updated_at,
        phones=[
            PhoneMap(e164=p.e164, status=p.status, source=p.source, at=p.at, raw=p.raw)
            for p in customer.phones
        ],
        bsuids=[BsuidMap(id=b.id, status=b.status, at=b.at) for b in customer.bsuids],
        parent_bsuid=customer.parent_bsuid,
        username=customer.username,
        name=customer.name,
        profile_at=customer.profile_at,
        username_at=customer.username_at,
        sms_opted_out=customer.sms_opted_out,
        sms_opt_at=customer.sms_opt_at,
        marketing_opted_out=customer.marketing_opted_out,
        marketing_opt_at=customer.marketing_opt_at,
        whatsapp_last_inbound={b: int(at.timestamp()) for b, at in customer.whatsapp_last_inbound.items()},
        merged_from=list(customer.merged_from),
        merged_into=customer.merged_into,
    )


def to_customer(item: CustomerItem) -> Customer:
    windows = item.whatsapp_last_inbound.as_dict() if hasattr(item.whatsapp_last_inbound, "as_dict") else {}
    return Customer(
        id=item.customer_id,
        tenant=item.tenant,
        created_at=item.created_at,
        updated_at=item.updated_at,
        phones=tuple(
            PhoneRecord(p.e164, cast(PhoneStatus, p.status), p.source, p.at, p.raw) for p in item.phones or []
        ),
        bsuids=tuple(BsuidRecord(b.id, cast(BsuidStatus, b.status), b.at) for b in item.bsuids or []),
        parent_bsuid=item.parent_bsuid,
        username=item.username,
        name=item.name,
        profile_at=item.profile_at,
        username_at=item.username_at,
        sms_opted_out=bool(item.sms_opted_out),
        sms_opt_at=item.sms_opt_at,
        marketing_opted_out=bool(item.marketing_opted_out),
        marketing_opt_at=item.marketing_opt_at,
        whatsapp_last_inbound={b: datetime.fromtimestamp(int(ts), UTC) for b, ts in windows.items()},
        merged_from=tuple(item.merged_from or ()),
        merged_into=item.merged_into,
        version=int(item.version or 0),
    )


def _event_item(tenant: str, event: IdentityEvent) -> IdentityEventItem:
    n = uuid.uuid4().hex[:12]
    when = event.at.isoformat()
    pk = customer_pk(tenant, event.customer_id)
    return IdentityEventItem(
        pk,
        f"EV#{when}#{n}",
        gsi1pk=pk,
        gsi1sk=f"{when}#identity#{n}",
        customer_id=event.customer_id,
        kind=event.kind,
        at=event.at,
        source=event.source,
        event_id=event.event_id,
        detail=json.dumps(event.detail, sort_keys=True),
    )


def message_shell(message: MessageRecord) -> MessageItem:
    return MessageItem(message_pk(message.tenant, message.provider, message.message_id), MSG)


def message_actions(message: MessageRecord) -> list[Action]:
    """The attributes of a message item. Its text is stored once, in ``text``: where it appears in the
    provider's item and in the events to replay, a reference stands in (``TEXT_REF``)."""
    when = message.sent_at.isoformat()
    text = limits.cut_to_bytes(message.text, TEXT_BYTES) if message.text is not None else None
    raw = limits.fitted_json(_without_text(message.raw, message.text), RAW_BYTES)
    published = limits.fitted_json([_text_ref(e, message.text) for e in message.published], PUBLISHED_BYTES)
    timeline = (
        [
            MessageItem.gsi1pk.set(customer_pk(message.tenant, message.customer_id)),
            MessageItem.gsi1sk.set(f"{when}#message#{message.provider}#{message.message_id}"),
            MessageItem.customer_id.set(message.customer_id),
        ]
        if message.customer_id
        else []
    )
    return [
        MessageItem.type.set(MessageItem),
        *timeline,
        MessageItem.tenant.set(message.tenant),
        MessageItem.provider.set(message.provider),
        MessageItem.message_id.set(message.message_id),
        MessageItem.direction.set(message.direction),
        MessageItem.channel.set(message.channel),
        MessageItem.business.set(message.business),
        MessageItem.message_type.set(message.message_type),
        MessageItem.sent_at.set(message.sent_at),
        MessageItem.historical.set(message.historical),
        MessageItem.raw.set(raw),
        MessageItem.published.set(published),
        *([MessageItem.text.set(text)] if text is not None else []),
        *([MessageItem.request_key.set(message.request_key)] if message.request_key else []),
    ]


def _without_text(raw: Any, text: str | None) -> Any:
    """``raw`` with every string equal to the message text replaced by ``TEXT_REF``."""
    if not text:
        return raw
    if isinstance(raw, str):
        return TEXT_REF if raw == text else raw
    if isinstance(raw, dict):
        return {k: _without_text(v, text) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_without_text(v, text) for v in raw]
    return raw


def _text_ref(event: dict[str, Any], text: str | None) -> dict[str, Any]:
    """A published event to keep: a ``detail.text`` that is (a prefix of) the message text becomes a
    reference with its length."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return event
    shown = detail.get("text")
    if not text or not isinstance(shown, str) or not shown or not text.startswith(shown):
        return event
    return {**event, "detail": {**detail, "text": {TEXT_REF: len(shown)}}}


def _with_text(event: dict[str, Any], text: str | None) -> dict[str, Any]:
    """A kept event as it was published: the text reference filled in from the stored text."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return event
    ref = detail.get("text")
    if not isinstance(ref, dict) or TEXT_REF not in ref:
        return event
    return {**event, "detail": {**detail, "text": (text or "")[: int(ref[TEXT_REF])]}}
