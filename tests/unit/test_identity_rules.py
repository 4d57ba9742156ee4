"""The identity rules I3-I7 as scenarios, on a tiny in-memory key space."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from crossroute.identity.model import Customer, Key
from crossroute.identity.profile import observe_message
from crossroute.identity.rules import NumberChange, Resolution, Sighting, change_number, resolve
from crossroute.inbound import InboundMessage, Person

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ANA_PHONE, ANA_OLD, ANA_NEW = "+5511987654321", "BR.1502576394655843", "BR.7730019283746501"
ANA_NEW_PHONE = "+5511912345678"


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass
class World:
    """Keys and customers of one tenant, changed only through resolutions (as the store does)."""

    keys: dict[Key, str] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    log: list[Resolution] = field(default_factory=list)

    def holders(self, keys: list[Key]) -> dict[Key, Customer]:
        return {k: self.customers[self.keys[k]] for k in keys if k in self.keys}

    def apply(self, resolution: Resolution) -> Customer:
        for cid, customer in resolution.customers.items():
            assert cid in resolution.created or self.customers[cid].version == resolution.base_versions[cid]
            self.customers[cid] = customer
        for key, (before, after) in resolution.key_owners.items():
            assert self.keys.get(key) == before
            self.keys[key] = after
        self.log.append(resolution)
        return self.customers[resolution.customer_id]

    def claim(
        self, minute: int, phone: str | None = None, bsuid: str | None = None, source: str = "meta.message"
    ) -> Customer:
        claim = Sighting(at(minute), source, f"evt-{minute}", phone=phone, bsuid=bsuid)
        return self.apply(resolve("demo", claim, self.holders(claim.keys), lambda: f"c{next(self.ids)}"))

    def change(self, minute: int, **kwargs: str) -> Customer:
        change = NumberChange(at(minute), "meta.message", f"chg-{minute}", **kwargs)  # type: ignore[arg-type]
        return self.apply(
            change_number("demo", change, self.holders(change.keys), lambda: f"c{next(self.ids)}")
        )

    def live(self) -> list[Customer]:
        return [c for c in self.customers.values() if c.live]

    def owner(self, kind: str, value: str) -> Customer:
        return self.customers[self.keys[Key(kind, value)]]  # type: ignore[arg-type]


def test_first_message_from_a_bsuid_creates_one_customer() -> None:
    world = World()
    customer = world.claim(1, bsuid="DE.88201937465502911")
    assert [b.id for b in customer.bsuids] == ["DE.88201937465502911"]
    assert customer.current_bsuid() == "DE.88201937465502911" and customer.phones == ()
    assert [e.kind for e in world.log[0].events] == ["created", "linked"]


def test_the_same_person_again_changes_nothing() -> None:
    world = World()
    first = world.claim(1, phone=ANA_PHONE, bsuid=ANA_OLD)
    again = world.claim(2, phone=ANA_PHONE, bsuid=ANA_OLD)
    assert again.id == first.id and not world.log[1].key_owners and not world.log[1].events


def test_an_sms_customer_who_later_writes_on_whatsapp_is_one_customer() -> None:
    """I4: the phone's customer has no BSUID of its own: the BSUID joins it."""
    world = World()
    sms = world.claim(5, phone="+16505551234", source="twilio.sms")
    # Provider time of the WhatsApp message may even be earlier: the SMS customer still keeps its id.
    wa = world.claim(2, phone="+16505551234", bsuid="US.1")
    assert wa.id == sms.id and len(world.live()) == 1 and wa.merged_from == ()
    assert wa.current_phones() == ["+16505551234"] and wa.current_bsuid() == "US.1"


def test_a_username_user_who_answers_a_contact_request_merges_with_the_earlier_sms_customer() -> None:
    world = World()
    sms = world.claim(1, phone="+4915123456789", source="twilio.sms")
    wa = world.claim(2, bsuid="DE.88201937465502911")
    merged = world.claim(
        3, phone="+4915123456789", bsuid="DE.88201937465502911", source="meta.contact_request"
    )
    assert merged.id == sms.id  # the older customer survives
    assert world.customers[wa.id].merged_into == sms.id and merged.merged_from == (wa.id,)
    assert world.owner("bsuid", "DE.88201937465502911").id == sms.id
    assert len(world.live()) == 1
    kinds = {(e.customer_id, e.kind) for e in world.log[-1].events}
    assert {(sms.id, "merged"), (wa.id, "merged_into")} <= kinds


def test_a_recycled_number_moves_to_the_new_user_without_a_merge() -> None:
    """I6: the phone's customer already has a different BSUID: the number changed hands."""
    world = World()
    old_owner = world.claim(1, phone="+16505551234", bsuid="US.1")
    new_owner = world.claim(5, phone="+16505551234", bsuid="US.2")
    assert new_owner.id != old_owner.id and len(world.live()) == 2
    assert world.customers[old_owner.id].phone("+16505551234").status == "stale"  # type: ignore[union-attr]
    assert new_owner.current_phones() == ["+16505551234"]
    assert world.owner("phone", "+16505551234").id == new_owner.id
    kinds = [e.kind for e in world.log[-1].events]
    assert "phone_moved_out" in kinds and "phone_moved_in" in kinds and "merged" not in kinds


def test_a_recycled_number_seen_out_of_order_still_ends_with_the_newer_user() -> None:
    world = World()
    new_owner = world.claim(5, phone="+16505551234", bsuid="US.2")
    old_owner = world.claim(1, phone="+16505551234", bsuid="US.1")  # an old event, delivered late
    assert world.owner("phone", "+16505551234").id == new_owner.id
    assert old_owner.phone("+16505551234").status == "stale"  # type: ignore[union-attr]
    assert new_owner.current_phones() == ["+16505551234"]


