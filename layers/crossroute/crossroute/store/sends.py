"""Send requests in DynamoDB: one item per idempotency key (R8), holding the request, its decision (R9)
and the state of each channel's send, so a key sends at most one message per channel, whatever the
retries, redeliveries and restarts.

- send request: pk ``T#<tenant>#R#<idempotency key>``, sk ``REQUEST``; on the customer's timeline
  (gsi1 ``T#<tenant>#C#<customer id>`` / ``<time>#decision#<request id>``) when the customer is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import MapAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from crossroute.channels import Channel, Outbound, Sent
from crossroute.store.identity_store import MessageRecord, message_actions, message_shell
from crossroute.store.tables import MessageItem, TableItem, customer_pk, message_pk

REQUEST = "REQUEST"
KEEP = timedelta(days=90)  # how long an idempotency key is remembered


class SendState(MapAttribute[str, Any]):
    state = UnicodeAttribute()  # sending | sent | failed | unknown
    at = UTCDateTimeAttribute()
    provider_message_id = UnicodeAttribute(null=True)
    code = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)


class SendRequestItem(TableItem, discriminator="send_request"):
    tenant = UnicodeAttribute()
    idempotency_key = UnicodeAttribute()
    request_id = UnicodeAttribute()
    request = UnicodeAttribute()  # JSON, as first accepted
    decision = UnicodeAttribute(null=True)  # JSON list (R9), the first decision made
    customer_id = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    whatsapp = SendState(null=True)
    sms = SendState(null=True)


def request_pk(tenant: str, key: str) -> str:
    return f"T#{tenant}#R#{key}"


@dataclass(frozen=True)
class SendRecord:
    tenant: str
    idempotency_key: str
    request_id: str
    request: dict[str, Any]
    decision: list[dict[str, Any]]
    customer_id: str | None
    sends: dict[str, dict[str, Any]] = field(default_factory=dict)
    claimed: Channel | None = None  # the channel this call claimed, if any


class DynamoSendStore:
    def begin(
        self,
        *,
        tenant: str,
        key: str,
        request_id: str,
        request: dict[str, Any],
        decision: list[dict[str, Any]],
        customer_id: str | None,
        claim: Channel | None,
        now: datetime,
    ) -> SendRecord:
        """Record the request and its decision (the first ones win) and claim ``claim``: one round trip.

        Whether the claim was granted is ``SendRecord.claimed``.
        """
        item = SendRequestItem(request_pk(tenant, key), REQUEST)
        actions: list[Action] = [
            SendRequestItem.type.set(SendRequestItem),
            SendRequestItem.tenant.set(tenant),
            SendRequestItem.idempotency_key.set(key),
            SendRequestItem.request_id.set(SendRequestItem.request_id | request_id),
            SendRequestItem.request.set(SendRequestItem.request | json.dumps(request, sort_keys=True)),
            SendRequestItem.decision.set(SendRequestItem.decision | json.dumps(decision)),
            SendRequestItem.created_at.set(SendRequestItem.created_at | now),
            SendRequestItem.expires_at.set(now + KEEP),
        ]
        if customer_id:
            actions += [
                SendRequestItem.customer_id.set(SendRequestItem.customer_id | customer_id),
                SendRequestItem.gsi1pk.set(SendRequestItem.gsi1pk | customer_pk(tenant, customer_id)),
                SendRequestItem.gsi1sk.set(
                    SendRequestItem.gsi1sk | f"{now.isoformat()}#decision#{request_id}"
                ),
            ]
        if claim is None:
            item.update(actions)
            return _record(item, claimed=None)
        attribute = _state_attribute(claim)
        try:
            item.update(
                [*actions, attribute.set({"state": "sending", "at": now})], attribute.does_not_exist()
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            # Claimed by an earlier attempt: the record and decision are there; this claim is not ours.
            item.update(actions)
            return _record(item, claimed=None)
        return _record(item, claimed=claim)

    def accept(
        self, *, tenant: str, key: str, request_id: str, request: dict[str, Any], now: datetime
    ) -> str:
        """``POST /messages``: remember the request under its key; its first request id is the answer."""
        item = SendRequestItem(request_pk(tenant, key), REQUEST)
        item.update(
            [
                SendRequestItem.type.set(SendRequestItem),
                SendRequestItem.tenant.set(tenant),
                SendRequestItem.idempotency_key.set(key),
                SendRequestItem.request_id.set(SendRequestItem.request_id | request_id),
                SendRequestItem.request.set(SendRequestItem.request | json.dumps(request, sort_keys=True)),
                SendRequestItem.created_at.set(SendRequestItem.created_at | now),
                SendRequestItem.expires_at.set(now + KEEP),
            ]
        )
        return item.request_id

    def claim(self, tenant: str, key: str, channel: Channel, now: datetime) -> bool:
        """Claim a further channel (a fallback): at most one message per channel per key (R8)."""
        attribute = _state_attribute(channel)
        try:
            SendRequestItem(request_pk(tenant, key), REQUEST).update(
                [attribute.set({"state": "sending", "at": now})],
                condition=SendRequestItem.request_id.exists() & attribute.does_not_exist(),
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def finish(
        self,
        tenant: str,
        key: str,
        channel: Channel,
        state: str,
        now: datetime,
        *,
        provider_message_id: str | None = None,
        code: int | None = None,
        reason: str | None = None,
    ) -> None:
        value = {"state": state, "at": now, "provider_message_id": provider_message_id, "reason": reason}
        value["code"] = str(code) if code is not None else None
        SendRequestItem(request_pk(tenant, key), REQUEST).update(
            [_state_attribute(channel).set({k: v for k, v in value.items() if v is not None})]
        )

    def release(self, tenant: str, key: str, channel: Channel) -> None:
        """Undo a claim whose send was refused before it was accepted (outcome ``retry``): try again later."""
        attribute = _state_attribute(channel)
        SendRequestItem(request_pk(tenant, key), REQUEST).update(
            [attribute.remove()], condition=attribute["state"] == "sending"
        )

    def outbound(
        self, record: SendRecord, channel: Channel, outbound: Outbound, sent: Sent, now: datetime
    ) -> None:
        """The send went out: the channel's state and the message on the customer's timeline, atomically.

        The message item carries the request's key, so a later status can find the request (R7).
        """
        message = MessageRecord(
            tenant=record.tenant,
            provider=sent.provider,
            message_id=sent.message_id,
            customer_id=record.customer_id,
            direction="out",
            channel=channel,
            business=outbound.business,
            message_type="template" if outbound.template else "text",
            sent_at=now,
            text=outbound.text,
            raw={"template": outbound.template.name if outbound.template else None},
            request_key=record.idempotency_key,
        )
        state = {"state": "sent", "at": now, "provider_message_id": sent.message_id}
        with TransactWrite(connection=TableItem._get_connection().connection) as tx:
            tx.update(
                SendRequestItem(request_pk(record.tenant, record.idempotency_key), REQUEST),
                [_state_attribute(channel).set(state)],
            )
            tx.update(message_shell(message), message_actions(message))

    def request_of(self, tenant: str, provider: str, message_id: str) -> str | None:
        """The idempotency key of the request that sent this provider message, if crossroute sent it."""
        try:
            item = MessageItem.get(message_pk(tenant, provider, message_id), "MSG", consistent_read=True)
        except MessageItem.DoesNotExist:
            return None
        return item.request_key

    def get(self, tenant: str, key: str) -> SendRecord | None:
        try:
            item = SendRequestItem.get(request_pk(tenant, key), REQUEST, consistent_read=True)
        except SendRequestItem.DoesNotExist:
            return None
        return _record(item, claimed=None)


def _state_attribute(channel: Channel) -> SendState:
    return SendRequestItem.whatsapp if channel == "whatsapp" else SendRequestItem.sms


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
    )
