"""I11: records from the business's own systems (``crossroute.identity.business_records`` and the
``Contacts.upsert`` use case over the in-memory store). A record creates or updates one customer, links
keys no one else holds, reports a conflict instead of merging, may turn an opt-out on but never off."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute.contacts import BadQuery, Contacts
from crossroute.dispatch import Dispatch, TenantSetup
from crossroute.identity.business_records import InvalidRecord, parse_record, upsert
from crossroute.identity.model import Customer, Key
from crossroute.identity.rules import Sighting, Working, _merge, resolve
from crossroute.ingest import Ingest
from crossroute.ports import Conflict
from crossroute.routing.policy import TenantChannels
from tests.fakes import MemoryIdentityStore, MemorySendStore, RecordingPublisher, ScriptedSender
from tests.support import TWILIO_SMS_NUMBER, sms_in, whatsapp_in, wire_problems

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PHONE = "+15550123456"
BSUID = "US.13491208655302741918"


def record(**fields: Any) -> Any:
    return parse_record(fields, region="US", at=NOW, event_id="record:1")


def ids() -> Any:
    numbers = count(1)
    return lambda: f"c{next(numbers)}"


def contacts(store: MemoryIdentityStore) -> Contacts:
    return Contacts(store, clock=lambda: NOW, new_id=ids())


def test_a_record_lists_every_problem_with_a_code() -> None:
    with pytest.raises(InvalidRecord) as invalid:
        record(phone="call me", bsuid="nope", colour="red", sms_opted_out="yes", external_id=" x")
    codes = {(p.field, p.code) for p in invalid.value.problems}
    assert codes == {
        ("phone", "phone.invalid"),
        ("bsuid", "bsuid.invalid"),
        ("colour", "field.unknown"),
        ("sms_opted_out", "sms_opted_out.invalid"),
        ("external_id", "external_id.invalid"),
    }
    with pytest.raises(InvalidRecord) as keyless:
        record(name="Ana")
    assert [p.code for p in keyless.value.problems] == ["record.no_key"]
    assert record(tenant="demo", phone="(555) 012-3456").phone == PHONE  # national, read in the region


def test_a_new_record_creates_one_customer_holding_its_keys() -> None:
    done = upsert("demo", record(external_id="crm-1", phone=PHONE, bsuid=BSUID, name="Ana"), {}, ids())
    assert done.outcome == "created" and done.resolution is not None
    customer = done.resolution.customers[done.customer_id or ""]
    assert customer.external_id == "crm-1" and customer.name == "Ana"
    assert customer.current_phones() == [PHONE] and customer.current_bsuid() == BSUID
    assert customer.phones[0].source == "business.record"
    owners = {k: after for k, (_, after) in done.resolution.key_owners.items()}
    assert owners == {Key("external", "crm-1"): "c1", Key("phone", PHONE): "c1", Key("bsuid", BSUID): "c1"}
    kinds = [(e.kind, e.detail.get("key")) for e in done.resolution.events]
    assert kinds == [("created", None), ("linked", "external_id"), ("linked", "phone"), ("linked", "bsuid")]


def test_the_same_record_again_changes_nothing_and_a_new_name_updates() -> None:
    store = MemoryIdentityStore()
    book = contacts(store)
    first = book.upsert("demo", [{"external_id": "crm-1", "phone": PHONE}], region="US")
    again = book.upsert("demo", [{"external_id": "crm-1", "phone": PHONE}], region="US")
    renamed = book.upsert("demo", [{"external_id": "crm-1", "name": "Ana Lima"}], region="US")
    assert [a.outcome for a in (*first, *again, *renamed)] == ["created", "unchanged", "updated"]
    assert [a.status for a in (*first, *again, *renamed)] == [201, 200, 200]
    (customer,) = store.live_customers("demo")
    assert customer.name == "Ana Lima" and customer.external_id == "crm-1"


def test_a_key_held_by_another_customer_is_a_conflict_naming_it_and_nothing_merges() -> None:
    store = MemoryIdentityStore()
    book = contacts(store)
    ana, _ = book.upsert(
        "demo", [{"external_id": "crm-1", "phone": PHONE}, {"external_id": "crm-2"}], region="US"
    )
    (clash,) = book.upsert("demo", [{"external_id": "crm-2", "phone": PHONE, "name": "X"}], region="US")
    assert (clash.outcome, clash.status, clash.conflicts) == ("conflict", 409, (("phone", ana.customer_id),))
    (other,) = book.upsert("demo", [{"external_id": "crm-9", "phone": PHONE}], region="US")
    assert other.conflicts == (("phone", ana.customer_id),)  # its customer carries another external id
    assert len(store.live_customers("demo")) == 2
    assert all(c.name is None for c in store.live_customers("demo"))  # a conflict changes nothing


def test_an_opt_out_may_be_turned_on_never_off_and_the_rest_is_applied() -> None:
    store = MemoryIdentityStore()
    book = contacts(store)
    (on,) = book.upsert("demo", [{"phone": PHONE, "sms_opted_out": True}], region="US")
    (off,) = book.upsert("demo", [{"phone": PHONE, "sms_opted_out": False, "name": "Ana"}], region="US")
    assert on.outcome == "created" and off.outcome == "updated"
    assert [(p.field, p.code) for p in off.refused] == [("sms_opted_out", "opt_in.needs_user")]
    (customer,) = store.live_customers("demo")
    assert customer.sms_opted_out and customer.name == "Ana"
    (marketing,) = book.upsert("demo", [{"phone": PHONE, "marketing_opted_out": True}], region="US")
    assert marketing.outcome == "updated" and store.live_customers("demo")[0].marketing_opted_out


def test_a_bsuid_next_to_another_current_one_and_a_stale_phone_are_refused() -> None:
    store = MemoryIdentityStore()
    book = contacts(store)
    book.upsert("demo", [{"external_id": "crm-1", "bsuid": BSUID}], region="US")
    (answer,) = book.upsert("demo", [{"external_id": "crm-1", "bsuid": "US.99"}], region="US")
    assert answer.outcome == "unchanged" and [p.code for p in answer.refused] == ["bsuid.other_current"]
    assert store.holders("demo", [Key("bsuid", "US.99")]) == {}


def test_an_imported_phone_links_by_i4_when_its_user_writes_on_whatsapp_and_keeps_its_external_id() -> None:
    store = MemoryIdentityStore()
    (imported,) = contacts(store).upsert("demo", [{"external_id": "crm-1", "phone": PHONE}], region="US")
    sighting = Sighting(NOW + timedelta(hours=1), "meta.message", "wamid.1", phone=PHONE, bsuid=BSUID)
    holders = store.holders("demo", sighting.keys)
    resolution = resolve("demo", sighting, holders, ids())
    assert resolution.customer_id == imported.customer_id and not resolution.created
    customer = resolution.customers[resolution.customer_id]
    assert customer.external_id == "crm-1" and customer.current_bsuid() == BSUID


def test_a_merge_keeps_one_external_id_and_the_other_still_finds_the_survivor() -> None:
    at = NOW
    a = Customer("a", "demo", at, at, external_id="crm-a", phones=())
    b = Customer("b", "demo", at + timedelta(seconds=1), at, external_id="crm-b")
    work = Working({Key("external", "crm-a"): a, Key("external", "crm-b"): b}, ids(), at)
    cause = Sighting(at, "meta.message", "wamid.2", phone=PHONE, bsuid=BSUID)
    survivor = _merge(work, a, b, cause)
    resolution = work.resolution(survivor.id)
    assert survivor.external_id == "crm-a"
    assert resolution.customers["b"].merged_into == "a" and resolution.customers["b"].external_id == "crm-b"
    assert Key("external", "crm-b") not in resolution.key_owners  # it stays with b, which resolves to a


def test_records_naming_the_same_new_phone_in_one_batch_create_one_customer() -> None:
    store = MemoryIdentityStore()
    answers = contacts(store).upsert(
        "demo", [{"phone": PHONE}, {"phone": PHONE, "name": "Ana"}, {"phone": "bad"}], region="US"
    )
    assert [a.outcome for a in answers] == ["created", "updated", "invalid"]
    assert len(store.live_customers("demo")) == 1


def test_a_dry_run_answers_as_it_would_and_writes_nothing() -> None:
    store = MemoryIdentityStore()
    contacts(store).upsert("demo", [{"external_id": "crm-1", "phone": PHONE}], region="US")
    before = store.copy()
    answers = contacts(store).upsert(
        "demo",
        [
            {"external_id": "crm-1", "name": "New"},
            {"external_id": "crm-2", "phone": PHONE},
            {"phone": "+15550199999"},
        ],
        region="US",
        dry_run=True,
    )
    assert [a.outcome for a in answers] == ["updated", "conflict", "created"]
    assert answers[2].customer_id is None
    assert store.live_customers("demo") == before.live_customers("demo")


class RacedOnce(MemoryIdentityStore):
    """Another writer takes the phone between the batch's read and its first commit."""

    raced = False

    def commit(self, tenant, customers, base_versions, key_owners, events, message=None, **kw):  # type: ignore[no-untyped-def]
        if not self.raced:
            self.raced = True
            super().commit(
                tenant,
                {"rival": Customer("rival", tenant, NOW, NOW)},
                {},
                {Key("phone", PHONE): (None, "rival")},
                [],
            )
            raise Conflict("phone taken meanwhile")
        return super().commit(tenant, customers, base_versions, key_owners, events, message, **kw)


