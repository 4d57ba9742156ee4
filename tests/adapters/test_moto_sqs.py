"""The emulator's SQS speed fix (infra/local/moto_sqs.py) answers exactly what moto itself answers."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws
from moto.sqs import models

from infra.local.moto_sqs import LazyAttributes, attributes, motos_own, speed_up


def test_the_lazy_attributes_equal_motos_own_for_queues_in_every_state() -> None:
    speed_up()
    assert models.Queue.attributes.fget is attributes and motos_own() is not attributes
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq = sqs.create_queue(QueueName="dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
        url = sqs.create_queue(
            QueueName="q.fifo",
            Attributes={"FifoQueue": "true", "RedrivePolicy": redrive, "MaximumMessageSize": "262144"},
        )["QueueUrl"]
        for i in range(5):
            sqs.send_message(
                QueueUrl=url, MessageBody=f"m{i}", MessageGroupId=f"g{i}", MessageDeduplicationId=f"d{i}"
            )
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)  # two in flight
        plain = sqs.create_queue(QueueName="plain", Attributes={"DelaySeconds": "5"})["QueueUrl"]
        sqs.send_message(QueueUrl=plain, MessageBody="later")
        backend = models.sqs_backends["123456789012"]["us-east-1"]
        for queue_url in (url, dlq, plain):
            queue = backend.get_queue(queue_url.rsplit("/", 1)[-1])
            lazy = attributes(queue)
            assert isinstance(lazy, LazyAttributes)
            assert dict(lazy.items()) == motos_own()(queue)
            assert {k: lazy.get(k) for k in lazy} == motos_own()(queue) and lazy.get("Nope", 1) == 1
        counts = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        assert counts == {"ApproximateNumberOfMessages": "3", "ApproximateNumberOfMessagesNotVisible": "2"}
