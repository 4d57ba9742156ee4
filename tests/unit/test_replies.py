"""R13 on the way back: a number (or an option's title) answered by SMS to numbered options is recorded
as that option picked, in the same shape as a WhatsApp reply button (``crossroute.replies``), through
the real ``Ingest`` over the in-memory store; WhatsApp's own replies carry their ids (parsing)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from crossroute.inbound import Choice, InboundMessage
from crossroute.ingest import Ingest
from crossroute.parsing.queued import parse
from crossroute.replies import OFFER_KEEP, Offer, answered, may_answer_an_offer, option_number, picked
from tests.fakes import MemoryIdentityStore, RecordingPublisher
from tests.support import TENANT, minute_at, schema_problems, sms_in, whatsapp_in

PHONE = "+16505550123"
OPTIONS = (("track", "Track order"), ("change", "Change address"), ("agent", "Talk to us"))
OFFER = Offer("sms", OPTIONS, minute_at(0), "order-7")


# ------------------------------------------------------------------------------ which option a text picks


def test_a_number_picks_that_option_and_a_number_out_of_range_none() -> None:
    for text in ("2", " 2 ", "2.", "2)", "#2", "no. 2"):
        assert picked(text, OPTIONS) == OPTIONS[1], text
    for text in ("0", "4", "22", "2 please", "two"):
        assert picked(text, OPTIONS) is None, text
    # A number out of range may still be an option's title.
    assert picked("0!", (("zero", "0!"),)) == ("zero", "0!")


def test_a_title_picks_its_option_whatever_its_case_and_spacing_but_never_an_ambiguous_one() -> None:
    assert picked("  track   ORDER ", OPTIONS) == OPTIONS[0]
    twins = (("a", "Yes"), ("b", "yes"))
    assert picked("YES", twins) is None


def normalised(title: str) -> str:
    """As ``picked`` compares titles: spacing collapsed, case folded."""
    return " ".join(title.split()).casefold()


titles = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=24)


@given(st.lists(titles, min_size=1, max_size=10, unique_by=normalised))
def test_every_option_is_picked_by_its_number_and_by_its_title(names: list[str]) -> None:
    options = tuple((f"id-{i}", name) for i, name in enumerate(names))
    for number, option in enumerate(options, start=1):
        assert picked(str(number), options) == option
        as_number = option_number(option[1])
        if " ".join(option[1].split()) and not (as_number and as_number <= len(options)):  # a number wins
            shouted = option[1].upper()
            if normalised(shouted) == normalised(option[1]):
                assert picked(shouted, options) == option
            else:  # upper() changed more than case (e.g. "ß" -> "SS"): no longer this option's title
                assert picked(shouted, options) != option
            assert picked(option[1], options) == option


# ------------------------------------------------------------------------------ which messages answer


def test_only_a_short_text_from_a_phone_over_twilio_may_answer() -> None:
    reply = sms_in("SM1", PHONE, 1, "2")
    assert may_answer_an_offer(reply)
    assert not may_answer_an_offer(replace(reply, text="x" * 25))
    assert not may_answer_an_offer(replace(reply, type="image"))
    assert not may_answer_an_offer(whatsapp_in("wamid.1", 1, "US.1", phone=PHONE, text="2"))  # Meta
    assert not may_answer_an_offer(replace(reply, choice=Choice("x", "X", "whatsapp.quick_reply")))


def test_a_reply_is_mapped_only_on_the_offers_channel_after_it_and_within_a_week() -> None:
    reply = sms_in("SM1", PHONE, 1, "2")
    mapped = answered(reply, OFFER)
    assert (mapped.type, mapped.text, mapped.choice) == (
        "interactive",
        "Change address",
        Choice("change", "Change address", "sms.numbered_option"),
    )
    assert answered(reply, replace(OFFER, channel="whatsapp")) == reply
    assert answered(reply, replace(OFFER, sent_at=minute_at(2))) == reply  # the reply came first
    late = replace(reply, sent_at=minute_at(0) + OFFER_KEEP + timedelta(seconds=1))
    assert answered(late, OFFER) == late
    assert answered(sms_in("SM2", PHONE, 1, "9"), OFFER).choice is None
    assert answered(reply, None) == reply


# ------------------------------------------------------------------------------ through ingest


def test_an_sms_reply_of_a_number_is_stored_and_published_as_the_option_picked() -> None:
    store, bus = MemoryIdentityStore(), RecordingPublisher()
    store.offers[(TENANT, PHONE)] = OFFER
    Ingest(store, bus, sleep=lambda _: None).handle([sms_in("SM1", PHONE, 1, "2")])
    (received,) = [e for e in bus.events if e.detail_type == "MessageReceived"]
    assert (received.detail["type"], received.detail["text"]) == ("interactive", "Change address")
    assert received.detail["choice"] == {
        "id": "change",
        "title": "Change address",
        "via": "sms.numbered_option",
    }
    assert schema_problems("MessageReceived", {**received.detail, "version": "1"}) == []
    stored = store.messages[(TENANT, "twilio", "SM1")]
    assert stored.choice == received.detail["choice"] and stored.message_type == "interactive"


def test_a_text_that_answers_nothing_is_stored_as_it_came() -> None:
    store, bus = MemoryIdentityStore(), RecordingPublisher()
    store.offers[(TENANT, PHONE)] = OFFER
    Ingest(store, bus, sleep=lambda _: None).handle([sms_in("SM1", PHONE, 1, "thanks!")])
    (received,) = [e for e in bus.events if e.detail_type == "MessageReceived"]
    assert (received.detail["type"], received.detail["text"]) == ("text", "thanks!")
    assert "choice" not in received.detail


# ------------------------------------------------------------------------------ WhatsApp's own replies


QUEUED = {"schema": "crossroute.inbound/1", "tenant": "demo", "received_at": "2026-11-22T10:00:00.123Z"}


def meta_message(message: dict[str, Any]) -> InboundMessage:
    """The one inbound message a Meta webhook carrying ``message`` (its type's fields) parses to."""
    item = {"from": "16505550123", "from_user_id": "US.1", "id": "wamid.R1", "timestamp": "1796200000"}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100001", "phone_number_id": "100000000000001"},
        "contacts": [{"wa_id": "16505550123", "user_id": "US.1", "profile": {"name": "Alex"}}],
        "messages": [{**item, **message}],
    }
    change = {"field": "messages", "value": value}
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "100000000000000", "changes": [change]}],
    }
    (event,) = parse(json.dumps({**QUEUED, "kind": "meta.webhook", "payload": payload})).events
    assert isinstance(event, InboundMessage)
    return event


