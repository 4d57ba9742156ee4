"""The emulator's DLQ redrive (infra/local/moto_redrive.py): boto3's ``start_message_move_task`` on the
template's queues in moto moves a DLQ's messages back as SQS documents it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.local.emulated import emulated_account
from infra.local.provision import Provisioner

QUEUES = ("InboundQueue", "InboundDeadLetterQueue", "SendQueue", "SendDeadLetterQueue")


@pytest.fixture
def account() -> Iterator[Provisioner]:
    with emulated_account(*QUEUES) as provisioned:
        yield provisioned


def url(account: Provisioner, queue: str) -> str:
    return str(account.ref(queue))


def arn(account: Provisioner, queue: str) -> str:
    return str(account.get_att(queue, "Arn"))


def receive(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    answer = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    )
    messages: list[dict[str, Any]] = answer.get("Messages", [])
    return messages


def test_a_standard_dlq_is_moved_to_the_given_queue_as_new_messages(account: Provisioner) -> None:
    sqs = boto3.client("sqs")
    dlq = url(account, "SendDeadLetterQueue")
    failure = {"crossroute_failure": {"DataType": "String", "StringValue": "RetryLater"}}
    sent = [
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"n": n}), MessageAttributes=failure)
        for n in range(3)
    ]
    task = sqs.start_message_move_task(
        SourceArn=arn(account, "SendDeadLetterQueue"), DestinationArn=arn(account, "SendQueue")
    )
    assert task["TaskHandle"]
    assert receive(sqs, dlq) == []
    moved = receive(sqs, url(account, "SendQueue"))
    assert sorted(json.loads(m["Body"])["n"] for m in moved) == [0, 1, 2]
    assert {m["MessageId"] for m in moved}.isdisjoint(s["MessageId"] for s in sent)  # new messages
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in moved)  # counted afresh
    assert all(m["MessageAttributes"]["crossroute_failure"]["StringValue"] == "RetryLater" for m in moved)
    (listed,) = sqs.list_message_move_tasks(SourceArn=arn(account, "SendDeadLetterQueue"))["Results"]
    assert (listed["Status"], listed["ApproximateNumberOfMessagesMoved"]) == ("COMPLETED", 3)
    assert listed["DestinationArn"] == arn(account, "SendQueue")


def test_a_fifo_dlq_goes_back_to_its_source_keeping_groups(account: Provisioner) -> None:
    sqs = boto3.client("sqs")
    dlq = url(account, "InboundDeadLetterQueue")
    for n, group in enumerate(["demo:a", "demo:b", "demo:a"]):
        sqs.send_message(
            QueueUrl=dlq, MessageBody=f"body-{n}", MessageGroupId=group, MessageDeduplicationId=f"d{n}"
        )
    sqs.start_message_move_task(SourceArn=arn(account, "InboundDeadLetterQueue"))  # to its source
    moved = []
    while batch := receive(sqs, url(account, "InboundQueue")):
        moved += batch
        for m in batch:
            sqs.delete_message(QueueUrl=url(account, "InboundQueue"), ReceiptHandle=m["ReceiptHandle"])
    groups = {m["Body"]: m["Attributes"]["MessageGroupId"] for m in moved}
    assert groups == {"body-0": "demo:a", "body-1": "demo:b", "body-2": "demo:a"}
    a_bodies = [m["Body"] for m in moved if m["Attributes"]["MessageGroupId"] == "demo:a"]
    assert a_bodies == ["body-0", "body-2"]  # in order within the group


def test_a_message_in_flight_stays_and_the_source_must_be_a_dlq(account: Provisioner) -> None:
    sqs = boto3.client("sqs")
    dlq = url(account, "SendDeadLetterQueue")
    sqs.send_message(QueueUrl=dlq, MessageBody="looked at")
    (held,) = receive(sqs, dlq)  # someone is reading it: invisible for the queue's visibility timeout
    sqs.send_message(QueueUrl=dlq, MessageBody="waiting")
    sqs.start_message_move_task(SourceArn=arn(account, "SendDeadLetterQueue"))
    assert [m["Body"] for m in receive(sqs, url(account, "SendQueue"))] == ["waiting"]
    sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=held["ReceiptHandle"], VisibilityTimeout=0)
    assert [m["Body"] for m in receive(sqs, dlq)] == ["looked at"]
    with pytest.raises(ClientError) as refused:
        sqs.start_message_move_task(SourceArn=arn(account, "SendQueue"))  # not a DLQ
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError):  # FIFO to standard
        sqs.start_message_move_task(
            SourceArn=arn(account, "InboundDeadLetterQueue"), DestinationArn=arn(account, "SendQueue")
        )
