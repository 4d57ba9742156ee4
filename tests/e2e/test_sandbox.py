"""The sandbox providers of the running local stack (contract section 4): a send to the fake Graph API or
the fake Twilio REST API lands in ``/_sandbox/outbox``, and its signed status webhooks / callbacks go
through the real webhook functions, the inbound queue and the ingest consumer into DynamoDB."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from infra.local import HttpResponse, StackClient
from tests.support import PHONE_NUMBER_ID, TWILIO_ACCOUNT, TWILIO_SMS_NUMBER, TWILIO_TOKEN

pytestmark = pytest.mark.e2e

ACCESS_TOKEN = "local-access-token"
GRAPH = f"/_sandbox/graph/v23.0/{PHONE_NUMBER_ID}/messages"
MESSAGES = f"/_sandbox/twilio/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages.json"

T = TypeVar("T")


@pytest.fixture
def sandbox(local_stack: StackClient) -> Iterator[StackClient]:
    """The stack with an empty outbox and default recipient behaviour, before and after the test."""
    for path in ("/_sandbox/outbox", "/_sandbox/recipients", "/_sandbox/callbacks"):
        assert local_stack.request("DELETE", path).status == 200
    yield local_stack
    local_stack.request("DELETE", "/_sandbox/recipients")


def a_phone() -> str:
    return f"+1555{random.randrange(10**7):07d}"


def graph_send(stack: StackClient, doc: dict[str, Any], token: str = ACCESS_TOKEN) -> HttpResponse:
    return stack.post(GRAPH, json_body=doc, headers={"Authorization": f"Bearer {token}"})


def twilio_send(stack: StackClient, form: dict[str, str], token: str = TWILIO_TOKEN) -> HttpResponse:
    auth = base64.b64encode(f"{TWILIO_ACCOUNT}:{token}".encode()).decode()
    return stack.post(MESSAGES, form=form, headers={"Authorization": f"Basic {auth}"})


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def message_item(stack: StackClient, provider: str, message_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = (
        stack.client("dynamodb")
        .get_item(
            TableName=stack.table_name,
            Key={"pk": {"S": f"T#demo#M#{provider}#{message_id}"}, "sk": {"S": "MSG"}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return item


def stored_status(stack: StackClient, provider: str, message_id: str, status: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        item = message_item(stack, provider, message_id)
        return item if item and item.get("status", {}).get("S") == status else None

    return wait_for(probe, f"{provider} message {message_id} stored as {status}")


def callbacks(stack: StackClient, message_id: str, count: int) -> list[dict[str, Any]]:
    """The sandbox's log of the status webhooks / callbacks it posted for one message, once ``count``."""

    def probe() -> list[dict[str, Any]] | None:
        log: list[dict[str, Any]] = stack.get("/_sandbox/callbacks").json()
        mine = [c for c in log if c["provider_message_id"] == message_id]
        return mine if len(mine) >= count else None

    return wait_for(probe, f"{count} callbacks for {message_id}")


def test_functions_are_pointed_at_the_sandbox(local_stack: StackClient) -> None:
    env = local_stack.outputs["environment"]
    assert env["META_GRAPH_BASE_URL"] == local_stack.base_url + "/_sandbox/graph"
    assert env["TWILIO_API_BASE_URL"] == local_stack.base_url + "/_sandbox/twilio"


def test_whatsapp_send_reaches_read(sandbox: StackClient) -> None:
    phone = a_phone()
    resp = graph_send(
        sandbox,
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": phone.lstrip("+"),
            "type": "text",
            "text": {"body": "Your order has shipped"},
        },
    )
    assert resp.status == 200, resp.text
    wamid = resp.json()["messages"][0]["id"]
    assert resp.json()["contacts"] == [{"input": phone.lstrip("+"), "wa_id": phone.lstrip("+")}]

    (entry,) = sandbox.get("/_sandbox/outbox").json()
    assert entry["at"]
    assert {k: v for k, v in entry.items() if k != "at"} == {
        "provider": "meta",
        "channel": "whatsapp",
        "to": phone,
        "recipient": None,
        "from": PHONE_NUMBER_ID,  # the sending number (R10)
        "type": "text",
        "text": "Your order has shipped",
        "template": None,
        "provider_message_id": wamid,
        "media": None,  # R13: none of these in a text message
        "buttons": None,
        "list": None,
    }

    item = stored_status(sandbox, "meta", wamid, "read")
    assert item["status_rank"]["N"] == "4"
    log = callbacks(sandbox, wamid, 3)
    # each signed status webhook was accepted by POST /webhooks/whatsapp, in order
    assert [(c["status"], c["http_status"]) for c in log] == [
        ("sent", 200),
        ("delivered", 200),
        ("read", 200),
    ]


