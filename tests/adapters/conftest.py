"""Adapter fixtures: moto in-process, with resources provisioned from template.yaml itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.provision import Provisioner
from infra.template import load_template
from tests.support import REPO


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
def provisioned(aws_env: None) -> Iterator[Provisioner]:
    """A fresh emulated account with template.yaml's table, queues and bus."""
    with mock_aws():
        provisioner = Provisioner(
            load_template(REPO / "template.yaml"), lambda service: boto3.client(service)
        )
        for logical_id in ("IdentityTable", "InboundQueue", "EventBus"):
            provisioner.physical(logical_id)
        yield provisioner


@pytest.fixture
def table(provisioned: Provisioner) -> str:
    """The identity table's name, with every PynamoDB model bound to it."""
    from crossroute.store.tables import bind

    name = str(provisioned.ref("IdentityTable"))
    bind(name)
    return name


class ListPublisher:
    """An ``EventPublisher`` that remembers what it published."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, events: Any) -> None:
        self.events.extend(events)

    def of(self, detail_type: str) -> list[dict[str, Any]]:
        return [e.detail for e in self.events if e.detail_type == detail_type]
