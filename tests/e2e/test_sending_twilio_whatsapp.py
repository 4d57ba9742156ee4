"""R11 on the local stack: a tenant whose WhatsApp runs on Twilio (a registry without ``meta``) answers a
customer who wrote on WhatsApp through Twilio with a WhatsApp reply through Twilio, from the sender the
customer wrote to; a customer known only by BSUID cannot get WhatsApp through Twilio."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from infra.local import StackClient
from tests.support import (
    LOCAL_TENANT,
    TWILIO_WHATSAPP_SENDER,
    contact,
    eventually,
    new_bsuid,
    new_phone,
    outbox,
    personal,
    post_twilio,
    send,
    stack_with_tenant,
    timeline,
)

pytestmark = pytest.mark.e2e
TWILIO_ONLY = {k: v for k, v in LOCAL_TENANT.items() if k != "meta"}
FIXTURE_BSUID = "US.20938475610293847"


@pytest.fixture(scope="module")
def twilio_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackClient]:
    """Its own stack, with event sources on: send requests are dispatched."""
    with stack_with_tenant(tmp_path_factory.mktemp("twilio-whatsapp"), TWILIO_ONLY) as client:
        yield client


def writes_on_twilio_whatsapp(stack: StackClient, phone: str | None, bsuid: str) -> dict[str, Any]:
    """A new customer writes to the tenant's Twilio WhatsApp sender, from ``phone`` (else as a BSUID)."""
    sender = quote(f"whatsapp:{phone or bsuid}", safe="")
    swap = {"From=whatsapp%3AUS.20938475610293847": f"From={sender}", FIXTURE_BSUID: bsuid}
    assert post_twilio(stack, personal("twilio_whatsapp_inbound_bsuid.form", **swap)).status == 200
    view: dict[str, Any] = eventually(lambda: contact(stack, bsuid=bsuid))
    return view


def decision(stack: StackClient, customer_id: str, request_id: str) -> dict[str, Any]:
    def entry() -> dict[str, Any] | None:
        items = timeline(stack, customer_id)
        return next((i for i in items if i["kind"] == "decision" and i["request_id"] == request_id), None)

    found: dict[str, Any] = eventually(entry)
    return found


def test_a_customer_who_wrote_through_twilio_gets_a_whatsapp_reply_through_twilio(
    twilio_only: StackClient,
) -> None:
    phone = "+" + new_phone()
    customer = writes_on_twilio_whatsapp(twilio_only, phone, new_bsuid("US"))
    request_id = send(twilio_only, to={"customer_id": customer["id"]}, text="Your order has shipped")
    (message,) = eventually(lambda: outbox(twilio_only, text="Your order has shipped", to=phone))
    assert (message["channel"], message["provider"], message["type"]) == ("whatsapp", "twilio", "text")
    assert message["from"] == TWILIO_WHATSAPP_SENDER
    first = decision(twilio_only, customer["id"], request_id)["channels"][0]
    assert (first["channel"], first["reason"]) == ("whatsapp", "whatsapp.window_open")
    assert first["from_reason"] == "from.last_inbound"


def test_a_bsuid_only_customer_gets_no_whatsapp_through_twilio(twilio_only: StackClient) -> None:
    bsuid = new_bsuid("US")
    customer = writes_on_twilio_whatsapp(twilio_only, None, bsuid)
    request_id = send(twilio_only, to={"bsuid": bsuid}, text="Your order has shipped")
    channels = decision(twilio_only, customer["id"], request_id)["channels"]
    assert channels[0] == {"channel": "whatsapp", "qualified": False, "reason": "whatsapp.twilio_needs_phone"}
    assert outbox(twilio_only, recipient=bsuid) == [] and outbox(twilio_only, to=bsuid) == []


def test_r7_a_failed_twilio_whatsapp_status_falls_back_to_one_sms(twilio_only: StackClient) -> None:
    phone = "+" + new_phone()
    customer = writes_on_twilio_whatsapp(twilio_only, phone, new_bsuid("US"))
    # The fake Twilio's "sms" settings (by phone) govern its WhatsApp sends too: delivered, then failed.
    behaviour = {"sms": {phone: {"status": "failed", "error_code": 63024}}}
    assert twilio_only.post("/_sandbox/recipients", json_body=behaviour).status == 200
    send(twilio_only, to={"customer_id": customer["id"]}, text="Where are you?")
    (sms,) = eventually(lambda: outbox(twilio_only, text="Where are you?", channel="sms"))
    assert sms["to"] == phone
    whatsapp = outbox(twilio_only, text="Where are you?", channel="whatsapp")
    assert len(whatsapp) == 1 and whatsapp[0]["provider"] == "twilio"
