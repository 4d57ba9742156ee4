"""The local stack's machinery against moto: template loading, intrinsics, provisioning from
template.yaml, API Gateway payload 2.0 events, routing, and the SQS event-source runner."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `infra` lives at the repository root, next to `tests`
    sys.path.insert(0, str(REPO_ROOT))

from moto.server import ThreadedMotoServer  # noqa: E402

from infra.local.aws import ClientFactory  # noqa: E402
from infra.local.functions import (  # noqa: E402
    EnvironmentConflict,
    FunctionSpec,
    _merge_globals,
    function_specs,
    merged_environment,
)
from infra.local.gateway import (  # noqa: E402
    HttpRoute,
    LocalRequest,
    Router,
    build_http_event,
    http_response,
    is_text_content_type,
)
from infra.local.intrinsics import IntrinsicError, Resolver, parameter_values  # noqa: E402
from infra.local.provision import Provisioner, ProvisionError  # noqa: E402
from infra.local.sqs_runner import SqsEventSource, build_sqs_record, process_batch  # noqa: E402
from infra.local.stack import LocalStack, StackConfig  # noqa: E402
from infra.local.tenant import LOCAL_TENANT, local_registry_document, read_tenants_document, validate  # noqa: E402
from infra.template import load_template, parse_template  # noqa: E402

TEMPLATE = load_template(REPO_ROOT / "template.yaml")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def clients(moto_endpoint: str) -> ClientFactory:
    reset = urllib.request.Request(moto_endpoint + "/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(reset).close()  # noqa: S310 - loopback
    return ClientFactory(moto_endpoint)


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """LocalStack writes the functions' environment into os.environ; undo that after the test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


# --------------------------------------------------------------------------- template loading
def test_short_tags_become_long_forms() -> None:
    doc = parse_template(
        textwrap.dedent(
            """
            AWSTemplateFormatVersion: 2010-09-09
            Conditions:
              IsProd: !Equals [!Ref Stage, prod]
            Resources:
              Q:
                Properties:
                  A: !Ref X
                  B: !GetAtt Queue.Arn
                  C: !Sub "${AWS::StackName}-x"
                  D: !If [IsProd, !GetAtt [Other, Name.Deep], !Ref "AWS::NoValue"]
                  E: !Select [0, !Split [",", "a,b"]]
                  F: !Join ["-", [a, !Ref Y]]
                  G: !Sub ["${v}", {v: !Ref Z}]
            """
        )
    )
    assert doc["AWSTemplateFormatVersion"] == "2010-09-09"
    assert doc["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    props = doc["Resources"]["Q"]["Properties"]
    assert props["A"] == {"Ref": "X"}
    assert props["B"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert props["C"] == {"Fn::Sub": "${AWS::StackName}-x"}
    assert props["D"] == {
        "Fn::If": ["IsProd", {"Fn::GetAtt": ["Other", "Name.Deep"]}, {"Ref": "AWS::NoValue"}]
    }
    assert props["E"] == {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}
    assert props["F"] == {"Fn::Join": ["-", ["a", {"Ref": "Y"}]]}
    assert props["G"] == {"Fn::Sub": ["${v}", {"v": {"Ref": "Z"}}]}


def _resolver(template: dict[str, Any], overrides: dict[str, str] | None = None) -> Resolver:
    return Resolver(
        template,
        parameters=parameter_values(template, overrides),
        ref=lambda lid: f"ref-of-{lid}",
        get_att=lambda lid, attr: f"{lid}.{attr}-value",
    )


def test_resolver_functions() -> None:
    template = {
        "Parameters": {"Stage": {"Type": "String", "Default": "dev"}, "N": {"Type": "Number", "Default": 5}},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
    }
    r = _resolver(template)
    assert r.resolve({"Ref": "Stage"}) == "dev"
    assert r.resolve({"Ref": "N"}) == "5"
    assert r.resolve({"Ref": "Queue"}) == "ref-of-Queue"
    assert r.resolve({"Fn::GetAtt": ["Queue", "Arn"]}) == "Queue.Arn-value"
    assert (
        r.resolve({"Fn::Sub": "${AWS::StackName}/${AWS::Region}/${AWS::URLSuffix}"})
        == "crossroute-local/us-east-1/amazonaws.com"
    )
    assert r.resolve({"Fn::Sub": "${Queue}|${Queue.QueueUrl}|${Stage}"}) == (
        "ref-of-Queue|Queue.QueueUrl-value|dev"
    )
    assert r.resolve({"k": [{"Fn::If": ["IsProd", "p", "d"]}], "j": 1}) == {"k": ["d"], "j": 1}
    assert r.resolve({"Fn::Not": [{"Fn::Equals": [{"Ref": "Stage"}, "prod"]}]}) is True
    assert _resolver(template, {"Stage": "prod"}).resolve({"Fn::If": ["IsProd", "p", "d"]}) == "p"
    with pytest.raises(IntrinsicError, match="Nope"):
        r.resolve({"Ref": "Nope"})
    with pytest.raises(IntrinsicError, match="unknown parameter"):
        parameter_values(template, {"Bogus": "1"})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"Fn::FindInMap": ["Map", "a", "b"]}, "Fn::FindInMap is not supported by the local stack"),
        ({"Fn::Join": [",", ["a", "b"]]}, "Fn::Join is not supported by the local stack"),
        ({"Condition": "IsProd"}, "Condition is not supported by the local stack"),
        ({"Fn::Sub": ["${a}", {"a": "b"}]}, "Fn::Sub: only the string form is supported"),
        ({"Ref": "AWS::AccountId"}, "Ref to unknown name 'AWS::AccountId'"),
    ],
)
def test_what_template_yaml_does_not_use_fails_naming_it(value: Any, error: str) -> None:
    template = {
        "Conditions": {"IsProd": {"Fn::Equals": ["a", "b"]}},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
    }
    with pytest.raises(IntrinsicError, match=re.escape(error)):
        _resolver(template).resolve({"Key": [value]})


