"""Erasure (I10) as a user of the local stack sees it: ``DELETE /contacts/{id}`` forgets the customer and
every message body sent to it, also before it was a known customer; its STOP outlives it (R4), so a
send to its phone by SMS is undeliverable and nothing reaches the sandbox's outbox, until the phone says
START again; ``CustomerErased`` reaches the bus."""

from __future__ import annotations

import json
import time

import pytest

from infra.local import StackClient
from tests.support import Probe, contact, eventually, new_phone, outbox, personal, post_twilio, send

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_sandbox")]


def stored_anywhere(stack: StackClient, text: str) -> bool:
    """Whether any item of the stack's table holds ``text`` (read straight from the emulator)."""
    dynamodb = stack.client("dynamodb")
    for page in dynamodb.get_paginator("scan").paginate(TableName=stack.table_name, ConsistentRead=True):
        if any(text in json.dumps(item) for item in page["Items"]):
            return True
    return False


def sms_from(phone: str, word: str) -> bytes:
    """A Twilio SMS webhook from ``phone`` (E.164) saying STOP or START, with a fresh message id."""
    stop = personal("twilio_sms_stop.form", **{"%2B16505551234": "%2B" + phone[1:]})
    if word == "STOP":
        return stop
    return stop.replace(b"Body=Stop", b"Body=START").replace(b"OptOutType=STOP", b"OptOutType=START")


def test_an_erased_stop_is_kept_until_a_start_and_the_erased_customer_s_bodies_are_gone(
    local_stack: StackClient, probe: Probe
) -> None:
    phone = "+" + new_phone()
    # Before anyone holds the phone: a reply goes out to it by SMS (stored with no customer).
    early = f"Your code is {time.time_ns()}"
    send(local_stack, to={"phone": phone}, text=early, channels=["sms"])
    eventually(lambda: [m for m in outbox(local_stack, to=phone) if m["text"] == early])
    assert stored_anywhere(local_stack, early)

    # The phone writes STOP: a customer who opted out; then it is erased.
    assert post_twilio(local_stack, sms_from(phone, "STOP")).status == 200
    customer = eventually(lambda: (c := contact(local_stack, phone=phone)) and c["sms_opted_out"] and c)
    assert local_stack.request("DELETE", f"/contacts/{customer['id']}").status == 204
    assert contact(local_stack, phone=phone) is None
    assert not stored_anywhere(local_stack, early)  # the body sent before it was a customer, too
    (erased,) = eventually(lambda: probe.events("CustomerErased", customer_id=customer["id"]))
    assert erased["counts"]["phones_suppressed"] == 1 and erased["counts"]["items_deleted"] >= 4
    assert erased["tenant"] == "demo" and phone[1:] not in json.dumps(erased)

    # R4 holds for the now unknown phone: nothing goes out by SMS.
    local_stack.request("DELETE", "/_sandbox/outbox")
    request_id = send(local_stack, to={"phone": phone}, text="Still there?", channels=["sms"])
    (refused,) = eventually(lambda: probe.events("MessageUndeliverable", request_id=request_id))
    assert refused["reason"] == "no_channel" and refused["customer_id"] is None
    assert refused["decision"] == [{"channel": "sms", "qualified": False, "reason": "sms.opted_out"}]
    time.sleep(1.0)
    assert local_stack.get("/_sandbox/outbox").json() == []

    # START from the same phone (after the erasure): texted again.
    assert post_twilio(local_stack, sms_from(phone, "START")).status == 200
    eventually(lambda: (c := contact(local_stack, phone=phone)) and c["sms_opted_out"] is False)
    send(local_stack, to={"phone": phone}, text="Welcome back", channels=["sms"])
    (sms,) = eventually(lambda: outbox(local_stack, to=phone))
    assert (sms["channel"], sms["text"]) == ("sms", "Welcome back")
