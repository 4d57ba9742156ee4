"""R14 on the local stack: a WhatsApp message still at ``sent`` after ``fallback_after`` seconds gets one
SMS, through a delayed check on the real (emulated) send queue; one delivered in time gets none.
Over the fakes: tests/unit/test_routing_timed_fallback.py."""

from __future__ import annotations

import time

import pytest

from infra.local import StackClient
from tests.support import (
    eventually,
    outbox,
    send,
    whatsapp_customer,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_sandbox")]
WAIT = 5  # seconds: the smallest ``fallback_after`` (docs/routing.md, R14)


def send_with_fallback(stack: StackClient, customer_id: str) -> None:
    send(stack, to={"customer_id": customer_id}, text="Your order has shipped", fallback_after=WAIT)


def test_a_whatsapp_message_held_at_sent_gets_one_sms_after_the_wait(local_stack: StackClient) -> None:
    customer_id, phone, _ = whatsapp_customer(local_stack)
    local_stack.post("/_sandbox/recipients", json_body={"whatsapp": {phone: {"status": "sent"}}})
    started = time.monotonic()
    send_with_fallback(local_stack, customer_id)
    eventually(lambda: outbox(local_stack, channel="whatsapp"))
    (sms,) = eventually(lambda: outbox(local_stack, channel="sms"), timeout=WAIT + 20)
    assert time.monotonic() - started >= WAIT  # not before the wait
    assert (sms["to"], sms["text"]) == (phone, "Your order has shipped")
    time.sleep(2.0)
    assert len(outbox(local_stack, channel="sms")) == 1 and len(outbox(local_stack, channel="whatsapp")) == 1


def test_a_whatsapp_message_delivered_in_time_gets_no_sms(local_stack: StackClient) -> None:
    customer_id, phone, _ = whatsapp_customer(local_stack)
    local_stack.post("/_sandbox/recipients", json_body={"whatsapp": {phone: {"status": "delivered"}}})
    send_with_fallback(local_stack, customer_id)
    eventually(lambda: outbox(local_stack, channel="whatsapp"))
    time.sleep(WAIT + 5.0)  # the check ran (it is due after WAIT s) and found the message delivered
    assert outbox(local_stack, channel="sms") == []
