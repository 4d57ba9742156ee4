"""R14, the timed SMS fallback, over the in-memory fakes: a request with ``fallback_after`` that went out on
WhatsApp puts a delayed check on the send queue; the check sends one SMS unless the WhatsApp message was
delivered (or read) by then, never a second one (R7, R8), and not to a phone that said STOP since.

End to end on the local stack: tests/e2e/test_timed_fallback.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crossroute.dispatch import Dispatch, TenantSetup
from crossroute.ports import Delivery
from crossroute.routing.policy import TIMED_FALLBACK, TenantChannels
from crossroute.routing.request import InvalidRequest, parse_send_request
from crossroute.send_queue import TIMED_CHECK, SendConsumer, request_in
from tests.fakes import MemorySendStore, RecordingPublisher, RecordingSendQueue, ScriptedSender
from tests.fakes.send_store import NoCustomers
from tests.support import PHONE_NUMBER_ID, TWILIO_SMS_NUMBER, wire_problems

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PHONE = "+15550123456"
# To a phone no customer holds: WhatsApp by template (no window), SMS with the text.
REQUEST: dict[str, Any] = {
    "tenant": "demo",
    "idempotency_key": "order-7",
    "to": {"phone": PHONE},
    "text": "Shipped",
    "template": {"name": "order_shipped", "language": "en_US", "category": "utility"},
    "fallback_after": 60,
}


class Stops(NoCustomers):
    """No customers; the phones whose SMS is suppressed (a STOP, kept across an erasure: R4, I10)."""

    def __init__(self) -> None:
        self.since: dict[str, datetime] = {}

    def suppression(self, tenant: str, phone: str) -> datetime | None:
        return self.since.get(phone)


@dataclass
class World:
    clock: list[datetime] = field(default_factory=lambda: [NOW])
    stops: Stops = field(default_factory=Stops)
    queue: RecordingSendQueue = field(default_factory=RecordingSendQueue)
    bus: RecordingPublisher = field(default_factory=RecordingPublisher)
    whatsapp: ScriptedSender = field(default_factory=lambda: ScriptedSender("meta"))
    sms: ScriptedSender = field(default_factory=lambda: ScriptedSender("twilio"))

    def __post_init__(self) -> None:
        self.store = MemorySendStore(customers=self.stops)
        setup = TenantSetup(
            TenantChannels(PHONE_NUMBER_ID, TWILIO_SMS_NUMBER), {"whatsapp": self.whatsapp, "sms": self.sms}
        )
        self.dispatch = Dispatch(self.store, lambda tenant: setup, self.bus, clock=lambda: self.clock[0])
        self.consumer = SendConsumer(self.dispatch, self.queue)

    def consume(self, body: Any) -> None:
        self.consumer.consume(Delivery(json.dumps(body), "m1", 1, receipt_handle="rh-1"))

    def checks(self) -> list[tuple[dict[str, Any], int]]:
        return [
            (json.loads(m.body)[TIMED_CHECK], m.delay)
            for m in self.queue.messages
            if TIMED_CHECK in json.loads(m.body)
        ]

    def run_due_checks(self) -> None:
        """Let the clock reach the last check put on the queue, and deliver it."""
        check, delay = self.checks()[-1]
        self.clock[0] += timedelta(seconds=delay)
        self.consume({TIMED_CHECK: check})

    def status(self, status: str, message_id: str = "wamid.1") -> None:
        self.store.statuses[("demo", "meta", message_id)] = status


def sent_whatsapp(request: dict[str, Any] | None = None) -> World:
    world = World()
    world.consume(request or REQUEST)
    assert [m.template.name for m in world.whatsapp.calls if m.template] == ["order_shipped"]
    return world


def test_whatsapp_sent_with_fallback_after_puts_one_check_due_then() -> None:
    world = sent_whatsapp()
    [(check, delay)] = world.checks()
    assert delay == 60
    assert check["message_id"] == "wamid.1" and check["idempotency_key"] == "order-7"
    assert check["due"] == (NOW + timedelta(seconds=60)).timestamp()


def test_no_fallback_after_or_no_qualifying_sms_puts_no_check() -> None:
    plain = sent_whatsapp({k: v for k, v in REQUEST.items() if k != "fallback_after"})
    whatsapp_only = sent_whatsapp({**REQUEST, "channels": ["whatsapp"]})
    assert plain.checks() == [] and whatsapp_only.checks() == []


@pytest.mark.parametrize("status", ["delivered", "read"])
def test_delivered_in_time_sends_no_sms(status: str) -> None:
    world = sent_whatsapp()
    world.status(status)
    world.run_due_checks()
    assert world.sms.calls == []
    assert [e.detail_type for e in world.bus.events] == ["MessageRouted"]  # the WhatsApp one only


@pytest.mark.parametrize("status", [None, "sent", "accepted"])
def test_not_delivered_in_time_sends_one_sms(status: str | None) -> None:
    world = sent_whatsapp()
    if status:
        world.status(status)
    world.run_due_checks()
    assert [m.text for m in world.sms.calls] == ["Shipped"]
    record = world.store.get("demo", "order-7")
    assert record is not None and record.sends["sms"]["reason"] == TIMED_FALLBACK
    routed = [e for e in world.bus.events if e.detail_type == "MessageRouted"]
    assert [(e.detail["channel"], e.detail["reason"]) for e in routed][-1] == ("sms", TIMED_FALLBACK)
    assert wire_problems(routed[-1]) == []


def test_a_check_delivered_twice_sends_one_sms() -> None:
    world = sent_whatsapp()
    world.status("sent")
    world.run_due_checks()
    world.run_due_checks()
    assert len(world.sms.calls) == 1


def test_the_request_handled_again_schedules_the_check_again_and_still_one_sms() -> None:
    world = sent_whatsapp()
    world.consume(REQUEST)  # a redelivery: nothing is sent again, the check is put again
    assert len(world.whatsapp.calls) == 1 and len(world.checks()) == 2
    world.run_due_checks()
    world.run_due_checks()
    assert len(world.sms.calls) == 1


def test_no_sms_when_r7_sent_it_already() -> None:
    world = sent_whatsapp()
    world.dispatch.fallback("demo", "meta", "wamid.1", 131026)  # WhatsApp failed: R7's SMS
    assert len(world.sms.calls) == 1
    world.status("failed")
    world.run_due_checks()
    assert len(world.sms.calls) == 1


def test_no_sms_to_a_phone_that_said_stop_since_and_nothing_published() -> None:
    world = sent_whatsapp()
    world.stops.since[PHONE] = NOW + timedelta(seconds=10)
    events = len(world.bus.events)
    world.run_due_checks()
    assert world.sms.calls == []
    assert len(world.bus.events) == events  # WhatsApp went out: no MessageUndeliverable
    record = world.store.get("demo", "order-7")
    assert record is not None and "sms" not in record.sends  # R7 may still send, should SMS qualify again


def test_a_wait_over_fifteen_minutes_is_a_chain_of_delayed_checks() -> None:
    world = sent_whatsapp({**REQUEST, "fallback_after": 2000})
    assert [d for _, d in world.checks()] == [900]
    world.run_due_checks()
    world.run_due_checks()
    assert [d for _, d in world.checks()] == [900, 900, 200] and world.sms.calls == []
    world.run_due_checks()
    assert len(world.sms.calls) == 1


def test_a_check_is_no_send_request_to_report_when_dead_lettered() -> None:
    assert request_in(json.dumps({TIMED_CHECK: {"tenant": "demo"}})) is None


@pytest.mark.parametrize("value", [4, 86_401, "60", 60.5, True, -1])
def test_fallback_after_is_whole_seconds_from_5_to_86400(value: object) -> None:
    with pytest.raises(InvalidRequest) as invalid:
        parse_send_request({**REQUEST, "fallback_after": value})
    assert any(p.startswith("fallback_after:") for p in invalid.value.problems)
    assert parse_send_request({**REQUEST, "fallback_after": 5}).fallback_after == 5
    assert parse_send_request({**REQUEST, "fallback_after": 86_400}).fallback_after == 86_400
