"""R10 on the local stack: a tenant with two Meta numbers and two SMS numbers answers each customer from
the number the customer wrote to (WhatsApp: the last one written to; SMS: sticky), unless the request
names a ``from``; the sandbox outbox shows the sender used."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.local import StackClient
from tests.support import (
    LOCAL_TENANT,
    PHONE_NUMBER_ID,
    TWILIO_SMS_NUMBER,
    contact,
    eventually,
    new_phone,
    outbox,
    personal,
    post_twilio,
    send,
    stack_with_tenant,
    timeline,
    whatsapp_customer,
)

pytestmark = pytest.mark.e2e
SECOND_NUMBER_ID, SECOND_DISPLAY = "100000000000002", "15550100005"
SECOND_SMS = "+15550100004"
TWO_NUMBERS = {
    **LOCAL_TENANT,
    "meta": {
        **LOCAL_TENANT["meta"],
        "phone_numbers": [
            {"phone_number_id": PHONE_NUMBER_ID, "display_phone_number": "15550100001"},
            {"phone_number_id": SECOND_NUMBER_ID, "display_phone_number": SECOND_DISPLAY},
        ],
    },
    "twilio": {**LOCAL_TENANT["twilio"], "sms_numbers": [TWILIO_SMS_NUMBER, SECOND_SMS]},
}
TEMPLATE = {"name": "order_shipped", "language": "en_US", "category": "utility", "components": []}


@pytest.fixture(scope="module")
def two_numbers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackClient]:
    """Its own stack, with event sources on: send requests are dispatched."""
    with stack_with_tenant(tmp_path_factory.mktemp("two-numbers"), TWO_NUMBERS) as client:
        yield client


def test_a_customer_who_wrote_to_the_second_number_is_answered_from_it(two_numbers: StackClient) -> None:
    customer_id, _, _ = whatsapp_customer(two_numbers, phone_number_id=SECOND_NUMBER_ID)
    request_id = send(two_numbers, to={"customer_id": customer_id}, text="Your order has shipped")
    (message,) = eventually(lambda: outbox(two_numbers, channel="whatsapp", text="Your order has shipped"))
    assert (message["from"], message["type"]) == (SECOND_NUMBER_ID, "text")  # inside that number's window

    def decision() -> dict[str, Any] | None:
        items = timeline(two_numbers, customer_id)
        return next((i for i in items if i["kind"] == "decision" and i["request_id"] == request_id), None)

    entry = eventually(decision)
    assert entry["from"] == SECOND_NUMBER_ID
    assert entry["channels"][0]["from_reason"] == "from.last_inbound"


def test_a_request_from_the_first_number_goes_from_it(two_numbers: StackClient) -> None:
    """Named by its display number. The customer wrote to the second number only, so the first's window
    is closed (R1): the template goes out, from the first number."""
    customer_id, _, _ = whatsapp_customer(two_numbers, phone_number_id=SECOND_NUMBER_ID)
    fields = {"from": "+1 555 010 0001", "text": "Hello again", "template": TEMPLATE}
    send(two_numbers, to={"customer_id": customer_id}, channels=["whatsapp"], **fields)
    (message,) = eventually(lambda: outbox(two_numbers, channel="whatsapp", template="order_shipped"))
    assert (message["from"], message["type"]) == (PHONE_NUMBER_ID, "template")


def test_an_sms_customer_who_texted_the_second_number_gets_sms_from_it(two_numbers: StackClient) -> None:
    phone = new_phone()
    swap = {"%2B16505551234": "%2B" + phone, "To=%2B15550100002": "To=" + SECOND_SMS.replace("+", "%2B")}
    raw = personal("twilio_sms_inbound.form", **swap)
    assert post_twilio(two_numbers, raw).status == 200
    eventually(lambda: contact(two_numbers, phone="+" + phone))
    send(two_numbers, to={"phone": "+" + phone}, text="We got it", channels=["sms"])
    (message,) = eventually(lambda: outbox(two_numbers, channel="sms", text="We got it"))
    assert (message["to"], message["from"]) == ("+" + phone, SECOND_SMS)


def test_an_unknown_from_is_a_clear_400(two_numbers: StackClient) -> None:
    answer = two_numbers.post(
        "/messages",
        json_body={
            "idempotency_key": "k-unknown-from",
            "to": {"phone": "+16505550000"},
            "text": "x",
            "from": "+15550109999",
        },
    )
    assert answer.status == 400
    (error,) = answer.json()["errors"]
    assert error["field"] == "from" and error["problem"].startswith("not one of the tenant's")