def test_whatsapp_reply_buttons_list_rows_and_quick_replies_carry_their_ids() -> None:
    button = {"type": "button_reply", "button_reply": {"id": "track", "title": "Track order"}}
    row = {"type": "list_reply", "list_reply": {"id": "r2", "title": "Red", "description": "a colour"}}
    assert meta_message({"type": "interactive", "interactive": button}).choice == Choice(
        "track", "Track order", "whatsapp.button_reply"
    )
    assert meta_message({"type": "interactive", "interactive": row}).choice == Choice(
        "r2", "Red", "whatsapp.list_reply"
    )
    quick = meta_message({"type": "button", "button": {"payload": "yes-42", "text": "Yes"}})
    assert quick.choice == Choice("yes-42", "Yes", "whatsapp.quick_reply")
    assert meta_message({"type": "text", "text": {"body": "2"}}).choice is None


def test_a_quick_reply_through_twilio_carries_its_payload_as_the_id() -> None:
    form = urlencode(
        {
            "MessageSid": "SM" + "a" * 32,
            "AccountSid": "AC" + "0" * 32,
            "From": "whatsapp:+16505550123",
            "To": "whatsapp:+15550100003",
            "Body": "Yes",
            "MessageType": "button",
            "ButtonText": "Yes",
            "ButtonPayload": "yes-42",
        }
    )
    (event,) = parse(json.dumps({**QUEUED, "kind": "twilio.message", "form": form})).events
    assert isinstance(event, InboundMessage)
    assert event.choice == Choice("yes-42", "Yes", "whatsapp.quick_reply")
