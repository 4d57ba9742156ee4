"""The webhook functions end to end in-process: real handlers, Secrets Manager and SQS FIFO in moto.

Every refusal has its exact status code and leaves the queue empty; every accepted event is on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from crossroute.inbound_queue import SqsInboundQueue
from tests.support import (
    FORM_HEADERS,
    JSON_HEADERS,
    PUBLIC_BASE_URL,
    REPO,
    LambdaContext,
    fixture_bytes,
    http_event,
    load_handler,
    meta_signature,
    registry_document,
    twilio_signature,
)


@pytest.fixture(scope="module")
def aws(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq = sqs.create_queue(QueueName="inbound-dlq.fifo", Attributes={"FifoQueue": "true"})
        url = sqs.create_queue(QueueName="inbound.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="tenants", SecretString=registry_document()
        )
        env = {
            "TENANTS_SECRET_ID": secret["ARN"],
            "INBOUND_QUEUE_URL": url,
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        }
        for key, value in env.items():
            monkeypatch_module.setenv(key, value)
        yield env | {"dlq": dlq["QueueUrl"]}


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
        yield mp


@pytest.fixture(scope="module")
def whatsapp(aws: dict[str, str]) -> ModuleType:
    return load_handler("whatsapp_webhook")


@pytest.fixture(scope="module")
def twilio_fn(aws: dict[str, str]) -> ModuleType:
    return load_handler("twilio_webhook")


@pytest.fixture
def queued(aws: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
    """What the test put on the inbound queue (read after the test body, via the list it yields)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = _Queue(sqs, aws["INBOUND_QUEUE_URL"])
    queue.drain()
    yield queue  # type: ignore[misc]


class _Queue:
    def __init__(self, sqs: Any, url: str) -> None:
        self._sqs, self._url = sqs, url

    def drain(self) -> None:
        receive = self._sqs.receive_message
        while messages := receive(QueueUrl=self._url, MaxNumberOfMessages=10).get("Messages"):
            for m in messages:
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=m["ReceiptHandle"])

    def read(self) -> list[dict[str, Any]]:
        messages = self._sqs.receive_message(
            QueueUrl=self._url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=0
        ).get("Messages", [])
        return [{"body": json.loads(m["Body"]), "attributes": m["Attributes"]} for m in messages]


