"""Adapter fixtures: moto in-process, with resources provisioned from template.yaml itself."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from crossroute.send_queue import SendConsumer, SqsSendQueue
from infra.local.emulated import emulated_account
from infra.local.provision import Provisioner
from tests.support import DispatchFunction, FaultWorld, RecordingSqs, load_handler, registry_document


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def provisioned() -> Iterator[Provisioner]:
    """A fresh emulated account with template.yaml's table, queues and bus; the models bound to the table."""
    with emulated_account("InboundQueue", "EventBus", "MaskingKey") as account:
        yield account


@pytest.fixture
def table(provisioned: Provisioner) -> str:
    """The identity table's name (every PynamoDB model is bound to it)."""
    return str(provisioned.ref("IdentityTable"))


@pytest.fixture
def dispatch_function(monkeypatch: pytest.MonkeyPatch) -> Iterator[DispatchFunction]:
    """The dispatch function's real handler module in a fresh account with the template's table, send queue
    and bus: its ``Dispatch`` a ``FaultWorld`` container (providers scripted, DynamoDB faults armable),
    its SQS client recorded."""
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
        # Loading the module binds the models to TABLE_NAME: before the faults find the clients.
        module = load_handler("dispatch")
        world = FaultWorld()
        sqs = RecordingSqs(module._sqs())
        monkeypatch.setattr(module, "_sqs", lambda: sqs)
        queue = SqsSendQueue(lambda: sqs, queue_url)
        monkeypatch.setattr(module, "consumer", SendConsumer(world.container(), queue))
        try:
            yield DispatchFunction(module, world, sqs, queue_url, str(account.get_att("SendQueue", "Arn")))
        finally:
            world.faults.close()
