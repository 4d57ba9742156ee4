"""R13 on the way back, over DynamoDB (moto): the numbered options an SMS carried are kept under a keyed
hash of its phone when the send settles, read along with the sender's keys (no extra round trip), map
a reply to the option picked, and go with the customer's erasure (I10)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from crossroute.channels import Outbound, Sent
from crossroute.contacts import Contacts
from crossroute.identity.model import Key
from crossroute.ingest import Ingest
from crossroute.replies import OFFER_KEEP, Offer
from crossroute.routing.settlement import Claim, Settlement
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.sends import DynamoSendStore
from crossroute.store.tables import OfferItem, TableItem, offer_pk
from tests.fakes import RecordingPublisher
from tests.support import TENANT, TWILIO_SMS_NUMBER, minute_at, pynamodb_clients, sms_in

PHONE = "+16505550199"
OPTIONS = (("track", "Track order"), ("change", "Change address"), ("agent", "Talk to us"))


@pytest.fixture
def calls(table: str) -> Iterator[Counter[str]]:
    """DynamoDB operations made, by name (one per round trip)."""
    made: Counter[str] = Counter()

    def count(model: Any, **kwargs: Any) -> None:
        made[model.name] += 1

    clients = pynamodb_clients()
    for client in clients:
        client.meta.events.register("before-call.dynamodb", count)
    yield made
    for client in clients:
        client.meta.events.unregister("before-call.dynamodb", count)


def send_sms_with_options(key: str, minute: int) -> None:
    """What dispatch settles for an SMS that carried numbered options."""
    store = DynamoSendStore()
    claim = Claim(TENANT, key, "sms", "a1")
    store.begin(
        tenant=TENANT,
        key=key,
        request_id=f"r-{key}",
        request={"to": {"phone": PHONE}},
        decision=[],
        customer_id=None,
        claim=claim,
        now=minute_at(minute),
    )
    text = "Your order shipped.\n1. Track order\n2. Change address\n3. Talk to us"
    outbound = Outbound("sms", TWILIO_SMS_NUMBER, to=PHONE, text=text, options=OPTIONS)
    sent = Settlement.delivered(
        claim, minute_at(minute), Sent("twilio", f"SM{key}"), "sms.only", outbound, None
    )
    assert store.settle(sent)


def test_the_options_are_kept_under_a_keyed_hash_of_the_phone_and_expire(table: str) -> None:
    send_sms_with_options("k1", 0)
    item = OfferItem.get(offer_pk(TENANT, PHONE), "OFFER", consistent_read=True)
    assert json.loads(item.options) == [list(o) for o in OPTIONS]
    assert (item.channel, item.request_key) == ("sms", "k1")
    assert item.expires_at == minute_at(0) + OFFER_KEEP
    assert PHONE[2:] not in json.dumps(item.serialize())  # not even the digits


def test_a_reply_is_read_along_with_the_senders_keys_and_stored_as_the_option_picked(
    table: str, calls: Counter[str]
) -> None:
    store = DynamoIdentityStore()
    ingest = Ingest(store, RecordingPublisher(), sleep=lambda _: None)
    ingest.handle([sms_in("SM-first", PHONE, 0, "hello")])  # a customer holds the phone
    send_sms_with_options("k2", 1)
    keys = [Key("phone", PHONE)]
    calls.clear()
    store.holders(TENANT, keys)
    plain = sum(calls.values())
    calls.clear()
    holders, offer = store.holders_and_offer(TENANT, keys, PHONE)
    assert sum(calls.values()) == plain  # the offer comes in the same batch read
    assert offer == Offer("sms", OPTIONS, minute_at(1), "k2") and set(holders) == set(keys)

    bus = RecordingPublisher()
    Ingest(store, bus, sleep=lambda _: None).handle([sms_in("SM-reply", PHONE, 2, "2")])
    (received,) = [e.detail for e in bus.events if e.detail_type == "MessageReceived"]
    assert received["choice"] == {"id": "change", "title": "Change address", "via": "sms.numbered_option"}
    customer = holders[keys[0]]
    page = Contacts(store).timeline(TENANT, customer.id, limit=None, before=None)
    (reply,) = [i for i in page["items"] if i.get("message_id") == "SM-reply"]
    assert (reply["type"], reply["text"], reply["choice"]["id"]) == (
        "interactive",
        "Change address",
        "change",
    )


def test_a_reply_after_the_offer_expired_is_a_plain_text(table: str) -> None:
    store = DynamoIdentityStore()
    send_sms_with_options("k3", 0)
    bus = RecordingPublisher()
    late = replace(sms_in("SM-late", PHONE, 0, "2"), sent_at=minute_at(0) + OFFER_KEEP + timedelta(minutes=1))
    Ingest(store, bus, sleep=lambda _: None).handle([late])
    (received,) = [e.detail for e in bus.events if e.detail_type == "MessageReceived"]
    assert (received["type"], "choice" in received) == ("text", False)


def test_the_erasure_of_the_customer_holding_the_phone_deletes_the_offer(table: str) -> None:
    store = DynamoIdentityStore()
    Ingest(store, RecordingPublisher(), sleep=lambda _: None).handle([sms_in("SM-e", PHONE, 0, "hi")])
    send_sms_with_options("k4", 1)
    customer = store.holders(TENANT, [Key("phone", PHONE)])[Key("phone", PHONE)]
    Contacts(store, events=RecordingPublisher()).erase(TENANT, customer.id)
    assert not [i for i in TableItem.scan(consistent_read=True) if i.pk == offer_pk(TENANT, PHONE)]