def _call(module: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = module.lambda_handler(event, LambdaContext())
    return result


def _meta_post(raw: bytes, *, headers: dict[str, str] | None = None) -> dict[str, Any]:
    hdrs = JSON_HEADERS | {"X-Hub-Signature-256": meta_signature(raw)} if headers is None else headers
    return http_event("POST", "/webhooks/whatsapp", body=raw, headers=hdrs)


def _twilio_post(raw: bytes, path: str = "/webhooks/twilio", *, headers: dict[str, str] | None = None) -> Any:
    hdrs = (
        FORM_HEADERS | {"X-Twilio-Signature": twilio_signature(PUBLIC_BASE_URL + path, raw)}
        if headers is None
        else headers
    )
    return http_event("POST", path, body=raw, headers=hdrs, base64_body=True)


# ---------------------------------------------------------------- accepted


def test_meta_handshake_echoes_the_challenge_as_plain_text(whatsapp: ModuleType) -> None:
    query = "hub.mode=subscribe&hub.verify_token=local-verify-token&hub.challenge=1158201444"
    answer = _call(whatsapp, http_event("GET", "/webhooks/whatsapp", query=query))
    assert answer["statusCode"] == 200
    assert answer["headers"]["Content-Type"] == "text/plain"
    assert answer["headers"]["X-Content-Type-Options"] == "nosniff"
    assert answer["body"] == "1158201444"


def test_meta_handshake_with_a_wrong_token_is_403(whatsapp: ModuleType) -> None:
    query = "hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1158201444"
    answer = _call(whatsapp, http_event("GET", "/webhooks/whatsapp", query=query))
    assert answer["statusCode"] == 403 and "1158201444" not in answer["body"]


def test_a_signed_meta_batch_is_queued_per_sender_in_fifo_groups(whatsapp: ModuleType, queued: Any) -> None:
    answer = _call(whatsapp, _meta_post(fixture_bytes("meta_batch_messages_and_status.json")))
    assert answer["statusCode"] == 200
    got = queued.read()
    assert len(got) == 2 and {m["body"]["tenant"] for m in got} == {"demo"}
    assert {m["attributes"]["MessageGroupId"] for m in got} == {got[0]["attributes"]["MessageGroupId"]}


def test_a_meta_redelivery_is_deduplicated_by_the_queue(whatsapp: ModuleType, queued: Any) -> None:
    raw = fixture_bytes("meta_text_bsuid_only.json")
    assert _call(whatsapp, _meta_post(raw))["statusCode"] == 200
    assert _call(whatsapp, _meta_post(raw))["statusCode"] == 200
    assert len(queued.read()) == 1


@pytest.mark.parametrize(
    ("fixture", "path", "kind"),
    [
        ("twilio_sms_inbound.form", "/webhooks/twilio", "twilio.message"),
        ("twilio_whatsapp_inbound_bsuid.form", "/webhooks/twilio", "twilio.message"),
        ("twilio_status_undelivered.form", "/webhooks/twilio/status", "twilio.status"),
    ],
)
def test_a_signed_twilio_callback_is_queued_and_answered_with_empty_twiml(
    twilio_fn: ModuleType, queued: Any, fixture: str, path: str, kind: str
) -> None:
    raw = fixture_bytes(fixture)
    answer = _call(twilio_fn, _twilio_post(raw, path))
    assert answer["statusCode"] == 200
    assert answer["headers"]["Content-Type"] == "text/xml"
    assert answer["body"].replace(" ", "") == '<?xmlversion="1.0"encoding="UTF-8"?><Response/>'
    (message,) = queued.read()
    assert message["body"]["kind"] == kind and message["body"]["form"] == raw.decode()


# ---------------------------------------------------------------- refused: exact status, nothing queued

_TEXT = fixture_bytes("meta_text_bsuid_only.json")
_UNKNOWN = _TEXT.replace(b"100000000000001", b"100000000000999")


def _nested(depth: int) -> bytes:
    """The signed text message, with a field nesting lists ``depth`` deep."""
    deep = b'"deep": ' + b"[" * depth + b"]" * depth + b', "messaging_product"'
    return _TEXT.replace(b'"messaging_product"', deep)


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (_meta_post(b""), 400),
        (_meta_post(b"\xff\xfe not utf-8"), 400),
        (_meta_post(b"{truncated"), 400),
        (_meta_post(_TEXT, headers=JSON_HEADERS), 401),
        (
            _meta_post(_TEXT, headers=JSON_HEADERS | {"X-Hub-Signature-256": meta_signature(_TEXT, "wrong")}),
            401,
        ),
        (_meta_post(_TEXT, headers={"X-Hub-Signature-256": meta_signature(_TEXT)}), 415),
        (_meta_post(_TEXT, headers=FORM_HEADERS | {"X-Hub-Signature-256": meta_signature(_TEXT)}), 415),
        (_meta_post(b" " * (4 * 1024 * 1024 + 1)), 413),
        (_meta_post(_UNKNOWN), 404),
        (http_event("GET", "/webhooks/whatsapp"), 403),
        (_meta_post(_nested(100_000)), 400),
        (_meta_post(_nested(70)), 400),
        (
            http_event(
                "GET",
                "/webhooks/whatsapp",
                query="hub.mode=subscribe&hub.verify_token=local-verify-token&hub.challenge=",
            ),
            400,
        ),
    ],
    ids=[
        "empty",
        "non-utf8",
        "malformed-json",
        "no-signature",
        "wrong-signature",
        "no-content-type",
        "form-content-type",
        "oversized",
        "unknown-phone-number-id",
        "handshake-without-params",
        "nested-100000-deep",
        "nested-70-deep",
        "handshake-empty-challenge",
    ],
)
def test_meta_bad_input(whatsapp: ModuleType, queued: Any, event: dict[str, Any], status: int) -> None:
    answer = _call(whatsapp, event)
    assert answer["statusCode"] == status
    assert json.loads(answer["body"])["error"]
    assert queued.read() == []


_SMS = fixture_bytes("twilio_sms_inbound.form")
_SMS_UNKNOWN = _SMS.replace(b"To=%2B15550100002", b"To=%2B15559999999")


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (_twilio_post(b""), 400),
        (_twilio_post(b"Body=%ff%fe"), 400),
        (_twilio_post(b"AccountSid=AC00000000000000000000000000000000&Body=hi"), 400),
        (_twilio_post(_SMS, headers=FORM_HEADERS), 401),
        (
            _twilio_post(
                _SMS,
                headers=FORM_HEADERS | {"X-Twilio-Signature": twilio_signature(PUBLIC_BASE_URL + "/x", _SMS)},
            ),
            401,
        ),
        (
            _twilio_post(
                _SMS,
                headers=FORM_HEADERS
                | {"X-Twilio-Signature": twilio_signature(PUBLIC_BASE_URL, _SMS, "wrong")},
            ),
            401,
        ),
        (
            _twilio_post(
                _SMS,
                headers={"X-Twilio-Signature": twilio_signature(PUBLIC_BASE_URL + "/webhooks/twilio", _SMS)},
            ),
            415,
        ),
        (_twilio_post(b"Body=" + b"x" * 70_000), 413),
        (_twilio_post(_SMS_UNKNOWN), 404),
        (_twilio_post(_SMS, "/webhooks/twilio/status"), 400),
    ],
    ids=[
        "empty",
        "non-utf8",
        "missing-parameters",
        "no-signature",
        "signed-for-another-path",
        "wrong-token",
        "no-content-type",
        "oversized",
        "unknown-number",
        "status-without-MessageStatus",
    ],
)
def test_twilio_bad_input(twilio_fn: ModuleType, queued: Any, event: dict[str, Any], status: int) -> None:
    answer = _call(twilio_fn, event)
    assert answer["statusCode"] == status
    assert json.loads(answer["body"])["error"]
    assert queued.read() == []


