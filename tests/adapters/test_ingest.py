"""Provider events through the parser, the identity rules and the DynamoDB store (moto)."""

from __future__ import annotations

import json

import pytest

from crossroute.identity.model import Key
from crossroute.inbound_queue import QueuedEvent
from tests.support import IngestHarness, fixture_bytes


@pytest.fixture
def world(table: str) -> IngestHarness:
    return IngestHarness()


def test_a_text_from_a_known_phone_and_bsuid_is_one_customer_with_the_message(world: IngestHarness) -> None:
    world.meta("meta_text_phone_and_bsuid.json")
    ana = world.by("bsuid", "BR.1502576394655843")
    assert ana and world.by("phone", "+5511987654321").id == ana.id
    assert ana.username == "ana.lima" and ana.name == "Ana Lima"
    assert "100000000000001" in ana.whatsapp_last_inbound
    (received,) = world.bus.of("MessageReceived")
    assert received["customer_id"] == ana.id and received["text"] == "Oi! Meu pedido chegou?"


def test_a_redelivered_message_is_stored_once_and_its_events_published_again(world: IngestHarness) -> None:
    world.meta("meta_text_bsuid_only.json")
    (outcome,) = world.meta("meta_text_bsuid_only.json")
    assert outcome.duplicates == 1
    assert len(world.bus.of("MessageReceived")) == 2  # at least once: the replay of the first
    assert len({e["message_id"] for e in world.bus.of("MessageReceived")}) == 1
    assert len(world.bus.of("IdentityChanged")) == 4  # created + linked, published twice


def test_an_sms_customer_who_later_answers_a_contact_request_keeps_one_history(world: IngestHarness) -> None:
    sms = fixture_bytes("twilio_sms_inbound.form").replace(b"%2B16505551234", b"%2B4915123456789")
    world.body(
        QueuedEvent.build(tenant="demo", sender="x", kind="twilio.message", content={"form": sms.decode()})
    )
    world.meta("meta_text_bsuid_only.json")
    assert world.by("phone", "+4915123456789").id != world.by("bsuid", "DE.88201937465502911").id
    world.meta("meta_contacts_request_answer.json")
    one = world.by("bsuid", "DE.88201937465502911")
    assert world.by("phone", "+4915123456789").id == one.id
    assert len(one.merged_from) == 1
    (merged,) = world.bus.of("ContactsMerged")
    assert merged["customer_id"] == one.id and merged["merged_customer_id"] == one.merged_from[0]
    assert world.store.customer("demo", one.merged_from[0]).id == one.id  # the old id still resolves


def test_a_shared_contact_card_is_content_not_identity(world: IngestHarness) -> None:
    world.meta("meta_shared_contact_card.json")
    assert world.by("phone", "+491605550199") is None
    jonas = world.by("bsuid", "DE.88201937465502911")
    assert jonas and jonas.phones == ()


def test_statuses_never_go_backwards(world: IngestHarness) -> None:
    world.meta("meta_batch_messages_and_status.json")  # wamid.OUT0001 read
    doc = json.loads(fixture_bytes("meta_batch_messages_and_status.json"))
    doc["entry"][0]["changes"][1]["value"]["statuses"][0]["status"] = "delivered"
    world.meta(json.dumps(doc).encode())
    item = world.store.message("demo", "meta", "wamid.OUT0001")
    assert item and item.status == "read"
    assert [e["status"] for e in world.bus.of("MessageStatusChanged")] == ["read"]


def test_sms_stop_opts_the_customer_out(world: IngestHarness) -> None:
    world.twilio("twilio_sms_inbound.form")
    assert world.by("phone", "+16505551234").sms_opted_out is False
    world.twilio("twilio_sms_stop.form")
    assert world.by("phone", "+16505551234").sms_opted_out is True


def test_number_change_rotates_the_bsuid_and_keeps_the_customer(world: IngestHarness) -> None:
    world.meta("meta_text_phone_and_bsuid.json")
    before = world.by("bsuid", "BR.1502576394655843")
    world.meta("meta_system_user_changed_number.json")
    after = world.by("bsuid", "BR.7730019283746501")
    assert after.id == before.id and after.current_bsuid() == "BR.7730019283746501"
    assert {p.e164: p.status for p in after.phones} == {
        "+5511987654321": "stale",
        "+5511912345678": "current",
    }


def test_marketing_stop_is_recorded(world: IngestHarness) -> None:
    world.meta("meta_user_preferences_stop.json")
    priya = world.by("bsuid", "IN.1648738043044942")
    assert priya and priya.marketing_opted_out is True


def test_an_event_the_parser_does_not_know_is_kept_once(world: IngestHarness, table: str) -> None:
    doc = json.loads(fixture_bytes("meta_text_bsuid_only.json"))
    doc["entry"][0]["changes"][0] = {"field": "brand_new_field", "value": {"metadata": {}, "something": 1}}
    raw = json.dumps(doc).encode()
    world.meta(raw)
    world.meta(raw)
    import boto3

    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    kept = [i for i in items if i["type"]["S"] == "unrecognised"]
    assert len(kept) == 1 and "brand_new_field" in kept[0]["kind"]["S"] + kept[0]["raw"]["S"]
    assert int(kept[0]["expires_at"]["N"]) > 0


def test_tenants_never_share_or_link_customers(world: IngestHarness) -> None:
    """The same phone and BSUID under two tenants are two customers that know nothing of each other."""
    form = fixture_bytes("twilio_sms_inbound.form").decode()
    for tenant in ("demo", "acme"):
        world.body(
            QueuedEvent.build(tenant=tenant, sender="x", kind="twilio.message", content={"form": form})
        )
    demo = world.store.holders("demo", [Key("phone", "+16505551234")])[Key("phone", "+16505551234")]
    acme = world.store.holders("acme", [Key("phone", "+16505551234")])[Key("phone", "+16505551234")]
    assert demo.id != acme.id and (demo.tenant, acme.tenant) == ("demo", "acme")
    assert world.store.customer("acme", demo.id) is None and world.store.customer("demo", acme.id) is None


def test_erasing_the_old_owner_of_a_recycled_number_leaves_the_new_owner_whole(world: IngestHarness) -> None:
    """I6 then I10: the stale copy goes with the old owner; the number's key stays with its new owner."""
    world.meta("meta_text_phone_and_bsuid.json")
    old = world.by("bsuid", "BR.1502576394655843")
    doc = json.loads(fixture_bytes("meta_text_phone_and_bsuid.json"))
    value = doc["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["user_id"] = value["messages"][0]["from_user_id"] = "BR.999"
    value["messages"][0].update(id="wamid.recycled", timestamp="1779999999")
    world.meta(json.dumps(doc).encode())
    new = world.by("phone", "+5511987654321")
    old = world.store.customer("demo", old.id)
    assert new.id != old.id and old.phone("+5511987654321").status == "stale"
    world.store.erase("demo", old)
    assert world.by("phone", "+5511987654321").id == new.id
    assert world.by("bsuid", "BR.1502576394655843") is None and world.store.customer("demo", old.id) is None
