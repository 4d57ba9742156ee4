"""Adapter fixtures: moto in-process, with resources provisioned from template.yaml itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from crossroute.bus import SOURCE
from infra.local.emulated import emulated_account
from infra.local.provision import Provisioner


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


class ListPublisher:
    """An ``EventPublisher`` that remembers what it published; ``fail_next`` publishes fail first."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.fail_next = 0

    def publish(self, events: Any) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("injected: PutEvents failed")
        self.events.extend(events)

    def of(self, detail_type: str) -> list[dict[str, Any]]:
        return [e.detail for e in self.events if e.detail_type == detail_type]

    def wire(self) -> list[tuple[str, dict[str, Any]]]:
        """(detail-type, detail) of each event as PutEvents sends it: the JSON ``Detail`` read back."""
        out = []
        for event in self.events:
            entry = event.entry("crossroute-test-events")
            assert entry["Source"] == SOURCE == "crossroute"
            out.append((entry["DetailType"], json.loads(entry["Detail"])))
        return out
