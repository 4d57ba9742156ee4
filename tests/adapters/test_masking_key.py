"""The masking key reaches every function that keys a hash with it, and only those; the webhooks key the
inbound queue's FIFO group ids with it, reading it once per container, on the first event.

``test_least_privilege.py`` checks the actions each function calls; here, which secret it reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.client import BaseClient

from crossroute import privacy
from crossroute.inbound_queue import group_id
from infra.local.emulated import emulated_account
from infra.local.provision import Provisioner
from infra.template import load_template
from tests.support import (
    FORM_HEADERS,
    PUBLIC_BASE_URL,
    REPO,
    LambdaContext,
    fixture_bytes,
    function_environment,
    http_event,
    load_handler,
    twilio_signature,
)

MASKING_KEY = {"Ref": "MaskingKey"}
SMS_SENDER = "+16505551234"  # From in twilio_sms_inbound.form


def functions() -> dict[str, dict[str, Any]]:
    resources = load_template(REPO / "template.yaml")["Resources"]
    return {
        name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"
    }


def secrets_granted(properties: dict[str, Any]) -> list[Any]:
    return [
        statement["Resource"]
        for policy in properties.get("Policies", [])
        for statement in policy.get("Statement", [])
        if statement.get("Effect") == "Allow" and "secretsmanager:GetSecretValue" in statement["Action"]
    ]


def handler_source(properties: dict[str, Any]) -> str:
    return (REPO / str(properties["CodeUri"]) / "app.py").read_text()


@pytest.mark.parametrize("function", sorted(functions()))
def test_a_function_that_keys_hashes_is_given_the_masking_key_and_may_read_it(function: str) -> None:
    properties = functions()[function]
    env = properties.get("Environment", {}).get("Variables", {})
    given = env.get("MASKING_KEY_SECRET_ID") == MASKING_KEY
    source = handler_source(properties)
    # Log tags and group ids (crossroute.privacy), or erasure tombstones (crossroute.config.masking_key).
    uses = bool(re.search(r"privacy\.configure(_from_env)?\(|masking_key\(", source))
    assert given == (MASKING_KEY in secrets_granted(properties)) == uses, function


@pytest.mark.parametrize("function", ["WhatsAppWebhookFunction", "TwilioWebhookFunction"])
def test_the_webhooks_are_given_the_masking_key(function: str) -> None:
    # Their FIFO group ids would otherwise be per-container: one sender's events out of order.
    assert functions()[function]["Environment"]["Variables"]["MASKING_KEY_SECRET_ID"] == MASKING_KEY
    assert "privacy.configure_from_env()" in handler_source(functions()[function])


@dataclass
class SecretReads:
    ids: list[str] = field(default_factory=list)


@pytest.fixture
def twilio_webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Provisioner, SecretReads]]:
    """The Twilio webhook's handler, as deployed, in a fresh account; the secrets it reads recorded."""
    reads = SecretReads()
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def make_api_call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "GetSecretValue":
            reads.ids.append(params["SecretId"])
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    with emulated_account("InboundQueue", "MaskingKey") as account:
        env = function_environment(account, "TwilioWebhookFunction", PUBLIC_BASE_URL=PUBLIC_BASE_URL)
        # Modules imported first here keep their logger names for the process (crossroute.log): as
        # when imported without the template's service name, which the log tests of other modules expect.
        env.pop("POWERTOOLS_SERVICE_NAME", None)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        module = load_handler("twilio_webhook")
        reads.ids.clear()  # the registry document written by function_environment
        yield module, account, reads
    parameters.clear_caches()  # type: ignore[no-untyped-call]


def post_sms(module: ModuleType, body: str = "Where+is+my+order%3F") -> dict[str, Any]:
    raw = fixture_bytes("twilio_sms_inbound.form").replace(b"Where+is+my+order%3F", body.encode())
    path = "/webhooks/twilio"
    headers = FORM_HEADERS | {"X-Twilio-Signature": twilio_signature(PUBLIC_BASE_URL + path, raw)}
    event = http_event("POST", path, body=raw, headers=headers, base64_body=True)
    answer: dict[str, Any] = module.lambda_handler(event, LambdaContext())
    return answer


def group_ids(account: Provisioner) -> list[str]:
    sqs, url = boto3.client("sqs"), str(account.ref("InboundQueue"))
    found = []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageGroupId"]
    ).get("Messages"):
        for message in messages:
            found.append(message["Attributes"]["MessageGroupId"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def test_the_group_id_is_keyed_with_the_stacks_masking_key_read_once_per_container(
    twilio_webhook: tuple[ModuleType, Provisioner, SecretReads],
) -> None:
    module, account, reads = twilio_webhook
    assert reads.ids == []  # importing the handler reads no secret
    assert post_sms(module)["statusCode"] == 200
    tenants, masking = str(account.ref("TenantsSecret")), str(account.ref("MaskingKey"))
    assert sorted(reads.ids) == sorted([tenants, masking])  # the cold invocation: one read of each
    assert post_sms(module, body="Thanks")["statusCode"] == 200  # the same sender's next message
    assert len(reads.ids) == 2  # warm: none
    (first, again) = group_ids(account)
    assert first == again
    key = boto3.client("secretsmanager").get_secret_value(SecretId=masking)["SecretString"].encode()
    privacy.configure(lambda: key)  # what any container of the stack computes
    assert first == group_id("demo", SMS_SENDER)
    privacy.configure(None)
    assert first != group_id("demo", SMS_SENDER)  # not the key of this process


def test_without_the_masking_key_nothing_is_queued_and_the_provider_retries(
    twilio_webhook: tuple[ModuleType, Provisioner, SecretReads],
) -> None:
    module, account, _ = twilio_webhook
    boto3.client("secretsmanager").delete_secret(
        SecretId=str(account.ref("MaskingKey")), ForceDeleteWithoutRecovery=True
    )
    answer = post_sms(module)
    assert answer["statusCode"] == 503 and "masking key unavailable" in answer["body"]
    assert group_ids(account) == []
