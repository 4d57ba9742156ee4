"""Faults through the real ingest Lambda handler (``functions/ingest/app.py``) with SQS FIFO batches.

DynamoDB and EventBridge run in moto; faults are injected with botocore ``before-call`` hooks on the
clients the function really uses (PynamoDB's DynamoDB client, the publisher's EventBridge client):
a hook either raises or answers with a stubbed error response, so the request never reaches moto.
A stubbed answer also skips botocore's own retries: it stands for a fault that outlasted them.

What must hold (contract §9, "nothing accepted is lost", and the FIFO note in app.py):
- the failing record and every later record of its message group are in ``batchItemFailures``;
  other groups in the same batch are processed;
- once the fault clears, redelivering the failed records processes them exactly once: one message
  item per provider message id, one customer per person, no identity change recorded twice, and
  every event published at least once (a publish that failed after the write is replayed);
- a record that always fails is received ``maxReceiveCount`` times by the local stack's SQS runner
  (``infra/local/sqs_runner.py``, Lambda's event source mapping) and then lands in the DLQ, from
  which it can be replayed.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

from crossroute.inbound_queue import QueuedEvent, SqsInboundQueue
from crossroute.ingest import ATTEMPTS
from crossroute.store.identity_store import to_customer
from crossroute.store.tables import CustomerItem, IdentityEventItem, MessageItem, TableItem
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta
from infra.local.provision import Provisioner
from infra.local.sqs_runner import SqsEventSource, SqsPoller
from tests.support import (
    SqsRecords,
    fixture_bytes,
    fixture_json,
    function_environment,
    load_handler,
    registry_document,
)

REGISTRY = TenantRegistry.from_json(registry_document())
ANA, JONAS, SMS_PHONE = "BR.1502576394655843", "DE.88201937465502911", "+16505551234"
ANA_1 = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBMDFBQkNEMDEA"
ANA_2 = "wamid.ANA-SECOND"
JONAS_1 = "wamid.HBgLREUuODgyMDE5Mzc0NjU1MDI5MTEVAgASGBQzQUIxMjM0NTY3ODkwQUJDREVGAA=="
JONAS_OUT = "wamid.HBgLREUuODgyMDE5Mzc0NjU1MDI5MTEVAgARGBJBQkNERUYwMTIzNDU2Nzg5AA=="
SMS_1 = "SM0a1b2c3d4e5f60718293a4b5c6d7e8f9"


# --------------------------------------------------------------------------- queued events
def _meta(doc: dict[str, Any]) -> QueuedEvent:
    (event,) = meta.split(REGISTRY, "local-app-secret", doc)
    return event


def ana(second: bool = False) -> QueuedEvent:
    doc = fixture_json("meta_text_phone_and_bsuid.json")
    if second:
        message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
        message.update(id=ANA_2, timestamp="1779868860", text={"body": "Alô?"})
    return _meta(doc)


def jonas() -> QueuedEvent:
    return _meta(fixture_json("meta_text_bsuid_only.json"))


def jonas_status() -> QueuedEvent:
    return _meta(fixture_json("meta_status_delivered_bsuid.json"))


def sms() -> QueuedEvent:
    form = fixture_bytes("twilio_sms_inbound.form").decode()
    return QueuedEvent.build(tenant="demo", sender=SMS_PHONE, kind="twilio.message", content={"form": form})


# --------------------------------------------------------------------------- faults
def error(code: str, status: int = 400, **extra: Any) -> dict[str, Any]:
    """A stubbed AWS error answer (what botocore would have parsed off the wire)."""
    metadata = {"HTTPStatusCode": status, "HTTPHeaders": {}, "RequestId": "fault"}
    return {"Error": {"Code": code, "Message": f"injected {code}"}, "ResponseMetadata": metadata, **extra}


def transaction_conflict(items: int = 8) -> dict[str, Any]:
    reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}]
    reasons += [{"Code": "None"}] * (items - 1)
    return error("TransactionCanceledException", CancellationReasons=reasons)


@dataclass
class Fault:
    """Answer ``operation`` with ``answer`` (a response dict, or an exception to raise) on the calls
    ``calls`` counts (1-based, per operation; None: every call) whose parameters satisfy ``when``.
    ``operation`` "dynamodb" is any DynamoDB call, counted together."""

    operation: str
    answer: dict[str, Any] | Exception
    calls: set[int] | None = None
    when: Callable[[dict[str, Any]], bool] = lambda params: True
    status: int = 400
    hits: int = 0


class Faults:
    """``before-call`` hooks on the function's DynamoDB and EventBridge clients."""

    def __init__(self, function: ModuleType) -> None:
        self.clients = [TableItem._get_connection().connection.client, function.ingest._publisher._client]
        self.faults: list[Fault] = []
        self.calls: Counter[str] = Counter()
        self.published: list[dict[str, Any]] = []  # every entry EventBridge accepted
        for client in self.clients:
            client.meta.events.register("before-call", self._before_call)

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        """``params`` is the serialised request: both services speak JSON, so its body is the input."""
        body = params.get("body") or b"{}"
        params = json.loads(body.decode() if isinstance(body, bytes) else body)
        operation, service = model.name, model.service_model.service_name
        self.calls[operation] += 1
        self.calls[service] += 1
        for fault in self.faults:
            if fault.operation not in (operation, service) or not fault.when(params):
                continue
            if fault.calls is not None and self.calls[fault.operation] not in fault.calls:
                continue
            fault.hits += 1
            if isinstance(fault.answer, Exception):
                raise fault.answer
            status = fault.answer.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
            return AWSResponse("https://fault.invalid", status, {}, None), fault.answer
        if operation == "PutEvents":
            self.published.extend(
                {"detail_type": e["DetailType"], "detail": json.loads(e["Detail"])} for e in params["Entries"]
            )
        return None

    def of(self, detail_type: str) -> list[dict[str, Any]]:
        return [e["detail"] for e in self.published if e["detail_type"] == detail_type]


