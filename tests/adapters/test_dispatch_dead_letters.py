"""R12 through the dispatch handler (``functions/dispatch/app.py``) with the template's send queue, its
DLQ and the table in moto: a send refused on every receive is parked on the DLQ by the function on the
queue's last receive and reported once (``MessageUndeliverable``, ``send.dead_lettered``); the standard
redrive (``start_message_move_task``, emulated: infra/local/moto_redrive.py) then sends it once. When the
function cannot park it, SQS's own redrive moves it, already reported.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from crossroute.send_queue import SendConsumer, SqsSendQueue
from crossroute.store.sends import DynamoSendStore
from infra.template import load_template
from tests.support import ANA_PHONE, REPO, SEND_KEY, DispatchFunction, wire_problems

_RESOURCES = load_template(REPO / "template.yaml")["Resources"]
# The receive from which dispatch parks a failing record (SEND_MAX_RECEIVES); the queue's
# maxReceiveCount is one more: a spare receive for a last one that crashed.
MAX = int(_RESOURCES["DispatchFunction"]["Properties"]["Environment"]["Variables"]["SEND_MAX_RECEIVES"])
QUEUE_MAX = int(_RESOURCES["SendQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"])


@pytest.fixture
def fn(dispatch_function: DispatchFunction, monkeypatch: pytest.MonkeyPatch) -> DispatchFunction:
    """The fixture's function with its dead-lettering wired as deployed (SEND_DLQ_URL, the module's
    ``dead_letters``, SEND_MAX_RECEIVES), around the fixture's scripted ``Dispatch``."""
    fn = dispatch_function
    monkeypatch.setenv("SEND_DLQ_URL", dlq_url(fn))
    fn.module.dead_letters.cache_clear()
    queue = SqsSendQueue(lambda: fn.sqs, fn.queue_url)
    consumer = SendConsumer(fn.module.consumer._dispatch, queue, fn.module.dead_letters, max_receives=MAX)
    monkeypatch.setattr(fn.module, "consumer", consumer)
    return fn


def dlq_url(fn: DispatchFunction) -> str:
    name = dlq_arn(fn).rsplit(":", 1)[-1]
    return str(fn.raw.get_queue_url(QueueName=name)["QueueUrl"])


def dlq_arn(fn: DispatchFunction) -> str:
    """The send queue's DLQ, as its RedrivePolicy names it."""
    attributes = fn.raw.get_queue_attributes(QueueUrl=fn.queue_url, AttributeNames=["RedrivePolicy"])
    return str(json.loads(attributes["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"])


def dead_lettered(fn: DispatchFunction) -> list[dict[str, Any]]:
    answer = fn.raw.receive_message(
        QueueUrl=dlq_url(fn), MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=0
    )
    messages: list[dict[str, Any]] = answer.get("Messages", [])
    return messages


def receive_again(fn: DispatchFunction, previous: dict[str, Any]) -> list[dict[str, Any]]:
    """What the event source mapping receives once ``previous``'s visibility runs out (made 0 here)."""
    fn.raw.change_message_visibility(
        QueueUrl=fn.queue_url, ReceiptHandle=previous["ReceiptHandle"], VisibilityTimeout=0
    )
    return fn.receive()


def fail_every_receive(fn: DispatchFunction) -> dict[str, Any]:
    """The request refused for now on every receive up to the last; its last delivery."""
    fn.world.whatsapp.script.extend(["retry"] * MAX)
    fn.enqueue(fn.world.doc())
    (message,) = fn.receive()
    for count in range(1, MAX):
        assert message["Attributes"]["ApproximateReceiveCount"] == str(count)
        assert fn.invoke(message) == [message["MessageId"]]  # refused for now: delivered again
        (message,) = receive_again(fn, message)
    assert message["Attributes"]["ApproximateReceiveCount"] == str(MAX)
    return message


def test_a_send_failing_to_the_last_receive_is_parked_reported_once_and_redriven_once(
    fn: DispatchFunction,
) -> None:
    world = fn.world
    last = fail_every_receive(fn)
    assert fn.invoke(last) == []  # parked: done for the event source mapping
    fn.done(last)
    (parked,) = dead_lettered(fn)
    assert json.loads(parked["Body"]) == world.doc()
    assert parked["MessageAttributes"]["crossroute_failure"]["StringValue"] == "RetryLater"
    (reported,) = world.bus.of("MessageUndeliverable")
    record = DynamoSendStore().get("demo", SEND_KEY)
    assert record is not None and reported["request_id"] == record.request_id
    assert (reported["reason"], reported["idempotency_key"]) == ("send.dead_lettered", SEND_KEY)
    assert reported["customer_id"] == world.customer and reported["failures"] == []
    assert [wire_problems(e) for e in world.bus.events] == [[]] and ANA_PHONE not in json.dumps(reported)
    assert world.state("whatsapp") is None and len(world.whatsapp.calls) == MAX  # released: nothing out

    fn.raw.start_message_move_task(SourceArn=dlq_arn(fn), DestinationArn=fn.queue_arn)
    assert dead_lettered(fn) == []
    (redriven,) = fn.receive()
    assert redriven["Attributes"]["ApproximateReceiveCount"] == "1"  # a new message
    assert fn.invoke(redriven) == []
    fn.done(redriven)
    assert world.state("whatsapp") == "sent" and len(world.whatsapp.calls) == MAX + 1  # once
    (routed,) = world.bus.of("MessageRouted")
    assert routed["request_id"] == record.request_id
    assert len(world.bus.of("MessageUndeliverable")) == 1


def test_a_last_receive_that_could_not_park_gets_one_more_which_parks_it_reported_once(
    fn: DispatchFunction,
) -> None:
    assert QUEUE_MAX == MAX + 1
    last = fail_every_receive(fn)
    fn.sqs.fail_sends = 1  # SendMessage to the DLQ fails (as a crash or a timeout would leave it)
    assert fn.invoke(last) == [last["MessageId"]]
    (spare,) = receive_again(fn, last)
    assert spare["Attributes"]["ApproximateReceiveCount"] == str(QUEUE_MAX)
    fn.world.whatsapp.script.append("retry")
    assert fn.invoke(spare) == []  # parked this time
    fn.done(spare)
    (parked,) = dead_lettered(fn)
    assert parked["MessageAttributes"]["crossroute_failure"]["StringValue"] == "RetryLater"
    assert len(fn.world.bus.of("MessageUndeliverable")) == 1  # reported on the first try, not again


def test_when_the_function_cannot_park_it_twice_sqs_moves_it_already_reported(fn: DispatchFunction) -> None:
    last = fail_every_receive(fn)
    fn.sqs.fail_sends = 2  # SendMessage to the DLQ fails on the last receive and on the spare one
    assert fn.invoke(last) == [last["MessageId"]]
    (spare,) = receive_again(fn, last)
    fn.world.whatsapp.script.append("retry")
    assert fn.invoke(spare) == [spare["MessageId"]]
    assert receive_again(fn, spare) == []  # over maxReceiveCount: SQS's redrive moved it
    (moved,) = dead_lettered(fn)
    assert json.loads(moved["Body"]) == fn.world.doc() and "MessageAttributes" not in moved
    assert len(fn.world.bus.of("MessageUndeliverable")) == 1  # reported before parking was tried