def test_a_route_the_function_does_not_serve_is_404(whatsapp: ModuleType, queued: Any) -> None:
    answer = _call(whatsapp, http_event("POST", "/webhooks/twilio", body=_TEXT, headers=JSON_HEADERS))
    assert answer["statusCode"] == 404
    assert queued.read() == []


def test_when_the_queue_cannot_store_the_event_the_provider_gets_a_5xx(
    whatsapp: ModuleType, aws: dict[str, str], queued: Any
) -> None:
    working = whatsapp.wiring.queue
    missing = aws["INBOUND_QUEUE_URL"].replace("inbound.fifo", "gone.fifo")
    whatsapp.wiring.queue = SqsInboundQueue(boto3.client("sqs", region_name="us-east-1"), missing)
    try:
        answer = _call(whatsapp, _meta_post(_TEXT))
    finally:
        whatsapp.wiring.queue = working
    assert answer["statusCode"] == 503
    assert queued.read() == []


def test_no_phone_number_bsuid_username_or_body_reaches_the_logs(
    whatsapp: ModuleType, twilio_fn: ModuleType, queued: Any
) -> None:
    # Capture on the root logger (a package module's logger is named after the service as it was when
    # the module was first imported, by whichever test), formatted as deployed (Powertools' JSON, extra
    # keys included), at INFO whatever other tests did to logging.
    service = logging.getLogger()
    formatter = whatsapp.logger.registered_formatter
    lines: list[str] = []
    handler = logging.Handler(level=logging.INFO)
    handler.emit = lambda record: lines.append(formatter.format(record))  # type: ignore[method-assign]
    level, service.level = service.level, logging.INFO
    service.addHandler(handler)
    try:
        for name in ("meta_text_phone_and_bsuid.json", "meta_text_bsuid_only.json"):
            assert _call(whatsapp, _meta_post(fixture_bytes(name)))["statusCode"] == 200
        _call(whatsapp, _meta_post(_UNKNOWN))
        form = fixture_bytes("twilio_whatsapp_inbound_bsuid.form")
        assert _call(twilio_fn, _twilio_post(form))["statusCode"] == 200
    finally:
        service.removeHandler(handler)
        service.level = level
    logs = "\n".join(lines)
    assert "webhook queued" in logs and "unknown_channel" in logs
    # Nor an unkeyed hash of one, which enumerating numbers would reverse (the FIFO group is one).
    for sender in ("whatsapp:US.20938475610293847", "5511987654321", "BR.1502576394655843"):
        assert hashlib.sha256(sender.encode()).hexdigest()[:12] not in logs
    for secret in (
        "5511987654321",
        "BR.1502576394655843",
        "DE.88201937465502911",
        "US.20938475610293847",
        "ana.lima",
        "jonas_w",
        "mia.k",
        "Meu pedido",
        "Paket",
        "hello from whatsapp",
        "local-app-secret",
        "local-twilio-token",
    ):
        assert secret not in logs


def test_the_handlers_import_without_calling_aws(aws: dict[str, str]) -> None:
    # Import builds the SQS client (init phase) but reads no secret: no AWS API call at import.
    path = Path(REPO / "functions" / "twilio_webhook" / "app.py")
    module = load_handler("twilio_webhook")
    assert module.__file__ and Path(module.__file__) == path
    assert "registry" not in vars(module.wiring) and isinstance(module.wiring.queue, SqsInboundQueue)


def _emf(out: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [doc for doc in docs if "_aws" in doc]


def test_the_webhooks_count_accepted_and_rejected_posts_as_emf(
    whatsapp: ModuleType, queued: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert _call(whatsapp, _meta_post(_TEXT))["statusCode"] == 200
    assert (
        _call(whatsapp, _meta_post(_TEXT, headers=JSON_HEADERS | {"X-Hub-Signature-256": "sha256=00"}))[
            "statusCode"
        ]
        == 401
    )
    docs = _emf(capsys.readouterr().out)
    accepted = [d for d in docs if "WebhookAccepted" in d]
    rejected = [d for d in docs if "WebhookRejected" in d]
    assert [d["WebhookAccepted"] for d in accepted] == [[1.0]]
    assert [(d["reason"], d["WebhookRejected"]) for d in rejected] == [("bad_signature", [1.0])]
    for doc in docs:
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "crossroute" and doc["service"] == "crossroute"
        assert "US." not in json.dumps(doc) and "+55" not in json.dumps(doc)  # no identifier anywhere
