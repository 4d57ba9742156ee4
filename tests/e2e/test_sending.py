"""Replies as a user of the local stack sees them: send requests in (POST /messages, EventBridge,
the send queue), messages out through the real provider clients to the sandbox providers (contract §4, §7)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from crossroute.routing.pacing import PAIR_BURST, PAIR_INTERVAL
from infra.local import StackClient
from tests.support import (
    contact,
    eventually,
    new_bsuid,
    new_phone,
    outbox,
    personal,
    post_meta,
    post_twilio,
    send,
    timeline,
    whatsapp_customer,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_sandbox")]
TEMPLATE = {"name": "order_shipped", "language": "en_US", "category": "utility", "components": []}


def test_inside_the_window_a_reply_goes_out_as_whatsapp_text_to_the_phone(local_stack: StackClient) -> None:
    customer_id, phone, _ = whatsapp_customer(local_stack)
    send(local_stack, to={"customer_id": customer_id}, text="Your order has shipped")
    (sent,) = eventually(lambda: outbox(local_stack, channel="whatsapp"))
    assert (sent["to"], sent["recipient"], sent["type"], sent["text"]) == (
        phone,
        None,
        "text",
        "Your order has shipped",
    )
    assert outbox(local_stack, channel="sms") == []


def test_the_same_idempotency_key_is_the_same_request_and_one_message(local_stack: StackClient) -> None:
    customer_id, _, _ = whatsapp_customer(local_stack)
    body = {
        "idempotency_key": f"order-{time.time_ns()}",
        "to": {"customer_id": customer_id},
        "text": "Shipped",
    }
    first = local_stack.post("/messages", json_body=body).json()["request_id"]
    second = local_stack.post("/messages", json_body=body).json()["request_id"]
    assert first == second
    eventually(lambda: outbox(local_stack, channel="whatsapp"))
    time.sleep(1.0)
    assert len(outbox(local_stack)) == 1


def test_outside_the_window_whatsapp_needs_a_template(local_stack: StackClient) -> None:
    customer_id, _, _ = whatsapp_customer(local_stack, minutes_ago=60 * 25)
    send(local_stack, to={"customer_id": customer_id}, template=TEMPLATE, channels=["whatsapp"])
    (sent,) = eventually(lambda: outbox(local_stack, channel="whatsapp"))
    assert (sent["type"], sent["template"]) == ("template", "order_shipped")


def test_an_authentication_template_never_goes_to_a_bsuid_only_user(local_stack: StackClient) -> None:
    bsuid = new_bsuid("DE")
    assert (
        post_meta(
            local_stack, personal("meta_text_bsuid_only.json", **{"DE.88201937465502911": bsuid})
        ).status
        == 200
    )
    customer = eventually(lambda: contact(local_stack, bsuid=bsuid))
    auth = {**TEMPLATE, "name": "login_code", "category": "authentication"}
    send(local_stack, to={"customer_id": customer["id"]}, template=auth)
    time.sleep(1.5)
    assert outbox(local_stack) == []
    utility = send(local_stack, to={"bsuid": bsuid}, template=TEMPLATE)
    (sent,) = eventually(lambda: outbox(local_stack, channel="whatsapp"))
    assert (sent["to"], sent["recipient"]) == (None, bsuid) and utility


def test_a_later_whatsapp_failure_falls_back_to_exactly_one_sms(local_stack: StackClient) -> None:
    customer_id, phone, _ = whatsapp_customer(local_stack)
    local_stack.post(
        "/_sandbox/recipients", json_body={"whatsapp": {phone: {"status": "failed", "error_code": 131026}}}
    )
    send(local_stack, to={"customer_id": customer_id}, text="Your order has shipped")
    (sms,) = eventually(lambda: outbox(local_stack, channel="sms"), timeout=20)
    assert (sms["to"], sms["text"]) == (phone, "Your order has shipped")
    time.sleep(2.0)  # statuses may be redelivered: still one SMS
    assert len(outbox(local_stack, channel="sms")) == 1 and len(outbox(local_stack, channel="whatsapp")) == 1


def test_stop_then_start_by_sms(local_stack: StackClient) -> None:
    phone = new_phone()
    stop = personal("twilio_sms_stop.form", **{"%2B16505551234": "%2B" + phone})
    assert post_twilio(local_stack, stop).status == 200
    eventually(lambda: (c := contact(local_stack, phone="+" + phone)) and c["sms_opted_out"])
    send(local_stack, to={"phone": "+" + phone}, text="Still there?", channels=["sms"])
    time.sleep(1.5)
    assert outbox(local_stack) == []
    start = (
        stop.replace(b"Body=Stop", b"Body=START")
        .replace(b"OptOutType=STOP", b"OptOutType=START")
        .replace(b"SM", b"SMs")
    )
    assert post_twilio(local_stack, start).status == 200
    eventually(lambda: contact(local_stack, phone="+" + phone)["sms_opted_out"] is False)  # type: ignore[index]
    send(local_stack, to={"phone": "+" + phone}, text="Welcome back", channels=["sms"])
    (sms,) = eventually(lambda: outbox(local_stack, channel="sms"))
    assert sms["text"] == "Welcome back"


def put_send_message(stack: StackClient, source: str, customer_id: str, text: str) -> None:
    """A ``SendMessage`` event put on the crossroute bus with an ordinary SDK, from ``source``."""
    detail = {
        "tenant": "demo",
        "idempotency_key": f"bus-{time.time_ns()}",
        "to": {"customer_id": customer_id},
        "text": text,
    }
    entry = {"Source": source, "DetailType": "SendMessage", "Detail": json.dumps(detail)}
    answer = stack.client("events").put_events(Entries=[{**entry, "EventBusName": stack.event_bus_name}])
    assert answer["FailedEntryCount"] == 0


def test_a_send_message_event_on_the_bus_is_sent_only_from_an_allowed_source(
    local_stack: StackClient,
) -> None:
    # The rule matches the template's SendMessageSources (default shop.orders), as deployed.
    bus, rule = local_stack.physical("SendMessageRule").split("|")
    pattern = json.loads(
        local_stack.client("events").describe_rule(Name=rule, EventBusName=bus)["EventPattern"]
    )
    assert pattern["source"] == ["shop.orders"]
    customer_id, phone, _ = whatsapp_customer(local_stack)
    put_send_message(local_stack, "crm.unlisted", customer_id, "From a source not allowed")
    put_send_message(local_stack, "shop.orders", customer_id, "Via EventBridge")
    (sent,) = eventually(lambda: outbox(local_stack, channel="whatsapp"))
    assert (sent["to"], sent["text"]) == (phone, "Via EventBridge")
    time.sleep(1)  # the allowed one, put second, went out: the other one had its chance
    assert [m["text"] for m in outbox(local_stack)] == ["Via EventBridge"]


def test_a_request_put_on_the_send_queue_directly(local_stack: StackClient) -> None:
    customer_id, _, _ = whatsapp_customer(local_stack)
    body = {
        "tenant": "demo",
        "idempotency_key": f"q-{time.time_ns()}",
        "to": {"customer_id": customer_id},
        "text": "Via SQS",
    }
    local_stack.client("sqs").send_message(
        QueueUrl=local_stack.queue_urls()["SendQueue"], MessageBody=json.dumps(body)
    )
    (sent,) = eventually(lambda: outbox(local_stack, channel="whatsapp"))
    assert sent["text"] == "Via SQS"


def test_invalid_send_requests_get_a_clear_400(local_stack: StackClient) -> None:
    answer = local_stack.post("/messages", json_body={"to": {"phone": "nope"}})
    assert (answer.status, answer.headers["content-type"]) == (400, "application/problem+json")
    problem = answer.json()
    assert (problem["type"], problem["status"]) == ("urn:crossroute:problem:validation", 400)
    assert {e["field"] for e in problem["errors"]} == {"idempotency_key", "to.phone", "text/template"}
    assert (
        local_stack.post("/messages", body=b"{not json", headers={"Content-Type": "application/json"}).status
        == 400
    )


def test_a_throttled_send_is_retried_later_and_goes_out_once(local_stack: StackClient) -> None:
    customer_id, phone, _ = whatsapp_customer(local_stack)
    local_stack.post("/_sandbox/recipients", json_body={"whatsapp": {phone: {"sync_error_code": 130429}}})
    send(local_stack, to={"customer_id": customer_id}, text="Your order has shipped")
    refused = eventually(lambda: outbox(local_stack, channel="whatsapp"))
    assert all(r.get("error_code") == 130429 for r in refused)
    local_stack.request("DELETE", "/_sandbox/recipients")  # the throughput limit clears
    sent = eventually(
        lambda: [r for r in outbox(local_stack, channel="whatsapp") if r.get("provider_message_id")],
        timeout=30,
    )
    time.sleep(1.0)
    assert len(sent) == 1 and len([r for r in outbox(local_stack) if r.get("provider_message_id")]) == 1
    assert outbox(local_stack, channel="sms") == []  # retry, not fallback


def test_a_burst_to_one_user_is_paced_to_the_pair_rate_and_all_of_it_goes_out(
    local_stack: StackClient,
) -> None:
    customer_id, phone, _ = whatsapp_customer(local_stack)
    for n in range(PAIR_BURST + 1):
        send(local_stack, to={"customer_id": customer_id}, text=f"Update {n}")
    sent = eventually(
        lambda: s if len(s := outbox(local_stack, channel="whatsapp", to=phone)) > PAIR_BURST else None,
        timeout=60,
    )
    assert len(sent) == PAIR_BURST + 1 and all(s.get("provider_message_id") for s in sent)
    times = sorted(datetime.fromisoformat(s["at"]) for s in sent)
    # Ten go at once; the eleventh waits for the pair rate (Meta would answer 131056), then goes, once.
    assert (times[-1] - times[0]).total_seconds() >= PAIR_INTERVAL - 1
    assert sorted(s["text"] for s in sent) == sorted(f"Update {n}" for n in range(PAIR_BURST + 1))
    assert outbox(local_stack, channel="sms") == []


def test_the_routing_decision_is_readable_on_the_customers_timeline(local_stack: StackClient) -> None:
    customer_id, phone, _ = whatsapp_customer(local_stack, minutes_ago=60 * 25)  # the window has closed
    request_id = send(local_stack, to={"customer_id": customer_id}, text="Your order has shipped")

    def decision() -> dict[str, Any] | None:
        items = timeline(local_stack, customer_id)
        found = [
            i for i in items if i["kind"] == "decision" and i["sends"].get("sms", {}).get("state") == "sent"
        ]
        return found[0] if found else None

    entry = eventually(decision)
    assert entry["request_id"] == request_id and entry["chosen"] == "sms"
    assert [(c["channel"], c["qualified"]) for c in entry["channels"]] == [("whatsapp", False), ("sms", True)]
    assert (
        entry["channels"][0]["reason"].startswith("whatsapp.")
        and entry["sends"]["sms"]["provider"] == "twilio"
    )
    assert "order has shipped" not in json.dumps(entry) and phone not in json.dumps(entry)  # no body, address
