"""Least privilege: every AWS call a function makes is granted by its own policy in template.yaml.

moto does not check IAM, so a Lambda role that lacks a permission passes every other test and fails in
AWS. Here each function's real handler module runs against a fresh moto account provisioned from
template.yaml, through representative paths; every botocore call made *during a handler invocation*
is recorded (a transaction as each item's own action, as IAM checks it) and must be among the actions
the function's inline policy statements allow. The dispatch function is driven as in
``test_dispatch_function.py`` (its fixture and helpers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.client import BaseClient

from crossroute import privacy
from crossroute.identity.model import Key
from crossroute.inbound_queue import QueuedEvent
from crossroute.ingest import Ingest
from crossroute.media_queue import SqsMediaJobs
from crossroute.parsing.queued import parse
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.tables import TableItem
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta
from infra.local.emulated import emulated_account
from infra.local.gateway import build_http_event
from infra.local.provision import Provisioner
from infra.local.sqs_runner import build_sqs_event
from infra.template import load_template
from tests.fakes import RecordingPublisher
from tests.support import (
    APP_SECRET,
    FORM_HEADERS,
    JSON_HEADERS,
    PUBLIC_BASE_URL,
    REPO,
    SHIPPED_TEMPLATE,
    VERIFY_TOKEN,
    DispatchFunction,
    DynamoFault,
    DynamoFaults,
    LambdaContext,
    RecordingSqs,
    SqsRecords,
    fixture_bytes,
    fixture_json,
    function_environment,
    http_event,
    load_handler,
    media_environment,
    meta_signature,
    registry_document,
    sandbox_providers,
    twilio_signature,
)

REGISTRY = TenantRegistry.from_json(registry_document())
GSI_RESOURCE = {"Fn::Sub": "${IdentityTable.Arn}/index/*"}
JONAS_PHONE = "+4915123456789"  # the phone Jonas shares in meta_contacts_request_answer.json
# SQS has no IAM actions of its own for its batch calls: the single message's action grants them.
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html
IAM_ACTIONS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    # S3: HeadObject is authorised as GetObject, a multipart upload's calls as PutObject, DeleteObjects as
    # each key's DeleteObject. https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html ,
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions
    "s3:HeadObject": "s3:GetObject",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "s3:DeleteObjects": "s3:DeleteObject",
}


# --------------------------------------------------------------------------- recording
TRANSACT_ACTIONS = {
    "Update": "UpdateItem",
    "Put": "PutItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def allowed_actions(function: str) -> set[str]:
    """The IAM actions template.yaml's inline policy statements grant ``function``."""
    properties = load_template(REPO / "template.yaml")["Resources"][function]["Properties"]
    actions: set[str] = set()
    for policy in properties.get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if statement.get("Effect") == "Allow":
                granted = statement["Action"]
                actions.update([granted] if isinstance(granted, str) else granted)
    return actions


@dataclass
class Recorder:
    """Every botocore call made while ``invocation()`` is open, as the IAM actions it needs."""

    calls: set[str] = field(default_factory=set)  # IAM actions
    operations: set[str] = field(default_factory=set)  # the API calls, as made
    indexes: set[str] = field(default_factory=set)  # the GSIs queried
    on: bool = False

    def record(self, client: BaseClient, operation: str, params: dict[str, Any]) -> None:
        if not self.on:
            return
        service = client.meta.service_model.signing_name
        self.operations.add(f"{service}:{operation}")
        if operation == "TransactWriteItems":  # IAM checks each item's own action
            self.calls.update(
                f"dynamodb:{TRANSACT_ACTIONS[kind]}" for item in params["TransactItems"] for kind in item
            )
            return
        self.calls.add(IAM_ACTIONS.get(f"{service}:{operation}", f"{service}:{operation}"))
        if service == "dynamodb" and operation in ("Query", "Scan") and params.get("IndexName"):
            self.indexes.add(str(params["IndexName"]))

    @contextmanager
    def invocation(self) -> Iterator[None]:
        self.on = True
        try:
            yield
        finally:
            self.on = False


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def make_api_call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        recorder.record(client, operation, params)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    # Powertools caches secrets per process: the registry must really be read by the handler under test.
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    return recorder


