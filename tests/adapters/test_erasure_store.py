"""Erasure (I10) in the table (moto): the SMS suppressions it keeps, and the bodies sent before the
customer was known (the orphan index) that it deletes. The same rules over the fakes:
``tests/unit/test_erasure_rules.py``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from crossroute.contacts import Contacts
from crossroute.identity.model import Key
from crossroute.inbound import ProviderEvent
from crossroute.routing.request import Address
from crossroute.store.sends import REQUEST, DynamoSendStore, SendRequestItem, request_pk
from crossroute.store.tables import (
    MessageItem,
    SuppressionItem,
    TableItem,
    customer_pk,
    key_pk,
    orphan_pk,
    request_id_pk,
    suppression_pk,
)
from tests.fakes import RecordingPublisher
from tests.support import (
    IN_WINDOW,
    SHIPPED_TEMPLATE,
    TENANT,
    DispatchWorld,
    minute_at,
    send_request,
    sms_in,
    whatsapp_in,
)

PHONE, OTHER, BSUID = "+16505550001", "+16505550009", "US.111"


class World(DispatchWorld):
    """Dispatch and ingest over the table, and the contacts API erasing at ``erased_at``."""

    def __init__(self) -> None:
        super().__init__(IN_WINDOW)
        self.erasures = RecordingPublisher()
        self.erased_at = minute_at(10)
        self.contacts = Contacts(self.ingest.store, clock=lambda: self.erased_at, events=self.erasures)

    def feed(self, *events: ProviderEvent) -> None:
        for event in events:
            self.ingest.ingest.handle([event])

    def holder(self, kind: str, value: str) -> Any:
        return self.ingest.by(kind, value)

    def erase(self, kind: str, value: str) -> dict[str, Any]:
        return self.contacts.erase(TENANT, self.holder(kind, value).id)


@pytest.fixture
def world(table: str) -> World:
    return World()


def suppressions() -> list[SuppressionItem]:
    return [i for i in TableItem.scan(consistent_read=True) if isinstance(i, SuppressionItem)]


def orphaned(key: Key) -> list[TableItem]:
    return list(TableItem.timeline.query(orphan_pk(TENANT, key)))


def request_item(key: str) -> SendRequestItem | None:
    try:
        return SendRequestItem.get(request_pk(TENANT, key), REQUEST, consistent_read=True)
    except SendRequestItem.DoesNotExist:
        return None


def world_message(message_id: str) -> MessageItem | None:
    try:
        return MessageItem.get(f"T#{TENANT}#M#twilio#{message_id}", "MSG", consistent_read=True)
    except MessageItem.DoesNotExist:
        return None


def test_a_stop_is_kept_as_a_keyed_hash_and_a_time_only(world: World) -> None:
    world.feed(sms_in("SM1", PHONE, 0), sms_in("SM2", PHONE, 1, "STOP"))
    erased = world.erase("phone", PHONE)
    assert erased["counts"]["phones_suppressed"] == 1
    (item,) = suppressions()
    assert (item.pk, item.sk) == (suppression_pk(TENANT, PHONE), "SUPPRESSED")
    assert item.at == world.erased_at and item.expires_at is None  # never expires
    raw = item.serialize()
    assert set(raw) == {"pk", "sk", "type", "at"}
    assert PHONE[2:] not in str(raw)  # not even the digits: an HMAC of the phone
    assert world.holder("phone", PHONE) is None
    assert not [i for i in TableItem.scan(consistent_read=True) if i.pk.startswith(f"T#{TENANT}#K#")]


def test_what_was_sent_before_the_customer_was_known_is_deleted_with_it(world: World) -> None:
    sends = DynamoSendStore(world.ingest.store)
    # Before anyone holds the phone: a POST /messages (recorded by the door, then sent by dispatch), a
    # request to the BSUID alone (not sendable: recorded only), and an SMS to someone else's phone.
    sends.accept(
        tenant=TENANT,
        key="k1",
        request_id="r1",
        request=send_request("k1", to={"phone": PHONE}),
        now=world.now,
        to=Address(phone=PHONE),
    )
    assert len(orphaned(Key("phone", PHONE))) == 1  # indexed from the door on
    assert sends.progress(TENANT, "r1") is not None
    assert world.dispatch.send(send_request("k1", to={"phone": PHONE}, channels=["sms"])).sent == {
        "sms": "SM1"
    }
    world.dispatch.send(send_request("k2", to={"bsuid": BSUID}, template=SHIPPED_TEMPLATE))
    world.dispatch.send(send_request("k3", to={"phone": OTHER}, channels=["sms"]))
    sent = world_message("SM1")
    assert sent is not None and sent.text == "Your order has shipped" and sent.customer_id is None
    assert {i.pk for i in orphaned(Key("phone", PHONE))} == {request_pk(TENANT, "k1"), sent.pk}
    assert [i.pk for i in orphaned(Key("bsuid", BSUID))] == [request_pk(TENANT, "k2")]

    world.feed(whatsapp_in("wamid.1", 30, BSUID, phone=PHONE))  # now a customer holds both
    erased = world.erase("bsuid", BSUID)
    assert request_item("k1") is None and request_item("k2") is None and world_message("SM1") is None
    assert orphaned(Key("phone", PHONE)) == [] and orphaned(Key("bsuid", BSUID)) == []
    # profile, 2 keys, the message and its identity events (created, 2 linked), 3 orphans
    assert erased["counts"] == {"items_deleted": 1 + 2 + 1 + 3 + 3, "phones_suppressed": 0}
    assert sends.progress(TENANT, "r1") is None  # GET /messages/r1: gone with it
    assert not [i for i in TableItem.scan(consistent_read=True) if i.pk == request_id_pk(TENANT, "r1")]
    # Someone else's are untouched.
    assert request_item("k3") is not None and world_message("SM2") is not None
    assert len(orphaned(Key("phone", OTHER))) == 2


def test_a_request_goes_onto_the_first_customer_s_timeline_once_dispatch_knows_it(world: World) -> None:
    world.feed(sms_in("SM1", PHONE, 0))
    customer = world.holder("phone", PHONE)
    sends = DynamoSendStore(world.ingest.store)
    doc = send_request("k1", to={"phone": PHONE}, channels=["sms"])
    sends.accept(
        tenant=TENANT, key="k1", request_id="r1", request=doc, now=world.now, to=Address(phone=PHONE)
    )
    item = request_item("k1")
    assert item is not None and item.gsi1pk == orphan_pk(TENANT, Key("phone", PHONE))  # the door knows no one
    world.dispatch.send(doc)
    item = request_item("k1")
    assert item is not None and (item.gsi1pk, item.customer_id) == (
        customer_pk(TENANT, customer.id),
        customer.id,
    )
    assert item.gsi1sk == f"{world.now.isoformat()}#decision#r1"
    # Handled again later for another customer (the key changed hands): it stays where it was.
    sends.begin(
        tenant=TENANT,
        key="k1",
        request_id="r9",
        request=doc,
        decision=[],
        customer_id="someone-else",
        claim=None,
        now=world.now + timedelta(days=1),
        to=Address(phone=PHONE),
    )
    item = request_item("k1")
    assert item is not None and (item.gsi1pk, item.customer_id) == (
        customer_pk(TENANT, customer.id),
        customer.id,
    )
    timeline = world.contacts.timeline(TENANT, customer.id, limit=None, before=None)["items"]
    (decision,) = [e for e in timeline if e["kind"] == "decision"]  # R9, on the customer's timeline
    assert decision["at"] == world.now.isoformat() and decision["request_id"]
    world.contacts.erase(TENANT, customer.id)
    assert request_item("k1") is None


def test_a_number_that_moved_to_someone_else_is_neither_deleted_nor_suppressed(world: World) -> None:
    """I6: Ann said STOP from her number, which then passed to Carl; erasing Ann leaves it his."""
    world.feed(
        whatsapp_in("wamid.ANN", 0, BSUID, phone=PHONE),
        sms_in("SM1", PHONE, 1, "STOP"),
        whatsapp_in("wamid.CARL", 5, "US.444", phone=PHONE),
    )
    carl = world.holder("phone", PHONE)
    ann = world.holder("bsuid", BSUID)
    assert carl.id != ann.id and ann.phone(PHONE).status == "stale"
    carl_timeline = world.contacts.timeline(TENANT, carl.id, limit=None, before=None)
    erased = world.contacts.erase(TENANT, ann.id)
    assert erased["counts"]["phones_suppressed"] == 0 and suppressions() == []
    assert world.holder("phone", PHONE).id == carl.id and world.holder("bsuid", BSUID) is None
    assert (
        TableItem.get(key_pk(TENANT, Key("phone", PHONE)), "KEY", consistent_read=True).customer_id == carl.id
    )
    assert world.contacts.timeline(TENANT, carl.id, limit=None, before=None) == carl_timeline


def test_the_same_phone_suppressed_by_two_erasures_is_one_item_at_the_later_time(world: World) -> None:
    world.feed(sms_in("SM1", PHONE, 0, "STOP"))
    first = world.erase("phone", PHONE)
    world.feed(sms_in("SM2", PHONE, 20, "START"), sms_in("SM3", PHONE, 21, "STOP"))
    world.erased_at = minute_at(30)
    second = world.erase("phone", PHONE)
    assert first["counts"]["phones_suppressed"] == second["counts"]["phones_suppressed"] == 1
    (item,) = suppressions()
    assert item.at == minute_at(30)
    assert [d for _, d in world.erasures.wire()] == [{**e, "version": "1"} for e in (first, second)]
