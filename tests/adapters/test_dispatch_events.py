"""What dispatch publishes on its bus matches docs/events/MessageRouted|MessageUndeliverable.schema.json.

Real ``Dispatch`` scenarios run against DynamoDB (moto) with scripted provider senders, as in
``test_dispatch``; every event is checked in its wire form, the JSON ``Detail`` that PutEvents sends.
(``test_event_schemas`` does the same for the ingest events.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from jsonschema import Draft4Validator

from crossroute.bus import DETAIL_VERSIONS
from crossroute.channels import SendFailed
from crossroute.dispatch import Dispatch
from crossroute.inbound_queue import QueuedEvent
from infra.local.emulated import emulated_account
from tests.support import (
    AFTER_WINDOW,
    EVENT_SCHEMAS,
    IN_WINDOW,
    REPO,
    SHIPPED_TEMPLATE,
    DispatchWorld,
    draft_4_problems,
    schema_problems,
    schema_validator,
    send_request,
)

DOCS = REPO / "docs" / "events.md"
DISPATCH_EVENTS = ("MessageRouted", "MessageUndeliverable")
SCHEMAS = {name: EVENT_SCHEMAS[name] for name in DISPATCH_EVENTS}
TEXT = "Your order has shipped"  # every request's text (tests.support.send_request)

Published = list[tuple[str, dict[str, Any]]]  # (detail-type, detail) as sent to EventBridge


validator, problems = schema_validator, schema_problems


def redelivered(world: DispatchWorld, send: Callable[[], object]) -> None:
    """Run ``send`` again (a queue redelivery): events are published at least once, so it may publish
    again, but only what was published before, identically (consumers dedupe on it)."""
    before = [(e.detail_type, e.detail) for e in world.bus.events]
    send()
    again = [(e.detail_type, e.detail) for e in world.bus.events[len(before) :]]
    assert all(event in before for event in again), ("a redelivery published something new", again)


# ---------------------------------------------------------------- scenarios, each in a fresh account


def sent_on_whatsapp(world: DispatchWorld) -> None:
    customer = world.ana()
    doc = send_request(to={"customer_id": customer})
    result = world.dispatch.send(doc)
    assert result.sent == {"whatsapp": "wamid.1"}
    redelivered(world, lambda: world.dispatch.send(doc))


def sms_after_a_whatsapp_fallback_failure(world: DispatchWorld) -> None:
    customer = world.ana()
    world.whatsapp.script.append(SendFailed("meta", "fallback", 131026, "undeliverable"))
    doc = send_request(to={"customer_id": customer}, template=SHIPPED_TEMPLATE)
    assert world.dispatch.send(doc).sent == {"sms": "SM1"}
    redelivered(world, lambda: world.dispatch.send(doc))


def sms_after_the_window_to_an_unknown_phone(world: DispatchWorld) -> None:
    world.now = AFTER_WINDOW
    assert world.dispatch.send(send_request(to={"phone": "+14155550100"})).sent == {"sms": "SM1"}


def r7_async_fallback(world: DispatchWorld) -> None:
    customer = world.ana()
    world.dispatch.send(send_request(to={"customer_id": customer}))
    assert world.dispatch.fallback("demo", "meta", "wamid.1", 131026).sent == {"sms": "SM1"}
    redelivered(world, lambda: world.dispatch.fallback("demo", "meta", "wamid.1", 131026))
    redelivered(world, lambda: world.dispatch.fallback("demo", "meta", "wamid.1", 132001))  # not R7


def r7_async_fallback_to_an_opted_out_phone(world: DispatchWorld) -> None:
    customer = world.ana()
    world.dispatch.send(send_request(to={"customer_id": customer}))
    stop = (
        "MessageSid=SMstop&AccountSid=AC00000000000000000000000000000000&From=%2B5511987654321"
        "&To=%2B15550100002&Body=STOP"
    )
    world.ingest.body(
        QueuedEvent.build(tenant="demo", sender="x", kind="twilio.message", content={"form": stop})
    )
    assert world.dispatch.fallback("demo", "meta", "wamid.1", 131026).undeliverable
    assert world.dispatch.fallback("demo", "meta", "wamid.1", 131026).undeliverable  # again: nothing claimed


def nothing_qualifies(world: DispatchWorld) -> None:
    doc = send_request(to={"bsuid": "US.404"})
    assert world.dispatch.send(doc).undeliverable
    assert world.dispatch.send(doc).undeliverable  # nothing was claimed: a redelivery publishes it again


def unknown_outcome(world: DispatchWorld) -> None:
    customer = world.ana()
    world.whatsapp.script.append(SendFailed("meta", "unknown", None, "read timeout"))
    doc = send_request(to={"customer_id": customer})
    assert world.dispatch.send(doc).undeliverable
    redelivered(world, lambda: world.dispatch.send(doc))


def every_channel_fails(world: DispatchWorld) -> None:
    customer = world.ana()
    world.whatsapp.script.append(SendFailed("meta", "permanent", 131009, "parameter invalid"))
    world.sms.script.append(SendFailed("twilio", "permanent", 21610, "unsubscribed"))
    assert world.dispatch.send(
        send_request(to={"customer_id": customer}, template=SHIPPED_TEMPLATE)
    ).undeliverable


def invalid_requests(world: DispatchWorld) -> None:
    assert world.dispatch.send({"tenant": "demo", "to": {"phone": "nope"}, "text": TEXT}).undeliverable
    assert world.dispatch.send({"idempotency_key": "k-1", "text": TEXT}).undeliverable  # no tenant
    assert world.dispatch.send(TEXT).undeliverable  # not a JSON object at all


def unknown_tenant(world: DispatchWorld) -> None:
    assert world.dispatch.send(send_request(tenant="nobody", to={"phone": "+14155550100"})).undeliverable


SCENARIOS: dict[str, tuple[Callable[[DispatchWorld], None], list[tuple[str, str]]]] = {
    # scenario: (run, [(detail-type, reason)] published, in order; a redelivery publishes again)
    "sent_on_whatsapp": (sent_on_whatsapp, [("MessageRouted", "whatsapp.window_open")] * 2),
    "sms_after_a_whatsapp_fallback_failure": (
        sms_after_a_whatsapp_fallback_failure,
        [("MessageRouted", "sms.current_phone")] * 2,
    ),
    "sms_after_the_window_to_an_unknown_phone": (
        sms_after_the_window_to_an_unknown_phone,
        [("MessageRouted", "sms.current_phone")],
    ),
    "r7_async_fallback": (
        r7_async_fallback,
        [("MessageRouted", "whatsapp.window_open")]
        + [("MessageRouted", "fallback.whatsapp_failed.131026")] * 2,
    ),
    "r7_async_fallback_to_an_opted_out_phone": (
        r7_async_fallback_to_an_opted_out_phone,
        [("MessageRouted", "whatsapp.window_open")]
        + [("MessageUndeliverable", "fallback.whatsapp_failed.131026")] * 2,
    ),
    "nothing_qualifies": (nothing_qualifies, [("MessageUndeliverable", "no_channel")] * 2),
    "unknown_outcome": (unknown_outcome, [("MessageUndeliverable", "send_failed")] * 2),
    "every_channel_fails": (every_channel_fails, [("MessageUndeliverable", "send_failed")]),
    "invalid_requests": (invalid_requests, [("MessageUndeliverable", "request.invalid")] * 3),
    "unknown_tenant": (unknown_tenant, [("MessageUndeliverable", "request.unknown_tenant")]),
}


@pytest.fixture(scope="module")
def published() -> Iterator[dict[str, Published]]:
    """Each scenario in a fresh emulated account (as the ``table`` fixture makes), run once per module."""
    runs: dict[str, Published] = {}
    for name, (scenario, _) in SCENARIOS.items():
        with emulated_account():
            world = DispatchWorld(IN_WINDOW)
            assert isinstance(world.dispatch, Dispatch)
            scenario(world)
            runs[name] = world.bus.wire()
    yield runs


def everything(published: dict[str, Published]) -> Published:
    return [event for run in published.values() for event in run]


def required(detail_type: str, detail: dict[str, Any]) -> list[str]:
    """The fields the schema requires of this detail, including MessageUndeliverable's per-reason ones
    (the one ``oneOf`` branch the detail matches)."""
    schema = SCHEMAS[detail_type]
    names = list(schema["required"])
    branches = [
        b for b in schema.get("oneOf", []) if validator(detail_type).evolve(schema=b).is_valid(detail)
    ]
    assert len(branches) == (1 if "oneOf" in schema else 0), (detail_type, detail)
    return names + [name for branch in branches for name in branch.get("required", [])]


# ---------------------------------------------------------------- the schemas themselves


@pytest.mark.parametrize("detail_type", DISPATCH_EVENTS)
def test_each_schema_is_draft_4_open_and_consistent(detail_type: str) -> None:
    schema = SCHEMAS[detail_type]
    Draft4Validator.check_schema(schema)  # what the Schema Registry's JSONSchemaDraft4 type takes
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert draft_4_problems(detail_type) == []
    assert schema["title"] == detail_type
    assert schema["type"] == "object" and schema["additionalProperties"] is True
    every_required = set(schema["required"]) | {
        name for branch in schema.get("oneOf", []) for name in branch.get("required", [])
    }
    assert every_required <= set(schema["properties"])
    assert {"version", "tenant", "idempotency_key", "reason"} <= set(schema["required"])
    assert schema["properties"]["version"]["enum"] == [DETAIL_VERSIONS[detail_type]]
    assert not {"text", "body", "template"} & set(schema["properties"])


# ---------------------------------------------------------------- what the code publishes


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_published_detail_matches_its_schema(published: dict[str, Published], scenario: str) -> None:
    run = published[scenario]
    assert [(detail_type, detail["reason"]) for detail_type, detail in run] == SCENARIOS[scenario][1]
    for detail_type, detail in run:
        assert problems(detail_type, detail) == [], (detail_type, detail)


def test_every_schema_describes_a_published_event(published: dict[str, Published]) -> None:
    assert {detail_type for detail_type, _ in everything(published)} == set(SCHEMAS)


def test_every_published_detail_carries_its_version(published: dict[str, Published]) -> None:
    for detail_type, detail in everything(published):
        assert detail["version"] == DETAIL_VERSIONS[detail_type] == "1", (detail_type, detail)
        assert problems(detail_type, {**detail, "version": "2"}), f"{detail_type} of version 2 passed"


def test_schemas_reject_a_detail_missing_a_required_field(published: dict[str, Published]) -> None:
    samples = {(t, d["reason"]): (t, d) for t, d in everything(published)}
    for detail_type, detail in samples.values():
        for name in required(detail_type, detail):
            partial = {k: v for k, v in detail.items() if k != name}
            assert problems(detail_type, partial), f"{detail_type} {detail['reason']} without {name} passed"
        assert problems(detail_type, {**detail, "reason": "Not a reason code"})


def test_schemas_reject_malformed_decisions_and_failures(published: dict[str, Published]) -> None:
    routed = next(d for t, d in published["sms_after_a_whatsapp_fallback_failure"] if t == "MessageRouted")
    assert routed["failures"] == [{"channel": "whatsapp", "outcome": "fallback", "code": 131026}]
    optional = ("from", "from_reason")  # R10: on a qualifying channel, absent from an older record
    for item in ("decision", "failures"):
        for name in [n for n in routed[item][0] if n not in optional]:
            broken = [{k: v for k, v in routed[item][0].items() if k != name}]
            assert problems("MessageRouted", {**routed, item: broken}), f"{item} item without {name} passed"
    # R10: the sender used, as the decision gave it for the channel that sent.
    sms = next(d for d in routed["decision"] if d["channel"] == "sms")
    assert routed["from"] == sms["from"] == "+15550100002" and sms["from_reason"] == "from.default"
    for bad in ({"from": ""}, {"from_reason": "Not a code"}):
        assert problems("MessageRouted", {**routed, "decision": [{**sms, **bad}]}), f"decision with {bad}"
    unknown = {"channel": "whatsapp", "outcome": "unknown", "code": None}
    assert problems("MessageRouted", {**routed, "failures": [unknown]}), "routed after an unknown outcome"
    undeliverable, again = (d for _, d in published["unknown_outcome"])
    assert undeliverable["failures"] == [unknown] and again == undeliverable


def test_no_dispatch_event_carries_the_message(published: dict[str, Published]) -> None:
    for detail_type, detail in everything(published):
        assert not {"text", "body", "template"} & set(detail), detail_type
        dumped = json.dumps(detail, ensure_ascii=False)
        assert TEXT not in dumped and SHIPPED_TEMPLATE["name"] not in dumped, (detail_type, detail)


def test_nullable_fields_are_null_where_the_code_knows_nothing(published: dict[str, Published]) -> None:
    (phone_only,) = (d for _, d in published["sms_after_the_window_to_an_unknown_phone"])
    assert phone_only["customer_id"] is None
    nobody, _ = (d for _, d in published["nothing_qualifies"])
    assert nobody["customer_id"] is None and nobody["request_id"]
    (tenantless,) = (d for _, d in published["unknown_tenant"])
    assert tenantless["request_id"] is None and tenantless["decision"] == []
    bad_phone, no_tenant, not_an_object = (d for _, d in published["invalid_requests"])
    assert (bad_phone["tenant"], bad_phone["idempotency_key"]) == ("demo", None)
    assert (no_tenant["tenant"], no_tenant["idempotency_key"]) == (None, "k-1")
    assert (not_an_object["tenant"], not_an_object["idempotency_key"]) == (None, None)
    for invalid in (bad_phone, no_tenant, not_an_object):
        assert invalid["problems"] and "request_id" not in invalid and "customer_id" not in invalid


def test_one_request_keeps_its_request_id_across_its_events(published: dict[str, Published]) -> None:
    first, fallback, again = (d for _, d in published["r7_async_fallback"])
    assert first["request_id"] == fallback["request_id"] and first["channel"] == "whatsapp"
    assert (fallback["channel"], fallback["provider"]) == ("sms", "twilio") and again == fallback
    # The request's decision as first recorded; the fallback's own reason is ``reason``.
    assert fallback["decision"] == first["decision"] and fallback["failures"] == []


def test_an_undeliverable_without_a_claim_is_published_again_unchanged(
    published: dict[str, Published],
) -> None:
    # no_channel and an R7 fallback that cannot go by SMS claim nothing: a redelivery publishes the
    # same detail (same request_id). What was sent or tried (MessageRouted, send_failed) is published once.
    first, again = published["nothing_qualifies"]
    assert first == again
    _, first, again = published["r7_async_fallback_to_an_opted_out_phone"]
    assert first == again


# ---------------------------------------------------------------- the documentation


def doc_examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)
    events = [json.loads(block) for block in blocks]
    events = [e for e in events if isinstance(e.get("detail-type"), str)]  # not the rule patterns
    return [e for e in events if e["detail-type"] in SCHEMAS]


def test_every_documented_dispatch_example_matches_its_schema() -> None:
    examples = doc_examples()
    assert {e["detail-type"] for e in examples} == set(SCHEMAS)
    for event in examples:
        assert event["source"] == "crossroute"
        assert problems(event["detail-type"], event["detail"]) == [], event["detail-type"]