def mentions(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda params: text in json.dumps(params)


# --------------------------------------------------------------------------- the function
class Context:
    function_name = "crossroute-ingest"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:crossroute-ingest"
    aws_request_id = "req-faults"


def _load_ingest() -> ModuleType:
    return load_handler("ingest", "handler_ingest_faults")


@dataclass
class Harness:
    function: ModuleType
    faults: Faults
    queue: SqsRecords
    provisioned: Provisioner

    def invoke(self, records: Sequence[dict[str, Any]]) -> list[str]:
        """The message ids the handler reports as failed."""
        answer = self.function.lambda_handler({"Records": list(records)}, Context())
        return [f["itemIdentifier"] for f in answer["batchItemFailures"]]


@pytest.fixture
def harness(provisioned: Provisioner, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    for name, value in function_environment(provisioned, "IngestFunction").items():
        monkeypatch.setenv(name, value)
    function = _load_ingest()
    function.ingest._sleep = lambda _: None  # Conflict back-off: no need to wait in tests
    arn = provisioned.physical("InboundQueue").attributes["Arn"]
    yield Harness(function, Faults(function), SqsRecords(arn), provisioned)
    sys.modules.pop("handler_ingest_faults", None)


# --------------------------------------------------------------------------- the state after
def stored() -> tuple[list[Any], dict[str, Any]]:
    items = list(TableItem.scan(consistent_read=True))
    customers = [to_customer(i) for i in items if isinstance(i, CustomerItem)]
    messages = {i.message_id: i for i in items if isinstance(i, MessageItem)}
    return customers, {"messages": messages, "events": [i for i in items if isinstance(i, IdentityEventItem)]}


def assert_processed_exactly_once(faults: Faults, message_ids: Sequence[str], people: int) -> None:
    customers, found = stored()
    live = [c for c in customers if c.live]
    assert len(live) == people and len(customers) == people  # one customer per person, nothing merged
    inbound = {m: i for m, i in found["messages"].items() if i.direction == "in"}
    assert sorted(inbound) == sorted(message_ids)  # one item per provider message id
    assert all(i.customer_id in {c.id for c in live} for i in inbound.values())
    # No identity change recorded twice: one "created" per customer, one "linked" per key.
    kinds = Counter((e.customer_id, e.kind, e.detail) for e in found["events"])
    assert all(n == 1 for n in kinds.values()), kinds
    assert Counter(e.kind for e in found["events"])["created"] == people
    assert sum(len(c.keys) for c in live) == Counter(e.kind for e in found["events"])["linked"]
    # Every message was published at least once, and every identity change.
    assert set(message_ids) <= {e["message_id"] for e in faults.of("MessageReceived")}
    published_changes = {(e["customer_id"], e["change"]) for e in faults.of("IdentityChanged")}
    assert {(e.customer_id, e.kind) for e in found["events"]} <= published_changes


# --------------------------------------------------------------------------- the tests
# The batch is [Ana 1, SMS, Ana 2, Jonas]: Ana 1 reads (DynamoDB call 1) and writes (call 2), the SMS
# reads (3) and writes (4), ...
DYNAMODB_FAULTS = {
    "write throttled": (
        Fault("TransactWriteItems", error("ProvisionedThroughputExceededException"), when=mentions(ANA_1)),
        "ana",
    ),
    "read throttled": (Fault("BatchGetItem", error("ThrottlingException"), calls={1}), "ana"),
    "write conflicts on every attempt": (
        Fault("TransactWriteItems", transaction_conflict(), when=mentions(ANA_1)),
        "ana",
    ),
    "internal server error": (
        Fault("TransactWriteItems", error("InternalServerError", 500), when=mentions(ANA_1)),
        "ana",
    ),
    "connection reset on the 4th call": (
        Fault("dynamodb", ConnectionResetError(104, "reset"), calls={4}),
        "sms",
    ),
    "endpoint unreachable on the 2nd call": (
        Fault("dynamodb", EndpointConnectionError(endpoint_url="https://dynamodb"), calls={2}),
        "ana",
    ),
}


@pytest.mark.parametrize(("fault", "failing"), DYNAMODB_FAULTS.values(), ids=DYNAMODB_FAULTS.keys())
def test_a_dynamodb_fault_fails_its_record_and_the_rest_of_its_group_only(
    harness: Harness, fault: Fault, failing: str
) -> None:
    batch = harness.queue.records(ana(), sms(), ana(second=True), jonas())
    a1, b1, a2, _ = (r["messageId"] for r in batch)
    fault = harness.faults.add(replace(fault, hits=0))

    failed = harness.invoke(batch)

    conflict = isinstance(fault.answer, dict) and "CancellationReasons" in fault.answer
    assert fault.hits == (ATTEMPTS if conflict else 1)  # a conflict is retried in place, then fails
    # The failing record and the rest of its group, in order; the other groups went through.
    assert failed == ([a1, a2] if failing == "ana" else [b1])
    expected = {SMS_1, JONAS_1} if failing == "ana" else {ANA_1, ANA_2, JONAS_1}
    _, found = stored()
    assert set(found["messages"]) == expected
    assert {e["message_id"] for e in harness.faults.of("MessageReceived")} == expected

    harness.faults.clear()
    assert harness.invoke(harness.queue.again(batch, failed)) == []
    assert_processed_exactly_once(harness.faults, [ANA_1, ANA_2, SMS_1, JONAS_1], people=3)


def test_a_transient_transaction_conflict_is_retried_within_the_invocation(harness: Harness) -> None:
    batch = harness.queue.records(ana(), sms())
    fault = harness.faults.add(Fault("TransactWriteItems", transaction_conflict(), calls={1}))
    assert harness.invoke(batch) == []
    assert fault.hits == 1 and harness.faults.calls["TransactWriteItems"] == 3  # Ana twice, the SMS once
    assert_processed_exactly_once(harness.faults, [ANA_1, SMS_1], people=2)


PUBLISH_FAULTS = {
    "some entries refused": (
        {
            "FailedEntryCount": 1,
            "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "injected"}],
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}},
        }
    ),
    "throttled": error("ThrottlingException"),
    "unreachable": EndpointConnectionError(endpoint_url="https://events"),
}


