"""Erasure (I10) and what it leaves: the use cases over the in-memory fakes, fed by the real ``Ingest``.

A customer who said STOP and was erased (``Contacts.erase``) keeps the phone suppressed: dispatch sends no
SMS there (R4), whoever holds the phone now, until a START later than the erasure. ``CustomerErased`` is
published with ids and counts only. ``tests/adapters/test_contact_book_agreement.py`` and
``test_send_store_agreement.py`` check that the DynamoDB stores answer as these fakes do;
``tests/adapters/test_erasure_store.py`` checks the table itself.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from crossroute.contacts import Contacts
from crossroute.dispatch import Dispatch, TenantSetup
from crossroute.identity.model import Key
from crossroute.ingest import Ingest
from crossroute.routing.policy import TenantChannels
from tests.fakes import MemoryIdentityStore, MemorySendStore, RecordingPublisher, ScriptedSender
from tests.support import PHONE_NUMBER_ID, TENANT, TWILIO_SMS_NUMBER, minute_at, sms_in, whatsapp_in

PHONE, BSUID = "+16505550001", "US.111"
ERASED_AT = minute_at(10)  # the SMS and WhatsApp messages below are at minutes 0-3 and 20-30
TEMPLATE = {"name": "order_shipped", "language": "en_US", "category": "utility", "components": []}


class World:
    """One tenant: ingest, the contacts API (erasure publishing on ``bus``) and dispatch, over the fakes."""

    def __init__(self) -> None:
        self.store = MemoryIdentityStore()
        ids = itertools.count()
        self.ingest = Ingest(
            self.store, RecordingPublisher(), new_id=lambda: f"c{next(ids)}", sleep=lambda _: None
        )
        self.bus = RecordingPublisher()
        self.erased_at = ERASED_AT
        self.contacts = Contacts(self.store, clock=lambda: self.erased_at, events=self.bus)
        self.sends = MemorySendStore(customers=self.store)
        self.whatsapp, self.sms = ScriptedSender("meta"), ScriptedSender("twilio")
        setup = TenantSetup(
            TenantChannels(PHONE_NUMBER_ID, TWILIO_SMS_NUMBER), {"whatsapp": self.whatsapp, "sms": self.sms}
        )
        keys = itertools.count()
        self.new_key = lambda: f"k{next(keys)}"
        self.dispatch = Dispatch(self.sends, lambda tenant: setup, self.bus, clock=lambda: minute_at(40))

    def texts(self, message_id: str, minute: int, text: str = "hi") -> str:
        """An SMS from PHONE; its customer's id."""
        self.ingest.handle([sms_in(message_id, PHONE, minute, text)])
        holder = self.store.holders(TENANT, [Key("phone", PHONE)])[Key("phone", PHONE)]
        return holder.id

    def send(self, to: dict[str, str], **fields: Any) -> dict[str, Any]:
        """A send request; the ``MessageRouted`` or ``MessageUndeliverable`` it published."""
        self.bus.clear()
        doc = {"tenant": TENANT, "idempotency_key": self.new_key(), "to": to, **fields}
        self.dispatch.send({"text": "Your order has shipped", **doc} if "template" not in fields else doc)
        (event,) = [e for e in self.bus.events if e.detail_type in ("MessageRouted", "MessageUndeliverable")]
        return {"type": event.detail_type, **event.detail}


def sms_reason(event: dict[str, Any]) -> str:
    return next(str(c["reason"]) for c in event["decision"] if c["channel"] == "sms")


def test_an_erased_stop_keeps_the_phone_from_sms_and_customer_erased_tells_no_personal_data() -> None:
    world = World()
    world.texts("SM1", 0)
    customer_id = world.texts("SM2", 1, "STOP")
    erased = world.contacts.erase(TENANT, customer_id)
    (event,) = world.bus.wire()
    assert event == ("CustomerErased", {**erased, "version": "1"})  # as sent: with the detail's version
    assert erased == {
        "tenant": TENANT,
        "customer_id": customer_id,
        "merged_from": [],
        "erased_at": ERASED_AT.isoformat(),
        "counts": {"items_deleted": 1 + 1 + 2 + 2, "phones_suppressed": 1},  # profile, key, 2 SMS, 2 events
    }
    assert PHONE not in json.dumps(event) and PHONE[1:] not in json.dumps(event)
    assert world.store.holders(TENANT, [Key("phone", PHONE)]) == {}  # erased: an unknown phone now
    assert world.store.suppression(TENANT, PHONE) == ERASED_AT

    refused = world.send({"phone": PHONE}, channels=["sms"])
    assert (refused["type"], refused["reason"], sms_reason(refused)) == (
        "MessageUndeliverable",
        "no_channel",
        "sms.opted_out",
    )
    assert world.sms.calls == [] and world.sends.suppression_reads == 0  # read with the recipient


