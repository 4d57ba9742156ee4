"""What crossroute publishes on its bus matches docs/events/*.schema.json (contract §8).

Provider payloads from the shared fixtures go through the parser, ``Ingest`` and the DynamoDB store
(moto), and a customer is erased through ``Contacts`` (``CustomerErased``, I10); every event is checked
in its wire form, the JSON ``Detail`` that PutEvents sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from jsonschema import Draft4Validator

from crossroute import correlation
from crossroute.bus import DETAIL_VERSIONS
from crossroute.contacts import Contacts
from crossroute.identity.model import Key
from crossroute.inbound_queue import QueuedEvent
from crossroute.ingest import Ingest
from crossroute.parsing.queued import parse
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta
from infra.local.emulated import emulated_account
from tests.fakes import RecordingPublisher
from tests.support import (
    EVENT_SCHEMAS,
    REPO,
    draft_4_problems,
    fixture_bytes,
    fixture_json,
    registry_document,
    schema_problems,
)

DOCS = REPO / "docs" / "events.md"
# The ingest events only: the dispatch events (MessageRouted, MessageUndeliverable) are published by
# Dispatch, not by these scenarios; tests/adapters/test_dispatch_events.py checks them and their examples.
DISPATCH_EVENTS = {"MessageRouted", "MessageUndeliverable"}
SCHEMAS = {name: schema for name, schema in EVENT_SCHEMAS.items() if name not in DISPATCH_EVENTS}
LOCAL_FIXTURES = REPO / "tests" / "fixtures"
REGISTRY = TenantRegistry.from_json(registry_document())

Published = list[tuple[str, dict[str, Any]]]  # (detail-type, detail) as sent to EventBridge


problems = schema_problems


class World:
    def __init__(self) -> None:
        self.bus = RecordingPublisher()
        self.ingest = Ingest(DynamoIdentityStore(), self.bus, sleep=lambda _: None)

    def meta(self, doc: dict[str, Any]) -> None:
        for queued in meta.split(REGISTRY, "local-app-secret", doc):
            self.ingest.handle(parse(queued.body).events)

    def twilio(self, form: bytes, kind: str = "twilio.message") -> None:
        queued = QueuedEvent.build(tenant="demo", sender="x", kind=kind, content={"form": form.decode()})
        self.ingest.handle(parse(queued.body).events)

    def published(self) -> Published:
        return self.bus.wire()


def local_json(name: str) -> dict[str, Any]:
    return json.loads((LOCAL_FIXTURES / name).read_text())


def meta_message(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["entry"][0]["changes"][0]["value"]["messages"][0]


# ---------------------------------------------------------------- scenarios, each in a fresh account

ECHOES = local_json("meta_smb_message_echoes.json")
ECHO_ID = ECHOES["entry"][0]["changes"][0]["value"]["message_echoes"][0]["id"]


def sms_then_whatsapp_then_contact_answer(world: World) -> None:
    """The SMS customer and the BSUID-only WhatsApp customer are one person once they share their phone."""
    sms = fixture_bytes("twilio_sms_inbound.form").replace(b"%2B16505551234", b"%2B4915123456789")
    world.twilio(sms)
    world.meta(fixture_json("meta_text_bsuid_only.json"))
    world.meta(fixture_json("meta_contacts_request_answer.json"))


def twilio_messages(world: World) -> None:
    world.twilio(fixture_bytes("twilio_whatsapp_inbound_bsuid.form"))
    world.twilio(fixture_bytes("twilio_sms_stop.form"))


def number_change(world: World) -> None:
    world.meta(fixture_json("meta_text_phone_and_bsuid.json"))
    world.meta(fixture_json("meta_system_user_changed_number.json"))


def same_phone_another_bsuid_later(world: World) -> None:
    world.meta(fixture_json("meta_text_phone_and_bsuid.json"))
    doc = fixture_json("meta_text_phone_and_bsuid.json")
    doc["entry"][0]["changes"][0]["value"]["contacts"][0]["user_id"] = "BR.9990001112223334"
    meta_message(doc).update(from_user_id="BR.9990001112223334", id="wamid.LATER", timestamp="1779900000")
    world.meta(doc)


def statuses(world: World) -> None:
    world.meta(ECHOES)  # stores ECHO_ID as sent to a customer
    doc = fixture_json("meta_status_delivered_bsuid.json")
    status = doc["entry"][0]["changes"][0]["value"]["statuses"][0]
    status.update(id=ECHO_ID, timestamp="1780003700")
    world.meta(doc)
    status.update(status="read", timestamp="1780003800")
    world.meta(doc)
    world.meta(fixture_json("meta_status_failed_131026.json"))  # for a message crossroute never stored
    world.twilio(fixture_bytes("twilio_status_undelivered.form"), kind="twilio.status")


def coexistence_history(world: World) -> None:
    world.meta(local_json("meta_history_chunk.json"))


def address_book_and_preferences(world: World) -> None:
    world.meta(local_json("meta_smb_app_state_sync.json"))
    world.meta(fixture_json("meta_user_preferences_stop.json"))


def redelivery(world: World) -> None:
    world.meta(fixture_json("meta_text_bsuid_only.json"))
    world.meta(fixture_json("meta_text_bsuid_only.json"))


def stop_then_erasure(world: World) -> None:
    """An SMS customer says STOP and is erased by a DELETE (I10): its phone is kept suppressed."""
    world.twilio(fixture_bytes("twilio_sms_stop.form"))
    store = DynamoIdentityStore()
    phone = Key("phone", "+16505551234")
    with correlation.scope("dQe6cjMoIAMEVgA="):  # the DELETE's API Gateway request id
        Contacts(store, events=world.bus).erase("demo", store.holders("demo", [phone])[phone].id)


SCENARIOS: dict[str, tuple[Callable[[World], None], set[str]]] = {
    "sms_then_whatsapp_then_contact_answer": (
        sms_then_whatsapp_then_contact_answer,
        {"MessageReceived", "IdentityChanged", "ContactsMerged"},
    ),
    "twilio_messages": (twilio_messages, {"MessageReceived", "IdentityChanged"}),
    "number_change": (number_change, {"MessageReceived", "IdentityChanged"}),
    "same_phone_another_bsuid_later": (same_phone_another_bsuid_later, {"IdentityConflict"}),
    "statuses": (statuses, {"MessageStatusChanged"}),
    "coexistence_history": (coexistence_history, {"IdentityChanged"}),
    "address_book_and_preferences": (address_book_and_preferences, {"IdentityChanged"}),
    "redelivery": (redelivery, {"MessageReceived", "IdentityChanged"}),
    "stop_then_erasure": (stop_then_erasure, {"MessageReceived", "IdentityChanged", "CustomerErased"}),
}


@pytest.fixture(scope="module")
def published() -> Iterator[dict[str, Published]]:
    """Each scenario in a fresh emulated account (as the ``table`` fixture makes), run once per module."""
    runs: dict[str, Published] = {}
    for name, (scenario, _) in SCENARIOS.items():
        with emulated_account():
            world = World()
            scenario(world)
            runs[name] = world.published()
    yield runs


def everything(published: dict[str, Published]) -> Published:
    return [event for run in published.values() for event in run]


# ---------------------------------------------------------------- the schemas themselves


@pytest.mark.parametrize("detail_type", sorted(SCHEMAS))
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
    assert {"version", "tenant", "customer_id"} <= set(schema["required"])
    assert schema["properties"]["version"]["enum"] == [DETAIL_VERSIONS[detail_type]]


def test_format_checking_is_active() -> None:
    # date-time needs rfc3339-validator; without it jsonschema would accept anything, silently.
    assert Draft4Validator.FORMAT_CHECKER.conforms("2026-05-27T09:00:00+00:00", "date-time")
    assert not Draft4Validator.FORMAT_CHECKER.conforms("2026-05-27 09:00", "date-time")


def test_every_event_crossroute_publishes_has_a_version_and_a_schema() -> None:
    assert set(DETAIL_VERSIONS) == set(EVENT_SCHEMAS)


# ---------------------------------------------------------------- what the code publishes


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_published_detail_matches_its_schema(published: dict[str, Published], scenario: str) -> None:
    run = published[scenario]
    assert {detail_type for detail_type, _ in run} >= SCENARIOS[scenario][1]
    for detail_type, detail in run:
        assert detail_type in SCHEMAS, f"no schema for {detail_type}"
        assert problems(detail_type, detail) == [], (detail_type, detail)


def test_every_schema_describes_a_published_event(published: dict[str, Published]) -> None:
    assert {detail_type for detail_type, _ in everything(published)} == set(SCHEMAS)


def test_every_published_detail_carries_its_version(published: dict[str, Published]) -> None:
    for detail_type, detail in everything(published):
        assert detail["version"] == DETAIL_VERSIONS[detail_type] == "1", (detail_type, detail)
        assert problems(detail_type, {**detail, "version": "2"}), f"{detail_type} of version 2 passed"
        assert problems(detail_type, {**detail, "version": 1}), f"{detail_type} with a numeric version passed"


def test_every_identity_change_kind_is_published(published: dict[str, Published]) -> None:
    changes = {d["change"] for t, d in everything(published) if t == "IdentityChanged"}
    assert changes == set(SCHEMAS["IdentityChanged"]["properties"]["change"]["enum"])


def test_schemas_reject_a_detail_missing_a_required_field(published: dict[str, Published]) -> None:
    samples = {detail_type: detail for detail_type, detail in everything(published)}
    for detail_type, detail in samples.items():
        for name in SCHEMAS[detail_type]["required"]:
            partial = {k: v for k, v in detail.items() if k != name}
            assert problems(detail_type, partial), f"{detail_type} without {name} passed"
        time_field = next(f for f in ("sent_at", "erased_at", "at") if f in detail or f == "at")
        assert problems(detail_type, {**detail, time_field: "yesterday"})
    by_change = {d["change"]: d for t, d in everything(published) if t == "IdentityChanged"}
    for change, needed in {"linked": "value", "number_changed": "bsuid", "phone_stale": "phone"}.items():
        partial = {k: v for k, v in by_change[change].items() if k != needed}
        assert problems("IdentityChanged", partial), f"{change} without {needed} passed"


def test_a_linked_key_is_checked_as_its_kind(published: dict[str, Published]) -> None:
    linked = [d for t, d in everything(published) if t == "IdentityChanged" and d["change"] == "linked"]
    phone = next(d for d in linked if d["key"] == "phone")
    bsuid = next(d for d in linked if d["key"] == "bsuid")
    assert problems("IdentityChanged", {**phone, "value": bsuid["value"]}), "a BSUID passed as a phone"
    assert problems("IdentityChanged", {**bsuid, "value": phone["value"]}), "a phone passed as a BSUID"
    assert problems("IdentityChanged", {**phone, "change": "renamed"}), "an unknown change passed"


def test_only_message_received_carries_a_message_body(published: dict[str, Published]) -> None:
    events = everything(published)
    bodies = {d["text"] for t, d in events if t == "MessageReceived" and d["text"]}
    assert bodies
    for detail_type, detail in events:
        if detail_type == "MessageReceived":
            continue
        assert not {"text", "body"} & set(detail), detail_type
        assert not any(body in json.dumps(detail, ensure_ascii=False) for body in bodies), detail_type
    for detail_type, schema in SCHEMAS.items():
        if detail_type != "MessageReceived":
            assert not {"text", "body"} & set(schema["properties"]), detail_type


def test_coexistence_history_publishes_identity_events_but_no_message_received(
    published: dict[str, Published],
) -> None:
    types = [detail_type for detail_type, _ in published["coexistence_history"]]
    assert "MessageReceived" not in types and "IdentityChanged" in types


def test_a_redelivered_message_publishes_again_what_it_caused(published: dict[str, Published]) -> None:
    run = published["redelivery"]
    half = len(run) // 2
    assert half and run[:half] == run[half:]


def test_status_customer_id_is_null_only_before_the_message_is_stored(
    published: dict[str, Published],
) -> None:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for detail_type, detail in published["statuses"]:
        if detail_type != "MessageStatusChanged":
            continue
        by_id.setdefault(detail["message_id"], []).append(detail)
    delivered, read = by_id.pop(ECHO_ID)
    assert delivered["customer_id"] and read["customer_id"] == delivered["customer_id"]
    assert (delivered["previous_status"], read["previous_status"]) == (None, "delivered")
    assert by_id and all(d["customer_id"] is None and d["errors"] for (d,) in by_id.values())


# ---------------------------------------------------------------- the documentation


def doc_examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)
    events = [json.loads(block) for block in blocks]
    events = [e for e in events if isinstance(e.get("detail-type"), str)]  # not the rule patterns
    return [e for e in events if e["detail-type"] in SCHEMAS]  # nor the dispatch events (see SCHEMAS)


def test_every_documented_example_matches_its_schema() -> None:
    examples = doc_examples()
    assert {e["detail-type"] for e in examples} == set(SCHEMAS)
    for event in examples:
        assert event["source"] == "crossroute"
        assert problems(event["detail-type"], event["detail"]) == [], event["detail-type"]


def test_customer_erased_counts_what_the_erasure_did_and_names_no_one(
    published: dict[str, Published],
) -> None:
    (detail,) = [d for t, d in published["stop_then_erasure"] if t == "CustomerErased"]
    assert detail["counts"]["phones_suppressed"] == 1 and detail["counts"]["items_deleted"] >= 4
    assert (detail["merged_from"], detail["correlation_id"]) == ([], "dQe6cjMoIAMEVgA=")
    assert "6505551234" not in json.dumps(detail) and "external_id" not in detail  # none was set