@pytest.mark.parametrize("answer", PUBLISH_FAULTS.values(), ids=PUBLISH_FAULTS.keys())
def test_a_publish_failure_after_the_write_is_published_on_redelivery(
    harness: Harness, answer: dict[str, Any] | Exception
) -> None:
    """The write is committed, the publish fails: the record fails and, redelivered, is recognised as
    stored (nothing written twice) and what it caused is published again from the stored message."""
    batch = harness.queue.records(ana(), sms(), ana(second=True))
    a1, _, a2 = (r["messageId"] for r in batch)
    fault = harness.faults.add(Fault("PutEvents", answer, when=mentions(ANA_1)))

    failed = harness.invoke(batch)

    assert fault.hits == 1 and failed == [a1, a2]
    _, found = stored()
    assert ANA_1 in found["messages"] and ANA_2 not in found["messages"]  # written, then the publish failed
    assert {e["message_id"] for e in harness.faults.of("MessageReceived")} == {SMS_1}

    harness.faults.clear()
    assert harness.invoke(harness.queue.again(batch, failed)) == []
    assert_processed_exactly_once(harness.faults, [ANA_1, ANA_2, SMS_1], people=2)
    ana_customer = next(
        e["customer_id"] for e in harness.faults.of("MessageReceived") if e["message_id"] == ANA_1
    )
    replayed = {e["change"] for e in harness.faults.of("IdentityChanged") if e["customer_id"] == ana_customer}
    assert replayed == {"created", "linked"}  # what Ana's first message caused, published after all


