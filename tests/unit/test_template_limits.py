"""template.yaml says the limits and defaults the code relies on: the queue's message size, the receive
counts at which the ingest and dispatch functions dead-letter a failing record themselves, the Graph API
version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossroute import limits
from crossroute.channels.meta import GRAPH_VERSION
from infra.template import load_template

TEMPLATE: dict[str, Any] = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def test_the_inbound_queues_say_the_message_size_the_webhooks_fit_events_to() -> None:
    for queue in ("InboundQueue", "InboundDeadLetterQueue"):
        assert RESOURCES[queue]["Properties"]["MaximumMessageSize"] == limits.SQS_MESSAGE_BYTES


def test_ingest_dead_letters_on_the_receive_the_queue_would() -> None:
    redrive = RESOURCES["InboundQueue"]["Properties"]["RedrivePolicy"]
    environment = RESOURCES["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert int(environment["INBOUND_MAX_RECEIVES"]) == redrive["maxReceiveCount"]
    assert environment["INBOUND_DLQ_URL"] == {"Ref": "InboundDeadLetterQueue"}
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["InboundDeadLetterQueue", "Arn"]}


def test_dispatch_dead_letters_on_the_receive_the_send_queue_would_and_may() -> None:
    """R12: the dispatch function parks a record failing on the send queue's last receive itself, and
    has one receive to spare for a last receive that crashed or timed out."""
    redrive = RESOURCES["SendQueue"]["Properties"]["RedrivePolicy"]
    properties = RESOURCES["DispatchFunction"]["Properties"]
    environment = properties["Environment"]["Variables"]
    assert int(environment["SEND_MAX_RECEIVES"]) == redrive["maxReceiveCount"] - 1
    assert environment["SEND_DLQ_URL"] == {"Ref": "SendDeadLetterQueue"}
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["SendDeadLetterQueue", "Arn"]}
    granted = [
        s
        for policy in properties["Policies"]
        for s in policy["Statement"]
        if s["Resource"] == {"Fn::GetAtt": ["SendDeadLetterQueue", "Arn"]}
    ]
    assert [(s["Effect"], s["Action"]) for s in granted] == [("Allow", ["sqs:SendMessage"])]
    assert TEMPLATE["Outputs"]["SendDeadLetterQueueUrl"]["Value"] == {"Ref": "SendDeadLetterQueue"}


def test_a_deployment_and_the_client_default_to_one_graph_api_version() -> None:
    assert TEMPLATE["Parameters"]["GraphApiVersion"]["Default"] == GRAPH_VERSION
    environment = RESOURCES["DispatchFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["GRAPH_API_VERSION"] == {"Ref": "GraphApiVersion"}
