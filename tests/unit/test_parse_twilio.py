"""Queued Twilio callbacks (SMS, WhatsApp via Twilio, status) become crossroute events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute.inbound import InboundMessage, Person, ProviderError, StatusUpdate, Unrecognised
from crossroute.parsing.queued import Parsed, parse
from tests.support import CORE_FIXTURES, TRICKY_STRINGS, assert_clean, fixture_bytes

LOCAL_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECEIVED_AT = "2026-11-22T10:00:00.123Z"
ARRIVED = datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC)


def shared_form(name: str) -> str:
    return fixture_bytes(name).decode()


def local_form(name: str) -> str:
    return (LOCAL_FIXTURES / name).read_text().rstrip("\n")


def queued(form: Any, kind: str = "twilio.message") -> str:
    """The inbound-queue body that ``webhooks.twilio`` writes for a callback."""
    body = {"schema": "crossroute.inbound/1", "tenant": "demo", "received_at": RECEIVED_AT}
    return json.dumps({**body, "kind": kind, "form": form})


def parsed(form: Any, kind: str = "twilio.message") -> Parsed:
    return parse(queued(form, kind))


def only(form: Any, kind: str = "twilio.message") -> Any:
    result = parsed(form, kind)
    assert result.rejected == []
    (event,) = result.events
    return event


def with_params(form: str, **changes: str | None) -> str:
    """``form`` with parameters replaced (``None`` removes one)."""
    params = dict(parse_qsl(form, keep_blank_values=True))
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return urlencode(params)


# --- SMS ---------------------------------------------------------------------------------------------------


def test_an_sms_names_its_sender_by_phone_and_our_number_as_business() -> None:
    form = shared_form("twilio_sms_inbound.form")
    message = only(form)
    assert message == InboundMessage(
        tenant="demo",
        provider="twilio",
        channel="sms",
        message_id="SM0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        business="+15550100002",
        sender=Person(phone="+16505551234", phone_raw="+16505551234"),
        sent_at=ARRIVED,  # Twilio sends no time: arrival at crossroute
        type="text",
        text="Where is my order?",
    )
    assert message.raw == dict(parse_qsl(form, keep_blank_values=True))


def test_stop_carries_twilios_opt_out_keyword() -> None:
    message = only(shared_form("twilio_sms_stop.form"))
    assert isinstance(message, InboundMessage)
    assert (message.text, message.opt_out_keyword, message.channel) == ("Stop", "STOP", "sms")
    assert message.sender.phone == "+16505551234"


def test_an_sms_without_advanced_opt_out_has_no_keyword_even_if_it_says_stop() -> None:
    form = with_params(shared_form("twilio_sms_stop.form"), OptOutType=None)
    assert only(form).opt_out_keyword is None


def test_an_mms_is_typed_by_its_first_attachment_and_keeps_the_media_in_raw() -> None:
    message = only(local_form("twilio_mms_inbound.form"))
    assert isinstance(message, InboundMessage)
    assert (message.type, message.text, message.channel) == ("image", None, "sms")
    assert message.raw["NumMedia"] == "2"
    assert message.raw["MediaContentType1"] == "application/pdf"
    assert message.raw["MediaUrl0"].startswith("https://api.twilio.com/")


def test_the_older_sid_names_are_enough() -> None:
    form = with_params(shared_form("twilio_sms_inbound.form"), MessageSid=None, SmsSid=None)
    assert only(form).message_id == "SM0a1b2c3d4e5f60718293a4b5c6d7e8f9"


# --- WhatsApp via Twilio -----------------------------------------------------------------------------------


def test_a_whatsapp_user_without_a_shared_phone_is_known_by_bsuid_and_username() -> None:
    assert only(shared_form("twilio_whatsapp_inbound_bsuid.form")) == InboundMessage(
        tenant="demo",
        provider="twilio",
        channel="whatsapp",
        message_id="SM2c3d4e5f60718293a4b5c6d7e8f90a1b",
        business="whatsapp:+15550100003",
        sender=Person(bsuid="US.20938475610293847", username="mia.k", name="Mia"),
        sent_at=ARRIVED,
        type="text",
        text="hello from whatsapp",
    )


def test_a_whatsapp_user_with_phone_and_bsuid_links_both_whatever_the_spelling() -> None:
    message = only(local_form("twilio_whatsapp_inbound_phone_image.form"))
    assert isinstance(message, InboundMessage)
    assert message.sender == Person(
        phone="+14155550142",
        phone_raw="14155550142",  # WaId: Meta's attested digits
        bsuid="US.7261503849271650384",  # from ExternalUserIdentifier, whatsapp: prefix removed
        parent_bsuid="US.ENT.9182736450918273645",
        username="lena.b",  # from Username, "@" removed
        name="Lena",
    )
    assert (message.channel, message.business, message.type, message.text) == (
        "whatsapp",
        "whatsapp:+15550100003",
        "image",
        "The box arrived like this",
    )
    assert message.raw["MediaContentType0"] == "image/jpeg"


def test_a_template_button_reply_gives_its_label_and_the_message_it_answers() -> None:
    message = only(local_form("twilio_whatsapp_button_reply.form"))
    assert isinstance(message, InboundMessage)
    assert (message.type, message.text, message.reply_to) == (
        "button",
        "Yes, deliver tomorrow",
        "SM9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    )
    assert message.raw["ButtonPayload"] == "CONFIRM_DELIVERY"
    assert message.sender.username == "lena.b"


def test_a_whatsapp_sender_address_that_is_a_bsuid_is_used_when_no_external_id_is_sent() -> None:
    form = with_params(shared_form("twilio_whatsapp_inbound_bsuid.form"), ExternalUserId=None)
    assert only(form).sender == Person(bsuid="US.20938475610293847", username="mia.k", name="Mia")


# --- status callbacks --------------------------------------------------------------------------------------


def test_an_undelivered_sms_status_names_the_customer_and_the_error() -> None:
    form = shared_form("twilio_status_undelivered.form")
    assert only(form, "twilio.status") == StatusUpdate(
        tenant="demo",
        provider="twilio",
        channel="sms",
        message_id="SM3d4e5f60718293a4b5c6d7e8f90a1b2c",
        business="+15550100002",
        recipient=Person(phone="+16505551234", phone_raw="+16505551234"),
        status="undelivered",
        at=ARRIVED,  # Twilio sends no time: arrival at crossroute
        errors=(ProviderError(code=30003),),
    )


def test_a_read_receipt_for_a_whatsapp_message_sent_to_a_bsuid() -> None:
    status = only(local_form("twilio_whatsapp_status_read.form"), "twilio.status")
    assert isinstance(status, StatusUpdate)
    assert (status.channel, status.status, status.business, status.errors) == (
        "whatsapp",
        "read",
        "whatsapp:+15550100003",
        (),
    )
    assert status.recipient == Person(bsuid="US.20938475610293847")


def test_a_failed_whatsapp_status_carries_twilios_code_and_message() -> None:
    status = only(local_form("twilio_whatsapp_status_failed.form"), "twilio.status")
    assert isinstance(status, StatusUpdate)
    assert status.status == "failed"
    assert status.recipient == Person(phone="+14155550142", phone_raw="whatsapp:+14155550142")
    (error,) = status.errors
    assert error.code == 63016 and error.title.startswith("Failed to send freeform message")


def test_every_shared_twilio_fixture_parses_without_drops() -> None:
    for path in sorted(CORE_FIXTURES.glob("twilio_*.form")):
        kind = "twilio.status" if "status" in path.name else "twilio.message"
        result = parsed(shared_form(path.name), kind)
        assert result.rejected == [], path.name
        assert len(result.events) == 1 and not isinstance(result.events[0], Unrecognised), path.name


# --- identity hygiene --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["whatsapp:US", "whatsapp:us.20938475610293847", "US." + "7" * 129, "US.ENT.1"]
)
def test_a_malformed_external_user_id_is_dropped_and_reported(bad: str) -> None:
    form = with_params(local_form("twilio_whatsapp_inbound_phone_image.form"), ExternalUserIdentifier=bad)
    result = parsed(form)
    (message,) = result.events
    assert isinstance(message, InboundMessage)
    assert message.sender.bsuid is None
    assert message.sender.phone == "+14155550142"
    assert result.rejected == ["malformed BSUID in ExternalUserIdentifier"]


def test_a_malformed_parent_id_is_dropped_and_reported() -> None:
    form = with_params(
        local_form("twilio_whatsapp_inbound_phone_image.form"), ParentExternalUserId="US.918273"
    )
    result = parsed(form)
    assert result.events[0].sender.parent_bsuid is None  # type: ignore[union-attr]
    assert result.rejected == ["malformed parent BSUID in ParentExternalUserId"]


def test_an_sms_from_an_unparseable_number_is_unrecognised_and_reported() -> None:
    form = with_params(shared_form("twilio_sms_inbound.form"), From="Not a number")
    result = parsed(form)
    (event,) = result.events
    assert isinstance(event, Unrecognised)
    assert (event.provider, event.kind) == ("twilio", "twilio.message")
    assert result.rejected == ["unparseable phone in From"]


def test_a_form_that_is_not_text_is_unrecognised() -> None:
    (event,) = parsed({"From": "+16505551234"}).events
    assert isinstance(event, Unrecognised)
    assert event.reason == "form is not text"


def test_a_status_without_a_status_is_unrecognised() -> None:
    form = with_params(shared_form("twilio_status_undelivered.form"), MessageStatus=None, SmsStatus=None)
    (event,) = parsed(form, "twilio.status").events
    assert isinstance(event, Unrecognised)
    assert event.kind == "twilio.status"


# --- properties --------------------------------------------------------------------------------------------

FORMS = [
    (shared_form(p.name), "twilio.status" if "status" in p.name else "twilio.message")
    for p in sorted(CORE_FIXTURES.glob("twilio_*.form"))
] + [
    (local_form(p.name), "twilio.status" if "status" in p.name else "twilio.message")
    for p in sorted(LOCAL_FIXTURES.glob("twilio_*.form"))
]
VALUES = st.one_of(
    st.text(max_size=30), st.sampled_from([*TRICKY_STRINGS, "whatsapp:", "whatsapp:+", "STOP", "-1"])
)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_any_damage_to_a_twilio_form_is_parsed_without_raising(data: st.DataObject) -> None:
    form, kind = data.draw(st.sampled_from(FORMS))
    params = dict(parse_qsl(form, keep_blank_values=True))
    for name in list(params):
        action = data.draw(st.sampled_from(["keep", "keep", "drop", "replace"]))
        if action == "drop":
            del params[name]
        elif action == "replace":
            params[name] = data.draw(VALUES)
    params.update(data.draw(st.dictionaries(st.text(max_size=12), VALUES, max_size=3)))
    kind = data.draw(st.sampled_from([kind, "twilio.message", "twilio.status"]))
    assert_clean(parsed(urlencode(params), kind))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=80), st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=3)))
def test_any_form_body_is_parsed_without_raising(form: Any) -> None:
    assert_clean(parsed(form))
    assert_clean(parsed(form, "twilio.status"))


def test_national_numbers_are_read_in_the_tenants_region_from_the_queued_body() -> None:
    form = with_params(shared_form("twilio_sms_inbound.form"), From="030 901820")
    body = {**json.loads(queued(form)), "region": "DE"}
    assert parse(json.dumps(body)).events[0].sender.phone == "+4930901820"  # type: ignore[union-attr]
    assert parse(json.dumps({**body, "region": None}), default_region="DE").events[0].sender.phone == (  # type: ignore[union-attr]
        "+4930901820"
    )