def test_configured_whatsapp_failure_is_stored_with_its_code(sandbox: StackClient) -> None:
    bsuid = f"NL.{random.randrange(10**12)}"
    resp = sandbox.post(
        "/_sandbox/recipients", json_body={"whatsapp": {bsuid: {"status": "failed", "error_code": 131026}}}
    )
    assert resp.status == 200 and resp.json()["whatsapp"][bsuid] == {"status": "failed", "error_code": 131026}
    resp = graph_send(
        sandbox,
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "recipient": bsuid,
            "type": "template",
            "template": {"name": "order_shipped", "language": {"code": "en_US"}},
        },
    )
    assert resp.status == 200, resp.text
    wamid = resp.json()["messages"][0]["id"]
    item = stored_status(sandbox, "meta", wamid, "failed")
    assert [e["code"] for e in json.loads(item["errors"]["S"])] == [131026]
    (entry,) = sandbox.get("/_sandbox/outbox").json()
    assert (entry["recipient"], entry["template"], entry["to"]) == (bsuid, "order_shipped", None)


def test_sms_send_status_callbacks_are_accepted_and_stored(sandbox: StackClient) -> None:
    phone = a_phone()
    resp = twilio_send(
        sandbox,
        {
            "To": phone,
            "From": TWILIO_SMS_NUMBER,
            "Body": "Your code is 1234",
            "StatusCallback": sandbox.base_url + "/webhooks/twilio/status",
        },
    )
    assert resp.status == 201, resp.text
    sid = resp.json()["sid"]
    assert sid.startswith("SM") and len(sid) == 34 and resp.json()["status"] == "queued"
    (entry,) = sandbox.get("/_sandbox/outbox").json()
    assert (
        entry["provider"],
        entry["channel"],
        entry["to"],
        entry["from"],
        entry["text"],
        entry["provider_message_id"],
    ) == (
        "twilio",
        "sms",
        phone,
        TWILIO_SMS_NUMBER,
        "Your code is 1234",
        sid,
    )
    stored_status(sandbox, "twilio", sid, "delivered")
    log = callbacks(sandbox, sid, 2)
    # signed over the exact StatusCallback URL: POST /webhooks/twilio/status answered 200
    assert [(c["status"], c["http_status"]) for c in log] == [("sent", 200), ("delivered", 200)]


def test_configured_sms_errors(sandbox: StackClient) -> None:
    opted_out, unreachable = a_phone(), a_phone()
    sandbox.post(
        "/_sandbox/recipients",
        json_body={"sms": {opted_out: {"error_code": 21610}, unreachable: {"error_code": 30003}}},
    )
    resp = twilio_send(sandbox, {"To": opted_out, "From": TWILIO_SMS_NUMBER, "Body": "hi"})
    assert resp.status == 400
    assert resp.json()["code"] == 21610 and resp.json()["status"] == 400
    resp = twilio_send(
        sandbox,
        {
            "To": unreachable,
            "From": TWILIO_SMS_NUMBER,
            "Body": "hi",
            "StatusCallback": sandbox.base_url + "/webhooks/twilio/status",
        },
    )
    assert resp.status == 201
    item = stored_status(sandbox, "twilio", resp.json()["sid"], "undelivered")
    assert "30003" in item["errors"]["S"]
    outbox = sandbox.get("/_sandbox/outbox").json()
    assert [(e["to"], e.get("error_code")) for e in outbox] == [(opted_out, 21610), (unreachable, None)]


def test_wrong_credentials_send_nothing(sandbox: StackClient) -> None:
    resp = graph_send(
        sandbox, {"messaging_product": "whatsapp", "to": a_phone(), "text": {"body": "hi"}}, "nope"
    )
    assert resp.status == 401
    assert resp.json()["error"]["code"] == 190
    resp = twilio_send(sandbox, {"To": a_phone(), "From": TWILIO_SMS_NUMBER, "Body": "hi"}, token="nope")
    assert resp.status == 401
    assert resp.json()["code"] == 20003
    assert sandbox.get("/_sandbox/outbox").json() == []


def test_delete_resets(sandbox: StackClient) -> None:
    phone = a_phone()
    sandbox.post("/_sandbox/recipients", json_body={"whatsapp": {phone: {"sync_error_code": 131047}}})
    refused = graph_send(sandbox, {"messaging_product": "whatsapp", "to": phone, "text": {"body": "hi"}})
    assert refused.status == 400 and refused.json()["error"]["code"] == 131047
    assert sandbox.get("/_sandbox/outbox").json()[0]["error_code"] == 131047

    assert sandbox.request("DELETE", "/_sandbox/recipients").json() == {"whatsapp": {}, "sms": {}}
    assert sandbox.request("DELETE", "/_sandbox/outbox").json() == {"deleted": 1}
    assert sandbox.get("/_sandbox/outbox").json() == []
    accepted = graph_send(sandbox, {"messaging_product": "whatsapp", "to": phone, "text": {"body": "hi"}})
    assert accepted.status == 200
    assert [e["provider_message_id"] for e in sandbox.get("/_sandbox/outbox").json()] == [
        accepted.json()["messages"][0]["id"]
    ]