def test_a_status_whose_publish_failed_is_published_on_redelivery(harness: Harness) -> None:
    """Statuses are not messages: the status update is applied, its publish fails; redelivered, the
    same status must still be published once (consumers tolerate duplicates, not losses)."""
    batch = harness.queue.records(jonas(), jonas_status())
    fault = harness.faults.add(
        Fault("PutEvents", error("ThrottlingException"), when=mentions("MessageStatusChanged"))
    )
    failed = harness.invoke(batch)
    assert fault.hits == 1 and failed == [batch[1]["messageId"]]
    _, found = stored()
    assert found["messages"][JONAS_OUT].status == "delivered"  # applied before the publish failed

    harness.faults.clear()
    assert harness.invoke(harness.queue.again(batch, failed)) == []
    (changed,) = harness.faults.of("MessageStatusChanged")
    assert changed["message_id"] == JONAS_OUT and changed["status"] == "delivered"


def test_a_record_that_always_fails_lands_in_the_dlq_and_can_be_replayed(harness: Harness) -> None:
    """Through the local stack's SQS runner: Lambda's event source mapping with
    ReportBatchItemFailures, the inbound queue and its DLQ as template.yaml provisions them."""
    sqs = boto3.client("sqs")
    inbound, dlq = (
        harness.provisioned.physical("InboundQueue"),
        harness.provisioned.physical("InboundDeadLetterQueue"),
    )
    redrive = json.loads(
        inbound.attributes.get("RedrivePolicy") or _attribute(sqs, inbound.ref, "RedrivePolicy")
    )
    max_receives = int(redrive["maxReceiveCount"])
    assert redrive["deadLetterTargetArn"] == dlq.attributes["Arn"] and max_receives == 5

    poison, healthy = ana(), sms()
    SqsInboundQueue(sqs, inbound.ref).put([poison, healthy])  # as the webhooks queue them
    fault = harness.faults.add(
        Fault("TransactWriteItems", error("ProvisionedThroughputExceededException"), when=mentions(ANA_1))
    )
    seen: list[tuple[str, str]] = []

    def invoke(event: dict[str, Any]) -> Any:
        for record in event["Records"]:
            seen.append((record["body"], record["attributes"]["ApproximateReceiveCount"]))
        return harness.function.lambda_handler(event, Context())

    source = SqsEventSource(
        "IngestFunction",
        "Inbound",
        inbound.attributes["Arn"],
        inbound.ref,
        10,
        report_batch_item_failures=True,
    )
    poller = SqsPoller(sqs, source, invoke, retry_delay=0, wait_seconds=0)
    for _ in range(max_receives + 3):
        poller.poll_once()

    receives = [count for body, count in seen if body == poison.body]
    assert receives == [str(n) for n in range(1, max_receives + 1)]  # then moved, not received again
    assert [count for body, count in seen if body == healthy.body] == ["1"]
    assert fault.hits == max_receives
    parked = sqs.receive_message(QueueUrl=dlq.ref, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in parked] == [poison.body]
    assert _attribute(sqs, inbound.ref, "ApproximateNumberOfMessages") == "0"

    # Replay from the DLQ once the fault is gone: processed once, like any first delivery.
    harness.faults.clear()
    for message in parked:
        sqs.send_message(
            QueueUrl=inbound.ref,
            MessageBody=message["Body"],
            MessageGroupId=message["Attributes"]["MessageGroupId"],
            MessageDeduplicationId=f"replay-{message['MessageId']}",
        )
        sqs.delete_message(QueueUrl=dlq.ref, ReceiptHandle=message["ReceiptHandle"])
    assert poller.poll_once() is not None and poller.poll_once() is None
    assert_processed_exactly_once(harness.faults, [ANA_1, SMS_1], people=2)