def test_a_customer_who_never_opted_out_leaves_no_suppression() -> None:
    world = World()
    world.contacts.erase(TENANT, world.texts("SM1", 0))
    assert world.store.suppression(TENANT, PHONE) is None
    assert world.send({"phone": PHONE}, channels=["sms"])["type"] == "MessageRouted"


def test_writing_again_is_not_enough_a_start_after_the_erasure_is() -> None:
    world = World()
    world.contacts.erase(TENANT, world.texts("SM1", 0, "STOP"))
    again = world.texts("SM3", 20)  # a new customer holds the phone, and said no START
    for to in ({"phone": PHONE}, {"customer_id": again}):
        assert sms_reason(world.send(to, channels=["sms"])) == "sms.opted_out", to
    assert world.sms.calls == []
    world.texts("SM4", 21, "START")
    routed = world.send({"customer_id": again}, channels=["sms"])
    assert (routed["type"], routed["channel"], routed["reason"]) == (
        "MessageRouted",
        "sms",
        "sms.current_phone",
    )
    assert [m.to for m in world.sms.calls] == [PHONE]


def test_by_id_the_suppression_is_read_only_when_sms_is_to_be_used() -> None:
    """A customer addressed by id or BSUID: its phone is known once its profile is read, so the phone's
    suppression is read then (one more read), and only for an SMS: a WhatsApp send reads nothing more,
    and an SMS after a failed WhatsApp message is checked before it is claimed."""
    world = World()
    world.contacts.erase(TENANT, world.texts("SM1", 0, "STOP"))
    world.ingest.handle([whatsapp_in("wamid.IN", 30, BSUID, phone=PHONE)])  # WhatsApp, window open
    customer_id = world.texts("SM3", 30)
    assert world.send({"customer_id": customer_id})["channel"] == "whatsapp"
    assert world.sends.suppression_reads == 0
    assert sms_reason(world.send({"customer_id": customer_id}, channels=["sms"])) == "sms.opted_out"
    assert world.sends.suppression_reads == 1
    world.whatsapp.script.append("fallback")  # WhatsApp fails for good at send time: SMS would be next
    failed = world.send({"bsuid": BSUID})
    assert (failed["type"], failed["reason"]) == ("MessageUndeliverable", "send_failed")
    assert [f["channel"] for f in failed["failures"]] == ["whatsapp"]
    assert world.sms.calls == [] and world.sends.suppression_reads == 2


def test_the_later_sms_fallback_r7_checks_the_suppression_too() -> None:
    world = World()
    world.contacts.erase(TENANT, world.texts("SM1", 0, "STOP"))
    world.ingest.handle([whatsapp_in("wamid.IN", 30, BSUID, phone=PHONE)])
    routed = world.send({"bsuid": BSUID})
    assert routed["channel"] == "whatsapp"
    world.bus.clear()
    world.dispatch.fallback(TENANT, "meta", routed["provider_message_id"], 131026)
    (undeliverable,) = world.bus.of("MessageUndeliverable")
    assert undeliverable["reason"] == "fallback.whatsapp_failed.131026"
    assert sms_reason(undeliverable) == "sms.opted_out" and world.sms.calls == []


def test_the_same_phone_suppressed_by_two_erasures_keeps_the_later_time() -> None:
    world = World()
    world.contacts.erase(TENANT, world.texts("SM1", 0, "STOP"))
    world.texts("SM2", 20, "START")
    again = world.texts("SM3", 21, "STOP")
    world.erased_at = later = datetime(2026, 11, 2, tzinfo=UTC)
    assert world.contacts.erase(TENANT, again)["counts"]["phones_suppressed"] == 1
    assert world.store.suppression(TENANT, PHONE) == later
    world.texts("SM4", 30, "START")  # after the first erasure, before the second: not enough
    assert sms_reason(world.send({"phone": PHONE}, channels=["sms"])) == "sms.opted_out"
