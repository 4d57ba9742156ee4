"""The dispatch use case: a send request goes out on the channel that can deliver it, and only there.

Doors: EventBridge ``SendMessage`` (via the send queue), the send queue itself, ``POST /messages``.
Per request: resolve who it names, decide (pure policy, R1-R9), record request + decision + claim the
chosen channel in one write, send, record the result. A definite failure moves on to the next
qualifying channel; a refused-but-retryable send releases its claim and is retried by the queue; an
unknown outcome is never sent again (R8). A WhatsApp send that later fails with a fallback code gets
exactly one SMS, when SMS still qualifies (R7).

Each claim is settled by the attempt that took it (``routing/settlement.py``). When that record cannot
be written after the provider answered, ``Unsettled`` hands the settlement to the caller, which carries
it forward on the send queue: ``settle`` records it later and the request is handled again from there.
Events are published at least once: a handled-again request reports what its record says went out.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from crossroute import correlation, limits
from crossroute.bus import BusEvent
from crossroute.channels import Channel, Sender, SendFailed
from crossroute.channels.errors import is_fallback
from crossroute.identity.model import Customer, Key
from crossroute.log import child_logger
from crossroute.ports import EventPublisher, Metrics, NoMetrics, RecipientRead, SendRecord, SendStore
from crossroute.routing.pacing import (
    DEFAULT_RATE,
    PAIR_INTERVAL,
    PaceExceeded,
    Pacer,
    Pair,
    PairPace,
    pair_pace,
)
from crossroute.routing.policy import (
    FALLBACK_PREFIX,
    TIMED_FALLBACK,
    UNKNOWN_SENDER,
    ChannelDecision,
    Decision,
    Recipient,
    TenantChannels,
    decide,
    sms_phone,
    unknown_sender,
    whatsapp_sender,
)
from crossroute.routing.request import (
    IDEMPOTENCY_KEY,
    Address,
    InvalidRequest,
    SendRequest,
    parse_send_request,
)
from crossroute.routing.settlement import Claim, Settlement

logger = child_logger(__name__)
PAIR_RATE_HIT = 131056  # Meta: too many messages to one user in a short time
MAX_DELAY = limits.SQS_MAX_DELAY_SECONDS  # a longer R14 wait is a chain of delayed checks
SEEN = ("delivered", "read")  # R14: a WhatsApp message in one of these statuses needs no SMS


class RetryLater(Exception):
    """A provider refused for now (throughput, transient), or a rate says wait: the queue redelivers the
    request later, not before ``after`` seconds when that is known."""

    def __init__(self, message: str, *, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class Unsettled(Exception):
    """The provider answered but its answer could not be recorded: carry ``settlement`` forward (the send
    queue) and hand it to ``Dispatch.settle``, then handle the request again. ``later``: it was refused
    for now, so the request is to be handled again after a backoff."""

    def __init__(self, settlement: Settlement, *, after: float | None = None) -> None:
        super().__init__(f"{settlement.claim.channel} {settlement.result} not recorded")
        self.settlement = settlement
        self.later = settlement.result == "released"
        self.after = after  # as ``RetryLater.after``: not sooner than this


def retry_delay(
    attempt: int, *, after: float | None = None, rng: Callable[[float, float], float] = random.uniform
) -> int:
    """Seconds before a refused send is tried again: exponential backoff with full jitter, 2 s to 15 min,
    and never sooner than ``after`` (a rate's wait, a provider's Retry-After).

    ``attempt`` is the SQS receive count (1 for the first delivery).
    """
    ceiling = min(float(MAX_DELAY), 2.0 * 2 ** max(0, attempt - 1))
    backoff = max(1, round(rng(ceiling / 2, ceiling)))
    return min(MAX_DELAY, max(backoff, math.ceil(after or 0)))


@dataclass(frozen=True)
class TenantSetup:
    """What dispatch needs of a tenant: its channels and the senders that can use them."""

    channels: TenantChannels
    senders: Mapping[Channel, Sender]
    default_region: str = "US"
    whatsapp_rate: float = DEFAULT_RATE  # messages/s of its WhatsApp number (20 when coexistence)
    whatsapp_rates: Mapping[str, float] = field(default_factory=dict)  # per number, when it has several

    def rate_of(self, business: str) -> float:
        return self.whatsapp_rates.get(business, self.whatsapp_rate)


@dataclass(frozen=True)
class _Handling:
    """One handling of a request: what every step of sending it needs."""

    request: SendRequest
    record: SendRecord
    decision: Decision
    setup: TenantSetup
    attempt: str  # who takes and settles this handling's claims
    paced: tuple[Pair, float | None] | None = None  # the pair (number, user) and its stored tat
    recipient: Recipient | None = None  # whom it was decided for (None: SMS, if next, was checked)

    def claim(self, channel: Channel) -> Claim:
        return Claim(self.request.tenant, self.request.idempotency_key, channel, self.attempt)


@dataclass(frozen=True)
class TimedCheck:
    """R14: look at the WhatsApp message ``message_id`` of the request under ``key`` at ``due`` (epoch
    seconds), and send the request's SMS if it was not delivered by then. A send queue message."""

    tenant: str
    key: str
    provider: str
    message_id: str
    due: float

    def as_doc(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "idempotency_key": self.key,
            "provider": self.provider,
            "message_id": self.message_id,
            "due": self.due,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TimedCheck:
        return cls(
            str(doc["tenant"]),
            str(doc["idempotency_key"]),
            str(doc["provider"]),
            str(doc["message_id"]),
            float(doc["due"]),
        )

    def delay(self, now: datetime) -> int:
        """Seconds to put it on the queue for: until it is due, at most SQS's 15 min (then again)."""
        return min(MAX_DELAY, max(0, math.ceil(self.due - now.timestamp())))


@dataclass
class Dispatched:
    """What handling a request (or an R7 fallback) did: for logs and tests."""

    request_id: str | None
    sent: dict[str, str] = field(default_factory=dict)  # channel -> provider message id
    undeliverable: bool = False
    check: TimedCheck | None = None  # R14: to put on the send queue, for ``check.delay(now)`` seconds


class Dispatch:
    def __init__(
        self,
        sends: SendStore,
        tenants: Callable[[str], TenantSetup | None],
        publisher: EventPublisher,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        pacer: Pacer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._sends = sends
        self._metrics = metrics or NoMetrics()
        self._tenants = tenants
        self._publisher = publisher
        self._clock = clock
        self._new_id = new_id
        self._pacer = pacer

    def now(self) -> datetime:
        return self._clock()

    # ------------------------------------------------------------------ a send request

    def send(self, doc: Any) -> Dispatched:
        """Handle one send request document from any door. Raises ``RetryLater`` to be retried."""
        self._metrics.count("SendsRequested")
        accepted = self._accepted(doc)
        if isinstance(accepted, Dispatched):
            return accepted
        request, setup = accepted
        now = self._clock()
        pair = self._pair(request, setup)
        read = self._read_recipient(request.tenant, request.to, pair)
        recipient, decision = self._decided(request, recipient_of(request.to, read), setup.channels, now)
        chosen = decision.chosen
        attempt = self._new_id()
        record = self._sends.begin(
            tenant=request.tenant,
            key=request.idempotency_key,
            request_id=self._new_id(),
            request=request.raw,
            decision=decision.as_record(),
            customer_id=recipient.customer.id if recipient.customer else None,
            external_id=recipient.customer.external_id if recipient.customer else None,
            claim=Claim(request.tenant, request.idempotency_key, chosen.channel, attempt) if chosen else None,
            now=now,
            to=request.to,
        )
        correlation.bind(record.request_id)
        if chosen is None:
            self._announce(
                [_undeliverable(request, record, record.customer_id, decision.as_record(), "no_channel", [])]
            )
            return Dispatched(record.request_id, undeliverable=True)
        paced = (pair, read.pair_tat) if pair else None
        handling = _Handling(request, record, decision, setup, attempt, paced, recipient)
        if record.claimed is None:
            return self._resume(handling, chosen, now)
        return self._send_from(handling, chosen)

    def _accepted(self, doc: Any) -> tuple[SendRequest, TenantSetup] | Dispatched:
        """The request and its tenant's setup; or, when either is wrong, ``MessageUndeliverable`` is
        published and that is the answer."""
        tenant_id = doc.get("tenant") if isinstance(doc, dict) else None
        setup = self._tenants(tenant_id) if isinstance(tenant_id, str) and tenant_id else None
        try:
            # National phone formats are read in the tenant's region, when the tenant is known.
            request = parse_send_request(doc, default_region=setup.default_region if setup else "US")
            if setup is not None and unknown_sender(request, setup.channels):
                raise InvalidRequest([UNKNOWN_SENDER])  # R10
        except InvalidRequest as exc:
            key = doc.get("idempotency_key") if isinstance(doc, dict) else None
            detail = {
                "tenant": tenant_id,
                "idempotency_key": key,
                "reason": "request.invalid",
                "problems": exc.problems,
            }
            self._announce([BusEvent("MessageUndeliverable", detail)])
            return Dispatched(None, undeliverable=True)
        if setup is None:
            self._announce([_undeliverable(request, None, None, [], "request.unknown_tenant", [])])
            return Dispatched(None, undeliverable=True)
        return request, setup

    def settle(self, doc: dict[str, Any]) -> bool:
        """A follow-up from the send queue: record the settlement an earlier attempt could not
        (``Unsettled``). False when it was recorded already. The caller then handles the request again."""
        return self._sends.settle(Settlement.from_doc(doc))

    def dead_lettered(self, doc: Any) -> Dispatched:
        """R12: the send request ``doc`` failed for good and is put on the send DLQ. The first time for
        its key, ``MessageUndeliverable`` (``send.dead_lettered``) is published, built from its record;
        never again for that key, whatever the copies and redrives (``SendStore.dead_lettered``).

        Only the tenant and the idempotency key are read: not the tenant's setup (its registry may be
        what failed). A request whose record says a channel went out was delivered, only its event was
        lost (the publish failed every time): ``MessageRouted`` is published again instead, as on a
        redelivery. ``undeliverable`` in the answer: this call published the event. Raises
        ``InvalidRequest`` for a document without a usable tenant and key (nothing to report it under)."""
        tenant, key = _tenant_and_key(doc)
        record = self._sends.dead_lettered(
            tenant=tenant, key=key, request_id=self._new_id(), request=doc, now=self._clock()
        )
        if record is None:
            return Dispatched(None)
        correlation.bind(record.request_id)
        if any(state.get("state") == "sent" for state in record.sends.values()):
            return self._already(record)
        failures = _failures(record, record.sends)
        event = _undeliverable(
            record, record, record.customer_id, record.decision, "send.dead_lettered", failures
        )
        self._announce([event])
        return Dispatched(record.request_id, undeliverable=True)

    def _resume(self, h: _Handling, chosen: ChannelDecision, now: datetime) -> Dispatched:
        """Handled again: an earlier attempt claimed the first channel. If every channel it tried failed
        for good, carry on with the next one (say, an SMS that was throttled); if anything may have gone
        out (sent, sending, unknown), report it and never send again (R8)."""
        if any(state.get("state") != "failed" for state in h.record.sends.values()):
            return self._already(h.record)
        following = self._next(h, chosen.channel, now)
        if following is None:
            return self._already(h.record)
        return self._send_from(h, following)

    def _send_from(self, h: _Handling, first: ChannelDecision) -> Dispatched:
        """Send on ``first`` (claimed); on a definite failure claim and try the next qualifying channel."""
        record = h.record
        failures = _failures(record, record.sends)  # earlier attempts' (a request handled again)
        current: ChannelDecision | None = first
        while current is not None:
            claim = h.claim(current.channel)
            outbound = current.outbound
            assert outbound is not None
            now, pair = self._paced(h, current.channel, claim, outbound.business)
            try:
                sent = h.setup.senders[current.channel].send(outbound)
            except SendFailed as failed:
                self._metrics.count("ProviderErrors", dimension=failed.provider)
                if failed.outcome == "retry":
                    after = PAIR_INTERVAL if failed.code == PAIR_RATE_HIT else failed.retry_after
                    self._later(claim, now, str(failed), after)
                self._settle(Settlement.failed(claim, now, failed.outcome, failed.code))
                failures.append({"channel": current.channel, "outcome": failed.outcome, "code": failed.code})
                if failed.outcome == "unknown":  # it may have gone out: never a second message (R8)
                    break
                current = self._next(h, current.channel, now)
                continue
            self._settle(
                Settlement.delivered(claim, now, sent, current.reason, outbound, record.customer_id, pair)
            )
            routed = self._routed(
                record,
                current.channel,
                current.reason,
                sent.provider,
                sent.message_id,
                failures,
                outbound.business,
            )
            self._announce([routed])
            check = _timed_check(record, current.channel, sent.provider, sent.message_id, now)
            return Dispatched(record.request_id, {current.channel: sent.message_id}, check=check)
        self._announce(
            [_undeliverable(h.request, record, record.customer_id, record.decision, "send_failed", failures)]
        )
        return Dispatched(record.request_id, undeliverable=True)

    def _announce(self, events: list[BusEvent]) -> None:
        """Publish what this handling decided, and count it: a message routed (and whether it was the
        SMS after a failed WhatsApp message, R7) or a request undeliverable, by reason. What a request
        handled again publishes once more (``_already``) is not counted again."""
        self._publisher.publish(events)
        for event in events:
            detail = event.detail
            if event.detail_type == "MessageRouted":
                self._metrics.count("SendsRouted", dimension=str(detail["channel"]))
                after_whatsapp = any(f.get("channel") == "whatsapp" for f in detail.get("failures") or [])
                reason = str(detail.get("reason"))
                late = reason.startswith(FALLBACK_PREFIX) or reason == TIMED_FALLBACK  # R7, R14
                if detail["channel"] == "sms" and (after_whatsapp or late):
                    self._metrics.count("SmsFallbacks")
            elif event.detail_type == "MessageUndeliverable":
                self._metrics.count("SendsUndeliverable", dimension=str(detail["reason"]))

    def _paced(
        self, h: _Handling, channel: Channel, claim: Claim, business: str
    ) -> tuple[datetime, tuple[Pair, PairPace] | None]:
        """A WhatsApp send waits for its business number's rate and for the pair rate (Meta would answer
        131056): over either, the claim is released and the request comes back later (``RetryLater``).
        The time to send at, and the pair's pace to move when the message goes out."""
        if self._pacer and channel == "whatsapp":
            try:
                self._pacer.acquire(business, h.setup.rate_of(business))
            except PaceExceeded as exc:  # over the number's rate
                self._later(claim, self._clock(), str(exc), exc.wait)
        now = self._clock()
        if not (h.paced and channel == "whatsapp"):
            return now, None
        pace = pair_pace(h.paced[1], now.timestamp())
        if pace.wait > 0:
            self._later(claim, now, f"pair rate: {pace.wait:.1f}s to wait", pace.wait)
        return now, (h.paced[0], pace)

    def _later(self, claim: Claim, now: datetime, why: str, after: float | None) -> NoReturn:
        """Nothing was sent (a rate says wait, or the provider refused for now): release the claim and
        have the queue bring the request back, not before ``after`` seconds."""
        self._settle(Settlement.released(claim, now), after=after)
        self._metrics.count("SendsRetried")
        raise RetryLater(why, after=after)

    def _settle(self, settlement: Settlement, *, after: float | None = None) -> None:
        """Record how a claimed send ended. The provider has answered: if the record cannot be written,
        whatever the store's error, the settlement is handed on rather than lost (``Unsettled``)."""
        try:
            self._sends.settle(settlement)
        except Exception as exc:  # whatever the store's error, the provider's answer is carried forward
            # The error's class only: a store's message may quote item values (personal data).
            error = type(exc).__name__
            logger.warning("could not record a send's outcome: carried forward", extra={"error": error})
            raise Unsettled(settlement, after=after) from exc

    def _next(self, h: _Handling, after: Channel, now: datetime) -> ChannelDecision | None:
        following = h.decision.after(after)
        while following is not None:
            if not self._still_qualifies(h, following, now):  # an SMS to a suppressed phone (R4)
                following = h.decision.after(following.channel)
                continue
            if self._sends.claim(h.claim(following.channel), now):
                return following
            following = h.decision.after(following.channel)
        return None

    def _decided(
        self,
        request: SendRequest,
        recipient: Recipient,
        channels: TenantChannels,
        now: datetime,
        *,
        sms_in_any_case: bool = False,
    ) -> tuple[Recipient, Decision]:
        """The decision (R1-R9), with the SMS suppression of the phone SMS goes to known (R4, I10) when
        SMS is chosen (``sms_in_any_case``: whenever it qualifies). The batch read covers a phone the
        request names; the phone of a customer addressed by id or BSUID is known only once its profile
        is read, so its suppression is read then (one GetItem), and only when SMS is to be used: a
        WhatsApp send costs no extra round trip."""
        decision = decide(request, recipient, channels, now)
        sms = next((c for c in decision.considered if c.channel == "sms" and c.qualified), None)
        phone = sms_phone(request, recipient)
        if sms is None or not (sms_in_any_case or decision.chosen is sms) or phone in recipient.suppressions:
            return recipient, decision
        assert phone is not None  # SMS qualified: it has a phone
        found = self._sends.suppression(request.tenant, phone)
        checked = replace(recipient, suppressions={**recipient.suppressions, phone: found})
        return checked, decide(request, checked, channels, now)

    def _still_qualifies(self, h: _Handling, following: ChannelDecision, now: datetime) -> bool:
        """An SMS about to be claimed after another channel failed: it still qualifies once the
        suppression of its phone is known (R4; read now if the first decision did not need it)."""
        if following.channel != "sms" or h.recipient is None:
            return True
        _, again = self._decided(h.request, h.recipient, h.setup.channels, now, sms_in_any_case=True)
        return any(c.channel == "sms" and c.qualified for c in again.considered)

    def _already(self, record: SendRecord, only: Channel | None = None) -> Dispatched:
        """Handled again: earlier attempts claimed the channels. Never send again (R8); report what the
        record says, and publish its events again (at least once: the first publish may have failed)."""
        states = {c: s for c, s in record.sends.items() if only is None or c == only}
        failures = _failures(record, states)
        result = Dispatched(record.request_id)
        events = []
        for channel, state in states.items():
            if state["state"] == "sent":
                result.sent[channel] = state["provider_message_id"]
                events.append(
                    self._routed(
                        record,
                        channel,
                        state.get("reason"),
                        state.get("provider"),
                        state["provider_message_id"],
                        _failures(record, record.sends, before=channel),
                        state.get("sender") or sender_of(record.decision, channel),
                    )
                )
        if states and len(failures) == len(states):  # every channel tried ended without a message
            result.undeliverable = True
            events.append(
                _undeliverable(record, record, record.customer_id, record.decision, "send_failed", failures)
            )
        if events:
            self._publisher.publish(events)
        whatsapp = record.sends.get("whatsapp") or {}
        if only is None and whatsapp.get("state") == "sent":  # R14: schedule its check again (harmless)
            result.check = _timed_check(
                record, "whatsapp", whatsapp.get("provider"), whatsapp["provider_message_id"], whatsapp["at"]
            )
        return result

    # ------------------------------------------------------------------ R7: a WhatsApp failure later

    def fallback(self, tenant: str, provider: str, message_id: str, code: int | None) -> Dispatched:
        """A WhatsApp message failed asynchronously: one SMS, if the code means the user cannot get
        WhatsApp and SMS still qualifies for the request that sent it (R7)."""
        key = self._sends.request_of(tenant, provider, message_id)
        record = self._sends.get(tenant, key) if key else None
        correlation.bind(record.request_id if record else None)
        if record is None or not is_fallback(code, provider):
            return Dispatched(record.request_id if record else None)
        return self._sms_instead(record, f"{FALLBACK_PREFIX}{code}")

    def timed_fallback(self, check: TimedCheck) -> Dispatched:
        """R14: the WhatsApp message of a request with ``fallback_after`` was sent ``fallback_after``
        seconds ago (or a link of the chain is due: then it is handed back, to be queued again). Unless
        its latest status is delivered or read, one SMS (``fallback.not_delivered_in_time``), when SMS
        still qualifies; the claim on the request's ``sms`` channel keeps it to one with R7 (R8). When
        SMS no longer qualifies, nothing is published (WhatsApp went out): it is logged."""
        if check.delay(self._clock()) > 0:
            return Dispatched(None, check=check)
        record, status = self._sends.record_and_status(
            check.tenant, check.key, check.provider, check.message_id
        )
        correlation.bind(record.request_id if record else None)
        if record is None or status in SEEN:
            return Dispatched(record.request_id if record else None)
        if "sms" in record.sends:  # sent (or being sent) already: by R7, or by this check handled before
            return self._already(record, only="sms")
        result = self._sms_instead(record, TIMED_FALLBACK, announce=False)
        if not result.sent and not result.undeliverable:
            logger.info("timed fallback: SMS no longer qualifies, not sent", extra={"status": status})
        return result

    def _sms_instead(self, record: SendRecord, reason: str, *, announce: bool = True) -> Dispatched:
        """The SMS of a request whose WhatsApp message went out (R7, R14), decided again now (the customer
        may have said STOP since). When SMS does not qualify: ``MessageUndeliverable`` when
        ``announce`` (R7), else nothing."""
        setup = self._tenants(record.tenant)
        if setup is None:
            return Dispatched(record.request_id)
        request = parse_send_request(record.request, default_region=setup.default_region)
        now = self._clock()
        read = self._read_recipient(record.tenant, request.to, None)
        _, decision = self._decided(
            request, recipient_of(request.to, read), setup.channels, now, sms_in_any_case=True
        )
        sms = next((c for c in decision.considered if c.channel == "sms"), None)
        if sms is None or sms.outbound is None:
            if not announce:
                return Dispatched(record.request_id)
            reasons = [*decision.as_record(), {"channel": "whatsapp", "qualified": False, "reason": reason}]
            self._announce([_undeliverable(request, record, record.customer_id, reasons, reason, [])])
            return Dispatched(record.request_id, undeliverable=True)
        fallback = ChannelDecision("sms", reason, sms.outbound)
        h = _Handling(request, record, Decision((fallback,)), setup, self._new_id())
        if not self._sends.claim(h.claim("sms"), now):
            # Exactly once: someone sent (or is sending) it. Report the SMS only.
            return self._already(record, only="sms")
        return self._send_from(h, fallback)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _pair(request: SendRequest, setup: TenantSetup) -> Pair | None:
        """Whom a WhatsApp message of this request counts against in the pair rate, if it may send one. Read
        with the recipient, before its profile says which number it last wrote to: the number the
        request's ``from`` names, else the first (R10), whichever number then sends."""
        if not setup.channels.whatsapp_business or "whatsapp" not in (
            request.channels or setup.channels.preference
        ):
            return None
        business, _ = whatsapp_sender(request, None, setup.channels)
        to = request.to
        return Pair.of(request.tenant, business, customer_id=to.customer_id, address=to.bsuid or to.phone)

    def _read_recipient(self, tenant: str, to: Address, pair: Pair | None) -> RecipientRead:
        keys = [Key("bsuid", to.bsuid)] if to.bsuid else []
        keys += [Key("phone", to.phone)] if to.phone else []
        return self._sends.recipient_and_pace(tenant, customer_id=to.customer_id, keys=keys, pair=pair)

    @staticmethod
    def _routed(
        record: SendRecord,
        channel: str,
        reason: str | None,
        provider: str | None,
        message_id: str,
        failures: list[dict[str, Any]],
        sender: str | None,
    ) -> BusEvent:
        """``MessageRouted``: built from the record alone (and ``sender``, the business number it went out
        from, R10: the decision's for that channel), so publishing it again gives the same event."""
        detail = {
            "tenant": record.tenant,
            "request_id": record.request_id,
            "idempotency_key": record.idempotency_key,
            "customer_id": record.customer_id,
            "channel": channel,
            "reason": reason,
            "provider": provider,
            "provider_message_id": message_id,
            "from": sender,
            "decision": record.decision,
            "failures": failures,
        }
        if record.external_id:  # I11
            detail["external_id"] = record.external_id
        return BusEvent("MessageRouted", detail)


def recipient_of(to: Address, read: RecipientRead) -> Recipient:
    """Who ``to`` names, from what was read: by id (the customer or ``customer_id_unknown``), else by
    BSUID before phone; a phone given that its holder left is ``phone_stale`` (R2, R3); the SMS
    suppressions read with them (R4, I10)."""
    if to.customer_id:
        customer = read.customer
        if customer is None:
            return Recipient(None, customer_id_unknown=True)
        return Recipient(customer, phone_stale=_stale(customer, to.phone), suppressions=read.suppressions)
    by_bsuid = read.holders.get(Key("bsuid", to.bsuid)) if to.bsuid else None
    by_phone = read.holders.get(Key("phone", to.phone)) if to.phone else None
    return Recipient(
        by_bsuid or by_phone,
        bsuid_unknown=bool(to.bsuid) and by_bsuid is None,
        phone_stale=by_phone is not None and _stale(by_phone, to.phone),
        suppressions=read.suppressions,
    )


def sender_of(decision: list[dict[str, Any]], channel: str) -> str | None:
    """R10: the business number a decision record says ``channel`` goes out from."""
    entry = next((e for e in decision if e.get("channel") == channel and e.get("qualified")), None)
    sender = entry.get("from") if entry else None
    return sender if isinstance(sender, str) else None


def _timed_check(
    record: SendRecord, channel: str, provider: str | None, message_id: str, sent_at: Any
) -> TimedCheck | None:
    """R14: the check a WhatsApp message sent at ``sent_at`` needs: when its request has
    ``fallback_after`` and SMS qualified when it was decided (and was not claimed: R7 took it)."""
    after = record.request.get("fallback_after")
    sms = any(e.get("channel") == "sms" and e.get("qualified") for e in record.decision)
    if channel != "whatsapp" or not isinstance(after, int) or not sms or "sms" in record.sends:
        return None
    at = sent_at if isinstance(sent_at, datetime) else datetime.fromisoformat(str(sent_at))
    due = at.timestamp() + after
    return TimedCheck(record.tenant, record.idempotency_key, provider or "meta", message_id, due)


def _tenant_and_key(doc: Any) -> tuple[str, str]:
    """A request document's tenant and idempotency key, checked as ``parse_send_request`` checks them."""
    tenant = doc.get("tenant") if isinstance(doc, dict) else None
    key = doc.get("idempotency_key") if isinstance(doc, dict) else None
    if not (isinstance(tenant, str) and tenant and isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key)):
        raise InvalidRequest(["a request's tenant and idempotency_key are required"])
    return tenant, key


def _stale(customer: Customer, phone: str | None) -> bool:
    record = customer.phone(phone) if phone else None
    return record is not None and record.status == "stale"


class _Keyed(Protocol):
    @property
    def tenant(self) -> str: ...

    @property
    def idempotency_key(self) -> str: ...


def _undeliverable(
    of: _Keyed,
    record: SendRecord | None,
    customer_id: str | None,
    decision: list[dict[str, Any]],
    reason: str,
    failures: list[dict[str, Any]],
) -> BusEvent:
    """``MessageUndeliverable`` about ``of`` (a request, or its record): from the record when there is
    one, so publishing it again gives the same event."""
    detail = {
        "tenant": of.tenant,
        "request_id": record.request_id if record else None,
        "idempotency_key": of.idempotency_key,
        "customer_id": customer_id,
        "reason": reason,
        "decision": decision,
        "failures": failures,
    }
    if record is not None and record.external_id:  # I11
        detail["external_id"] = record.external_id
    return BusEvent("MessageUndeliverable", detail)


def _failures(
    record: SendRecord, states: Mapping[str, dict[str, Any]], before: str | None = None
) -> list[dict[str, Any]]:
    """The channels that ended without a message, in the decision's order (as they were tried); with
    ``before``, only those tried before that channel."""
    order = [entry.get("channel") for entry in record.decision]
    rank = {c: order.index(c) if c in order else len(order) for c in states}
    ended = [c for c, s in states.items() if s.get("state") in ("failed", "unknown")]
    if before is not None:
        ended = [c for c in ended if rank[c] < rank.get(before, len(order))]
    ended.sort(key=rank.__getitem__)
    return [
        {"channel": c, "outcome": states[c].get("outcome", states[c]["state"]), "code": _code(states[c])}
        for c in ended
    ]


def _code(state: dict[str, Any]) -> int | None:
    code = state.get("code")
    return int(code) if code is not None and str(code).lstrip("-").isdigit() else None
