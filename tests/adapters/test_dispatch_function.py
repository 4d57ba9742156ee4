"""The dispatch function's handler (``functions/dispatch/app.py``) with the send queue in moto.

The real handler module, the template's table and send queue in moto, the providers scripted
(``Scripted``) and DynamoDB faults injected (``Faults``), as in ``test_dispatch_properties.py``. What
the handler does with the queue is under test: ``RetryLater`` puts the record back with a backoff and
fails it; ``Unsettled`` carries the provider's answer forward in a follow-up on the send queue (at once,
or after a backoff for a refused send) and the original record is done; a follow-up records the
settlement, then handles its request again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

from crossroute.channels import Outbound, SendFailed, Sent
from crossroute.routing.pacing import PAIR_INTERVAL
from crossroute.store.sends import DynamoSendStore
from infra.local.emulated import emulated_account
from infra.local.sqs_runner import build_sqs_event
from tests.adapters.test_dispatch import TEMPLATE, request
from tests.adapters.test_dispatch_properties import KEY, Fault, FaultWorld, finishes, releases
from tests.adapters.test_webhook_functions import Context, _load
from tests.support import registry_document

FOLLOW_UP = "crossroute:settle"
OTHER = "order-43-shipped"  # a second request in the same batch
ANA_PHONE = "5511987654321"  # Ana's phone (meta_text_phone_and_bsuid.json), without the "+"


class RecordingSqs:
    """The handler module's SQS client, its calls recorded; ``fail_sends`` SendMessage calls fail first."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sends: list[dict[str, Any]] = []
        self.visibility: list[dict[str, Any]] = []
        self.fail_sends = 0

    def send_message(self, **call: Any) -> Any:
        self.sends.append(call)
        if self.fail_sends:
            self.fail_sends -= 1
            answer = {"Error": {"Code": "InternalError", "Message": "injected: SendMessage failed"}}
            raise ClientError(answer, "SendMessage")  # type: ignore[arg-type]
        return self.client.send_message(**call)

    def change_message_visibility(self, **call: Any) -> Any:
        self.visibility.append(call)
        return self.client.change_message_visibility(**call)


