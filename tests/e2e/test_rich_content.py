"""R13 on the local stack: an image and three buttons reach a WhatsApp user natively inside the window,
and an SMS-only customer as text with numbered options (MMS to a US phone from the local tenant's
MMS-capable number, the image URL in the text elsewhere)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local import StackClient
from tests.support import (
    TWILIO_SMS_NUMBER,
    Probe,
    digits,
    eventually,
    new_phone,
    outbox,
    send,
    whatsapp_customer,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_sandbox")]
IMAGE = {"type": "image", "url": "https://cdn.example.com/order-42.jpg"}
BUTTONS = [
    {"id": "track", "title": "Track order"},
    {"id": "change", "title": "Change address"},
    {"id": "talk", "title": "Talk to us"},
]
NUMBERED = "Your order has shipped\n\n1. Track order\n2. Change address\n3. Talk to us\nReply with a number."


def routed(probe: Probe, request_id: str) -> dict[str, Any]:
    (event,) = eventually(lambda: probe.events("MessageRouted", request_id=request_id))
    return event


def test_an_image_with_three_buttons_reaches_a_whatsapp_user_natively(local_stack: StackClient) -> None:
    customer_id, phone, _ = whatsapp_customer(local_stack)
    send(
        local_stack,
        to={"customer_id": customer_id},
        text="Your order has shipped",
        media=IMAGE,
        buttons=BUTTONS,
    )
    (sent,) = eventually(lambda: outbox(local_stack, channel="whatsapp"))
    assert (sent["to"], sent["type"], sent["text"]) == (phone, "interactive", "Your order has shipped")
    assert sent["media"] == IMAGE
    assert sent["buttons"] == BUTTONS
    assert outbox(local_stack, channel="sms") == []


def test_an_sms_only_customer_gets_numbered_options_and_the_image_as_mms(
    local_stack: StackClient, probe: Probe
) -> None:
    phone = "+" + new_phone()  # a US number nobody has written from: WhatsApp has no window for it
    request_id = send(
        local_stack, to={"phone": phone}, text="Your order has shipped", media=IMAGE, buttons=BUTTONS
    )
    (sent,) = eventually(lambda: outbox(local_stack, channel="sms"))
    assert (sent["to"], sent["from"], sent["type"], sent["text"]) == (
        phone,
        TWILIO_SMS_NUMBER,
        "media",
        NUMBERED,
    )
    assert sent["media"] == IMAGE
    event = routed(probe, request_id)
    whatsapp, sms = event["decision"]
    # Buttons without a template outside the window are not deliverable on WhatsApp: SMS goes instead.
    assert (whatsapp["qualified"], whatsapp["reason"]) == (False, "whatsapp.interactive_needs_window")
    assert (event["channel"], sms["reason"]) == ("sms", "sms.current_phone")
    assert sms["rendering"] == {
        "codes": ["sms.media_as_mms", "sms.rendered_buttons"],
        "characters": len(NUMBERED),
        "segments": 1,
        "encoding": "GSM-7",
    }


def test_outside_the_us_and_canada_the_image_url_goes_in_the_text(
    local_stack: StackClient, probe: Probe
) -> None:
    phone = "+4477009" + digits(5)  # a UK mobile: no MMS there
    request_id = send(
        local_stack, to={"phone": phone}, text="Your order has shipped", media=IMAGE, buttons=BUTTONS
    )
    (sent,) = eventually(lambda: outbox(local_stack, channel="sms"))
    assert (sent["type"], sent["media"]) == ("text", None)
    assert sent["text"] == NUMBERED.replace("\n\n1.", f"\n\n{IMAGE['url']}\n\n1.")
    sms = routed(probe, request_id)["decision"][1]
    assert sms["rendering"]["codes"] == ["sms.media_as_link", "sms.rendered_buttons"]
