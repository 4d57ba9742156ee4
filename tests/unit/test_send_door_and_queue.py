"""The send door (``POST /messages``) and the send queue's consumer, over the in-memory fakes.

The same behaviour is tested end to end through the deployed handlers (tests/adapters/
test_dispatch_function.py, tests/e2e/test_sending.py); here each rule is one small, fast case.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from crossroute import correlation
from crossroute.channels import SendFailed
from crossroute.dispatch import Dispatch, RetryLater, TenantSetup
from crossroute.ports import Delivery, IdempotencyKeyReused
from crossroute.routing.policy import UNKNOWN_SENDER, TenantChannels
from crossroute.routing.request import InvalidRequest
from crossroute.send_door import SendDoor, UnknownTenant
from crossroute.send_queue import FOLLOW_UP, SendConsumer
from crossroute.tenants import TenantRegistry
from tests.fakes import MemorySendStore, RecordingPublisher, RecordingSendQueue, ScriptedSender
from tests.fakes.metrics import RecordingMetrics
from tests.support import (
    LOCAL_TENANT,
    PHONE_NUMBER_ID,
    TWILIO_SMS_NUMBER,
    TWILIO_WHATSAPP_SENDER,
    registry_document,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REQUEST = {"idempotency_key": "order-42", "to": {"phone": "+15550123456"}, "text": "Shipped"}
# A WhatsApp template to a phone no customer holds yet: WhatsApp qualifies without a window.
TEMPLATED = {
    **REQUEST,
    "tenant": "demo",
    "channels": ["whatsapp"],
    "template": {"name": "order_shipped", "language": "en_US", "category": "utility"},
}


def door(store: MemorySendStore, queue: RecordingSendQueue) -> SendDoor:
    registry = TenantRegistry.from_json(registry_document())
    ids = iter(["r1", "r2", "r3"])
    return SendDoor(store, queue, lambda: registry, clock=lambda: NOW, new_id=lambda: next(ids))


def test_the_door_records_then_queues_and_answers_the_first_request_id_again() -> None:
    store, queue = MemorySendStore(), RecordingSendQueue()
    send = door(store, queue)
    first = send.accept(REQUEST, default_tenant=lambda: "demo")
    reordered = dict(reversed(list({**REQUEST, "tenant": "demo"}.items())))  # the same request
    again = send.accept(reordered, default_tenant=lambda: "demo")
    assert (first, again) == ("r1", "r1")
    assert [json.loads(m.body)["tenant"] for m in queue.messages] == ["demo", "demo"]  # dispatch dedupes
    with pytest.raises(IdempotencyKeyReused) as refused:
        send.accept({**REQUEST, "text": "changed"}, default_tenant=lambda: "demo")
    assert refused.value.request_id == "r1" and len(queue.messages) == 2  # not queued
    record = store.get("demo", "order-42")
    assert record is not None and record.request["text"] == "Shipped"


def test_the_key_may_come_beside_the_body_and_must_agree_with_the_bodys() -> None:
    store, queue = MemorySendStore(), RecordingSendQueue()
    send = door(store, queue)
    body = {k: v for k, v in REQUEST.items() if k != "idempotency_key"}
    first = send.accept(body, default_tenant=lambda: "demo", key="order-42")
    assert send.accept(REQUEST, default_tenant=lambda: "demo", key="order-42") == first
    assert send.accept(REQUEST, default_tenant=lambda: "demo") == first  # the header and body forms agree
    with pytest.raises(InvalidRequest) as invalid:
        send.accept(REQUEST, default_tenant=lambda: "demo", key="order-43")
    assert invalid.value.problems == ["idempotency_key: differs from the Idempotency-Key header"]
    with pytest.raises(InvalidRequest):
        send.accept(body, default_tenant=lambda: "demo", key="not a key!")
    assert len(queue.messages) == 3


def test_the_door_takes_the_same_senders_as_dispatch_twilio_whatsapp_ones_included() -> None:
    """R10/R11: a tenant whose WhatsApp goes through Twilio may name its ``whatsapp:+...`` sender in
    ``from`` (dispatch sends from it); a number the tenant does not have is refused."""
    twilio_only = {k: v for k, v in LOCAL_TENANT.items() if k != "meta"}
    registry = TenantRegistry.from_json(registry_document(demo=twilio_only))
    store, queue = MemorySendStore(), RecordingSendQueue()
    send = SendDoor(store, queue, lambda: registry, clock=lambda: NOW, new_id=lambda: "r1")
    request = {**REQUEST, "tenant": "demo", "from": TWILIO_WHATSAPP_SENDER}
    assert send.accept(request, default_tenant=lambda: "demo") == "r1"
    with pytest.raises(InvalidRequest) as refused:
        send.accept(
            {**request, "idempotency_key": "k2", "from": "+15550109999"}, default_tenant=lambda: "demo"
        )
    assert refused.value.problems == [UNKNOWN_SENDER]
    assert len(queue.messages) == 1


def test_the_door_refuses_an_unknown_tenant_and_an_invalid_request_and_keeps_nothing() -> None:
    store, queue = MemorySendStore(), RecordingSendQueue()
    send = door(store, queue)
    with pytest.raises(UnknownTenant):
        send.accept({**REQUEST, "tenant": "nobody"}, default_tenant=lambda: "demo")
    with pytest.raises(InvalidRequest) as invalid:
        send.accept({"to": {}, "text": ""}, default_tenant=lambda: "demo")
    assert len(invalid.value.problems) >= 2  # every problem, not the first one
    assert store.requests == {} and queue.messages == []


def consumer(*whatsapp: str | SendFailed) -> tuple[SendConsumer, RecordingSendQueue, RecordingPublisher]:
    queue, bus = RecordingSendQueue(), RecordingPublisher()
    setup = TenantSetup(
        TenantChannels(PHONE_NUMBER_ID, TWILIO_SMS_NUMBER),
        {"whatsapp": ScriptedSender("meta", *whatsapp), "sms": ScriptedSender("twilio")},
    )
    dispatch = Dispatch(MemorySendStore(), lambda tenant: setup, bus, clock=lambda: NOW)
    return SendConsumer(dispatch, queue), queue, bus


def delivery(body: object, receive_count: int = 1) -> Delivery:
    return Delivery(json.dumps(body), "m1", receive_count, receipt_handle="rh-1")


def test_a_request_refused_for_now_comes_back_after_a_backoff_not_the_visibility_timeout() -> None:
    consume, queue, bus = consumer("retry")
    with pytest.raises(RetryLater):
        consume.consume(delivery(TEMPLATED, receive_count=3))
    ((handle, delay),) = queue.retries
    assert handle == "rh-1" and 4 <= delay <= 8  # 2 s doubled twice, full jitter over its upper half
    assert bus.events == []


def test_an_eventbridge_send_message_is_handled_like_a_request() -> None:
    consume, _, bus = consumer()
    consume.consume(delivery({"detail-type": "SendMessage", "detail": {**REQUEST, "tenant": "demo"}}))
    (routed,) = bus.of("MessageRouted")
    assert routed["channel"] == "sms"  # a phone and no WhatsApp window: SMS


def test_r10_a_from_the_tenant_does_not_have_is_refused_at_every_door() -> None:
    store, queue = MemorySendStore(), RecordingSendQueue()
    with pytest.raises(InvalidRequest) as invalid:
        door(store, queue).accept({**REQUEST, "from": "+15550109999"}, default_tenant=lambda: "demo")
    assert invalid.value.problems[0].startswith("from: not one of the tenant's")
    assert store.requests == {} and queue.messages == []
    # Its display number and its SMS number are the tenant's: accepted.
    for named in ("+1 555 010 0001", TWILIO_SMS_NUMBER):
        assert door(MemorySendStore(), queue).accept(
            {**REQUEST, "from": named}, default_tenant=lambda: "demo"
        )
    consume, _, bus = consumer()
    consume.consume(
        delivery({"detail-type": "SendMessage", "detail": {**TEMPLATED, "from": "100000000000009"}})
    )
    (refused,) = bus.of("MessageUndeliverable")
    assert refused["reason"] == "request.invalid" and refused["problems"][0].startswith("from: not one")
    assert bus.of("MessageRouted") == []
    consume.consume(delivery({**TEMPLATED, "idempotency_key": "k2", "from": PHONE_NUMBER_ID}))
    (routed,) = bus.of("MessageRouted")
    assert routed["from"] == PHONE_NUMBER_ID and routed["decision"][0]["from_reason"] == "from.request"


class FailingOnce(MemorySendStore):
    """A store whose first settlement fails after the provider answered (the table was unavailable)."""

    failed = False

    def settle(self, settlement):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            raise ConnectionError("injected")
        return super().settle(settlement)


def test_an_outcome_the_table_did_not_take_is_carried_forward_and_recorded_once() -> None:
    queue, bus = RecordingSendQueue(), RecordingPublisher()
    store = FailingOnce()
    setup = TenantSetup(TenantChannels(None, TWILIO_SMS_NUMBER), {"sms": ScriptedSender("twilio")})
    consume = SendConsumer(Dispatch(store, lambda tenant: setup, bus, clock=lambda: NOW), queue)
    consume.consume(delivery({**REQUEST, "tenant": "demo"}))
    (follow_up,) = queue.messages
    body = json.loads(follow_up.body)
    assert body[FOLLOW_UP]["result"] == "sent" and follow_up.delay == 0
    consume.consume(Delivery(follow_up.body, "m2", 1))
    record = store.get("demo", "order-42")
    assert record is not None and record.sends["sms"]["state"] == "sent"
    assert len(bus.of("MessageRouted")) == 1 and len(queue.messages) == 1  # nothing sent twice


def test_the_backoff_grows_with_the_receive_count() -> None:
    delays = []
    for count in (1, 6):
        consume, queue, _ = consumer("retry")
        with pytest.raises(RetryLater):
            consume.consume(delivery(TEMPLATED, count))
        delays.append(queue.retries[0][1])
    assert delays[0] <= 2 < 32 <= delays[1] <= 64
    assert timedelta(seconds=delays[1]) < timedelta(minutes=15)


def test_dispatch_counts_requests_routes_fallbacks_provider_errors_and_retries() -> None:
    metrics, bus = RecordingMetrics(), RecordingPublisher()
    setup = TenantSetup(
        TenantChannels(PHONE_NUMBER_ID, TWILIO_SMS_NUMBER),
        {"whatsapp": ScriptedSender("meta", "fallback", "retry"), "sms": ScriptedSender("twilio")},
    )
    store = MemorySendStore()
    dispatch = Dispatch(store, lambda tenant: setup, bus, clock=lambda: NOW, metrics=metrics)
    # WhatsApp cannot reach the user (a fallback code): the SMS follows at once.
    dispatch.send({**TEMPLATED, "text": "Shipped", "channels": ["whatsapp", "sms"]})
    dispatch.send({**TEMPLATED, "text": "Shipped", "channels": ["whatsapp", "sms"]})  # again: not counted
    with pytest.raises(RetryLater):  # refused for now
        dispatch.send({**TEMPLATED, "idempotency_key": "order-43"})
    dispatch.send({**REQUEST, "tenant": "demo", "idempotency_key": "order-44", "channels": ["whatsapp"]})
    assert metrics.of("SendsRequested") == {None: 4}
    assert metrics.of("SendsRouted") == {"sms": 1}
    assert metrics.of("SmsFallbacks") == {None: 1}
    assert metrics.of("ProviderErrors") == {"meta": 2}
    assert metrics.of("SendsRetried") == {None: 1}
    assert metrics.of("SendsUndeliverable") == {"no_channel": 1}  # text, no window, WhatsApp only


def test_a_send_record_that_fails_is_logged_at_warning_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consume, _, _ = consumer()
    with caplog.at_level("WARNING"), pytest.raises(ValueError):
        consume.consume(Delivery("not json", "m1", 2, receipt_handle="rh-1"))
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert (warning.reason, warning.id, warning.receive) == ("JSONDecodeError", "m1", 2)  # type: ignore[attr-defined]


def test_every_line_about_a_send_carries_its_request_id_as_the_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    consume, _, _ = consumer("retry")
    with pytest.raises(RetryLater):
        consume.consume(delivery(TEMPLATED, receive_count=2))
    lines = [r for r in caplog.records if r.name.endswith(("crossroute.dispatch", "crossroute.send_queue"))]
    assert [r.getMessage() for r in lines] == ["send refused for now, retried later"]
    consume.consume(delivery(TEMPLATED))  # the same key again: the scripted sender now accepts it
    record_id = {getattr(r, "correlation_id", None) for r in caplog.records if r.getMessage() == "dispatched"}
    assert len(record_id) == 1 and None not in record_id
    assert {getattr(r, "correlation_id", None) for r in lines} == record_id  # the same request, both times
    assert correlation.current() is None  # nothing leaks into the next record