def test_number_change_keeps_the_customer_and_marks_the_old_phone_stale() -> None:
    """I7, as in meta_system_user_changed_number.json."""
    world = World()
    ana = world.claim(1, phone=ANA_PHONE, bsuid=ANA_OLD)
    after = world.change(
        10, bsuid=ANA_NEW, phone=ANA_NEW_PHONE, previous_bsuid=ANA_OLD, previous_phone=ANA_PHONE
    )
    assert after.id == ana.id and len(world.live()) == 1
    assert after.current_bsuid() == ANA_NEW
    assert {b.id: b.status for b in after.bsuids} == {ANA_OLD: "previous", ANA_NEW: "current"}
    assert {p.e164: p.status for p in after.phones} == {ANA_PHONE: "stale", ANA_NEW_PHONE: "current"}
    assert world.owner("bsuid", ANA_OLD).id == ana.id  # the old id keeps resolving


def test_number_change_delivered_after_messages_from_the_new_id_merges_them() -> None:
    world = World()
    ana = world.claim(1, phone=ANA_PHONE, bsuid=ANA_OLD)
    early = world.claim(12, phone=ANA_NEW_PHONE, bsuid=ANA_NEW)  # arrived before the system message
    after = world.change(
        10, bsuid=ANA_NEW, phone=ANA_NEW_PHONE, previous_bsuid=ANA_OLD, previous_phone=ANA_PHONE
    )
    assert after.id == ana.id and world.customers[early.id].merged_into == ana.id
    assert {p.e164: p.status for p in after.phones} == {ANA_PHONE: "stale", ANA_NEW_PHONE: "current"}
    assert after.current_bsuid() == ANA_NEW


def test_number_change_first_then_an_old_message_leaves_the_old_phone_stale() -> None:
    world = World()
    after = world.change(
        10, bsuid=ANA_NEW, phone=ANA_NEW_PHONE, previous_bsuid=ANA_OLD, previous_phone=ANA_PHONE
    )
    late = world.claim(1, phone=ANA_PHONE, bsuid=ANA_OLD)
    assert late.id == after.id and len(world.live()) == 1
    assert {p.e164: p.status for p in late.phones} == {ANA_PHONE: "stale", ANA_NEW_PHONE: "current"}
    assert late.current_bsuid() == ANA_NEW


def test_an_sms_from_a_number_its_owner_left_starts_a_new_customer() -> None:
    world = World()
    ana = world.claim(1, phone=ANA_PHONE, bsuid=ANA_OLD)
    world.change(10, bsuid=ANA_NEW, phone=ANA_NEW_PHONE, previous_bsuid=ANA_OLD, previous_phone=ANA_PHONE)
    stranger = world.claim(20, phone=ANA_PHONE, source="twilio.sms")
    assert stranger.id != ana.id and stranger.current_phones() == [ANA_PHONE]
    assert world.customers[ana.id].phone(ANA_PHONE).status == "stale"  # type: ignore[union-attr]


def test_user_id_change_without_a_phone_keeps_the_customer() -> None:
    world = World()
    ana = world.claim(1, phone=ANA_PHONE, bsuid=ANA_OLD)
    after = world.change(10, bsuid=ANA_NEW, previous_bsuid=ANA_OLD)
    assert after.id == ana.id and after.current_bsuid() == ANA_NEW
    assert after.current_phones() == []  # the number the old id came with is no longer theirs


def test_parallel_histories_two_keys_without_a_link_stay_two_customers() -> None:
    world = World()
    world.claim(1, phone="+16505551234", source="twilio.sms")
    world.claim(2, bsuid="US.99")
    assert len(world.live()) == 2


def test_a_whatsapp_message_to_an_unknown_business_number_opens_no_window() -> None:
    ana = Customer(id="c1", tenant="demo", created_at=T0, updated_at=T0)

    def message(business: str) -> InboundMessage:
        return InboundMessage(
            "demo", "meta", "whatsapp", "wamid.1", business, Person(bsuid=ANA_OLD), at(5), "text", "oi"
        )

    assert observe_message(ana, message("")).whatsapp_last_inbound == {}
    assert observe_message(ana, message("100000000000001")).whatsapp_last_inbound == {
        "100000000000001": at(5)
    }


def test_r10_an_sms_records_the_tenant_number_last_texted_whatever_the_order() -> None:
    ana = Customer(id="c1", tenant="demo", created_at=T0, updated_at=T0)

    def sms(business: str, minute: int, channel: str = "sms") -> InboundMessage:
        return InboundMessage(
            "demo",
            "twilio",
            channel,
            f"SM{minute}",
            business,
            Person(phone=ANA_PHONE),
            at(minute),
            "text",
            "hi",
        )

    texts = [sms("+15550100002", 1), sms("+15550100004", 5), sms("+15550100002", 3)]
    for order in itertools.permutations(texts):
        seen = ana
        for message in order:
            seen = observe_message(seen, message)
        assert (seen.sms_last_to, seen.sms_last_to_at) == ("+15550100004", at(5))
    # Two at the same time: the greater number, in either order; WhatsApp messages are not SMS.
    tie = [sms("+15550100002", 7), sms("+15550100004", 7)]
    assert observe_message(observe_message(ana, tie[0]), tie[1]).sms_last_to == "+15550100004"
    assert observe_message(observe_message(ana, tie[1]), tie[0]).sms_last_to == "+15550100004"
    assert observe_message(ana, sms("100000000000001", 9, "whatsapp")).sms_last_to is None
    assert observe_message(ana, sms("", 9)).sms_last_to is None
