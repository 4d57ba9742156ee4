"""The ingest use case: a queued provider event becomes facts about one customer.

For each event the parser yields: read who holds its keys, decide with the pure identity rules,
fold in what the message says about the customer, write everything in one transaction, then publish.
A concurrent change between read and write makes the transaction fail: read again and retry.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from crossroute import correlation, ids, limits, media
from crossroute.bus import BusEvent
from crossroute.identity.model import Customer, Key
from crossroute.identity.profile import observe_message, observe_preference
from crossroute.identity.rules import (
    IdentityEvent,
    NumberChange,
    Resolution,
    Sighting,
    change_number,
    resolve,
)
from crossroute.inbound import (
    ContactLink,
    IdentityChange,
    InboundMessage,
    OutboundEcho,
    Person,
    PreferenceChange,
    ProviderEvent,
    StatusUpdate,
    Unrecognised,
)
from crossroute.log import child_logger
from crossroute.media import MediaJobs
from crossroute.parsing.queued import parse
from crossroute.ports import (
    Conflict,
    DeadLetters,
    Delivery,
    Erased,
    EventPublisher,
    IdentityStore,
    MessageRecord,
    Metrics,
    NoMetrics,
    StatusRecord,
    Unstorable,
)
from crossroute.replies import answered, may_answer_an_offer

logger = child_logger(__name__)

ATTEMPTS = 6
# The ``kind`` of ``EventsIngested``: a provider event's type, as a short code.
EVENT_KINDS = {
    "InboundMessage": "message",
    "OutboundEcho": "echo",
    "StatusUpdate": "status",
    "IdentityChange": "identity_change",
    "PreferenceChange": "preference",
    "ContactLink": "contact_link",
    "Unrecognised": "unrecognised",
}


@dataclass
class Ingested:
    """What one queued event did, for logs and tests (no personal data)."""

    handled: list[str] = field(default_factory=list)
    duplicates: int = 0
    unattributed: int = 0
    retries: int = 0
    erased: int = 0  # replays of an erased customer's events, not stored again (I10)
    unstorable: int = 0  # refused by the table for good: kept as unrecognised instead
    identity: Counter[str] = field(default_factory=Counter)  # identity events written, by kind (I9)


class Ingest:
    def __init__(
        self,
        store: IdentityStore,
        publisher: EventPublisher,
        *,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        sleep: Callable[[float], None] = time.sleep,
        media_jobs: MediaJobs | None = None,
    ) -> None:
        """``media_jobs``: the media queue, where each stored message's attachments are put to be copied
        (crossroute.media); None: they stay pending."""
        self._store = store
        self._publisher = publisher
        self._new_id = new_id
        self._sleep = sleep
        self._media_jobs = media_jobs

    def handle(self, events: Sequence[ProviderEvent]) -> Ingested:
        """Apply every event; raises if one cannot be stored for now (the queue redelivers the record).

        Content the table refuses for good is kept as unrecognised instead, so it never blocks the
        sender's later events; an erased customer's replayed event is dropped (I10).
        """
        report = Ingested()
        for event in events:
            try:
                published = self._retried(event, report)
            except Erased:
                report.erased += 1
                logger.info("event of an erased customer not stored again", extra={"kind": _kind(event)})
                continue
            except Unstorable as exc:
                report.unstorable += 1
                logger.warning(
                    "event refused by the table, kept as unrecognised", extra={"reason": exc.reason}
                )
                self._store.keep_unrecognised(
                    event.tenant, event.provider, _kind(event), f"not storable: {exc.reason}", event.raw
                )
                continue
            report.handled.append(type(event).__name__)
            self._queue_media(event)
            if published:
                self._publisher.publish(_correlated(published))
        return report

    def _queue_media(self, event: ProviderEvent) -> None:
        """One job per attachment, once its message is stored (a redelivery queues them again: the
        media function copies each once). A message that was not stored has none to copy: skipped."""
        if (
            self._media_jobs is None
            or not isinstance(event, InboundMessage | OutboundEcho)
            or not event.media
        ):
            return
        jobs = media.jobs_for(event.tenant, event.provider, event.message_id, event.media)
        if jobs:
            self._media_jobs.enqueue(jobs)

    def _retried(self, event: ProviderEvent, report: Ingested) -> list[BusEvent]:
        """``_apply``, read again and retried (with jitter) while a concurrent change conflicts."""
        for attempt in range(ATTEMPTS - 1):
            try:
                return self._apply(event, report)
            except Conflict:
                report.retries += 1
                self._sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 - jitter, not crypto
        return self._apply(event, report)

    # ------------------------------------------------------------------ per event type

    def _apply(self, event: ProviderEvent, report: Ingested) -> list[BusEvent]:
        match event:
            case InboundMessage():
                return self._message(event, report)
            case OutboundEcho():
                return self._echo(event, report)
            case StatusUpdate():
                return self._status(event)
            case IdentityChange():
                return self._number_change(event, report)
            case PreferenceChange():
                return self._preference(event, report)
            case ContactLink():
                # A contact removed from the business app's address book says nothing about who it is.
                sighting = _sighting(
                    event.person, event.at, "meta.state_sync", _content_id("state_sync", event.raw)
                )
                if sighting is None or event.action == "remove":
                    return []
                return self._identity_only(event.tenant, sighting, lambda c: c, report)
            case Unrecognised():
                self._store.keep_unrecognised(
                    event.tenant, event.provider, event.kind, event.reason, event.raw
                )
                logger.info("unrecognised event kept", extra={"kind": event.kind, "reason": event.reason})
                return []
        return []

    def _message(self, message: InboundMessage, report: Ingested) -> list[BusEvent]:
        source = _source(message.provider, message.channel)
        person = message.sender
        if message.shared_own_phone:  # the answer to our contact request: an attested phone (I5)
            person = Person(
                phone=message.shared_own_phone, bsuid=person.bsuid, parent_bsuid=person.parent_bsuid
            )
            source = "meta.contact_request"
        sighting = _sighting(person, message.sent_at, source, message.message_id)
        if sighting is None:
            report.unattributed += 1
            logger.warning("message without a usable sender id", extra={"provider": message.provider})
            return []
        first_read = None
        if may_answer_an_offer(message) and message.sender.phone:  # R13: a reply to numbered options?
            first_read, offer = self._store.holders_and_offer(
                message.tenant, sighting.keys, message.sender.phone
            )
            message = answered(message, offer)
        holders, resolution = self._resolved(message.tenant, sighting, first_read)
        observe = lambda c: observe_message(c, message)  # noqa: E731
        customers, versions = _with_target_change(resolution, holders, observe, sighting.event_id)
        published = [
            _received(message, resolution.customer_id),
            *_identity_events(message.tenant, resolution),
        ]
        if message.historical:  # coexistence history: stored, never a trigger
            published = _identity_events(message.tenant, resolution)
        published = _naming_external_ids(published, holders, resolution)
        record = _record(message, resolution.customer_id, published)
        return self._commit(message.tenant, resolution, customers, versions, record, published, report)

    def _echo(self, echo: OutboundEcho, report: Ingested) -> list[BusEvent]:
        sighting = _sighting(echo.recipient, echo.sent_at, "meta.message", echo.message_id)
        if sighting is None:
            report.unattributed += 1
            return []
        holders, resolution = self._resolved(echo.tenant, sighting)
        published = _naming_external_ids(_identity_events(echo.tenant, resolution), holders, resolution)
        record = _record(echo, resolution.customer_id, published)
        customers = dict(resolution.customers)
        return self._commit(
            echo.tenant, resolution, customers, resolution.base_versions, record, published, report
        )

    def _status(self, update: StatusUpdate) -> list[BusEvent]:
        errors = [{"code": e.code, "title": e.title, "detail": e.detail} for e in update.errors]
        record = StatusRecord(
            update.tenant, update.provider, update.message_id, update.status, update.at, errors
        )
        result = self._store.apply_status(record)
        # A redelivery of the status already stored is published again: its first publish may have failed.
        if not result.applied and result.previous != update.status:
            return []
        detail = {
            "tenant": update.tenant,
            "customer_id": result.customer_id,
            "provider": update.provider,
            "channel": result.channel or update.channel,
            "business": update.business,
            "message_id": update.message_id,
            "status": update.status,
            "previous_status": result.previous if result.applied else None,
            "at": update.at.isoformat(),
            "errors": errors,
            "pricing_category": update.pricing_category,
        }
        return [BusEvent("MessageStatusChanged", detail)]

    def _number_change(self, change: IdentityChange, report: Ingested) -> list[BusEvent]:
        if not change.current.bsuid:
            logger.warning("number change without a usable new id", extra={"kind": change.kind})
            return []
        cause = NumberChange(
            at=change.at,
            source=f"{change.provider}.{change.kind}",
            event_id=change.event_id,
            bsuid=change.current.bsuid,
            phone=change.current.phone,
            previous_bsuid=change.previous.bsuid,
            previous_phone=change.previous.phone,
            parent_bsuid=change.current.parent_bsuid,
        )
        holders, resolution = self._decide(
            change.tenant, cause.keys, lambda h: change_number(change.tenant, cause, h, self._new_id)
        )
        published = _naming_external_ids(_identity_events(change.tenant, resolution), holders, resolution)
        record = MessageRecord(
            tenant=change.tenant,
            provider=change.provider,
            message_id=change.event_id,
            customer_id=resolution.customer_id,
            direction="in",
            channel="whatsapp",
            business=change.business,
            message_type="system",
            sent_at=change.at,
            raw=change.raw,
            published=_replayable(published),
        )
        customers = dict(resolution.customers)
        return self._commit(
            change.tenant, resolution, customers, resolution.base_versions, record, published, report
        )

    def _preference(self, change: PreferenceChange, report: Ingested) -> list[BusEvent]:
        sighting = _sighting(change.person, change.at, "meta.message", _content_id("preference", change.raw))
        if sighting is None:
            return []
        return self._identity_only(change.tenant, sighting, lambda c: observe_preference(c, change), report)

    def _identity_only(
        self, tenant: str, sighting: Sighting, observe: Callable[[Customer], Customer], report: Ingested
    ) -> list[BusEvent]:
        holders, resolution = self._resolved(tenant, sighting)
        customers, versions = _with_target_change(resolution, holders, observe, sighting.event_id)
        if not customers and not resolution.key_owners:
            return []
        self._store.commit(
            tenant, customers, versions, resolution.key_owners, resolution.events, event_id=sighting.event_id
        )
        report.identity.update(e.kind for e in resolution.events)
        return _naming_external_ids(_identity_events(tenant, resolution), holders, resolution)

    def _resolved(
        self, tenant: str, sighting: Sighting, first_read: dict[Key, Customer] | None = None
    ) -> tuple[dict[Key, Customer], Resolution]:
        decide = lambda h: resolve(tenant, sighting, h, self._new_id)  # noqa: E731
        return self._decide(tenant, sighting.keys, decide, first_read)

    def _decide(
        self,
        tenant: str,
        keys: Sequence[Key],
        decide: Callable[[dict[Key, Customer]], Resolution],
        first_read: dict[Key, Customer] | None = None,
    ) -> tuple[dict[Key, Customer], Resolution]:
        """Read who holds ``keys`` (unless ``first_read`` is what was read) and decide. A merge moves every
        key the merged-away customer holds, so when one happens, read the keys the event did not name as
        well and decide again."""
        holders = first_read if first_read is not None else self._store.holders(tenant, keys)
        resolution = decide(holders)
        unread = {k for c in holders.values() for k in c.keys} - holders.keys()
        if unread and any(e.kind == "merged" for e in resolution.events):
            holders = {**self._store.holders(tenant, sorted(unread, key=str)), **holders}
            resolution = decide(holders)
        return holders, resolution

    def _commit(
        self,
        tenant: str,
        resolution: Resolution,
        customers: dict[str, Customer],
        versions: dict[str, int],
        record: MessageRecord,
        published: list[BusEvent],
        report: Ingested,
    ) -> list[BusEvent]:
        stored = self._store.commit(
            tenant,
            customers,
            versions,
            resolution.key_owners,
            resolution.events,
            record,
            event_id=record.message_id,
        )
        if stored:
            report.identity.update(e.kind for e in resolution.events)
            return published
        # Redelivered: already stored. Publish again what it caused: the first publish may have failed.
        report.duplicates += 1
        replay = self._store.published(tenant, record.provider, record.message_id)
        return [BusEvent(e["detail_type"], e["detail"]) for e in replay]


class InboundConsumer:
    """The inbound queue's consumer: a record's body is parsed and ingested; a failure fails the record,
    and the queue redelivers it (FIFO: with the rest of its sender's group, so order per person holds).

    On its last receive (``max_receives``, the queue's ``maxReceiveCount``) a record that fails again is
    put on the DLQ here and counted as done, so that the sender's later records, held behind it, go on
    instead of being dead-lettered with it (docs/operations.md).
    """

    def __init__(
        self,
        ingest: Ingest,
        dead_letters: Callable[[], DeadLetters],
        *,
        max_receives: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._ingest = ingest
        self._dead_letters = dead_letters  # made on first need: most containers never park a record
        self._max_receives = max_receives
        self._metrics = metrics or NoMetrics()

    def consume(self, delivery: Delivery) -> None:
        try:
            self._handle(delivery.body)
        except Exception as exc:
            reason = type(exc).__name__  # never the message: it may quote content
            if delivery.receive_count < self._max_receives:
                logger.warning(
                    "record failed, the queue delivers it again",
                    extra={"reason": reason, "id": delivery.message_id, "receive": delivery.receive_count},
                )
                raise
            self._dead_letters().park(
                delivery.body, group_id=delivery.group_id, message_id=delivery.message_id, reason=reason
            )
            logger.warning(
                "record failed for good, dead-lettered", extra={"reason": reason, "id": delivery.message_id}
            )

    def _count(self, report: Ingested, identifiers_rejected: int) -> None:
        """Metrics of one record: events by kind, customers created and merged, I6 conflicts, and
        identifiers the parser dropped (I1, I2)."""
        for name in report.handled:
            self._metrics.count("EventsIngested", dimension=EVENT_KINDS.get(name, "other"))
        self._metrics.count("CustomersCreated", report.identity["created"])
        self._metrics.count("CustomersMerged", report.identity["merged"])
        self._metrics.count("IdentityConflicts", report.identity["phone_moved_in"])
        self._metrics.count("IdentifiersRejected", identifiers_rejected)

    def _handle(self, body: str) -> None:
        parsed = parse(body)
        with correlation.scope(parsed.correlation_id):
            report = self._ingest.handle(parsed.events)
        self._count(report, len(parsed.rejected))
        logger.info(
            "ingested",
            extra={
                "correlation_id": parsed.correlation_id,
                "events": report.handled,
                "duplicates": report.duplicates,
                "retries": report.retries,
                "unattributed": report.unattributed,
                "erased": report.erased,
                "unstorable": report.unstorable,
                "rejected": parsed.rejected,
            },
        )


def _record(
    event: InboundMessage | OutboundEcho, customer_id: str, published: list[BusEvent]
) -> MessageRecord:
    """A message in (from the customer) or out (an echo of the business app), as stored once."""
    return MessageRecord(
        tenant=event.tenant,
        provider=event.provider,
        message_id=event.message_id,
        customer_id=customer_id,
        direction="out" if isinstance(event, OutboundEcho) else "in",
        channel=event.channel,
        business=event.business,
        message_type=event.type,
        sent_at=event.sent_at,
        text=event.text,
        historical=event.historical,
        raw=event.raw,
        published=_replayable(published),
        choice=event.choice if isinstance(event, InboundMessage) else None,
        media=media.stored_media(event.tenant, event.provider, event.message_id, event.media),
    )


def _replayable(published: list[BusEvent]) -> list[dict[str, Any]]:
    """What a stored message caused, kept on it so a redelivery can publish it again."""
    return [{"detail_type": e.detail_type, "detail": e.detail} for e in published]


def _content_id(kind: str, raw: dict[str, Any]) -> str:
    """A stable id for provider events that carry none: the same content, the same id."""
    digest = ids.content_digest(raw, 24, compact=False)
    return f"{kind}:{digest}"


def _source(provider: str, channel: str) -> str:
    if provider == "twilio":
        return "twilio.sms" if channel == "sms" else "twilio.whatsapp"
    return "meta.message"


def _sighting(person: Person, at: Any, source: str, event_id: str) -> Sighting | None:
    if not person.known:
        return None
    return Sighting(
        at=at,
        source=source,
        event_id=event_id,
        phone=person.phone,
        phone_raw=person.phone_raw,
        bsuid=person.bsuid,
        parent_bsuid=person.parent_bsuid,
    )


def _with_target_change(
    resolution: Resolution,
    holders: dict[Key, Customer],
    observe: Callable[[Customer], Customer],
    event_id: str,
) -> tuple[dict[str, Customer], dict[str, int]]:
    """The resolution's customers plus what the event changes on its target, with versions to check."""
    customers = dict(resolution.customers)
    versions = dict(resolution.base_versions)
    target = customers.get(resolution.customer_id) or next(
        c for c in holders.values() if c.id == resolution.customer_id
    )
    changed = observe(target)
    if changed.whatsapp_opt_in_at != target.whatsapp_opt_in_at:  # R15: the change on the timeline (I9)
        resolution.events.append(_opt_in_event(changed, event_id))
    if changed != target or resolution.customer_id in customers:
        customers[resolution.customer_id] = changed
        if resolution.customer_id not in resolution.created:
            versions.setdefault(resolution.customer_id, target.version)
    return customers, versions


def _opt_in_event(customer: Customer, event_id: str) -> IdentityEvent:
    """R15: a WhatsApp opt-in recorded or withdrawn by the user's keyword or marketing preference."""
    assert customer.whatsapp_opt_in_at is not None and customer.whatsapp_opt_in_source is not None
    detail = {"value": customer.whatsapp_opt_in}
    at, source = customer.whatsapp_opt_in_at, customer.whatsapp_opt_in_source
    return IdentityEvent(customer.id, "whatsapp_opt_in", at, source, event_id, detail)


def _received(message: InboundMessage, customer_id: str) -> BusEvent:
    """``MessageReceived``: a text longer than any genuine message is cut (``text_truncated``), so the
    event always fits EventBridge; the whole text is on the timeline."""
    text = message.text
    truncated = text is not None and len(text) > limits.MESSAGE_TEXT_CHARS
    detail: dict[str, Any] = {
        "tenant": message.tenant,
        "customer_id": customer_id,
        "provider": message.provider,
        "channel": message.channel,
        "business": message.business,
        "message_id": message.message_id,
        "type": message.type,
        "text": text[: limits.MESSAGE_TEXT_CHARS] if text is not None else None,
        "reply_to": message.reply_to,
        "sent_at": message.sent_at.isoformat(),
    }
    if truncated:
        detail["text_truncated"] = True
    if message.choice is not None:  # R13: the option picked, whatever the channel
        detail["choice"] = asdict(message.choice)
    return BusEvent("MessageReceived", detail)


def _kind(event: ProviderEvent) -> str:
    """A PII-free name for an event in logs and kept items: ``InboundMessage`` -> ``inbound_message``."""
    name = type(event).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _correlated(events: list[BusEvent]) -> list[BusEvent]:
    """The events with the current correlation id in their details (when there is one)."""
    correlation_id = correlation.current()
    if correlation_id is None:
        return events
    return [BusEvent(e.detail_type, {**e.detail, "correlation_id": correlation_id}) for e in events]


def _naming_external_ids(
    events: list[BusEvent], holders: dict[Key, Customer], resolution: Resolution
) -> list[BusEvent]:
    """I11: an event about a customer that carries the business's own id names it (``external_id``),
    as the customer is after the event (no extra read: the holders read and the resolution know it)."""
    known = {c.id: c.external_id for c in holders.values()}
    known.update({cid: c.external_id for cid, c in resolution.customers.items()})
    out = []
    for event in events:
        external_id = known.get(event.detail.get("customer_id") or "")
        out.append(
            BusEvent(event.detail_type, {**event.detail, "external_id": external_id})
            if external_id
            else event
        )
    return out


def _identity_events(tenant: str, resolution: Resolution) -> list[BusEvent]:
    out: list[BusEvent] = []
    for event in resolution.events:
        base = {"tenant": tenant, "customer_id": event.customer_id, "at": event.at.isoformat()}
        base["source_event_id"] = event.event_id
        if event.kind == "merged":
            out.append(
                BusEvent("ContactsMerged", {**base, "merged_customer_id": event.detail["merged_from"]})
            )
        elif event.kind == "phone_moved_in":
            detail = {
                **base,
                "previous_customer_id": event.detail["from_customer"],
                "phone": event.detail["phone"],
            }
            out.append(BusEvent("IdentityConflict", detail))
        elif event.kind in ("created", "linked", "number_changed", "phone_stale"):
            out.append(BusEvent("IdentityChanged", {**base, "change": event.kind, **event.detail}))
    return out