def test_a_record_that_loses_a_race_is_decided_again_on_fresh_holders() -> None:
    store = RacedOnce()
    (answer,) = contacts(store).upsert("demo", [{"external_id": "crm-1", "phone": PHONE}], region="US")
    # Decided again: the phone's customer now exists (the rival, without an external id): it is updated.
    assert (answer.outcome, answer.customer_id) == ("updated", "rival")
    (customer,) = store.live_customers("demo")
    assert customer.external_id == "crm-1" and store.holders("demo", [Key("external", "crm-1")])


def test_more_than_a_hundred_records_are_refused() -> None:
    with pytest.raises(BadQuery):
        contacts(MemoryIdentityStore()).upsert("demo", [{"phone": PHONE}] * 101, region="US")


PHONES = [f"+1555010{n:04d}" for n in range(4)]
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "external_id": st.sampled_from(["crm-1", "crm-2", "crm-3"]),
        "phone": st.sampled_from(PHONES),
        "bsuid": st.sampled_from(["US.1", "US.2", "US.3"]),
        "sms_opted_out": st.booleans(),
    },
)


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(st.lists(RECORDS, min_size=1, max_size=6), min_size=1, max_size=4))
def test_records_never_merge_keep_one_holder_per_key_and_are_idempotent(batches: list[list[dict]]) -> None:
    store = MemoryIdentityStore()
    book = contacts(store)
    for batch in batches:
        book.upsert("demo", batch, region="US")
    live = store.live_customers("demo")
    assert all(c.merged_into is None and not c.merged_from for c in live)  # never a merge (I11)
    held = [k for c in live for k in c.keys]
    assert len(held) == len(set(held))  # one holder per key (I3)
    assert all(store.holders("demo", [k])[k].id == c.id for c in live for k in c.keys)
    for batch in batches:  # the same records again: nothing changes
        assert {a.outcome for a in book.upsert("demo", batch, region="US")} <= {
            "unchanged",
            "conflict",
            "invalid",
        }
    assert store.live_customers("demo") == live


