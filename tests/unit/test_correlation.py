"""One correlation id follows a webhook request: from API Gateway's request id, through the queued body,
into ingest's log line and the details of every event it publishes (contract §11, docs/alarms.md)."""

from __future__ import annotations

import json
import logging

import pytest

from crossroute import correlation
from crossroute.inbound_queue import QueuedEvent
from crossroute.ingest import InboundConsumer, Ingest
from crossroute.parsing.queued import parse
from crossroute.ports import Delivery
from tests.fakes import MemoryIdentityStore, RecordingDeadLetters, RecordingPublisher
from tests.support import TENANT, fixture_json


def queued(correlation_id: str | None) -> str:
    with correlation.scope(correlation_id):
        event = QueuedEvent.build(
            tenant=TENANT,
            sender="x",
            kind="meta.webhook",
            content={"payload": fixture_json("meta_text_bsuid_only.json")},
        )
    return event.body


def test_the_queued_body_carries_the_request_id_and_its_ids_do_not_depend_on_it() -> None:
    with correlation.scope("req-1"):
        a = QueuedEvent.build(tenant=TENANT, sender="x", kind="meta.webhook", content={"payload": {}})
    b = QueuedEvent.build(tenant=TENANT, sender="x", kind="meta.webhook", content={"payload": {}})
    assert json.loads(a.body)["correlation_id"] == "req-1" and "correlation_id" not in json.loads(b.body)
    assert (a.dedup_id, a.group_id) == (b.dedup_id, b.group_id)  # a provider's redelivery is still one
    assert correlation.current() is None


@pytest.mark.parametrize("value", ["", "x" * 129, "bad\nline", 42])
def test_a_correlation_id_that_is_not_one_is_dropped(value: object) -> None:
    body = json.loads(queued(None))
    body["correlation_id"] = value
    assert parse(json.dumps(body)).correlation_id is None


def test_ingest_logs_it_and_puts_it_in_every_event_it_publishes(caplog: pytest.LogCaptureFixture) -> None:
    bus = RecordingPublisher()
    consumer = InboundConsumer(
        Ingest(MemoryIdentityStore(), bus, sleep=lambda _: None), RecordingDeadLetters, max_receives=5
    )
    with caplog.at_level(logging.INFO):
        consumer.consume(Delivery(queued("req-7"), "m1", 1))
    assert bus.events and all(e.detail["correlation_id"] == "req-7" for e in bus.events)
    (line,) = [r for r in caplog.records if r.getMessage() == "ingested"]
    assert line.correlation_id == "req-7"  # type: ignore[attr-defined]
    assert correlation.current() is None  # nothing leaks into the next record
    consumer.consume(Delivery(queued(None), "m2", 1))  # a body without one: events without one
    assert "correlation_id" not in bus.events[-1].detail
