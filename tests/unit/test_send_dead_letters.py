"""R12 over the fakes: a send that fails on the send queue's last receive is parked on the send DLQ by
its consumer (``send_queue.SendConsumer``) and its request reported once (``MessageUndeliverable``,
``send.dead_lettered``), whatever the copies; a redrive sends it once.

The same is tested against moto through the dispatch handler (tests/adapters/test_dispatch_dead_letters.py)
and end to end with a real redrive (tests/e2e/test_redrive.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from crossroute.dispatch import Dispatch, RetryLater, TenantSetup
from crossroute.ports import Delivery
from crossroute.routing.policy import TenantChannels
from crossroute.send_queue import FOLLOW_UP, SendConsumer, request_in
from tests.fakes import (
    MemorySendStore,
    RecordingDeadLetters,
    RecordingPublisher,
    RecordingSendQueue,
    ScriptedSender,
)
from tests.support import PHONE_NUMBER_ID, TWILIO_SMS_NUMBER, wire_problems

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MAX = 8  # the send queue's maxReceiveCount (template.yaml)
PHONE, TEXT = "+15550123456", "Your order has shipped"
# WhatsApp only, a template to a phone no customer holds: it qualifies without a window.
REQUEST = {
    "tenant": "demo",
    "idempotency_key": "order-42",
    "to": {"phone": PHONE},
    "channels": ["whatsapp"],
    "text": TEXT,
    "template": {"name": "order_shipped", "language": "en_US", "category": "utility"},
}


class World:
    """One send queue consumer over the fakes, its WhatsApp sender scripted, ``max_receives`` 8."""

    def __init__(self, *whatsapp: str, dead_letters: RecordingDeadLetters | None = None) -> None:
        self.store, self.queue, self.bus = MemorySendStore(), RecordingSendQueue(), RecordingPublisher()
        self.dead = dead_letters or RecordingDeadLetters()
        self.whatsapp = ScriptedSender("meta", *whatsapp)
        setup = TenantSetup(TenantChannels(PHONE_NUMBER_ID, TWILIO_SMS_NUMBER), {"whatsapp": self.whatsapp})
        dispatch = Dispatch(
            self.store, lambda tenant: setup if tenant == "demo" else None, self.bus, clock=lambda: NOW
        )
        self.consumer = SendConsumer(dispatch, self.queue, lambda: self.dead, max_receives=MAX)

    def receive(self, body: Any, count: int, message_id: str = "m1") -> None:
        raw = body if isinstance(body, str) else json.dumps(body)
        self.consumer.consume(Delivery(raw, message_id, count, receipt_handle=f"rh-{message_id}-{count}"))

    def fail_until_the_last(self, body: Any, message_id: str = "m1") -> None:
        """Receives 1 to 7 fail (the queue delivers them again); the 8th is parked, not raised."""
        for count in range(1, MAX):
            with pytest.raises(Exception):  # noqa: B017 - whatever the failure
                self.receive(body, count, message_id)
        self.receive(body, MAX, message_id)

    def undeliverable(self) -> list[dict[str, Any]]:
        return self.bus.of("MessageUndeliverable")


def test_a_send_refused_on_every_receive_is_parked_on_its_last_and_reported_once() -> None:
    world = World(*["retry"] * MAX)
    world.fail_until_the_last(REQUEST)
    assert len(world.queue.retries) == MAX - 1  # backed off seven times; not on the last receive
    (parked,) = world.dead.parked
    assert json.loads(parked.body) == REQUEST and (parked.message_id, parked.reason) == ("m1", "RetryLater")
    (reported,) = world.undeliverable()
    record = world.store.get("demo", "order-42")
    assert record is not None
    assert reported == {
        "tenant": "demo",
        "request_id": record.request_id,
        "idempotency_key": "order-42",
        "customer_id": None,
        "reason": "send.dead_lettered",
        "decision": record.decision,
        "failures": [],  # refused for now is no failure: the claim was released
    }
    assert [wire_problems(e) for e in world.bus.events] == [[]]
    assert PHONE not in json.dumps(reported) and TEXT not in json.dumps(reported)  # no personal data
    assert len(world.whatsapp.calls) == MAX and world.bus.of("MessageRouted") == []


def test_every_copy_is_parked_but_the_request_is_reported_once_and_a_redrive_sends_it_once() -> None:
    world = World(*["retry"] * (2 * MAX))
    world.fail_until_the_last(REQUEST, "m1")
    world.fail_until_the_last(REQUEST, "m2")  # a second copy (SQS delivered it twice; a POST retried)
    assert [p.message_id for p in world.dead.parked] == ["m1", "m2"]
    assert len(world.undeliverable()) == 1

    # Redriven (new messages, receive count 1), the providers accepting again.
    for n, parked in enumerate(world.dead.parked):
        world.receive(parked.body, 1, f"redriven-{n}")
    assert len(world.whatsapp.calls) == 2 * MAX + 1  # one message went out, once
    routed = world.bus.of("MessageRouted")
    assert len(routed) == 2 and routed[0] == routed[1]  # the copy publishes the same event again
    assert len(world.undeliverable()) == 1
    record = world.store.get("demo", "order-42")
    assert record is not None and record.sends["whatsapp"]["state"] == "sent"


def test_a_redrive_that_fails_again_is_parked_again_and_not_reported_again() -> None:
    world = World(*["retry"] * (2 * MAX))
    world.fail_until_the_last(REQUEST, "m1")
    world.fail_until_the_last(world.dead.parked[0].body, "redriven")  # redriven too early: fails again
    assert len(world.dead.parked) == 2 and len(world.undeliverable()) == 1


@pytest.mark.parametrize(
    "wrap",
    [
        lambda r: {"detail-type": "SendMessage", "source": "shop", "detail": r},
        lambda r: {FOLLOW_UP: {"not": "a settlement"}, "then": r},  # the follow-up's settle fails
        lambda r: {FOLLOW_UP: {"not": "a settlement"}, "then": {"detail-type": "SendMessage", "detail": r}},
    ],
    ids=["eventbridge", "follow-up", "follow-up-of-eventbridge"],
)
def test_the_request_inside_an_event_or_a_follow_up_is_the_one_reported(wrap: Any) -> None:
    world = World(*["retry"] * MAX)
    world.fail_until_the_last(wrap(REQUEST))
    (reported,) = world.undeliverable()
    assert (reported["tenant"], reported["idempotency_key"]) == ("demo", "order-42")
    assert len(world.dead.parked) == 1


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        {"detail-type": "MessageStatusChanged", "detail": {"provider": "meta"}},  # R7: a status
        {**REQUEST, "tenant": None},
        {**REQUEST, "idempotency_key": "has spaces"},
    ],
    ids=["not-json", "r7-status", "no-tenant", "bad-key"],
)
def test_a_record_that_is_no_reportable_request_is_still_parked(body: Any) -> None:
    world = World()
    if isinstance(body, dict) and "detail-type" not in body:
        world.bus.fail_next = 1  # its request.invalid could not be published: the record fails
    world.receive(body, MAX)
    assert len(world.dead.parked) == 1 and world.undeliverable() == []
    assert world.store.requests == {}


def test_a_report_that_fails_does_not_stop_the_parking() -> None:
    world = World("retry")
    world.bus.fail_next = 1  # EventBridge fails the report
    world.receive(REQUEST, MAX)
    assert len(world.dead.parked) == 1 and world.bus.failed == 1 and world.undeliverable() == []


def test_when_parking_fails_the_record_fails_and_is_moved_by_sqs_already_reported() -> None:
    world = World("retry", dead_letters=RecordingDeadLetters(fail_next=1))
    with pytest.raises(ConnectionError):
        world.receive(REQUEST, MAX)
    assert world.dead.parked == [] and len(world.undeliverable()) == 1  # SQS's redrive moves it next


def test_a_request_that_went_out_but_whose_event_was_lost_is_not_reported_undeliverable() -> None:
    world = World()
    world.bus.fail_next = 1  # MessageRouted fails on the last receive
    world.receive(REQUEST, MAX)
    assert len(world.whatsapp.calls) == 1 and len(world.dead.parked) == 1
    (routed,) = world.bus.of("MessageRouted")  # published again from the record instead
    assert routed["provider_message_id"] == "wamid.1" and world.undeliverable() == []


def test_below_the_last_receive_or_without_a_dlq_a_failure_raises_as_before() -> None:
    world = World(*["retry"] * 2)
    with pytest.raises(RetryLater):
        world.receive(REQUEST, MAX - 1)
    bare = SendConsumer(world.consumer._dispatch, world.queue)  # no DLQ: SQS's redrive does it
    with pytest.raises(RetryLater):
        bare.consume(Delivery(json.dumps(REQUEST), "m9", MAX + 1, receipt_handle="rh"))
    assert world.dead.parked == [] and world.undeliverable() == []


def test_request_in_reads_the_request_of_every_kind_of_message() -> None:
    assert request_in(json.dumps(REQUEST)) == REQUEST
    assert request_in(json.dumps({"detail-type": "SendMessage", "detail": REQUEST})) == REQUEST
    assert request_in(json.dumps({FOLLOW_UP: {}, "then": REQUEST})) == REQUEST
    assert request_in(json.dumps({"detail-type": "MessageStatusChanged", "detail": {}})) is None
    assert request_in("[1, 2]") is None and request_in("nope") is None
