"""Send requests in DynamoDB: one item per idempotency key (R8), holding the request, its decision (R9)
and the state of each channel's send, so a key sends at most one message per channel, whatever the
retries, redeliveries and restarts.

- send request: pk ``T#<tenant>#R#<idempotency key>``, sk ``REQUEST``, with ``request_hash`` (the
  request's canonical hash: the same key with another hash is refused at ``POST /messages``); on the
  customer's timeline (gsi1 ``T#<tenant>#C#<customer id>`` / ``<time>#decision#<request id>``) when
  the customer is known, else on the orphan index of the phone or BSUID it names (``tables.orphan_pk``,
  I10), from which the first handling that knows its customer moves it (``customer_timeline``: that
  customer's, kept).
  An outbound message sent to no known customer is on the orphan index of its address too.
  ``dead_lettered_at``: when the request was first put on the send DLQ; set once, so the
  ``MessageUndeliverable`` that reports it (R12) is published once.
- request id: pk ``T#<tenant>#Q#<request id>``, sk ``REQUEST_ID``: the idempotency key a request id was
  given under, written by ``POST /messages`` (for ``GET /messages/{request_id}``); erased with its request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import MapAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from crossroute.channels import Channel, Outbound
from crossroute.identity.model import Key
from crossroute.ports import (
    IdempotencyKeyReused,
    MessageRecord,
    ProviderStatus,
    RecipientRead,
    SendProgress,
    SendRecord,
)
from crossroute.replies import OFFER_KEEP
from crossroute.routing.pacing import Pair
from crossroute.routing.request import Address, canonical_hash
from crossroute.routing.settlement import Claim, Settlement
from crossroute.store.identity_store import (
    OFFERED,
    SUPPRESSED,
    DynamoIdentityStore,
    message_actions,
    message_shell,
)
from crossroute.store.tables import (
    MSG,
    REQUEST_ID,
    MessageItem,
    OfferItem,
    PaceItem,
    ReadAlong,
    RequestIdItem,
    SuppressionItem,
    TableItem,
    customer_pk,
    message_pk,
    offer_pk,
    orphan_pk,
    request_id_pk,
    suppression_pk,
)

REQUEST = "REQUEST"
KEEP = timedelta(days=90)  # how long an idempotency key is remembered
PACE = "PACE"
PACE_KEEP = timedelta(days=1)  # a pair's pace outlives its last send by far more than the interval


class SendState(MapAttribute[str, Any]):
    state = UnicodeAttribute()  # sending | sent | failed | unknown
    at = UTCDateTimeAttribute()
    attempt = UnicodeAttribute(null=True)  # the attempt that claimed it: only that attempt settles it
    provider = UnicodeAttribute(null=True)
    provider_message_id = UnicodeAttribute(null=True)
    outcome = UnicodeAttribute(null=True)  # a failure's outcome: fallback | permanent | unknown
    code = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)  # the routing reason it was sent for (R9, or an R7 fallback)
    sender = UnicodeAttribute(null=True)  # sent: the business number it went out from (R10)


class SendRequestItem(TableItem, discriminator="send_request"):
    tenant = UnicodeAttribute()
    idempotency_key = UnicodeAttribute()
    request_id = UnicodeAttribute()
    request = UnicodeAttribute()  # JSON, as first accepted
    request_hash = UnicodeAttribute(null=True)  # its canonical hash (absent on items written before it)
    decision = UnicodeAttribute(null=True)  # JSON list (R9), the first decision made
    customer_id = UnicodeAttribute(null=True)
    external_id = UnicodeAttribute(null=True)  # the customer's, when the request was first recorded (I11)
    created_at = UTCDateTimeAttribute()
    whatsapp = SendState(null=True)
    sms = SendState(null=True)
    dead_lettered_at = UTCDateTimeAttribute(null=True)  # R12: first put on the send DLQ (reported once)
    # The timeline partition of the first customer the request resolved to: where gsi1pk stays (I10).
    customer_timeline = UnicodeAttribute(null=True)

    def timeline_entry(self) -> dict[str, Any]:
        """R9 on the customer's timeline (contract §6): each channel considered, whether it qualified and
        why, the channel chosen, what each channel's send became, and ``from``: the business number it
        went out from (R10: as the send recorded it, else the decision's sender of the channel that sent,
        else of the one chosen). No
        text and no customer address."""
        channels = json.loads(self.decision) if self.decision else []
        sends = {}
        for channel in ("whatsapp", "sms"):
            state = getattr(self, channel)
            if state is not None:
                sends[channel] = {
                    "state": state.state,
                    "provider": state.provider,
                    "provider_message_id": state.provider_message_id,
                    "reason": state.reason,
                }
        chosen = next((c["channel"] for c in channels if c.get("qualified")), None)
        used = next((c for c, s in sends.items() if s["state"] == "sent"), chosen)
        return {
            "kind": "decision",
            "at": (self.gsi1sk or "").split("#")[0] or self.created_at.isoformat(),
            "request_id": self.request_id,
            "idempotency_key": self.idempotency_key,
            "channels": channels,
            "chosen": chosen,
            "from": self._sender(used, channels),
            "sends": sends,
            "customer_id": self.customer_id,
        }

    def _sender(self, channel: str | None, decision: list[dict[str, Any]]) -> str | None:
        """R10: the number ``channel`` went out from, as its send recorded it, else as decided."""
        state = getattr(self, channel) if channel in ("whatsapp", "sms") else None
        if state is not None and state.sender:
            return str(state.sender)
        decided = (d.get("from") for d in decision if d.get("channel") == channel and d.get("qualified"))
        return next(decided, None)


def request_pk(tenant: str, key: str) -> str:
    return f"T#{tenant}#R#{key}"


def pace_pk(pair: Pair) -> str:
    return f"T#{pair.tenant}#P#{pair.business}#{pair.user}"


class DynamoSendStore:
    """``SendStore`` (dispatch) and ``SendRequests`` (the send door) over the table."""

    def __init__(self, identity: DynamoIdentityStore | None = None) -> None:
        """``identity``: where recipients are read (share the container's: it remembers key owners)."""
        self._identity = identity or DynamoIdentityStore()

    def recipient_and_pace(
        self, tenant: str, *, customer_id: str | None, keys: Sequence[Key], pair: Pair | None
    ) -> RecipientRead:
        """The customer by id, or the holders of ``keys``, the pair's pace item, and the SMS suppression
        of each phone in ``keys`` (I10, R4): one batch read."""
        phones = {suppression_pk(tenant, k.value): k.value for k in keys if k.kind == "phone"}
        wanted = [*([(pace_pk(pair), PACE)] if pair else []), *((pk, SUPPRESSED) for pk in phones)]
        along = ReadAlong(wanted) if wanted else None
        if customer_id:
            found = RecipientRead(customer=self._identity.customer(tenant, customer_id, along=along))
        else:
            found = RecipientRead(holders=self._identity.holders(tenant, keys, along=along))
        return _with_pace_and_suppressions(found, along, phones)

    def suppression(self, tenant: str, phone: str) -> datetime | None:
        """When an erasure suppressed SMS to ``phone`` (I10, R4): one consistent read."""
        try:
            return SuppressionItem.get(suppression_pk(tenant, phone), SUPPRESSED, consistent_read=True).at
        except SuppressionItem.DoesNotExist:
            return None

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
        """Record the request and its decision (the first ones win) and take ``claim``: one round trip.

        Whether the claim was granted is ``SendRecord.claimed``. On the timeline of the first customer
        it resolves to, else (none known) on the orphan index of the address ``to`` names (I10).
        """
        item = SendRequestItem(request_pk(tenant, key), REQUEST)
        actions = [
            *_request_actions(tenant, key, request_id, request, now),
            SendRequestItem.decision.set(SendRequestItem.decision | json.dumps(decision)),
        ]
        if customer_id:
            timeline = customer_pk(tenant, customer_id)
            actions += [
                SendRequestItem.customer_id.set(SendRequestItem.customer_id | customer_id),
                # Off the orphan index (or the named id's timeline) onto the first known customer's.
                SendRequestItem.gsi1pk.set(SendRequestItem.customer_timeline | timeline),
                SendRequestItem.customer_timeline.set(SendRequestItem.customer_timeline | timeline),
                _timeline_sort_key(request_id, now),
            ]
            if external_id:  # kept with the first customer, as ``customer_id`` is
                actions.append(SendRequestItem.external_id.set(SendRequestItem.external_id | external_id))
        else:
            actions += _indexed_under(tenant, to, request_id, now)
        if claim is None:
            item.update(actions)
            return _record(item, claimed=None)
        attribute = _state_attribute(claim.channel)
        try:
            item.update([*actions, attribute.set(_sending(claim, now))], attribute.does_not_exist())
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            # Claimed by an earlier attempt: the record and decision are there; this claim is not ours.
            item.update(actions)
            return _record(item, claimed=None)
        return _record(item, claimed=claim.channel)

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
        """``POST /messages``: remember the request under its key; its first request id is the answer.
        Indexed under the customer id ``to`` names, else its phone or BSUID (I10), until dispatch knows
        the customer (``begin``). Refused (``IdempotencyKeyReused``, nothing written) when the key holds
        a request of another canonical hash. Two writes: the request, then its request id's item."""
        item = SendRequestItem(request_pk(tenant, key), REQUEST)
        request_hash = canonical_hash(request)
        same = SendRequestItem.request.does_not_exist() | (SendRequestItem.request_hash == request_hash)
        actions = [
            *_request_actions(tenant, key, request_id, request, now),
            *_indexed_under(tenant, to, request_id, now),
        ]
        try:
            item.update(actions, condition=same)
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            item = _same_request_or_refuse(tenant, key, request_hash)
        RequestIdItem(
            request_id_pk(tenant, item.request_id), REQUEST_ID, idempotency_key=key, expires_at=now + KEEP
        ).save()
        return item.request_id

    def progress(self, tenant: str, request_id: str) -> SendProgress | None:
        """``GET /messages/{request_id}``: the request id's key, the request, then the provider status of
        each message it sent (three consistent reads; the last only once something was sent)."""
        try:
            pointer = RequestIdItem.get(request_id_pk(tenant, request_id), REQUEST_ID, consistent_read=True)
        except RequestIdItem.DoesNotExist:
            return None
        try:
            item = SendRequestItem.get(
                request_pk(tenant, pointer.idempotency_key), REQUEST, consistent_read=True
            )
        except SendRequestItem.DoesNotExist:
            return None
        if item.request_id != request_id:  # the key expired and was given to another request since
            return None
        return SendProgress(
            record=_record(item, claimed=None),
            created_at=item.created_at,
            dead_lettered_at=item.dead_lettered_at,
            deliveries=_deliveries(item),
        )

    def claim(self, claim: Claim, now: datetime) -> bool:
        """Claim a further channel (a fallback): at most one message per channel per key (R8)."""
        attribute = _state_attribute(claim.channel)
        try:
            SendRequestItem(request_pk(claim.tenant, claim.key), REQUEST).update(
                [attribute.set(_sending(claim, now))],
                condition=SendRequestItem.request_id.exists() & attribute.does_not_exist(),
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def settle(self, settlement: Settlement) -> bool:
        """Record how a claimed send ended, if the claim is still that attempt's and unsettled.

        False: it was settled already (a follow-up delivered twice); nothing is written then.
        """
        claim = settlement.claim
        item = SendRequestItem(request_pk(claim.tenant, claim.key), REQUEST)
        attribute = _state_attribute(claim.channel)
        ours = (attribute["state"] == "sending") & (attribute["attempt"] == claim.attempt)
        try:
            if settlement.result == "released":  # refused before it was accepted: try again later
                item.update([attribute.remove()], condition=ours)
            elif settlement.result == "sent":
                self._sent(settlement, item, attribute, ours)
            else:
                item.update([attribute.set(settlement.state())], condition=ours)
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        except TransactWriteError as exc:
            if any(r and r.code == "ConditionalCheckFailed" for r in exc.cancellation_reasons):
                return False
            raise
        return True

    @staticmethod
    def _sent(settlement: Settlement, item: SendRequestItem, attribute: SendState, ours: Any) -> None:
        """The send went out: the channel's state and the message on the customer's timeline, atomically.

        The message item carries the request's key, so a later status can find the request (R7).
        """
        claim, sent, outbound = settlement.claim, settlement.sent, settlement.outbound
        assert sent is not None and outbound is not None
        message = MessageRecord(
            tenant=claim.tenant,
            provider=sent.provider,
            message_id=sent.message_id,
            customer_id=settlement.customer_id,
            direction="out",
            channel=claim.channel,
            business=outbound.business,
            message_type=_message_type(outbound),
            sent_at=settlement.at,
            text=outbound.text,
            raw={"template": outbound.template.name if outbound.template else None},
            request_key=claim.key,
        )
        with TransactWrite(connection=TableItem._get_connection().connection) as tx:
            tx.update(item, [attribute.set(settlement.state())], condition=ours)
            orphaned = [] if message.customer_id else _orphan_message(message, outbound)
            tx.update(message_shell(message), [*message_actions(message), *orphaned])
            if outbound.options and outbound.to:  # R13: what a numbered reply from that phone picks
                tx.save(_offer(claim.tenant, outbound, settlement.at, claim.key))
            if settlement.pair and settlement.pace:  # count it against the pair rate
                pace = settlement.pace
                moved: Action
                if pace.add is not None:  # an atomic add: two containers sending at once both count
                    moved = PaceItem.tat.add(pace.add)
                else:
                    assert pace.set_to is not None
                    moved = PaceItem.tat.set(pace.set_to)
                expires = settlement.at + PACE_KEEP
                actions: list[Action] = [PaceItem.type.set(PaceItem), moved, PaceItem.expires_at.set(expires)]
                tx.update(PaceItem(pace_pk(settlement.pair), PACE), actions)

    def dead_lettered(
        self, *, tenant: str, key: str, request_id: str, request: dict[str, Any], now: datetime
    ) -> SendRecord | None:
        """R12: set ``dead_lettered_at`` if it is absent (one conditional write, remembering the request
        as ``accept`` does). The record when this call set it: its caller reports it; None otherwise."""
        item = SendRequestItem(request_pk(tenant, key), REQUEST)
        actions = [
            *_request_actions(tenant, key, request_id, request, now),
            SendRequestItem.dead_lettered_at.set(now),
        ]
        try:
            item.update(actions, condition=SendRequestItem.dead_lettered_at.does_not_exist())
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return None
            raise
        return _record(item, claimed=None)

    def request_of(self, tenant: str, provider: str, message_id: str) -> str | None:
        """The idempotency key of the request that sent this provider message, if crossroute sent it."""
        try:
            item = MessageItem.get(message_pk(tenant, provider, message_id), MSG, consistent_read=True)
        except MessageItem.DoesNotExist:
            return None
        return item.request_key

    def record_and_status(
        self, tenant: str, key: str, provider: str, message_id: str
    ) -> tuple[SendRecord | None, str | None]:
        """R14: the request item and the message item (its ``status``, as ``apply_status`` keeps it) in one
        consistent BatchGetItem."""
        wanted = [(request_pk(tenant, key), REQUEST), (message_pk(tenant, provider, message_id), MSG)]
        record, status = None, None
        for item in TableItem.batch_get(wanted, consistent_read=True):
            if isinstance(item, SendRequestItem):
                record = _record(item, claimed=None)
            elif isinstance(item, MessageItem):
                status = item.status
        return record, status

    def get(self, tenant: str, key: str) -> SendRecord | None:
        try:
            item = SendRequestItem.get(request_pk(tenant, key), REQUEST, consistent_read=True)
        except SendRequestItem.DoesNotExist:
            return None
        return _record(item, claimed=None)


def _request_actions(
    tenant: str, key: str, request_id: str, request: dict[str, Any], now: datetime
) -> list[Action]:
    """The request under its key: the first request id, request and time are kept (``|`` = if absent)."""
    return [
        SendRequestItem.type.set(SendRequestItem),
        SendRequestItem.tenant.set(tenant),
        SendRequestItem.idempotency_key.set(key),
        SendRequestItem.request_id.set(SendRequestItem.request_id | request_id),
        SendRequestItem.request.set(SendRequestItem.request | json.dumps(request, sort_keys=True)),
        SendRequestItem.request_hash.set(SendRequestItem.request_hash | canonical_hash(request)),
        SendRequestItem.created_at.set(SendRequestItem.created_at | now),
        SendRequestItem.expires_at.set(now + KEEP),
    ]


def _same_request_or_refuse(tenant: str, key: str, request_hash: str) -> SendRequestItem:
    """The item under ``key`` when it holds the same request (an item written before ``request_hash``
    was kept is compared by its stored request); else ``IdempotencyKeyReused``."""
    item = SendRequestItem.get(request_pk(tenant, key), REQUEST, consistent_read=True)
    if item.request_hash is not None or canonical_hash(json.loads(item.request)) != request_hash:
        raise IdempotencyKeyReused(item.request_id)
    return item


def _deliveries(item: SendRequestItem) -> dict[str, ProviderStatus]:
    """The latest provider status of each message ``item``'s sends went out as (one batch read)."""
    sent = {}
    for channel in ("whatsapp", "sms"):
        state = getattr(item, channel)
        if state is not None and state.provider and state.provider_message_id:
            sent[message_pk(item.tenant, state.provider, state.provider_message_id)] = channel
    if not sent:
        return {}
    found = {i.pk: i for i in MessageItem.batch_get([(pk, MSG) for pk in sent], consistent_read=True)}
    deliveries = {}
    for pk, channel in sent.items():
        message = found.get(pk)
        if message is None:
            deliveries[channel] = ProviderStatus(None)
        else:
            errors = json.loads(message.errors) if message.errors else []
            deliveries[channel] = ProviderStatus(message.status, message.status_at, errors)
    return deliveries


def _with_pace_and_suppressions(
    found: RecipientRead, along: ReadAlong | None, phones: dict[str, str]
) -> RecipientRead:
    """``found`` with what was read along: the pair's tat, and each phone's suppression (``phones``: by
    the pk of its suppression item)."""
    items = along.found.values() if along else []
    pace = next((i for i in items if isinstance(i, PaceItem)), None)
    suppressed = {phones[i.pk]: i.at for i in items if isinstance(i, SuppressionItem) and i.pk in phones}
    return RecipientRead(
        found.customer,
        found.holders,
        float(pace.tat) if pace is not None else None,
        {phone: suppressed.get(phone) for phone in phones.values()},
    )


def _timeline_sort_key(request_id: str, now: datetime) -> Action:
    return SendRequestItem.gsi1sk.set(SendRequestItem.gsi1sk | f"{now.isoformat()}#decision#{request_id}")


def _indexed_under(tenant: str, to: Address | None, request_id: str, now: datetime) -> list[Action]:
    """Where a request whose customer is not known (yet) is indexed, unless it is indexed already: the
    timeline of the customer id it names, else the orphan index of its phone or BSUID (I10)."""
    if to is None:
        return []
    named = to.named_key
    if to.customer_id:
        partition = customer_pk(tenant, to.customer_id)
    elif named is not None:
        partition = orphan_pk(tenant, named)
    else:
        return []
    return [
        SendRequestItem.gsi1pk.set(SendRequestItem.gsi1pk | partition),
        _timeline_sort_key(request_id, now),
    ]


def _orphan_message(message: MessageRecord, outbound: Outbound) -> list[Action]:
    """A message sent to no known customer, on the orphan index of its address (I10)."""
    address = Key("phone", outbound.to) if outbound.to else Key("bsuid", outbound.recipient or "")
    if not address.value:
        return []
    return [
        MessageItem.gsi1pk.set(orphan_pk(message.tenant, address)),
        MessageItem.gsi1sk.set(
            f"{message.sent_at.isoformat()}#message#{message.provider}#{message.message_id}"
        ),
    ]


def _message_type(outbound: Outbound) -> str:
    """What went out, as a message in is typed: ``template``, ``interactive`` (native buttons or a
    list), the media's type (``image``, ...), else ``text`` (numbered options rendered as text too)."""
    if outbound.template is not None:
        return "template"
    if outbound.interactive is not None and outbound.channel == "whatsapp" and not outbound.options:
        return "interactive"
    return outbound.media.type if outbound.media is not None else "text"


def _offer(tenant: str, outbound: Outbound, at: datetime, key: str) -> OfferItem:
    """The numbered options ``outbound`` carried, kept under its phone (R13; a later offer replaces it)."""
    assert outbound.to is not None
    return OfferItem(
        offer_pk(tenant, outbound.to),
        OFFERED,
        channel=outbound.channel,
        options=json.dumps([list(option) for option in outbound.options]),
        sent_at=at,
        request_key=key,
        expires_at=at + OFFER_KEEP,
    )


def _state_attribute(channel: Channel) -> SendState:
    return SendRequestItem.whatsapp if channel == "whatsapp" else SendRequestItem.sms


def _sending(claim: Claim, now: datetime) -> dict[str, Any]:
    return {"state": "sending", "at": now, "attempt": claim.attempt}


def _record(item: SendRequestItem, *, claimed: Channel | None) -> SendRecord:
    sends = {}
    for channel in ("whatsapp", "sms"):
        state = getattr(item, channel)
        if state is not None:
            sends[channel] = {k: v for k, v in state.as_dict().items() if v is not None}
    return SendRecord(
        tenant=item.tenant,
        idempotency_key=item.idempotency_key,
        request_id=item.request_id,
        request=json.loads(item.request),
        decision=json.loads(item.decision) if item.decision else [],
        customer_id=item.customer_id,
        sends=sends,
        claimed=claimed,
        external_id=item.external_id,
    )
