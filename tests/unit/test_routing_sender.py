"""R10: which business number a qualifying channel goes out from, and R1's window judged for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crossroute.identity.model import Customer, PhoneRecord
from crossroute.routing.policy import (
    SENDER_REASONS,
    BusinessNumber,
    Decision,
    Recipient,
    TenantChannels,
    decide,
    sms_sender,
    unknown_sender,
    whatsapp_sender,
)
from crossroute.routing.request import InvalidRequest, SendRequest, parse_send_request

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
FIRST, SECOND = "100000000000001", "100000000000002"
SMS_FIRST, SMS_SECOND, SERVICE = "+15550100002", "+15550100004", "MG0123456789abcdef0123456789abcdef"
PHONE = "+16505551234"
TWO = TenantChannels(
    whatsapp_business=FIRST,
    sms_sender=SMS_FIRST,
    whatsapp_numbers=(BusinessNumber(FIRST, "15550100001"), BusinessNumber(SECOND, "+1 555 010 0003")),
    sms_numbers=(SMS_FIRST, SMS_SECOND),
)
WITH_SERVICE = TenantChannels(
    whatsapp_business=FIRST,
    sms_sender=SERVICE,
    whatsapp_numbers=TWO.whatsapp_numbers,
    sms_numbers=(SMS_FIRST, SMS_SECOND),
    messaging_services=(SERVICE,),
)


def customer(windows: dict[str, timedelta] | None = None, sms_last_to: str | None = None) -> Customer:
    return Customer(
        id="c1",
        tenant="demo",
        created_at=NOW - timedelta(days=30),
        updated_at=NOW,
        phones=(PhoneRecord(PHONE, "current", "twilio.sms", NOW),),
        whatsapp_last_inbound={b: NOW - ago for b, ago in (windows or {}).items()},
        sms_last_to=sms_last_to,
        sms_last_to_at=NOW - timedelta(days=1) if sms_last_to else None,
    )


def request(**fields: Any) -> SendRequest:
    doc = {"tenant": "demo", "idempotency_key": "k1", "to": {"customer_id": "c1"}, "text": "Hello"}
    return parse_send_request({**doc, **fields})


def sent_from(decision: Decision, channel: str) -> tuple[str | None, str | None]:
    chosen = next(c for c in decision.considered if c.channel == channel)
    return (chosen.outbound.business if chosen.outbound else None), chosen.sender_reason


# ---------------------------------------------------------------- WhatsApp


def test_whatsapp_replies_from_the_number_the_customer_last_wrote_to() -> None:
    who = customer({FIRST: timedelta(hours=30), SECOND: timedelta(hours=2)})
    decision = decide(request(), Recipient(who), TWO, NOW)
    assert decision.chosen is not None and decision.chosen.reason == "whatsapp.window_open"
    assert sent_from(decision, "whatsapp") == (SECOND, "from.last_inbound")


def test_r1_the_window_is_judged_for_the_number_that_sends() -> None:
    """Open on the second number, closed on the first: naming the first closes the window (R1)."""
    who = customer({FIRST: timedelta(hours=30), SECOND: timedelta(hours=2)})
    decision = decide(request(**{"from": FIRST}), Recipient(who), TWO, NOW)
    whatsapp = decision.considered[0]
    assert whatsapp.reason == "whatsapp.window_closed_no_template" and not whatsapp.qualified
    with_template = request(
        **{"from": FIRST, "template": {"name": "t", "language": "en_US", "category": "utility"}}
    )
    decided = decide(with_template, Recipient(who), TWO, NOW)
    assert decided.considered[0].reason == "whatsapp.template"
    assert sent_from(decided, "whatsapp") == (FIRST, "from.request")


@pytest.mark.parametrize("named", [SECOND, "15550100003", "+1 555 010 0003", "+15550100003"])
def test_a_request_from_names_a_meta_number_by_id_or_display_number(named: str) -> None:
    who = customer({FIRST: timedelta(hours=1), SECOND: timedelta(hours=3)})
    assert whatsapp_sender(request(**{"from": named}), who, TWO) == (SECOND, "from.request")


def test_without_a_window_whatsapp_goes_from_the_first_number() -> None:
    assert whatsapp_sender(request(), customer(), TWO) == (FIRST, "from.default")
    assert whatsapp_sender(request(), None, TWO) == (FIRST, "from.default")


def test_a_window_on_a_number_the_tenant_no_longer_has_is_ignored() -> None:
    who = customer({"100000000000009": timedelta(hours=1), FIRST: timedelta(hours=20)})
    assert whatsapp_sender(request(), who, TWO) == (FIRST, "from.last_inbound")
    assert whatsapp_sender(request(), customer({"100000000000009": timedelta(hours=1)}), TWO) == (
        FIRST,
        "from.default",
    )


def test_an_sms_from_leaves_whatsapp_to_its_own_choice() -> None:
    who = customer({SECOND: timedelta(hours=1)})
    assert whatsapp_sender(request(**{"from": SMS_FIRST}), who, TWO) == (SECOND, "from.last_inbound")


# ---------------------------------------------------------------- SMS


def test_sms_sticks_to_the_number_the_customer_last_texted() -> None:
    who = customer(sms_last_to=SMS_SECOND)
    decision = decide(request(channels=["sms"]), Recipient(who), TWO, NOW)
    assert sent_from(decision, "sms") == (SMS_SECOND, "from.last_inbound")
    # Sticky wins over the request's from (the conversation stays on one number).
    assert sms_sender(request(**{"from": SMS_FIRST}), who, TWO) == (SMS_SECOND, "from.last_inbound")


def test_sms_from_the_request_then_the_messaging_service_then_the_first_number() -> None:
    assert sms_sender(request(**{"from": "+1 (555) 010-0004"}), customer(), TWO) == (
        SMS_SECOND,
        "from.request",
    )
    assert sms_sender(request(**{"from": SERVICE}), customer(), WITH_SERVICE) == (SERVICE, "from.request")
    assert sms_sender(request(), customer(), WITH_SERVICE) == (SERVICE, "from.default")
    assert sms_sender(request(), customer(), TWO) == (SMS_FIRST, "from.default")
    assert sms_sender(request(**{"from": FIRST}), customer(), TWO) == (SMS_FIRST, "from.default")


def test_a_sticky_number_the_tenant_no_longer_has_is_ignored() -> None:
    assert sms_sender(request(), customer(sms_last_to="+15550109999"), TWO) == (SMS_FIRST, "from.default")


# ---------------------------------------------------------------- from, the record


@pytest.mark.parametrize(
    ("named", "unknown"),
    [
        (FIRST, False),
        ("15550100001", False),
        (SMS_SECOND, False),
        ("+15550109999", True),
        ("100000000000009", True),
    ],
)
def test_an_unknown_from_is_refused(named: str, unknown: bool) -> None:
    assert unknown_sender(request(**{"from": named}), TWO) is unknown
    assert unknown_sender(request(), TWO) is False


@pytest.mark.parametrize("value", ["", "  ", 15550100001, {"id": FIRST}, "x" * 65])
def test_from_must_be_a_string(value: Any) -> None:
    with pytest.raises(InvalidRequest, match="from"):
        request(**{"from": value})


def test_the_decision_record_says_where_each_qualifying_channel_goes_from() -> None:
    who = customer({SECOND: timedelta(hours=1)}, sms_last_to=SMS_SECOND)
    record = decide(request(), Recipient(who), TWO, NOW).as_record()
    assert [(r["channel"], r.get("from"), r.get("from_reason")) for r in record] == [
        ("whatsapp", SECOND, "from.last_inbound"),
        ("sms", SMS_SECOND, "from.last_inbound"),
    ]
    assert all(r["from_reason"] in SENDER_REASONS for r in record)


def test_a_tenant_with_one_number_sends_from_it() -> None:
    one = TenantChannels(whatsapp_business=FIRST, sms_sender=SMS_FIRST)
    who = customer({FIRST: timedelta(hours=1)})
    decision = decide(request(), Recipient(who), one, NOW)
    assert sent_from(decision, "whatsapp") == (FIRST, "from.last_inbound")
    assert sent_from(decision, "sms") == (SMS_FIRST, "from.default")
    assert unknown_sender(request(**{"from": SECOND}), one)
