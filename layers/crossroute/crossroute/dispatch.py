"""The dispatch use case: a send request goes out on the channel that can deliver it, and only there.

Doors: EventBridge ``SendMessage`` (via the send queue), the send queue itself, ``POST /messages``.
Per request: resolve who it names, decide (pure policy, R1-R9), record request + decision + claim the
chosen channel in one write, send, record the result. A definite failure moves on to the next
qualifying channel; a refused-but-retryable send releases its claim and is retried by the queue; an
unknown outcome is never sent again (R8). A WhatsApp send that later fails with a fallback code gets
exactly one SMS, when SMS still qualifies (R7).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from crossroute.bus import BusEvent, EventPublisher
from crossroute.channels import Channel, Outbound, Sender, SendFailed, Sent
from crossroute.channels.errors import is_fallback
from crossroute.identity.model import Customer, Key
from crossroute.routing.pacing import DEFAULT_RATE, PaceExceeded, Pacer
from crossroute.routing.policy import (
    FALLBACK_PREFIX,
    ChannelDecision,
    Decision,
    Recipient,
    TenantChannels,
    decide,
)
from crossroute.routing.request import InvalidRequest, SendRequest, parse_send_request
from crossroute.store.sends import SendRecord

logger = Logger(child=True)


class RetryLater(Exception):
    """A provider refused for now (throughput, transient): the queue redelivers the request later."""


def retry_delay(attempt: int, *, rng: Callable[[float, float], float] = random.uniform) -> int:
    """Seconds before a refused send is tried again: exponential backoff with full jitter, 2 s to 15 min.

    ``attempt`` is the SQS receive count (1 for the first delivery).
    """
    ceiling = min(900.0, 2.0 * 2 ** max(0, attempt - 1))
    return max(1, round(rng(ceiling / 2, ceiling)))


class Customers(Protocol):
    def holders(self, tenant: str, keys: list[Key]) -> dict[Key, Customer]: ...

    def customer(self, tenant: str, customer_id: str) -> Customer | None: ...


class Sends(Protocol):
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
    ) -> SendRecord: ...

    def claim(self, tenant: str, key: str, channel: Channel, now: datetime) -> bool: ...

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
    ) -> None: ...

    def release(self, tenant: str, key: str, channel: Channel) -> None: ...

    def get(self, tenant: str, key: str) -> SendRecord | None: ...

    def outbound(
        self, record: SendRecord, channel: Channel, outbound: Outbound, sent: Sent, now: datetime
    ) -> None: ...

    def request_of(self, tenant: str, provider: str, message_id: str) -> str | None: ...


@dataclass(frozen=True)
class TenantSetup:
    """What dispatch needs of a tenant: its channels and the senders that can use them."""

    channels: TenantChannels
    senders: Mapping[Channel, Sender]
    default_region: str = "US"
    whatsapp_rate: float = DEFAULT_RATE  # messages/s of its WhatsApp number (20 when coexistence)


@dataclass
class Result:
    request_id: str | None
    sent: dict[str, str] = field(default_factory=dict)  # channel -> provider message id
    undeliverable: bool = False


class Dispatch:
    def __init__(
        self,
        customers: Customers,
        sends: Sends,
        tenants: Callable[[str], TenantSetup | None],
        publisher: EventPublisher,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        pacer: Pacer | None = None,
    ) -> None:
        self._customers = customers
        self._sends = sends
        self._tenants = tenants
        self._publisher = publisher
        self._clock = clock
        self._new_id = new_id
        self._pacer = pacer

    # ------------------------------------------------------------------ a send request

    def send(self, doc: Any) -> Result:
        """Handle one send request document from any door. Raises ``RetryLater`` to be retried."""
        try:
            # National phone formats are read in the tenant's region, when the tenant is known.
            tenant_id = doc.get("tenant") if isinstance(doc, dict) else None
            known = self._tenants(tenant_id) if isinstance(tenant_id, str) and tenant_id else None
            request = parse_send_request(doc, default_region=known.default_region if known else "US")
        except InvalidRequest as exc:
            tenant = doc.get("tenant") if isinstance(doc, dict) else None
            key = doc.get("idempotency_key") if isinstance(doc, dict) else None
            detail = {
                "tenant": tenant,
                "idempotency_key": key,
                "reason": "request.invalid",
                "problems": exc.problems,
            }
            self._publisher.publish([BusEvent("MessageUndeliverable", detail)])
            return Result(None, undeliverable=True)
        setup = known
        if setup is None:
            self._undeliverable(request, None, None, [], "request.unknown_tenant", [])
            return Result(None, undeliverable=True)
        now = self._clock()
        recipient = self._recipient(request)
        decision = decide(request, recipient, setup.channels, now)
        chosen = decision.chosen
        customer_id = recipient.customer.id if recipient.customer else None
        record = self._sends.begin(
            tenant=request.tenant,
            key=request.idempotency_key,
            request_id=self._new_id(),
            request=request.raw,
            decision=decision.as_record(),
            customer_id=customer_id,
            claim=chosen.channel if chosen else None,
            now=now,
        )
        result = Result(record.request_id)
        if chosen is None:
            self._undeliverable(request, record, customer_id, decision.as_record(), "no_channel", [])
            result.undeliverable = True
            return result
        if record.claimed is None:
            return self._resume(request, record, decision, chosen, setup, result, now)
        return self._send_from(request, record, decision, chosen, setup, result)

    def _resume(
        self,
        request: SendRequest,
        record: SendRecord,
        decision: Decision,
        chosen: ChannelDecision,
        setup: TenantSetup,
        result: Result,
        now: datetime,
    ) -> Result:
        """A redelivery: an earlier attempt claimed the first channel. If every channel it tried failed
        for good, carry on with the next one (say, an SMS that was throttled); if anything may have gone
        out (sent, sending, unknown), report it and never send again (R8)."""
        if any(state.get("state") != "failed" for state in record.sends.values()):
            return self._already(record, result)
        following = self._next(request, decision, chosen.channel, now)
        if following is None:
            return self._already(record, result)
        return self._send_from(request, record, decision, following, setup, result)

    def _send_from(
        self,
        request: SendRequest,
        record: SendRecord,
        decision: Decision,
        first: ChannelDecision,
        setup: TenantSetup,
        result: Result,
    ) -> Result:
        """Send on ``first`` (claimed); on a definite failure claim and try the next qualifying channel."""
        failures: list[dict[str, Any]] = []
        current: ChannelDecision | None = first
        while current is not None:
            outbound = current.outbound
            assert outbound is not None
            if self._pacer and current.channel == "whatsapp":
                try:
                    self._pacer.acquire(outbound.business, setup.whatsapp_rate)
                except PaceExceeded as exc:  # over the number's rate: nothing sent, try again later
                    self._sends.release(request.tenant, request.idempotency_key, current.channel)
                    raise RetryLater(str(exc)) from exc
            now = self._clock()
            try:
                sent = setup.senders[current.channel].send(outbound)
            except SendFailed as failed:
                if failed.outcome == "retry":
                    self._sends.release(request.tenant, request.idempotency_key, current.channel)
                    raise RetryLater(str(failed)) from failed
                state = "unknown" if failed.outcome == "unknown" else "failed"
                self._sends.finish(
                    request.tenant, request.idempotency_key, current.channel, state, now, code=failed.code
                )
                failures.append({"channel": current.channel, "outcome": failed.outcome, "code": failed.code})
                if failed.outcome == "unknown":  # it may have gone out: never a second message (R8)
                    break
                current = self._next(request, decision, current.channel, now)
                continue
            self._sends.outbound(record, current.channel, outbound, sent, now)
            result.sent[current.channel] = sent.message_id
            self._routed(request, record, current, sent, decision.as_record(), failures)
            return result
        self._undeliverable(
            request, record, record.customer_id, decision.as_record(), "send_failed", failures
        )
        result.undeliverable = True
        return result

    def _next(
        self, request: SendRequest, decision: Decision, after: Channel, now: datetime
    ) -> ChannelDecision | None:
        following = decision.after(after)
        while following is not None:
            if self._sends.claim(request.tenant, request.idempotency_key, following.channel, now):
                return following
            following = decision.after(following.channel)
        return None

    def _already(self, record: SendRecord, result: Result) -> Result:
        """A redelivery: an earlier attempt claimed the channel. Report, never send again (R8)."""
        for channel, state in record.sends.items():
            if state.get("provider_message_id"):
                result.sent[channel] = state["provider_message_id"]
        return result

    # ------------------------------------------------------------------ R7: a WhatsApp failure later

    def fallback(self, tenant: str, provider: str, message_id: str, code: int | None) -> Result:
        """A WhatsApp message failed asynchronously: one SMS, if the code means the user cannot get
        WhatsApp and SMS still qualifies for the request that sent it (R7)."""
        key = self._sends.request_of(tenant, provider, message_id)
        record = self._sends.get(tenant, key) if key else None
        if record is None or not is_fallback(code):
            return Result(record.request_id if record else None)
        setup = self._tenants(tenant)
        if setup is None:
            return Result(record.request_id)
        request = parse_send_request(record.request, default_region=setup.default_region)
        now = self._clock()
        decision = decide(request, self._recipient(request), setup.channels, now)
        sms = next((c for c in decision.considered if c.channel == "sms"), None)
        reason = f"{FALLBACK_PREFIX}{code}"
        result = Result(record.request_id)
        if sms is None or sms.outbound is None:
            reasons = [*decision.as_record(), {"channel": "whatsapp", "qualified": False, "reason": reason}]
            self._undeliverable(request, record, record.customer_id, reasons, reason, [])
            result.undeliverable = True
            return result
        if not self._sends.claim(tenant, request.idempotency_key, "sms", now):
            return self._already(record, result)  # exactly once: someone sent (or is sending) it
        fallback = ChannelDecision("sms", reason, sms.outbound)
        return self._send_from(request, record, Decision((fallback,)), fallback, setup, result)

    # ------------------------------------------------------------------ helpers

    def _recipient(self, request: SendRequest) -> Recipient:
        tenant, to = request.tenant, request.to
        if to.customer_id:
            customer = self._customers.customer(tenant, to.customer_id)
            if customer is None:
                return Recipient(None, customer_id_unknown=True)
            stale = bool(to.phone and (r := customer.phone(to.phone)) and r.status == "stale")
            return Recipient(customer, phone_stale=stale)
        keys = [
            k
            for k in (
                Key("bsuid", to.bsuid) if to.bsuid else None,
                Key("phone", to.phone) if to.phone else None,
            )
            if k
        ]
        holders = self._customers.holders(tenant, keys)
        by_bsuid = holders.get(Key("bsuid", to.bsuid)) if to.bsuid else None
        by_phone = holders.get(Key("phone", to.phone)) if to.phone else None
        record = by_phone.phone(to.phone) if by_phone and to.phone else None
        return Recipient(
            by_bsuid or by_phone,
            bsuid_unknown=bool(to.bsuid) and by_bsuid is None,
            phone_stale=record is not None and record.status == "stale",
        )

    def _routed(
        self,
        request: SendRequest,
        record: SendRecord,
        channel: ChannelDecision,
        sent: Sent,
        decision: list[dict[str, Any]],
        failures: list[dict[str, Any]],
    ) -> None:
        detail = {
            "tenant": request.tenant,
            "request_id": record.request_id,
            "idempotency_key": request.idempotency_key,
            "customer_id": record.customer_id,
            "channel": channel.channel,
            "reason": channel.reason,
            "provider": sent.provider,
            "provider_message_id": sent.message_id,
            "decision": decision,
            "failures": failures,
        }
        self._publisher.publish([BusEvent("MessageRouted", detail)])

    def _undeliverable(
        self,
        request: SendRequest,
        record: SendRecord | None,
        customer_id: str | None,
        decision: list[dict[str, Any]],
        reason: str,
        failures: list[dict[str, Any]],
    ) -> None:
        detail = {
            "tenant": request.tenant,
            "request_id": record.request_id if record else None,
            "idempotency_key": request.idempotency_key,
            "customer_id": customer_id,
            "reason": reason,
            "decision": decision,
            "failures": failures,
        }
        self._publisher.publish([BusEvent("MessageUndeliverable", detail)])
