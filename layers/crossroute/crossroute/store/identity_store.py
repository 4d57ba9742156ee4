"""The identity store on DynamoDB: read who holds keys, write a resolution and a message atomically."""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException, TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from crossroute import limits
from crossroute.identity.model import BsuidRecord, BsuidStatus, Customer, Key, PhoneRecord, PhoneStatus
from crossroute.identity.rules import IdentityEvent
from crossroute.ids import content_digest
from crossroute.inbound import STATUS_RANK
from crossroute.media import MediaObjects, stored_keys
from crossroute.ports import (
    Conflict,
    Erased,
    Erasure,
    MessageRecord,
    StatusApplied,
    StatusRecord,
    Unstorable,
)
from crossroute.privacy import keyed_digest
from crossroute.replies import Offer
from crossroute.store.tables import (
    MSG,
    REQUEST_ID,
    BsuidMap,
    CustomerItem,
    ErasedItem,
    IdentityEventItem,
    KeyItem,
    MessageItem,
    OfferItem,
    PhoneMap,
    ReadAlong,
    RequestIdItem,
    SuppressionItem,
    TableItem,
    UnrecognisedItem,
    customer_pk,
    erased_pk,
    key_pk,
    message_pk,
    offer_pk,
    orphan_pk,
    request_id_pk,
    suppression_pk,
)

PROFILE, KEY, ERASED, SUPPRESSED = "PROFILE", "KEY", "ERASED", "SUPPRESSED"
OFFERED = "OFFER"
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


