"""The dispatch function's handler (``functions/dispatch/app.py``) with the send queue in moto.

The real handler module, the template's table and send queue in moto (the ``dispatch_function``
fixture), the providers scripted (``ScriptedSender``) and DynamoDB faults injected (``DynamoFaults``), as
in ``test_dispatch_properties.py``. What the handler does with the queue is under test: ``RetryLater``
puts the record back with a backoff and fails it; ``Unsettled`` carries the provider's answer forward in
a follow-up on the send queue (at once, or after a backoff for a refused send) and the original record
is done; a follow-up records the settlement, then handles its request again.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from crossroute.channels import SendFailed
from crossroute.routing.pacing import PAIR_INTERVAL
from crossroute.send_queue import FOLLOW_UP
from crossroute.store.sends import DynamoSendStore
from tests.fakes import ScriptedSender
from tests.support import (
    ANA_PHONE,
    SEND_KEY,
    SHIPPED_TEMPLATE,
    DispatchFunction,
    DynamoFault,
    finishes,
    releases,
    send_request,
)

OTHER = "order-43-shipped"  # a second request in the same batch


@pytest.fixture
def fn(dispatch_function: DispatchFunction) -> DispatchFunction:
    return dispatch_function


def follow_up_of(message: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(message["Body"])
    assert set(body) == {FOLLOW_UP, "then"}, body
    return body


def test_an_accepted_send_not_recorded_is_recorded_from_the_follow_up_and_sent_once(
    fn: DispatchFunction,
) -> None:
    world = fn.world
    doc = world.doc()
    fault = world.faults.arm(DynamoFault("TransactWriteItems"))
    original, failures = fn.deliver(doc)
    assert failures == [] and fault.hits == 1  # the provider answered: the original record is done
    assert len(world.whatsapp.calls) == 1 and world.bus.of("MessageRouted") == []
    assert world.state("whatsapp") == "sending"
    fn.done(original)
    (queued,) = fn.sqs.sends
    assert queued["QueueUrl"] == fn.queue_url and queued["DelaySeconds"] == 0
    (message,) = fn.receive()  # receivable at once
    assert ANA_PHONE not in message["Body"]
    body = follow_up_of(message)
    assert body["then"] == doc
    settlement = body[FOLLOW_UP]
    assert settlement["result"] == "sent"
    assert settlement["sent"] == {"provider": "meta", "message_id": "wamid.1"}
    assert (settlement["tenant"], settlement["idempotency_key"]) == ("demo", SEND_KEY)
    assert settlement["channel"] == "whatsapp"

    world.faults.clear()
    assert fn.invoke(message) == []
    fn.done(message)
    assert world.state("whatsapp") == "sent"
    assert DynamoSendStore().request_of("demo", "meta", "wamid.1") == SEND_KEY
    assert len(world.whatsapp.calls) == 1 and world.sms.calls == []
    (routed,) = world.bus.of("MessageRouted")
    assert routed["provider_message_id"] == "wamid.1" and routed["idempotency_key"] == SEND_KEY
    assert len(fn.sqs.sends) == 1 and fn.receive() == []  # no further follow-up


def accepted_not_recorded(fn: DispatchFunction) -> dict[str, Any]:
    """A WhatsApp send the provider accepted whose record failed: its follow-up, received."""
    fn.world.faults.arm(DynamoFault("TransactWriteItems"))
    original, _ = fn.deliver(fn.world.doc())
    fn.done(original)
    fn.world.faults.clear()
    (message,) = fn.receive()
    return message


def test_a_follow_up_delivered_twice_sends_nothing_more(fn: DispatchFunction) -> None:
    world = fn.world
    message = accepted_not_recorded(fn)
    assert fn.invoke(message) == [] and fn.invoke(message) == []  # SQS delivers at least once
    assert len(world.whatsapp.calls) == 1 and world.state("whatsapp") == "sent"
    routed = world.bus.of("MessageRouted")  # published at least once: the same event again
    assert len(routed) == 2 and routed[0] == routed[1] and routed[0]["provider_message_id"] == "wamid.1"
    assert len(fn.sqs.sends) == 1


def test_a_throttled_send_whose_release_fails_is_followed_up_after_a_backoff_and_sent_once(
    fn: DispatchFunction,
) -> None:
    world = fn.world
    world.whatsapp.script.append("retry")
    fault = world.faults.arm(DynamoFault("UpdateItem", when=releases))
    original, failures = fn.deliver(world.doc())
    assert fn.receive() == []  # the follow-up is not receivable before its delay
    assert failures == [] and fault.hits == 1 and len(world.whatsapp.calls) == 1
    assert world.state("whatsapp") == "sending"  # the claim the release could not remove
    fn.done(original)
    (queued,) = fn.sqs.sends
    delay = queued["DelaySeconds"]
    assert 1 <= delay <= 2  # retry_delay for a first receive: 1 to 2 s
    assert json.loads(queued["MessageBody"])[FOLLOW_UP]["result"] == "released"

    world.faults.clear()
    (message,) = fn.receive(wait=delay + 3)
    assert follow_up_of(message)[FOLLOW_UP]["result"] == "released"
    assert fn.invoke(message) == []
    assert len(world.whatsapp.calls) == 2 and world.state("whatsapp") == "sent"  # sent exactly once more
    (routed,) = world.bus.of("MessageRouted")
    assert routed["provider_message_id"] == "wamid.2"
    assert len(fn.sqs.sends) == 1 and fn.sqs.visibility == []


def test_a_follow_up_that_cannot_be_queued_fails_the_record_and_the_redelivery_sends_nothing_again(
    fn: DispatchFunction,
) -> None:
    world = fn.world
    world.faults.arm(DynamoFault("TransactWriteItems"))
    fn.sqs.fail_sends = 1
    other = send_request(OTHER, to={"customer_id": world.customer})
    first, second = fn.batch(world.doc(), other)
    assert fn.invoke(first, second) == [first["MessageId"]]  # SQS redelivers the original, only
    fn.done(second)
    assert len(fn.sqs.sends) == 1 and len(world.whatsapp.calls) == 2
    assert world.state("whatsapp") == "sending"

    world.faults.clear()
    fn.raw.change_message_visibility(  # its visibility timeout runs out
        QueueUrl=fn.queue_url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    (again,) = fn.receive()
    assert again["MessageId"] == first["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    assert fn.invoke(again) == []
    assert len(world.whatsapp.calls) == 2 and world.sms.calls == []  # never sent twice (R8)
    assert len(fn.sqs.sends) == 1  # nothing further carried forward


def test_a_refused_send_is_put_back_with_a_backoff_and_fails_the_record(fn: DispatchFunction) -> None:
    world = fn.world
    world.whatsapp.script.append("retry")  # the first call; the second (the other request) is accepted
    other = send_request(OTHER, to={"customer_id": world.customer})
    first, second = fn.batch(world.doc(), other)
    first["Attributes"]["ApproximateReceiveCount"] = "4"  # its fourth delivery: a backoff of 8 to 16 s
    assert fn.invoke(first, second) == [first["MessageId"]]
    fn.done(second)
    (visibility,) = fn.sqs.visibility
    assert visibility["QueueUrl"] == fn.queue_url and visibility["ReceiptHandle"] == first["ReceiptHandle"]
    assert 8 <= visibility["VisibilityTimeout"] <= 16
    assert fn.sqs.sends == [] and world.state("whatsapp") is None  # released: nothing carried forward
    (routed,) = world.bus.of("MessageRouted")
    assert routed["idempotency_key"] == OTHER and len(world.whatsapp.calls) == 2

    fn.raw.change_message_visibility(
        QueueUrl=fn.queue_url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    (again,) = fn.receive()
    assert again["MessageId"] == first["MessageId"] and fn.invoke(again) == []
    assert len(world.whatsapp.calls) == 3 and world.state("whatsapp") == "sent"


def test_an_unknown_outcome_not_recorded_is_recorded_from_the_follow_up_and_never_resent(
    fn: DispatchFunction,
) -> None:
    world = fn.world
    world.whatsapp.script.append("unknown")
    world.faults.arm(DynamoFault("UpdateItem", when=finishes))
    original, failures = fn.deliver(world.doc())
    assert failures == [] and fn.sqs.sends[0]["DelaySeconds"] == 0
    fn.done(original)
    world.faults.clear()
    (message,) = fn.receive()
    assert follow_up_of(message)[FOLLOW_UP]["result"] == "unknown"
    assert fn.invoke(message) == []
    assert world.state("whatsapp") == "unknown"
    assert len(world.whatsapp.calls) == 1 and world.sms.calls == []  # may have gone out: never again
    (undeliverable,) = world.bus.of("MessageUndeliverable")
    assert undeliverable["failures"] == [{"channel": "whatsapp", "outcome": "unknown", "code": None}]


def test_a_follow_up_whose_settlement_cannot_be_recorded_fails_and_is_redelivered(
    fn: DispatchFunction,
) -> None:
    world = fn.world
    message = accepted_not_recorded(fn)
    fault = world.faults.arm(DynamoFault("TransactWriteItems"))
    assert fn.invoke(message) == [message["MessageId"]] and fault.hits == 1
    assert world.state("whatsapp") == "sending" and len(fn.sqs.sends) == 1
    world.faults.clear()
    assert fn.invoke(message) == []  # the queue redelivers the follow-up
    assert world.state("whatsapp") == "sent"
    assert len(world.whatsapp.calls) == 1


def test_a_request_unsettled_again_from_its_follow_up_is_carried_forward_once_more_not_nested(
    fn: DispatchFunction,
) -> None:
    world = fn.world
    world.whatsapp.script.append("fallback")  # WhatsApp fails for good: SMS qualifies for a template
    doc = world.doc(template=SHIPPED_TEMPLATE)
    world.faults.arm(DynamoFault("UpdateItem", when=finishes))
    original, failures = fn.deliver(doc)
    assert failures == [] and world.sms.calls == []
    fn.done(original)
    (message,) = fn.receive()
    assert follow_up_of(message)[FOLLOW_UP]["result"] == "failed"

    world.faults.clear()
    world.faults.arm(DynamoFault("TransactWriteItems"))  # the SMS it moves on to is accepted, not recorded
    assert fn.invoke(message) == []
    fn.done(message)
    assert world.state("whatsapp") == "failed" and world.state("sms") == "sending"
    (again,) = fn.receive()
    body = follow_up_of(again)
    assert body["then"] == doc  # the request itself, not the first follow-up
    assert (body[FOLLOW_UP]["channel"], body[FOLLOW_UP]["result"]) == ("sms", "sent")
    assert [call["DelaySeconds"] for call in fn.sqs.sends] == [0, 0]

    world.faults.clear()
    assert fn.invoke(again) == []
    assert world.state("sms") == "sent" and len(world.sms.calls) == 1 and len(world.whatsapp.calls) == 1
    (routed,) = world.bus.of("MessageRouted")
    assert routed["channel"] == "sms"
    assert routed["failures"] == [{"channel": "whatsapp", "outcome": "fallback", "code": 131026}]


def test_a_refused_send_whose_release_fails_keeps_its_minimum_wait_in_the_follow_up(
    fn: DispatchFunction,
) -> None:
    world = fn.world
    # Meta answers 131056 (too many messages to this user) once, then accepts.
    pair_rate_hit = SendFailed("meta", "retry", 131056, "pair rate limit hit")
    world.setup.senders["whatsapp"] = ScriptedSender("meta", pair_rate_hit)  # type: ignore[index]
    world.faults.arm(DynamoFault("UpdateItem", when=releases))
    original, failures = fn.deliver(world.doc())
    assert failures == []
    fn.done(original)
    (queued,) = fn.sqs.sends
    assert queued["DelaySeconds"] >= PAIR_INTERVAL  # not the 1-2 s of a first backoff
    assert json.loads(queued["MessageBody"])[FOLLOW_UP]["result"] == "released"
