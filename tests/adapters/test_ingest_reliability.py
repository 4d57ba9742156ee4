"""Signed content never poisons a customer or stalls a sender: sizes, unknown numbers, erasure replays.

The real parser, ingest and DynamoDB store (moto), fed what the webhooks queue.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from crossroute import limits
from crossroute.contacts import contact_view
from crossroute.identity.model import Customer, Key
from crossroute.inbound_queue import QueuedEvent
from crossroute.ingest import Ingest, Ingested
from crossroute.parsing.queued import parse
from crossroute.store import identity_store
from crossroute.store.identity_store import TEXT_REF, DynamoIdentityStore
from crossroute.store.tables import MessageItem, TableItem, message_pk
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta
from tests.fakes import RecordingPublisher
from tests.support import LOCAL_TENANT, fixture_json, registry_document, wire_problems

ANA_BSUID, ANA_PHONE = "BR.1502576394655843", "+5511987654321"
KEY = b"k" * 32


class World:
    def __init__(self, registry: TenantRegistry | None = None) -> None:
        self.registry = registry or TenantRegistry.from_json(registry_document())
        self.store = DynamoIdentityStore(masking_key=lambda: KEY)
        self.bus = RecordingPublisher()
        self.ingest = Ingest(self.store, self.bus, sleep=lambda _: None)

    def queued(self, doc: dict[str, Any]) -> list[QueuedEvent]:
        """What the webhook queues for ``doc`` (the door's splitting, sizing and number resolution)."""
        return meta.split(self.registry, "local-app-secret", doc)

    def deliver(self, events: list[QueuedEvent]) -> list[Ingested]:
        return [self.ingest.handle(parse(e.body).events) for e in events]

    def meta(self, doc: dict[str, Any]) -> list[Ingested]:
        return self.deliver(self.queued(doc))

    def holder(self, kind: str, value: str) -> Customer | None:
        return self.store.holders("demo", [Key(kind, value)]).get(Key(kind, value))  # type: ignore[arg-type]

    def timeline(self, customer: Customer) -> list[dict[str, Any]]:
        items, _ = self.store.timeline("demo", [customer.id, *customer.merged_from], before=None, limit=50)
        return items


@pytest.fixture
def world(table: str) -> World:
    return World()


def ana_says(text: str, message_id: str = "wamid.ANA1") -> dict[str, Any]:
    doc = fixture_json("meta_text_phone_and_bsuid.json")
    message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    message["text"]["body"], message["id"] = text, message_id
    return doc


def test_a_200_kb_text_is_stored_once_and_whole_and_its_event_fits(world: World) -> None:
    text = "é" * 100_000  # 200 KB of UTF-8
    (outcome,) = world.meta(ana_says(text))
    assert outcome.handled == ["InboundMessage"]
    ana = world.holder("bsuid", ANA_BSUID)
    assert ana is not None
    (message,) = [e for e in world.timeline(ana) if e["kind"] == "message"]
    assert message["text"] == text
    item = MessageItem.get(message_pk("demo", "meta", "wamid.ANA1"), "MSG")
    assert text not in (item.raw or "") and TEXT_REF in (item.raw or "")  # the text, once
    assert text not in (item.published or "")
    (received,) = world.bus.of("MessageReceived")
    assert received["text"] == text[: limits.MESSAGE_TEXT_CHARS] and received["text_truncated"] is True
    (event,) = [e for e in world.bus.events if e.detail_type == "MessageReceived"]
    assert wire_problems(event) == []
    entry = event.entry("bus")
    assert len(entry["Detail"].encode()) < limits.EVENTBRIDGE_REQUEST_BYTES


def test_a_redelivered_long_text_publishes_the_same_event_again(world: World) -> None:
    world.meta(ana_says("x" * 10_000))
    (again,) = world.meta(ana_says("x" * 10_000))
    assert again.duplicates == 1
    first, second = world.bus.of("MessageReceived")
    assert first == second and first["text"] == "x" * limits.MESSAGE_TEXT_CHARS


def test_a_message_without_phone_number_id_leaves_the_customer_readable_and_its_window_alone(
    table: str,
) -> None:
    two_numbers = json.loads(json.dumps(LOCAL_TENANT))
    two_numbers["meta"]["phone_numbers"].append({"phone_number_id": "100000000000009"})
    world = World(TenantRegistry.from_json(registry_document(demo=two_numbers)))
    doc = ana_says("sem número")
    del doc["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"]
    world.meta(doc)
    ana = world.holder("bsuid", ANA_BSUID)
    assert ana is not None and ana.whatsapp_last_inbound == {}
    assert contact_view(ana)["whatsapp"]["windows"] == {}
    (outcome,) = world.meta(ana_says("de novo", "wamid.ANA2"))  # later events of hers go through
    assert outcome.handled == ["InboundMessage"]
    ana = world.holder("bsuid", ANA_BSUID)
    assert ana is not None and list(ana.whatsapp_last_inbound) == ["100000000000001"]


def test_a_webhook_replayed_after_erasure_does_not_bring_the_customer_back(world: World) -> None:
    first = world.queued(ana_says("oi"))
    world.deliver(first)
    status = world.queued(fixture_json("meta_user_preferences_stop.json"))
    world.deliver(status)
    ana = world.holder("bsuid", ANA_BSUID)
    assert ana is not None
    world.store.erase("demo", ana)
    assert world.holder("bsuid", ANA_BSUID) is None

    (outcome,) = world.deliver(first)  # Meta retries for up to 7 days
    assert outcome.erased == 1 and outcome.handled == []
    assert world.holder("bsuid", ANA_BSUID) is None and world.holder("phone", ANA_PHONE) is None
    tombstones = [i for i in TableItem.scan() if i.pk.startswith("T#demo#E#")]
    assert tombstones and all("ANA1" not in i.pk and "wamid" not in i.pk for i in tombstones)
    assert all(i.expires_at is not None for i in tombstones)

    (later,) = world.meta(ana_says("voltei", "wamid.ANA9"))  # she may write again: a new customer
    assert later.handled == ["InboundMessage"]
    assert world.holder("bsuid", ANA_BSUID) is not None


def test_content_the_table_refuses_is_kept_as_unrecognised_and_the_sender_goes_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the store's own budget lifted, a 450 KB text reaches DynamoDB, which refuses the item for good.
    monkeypatch.setattr(identity_store, "TEXT_BYTES", 10 * 1024 * 1024)
    body = json.dumps(
        {
            "schema": "crossroute.inbound/1",
            "tenant": "demo",
            "received_at": "2026-11-22T10:00:00.000Z",
            "kind": "meta.webhook",
            "payload": ana_says("z" * 450_000),
        }
    )
    outcome = world.ingest.handle(parse(body).events)
    assert outcome.unstorable == 1 and outcome.handled == []
    kept = [i for i in TableItem.scan() if i.pk.startswith("T#demo#U#")]
    assert len(kept) == 1 and kept[0].reason == "not storable: dynamodb.validation"
    assert len(kept[0].raw.encode()) <= identity_store.UNRECOGNISED_BYTES
    (after,) = world.meta(ana_says("curto", "wamid.ANA2"))
    assert after.handled == ["InboundMessage"] and world.holder("bsuid", ANA_BSUID) is not None