class DynamoIdentityStore:
    """``TableItem`` models over the table named in ``crossroute.store.tables.bind``."""

    def __init__(
        self,
        *,
        remembered_keys: int = 10_000,
        masking_key: Callable[[], bytes] | None = None,
        media_objects: Callable[[], MediaObjects] | None = None,
    ) -> None:
        """``masking_key``: the stack's secret key for erasure tombstones (I10); without one (tests that
        do not erase), erased events are not recognised. ``media_objects``: the media bucket, whose
        copies of a customer's attachments erasure deletes (made on first need)."""
        # Which customer held a key when this container last looked: a guess that lets the key items and
        # the profiles be read in one batch. The key items are always read too, so the guess never decides.
        self._owners: OrderedDict[tuple[str, Key], str] = OrderedDict()
        self._remembered = remembered_keys
        self._masking_key = masking_key
        self._media_objects = media_objects

    def holders(
        self, tenant: str, keys: Sequence[Key], *, along: ReadAlong | None = None
    ) -> dict[Key, Customer]:
        """The live customer holding each key that has one: one consistent batch read when this container
        has seen the keys before, two otherwise. ``along``: other items to read in the first one."""
        if not keys:
            return {}
        by_pk = {key_pk(tenant, k): k for k in keys}
        items = self._get(self._keys_and_guessed_profiles(tenant, keys, by_pk), along)
        owners = {by_pk[i.pk]: i.customer_id for i in items if isinstance(i, KeyItem)}
        customers = _live_owners_read(items, owners)
        missing = set(owners.values()) - set(customers)
        if missing:
            customers.update(self.customers(tenant, missing))
        self._remember(tenant, keys, owners)
        return {k: customers[cid] for k, cid in owners.items() if cid in customers}

    def holders_and_offer(
        self, tenant: str, keys: Sequence[Key], phone: str
    ) -> tuple[dict[Key, Customer], Offer | None]:
        """``holders``, with the options last offered to ``phone`` (R13) read in the same batch."""
        along = ReadAlong([(offer_pk(tenant, phone), OFFERED)])
        holders = self.holders(tenant, keys, along=along)
        item = next(iter(along.found.values()), None)
        if not isinstance(item, OfferItem):
            return holders, None
        options = tuple((str(i), str(t)) for i, t in json.loads(item.options))
        return holders, Offer(item.channel, options, item.sent_at, item.request_key)

    def _keys_and_guessed_profiles(
        self, tenant: str, keys: Sequence[Key], by_pk: dict[str, Key]
    ) -> list[tuple[str, str]]:
        """The key items, and the profiles of the customers this container last saw holding them."""
        guesses = {cid for k in keys if (cid := self._owners.get((tenant, k)))}
        return [(pk, KEY) for pk in by_pk] + [(customer_pk(tenant, cid), PROFILE) for cid in guesses]

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
        tombstone = self._tombstone(tenant, event_id) if event_id else None
        try:
            with TransactWrite(connection=self._connection()) as tx:
                _check_not_erased(tx, tombstone)  # first in the request: its reason is the first
                _save_customers(tx, customers, base_versions)
                _save_key_owners(tx, tenant, key_owners)
                for event in events:
                    tx.save(_event_item(tenant, event))
                if message is not None:
                    _store_message_once(tx, message)
        except TransactWriteError as exc:
            why = _cancellation(exc, checked_erased=tombstone is not None, with_message=message is not None)
            if why == "erased":
                raise Erased(event_id) from None
            if why == "redelivered":
                return False
            if why == "conflict":
                raise Conflict(str(exc)) from exc
            if why == "unstorable":
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
        digest = content_digest(raw, compact=False)
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

    def apply_status(self, update: StatusRecord) -> StatusApplied:
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
            return StatusApplied(
                False,
                current.customer_id if current else None,
                current.status if current else None,
                current.channel if current else None,
            )
        old = answer.get("Attributes")
        before = MessageItem.from_raw_data(old) if old else None
        return StatusApplied(
            True,
            before.customer_id if before else None,
            before.status if before else None,
            before.channel if before else None,
        )

    def timeline(
        self, tenant: str, customer_ids: Sequence[str], *, before: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
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
        return [_timeline_entry(i) for i in page], (page[-1].gsi1sk if more and page else None)

    def erase(self, tenant: str, customer: Customer, *, now: datetime | None = None) -> Erasure:
        """I10: delete the customer, every id merged into it, their keys, timelines and identity events,
        and whatever was sent to their phones and BSUIDs while no customer held them (the orphan index,
        ``tables.orphan_pk``). Leave a tombstone (a keyed hash, for ``ERASED_FOR``) of each provider event
        that named it, so a replayed webhook does not bring it back; and, when it had opted out of SMS,
        a suppression (``tables.suppression_pk``, at ``now``) of each of its phones nobody else holds,
        so that no SMS goes there again until a START (R4). Everything is read before anything is
        deleted."""
        at = now or datetime.now(UTC)
        ids = {customer.id, *customer.merged_from}
        doomed = _partitions_and_timelines(tenant, ids)
        profiles = {i.customer_id: to_customer(i) for i in doomed if isinstance(i, CustomerItem)}
        survivor, merged = profiles.pop(customer.id, customer), list(profiles.values())
        listed = {k for c in (survivor, *merged) for k in c.keys}
        held, taken = self._held_and_taken(tenant, listed, ids)
        orphans = _orphans(tenant, listed)
        unique = {(i.pk, i.sk): i for i in [*doomed, *held, *orphans]}
        tombstones = self._tombstones(tenant, _provider_event_ids([*doomed, *orphans]))
        suppressions = [
            SuppressionItem(suppression_pk(tenant, phone), SUPPRESSED, at=at)
            for phone in _to_suppress(survivor, merged, taken)
        ]
        bookkeeping = _bookkeeping(tenant, unique.values(), listed, taken)  # not counted
        media = self._delete_media(unique.values())  # first: the items name the objects
        _delete_leaving_tombstones([*unique.values(), *bookkeeping], tombstones, suppressions)
        return Erasure(items=len(unique), suppressed=len(suppressions), media_objects=media)

    def _held_and_taken(
        self, tenant: str, listed: Iterable[Key], ids: set[str]
    ) -> tuple[list[KeyItem], set[str]]:
        """The key items of ``listed`` still held by one of ``ids``, and the pks of those someone else
        holds now (a stale number that passed to someone else, I6, is theirs)."""
        owners = [i for i in self._get((key_pk(tenant, k), KEY) for k in listed) if isinstance(i, KeyItem)]
        held = [k for k in owners if k.customer_id in ids]
        return held, {k.pk for k in owners if k.customer_id not in ids}

    def _delete_media(self, items: Iterable[TableItem]) -> int:
        """Delete the media bucket's copies of these messages' attachments; how many were stored."""
        attachments = [
            a for i in items if isinstance(i, MessageItem) and i.media for a in _media_of(i).values()
        ]
        keys, stored = stored_keys(attachments)
        if keys and self._media_objects is not None:
            self._media_objects().delete(keys)
        return stored if self._media_objects is not None else 0

    def _tombstones(self, tenant: str, event_ids: Iterable[str | None]) -> set[str]:
        """The tombstone of each provider event; none without a masking key (then none are recognised)."""
        if not self._masking_key:
            return set()
        return {pk for e in event_ids if e and (pk := self._tombstone(tenant, e))}

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


def _partitions_and_timelines(tenant: str, ids: Iterable[str]) -> list[TableItem]:
    """Every item in these customers' partitions and on their timelines."""
    doomed: list[TableItem] = []
    for cid in ids:
        doomed.extend(TableItem.query(customer_pk(tenant, cid), consistent_read=True))
        doomed.extend(TableItem.timeline.query(customer_pk(tenant, cid)))
    return doomed


def _bookkeeping(
    tenant: str, items: Iterable[TableItem], listed: Iterable[Key], taken: set[str]
) -> list[TableItem]:
    """What an erasure deletes besides ``items``: the request-id item of each send request among them
    (``GET /messages/{request_id}``) and the options offered to each phone of ``listed`` nobody else
    holds (``taken``: R13). Deleting one that was never written is a no-op."""
    phones = [k.value for k in listed if k.kind == "phone" and key_pk(tenant, k) not in taken]
    found: list[TableItem] = [
        RequestIdItem(request_id_pk(tenant, request_id), REQUEST_ID)
        for item in items
        if isinstance(request_id := getattr(item, "request_id", None), str)
        and hasattr(item, "idempotency_key")
    ]
    return found + [OfferItem(offer_pk(tenant, phone), OFFERED) for phone in phones]


def _orphans(tenant: str, keys: Iterable[Key]) -> list[TableItem]:
    """What was sent to these phones and BSUIDs while no customer held them: send requests and outbound
    messages on their orphan index (I10)."""
    found: list[TableItem] = []
    for key in keys:
        if key.kind in ("phone", "bsuid"):
            found.extend(TableItem.timeline.query(orphan_pk(tenant, key)))
    return found


def _to_suppress(survivor: Customer, merged: Sequence[Customer], taken: set[str]) -> list[str]:
    """The phones to keep as SMS suppressions (R4) when erasing ``survivor`` and the customers ``merged``
    into it: every phone, current or stale, of any of them, unless its key item is one of ``taken`` (a
    number that passed to someone else, I6: whether it gets SMS is its new holder's to say); none
    unless their latest word was STOP (the survivor's, or a merged one's later than the survivor's)."""
    since = survivor.sms_opt_at
    later_stop = any(
        m.sms_opted_out and (since is None or (m.sms_opt_at is not None and m.sms_opt_at > since))
        for m in merged
    )
    if not (survivor.sms_opted_out or later_stop):
        return []
    phones = {p.e164 for c in (survivor, *merged) for p in c.phones}
    return sorted(p for p in phones if key_pk(survivor.tenant, Key("phone", p)) not in taken)


def _provider_event_ids(items: Iterable[TableItem]) -> set[str | None]:
    """The provider events these items came from (messages and identity events)."""
    events: set[str | None] = {i.message_id for i in items if isinstance(i, MessageItem)}
    events |= {i.event_id for i in items if isinstance(i, IdentityEventItem)}
    return events


def _delete_leaving_tombstones(
    items: Iterable[TableItem], tombstones: Iterable[str], suppressions: Iterable[SuppressionItem]
) -> None:
    with TableItem.batch_write() as batch:
        for item in items:
            batch.delete(item)
        for pk in tombstones:
            batch.save(ErasedItem(pk, ERASED, expires_at=ERASED_FOR))
        for suppression in suppressions:  # a later erasure of the same phone moves its time on
            batch.save(suppression)


def _live_owners_read(items: list[TableItem], owners: dict[Key, str]) -> dict[str, Customer]:
    """The key owners whose profile came with ``items``: a guessed profile that is not an owner's, or is
    merged away, does not count."""
    read = {i.customer_id: i for i in items if isinstance(i, CustomerItem) and not i.merged_into}
    return {cid: to_customer(read[cid]) for cid in set(owners.values()) if cid in read}


def _check_not_erased(tx: TransactWrite, tombstone: str | None) -> None:
    """The provider event must not name an erased customer (I10): no tombstone for it."""
    if tombstone is not None:
        tx.condition_check(ErasedItem, tombstone, ERASED, condition=ErasedItem.pk.does_not_exist())


def _save_customers(tx: TransactWrite, customers: dict[str, Customer], base_versions: dict[str, int]) -> None:
    """Each profile, conditional on the version read (a new one: must not exist)."""
    for cid, customer in customers.items():
        profile = to_item(customer)
        if cid in base_versions:
            profile.version = base_versions[cid]
        tx.save(profile)


def _save_key_owners(tx: TransactWrite, tenant: str, key_owners: dict[Key, tuple[str | None, str]]) -> None:
    """Each key's new owner, conditional on the owner read (none: the key must not exist)."""
    for key, (before, after) in key_owners.items():
        owner = KeyItem(key_pk(tenant, key), KEY, customer_id=after)
        condition = KeyItem.pk.does_not_exist() if before is None else KeyItem.customer_id == before
        tx.save(owner, condition=condition)


def _store_message_once(tx: TransactWrite, message: MessageRecord) -> None:
    """The message, unless it is stored already (a redelivery)."""
    tx.update(message_shell(message), message_actions(message), MessageItem.direction.does_not_exist())


_Cancellation = Literal["erased", "redelivered", "conflict", "unstorable", "unknown"]


def _cancellation(exc: TransactWriteError, *, checked_erased: bool, with_message: bool) -> _Cancellation:
    """Why DynamoDB cancelled a ``commit``, from each request's reason code, in the request's order."""
    codes = _reason_codes(exc)
    if checked_erased and codes and codes[0] == "ConditionalCheckFailed":
        return "erased"
    # PynamoDB sends condition checks, then puts, then updates: the message update is the last.
    if with_message and codes and codes[-1] == "ConditionalCheckFailed":
        return "redelivered"
    if any(code in _RETRYABLE for code in codes):
        return "conflict"
    if any(code == "ValidationError" for code in codes) or _refused(exc):
        return "unstorable"
    return "unknown"


def _reason_codes(exc: TransactWriteError) -> list[str | None]:
    """The reason code of each request of the transaction, in the order they were sent."""
    reasons = exc.cancellation_reasons or []
    return [r.code if r is not None else None for r in reasons]


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
        whatsapp_opt_in=customer.whatsapp_opt_in,
        whatsapp_opt_in_at=customer.whatsapp_opt_in_at,
        whatsapp_opt_in_source=customer.whatsapp_opt_in_source,
        whatsapp_last_inbound={b: int(at.timestamp()) for b, at in customer.whatsapp_last_inbound.items()},
        sms_last_to=customer.sms_last_to,
        sms_last_to_at=customer.sms_last_to_at,
        merged_from=list(customer.merged_from),
        merged_into=customer.merged_into,
        external_id=customer.external_id,
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
        whatsapp_opt_in=bool(item.whatsapp_opt_in),
        whatsapp_opt_in_at=item.whatsapp_opt_in_at,
        whatsapp_opt_in_source=item.whatsapp_opt_in_source,
        whatsapp_last_inbound={b: datetime.fromtimestamp(int(ts), UTC) for b, ts in windows.items()},
        sms_last_to=item.sms_last_to,
        sms_last_to_at=item.sms_last_to_at,
        merged_from=tuple(item.merged_from or ()),
        merged_into=item.merged_into,
        version=int(item.version or 0),
        external_id=item.external_id,
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
        *([MessageItem.media.set(message.media)] if message.media else []),
        *([MessageItem.choice.set(json.dumps(asdict(message.choice)))] if message.choice else []),
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


def _media_of(item: MessageItem) -> dict[str, dict[str, Any]]:
    """A message's attachments by index, as stored (``crossroute.media``)."""
    return cast(dict[str, dict[str, Any]], item.media.as_dict()) if item.media is not None else {}


def _timeline_entry(item: TableItem) -> dict[str, Any]:
    """One timeline row: a message in or out, an identity event (I9), or what another store's item says
    of itself (``timeline_entry``: a send request's routing decision, R9)."""
    if isinstance(item, MessageItem):
        return {
            "kind": "message",
            "direction": item.direction,
            "channel": item.channel,
            "provider": item.provider,
            "message_id": item.message_id,
            "business": item.business,
            "type": item.message_type,
            "text": item.text,
            "at": item.sent_at.isoformat() if item.sent_at else None,
            "status": item.status,
            "status_at": item.status_at.isoformat() if item.status_at else None,
            "errors": json.loads(item.errors) if item.errors else [],
            "historical": bool(item.historical),
            "customer_id": item.customer_id,
            "choice": json.loads(item.choice) if item.choice else None,
            "media": _media_of(item) or None,  # by index; contacts.py shows it (crossroute.media)
        }
    if isinstance(item, IdentityEventItem):
        return {
            "kind": "identity",
            "change": item.kind,
            "at": item.at.isoformat(),
            "source": item.source,
            "event_id": item.event_id,
            "detail": json.loads(item.detail),
            "customer_id": item.customer_id,
        }
    entry = getattr(item, "timeline_entry", None)  # another store's item (a send request: R9)
    if callable(entry):
        return cast(dict[str, Any], entry())
    return {
        "kind": item.type if isinstance(item.type, str) else "other",
        "at": (item.gsi1sk or "").split("#")[0],
    }