UNSUPPORTED_TABLE = """
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      BillingMode: PAY_PER_REQUEST
      StreamSpecification: {StreamViewType: NEW_IMAGE}
      TableClass: STANDARD_INFREQUENT_ACCESS
"""

LAMBDA_TARGET = """
Resources:
  Rule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern: {source: [crossroute]}
      Targets: [{Id: fn, Arn: "arn:aws:lambda:us-east-1:123456789012:function:f"}]
"""


@pytest.mark.parametrize(
    ("template", "error"),
    [
        (UNSUPPORTED_TABLE, "AWS::DynamoDB::Table Table: StreamSpecification, TableClass not supported"),
        ("Resources: {P: {Type: AWS::SSM::Parameter}}", "resource type AWS::SSM::Parameter is not supported"),
        ("Resources: {Q: {Type: AWS::SQS::Queue, Properties: {QueueName: q}}}", "Q: QueueName not supported"),
        (LAMBDA_TARGET, "target fn is not an SQS queue"),
    ],
)
def test_unsupported_resources_fail_before_anything_is_created(template: str, error: str) -> None:
    def no_aws(service: str) -> Any:
        raise AssertionError(f"{service} was called")

    with pytest.raises(ProvisionError, match=re.escape(error)):
        Provisioner(parse_template(template), no_aws).provision_all()


def test_unsupported_event_sources_fail_naming_them(tmp_path: Path) -> None:
    def template(event: str) -> dict[str, Any]:
        fn = {"CodeUri": "fn/", "Events": {"Ev": parse_template(event)}}
        return {"Resources": {"Fn": {"Type": "AWS::Serverless::Function", "Properties": fn}}}

    def specs(event: str) -> Any:
        return function_specs(template(event), lambda v: v, tmp_path, name_for=str)

    with pytest.raises(ValueError, match=re.escape("Fn.Ev: events of Type 'Schedule' are not supported")):
        specs("{Type: Schedule, Properties: {Schedule: rate(1 minute)}}")
    with pytest.raises(ValueError, match=re.escape("Fn.Ev: Enabled, MaximumBatchingWindowInSeconds not")):
        specs("{Type: SQS, Properties: {Queue: q, Enabled: false, MaximumBatchingWindowInSeconds: 5}}")


