"""The webhooks as providers see them, on a local stack whose consumers are off
(``CROSSROUTE_EVENT_SOURCES=off``): signed fixtures are answered 200 and found on the inbound queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local import StackClient, StackProcess
from tests.support import CORE_FIXTURES, fixture_bytes, meta_signature, post_meta, post_twilio

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def quiet_stack() -> Iterator[StackClient]:
    stack = StackProcess(env={"CROSSROUTE_EVENT_SOURCES": "off"})
    client = stack.start(timeout=30)
    try:
        assert client.outputs["event_sources"] == []
        yield client
    finally:
        stack.stop()


def queued(stack: StackClient) -> list[dict[str, Any]]:
    # The webhook answered after SendMessageBatch: what it queued is there already.
    messages = stack.drain_queue("InboundQueue", wait_seconds=0.2)
    return [json.loads(m["Body"]) for m in messages]


@pytest.mark.parametrize("name", sorted(p.name for p in CORE_FIXTURES.glob("meta_*.json")))
def test_every_signed_meta_fixture_is_queued_whole(quiet_stack: StackClient, name: str) -> None:
    quiet_stack.drain_queue("InboundQueue", wait_seconds=0.2)
    raw = fixture_bytes(name)
    answer = post_meta(quiet_stack, raw)
    assert (answer.status, answer.text) == (200, "EVENT_RECEIVED")
    bodies = queued(quiet_stack)
    assert bodies and {b["tenant"] for b in bodies} == {"demo"}
    assert {b["kind"] for b in bodies} == {"meta.webhook"}
    original = json.loads(raw)
    # Split per sender, nothing lost: every item of every list comes back exactly once.
    for key in ("messages", "statuses", "user_preferences"):
        sent = [i for e in original["entry"] for c in e["changes"] for i in c["value"].get(key, [])]
        got = [
            i
            for b in bodies
            for e in b["payload"]["entry"]
            for c in e["changes"]
            for i in c["value"].get(key, [])
        ]
        assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, sent))


@pytest.mark.parametrize(
    ("name", "path", "kind"),
    [
        ("twilio_sms_inbound.form", "/webhooks/twilio", "twilio.message"),
        ("twilio_sms_stop.form", "/webhooks/twilio", "twilio.message"),
        ("twilio_whatsapp_inbound_bsuid.form", "/webhooks/twilio", "twilio.message"),
        ("twilio_status_undelivered.form", "/webhooks/twilio/status", "twilio.status"),
    ],
)
def test_every_signed_twilio_fixture_is_queued_raw(
    quiet_stack: StackClient, name: str, path: str, kind: str
) -> None:
    quiet_stack.drain_queue("InboundQueue", wait_seconds=0.2)
    raw = fixture_bytes(name)
    answer = post_twilio(quiet_stack, raw, path)
    assert answer.status == 200 and answer.headers.get("content-type", "").startswith("text/xml")
    assert "<Response/>" in answer.text
    (body,) = queued(quiet_stack)
    assert (body["tenant"], body["kind"], body["form"]) == ("demo", kind, raw.decode())


def test_a_bad_signature_over_http_is_401_and_queues_nothing(quiet_stack: StackClient) -> None:
    quiet_stack.drain_queue("InboundQueue", wait_seconds=0.2)
    raw = fixture_bytes("meta_text_bsuid_only.json")
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(raw, "guess")}
    assert quiet_stack.post("/webhooks/whatsapp", body=raw, headers=headers).status == 401
    form = fixture_bytes("twilio_sms_inbound.form")
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "AAAA"}
    assert quiet_stack.post("/webhooks/twilio", body=form, headers=headers).status == 401
    assert queued(quiet_stack) == []


def test_the_handshake_over_http(quiet_stack: StackClient) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "local-verify-token", "hub.challenge": "42"}
    answer = quiet_stack.get("/webhooks/whatsapp", query=query)
    assert (answer.status, answer.text) == (200, "42")
    assert answer.headers.get("content-type", "").startswith("text/plain")
    assert quiet_stack.get("/webhooks/whatsapp", query={**query, "hub.verify_token": "x"}).status == 403
