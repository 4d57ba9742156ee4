"""Both dead-letter queues, redriven with the standard SQS redrive (``start_message_move_task``), on the
local stack: a record that failed for good is applied once when it comes back, because ingest and
dispatch are idempotent (docs/operations.md, "Redriving a dead-letter queue"; R12 for the send queue).

The emulator's SQS (moto) has no ``StartMessageMoveTask`` of its own: the local stack adds it
(``infra/local/moto_redrive.py``), so the call below is the one an operator makes against AWS. The stack
runs with ``CROSSROUTE_SQS_RETRY_DELAY=1``: a failed record is received again after 1 s, so a record
fails its 5 (inbound) or 8 (send) receives within seconds. Events are watched through a probe rule on
the crossroute bus that copies every crossroute event to a queue of the test (``tests.support.Probe``).
"""

from __future__ import annotations

import json
import time

import pytest

from infra.local import StackClient
from tests.support import (
    ANA_BSUID,
    ANA_PHONE,
    Probe,
    contact,
    eventually,
    new_bsuid,
    new_phone,
    outbox,
    personal,
    post_meta,
    timeline,
    whatsapp_customer,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("drained_dead_letter_queues", "clean_sandbox"),
]


@pytest.fixture
def drained_dead_letter_queues(local_stack: StackClient) -> None:
    """Both DLQs emptied first: a redrive moves whatever a DLQ holds."""
    for dlq in ("InboundDeadLetterQueue", "SendDeadLetterQueue"):
        local_stack.drain_queue(dlq, wait_seconds=0.2)


def waiting(stack: StackClient, queue: str) -> int:
    """The messages visible on one of the stack's queues (``ApproximateNumberOfMessages``)."""
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_urls()[queue], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def redrive(stack: StackClient, dlq: str, queue: str) -> None:
    """The standard redrive, as an operator runs it: the DLQ's messages back to ``queue``."""
    sqs = stack.client("sqs")
    task = sqs.start_message_move_task(
        SourceArn=stack.attribute(dlq, "Arn"), DestinationArn=stack.attribute(queue, "Arn")
    )
    assert task["TaskHandle"]
    listed = sqs.list_message_move_tasks(SourceArn=stack.attribute(dlq, "Arn"))["Results"]
    assert listed[0]["Status"] == "COMPLETED" and listed[0]["ApproximateNumberOfMessagesMoved"] == 1


def test_an_inbound_record_that_failed_for_good_is_applied_once_when_redriven(
    local_stack: StackClient, probe: Probe
) -> None:
    stack = local_stack
    phone, bsuid = new_phone(), new_bsuid("BR")
    # The injected fault: the phone's key item is one no version of the store can read, so reading who
    # holds the phone raises on every receive (as a table failing for that person would).
    key_item = {"pk": {"S": f"T#demo#K#phone#+{phone}"}, "sk": {"S": "KEY"}}
    dynamodb = stack.client("dynamodb")
    dynamodb.put_item(TableName=stack.table_name, Item={**key_item, "type": {"S": "unreadable"}})
    raw = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: bsuid})
    message_id = json.loads(raw)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert post_meta(stack, raw).status == 200

    # Five receives, then the ingest function puts it on the inbound DLQ itself.
    eventually(lambda: waiting(stack, "InboundDeadLetterQueue") == 1, timeout=30)
    assert waiting(stack, "InboundQueue") == 0
    assert (
        contact(stack, bsuid=bsuid) is None and probe.events("MessageReceived", message_id=message_id) == []
    )

    dynamodb.delete_item(TableName=stack.table_name, Key=key_item)  # the fault is fixed
    redrive(stack, "InboundDeadLetterQueue", "InboundQueue")
    customer = eventually(lambda: contact(stack, bsuid=bsuid))
    eventually(lambda: probe.events("MessageReceived", message_id=message_id))
    time.sleep(2)  # anything doubled would show by now
    assert contact(stack, phone="+" + phone)["id"] == customer["id"]  # type: ignore[index]
    messages = [i for i in timeline(stack, customer["id"]) if i["kind"] == "message"]
    assert [(m["message_id"], m["direction"]) for m in messages] == [(message_id, "in")]
    assert len(probe.events("MessageReceived", message_id=message_id)) == 1
    created = probe.events("IdentityChanged", customer_id=customer["id"], change="created")
    assert len(created) == 1
    assert waiting(stack, "InboundDeadLetterQueue") == 0 and waiting(stack, "InboundQueue") == 0


def test_a_send_refused_to_its_last_receive_is_reported_once_and_sent_once_when_redriven(
    local_stack: StackClient, probe: Probe
) -> None:
    stack = local_stack
    customer_id, e164, _ = whatsapp_customer(stack)
    phone = e164[1:]  # digits, as the fixture writes it
    # The injected fault: WhatsApp answers "throughput limit, try later" (130429) on every call.
    stack.post("/_sandbox/recipients", json_body={"whatsapp": {"+" + phone: {"sync_error_code": 130429}}})
    key = f"redrive-{time.time_ns()}"
    body = {
        "idempotency_key": key,
        "to": {"customer_id": customer_id},
        "text": "Shipped",
        "channels": ["whatsapp"],
    }
    answer = stack.post("/messages", json_body=body)
    assert answer.status == 202, answer.text
    request_id = answer.json()["request_id"]

    # Eight receives, each refused, then the dispatch function parks it and reports it.
    eventually(lambda: waiting(stack, "SendDeadLetterQueue") == 1, timeout=60)
    (reported,) = eventually(lambda: probe.events("MessageUndeliverable", idempotency_key=key))
    assert (reported["reason"], reported["request_id"], reported["customer_id"]) == (
        "send.dead_lettered",
        request_id,
        customer_id,
    )
    assert phone not in json.dumps(reported) and "Shipped" not in json.dumps(reported)
    refused = outbox(stack, to="+" + phone)
    assert len(refused) == 8 and all(r.get("error_code") == 130429 for r in refused)
    assert probe.events("MessageRouted", idempotency_key=key) == []

    stack.request("DELETE", "/_sandbox/recipients")  # the fault clears
    redrive(stack, "SendDeadLetterQueue", "SendQueue")
    eventually(lambda: probe.events("MessageRouted", idempotency_key=key))
    time.sleep(2)  # anything doubled would show by now
    sent = [s for s in outbox(stack, to="+" + phone) if s.get("provider_message_id")]
    assert len(sent) == 1 and sent[0]["text"] == "Shipped"
    (routed,) = probe.events("MessageRouted", idempotency_key=key)
    assert (routed["request_id"], routed["provider_message_id"]) == (
        request_id,
        sent[0]["provider_message_id"],
    )
    assert len(probe.events("MessageUndeliverable", idempotency_key=key)) == 1
    outgoing = [i for i in timeline(stack, customer_id) if i["kind"] == "message" and i["direction"] == "out"]
    assert [m["message_id"] for m in outgoing] == [sent[0]["provider_message_id"]]
    item = stack.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": f"T#demo#R#{key}"}, "sk": {"S": "REQUEST"}}
    )["Item"]
    assert item["request_id"]["S"] == request_id and item["whatsapp"]["M"]["state"]["S"] == "sent"
    assert "dead_lettered_at" in item
    assert waiting(stack, "SendDeadLetterQueue") == 0 and waiting(stack, "SendQueue") == 0