# --------------------------------------------------------------------------- provisioning
def test_provisions_template_yaml(clients: ClientFactory) -> None:
    prov = Provisioner(TEMPLATE, clients, secret_values={"TenantsSecret": local_registry_document()})
    resources = prov.provision_all()
    spec = TEMPLATE["Resources"]

    table = resources["IdentityTable"]
    assert table.ref == "crossroute-local-IdentityTable"
    desc = clients("dynamodb").describe_table(TableName=table.ref)["Table"]
    tprops = spec["IdentityTable"]["Properties"]
    assert desc["KeySchema"] == tprops["KeySchema"]
    assert sorted(desc["AttributeDefinitions"], key=str) == sorted(tprops["AttributeDefinitions"], key=str)
    assert desc["BillingModeSummary"]["BillingMode"] == tprops["BillingMode"]
    got_gsis = {g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in desc["GlobalSecondaryIndexes"]}
    want_gsis = {g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in tprops["GlobalSecondaryIndexes"]}
    assert got_gsis == want_gsis
    ttl = clients("dynamodb").describe_time_to_live(TableName=table.ref)["TimeToLiveDescription"]
    assert ttl == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": tprops["TimeToLiveSpecification"]["AttributeName"],
    }

    inbound, dlq = resources["InboundQueue"], resources["InboundDeadLetterQueue"]
    assert inbound.attributes["QueueName"] == "crossroute-local-InboundQueue.fifo"
    attrs = clients("sqs").get_queue_attributes(QueueUrl=inbound.ref, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true"
    assert attrs["VisibilityTimeout"] == str(spec["InboundQueue"]["Properties"]["VisibilityTimeout"])
    assert attrs["DeduplicationScope"] == spec["InboundQueue"]["Properties"]["DeduplicationScope"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq.attributes["Arn"]
    assert (
        redrive["maxReceiveCount"] == spec["InboundQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    )

    assert resources["EventBus"].ref == "crossroute-local-events"  # !Sub "${AWS::StackName}-events"
    secret = clients("secretsmanager").get_secret_value(SecretId=resources["TenantsSecret"].ref)
    assert json.loads(secret["SecretString"]) == LOCAL_TENANT

    env = prov.resolve(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    assert env["TABLE_NAME"] == table.ref
    assert env["INBOUND_QUEUE_URL"] == inbound.ref
    assert env["TENANTS_SECRET_ID"] == resources["TenantsSecret"].ref
    assert env["EVENT_BUS_NAME"] == "crossroute-local-events"


def test_send_message_sources_decide_what_reaches_the_send_queue(clients: ClientFactory) -> None:
    # SendMessageSources is a CommaDelimitedList: its Ref is the list of values, trimmed, as in AWS.
    overrides = {"SendMessageSources": "shop.orders, crm.campaigns"}
    prov = Provisioner(TEMPLATE, clients, parameter_overrides=overrides)
    resources = prov.provision_all()
    assert resources["EventSchemaRegistry"].emulated is False  # documentation only: not created locally
    assert {r.emulated for r in resources.values() if r.type == "AWS::EventSchemas::Schema"} == {False}
    bus, sqs = resources["EventBus"].ref, clients("sqs")
    sources = ("shop.orders", "crm.unlisted", "crm.campaigns", "crossroute")
    put = clients("events").put_events(
        Entries=[
            {
                "Source": source,
                "DetailType": "SendMessage",
                "Detail": json.dumps({"n": source}),
                "EventBusName": bus,
            }
            for source in sources
        ]
    )
    assert put["FailedEntryCount"] == 0
    url = resources["SendQueue"].ref
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert sorted(json.loads(m["Body"])["source"] for m in got) == ["crm.campaigns", "shop.orders"]


SMALL_TEMPLATE = """
Parameters:
  Prefix: {Type: String, Default: demo}
Resources:
  Bus:
    Type: AWS::Events::EventBus
    Properties: {Name: !Sub "${Prefix}-bus"}
  Sink:
    Type: AWS::SQS::Queue
  ToSink:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref Bus
      EventPattern: {source: [crossroute], detail-type: [SendMessage]}
      Targets:
        - Id: sink
          Arn: !GetAtt Sink.Arn
  Generated:
    Type: AWS::SecretsManager::Secret
    Properties:
      GenerateSecretString:
        SecretStringTemplate: '{"user": "x"}'
        GenerateStringKey: password
        PasswordLength: 12
"""


def test_rules_and_generated_secrets(clients: ClientFactory) -> None:
    prov = Provisioner(parse_template(SMALL_TEMPLATE), clients)
    res = prov.provision_all()
    assert res["Bus"].ref == "demo-bus"
    assert res["Sink"].attributes["QueueName"] == "crossroute-local-Sink"
    assert res["ToSink"].ref == "demo-bus|crossroute-local-ToSink"

    generated = json.loads(
        clients("secretsmanager").get_secret_value(SecretId=res["Generated"].ref)["SecretString"]
    )
    assert generated["user"] == "x" and len(generated["password"]) == 12

    put = clients("events").put_events(
        Entries=[
            {
                "Source": "crossroute",
                "DetailType": "SendMessage",
                "Detail": '{"tenant": "demo"}',
                "EventBusName": "demo-bus",
            },
            {"Source": "other", "DetailType": "SendMessage", "Detail": "{}", "EventBusName": "demo-bus"},
        ]
    )
    assert put["FailedEntryCount"] == 0
    got = clients("sqs").receive_message(QueueUrl=res["Sink"].ref, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert [json.loads(m["Body"])["detail"] for m in got["Messages"]] == [{"tenant": "demo"}]


# --------------------------------------------------------------------------- HTTP API events
@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("text/plain", True),
        ("text/xml", True),
        ("application/xml", True),
        ("application/vnd.api+json", True),
        ("application/javascript", True),
        (None, True),
        ("application/x-www-form-urlencoded", False),
        ("application/x-www-form-urlencoded; charset=utf-8", False),
        ("multipart/form-data; boundary=x", False),
        ("application/octet-stream", False),
        ("image/png", False),
    ],
)
def test_text_content_types(content_type: str | None, text: bool) -> None:
    assert is_text_content_type(content_type) is text


def _event(body: bytes, content_type: str, **kw: Any) -> dict[str, Any]:
    return build_http_event(
        method="POST",
        raw_path="/webhooks/twilio",
        raw_query="",
        headers=[("Content-Type", content_type), ("Host", "127.0.0.1:3000")],
        body=body,
        route_key="POST /webhooks/twilio",
        **kw,
    )


def test_body_encoding_follows_api_gateway() -> None:
    form = b"From=%2B15550123456&Body=hi+there"
    event = _event(form, "application/x-www-form-urlencoded")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == form

    doc = '{"text": "h\u00e9llo \u2713"}'.encode()
    event = _event(doc, "application/json")
    assert event["isBase64Encoded"] is False
    assert event["body"] == doc.decode()

    latin1 = '{"text": "h\u00e9llo"}'.encode("latin-1")  # not valid UTF-8 -> base64 even for JSON
    event = _event(latin1, "application/json")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == latin1

    event = _event(b"", "application/json")
    assert "body" not in event and event["isBase64Encoded"] is False


def test_payload_v2_event_shape() -> None:
    now = datetime(2026, 11, 22, 4, 9, 30, 123000, tzinfo=UTC)
    event = build_http_event(
        method="get",
        raw_path="/contacts/c-1/timeline",
        raw_query="phone=%2B1555&x=1&x=2&empty=",
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("User-Agent", "curl/8"),
            ("X-Multi", "a"),
            ("x-multi", "b"),
            ("Cookie", "a=1; b=2"),
        ],
        body=b"",
        route_key="GET /contacts/{id}/timeline",
        path_parameters={"id": "c-1"},
        source_ip="127.0.0.9",
        request_id="req-1",
        now=now,
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /contacts/{id}/timeline"
    assert event["rawPath"] == "/contacts/c-1/timeline"
    assert event["rawQueryString"] == "phone=%2B1555&x=1&x=2&empty="
    assert event["queryStringParameters"] == {"phone": "+1555", "x": "1,2", "empty": ""}
    assert event["pathParameters"] == {"id": "c-1"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"] == {"host": "127.0.0.1:3000", "user-agent": "curl/8", "x-multi": "a,b"}
    ctx = event["requestContext"]
    assert ctx["accountId"] == "123456789012"
    assert ctx["domainName"] == "127.0.0.1:3000"
    assert ctx["http"] == {
        "method": "GET",
        "path": "/contacts/c-1/timeline",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.9",
        "userAgent": "curl/8",
    }
    assert ctx["requestId"] == "req-1"
    assert ctx["routeKey"] == "GET /contacts/{id}/timeline"
    assert ctx["stage"] == "$default"
    assert ctx["time"] == "22/Nov/2026:04:09:30 +0000"
    assert ctx["timeEpoch"] == int(now.timestamp() * 1000)


def test_powertools_reads_the_events() -> None:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    form = b"Body=caf%C3%A9&From=%2B1555"
    event = APIGatewayProxyEventV2(_event(form, "application/x-www-form-urlencoded"))
    assert event.decoded_body == form.decode()
    assert event.headers["content-type"] == "application/x-www-form-urlencoded"


def test_router_specificity() -> None:
    router = Router(
        [
            HttpRoute("GET", "/contacts", "list"),
            HttpRoute("GET", "/contacts/{id}", "one"),
            HttpRoute("ANY", "/contacts/{id}", "any-one"),
            HttpRoute("GET", "/contacts/me", "me"),
            HttpRoute("GET", "/files/{path+}", "greedy"),
            HttpRoute("POST", "/webhooks/whatsapp", "wa"),
        ]
    )

    def target(method: str, path: str) -> Any:
        found = router.match(method, path)
        return None if found is None else (found[0].target, found[1])

    assert target("GET", "/contacts") == ("list", {})
    assert target("GET", "/contacts/me") == ("me", {})
    assert target("GET", "/contacts/a%20b") == ("one", {"id": "a b"})
    assert target("DELETE", "/contacts/x") == ("any-one", {"id": "x"})
    assert target("GET", "/files/a/b/c") == ("greedy", {"path": "a/b/c"})
    assert target("GET", "/webhooks/whatsapp") is None
    assert target("POST", "/webhooks/whatsapp/") is None
    assert target("POST", "/nope") is None
    with pytest.raises(ValueError, match="twice"):
        router.add(HttpRoute("GET", "/contacts", "again"))


def test_handler_results_map_like_api_gateway() -> None:
    r = http_response(
        {
            "statusCode": 201,
            "headers": {"content-type": "text/xml", "x-n": 1},
            "body": "<Response/>",
            "cookies": ["s=1"],
        }
    )
    assert (r.status, r.body) == (201, b"<Response/>")
    assert ("content-type", "text/xml") in r.headers and ("x-n", "1") in r.headers
    assert ("Set-Cookie", "s=1") in r.headers
    r = http_response(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    )
    assert r.body == b"\x00\x01"
    r = http_response("hello")
    assert (r.status, r.body, r.headers) == (200, b"hello", [("Content-Type", "application/json")])
    r = http_response({"ok": True})
    assert (r.status, json.loads(r.body)) == (200, {"ok": True})


def test_environment_conflicts_fail_clearly(tmp_path: Path) -> None:
    def spec(lid: str, env: dict[str, str]) -> FunctionSpec:
        return FunctionSpec(lid, lid, tmp_path, "app.lambda_handler", 128, 3, env, {})

    assert merged_environment([spec("A", {"X": "1"}), spec("B", {"X": "1", "Y": "2"})]) == {
        "X": "1",
        "Y": "2",
    }
    with pytest.raises(EnvironmentConflict, match=r"A and B set X"):
        merged_environment([spec("A", {"X": "1"}), spec("B", {"X": "2"})])


def test_a_functions_intrinsic_replaces_the_globals_value_as_sam_does() -> None:
    globals_fn = {
        "Environment": {"Variables": {"BASE": {"Ref": "PublicBaseUrl"}, "KEEP": "1"}},
        "Layers": ["a"],
    }
    chosen = {"Fn::If": ["HasBase", {"Ref": "PublicBaseUrl"}, "https://api.example"]}
    props = {"Environment": {"Variables": {"BASE": chosen}}, "Layers": ["b"]}
    merged = _merge_globals(globals_fn, props)
    assert merged["Environment"]["Variables"] == {"BASE": chosen, "KEEP": "1"}  # not {"Ref", "Fn::If"}
    assert merged["Layers"] == ["a", "b"]


def test_tenants_document_override(tmp_path: Path) -> None:
    assert json.loads(read_tenants_document({})) == LOCAL_TENANT
    other = {
        "tenants": {"acme": {"twilio": {"account_sid": "AC1", "auth_token": "t", "sms_numbers": ["+1555"]}}}
    }
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(other))
    assert json.loads(read_tenants_document({"CROSSROUTE_TENANTS_FILE": str(path)})) == other
    with pytest.raises(ValueError, match="default_region"):
        validate('{"tenants": {"bad": {"default_region": "usa"}}}', where=str(path))


# --------------------------------------------------------------------------- gateway + SQS runner
CONSUMER = """
import base64, json, os

def lambda_handler(event, context):
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(json.dumps({"event": event, "function": context.function_name,
                            "remaining": context.get_remaining_time_in_millis(),
                            "queue_url": os.environ["QUEUE_URL"]}) + "\\n")
    failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"].startswith("fail")]
    if any(r["body"] == "raise" for r in event["Records"]):
        raise RuntimeError("boom")
    return {"batchItemFailures": failures}
"""

API = """
import json

def lambda_handler(event, context):
    if event["rawPath"] == "/boom":
        raise ValueError("boom")
    if event["rawPath"] == "/text":
        return "plain"
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "request_id": context.aws_request_id,
                                "memory": context.memory_limit_in_mb, "name": __name__})}
"""

STACK_TEMPLATE = """
Globals:
  Function:
    Timeout: 5
    MemorySize: 256
    Environment:
      Variables:
        QUEUE_URL: !Ref Work
        RECORD_FILE: {record_file}
Resources:
  Work:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
      ContentBasedDeduplication: true
      VisibilityTimeout: 30
      RedrivePolicy: {{deadLetterTargetArn: !GetAtt WorkDLQ.Arn, maxReceiveCount: 2}}
  WorkDLQ:
    Type: AWS::SQS::Queue
    Properties: {{FifoQueue: true}}
  Consumer:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/consumer/
      Handler: app.lambda_handler
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
  Api:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/api/
      Handler: app.lambda_handler
      Events:
        Echo: {{Type: HttpApi, Properties: {{Path: "/echo/{{id}}", Method: any}}}}
        Boom: {{Type: HttpApi, Properties: {{Path: /boom, Method: GET}}}}
        Text: {{Type: HttpApi, Properties: {{Path: /text, Method: GET}}}}
"""


@pytest.fixture
def small_stack(tmp_path: Path, restore_environ: None) -> Iterator[tuple[LocalStack, Path]]:
    record_file = tmp_path / "records.jsonl"
    (tmp_path / "functions" / "consumer").mkdir(parents=True)
    (tmp_path / "functions" / "consumer" / "app.py").write_text(CONSUMER)
    (tmp_path / "functions" / "api").mkdir(parents=True)
    (tmp_path / "functions" / "api" / "app.py").write_text(API)
    template = tmp_path / "template.yaml"
    template.write_text(STACK_TEMPLATE.format(record_file=record_file))
    config = StackConfig(
        template=template,
        port=0,
        aws_port=0,
        tenants_document="{}",
        sqs_retry_delay=0,
        outputs_file=tmp_path / "outputs.json",
    )
    stack = LocalStack(config)
    assert stack._local_routes(LocalRequest("GET", "/_local/health", "", None, b"")).status == 503  # type: ignore[arg-type]
    stack.start()
    try:
        yield stack, record_file
    finally:
        stack.stop()


def _http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    from infra.local.client import http_request

    resp = http_request(method, url, body=body, headers=headers)
    return resp.status, resp.body


def _records(record_file: Path) -> list[dict[str, Any]]:
    if not record_file.exists():
        return []
    return [json.loads(line) for line in record_file.read_text().splitlines()]


def _wait(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_gateway_invokes_handlers(small_stack: tuple[LocalStack, Path]) -> None:
    stack, _ = small_stack
    assert _http("GET", stack.base_url + "/_local/health") == (200, b'{"status":"ok"}')

    status, body = _http(
        "PATCH",
        stack.base_url + "/echo/a%2Fb?z=1&z=2",
        b"a=1&b=%C3%A9",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    doc = json.loads(body)
    event = doc["event"]
    assert event["routeKey"] == "ANY /echo/{id}"
    assert event["pathParameters"] == {"id": "a/b"}
    assert event["rawQueryString"] == "z=1&z=2"
    assert event["queryStringParameters"] == {"z": "1,2"}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"a=1&b=%C3%A9"
    assert event["requestContext"]["http"]["method"] == "PATCH"
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert doc["memory"] == 256
    assert doc["name"] == "app"  # named as Lambda imports it

    assert _http("GET", stack.base_url + "/boom") == (500, b'{"message":"Internal Server Error"}')
    assert _http("GET", stack.base_url + "/text") == (200, b"plain")
    assert _http("GET", stack.base_url + "/nope") == (404, b'{"message":"Not Found"}')
    assert _http("POST", stack.base_url + "/boom")[0] == 404

    # chunked request bodies are de-chunked like API Gateway does
    conn = http.client.HTTPConnection("127.0.0.1", int(stack.base_url.rsplit(":", 1)[1]))
    conn.request(
        "POST", "/echo/1", body=iter([b'{"a": ', b"1}"]), headers={"Content-Type": "application/json"}
    )
    chunked = json.loads(conn.getresponse().read())["event"]
    conn.close()
    assert (chunked["body"], chunked["isBase64Encoded"]) == ('{"a": 1}', False)

    outputs = stack.outputs()
    assert stack.config.outputs_file is not None
    assert json.loads(stack.config.outputs_file.read_text()) == outputs
    assert {r["route_key"] for r in outputs["routes"]} == {"ANY /echo/{id}", "GET /boom", "GET /text"}
    assert outputs["environment"]["QUEUE_URL"] == outputs["resources"]["Work"]["ref"]
    assert os.environ["QUEUE_URL"] == outputs["resources"]["Work"]["ref"]
    assert os.environ["AWS_ENDPOINT_URL"] == stack.aws_endpoint
    assert os.environ["PUBLIC_BASE_URL"] == stack.base_url


def test_sqs_runner_partial_failures_and_redrive(small_stack: tuple[LocalStack, Path]) -> None:
    stack, record_file = small_stack
    assert stack.clients is not None and stack.provisioner is not None
    sqs = stack.clients("sqs")
    work = stack.provisioner.resources["Work"]
    dlq = stack.provisioner.resources["WorkDLQ"]
    sqs.send_message(
        QueueUrl=work.ref,
        MessageBody="ok-1",
        MessageGroupId="g1",
        MessageDeduplicationId="ok-1",  # SQS gives a SequenceNumber; moto only with an explicit id
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
    )
    sqs.send_message(QueueUrl=work.ref, MessageBody="fail-1", MessageGroupId="g2")

    def in_dlq() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = sqs.receive_message(
            QueueUrl=dlq.ref, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        return got

    _wait(lambda: bool(in_dlq()), timeout=15)
    assert [m["Body"] for m in in_dlq()] == ["fail-1"]

    seen = [r for call in _records(record_file) for r in call["event"]["Records"]]
    assert [r["body"] for r in seen].count("ok-1") == 1  # succeeded once, deleted
    fail_receives = [r for r in seen if r["body"] == "fail-1"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in fail_receives] == [
        "1",
        "2",
    ]  # maxReceiveCount 2

    record = next(r for r in seen if r["body"] == "ok-1")
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == work.attributes["Arn"]
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["MessageGroupId"] == "g1"
    assert "SequenceNumber" in record["attributes"] and "MessageDeduplicationId" in record["attributes"]
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "test", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    }
    assert record["md5OfBody"] and record["receiptHandle"] and record["messageId"]
    call = _records(record_file)[0]
    assert call["function"] == "crossroute-local-Consumer"
    assert 0 < call["remaining"] <= 5000

    visible = sqs.get_queue_attributes(QueueUrl=work.ref, AttributeNames=["All"])["Attributes"]
    assert visible["ApproximateNumberOfMessages"] == "0"
    assert visible["ApproximateNumberOfMessagesNotVisible"] == "0"


def _source(queue_url: str, queue_arn: str, report: bool) -> SqsEventSource:
    return SqsEventSource("Fn", "Ev", queue_arn, queue_url, batch_size=10, report_batch_item_failures=report)


@pytest.mark.parametrize(
    ("report", "result", "raises", "kept"),
    [
        (True, {"batchItemFailures": []}, False, set()),
        (True, None, False, set()),
        (True, {"batchItemFailures": [{"itemIdentifier": "<b>"}]}, False, {"b"}),
        (True, {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}, False, {"a", "b"}),
        (True, {"batchItemFailures": [{"itemIdentifier": ""}]}, False, {"a", "b"}),
        (True, None, True, {"a", "b"}),
        (
            False,
            {"batchItemFailures": [{"itemIdentifier": "<b>"}]},
            False,
            set(),
        ),  # ignored without the setting
        (False, None, True, {"a", "b"}),
    ],
)
def test_batch_settlement(
    clients: ClientFactory, report: bool, result: Any, raises: bool, kept: set[str]
) -> None:
    sqs = clients("sqs")
    url = sqs.create_queue(QueueName="settle")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    ids = {m["Body"]: m["MessageId"] for m in messages}
    if isinstance(result, dict):
        for failure in result["batchItemFailures"]:
            if failure["itemIdentifier"] == "<b>":
                failure["itemIdentifier"] = ids["b"]

    def invoke(event: dict[str, Any]) -> Any:
        assert [r["body"] for r in event["Records"]] == ["a", "b"]
        if raises:
            raise RuntimeError("handler failed")
        return result

    outcome = process_batch(sqs, _source(url, arn, report), invoke, messages, retry_delay=0)
    assert {m["Body"] for m in messages if m["MessageId"] in outcome.failed} == kept
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert {m["Body"] for m in again} == kept


def test_sqs_record_binary_attributes() -> None:
    record = build_sqs_record(
        {
            "MessageId": "m",
            "ReceiptHandle": "r",
            "Body": "b",
            "MD5OfBody": "x",
            "Attributes": {"ApproximateReceiveCount": "1"},
            "MessageAttributes": {"bin": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}},
        },
        "arn:aws:sqs:us-east-1:123456789012:q",
    )
    assert record["messageAttributes"]["bin"]["binaryValue"] == "AP8="
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:q"
