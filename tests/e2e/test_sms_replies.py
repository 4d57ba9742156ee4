"""R13 end to end on the local stack: a request with three buttons reaches an SMS-only phone as numbered
options, and the SMS reply "2" (signed as Twilio signs) is recorded as the second button picked, as a
WhatsApp reply button would be; a reply by title works too, and a number out of range stays a text."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from infra.local import StackClient
from tests.support import (
    TWILIO_ACCOUNT,
    TWILIO_SMS_NUMBER,
    contact,
    eventually,
    new_phone,
    outbox,
    post_twilio,
    send,
    timeline,
)

BUTTONS = [
    {"id": "track", "title": "Track order"},
    {"id": "change", "title": "Change address"},
    {"id": "agent", "title": "Talk to us"},
]


def sms_from(phone: str, body: str) -> tuple[str, bytes]:
    """A signed-to-be Twilio SMS webhook from ``phone`` to the local tenant's number: (sid, form)."""
    sid = f"SM{time.time_ns():032x}"[:34]
    form = {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": TWILIO_SMS_NUMBER,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": TWILIO_ACCOUNT,
        "From": phone,
        "ApiVersion": "2010-04-01",
    }
    return sid, urlencode(form).encode()


def reply_item(stack: StackClient, phone: str, sid: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        customer = contact(stack, phone=phone)
        if customer is None:
            return None
        return next((i for i in timeline(stack, customer["id"]) if i.get("message_id") == sid), None)

    item: dict[str, Any] = eventually(found)
    return item


def test_an_sms_reply_of_a_number_or_a_title_arrives_as_that_buttons_id(local_stack: StackClient) -> None:
    phone = "+" + new_phone()
    request_id = send(
        local_stack, to={"phone": phone}, text="Your order has shipped", buttons=BUTTONS, channels=["sms"]
    )
    (sms,) = eventually(lambda: outbox(local_stack, to=phone, channel="sms"))
    assert "1. Track order" in sms["text"] and "2. Change address" in sms["text"]
    # The options are kept when the send settles: reply once GET /messages says it was sent.
    eventually(lambda: local_stack.get(f"/messages/{request_id}").json()["status"] in ("sent", "delivered"))

    sid, form = sms_from(phone, "2")
    assert post_twilio(local_stack, form).status == 200
    item = reply_item(local_stack, phone, sid)
    assert (item["type"], item["text"]) == ("interactive", "Change address")
    assert item["choice"] == {"id": "change", "title": "Change address", "via": "sms.numbered_option"}

    sid, form = sms_from(phone, "talk to us")
    assert post_twilio(local_stack, form).status == 200
    assert reply_item(local_stack, phone, sid)["choice"]["id"] == "agent"

    sid, form = sms_from(phone, "7")
    assert post_twilio(local_stack, form).status == 200
    item = reply_item(local_stack, phone, sid)
    assert (item["type"], item["text"], item["choice"]) == ("text", "7", None)
