"""R11: WhatsApp through Twilio in the routing policy: a phone only, text in the window, a template by
its Content SID outside it, the window and the sender per Twilio WhatsApp sender (R1, R10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crossroute.identity.model import BsuidRecord, Customer, PhoneRecord
from crossroute.routing.policy import BusinessNumber, Decision, Recipient, TenantChannels, decide
from crossroute.routing.request import InvalidRequest, parse_send_request

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SENDER, OTHER = "whatsapp:+15550100003", "whatsapp:+15550100005"
CALLBACK = "https://example.test/webhooks/twilio/status"
TENANT = TenantChannels(
    whatsapp_business=SENDER,
    sms_sender="+15550100002",
    status_callback=CALLBACK,
    whatsapp_numbers=(BusinessNumber(SENDER, "+15550100003"), BusinessNumber(OTHER, "+15550100005")),
    whatsapp_provider="twilio",
)
PHONE, BSUID = "+16505551234", "US.13491208655302741918"
CONTENT_SID = "HX" + "0123456789abcdef" * 2
TEMPLATE = {"name": "order_shipped", "language": "en_US", "category": "utility"}


def customer(*, phone: str | None = PHONE, windows: dict[str, timedelta] | None = None) -> Customer:
    return Customer(
        id="c1",
        tenant="demo",
        created_at=NOW - timedelta(days=30),
        updated_at=NOW,
        phones=(PhoneRecord(phone, "current", "twilio.message", NOW),) if phone else (),
        bsuids=(BsuidRecord(BSUID, "current", NOW),),
        whatsapp_last_inbound={b: NOW - ago for b, ago in (windows or {SENDER: timedelta(hours=2)}).items()},
    )


def route(who: Customer, **fields: Any) -> Decision:
    doc = {"tenant": "demo", "idempotency_key": "k1", "to": {"customer_id": "c1"}, "text": "Shipped"}
    return decide(parse_send_request({**doc, **fields}), Recipient(who), TENANT, NOW)


def whatsapp(decision: Decision) -> Any:
    return next(c for c in decision.considered if c.channel == "whatsapp")


def test_inside_the_window_text_goes_to_the_phone_with_the_status_callback() -> None:
    chosen = whatsapp(route(customer(), reply_to="SM" + "0" * 32))
    assert chosen.reason == "whatsapp.window_open"
    assert chosen.outbound.business == SENDER and chosen.outbound.to == PHONE
    assert chosen.outbound.recipient is None and chosen.outbound.text == "Shipped"
    assert chosen.outbound.status_callback == CALLBACK
    assert chosen.outbound.reply_to is None  # Twilio's Messages API has no reply context


def test_a_bsuid_only_customer_is_not_sent_whatsapp_through_twilio() -> None:
    decision = route(customer(phone=None))
    assert whatsapp(decision).reason == "whatsapp.twilio_needs_phone"
    assert not whatsapp(decision).qualified


def test_outside_the_window_a_template_with_a_content_sid_is_sent() -> None:
    template = {**TEMPLATE, "content_sid": CONTENT_SID, "variables": {"1": "A-17"}}
    chosen = whatsapp(route(customer(windows={SENDER: timedelta(hours=30)}), template=template))
    assert chosen.reason == "whatsapp.template"
    assert chosen.outbound.template.content_sid == CONTENT_SID
    assert chosen.outbound.template.variables == {"1": "A-17"}


def test_outside_the_window_a_template_without_a_content_sid_is_the_r1_refusal() -> None:
    decision = route(customer(windows={SENDER: timedelta(hours=30)}), template=TEMPLATE)
    assert whatsapp(decision).reason == "whatsapp.window_closed_no_template"
    assert decision.chosen is not None and decision.chosen.channel == "sms"


def test_a_template_alone_without_a_content_sid_cannot_go_through_twilio() -> None:
    decision = route(customer(), text=None, template=TEMPLATE)
    assert whatsapp(decision).reason == "whatsapp.twilio_needs_content_sid"


def test_r10_the_sender_the_customer_last_wrote_to_sends_and_its_window_counts() -> None:
    windows = {SENDER: timedelta(hours=30), OTHER: timedelta(hours=1)}
    chosen = whatsapp(route(customer(windows=windows)))
    assert (chosen.outbound.business, chosen.sender_reason) == (OTHER, "from.last_inbound")
    assert chosen.reason == "whatsapp.window_open"


def test_r10_from_may_name_a_twilio_sender_by_its_phone() -> None:
    decision = route(customer(), **{"from": "+1 555 010 0005"})
    assert whatsapp(decision).outbound is None  # the customer never wrote to that sender: window closed
    assert whatsapp(decision).reason == "whatsapp.window_closed_no_template"


def test_a_content_sid_must_be_one() -> None:
    doc = {"tenant": "demo", "idempotency_key": "k1", "to": {"customer_id": "c1"}}
    with pytest.raises(InvalidRequest, match="content_sid"):
        parse_send_request({**doc, "template": {**TEMPLATE, "content_sid": "HX12"}})
    with pytest.raises(InvalidRequest, match="variables"):
        parse_send_request({**doc, "template": {**TEMPLATE, "content_sid": CONTENT_SID, "variables": [1]}})
