"""The README's "An integrator's first ten minutes", step by step against the local stack: subscribe a
queue to the bus, send with an ``Idempotency-Key`` header, follow ``Location`` until the send is
delivered, reuse the key wrongly (422), and read the events the queue received."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local import StackClient
from tests.support import eventually, new_phone

PATTERN = {"source": ["crossroute"], "detail-type": ["MessageRouted", "MessageStatusChanged"]}


@pytest.fixture
def subscribed(local_stack: StackClient) -> Iterator[str]:
    """A queue of one's own, subscribed to crossroute's bus by a rule (README step 1): its URL. Rule,
    target and queue are removed afterwards (as ``tests.support.Probe.close`` does): the bus is shared."""
    name = f"my-events-{time.time_ns()}"
    sqs, events = local_stack.client("sqs"), local_stack.client("events")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = local_stack.event_bus_name
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(PATTERN))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "mine", "Arn": arn}])
    try:
        yield str(url)
    finally:
        events.remove_targets(Rule=name, EventBusName=bus, Ids=["mine"])
        events.delete_rule(Name=name, EventBusName=bus)
        sqs.delete_queue(QueueUrl=url)


def received(stack: StackClient, url: str) -> list[dict[str, Any]]:
    answer = stack.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def test_send_poll_and_consume_an_event_as_the_readme_shows(
    local_stack: StackClient, subscribed: str
) -> None:
    url = subscribed
    key = f"order-{time.time_ns()}-shipped"
    request = {"to": {"phone": "+" + new_phone()}, "text": "Your order has shipped"}
    headers = {"Content-Type": "application/json", "Idempotency-Key": f'"{key}"'}
    accepted = local_stack.post("/messages", body=json.dumps(request).encode(), headers=headers)
    assert accepted.status == 202
    request_id = accepted.json()["request_id"]
    location = accepted.headers["location"]
    assert location == f"/messages/{request_id}"

    def delivered() -> dict[str, Any] | None:
        view: dict[str, Any] = local_stack.get(location).json()
        return view if view["status"] == "delivered" else None

    view = eventually(delivered)
    assert (view["chosen"], view["idempotency_key"]) == ("sms", key)
    assert view["channels"]["sms"]["status"] == "delivered"

    changed = json.dumps({**request, "text": "Your order is delayed"}).encode()
    refused = local_stack.post("/messages", body=changed, headers=headers)
    assert (refused.status, refused.headers["content-type"]) == (422, "application/problem+json")
    assert refused.json()["request_id"] == request_id

    seen: list[dict[str, Any]] = []

    def both_events() -> list[dict[str, Any]] | None:
        seen.extend(received(local_stack, url))
        mine = [
            e
            for e in seen
            if e["detail"].get("request_id") == request_id
            or e["detail"].get("message_id") == view["channels"]["sms"]["provider_message_id"]
        ]
        kinds = {e["detail-type"] for e in mine}
        return mine if {"MessageRouted", "MessageStatusChanged"} <= kinds else None

    events = eventually(both_events)
    (routed,) = [e for e in events if e["detail-type"] == "MessageRouted"]
    assert (routed["source"], routed["detail"]["version"], routed["detail"]["channel"]) == (
        "crossroute",
        "1",
        "sms",
    )
    statuses = {e["detail"]["status"] for e in events if e["detail-type"] == "MessageStatusChanged"}
    assert "delivered" in statuses
