"""The local stack (``make run``) as users see it: health, resources provisioned from template.yaml,
routes, the tenant registry, and the emulator usable with plain boto3 (contract section 4)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from crossroute.tenants import TenantRegistry
from infra.local import StackClient
from infra.template import load_template

pytestmark = pytest.mark.e2e

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def of_type(rtype: str) -> dict[str, Any]:
    return {lid: r for lid, r in RESOURCES.items() if r["Type"] == rtype}


def test_health(local_stack: StackClient) -> None:
    resp = local_stack.get("/_local/health")
    assert resp.status == 200
    assert resp.json() == {"status": "ok"}


def test_outputs_name_every_emulated_resource(local_stack: StackClient) -> None:
    outputs = local_stack.outputs
    assert outputs["base_url"] == local_stack.base_url
    assert outputs["public_base_url"] == local_stack.base_url
    for rtype in (
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::Events::EventBus",
        "AWS::SecretsManager::Secret",
    ):
        for lid in of_type(rtype):
            assert outputs["resources"][lid]["emulated"] is True, lid
    # the template's own Outputs, resolved to local values
    assert outputs["outputs"]["InboundQueueUrl"] == local_stack.inbound_queue_url
    assert outputs["outputs"]["IdentityTableName"] == local_stack.table_name
    assert outputs["outputs"]["ApiUrl"] == local_stack.base_url


def test_table_matches_template(local_stack: StackClient) -> None:
    ddb = local_stack.client("dynamodb")
    for lid, resource in of_type("AWS::DynamoDB::Table").items():
        props = resource["Properties"]
        name = local_stack.physical(lid)
        table = ddb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == props["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(
            props["AttributeDefinitions"], key=str
        )
        assert table["BillingModeSummary"]["BillingMode"] == props.get("BillingMode", "PROVISIONED")
        got = {
            g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in table.get("GlobalSecondaryIndexes", [])
        }
        want = {
            g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in props.get("GlobalSecondaryIndexes", [])
        }
        assert got == want
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        spec = props.get("TimeToLiveSpecification")
        if spec and spec.get("Enabled"):
            assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": spec["AttributeName"]}
    assert local_stack.table_name == "crossroute-local-IdentityTable"


def test_queues_match_template(local_stack: StackClient) -> None:
    sqs = local_stack.client("sqs")
    queues = of_type("AWS::SQS::Queue")
    assert queues, "template.yaml has queues"
    for lid, resource in queues.items():
        props = resource.get("Properties") or {}
        attrs = sqs.get_queue_attributes(QueueUrl=local_stack.physical(lid), AttributeNames=["All"])[
            "Attributes"
        ]
        fifo = bool(props.get("FifoQueue"))
        assert attrs.get("FifoQueue", "false") == ("true" if fifo else "false"), lid
        assert local_stack.attribute(lid, "QueueName").endswith(".fifo") is fifo
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds"):
            if key in props:
                assert attrs[key] == str(props[key]), (lid, key)
        if "RedrivePolicy" in props:
            redrive = json.loads(attrs["RedrivePolicy"])
            dlq = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert redrive["deadLetterTargetArn"] == local_stack.attribute(dlq, "Arn")
            assert redrive["maxReceiveCount"] == props["RedrivePolicy"]["maxReceiveCount"]
    assert local_stack.inbound_queue_url.endswith("/crossroute-local-InboundQueue.fifo")


def test_event_bus_accepts_put_events_from_plain_boto3(local_stack: StackClient) -> None:
    events, sqs = local_stack.client("events"), local_stack.client("sqs")
    bus = local_stack.event_bus_name
    assert events.describe_event_bus(Name=bus)["Arn"] == local_stack.attribute("EventBus", "Arn")

    # a throwaway rule + queue shows the events really flow on the bus
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=probe)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=probe, EventBusName=bus, EventPattern=json.dumps({"source": [probe]}))
    events.put_targets(Rule=probe, EventBusName=bus, Targets=[{"Id": "probe", "Arn": arn}])
    try:
        result = events.put_events(
            Entries=[
                {
                    "Source": probe,
                    "DetailType": "SendMessage",
                    "Detail": '{"tenant": "demo"}',
                    "EventBusName": bus,
                }
            ]
        )
        assert result["FailedEntryCount"] == 0
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2).get("Messages", [])
        assert [json.loads(m["Body"])["detail"] for m in got] == [{"tenant": "demo"}]
    finally:
        events.remove_targets(Rule=probe, EventBusName=bus, Ids=["probe"])
        events.delete_rule(Name=probe, EventBusName=bus)
        sqs.delete_queue(QueueUrl=url)


def test_tenant_secret_holds_the_local_tenant(local_stack: StackClient) -> None:
    secret = local_stack.client("secretsmanager").get_secret_value(SecretId=local_stack.tenants_secret_arn)
    registry = TenantRegistry.from_json(secret["SecretString"])
    assert [t.id for t in registry.tenants] == ["demo"]
    demo = registry.by_phone_number_id("100000000000001")
    assert demo is not None and demo.id == "demo" and demo.default_region == "US"
    assert demo.meta is not None
    assert (demo.meta.app_secret, demo.meta.verify_token, demo.meta.access_token, demo.meta.waba_id) == (
        "local-app-secret",
        "local-verify-token",
        "local-access-token",
        "100000000000000",
    )
    assert demo.meta.phone_numbers[0].display_phone_number == "15550100001"
    for address in ("+15550100002", "whatsapp:+15550100003"):
        owner = registry.by_twilio_address("AC00000000000000000000000000000000", address)
        assert owner is not None and owner.id == "demo"
    assert demo.twilio is not None and demo.twilio.auth_token == "local-twilio-token"


def test_routes_are_the_template_http_api_events(local_stack: StackClient) -> None:
    want = {
        f"{e['Properties']['Method'].upper()} {e['Properties']['Path']}"
        for r in of_type("AWS::Serverless::Function").values()
        for e in (r["Properties"].get("Events") or {}).values()
        if e["Type"] == "HttpApi"
    }
    assert {r["route_key"] for r in local_stack.outputs["routes"]} == want


def test_functions_see_local_resources(local_stack: StackClient) -> None:
    env = local_stack.outputs["environment"]
    assert env["TABLE_NAME"] == local_stack.table_name
    assert env["INBOUND_QUEUE_URL"] == local_stack.inbound_queue_url
    assert env["EVENT_BUS_NAME"] == local_stack.event_bus_name
    assert env["TENANTS_SECRET_ID"] == local_stack.tenants_secret_arn
    assert env["PUBLIC_BASE_URL"] == local_stack.base_url


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nope"), ("DELETE", "/webhooks/whatsapp"), ("GET", "/_local/nope")]
)
def test_unknown_routes_are_404(local_stack: StackClient, method: str, path: str) -> None:
    resp = local_stack.request(method, path)
    assert resp.status == 404
    assert resp.json() == {"message": "Not Found"}


def test_queue_helpers(fresh_queues: StackClient) -> None:
    sqs = fresh_queues.client("sqs")
    url = fresh_queues.dead_letter_queue_url
    sqs.send_message(
        QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId=uuid.uuid4().hex
    )
    drained = fresh_queues.drain_queue("InboundDeadLetterQueue", wait_seconds=0.2)
    assert [m["Body"] for m in drained] == ["x"]
    assert drained[0]["Attributes"]["MessageGroupId"] == "g"
    assert fresh_queues.drain_queue("InboundDeadLetterQueue", wait_seconds=0.2) == []