@dataclass
class Function:
    """The dispatch function as the send queue's event source mapping invokes it."""

    module: ModuleType
    world: FaultWorld
    sqs: RecordingSqs
    queue_url: str
    queue_arn: str

    @property
    def raw(self) -> Any:
        return self.sqs.client

    def enqueue(self, body: dict[str, Any]) -> None:
        self.raw.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))

    def receive(self, wait: int = 0) -> list[dict[str, Any]]:
        """What is receivable now (or within ``wait`` seconds), with the attributes Lambda passes on."""
        answer = self.raw.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=wait
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def invoke(self, *messages: dict[str, Any]) -> list[str]:
        """Invoke the handler with ``messages``: the ids of those the event source mapping keeps for a
        retry, the reported batch item failures (Powertools raises when every record failed: all)."""
        event = build_sqs_event(messages, self.queue_arn)
        try:
            answer = self.module.lambda_handler(event, Context())
        except BatchProcessingError:
            return [m["MessageId"] for m in messages]
        return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]

    def done(self, message: dict[str, Any]) -> None:
        """What the event source mapping does with a record the handler did not report failed."""
        self.raw.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def deliver(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Queue ``body``, receive it (receive count 1) and invoke the handler with it."""
        self.enqueue(body)
        (message,) = self.receive()
        return message, self.invoke(message)

    def batch(self, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
        """Queue ``bodies`` and receive them, in that order (one batch of the event source mapping)."""
        for body in bodies:
            self.enqueue(body)
        received = self.receive()
        order = [json.dumps(body) for body in bodies]
        assert sorted(m["Body"] for m in received) == sorted(order)
        return sorted(received, key=lambda m: order.index(m["Body"]))


@pytest.fixture
def fn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Function]:
    with emulated_account("SendQueue", "EventBus") as account:
        secrets = boto3.client("secretsmanager")
        secret = secrets.create_secret(Name="tenants", SecretString=registry_document())
        queue_url = str(account.ref("SendQueue"))
        env = {
            "TABLE_NAME": str(account.ref("IdentityTable")),
            "TENANTS_SECRET_ID": secret["ARN"],
            "EVENT_BUS_NAME": str(account.ref("EventBus")),
            "SEND_QUEUE_URL": queue_url,
            "DISPATCH_CONCURRENCY": "10",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        module = _load("dispatch")  # binds the models to TABLE_NAME: before the faults find the clients
        world = FaultWorld()
        sqs = RecordingSqs(module._sqs())
        monkeypatch.setattr(module, "_sqs", lambda: sqs)
        monkeypatch.setattr(module, "dispatch", world.container())
        try:
            yield Function(module, world, sqs, queue_url, str(account.get_att("SendQueue", "Arn")))
        finally:
            world.faults.close()


def follow_up_of(message: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(message["Body"])
    assert set(body) == {FOLLOW_UP, "then"}, body
    return body


def test_an_accepted_send_not_recorded_is_recorded_from_the_follow_up_and_sent_once(fn: Function) -> None:
    world = fn.world
    doc = world.doc()
    fault = world.faults.arm(Fault("TransactWriteItems"))
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
    assert (settlement["tenant"], settlement["idempotency_key"]) == ("demo", KEY)
    assert settlement["channel"] == "whatsapp"

    world.faults.clear()
    assert fn.invoke(message) == []
    fn.done(message)
    assert world.state("whatsapp") == "sent"
    assert DynamoSendStore().request_of("demo", "meta", "wamid.1") == KEY
    assert len(world.whatsapp.calls) == 1 and world.sms.calls == []
    (routed,) = world.bus.of("MessageRouted")
    assert routed["provider_message_id"] == "wamid.1" and routed["idempotency_key"] == KEY
    assert len(fn.sqs.sends) == 1 and fn.receive() == []  # no further follow-up


def accepted_not_recorded(fn: Function) -> dict[str, Any]:
    """A WhatsApp send the provider accepted whose record failed: its follow-up, received."""
    fn.world.faults.arm(Fault("TransactWriteItems"))
    original, _ = fn.deliver(fn.world.doc())
    fn.done(original)
    fn.world.faults.clear()
    (message,) = fn.receive()
    return message


def test_a_follow_up_delivered_twice_sends_nothing_more(fn: Function) -> None:
    world = fn.world
    message = accepted_not_recorded(fn)
    assert fn.invoke(message) == [] and fn.invoke(message) == []  # SQS delivers at least once
    assert len(world.whatsapp.calls) == 1 and world.state("whatsapp") == "sent"
    routed = world.bus.of("MessageRouted")  # published at least once: the same event again
    assert len(routed) == 2 and routed[0] == routed[1] and routed[0]["provider_message_id"] == "wamid.1"
    assert len(fn.sqs.sends) == 1


def test_a_throttled_send_whose_release_fails_is_followed_up_after_a_backoff_and_sent_once(
    fn: Function,
) -> None:
    world = fn.world
    world.whatsapp.script.append("retry")
    fault = world.faults.arm(Fault("UpdateItem", when=releases))
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
    fn: Function,
) -> None:
    world = fn.world
    world.faults.arm(Fault("TransactWriteItems"))
    fn.sqs.fail_sends = 1
    other = request(OTHER, to={"customer_id": world.customer})
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


def test_a_refused_send_is_put_back_with_a_backoff_and_fails_the_record(fn: Function) -> None:
    world = fn.world
    world.whatsapp.script.append("retry")  # the first call; the second (the other request) is accepted
    other = request(OTHER, to={"customer_id": world.customer})
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
    fn: Function,
) -> None:
    world = fn.world
    world.whatsapp.script.append("unknown")
    world.faults.arm(Fault("UpdateItem", when=finishes))
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


def test_a_follow_up_whose_settlement_cannot_be_recorded_fails_and_is_redelivered(fn: Function) -> None:
    world = fn.world
    message = accepted_not_recorded(fn)
    fault = world.faults.arm(Fault("TransactWriteItems"))
    assert fn.invoke(message) == [message["MessageId"]] and fault.hits == 1
    assert world.state("whatsapp") == "sending" and len(fn.sqs.sends) == 1
    world.faults.clear()
    assert fn.invoke(message) == []  # the queue redelivers the follow-up
    assert world.state("whatsapp") == "sent"
    assert len(world.whatsapp.calls) == 1


def test_a_request_unsettled_again_from_its_follow_up_is_carried_forward_once_more_not_nested(
    fn: Function,
) -> None:
    world = fn.world
    world.whatsapp.script.append("fallback")  # WhatsApp fails for good: SMS qualifies for a template
    doc = world.doc(template=TEMPLATE)
    world.faults.arm(Fault("UpdateItem", when=finishes))
    original, failures = fn.deliver(doc)
    assert failures == [] and world.sms.calls == []
    fn.done(original)
    (message,) = fn.receive()
    assert follow_up_of(message)[FOLLOW_UP]["result"] == "failed"

    world.faults.clear()
    world.faults.arm(Fault("TransactWriteItems"))  # the SMS it moves on to is accepted, not recorded
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


class PairRateHit:
    """Meta answering 131056 (too many messages to this user) once, then accepting."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: Outbound) -> Sent:
        self.calls += 1
        if self.calls == 1:
            raise SendFailed("meta", "retry", 131056, "pair rate limit hit")
        return Sent("meta", f"wamid.{self.calls}")


def test_a_refused_send_whose_release_fails_keeps_its_minimum_wait_in_the_follow_up(fn: Function) -> None:
    world = fn.world
    world.setup.senders["whatsapp"] = PairRateHit()  # type: ignore[index]
    world.faults.arm(Fault("UpdateItem", when=releases))
    original, failures = fn.deliver(world.doc())
    assert failures == []
    fn.done(original)
    (queued,) = fn.sqs.sends
    assert queued["DelaySeconds"] >= PAIR_INTERVAL  # not the 1-2 s of a first backoff
    assert json.loads(queued["MessageBody"])[FOLLOW_UP]["result"] == "released"