def resources_granting(function: str, action: str) -> list[Any]:
    """The resources of ``function``'s Allow statements that grant ``action``."""
    properties = load_template(REPO / "template.yaml")["Resources"][function]["Properties"]
    found: list[Any] = []
    for policy in properties.get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            granted = statement["Action"]
            if statement.get("Effect") == "Allow" and action in (
                [granted] if isinstance(granted, str) else granted
            ):
                resource = statement["Resource"]
                found.extend(resource if isinstance(resource, list) else [resource])
    return found


def assert_least_privilege(function: str, recorder: Recorder, expected: set[str]) -> None:
    assert expected <= recorder.calls, f"not exercised: {sorted(expected - recorder.calls)}"
    assert recorder.calls - allowed_actions(function) == set(), f"{function} lacks these permissions"
    if recorder.indexes:  # a query on a GSI needs the index's own ARN
        assert GSI_RESOURCE in resources_granting(function, "dynamodb:Query"), recorder.indexes


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Provisioner]:
    """A fresh account from template.yaml, the registry in its secret, the environment the template sets."""
    with emulated_account("InboundQueue", "SendQueue", "EventBus", "MaskingKey") as account:
        env = function_environment(account, PUBLIC_BASE_URL=PUBLIC_BASE_URL)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield account


# --------------------------------------------------------------------------- webhooks
def queued(account: Provisioner, queue: str) -> list[dict[str, Any]]:
    """The bodies on ``queue`` (read by the test, not recorded), removed from it."""
    sqs, url = boto3.client("sqs"), str(account.ref(queue))
    bodies: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def queued_kinds(account: Provisioner) -> list[str]:
    return sorted(body["kind"] for body in queued(account, "InboundQueue"))


def invoke_http(module: ModuleType, recorder: Recorder, event: dict[str, Any]) -> dict[str, Any]:
    with recorder.invocation():
        answer: dict[str, Any] = module.lambda_handler(event, LambdaContext())
    return answer


def test_the_whatsapp_webhook_calls_only_what_its_policy_grants(
    account: Provisioner, recorder: Recorder
) -> None:
    module = load_handler("whatsapp_webhook")  # a cold start: the registry is read on first use
    for fixture in ("meta_text_phone_and_bsuid.json", "meta_status_delivered_bsuid.json"):
        raw = fixture_bytes(fixture)
        post = http_event(
            "POST",
            "/webhooks/whatsapp",
            body=raw,
            headers=JSON_HEADERS | {"X-Hub-Signature-256": meta_signature(raw)},
        )
        assert invoke_http(module, recorder, post)["statusCode"] == 200
    query = f"hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    handshake = invoke_http(module, recorder, http_event("GET", "/webhooks/whatsapp", query=query))
    assert handshake["statusCode"] == 200 and handshake["body"] == "1158201444"
    assert queued_kinds(account) == [meta.KIND, meta.KIND]  # the message and the status
    assert_least_privilege(
        "WhatsAppWebhookFunction", recorder, {"secretsmanager:GetSecretValue", "sqs:SendMessage"}
    )


def test_the_twilio_webhook_calls_only_what_its_policy_grants(
    account: Provisioner, recorder: Recorder
) -> None:
    module = load_handler("twilio_webhook")  # a cold start: the registry is read on first use
    for fixture, path in (
        ("twilio_sms_inbound.form", "/webhooks/twilio"),
        ("twilio_whatsapp_inbound_bsuid.form", "/webhooks/twilio"),
        ("twilio_status_undelivered.form", "/webhooks/twilio/status"),
    ):
        raw = fixture_bytes(fixture)
        headers = FORM_HEADERS | {"X-Twilio-Signature": twilio_signature(PUBLIC_BASE_URL + path, raw)}
        post = http_event("POST", path, body=raw, headers=headers, base64_body=True)
        assert invoke_http(module, recorder, post)["statusCode"] == 200
    assert queued_kinds(account) == ["twilio.message", "twilio.message", "twilio.status"]
    assert_least_privilege(
        "TwilioWebhookFunction", recorder, {"secretsmanager:GetSecretValue", "sqs:SendMessage"}
    )


# --------------------------------------------------------------------------- ingest
def meta_events(doc: dict[str, Any]) -> list[QueuedEvent]:
    """What the WhatsApp webhook queues for ``doc``."""
    return meta.split(REGISTRY, APP_SECRET, doc)