def test_events_about_a_customer_with_an_external_id_name_it() -> None:
    store, bus = MemoryIdentityStore(), RecordingPublisher()
    (imported,) = contacts(store).upsert(
        "demo", [{"external_id": "crm-1", "phone": "+16505550001"}], region="US"
    )
    ingest = Ingest(store, bus, sleep=lambda _: None)
    ingest.handle([sms_in("SM1", "+16505550001", 0), whatsapp_in("wamid.1", 1, BSUID, phone="+16505550001")])
    ingest.handle([sms_in("SM2", "+16505550002", 2)])  # someone the business never recorded
    about_crm_1 = [e for e in bus.events if e.detail.get("customer_id") == imported.customer_id]
    assert {e.detail_type for e in about_crm_1} == {"MessageReceived", "IdentityChanged"}
    assert all(e.detail["external_id"] == "crm-1" for e in about_crm_1)
    others = [e for e in bus.events if e.detail.get("customer_id") != imported.customer_id]
    assert others and all("external_id" not in e.detail for e in others)
    assert all(wire_problems(e) == [] for e in bus.events)


def test_dispatch_events_name_the_recipients_external_id() -> None:
    store, bus = MemoryIdentityStore(), RecordingPublisher()
    contacts(store).upsert(
        "demo",
        [{"external_id": "crm-1", "phone": PHONE}, {"external_id": "crm-2", "phone": "+15550123457"}],
        region="US",
    )
    store.customers = {  # crm-2 said STOP: nothing can reach it
        k: replace(c, sms_opted_out=True) if c.external_id == "crm-2" else c
        for k, c in store.customers.items()
    }
    setup = TenantSetup(TenantChannels(None, TWILIO_SMS_NUMBER), {"sms": ScriptedSender("twilio")})
    dispatch = Dispatch(MemorySendStore(customers=store), lambda tenant: setup, bus, clock=lambda: NOW)
    dispatch.send({"tenant": "demo", "idempotency_key": "k1", "to": {"phone": PHONE}, "text": "Shipped"})
    dispatch.send({"tenant": "demo", "idempotency_key": "k2", "to": {"phone": "+15550123457"}, "text": "Hi"})
    dispatch.send({"tenant": "demo", "idempotency_key": "k3", "to": {"phone": "+15550123458"}, "text": "Hi"})
    routed, stranger = bus.of("MessageRouted")
    (undeliverable,) = bus.of("MessageUndeliverable")
    assert routed["external_id"] == "crm-1" and undeliverable["external_id"] == "crm-2"
    assert "external_id" not in stranger  # a phone nobody recorded
    assert all(wire_problems(e) == [] for e in bus.events)
    dispatch.send({"tenant": "demo", "idempotency_key": "k1", "to": {"phone": PHONE}, "text": "Shipped"})
    assert bus.of("MessageRouted")[-1] == routed  # published again from the record: the same


