"""The webhook functions with a tenant registry that is partly or wholly unusable (Secrets Manager and SQS in
moto, real handlers): a malformed tenant is left out and the others are served; with no usable registry
every webhook answers 503 ``registry_unavailable`` (the provider retries), never 500, and queues nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from itertools import count
from typing import Any

import boto3
import pytest
from moto import mock_aws

from crossroute.config import Settings
from crossroute.webhooks.errors import NoRegistry
from crossroute.webhooks.http import Wiring
from tests.support import (
    FORM_HEADERS,
    JSON_HEADERS,
    LOCAL_TENANT,
    PUBLIC_BASE_URL,
    VERIFY_TOKEN,
    LambdaContext,
    fixture_bytes,
    http_event,
    load_handler,
    meta_signature,
    registry_document,
    twilio_signature,
)

# Powertools caches secrets by name for the process: each test reads a secret of its own.
_SECRETS = count()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="inbound.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        monkeypatch.setenv("INBOUND_QUEUE_URL", url)
        monkeypatch.setenv("PUBLIC_BASE_URL", PUBLIC_BASE_URL)
        yield _Stack(sqs, url, monkeypatch)


class _Stack:
    def __init__(self, sqs: Any, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sqs, self.url, self.monkeypatch = sqs, url, monkeypatch

    def handlers(self, registry: str) -> tuple[Any, Any]:
        """The two webhook functions, cold, reading ``registry`` from a secret."""
        secret = boto3.client("secretsmanager").create_secret(
            Name=f"tenants-{next(_SECRETS)}", SecretString=registry
        )
        self.monkeypatch.setenv("TENANTS_SECRET_ID", secret["ARN"])
        return load_handler("whatsapp_webhook", "registry_whatsapp"), load_handler(
            "twilio_webhook", "registry_twilio"
        )

    def queued(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def _requests() -> list[dict[str, Any]]:
    meta_raw = fixture_bytes("meta_text_bsuid_only.json")
    twilio_raw = fixture_bytes("twilio_sms_inbound.form")
    twilio_sig = twilio_signature(PUBLIC_BASE_URL + "/webhooks/twilio", twilio_raw)
    return [
        http_event(
            "GET",
            "/webhooks/whatsapp",
            query=f"hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1",
        ),
        http_event(
            "POST",
            "/webhooks/whatsapp",
            body=meta_raw,
            headers=JSON_HEADERS | {"X-Hub-Signature-256": meta_signature(meta_raw)},
        ),
        http_event(
            "POST",
            "/webhooks/twilio",
            body=twilio_raw,
            headers=FORM_HEADERS | {"X-Twilio-Signature": twilio_sig},
            base64_body=True,
        ),
    ]


def _answers(whatsapp: Any, twilio: Any) -> list[dict[str, Any]]:
    answers = []
    for event in _requests():
        handler = twilio if "twilio" in event["rawPath"] else whatsapp
        answers.append(handler.lambda_handler(event, LambdaContext()))
    return answers


@pytest.mark.parametrize(
    "registry",
    ["not json", "[]", '{"tenants": {"demo": {"default_region": "usa"}}}'],
    ids=["not-json", "not-a-registry", "no-valid-tenant"],
)
def test_with_no_usable_registry_every_webhook_answers_503(stack: _Stack, registry: str) -> None:
    answers = _answers(*stack.handlers(registry))
    assert [a["statusCode"] for a in answers] == [503, 503, 503]
    assert {json.loads(a["body"])["error"] for a in answers} == {"registry_unavailable"}
    assert stack.queued() == 0


def test_a_malformed_tenant_is_left_out_and_the_others_are_served(
    stack: _Stack, caplog: pytest.LogCaptureFixture
) -> None:
    broken = {"twilio": {"account_sid": "AC9", "auth_token": "broken-token", "sms_numbers": "+15550109999"}}
    with caplog.at_level(logging.WARNING):
        answers = _answers(*stack.handlers(registry_document(broken=broken, demo=LOCAL_TENANT)))
    assert [a["statusCode"] for a in answers] == [200, 200, 200]
    assert stack.queued() == 2
    left_out = [r for r in caplog.records if r.getMessage() == "tenant left out of the registry"]
    assert {(r.tenant, r.path) for r in left_out} == {("broken", "$.tenants.broken.twilio.sms_numbers")}
    assert "broken-token" not in caplog.text and "+15550109999" not in caplog.text


def test_a_registry_secret_that_cannot_be_read_is_503_too(stack: _Stack) -> None:
    stack.handlers(registry_document())
    stack.monkeypatch.setenv(
        "TENANTS_SECRET_ID", "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf"
    )
    answers = _answers(
        load_handler("whatsapp_webhook", "registry_whatsapp"),
        load_handler("twilio_webhook", "registry_twilio"),
    )
    assert [a["statusCode"] for a in answers] == [503, 503, 503]
    assert stack.queued() == 0


def test_the_wiring_reports_each_unusable_document_to_on_invalid(stack: _Stack) -> None:
    stack.handlers("not json")  # the secret
    reasons: list[str] = []
    wiring = Wiring(Settings.from_env(), on_invalid=reasons.append)
    with pytest.raises(NoRegistry):
        wiring.attempt(lambda registry: registry.tenants)
    assert reasons == ["not_json"]


def test_with_no_usable_registry_the_contacts_and_messages_api_answers_503_too(stack: _Stack) -> None:
    stack.handlers("[]")  # the secret, unusable
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="identity",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk")],
        BillingMode="PAY_PER_REQUEST",
    )
    key = boto3.client("secretsmanager").create_secret(Name=f"mask-{next(_SECRETS)}", SecretString="k" * 64)
    for name, value in {
        "TABLE_NAME": "identity",
        "SEND_QUEUE_URL": stack.url,
        "MASKING_KEY_SECRET_ID": key["ARN"],
    }.items():
        stack.monkeypatch.setenv(name, value)
    api = load_handler("contacts_and_messages_api", "registry_api")
    send = json.dumps({"idempotency_key": "k-1", "to": {"phone": "+15550123456"}, "text": "hi"}).encode()
    answers = [
        api.lambda_handler(http_event("GET", "/contacts", query="phone=%2B15550123456"), LambdaContext()),
        api.lambda_handler(http_event("POST", "/messages", body=send, headers=JSON_HEADERS), LambdaContext()),
    ]
    assert [a["statusCode"] for a in answers] == [503, 503]
    assert {json.loads(a["body"])["type"] for a in answers} == {"urn:crossroute:problem:registry-unavailable"}
    assert {a["headers"]["Content-Type"] for a in answers} == {"application/problem+json"}
    assert all(a["headers"]["Retry-After"] for a in answers)
    assert stack.queued() == 0