def sms_from(phone: str) -> QueuedEvent:
    """What the Twilio webhook queues for an SMS from ``phone``."""
    form = fixture_bytes("twilio_sms_inbound.form").replace(b"%2B16505551234", quote(phone).encode())
    return QueuedEvent.build(
        tenant="demo", sender=phone, kind="twilio.message", content={"form": form.decode()}
    )


def second_message(doc: dict[str, Any]) -> dict[str, Any]:
    message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update(id="wamid.ANA-SECOND", timestamp=str(int(message["timestamp"]) + 60))
    return doc


def unknown_field() -> dict[str, Any]:
    doc = fixture_json("meta_text_phone_and_bsuid.json")
    change = doc["entry"][0]["changes"][0]
    change.update(field="business_username_update", value={"display_phone_number": "15550100001"})
    return doc


def merge() -> list[QueuedEvent]:
    """An SMS customer, then a WhatsApp customer who shares that phone: one customer (a merge)."""
    return [
        sms_from(JONAS_PHONE),
        *meta_events(fixture_json("meta_text_bsuid_only.json")),
        *meta_events(fixture_json("meta_contacts_request_answer.json")),
    ]


def test_the_ingest_function_calls_only_what_its_policy_grants(
    account: Provisioner, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_handler("ingest")
    module.ingest._sleep = lambda _: None
    # The handler keys its log fingerprints with the stack's key; the queued events this test builds
    # (as a webhook would) must not read that key outside an invocation: they use a key of their own.
    privacy.configure(None)
    queue = SqsRecords(str(account.get_att("InboundQueue", "Arn")))

    def invoke(*events: QueuedEvent) -> None:
        records = queue.records(*events)
        with recorder.invocation():
            answer = module.lambda_handler({"Records": records}, LambdaContext())
        assert answer["batchItemFailures"] == []

    ana = meta_events(fixture_json("meta_text_phone_and_bsuid.json"))
    invoke(*ana)  # a new customer
    invoke(*meta_events(second_message(fixture_json("meta_text_phone_and_bsuid.json"))))  # known
    invoke(*ana)  # redelivered: stored once, what it caused published again
    status = meta_events(fixture_json("meta_status_delivered_bsuid.json"))
    invoke(*status)
    invoke(*status)  # the same status again: not applied, published again
    invoke(*meta_events(fixture_json("meta_batch_messages_and_status.json")))
    invoke(*meta_events(fixture_json("meta_user_preferences_stop.json")))  # an identity-only change
    invoke(*meta_events(fixture_json("meta_system_user_changed_number.json")))  # a number change
    for event in merge():
        invoke(event)
    invoke(*meta_events(unknown_field()))  # kept, unrecognised

    store = DynamoIdentityStore()
    jonas = store.holders("demo", [Key("phone", JONAS_PHONE)])[Key("phone", JONAS_PHONE)]
    assert len(jonas.merged_from) == 1 and Key("bsuid", "DE.88201937465502911") in jonas.keys
    kept = [i for i in TableItem.scan() if i.pk.startswith("T#demo#U#")]
    assert len(kept) == 1

    def broken(events: Any) -> Any:
        raise ConnectionError("injected: the table is unreachable")

    monkeypatch.setattr(module.ingest, "handle", broken)  # a record failing on its last receive
    last = queue.records(*ana, receive_count=5)
    with recorder.invocation():
        assert module.lambda_handler({"Records": last}, LambdaContext())["batchItemFailures"] == []
    assert [b["kind"] for b in queued(account, "InboundDeadLetterQueue")] == ["meta.webhook"]
    assert_least_privilege(
        "IngestFunction",
        recorder,
        {
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",  # a transaction's puts, and the unrecognised event kept
            "dynamodb:UpdateItem",  # a transaction's message, and a status
            "dynamodb:GetItem",  # a redelivery's events, a status not applied
            "dynamodb:ConditionCheckItem",  # a transaction's check that the event was not erased (I10)
            "secretsmanager:GetSecretValue",  # the masking key, for that check
            "events:PutEvents",
            "sqs:SendMessage",  # a record failing on its last receive, dead-lettered by the function
        },
    )


# --------------------------------------------------------------------------- contacts API
def api_event(method: str, route: str, *, query: str = "", customer_id: str = "", body: Any = None) -> Any:
    """The payload 2.0 event API Gateway passes for ``route`` (as the local gateway builds it)."""
    raw = json.dumps(body).encode() if body is not None else b""
    return build_http_event(
        method=method,
        raw_path=route.replace("{customer_id}", customer_id),
        raw_query=query,
        headers=[("host", "127.0.0.1:3000"), ("content-type", "application/json")],
        body=raw,
        route_key=f"{method} {route}",
        path_parameters={"customer_id": customer_id} if customer_id else None,
    )


def test_the_contacts_and_messages_api_calls_only_what_its_policy_grants(
    account: Provisioner, recorder: Recorder
) -> None:
    # The contacts, by the test's own ingest (not recorded): Jonas, an SMS customer merged into him.
    ingest = Ingest(DynamoIdentityStore(), RecordingPublisher(), sleep=lambda _: None)
    for event in merge():
        ingest.handle(parse(event.body).events)
    module = load_handler("contacts_and_messages_api")

    def call(method: str, route: str, **request: Any) -> dict[str, Any]:
        return invoke_http(module, recorder, api_event(method, route, **request))

    found = call("GET", "/contacts", query=f"phone={quote(JONAS_PHONE)}")
    assert found["statusCode"] == 200, found
    jonas = json.loads(found["body"])
    assert len(jonas["merged_from"]) == 1
    timeline = call("GET", "/contacts/{customer_id}/timeline", customer_id=jonas["id"])
    assert timeline["statusCode"] == 200 and len(json.loads(timeline["body"])["items"]) >= 3
    send = {"idempotency_key": "order-42", "to": {"customer_id": jonas["id"]}, "text": "Shipped"}
    accepted = call("POST", "/messages", body=send)
    assert accepted["statusCode"] == 202, accepted
    (request,) = queued(account, "SendQueue")
    assert request["idempotency_key"] == "order-42"
    record = {"external_id": "crm-42", "phone": JONAS_PHONE, "name": "Jonas"}  # I11: updates him
    assert call("POST", "/contacts", body=record)["statusCode"] == 200
    batch = {"records": [record, {"external_id": "crm-43", "phone": "+15550100999"}]}
    assert call("POST", "/contacts/batch", body=batch)["statusCode"] == 200
    assert call("DELETE", "/contacts/{customer_id}", customer_id=jonas["id"])["statusCode"] == 204
    assert call("GET", "/contacts", query=f"id={jonas['id']}")["statusCode"] == 404

    assert recorder.indexes == {"gsi1"}
    assert_least_privilege(
        "ContactsAndMessagesApiFunction",
        recorder,
        {
            "secretsmanager:GetSecretValue",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",  # the timeline (gsi1), and erasure
            "dynamodb:UpdateItem",  # the send request accepted
            "dynamodb:PutItem",  # a business record's profile and keys (a transaction's puts)
            "dynamodb:BatchWriteItem",  # erasure: its deletes and suppressions
            "sqs:SendMessage",
            "events:PutEvents",  # CustomerErased
        },
    )


# --------------------------------------------------------------------------- dispatch
def test_the_dispatch_function_calls_only_what_its_policy_grants(
    dispatch_function: DispatchFunction,
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The function as deployed (its own Dispatch: DynamoDB, EventBridge, the send queue), the providers
    # scripted through the tenant cache; faults on clients made after the module is loaded again.
    fn = dispatch_function
    module = load_handler("dispatch")
    monkeypatch.setattr(
        module.dispatch, "_tenants", lambda tenant: fn.world.setup if tenant == "demo" else None
    )
    sqs = RecordingSqs(module._sqs())
    monkeypatch.setattr(module, "_sqs", lambda: sqs)
    deployed = DispatchFunction(module, fn.world, sqs, fn.queue_url, fn.queue_arn)
    faults = DynamoFaults()

    def invoke(body: dict[str, Any]) -> list[str]:
        deployed.enqueue(body)
        received = deployed.receive(wait=3)
        try:
            with recorder.invocation():
                return deployed.invoke(*received)
        finally:
            for message in received:
                deployed.done(message)

    try:
        # The module's clock is the real one: Ana's window (May 2026) is closed, so WhatsApp templates.
        faults.arm(DynamoFault("TransactWriteItems"))
        assert invoke(fn.world.doc(template=SHIPPED_TEMPLATE)) == []  # sent, not recorded: carried forward
        faults.clear()
        assert invoke(json.loads(sqs.sends[-1]["MessageBody"])) == []  # the follow-up: recorded
        fn.world.whatsapp.script.append("retry")
        refused = invoke(fn.world.doc(idempotency_key="order-44", template=SHIPPED_TEMPLATE))
        assert len(refused) == 1 and sqs.visibility  # refused: put back with a backoff
        status = {"tenant": "demo", "provider": "meta", "message_id": "wamid.1", "errors": [{"code": 131026}]}
        assert invoke({"detail-type": "MessageStatusChanged", "detail": status}) == []  # R7: one SMS
    finally:
        faults.close()
    assert len(fn.world.whatsapp.calls) == 2 and len(fn.world.sms.calls) == 1
    expected = {"sqs:SendMessage", "sqs:ChangeMessageVisibility", "events:PutEvents", "dynamodb:UpdateItem"}
    assert_least_privilege("DispatchFunction", recorder, expected)


# --------------------------------------------------------------------------- media
def test_the_media_function_and_erasure_of_media_call_only_what_their_policies_grant(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = ("MediaQueue", "MediaBucket", "MediaBucketPolicy", "EventBus", "MaskingKey", "SendQueue")
    with sandbox_providers() as (sandbox, base_url), emulated_account(*resources) as account:
        functions = ("MediaFunction", "ContactsAndMessagesApiFunction")
        for name, value in function_environment(account, *functions, **media_environment(base_url)).items():
            monkeypatch.setenv(name, value)
        media_module, api = load_handler("media"), load_handler("contacts_and_messages_api")
        queue = SqsMediaJobs(lambda: boto3.client("sqs"), str(account.ref("MediaQueue")))
        ingest = Ingest(DynamoIdentityStore(), RecordingPublisher(), sleep=lambda _: None, media_jobs=queue)
        doc = json.loads((REPO / "tests" / "fixtures" / "meta_message_types.json").read_bytes())
        for event in meta_events(doc):  # not recorded: a photo, a voice note, a video, a PDF, a sticker
            ingest.handle(parse(event.body).events)
        sandbox.media.update(
            {
                "1029384756102941": {"mime_type": "application/pdf", "size": 9 * 1024 * 1024},  # multipart
                "1029384756102939": {"mime_type": "audio/ogg"},
                "1029384756102940": {"mime_type": "video/mp4"},
                "1029384756102942": {"status": 503},  # the sticker fails: backed off
            }
        )
        sqs, url = boto3.client("sqs"), str(account.ref("MediaQueue"))
        arn = str(account.get_att("MediaQueue", "Arn"))
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])[
            "Messages"
        ]
        with recorder.invocation():
            answer = media_module.lambda_handler(build_sqs_event(messages, arn), LambdaContext())
        assert len(answer["batchItemFailures"]) == 1
        assert_least_privilege(
            "MediaFunction",
            recorder,
            {
                "secretsmanager:GetSecretValue",  # the tenant's token
                "dynamodb:GetItem",  # the attachment's state
                "dynamodb:UpdateItem",  # recorded stored
                "s3:GetObject",  # HeadObject: stored before?
                "s3:PutObject",  # the uploads, the PDF's in parts
                "sqs:ChangeMessageVisibility",  # the sticker's backoff
            },
        )
        assert resources_granting("MediaFunction", "s3:ListBucket") == [
            {"Fn::GetAtt": ["MediaBucket", "Arn"]}
        ]

        recorder.calls.clear()
        store = DynamoIdentityStore()
        lena = store.holders("demo", [Key("bsuid", "US.7261503849271650384")])[
            Key("bsuid", "US.7261503849271650384")
        ]
        timeline = invoke_http(
            api, recorder, api_event("GET", "/contacts/{customer_id}/timeline", customer_id=lena.id)
        )
        links = [
            i["media"]["url"]
            for i in json.loads(timeline["body"])["items"]
            if (i.get("media") or {}).get("url")
        ]
        assert len(links) == 4  # presigned with the function's role: s3:GetObject, no call
        assert (
            invoke_http(api, recorder, api_event("DELETE", "/contacts/{customer_id}", customer_id=lena.id))[
                "statusCode"
            ]
            == 204
        )
        assert "s3:DeleteObject" in recorder.calls
        assert recorder.calls - allowed_actions("ContactsAndMessagesApiFunction") == set()
        assert {"Fn::Sub": "${MediaBucket.Arn}/media/*"} in resources_granting(
            "ContactsAndMessagesApiFunction", "s3:GetObject"
        )