class Counting(MemoryIdentityStore):
    """Counts commits and the items each carries (DynamoDB takes at most 100 in one transaction)."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[int] = []

    def commit(self, tenant, customers, base_versions, key_owners, events, message=None, **kw):  # type: ignore[no-untyped-def]
        self.commits.append(len(customers) + len(key_owners) + len(events))
        return super().commit(tenant, customers, base_versions, key_owners, events, message, **kw)


def test_a_batch_is_committed_in_as_few_transactions_as_the_item_limit_allows() -> None:
    store = Counting()
    records = [{"external_id": f"crm-{n}", "phone": f"+1555010{n:04d}"} for n in range(100)]
    answers = contacts(store).upsert("demo", records, region="US")
    assert {a.outcome for a in answers} == {"created"} and len(store.live_customers("demo")) == 100
    assert all(items <= 100 for items in store.commits) and len(store.commits) == 100 * 6 // 96 + 1
    assert [a.customer_id for a in answers] == [  # each answer names its own record's customer
        store.holders("demo", [Key("external", f"crm-{n}")])[Key("external", f"crm-{n}")].id
        for n in range(100)
    ]


def test_a_record_naming_what_an_earlier_one_of_its_batch_changes_sees_that_change() -> None:
    store = Counting()
    answers = contacts(store).upsert(
        "demo",
        [
            {"external_id": "crm-1", "phone": PHONE},
            {"external_id": "crm-2", "phone": "+15550123457"},
            {"external_id": "crm-1", "name": "Ana"},  # crm-1 again: after the first is committed
            {"external_id": "crm-3", "phone": PHONE},  # crm-1's phone: a conflict, seen
        ],
        region="US",
    )
    assert [a.outcome for a in answers] == ["created", "created", "updated", "conflict"]
    assert answers[3].conflicts == (("phone", answers[0].customer_id),)
    assert len(store.commits) == 2  # the first two together, then the third


class OneRaced(Counting):
    """Another writer takes one record's phone before the group's transaction: it is cancelled whole."""

    def commit(self, tenant, customers, base_versions, key_owners, events, message=None, **kw):  # type: ignore[no-untyped-def]
        if len(customers) > 1 and not self.commits:
            rival = Customer("rival", tenant, NOW, NOW)
            MemoryIdentityStore.commit(
                self, tenant, {"rival": rival}, {}, {Key("phone", PHONE): (None, "rival")}, []
            )
        return super().commit(tenant, customers, base_versions, key_owners, events, message, **kw)


def test_a_raced_group_is_redone_record_by_record_and_only_the_raced_one_changes_its_answer() -> None:
    store = OneRaced()
    answers = contacts(store).upsert(
        "demo",
        [{"external_id": "crm-1", "phone": PHONE}, {"external_id": "crm-2", "phone": "+15550123457"}],
        region="US",
    )
    assert (answers[0].outcome, answers[0].customer_id) == ("updated", "rival")
    assert answers[1].outcome == "created"
    assert len(store.live_customers("demo")) == 2