def _attribute(sqs: Any, url: str, name: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"][name])


def test_a_poison_record_goes_to_the_dlq_and_its_senders_later_events_proceed(harness: Harness) -> None:
    """FIFO holds a sender's later events behind a failing one (order per person), and they are failed
    with it, so they are received as often. On its last receive the failing one is dead-lettered by the
    function itself and the later ones are processed, instead of all being dead-lettered together."""
    sqs = boto3.client("sqs")
    inbound = harness.provisioned.physical("InboundQueue")
    dlq = harness.provisioned.physical("InboundDeadLetterQueue")
    poison, later = ana(), ana(second=True)
    assert poison.group_id == later.group_id
    SqsInboundQueue(sqs, inbound.ref).put([poison, later])  # as the webhooks queue them
    harness.faults.add(Fault("TransactWriteItems", error("InternalServerError", 500), when=mentions(ANA_1)))
    attempts: list[list[str]] = []

    def invoke(event: dict[str, Any]) -> Any:
        names = ["later" if r["body"] == later.body else "poison" for r in event["Records"]]
        try:
            answer = harness.function.lambda_handler(event, Context())
        except Exception:  # every record failed: Lambda fails the whole batch
            attempts.append([f"{n} failed" for n in names])
            raise
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        ids = [r["messageId"] for r in event["Records"]]
        attempts.append(
            [f"{n} failed" if i in failed else f"{n} done" for n, i in zip(names, ids, strict=True)]
        )
        return answer

    source = SqsEventSource("IngestFunction", "Inbound", inbound.attributes["Arn"], inbound.ref, 10, True)
    poller = SqsPoller(sqs, source, invoke, retry_delay=0, wait_seconds=0)
    for _ in range(10):
        poller.poll_once()

    held = [["poison failed", "later failed"]] * 4  # never out of order: the later one waits
    assert attempts == [*held, ["poison done", "later done"]]
    parked = sqs.receive_message(
        QueueUrl=dlq.ref, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
    )["Messages"]
    assert [m["Body"] for m in parked] == [poison.body]
    assert parked[0]["MessageAttributes"]["crossroute_failure"]["StringValue"] == "TransactWriteError"
    assert parked[0]["Attributes"]["MessageGroupId"] == poison.group_id
    _, found = stored()
    assert ANA_2 in found["messages"] and ANA_1 not in found["messages"]
