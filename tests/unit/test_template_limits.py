"""template.yaml says the limits the code relies on: the queue's message size, and the receive count at
which the ingest function dead-letters a failing record itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossroute import limits
from infra.template import load_template

RESOURCES: dict[str, Any] = load_template(Path(__file__).resolve().parents[2] / "template.yaml")["Resources"]


def test_the_inbound_queues_say_the_message_size_the_webhooks_fit_events_to() -> None:
    for queue in ("InboundQueue", "InboundDeadLetterQueue"):
        assert RESOURCES[queue]["Properties"]["MaximumMessageSize"] == limits.SQS_MESSAGE_BYTES


def test_ingest_dead_letters_on_the_receive_the_queue_would() -> None:
    redrive = RESOURCES["InboundQueue"]["Properties"]["RedrivePolicy"]
    environment = RESOURCES["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert int(environment["INBOUND_MAX_RECEIVES"]) == redrive["maxReceiveCount"]
    assert environment["INBOUND_DLQ_URL"] == {"Ref": "InboundDeadLetterQueue"}
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["InboundDeadLetterQueue", "Arn"]}
