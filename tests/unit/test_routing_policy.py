"""The routing policy, rule by rule and reason code by reason code (contract §7)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute.identity.model import BsuidRecord, Customer, PhoneRecord
from crossroute.routing.policy import REASONS, Decision, Recipient, TenantChannels, decide, sms_phone
from crossroute.routing.request import InvalidRequest, SendRequest, parse_send_request

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BUSINESS = "100000000000001"
TENANT = TenantChannels(whatsapp_business=BUSINESS, sms_sender="+15550100002")
PHONE, BSUID = "+16505551234", "US.13491208655302741918"


def customer(
    *,
    phone: str | None = PHONE,
    phone_status: str = "current",
    bsuid: str | None = BSUID,
    last_inbound: timedelta | None = timedelta(hours=2),
    sms_opted_out: bool = False,
    marketing_opted_out: bool = False,
) -> Customer:
    return Customer(
        id="c1",
        tenant="demo",
        created_at=NOW - timedelta(days=30),
        updated_at=NOW,
        phones=(PhoneRecord(phone, phone_status, "meta.message", NOW),) if phone else (),  # type: ignore[arg-type]
        bsuids=(BsuidRecord(bsuid, "current", NOW),) if bsuid else (),
        whatsapp_last_inbound={BUSINESS: NOW - last_inbound} if last_inbound is not None else {},
        sms_opted_out=sms_opted_out,
        marketing_opted_out=marketing_opted_out,
    )


def request(**fields: Any) -> SendRequest:
    doc = {
        "tenant": "demo",
        "idempotency_key": "k1",
        "to": {"customer_id": "c1"},
        "text": "Your order has shipped",
    }
    return parse_send_request({**doc, **fields})


TEMPLATE = {"name": "order_shipped", "language": "en_US", "category": "utility"}


def route(req: SendRequest, who: Customer | None, **recipient: Any) -> Decision:
    return decide(req, Recipient(who, **recipient), TENANT, NOW)


def reasons(decision: Decision) -> dict[str, str]:
    return {c.channel: c.reason for c in decision.considered}


# ---------------------------------------------------------------- table: one row per rule and reason

CASES = [
    # (name, request fields, customer kwargs or None, recipient flags, expected reasons, chosen channel)
    (
        "R1 window open: text on WhatsApp",
        {},
        {},
        {},
        {"whatsapp": "whatsapp.window_open", "sms": "sms.current_phone"},
        "whatsapp",
    ),
    (
        "R1 window closed, no template",
        {},
        {"last_inbound": timedelta(hours=25)},
        {},
        {"whatsapp": "whatsapp.window_closed_no_template", "sms": "sms.current_phone"},
        "sms",
    ),
    (
        "R1 never wrote on WhatsApp",
        {},
        {"last_inbound": None},
        {},
        {"whatsapp": "whatsapp.window_closed_no_template", "sms": "sms.current_phone"},
        "sms",
    ),
    (
        "R1 window closed, template",
        {"template": TEMPLATE},
        {"last_inbound": timedelta(hours=30)},
        {},
        {"whatsapp": "whatsapp.template", "sms": "sms.current_phone"},
        "whatsapp",
    ),
    (
        "template only",
        {"text": None, "template": TEMPLATE},
        {},
        {},
        {"whatsapp": "whatsapp.template", "sms": "sms.no_text"},
        "whatsapp",
    ),
    (
        "R3 auth template to a BSUID-only user",
        {"text": None, "template": {**TEMPLATE, "category": "authentication"}},
        {"phone": None},
        {},
        {"whatsapp": "whatsapp.auth_template_to_bsuid", "sms": "sms.no_text"},
        None,
    ),
    (
        "R3 auth template with a phone",
        {"text": None, "template": {**TEMPLATE, "category": "authentication"}},
        {},
        {},
        {"whatsapp": "whatsapp.template", "sms": "sms.no_text"},
        "whatsapp",
    ),
    (
        "R4 stale phone",
        {},
        {"phone_status": "stale", "last_inbound": timedelta(hours=30)},
        {},
        {"whatsapp": "whatsapp.window_closed_no_template", "sms": "sms.phone_stale"},
        None,
    ),
    (
        "R4 no phone",
        {},
        {"phone": None, "last_inbound": timedelta(hours=30)},
        {},
        {"whatsapp": "whatsapp.window_closed_no_template", "sms": "sms.no_phone"},
        None,
    ),
    ("R4 opted out", {"channels": ["sms"]}, {"sms_opted_out": True}, {}, {"sms": "sms.opted_out"}, None),
    (
        "R5 marketing after stop",
        {"text": None, "template": {**TEMPLATE, "category": "marketing"}},
        {"marketing_opted_out": True},
        {},
        {"whatsapp": "whatsapp.marketing_opted_out", "sms": "sms.no_text"},
        None,
    ),
    (
        "unknown BSUID",
        {"to": {"bsuid": "US.999"}},
        None,
        {"bsuid_unknown": True},
        {"whatsapp": "whatsapp.unknown_bsuid", "sms": "sms.no_phone"},
        None,
    ),
    (
        "unknown customer id",
        {},
        None,
        {"customer_id_unknown": True},
        {"whatsapp": "whatsapp.unknown_customer", "sms": "sms.unknown_customer"},
        None,
    ),
    (
        "unknown phone: WhatsApp template or SMS",
        {"to": {"phone": "+14155550100"}, "template": TEMPLATE},
        None,
        {},
        {"whatsapp": "whatsapp.template", "sms": "sms.current_phone"},
        "whatsapp",
    ),
    (
        "no WhatsApp address: only a stale phone",
        {},
        {"phone_status": "stale", "bsuid": None},
        {},
        {"whatsapp": "whatsapp.no_address", "sms": "sms.phone_stale"},
        None,
    ),
    (
        "preference order",
        {"channels": ["sms", "whatsapp"]},
        {},
        {},
        {"sms": "sms.current_phone", "whatsapp": "whatsapp.window_open"},
        "sms",
    ),
    (
        "a stale phone in the request",
        {"to": {"phone": PHONE}},
        {"phone_status": "stale", "last_inbound": timedelta(hours=30)},
        {"phone_stale": True},
        {"whatsapp": "whatsapp.window_closed_no_template", "sms": "sms.phone_stale"},
        None,
    ),
]


@pytest.mark.parametrize(
    ("fields", "who", "flags", "expected", "chosen"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_routing_table(
    fields: dict[str, Any],
    who: dict[str, Any] | None,
    flags: dict[str, bool],
    expected: dict[str, str],
    chosen: str | None,
) -> None:
    decision = route(request(**fields), customer(**who) if who is not None else None, **flags)
    assert reasons(decision) == expected
    assert list(reasons(decision)) == list(expected)  # considered in preference order
    assert (decision.chosen.channel if decision.chosen else None) == chosen
    for considered in decision.considered:
        assert considered.qualified == REASONS[considered.reason][0]


def test_not_configured_channels() -> None:
    decision = decide(request(), Recipient(customer()), TenantChannels(None, None), NOW)
    assert reasons(decision) == {"whatsapp": "whatsapp.not_configured", "sms": "sms.not_configured"}


def test_r2_phone_goes_in_to_and_a_bsuid_only_user_gets_recipient() -> None:
    with_phone = route(request(), customer()).chosen
    assert (
        with_phone
        and with_phone.outbound
        and (with_phone.outbound.to, with_phone.outbound.recipient) == (PHONE, None)
    )
    bsuid_only = route(request(), customer(phone=None)).chosen
    assert bsuid_only and bsuid_only.outbound
    assert (bsuid_only.outbound.to, bsuid_only.outbound.recipient) == (None, BSUID)


def test_r7_the_next_qualifying_channel_is_the_fallback() -> None:
    decision = route(request(), customer())
    fallback = decision.after("whatsapp")
    assert fallback and fallback.channel == "sms" and fallback.outbound and fallback.outbound.to == PHONE
    assert route(request(), customer(phone=None)).after("whatsapp") is None


def test_r9_the_decision_record_names_every_channel() -> None:
    record = route(request(), customer(sms_opted_out=True)).as_record()
    assert record == [
        {
            "channel": "whatsapp",
            "qualified": True,
            "reason": "whatsapp.window_open",
            "from": BUSINESS,  # R10: the number it goes out from, and why
            "from_reason": "from.last_inbound",
        },
        {"channel": "sms", "qualified": False, "reason": "sms.opted_out"},
    ]


def test_every_reason_code_is_covered_by_a_case() -> None:
    seen = {r for c in CASES for r in c[4].values()} | {"whatsapp.not_configured", "sms.not_configured"}
    seen.add("whatsapp.no_opt_in")  # R15 needs a tenant that requires it: tests/unit/test_consent.py
    # R11 needs a tenant on Twilio WhatsApp: tests/unit/test_routing_twilio_whatsapp.py
    seen |= {"whatsapp.twilio_needs_phone", "whatsapp.twilio_needs_content_sid"}
    # R13, rich content: tests/unit/test_routing_rich.py
    seen |= {"whatsapp.interactive_needs_window", "whatsapp.twilio_too_long", "sms.too_long"}
    assert set(REASONS) == seen


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({}, "idempotency_key"),
        ({"tenant": "demo", "idempotency_key": "k", "to": {}, "text": "x"}, "to:"),
        ({"tenant": "demo", "idempotency_key": "k", "to": {"phone": "nope"}, "text": "x"}, "to.phone"),
        ({"tenant": "demo", "idempotency_key": "k", "to": {"bsuid": "1234"}, "text": "x"}, "to.bsuid"),
        ({"tenant": "demo", "idempotency_key": "k", "to": {"phone": PHONE}}, "at least one"),
        (
            {
                "tenant": "demo",
                "idempotency_key": "k",
                "to": {"phone": PHONE},
                "text": "x",
                "channels": ["fax"],
            },
            "channels",
        ),
        (
            {"tenant": "demo", "idempotency_key": "k", "to": {"phone": PHONE}, "template": {"name": "t"}},
            "template.category",
        ),
        (
            {"tenant": "demo", "idempotency_key": "with space", "to": {"phone": PHONE}, "text": "x"},
            "idempotency_key",
        ),
        ([], "JSON object"),
    ],
)
def test_invalid_requests_say_what_is_wrong(doc: Any, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        parse_send_request(doc)


# ---------------------------------------------------------------- properties

_customers = st.builds(
    customer,
    phone=st.sampled_from([PHONE, None]),
    phone_status=st.sampled_from(["current", "stale"]),
    bsuid=st.sampled_from([BSUID, None]),
    last_inbound=st.sampled_from(
        [None, timedelta(hours=1), timedelta(hours=23, minutes=59), timedelta(hours=24), timedelta(days=3)]
    ),
    sms_opted_out=st.booleans(),
    marketing_opted_out=st.booleans(),
)
_requests = st.builds(
    lambda text, template, channels, to: request(text=text, template=template, channels=channels, to=to),
    text=st.sampled_from(["hi", None]),
    template=st.sampled_from(
        [TEMPLATE, {**TEMPLATE, "category": "authentication"}, {**TEMPLATE, "category": "marketing"}]
    ),
    channels=st.sampled_from([None, ["sms"], ["whatsapp"], ["sms", "whatsapp"]]),
    to=st.sampled_from(
        [{"customer_id": "c1"}, {"phone": PHONE}, {"bsuid": BSUID}, {"phone": "+14155550100"}]
    ),
)


@settings(max_examples=400, deadline=None)
@given(_requests, st.one_of(st.none(), _customers))
def test_never_sms_without_a_current_phone_that_has_not_opted_out(
    req: SendRequest, who: Customer | None
) -> None:
    stale = bool(who and req.to.phone and (r := who.phone(req.to.phone)) and r.status == "stale")
    for considered in route(req, who, phone_stale=stale).considered:
        if considered.channel == "sms" and considered.outbound:
            phone = considered.outbound.to
            assert phone and considered.outbound.text
            if who is not None:
                assert not who.sms_opted_out
                record = who.phone(phone)
                assert record is None or record.status == "current"


@settings(max_examples=400, deadline=None)
@given(_requests, st.one_of(st.none(), _customers))
def test_never_a_bsuid_in_to(req: SendRequest, who: Customer | None) -> None:
    for considered in route(req, who).considered:
        out = considered.outbound
        if out is not None:
            assert out.to is None or out.to.startswith("+")
            assert not (out.to and out.recipient)
            if out.channel == "whatsapp" and out.template and out.template.category == "authentication":
                assert out.to is not None  # R3


def test_a_customer_with_a_stale_phone_is_not_texted_at_it() -> None:
    who = replace(customer(phone_status="stale"), sms_opted_out=False)
    assert reasons(route(request(channels=["sms"]), who)) == {"sms": "sms.phone_stale"}


# ---------------------------------------------------------------- R4 across an erasure (I10)

SUPPRESSED_AT = NOW - timedelta(days=3)  # when an erasure kept the phone's STOP


def sms_reason(req: SendRequest, who: Customer | None, suppressions: dict[str, datetime | None]) -> str:
    return reasons(route(req, who, suppressions=suppressions))["sms"]


def test_r4_a_suppressed_phone_gets_no_sms_even_when_no_customer_holds_it() -> None:
    to_phone = request(to={"phone": PHONE}, channels=["sms"])
    assert sms_reason(to_phone, None, {PHONE: SUPPRESSED_AT}) == "sms.opted_out"
    assert sms_reason(to_phone, None, {PHONE: None}) == "sms.current_phone"  # read: not suppressed
    assert sms_reason(to_phone, None, {"+14155550100": SUPPRESSED_AT}) == "sms.current_phone"
    assert sms_reason(to_phone, None, {}) == "sms.current_phone"  # not read: dispatch reads it first


@pytest.mark.parametrize(
    ("opted_in", "opted_out", "expected"),
    [
        (None, False, "sms.opted_out"),  # wrote again after the erasure, but never said START
        (SUPPRESSED_AT - timedelta(minutes=1), False, "sms.opted_out"),  # a START from before it
        (SUPPRESSED_AT, False, "sms.opted_out"),  # not later
        (SUPPRESSED_AT + timedelta(minutes=1), False, "sms.current_phone"),  # START after the erasure
        (SUPPRESSED_AT + timedelta(minutes=1), True, "sms.opted_out"),  # ... and STOP again since
    ],
)
def test_r4_a_suppression_is_lifted_only_by_a_start_of_the_customer_holding_the_phone_after_it(
    opted_in: datetime | None, opted_out: bool, expected: str
) -> None:
    who = replace(customer(), sms_opt_at=opted_in, sms_opted_out=opted_out)
    for to in ({"customer_id": "c1"}, {"phone": PHONE}, {"bsuid": BSUID}):
        assert sms_reason(request(to=to, channels=["sms"]), who, {PHONE: SUPPRESSED_AT}) == expected, to


def test_r4_a_start_from_a_customer_who_does_not_hold_the_suppressed_phone_lifts_nothing() -> None:
    """The request names a phone the customer it resolved to (by BSUID) does not list."""
    who = replace(customer(phone="+14155550100"), sms_opt_at=NOW - timedelta(minutes=1))
    req = request(to={"bsuid": BSUID, "phone": PHONE}, channels=["sms"])
    assert sms_reason(req, who, {PHONE: SUPPRESSED_AT}) == "sms.opted_out"
    assert sms_reason(req, who, {PHONE: None}) == "sms.current_phone"


def test_sms_phone_is_where_an_sms_would_go() -> None:
    who = customer()
    assert sms_phone(request(), Recipient(who)) == PHONE  # the customer's current phone
    assert sms_phone(request(to={"phone": "+14155550100"}), Recipient(None)) == "+14155550100"
    assert sms_phone(request(to={"phone": PHONE}), Recipient(who, phone_stale=True)) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=40))
def test_refused_sends_back_off_exponentially_with_jitter_within_bounds(attempt: int) -> None:
    from crossroute.dispatch import retry_delay

    ceiling = min(900, 2 * 2 ** (attempt - 1))
    low, high = retry_delay(attempt, rng=lambda a, b: a), retry_delay(attempt, rng=lambda a, b: b)
    assert 1 <= low <= high <= 900 and high == round(ceiling)
    assert retry_delay(attempt + 1, rng=lambda a, b: b) >= high  # never shorter for a later attempt
