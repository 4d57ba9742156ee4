"""The in-memory ``ContactBook`` (``tests/fakes/identity_store.py``) answers the read side as
``DynamoIdentityStore`` does (moto), so what ``tests/unit/test_contacts.py`` proves over the fake holds
over the table.

The same provider events go through the real ``Ingest`` into both stores, with the same customer ids
(``c0``, ``c1``, ...: one ``new_id`` sequence per store); then ``Contacts`` is asked the same things of
both: every key and id they know (and some they do not) found, every timeline read page by page in
several page sizes, one customer erased, and everything asked again. Answers are compared whole
(``NoSuchContact`` and ``BadQuery`` included), and the erased counts too.

One difference is allowed: identity events of the same time come in a different order, because the
table's sort key ends in a random part (``<time>#identity#<random>``) where the fake has a counter. Such
runs are compared as multisets (sorted by content), and their cursors by format only.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from crossroute.contacts import BadQuery, Contacts, NoSuchContact
from crossroute.identity.model import Key
from crossroute.inbound import (
    InboundMessage,
    Person,
    ProviderError,
    ProviderEvent,
)
from crossroute.inbound_queue import QueuedEvent
from crossroute.parsing.queued import parse
from crossroute.store import identity_store
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.sends import DynamoSendStore
from crossroute.store.tables import CustomerItem, TableItem
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta as meta_webhook
from tests.fakes import MemoryIdentityStore
from tests.fakes import identity_store as fake_identity_store
from tests.support import (
    APP_SECRET,
    TENANT,
    business_echo,
    fixture_bytes,
    fixture_json,
    histories,
    ingest_each,
    meta_status,
    number_change,
    registry_document,
    sms_in,
    whatsapp_in,
    wipe_table,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LIMITS = ("1", "3", None)  # None: the default page (50)
QUERY_OF = {"phone": "phone", "bsuid": "bsuid", "external": "external_id"}  # a key's GET /contacts query
NOBODY = {"phone": "+16505559999", "bsuid": "US.999", "id": "nobody"}


# --------------------------------------------------------------------------- provider events


def whatsapp(message_id: str, minute: int, bsuid: str, **person: str) -> InboundMessage:
    """A WhatsApp text from a user with a profile name (names are compared too)."""
    return whatsapp_in(message_id, minute, bsuid, name=f"Name {bsuid}", **person)


def fixture_events(*names: str) -> list[ProviderEvent]:
    """Core fixtures as the webhooks queue them and the consumer parses them."""
    registry = TenantRegistry.from_json(registry_document())
    events: list[ProviderEvent] = []
    for name in names:
        if name.endswith(".form"):
            form = fixture_bytes(name).decode()
            queued = [
                QueuedEvent.build(tenant=TENANT, sender="x", kind="twilio.message", content={"form": form})
            ]
        else:
            queued = meta_webhook.split(registry, APP_SECRET, fixture_json(name))
        events += [event for q in queued for event in parse(q.body).events]
    return events


ANN_1, ANN_2, CARL = Person("+16505550001", bsuid="US.111"), Person("+16505550002", bsuid="US.222"), "US.444"
FAILED = ProviderError(131026, "Message undeliverable", "Undeliverable")

# name -> (events, a key whose holder is erased)
HISTORIES: dict[str, tuple[list[ProviderEvent], Key]] = {
    "a-text": (
        [sms_in("SM1", "+16505550001", 0), whatsapp("wamid.1", 1, "US.333")],
        Key("phone", "+16505550001"),
    ),
    "statuses": (
        [
            whatsapp("wamid.1", 0, "US.333"),
            business_echo("wamid.OUT1", 1, "US.333"),
            meta_status("wamid.OUT1", 2, "sent"),
            meta_status("wamid.OUT1", 3, "failed", FAILED),
            meta_status("wamid.OUT2", 4, "read"),  # its status before the message
            business_echo("wamid.OUT2", 3, "US.333"),
            meta_status("wamid.ELSEWHERE", 5, "delivered"),  # a message no store has: on no timeline
        ],
        Key("bsuid", "US.333"),
    ),
    "merge-by-contact-request": (
        [
            sms_in("SM1", "+16505550001", 0),
            whatsapp("wamid.1", 1, "US.111"),
            whatsapp("wamid.2", 2, "US.111", own_phone="+16505550001"),
            whatsapp("wamid.3", 3, "US.555"),
        ],
        Key("bsuid", "US.111"),
    ),
    "merge-by-phone-and-bsuid": (
        [
            sms_in("SM1", "+16505550001", 0),
            whatsapp("wamid.1", 1, "US.111"),
            whatsapp("wamid.2", 2, "US.111", phone="+16505550001"),
        ],
        Key("phone", "+16505550001"),
    ),
    "number-change": (
        [
            whatsapp("wamid.1", 0, "US.111", phone="+16505550001"),
            business_echo("wamid.OUT1", 1, "US.111"),
            number_change("wamid.SYS1", 5, ANN_1, ANN_2),
            whatsapp("wamid.2", 6, "US.222", phone="+16505550002"),
            whatsapp("wamid.CARL", 7, CARL, phone="+16505550001"),  # her old number, passed on (I6)
        ],
        Key("bsuid", "US.222"),
    ),
    "core-fixtures": (
        fixture_events(
            "meta_text_phone_and_bsuid.json",
            "meta_system_user_changed_number.json",
            "meta_text_bsuid_only.json",
            "meta_contacts_request_answer.json",
            "meta_batch_messages_and_status.json",
            "meta_user_preferences_stop.json",
            "twilio_sms_inbound.form",
            "twilio_sms_stop.form",
            "twilio_whatsapp_inbound_bsuid.form",
        ),
        Key("bsuid", "BR.7730019283746501"),  # Ana after her number change
    ),
    "stop-merge-number-change-recycled": (
        [
            sms_in("SM1", "+16505550001", 0),
            whatsapp("wamid.1", 1, "US.111"),
            whatsapp("wamid.2", 2, "US.111", own_phone="+16505550001"),  # one person: merged (I4)
            sms_in("SM2", "+16505550001", 3, text="STOP"),
            number_change("wamid.SYS1", 5, ANN_1, ANN_2),
            whatsapp("wamid.CARL", 7, CARL, phone="+16505550001"),  # her old number, passed on (I6)
        ],
        Key("bsuid", "US.222"),  # erased: her new number is suppressed, her old one stays Carl's
    ),
}


# --------------------------------------------------------------------------- the two stores


def both(events: Sequence[ProviderEvent]) -> tuple[MemoryIdentityStore, DynamoIdentityStore]:
    wipe_table()
    return ingest_each(MemoryIdentityStore(), events), ingest_each(DynamoIdentityStore(), events)


def dynamo_customer_ids() -> set[str]:
    return {i.customer_id for i in TableItem.scan(consistent_read=True) if isinstance(i, CustomerItem)}


# --------------------------------------------------------------------------- what Contacts answers


def outcome(call: Callable[[], Any]) -> Any:
    """The answer, or the name of the error the API maps to 404/400."""
    try:
        return call()
    except (NoSuchContact, BadQuery) as exc:
        return type(exc).__name__


def queries(memory: MemoryIdentityStore) -> list[dict[str, str]]:
    """Every key any customer lists (stale and previous ones too), every id (merged-away ones too), a
    phone in national format, and some nobody has."""
    keys = {k for c in memory.customers.values() for k in c.keys} | {k for _, k in memory.keys}
    found: list[dict[str, str]] = [{QUERY_OF[k.kind]: k.value} for k in sorted(keys, key=str)]
    found += [{"id": cid} for _, cid in sorted(memory.customers)]
    return [*found, {"phone": "(650) 555-0001"}, *({name: v} for name, v in NOBODY.items())]


def pages(contacts: Contacts, customer_id: str, limit: str | None) -> list[dict[str, Any]] | str:
    """Every page of a timeline, following the cursor; or the error."""
    out: list[dict[str, Any]] = []
    before: str | None = None
    while True:
        page = outcome(partial(contacts.timeline, TENANT, customer_id, limit=limit, before=before))
        if isinstance(page, str):
            return page
        out.append(page)
        if page["next"] is None:
            return out
        before = page["next"]


def dumps(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True)


def comparable(answer: list[dict[str, Any]] | str) -> Any:
    """A timeline read as pages, up to the order within runs of identity events of the same time (the
    table orders those by a random part of their sort key, the fake by a counter): the page sizes, which
    pages have a next cursor, and the entries in order, each such run sorted by content."""
    if isinstance(answer, str):
        return answer
    for page in answer:
        check_cursor(page)
    entries = [e for page in answer for e in page["items"]]
    ordered: list[dict[str, Any]] = []
    for (kind, _), group in itertools.groupby(entries, key=lambda e: (e["kind"], e["at"])):
        run = list(group)
        ordered += sorted(run, key=dumps) if kind == "identity" else run
    shape = [(page["customer_id"], len(page["items"]), page["next"] is not None) for page in answer]
    return shape, ordered


def check_cursor(page: dict[str, Any]) -> None:
    """The cursor is the last entry's sort key: ``<time>#message#<provider>#<id>`` (the same in both
    stores) or ``<time>#identity#<n>`` (``n`` random in the table, a counter in the fake)."""
    if page["next"] is None:
        return
    last = page["items"][-1]
    if last["kind"] == "message":
        assert page["next"] == f"{last['at']}#message#{last['provider']}#{last['message_id']}"
    else:
        assert page["next"].startswith(f"{last['at']}#identity#"), page["next"]


def answers(contacts: Contacts, asked: Sequence[dict[str, str]]) -> dict[str, Any]:
    """What the read side answers to each query, and every page of the timeline of each id asked."""
    found = {dumps(q): outcome(partial(contacts.find, TENANT, q, region="US")) for q in asked}
    ids = [q["id"] for q in asked if "id" in q]
    timelines = {(cid, limit): comparable(pages(contacts, cid, limit)) for cid in ids for limit in LIMITS}
    return {"found": found, "timelines": timelines}


def assert_agree(events: Sequence[ProviderEvent], erase: Key | None = None) -> None:
    """``events`` into both stores: they answer alike, then after erasing the holder of ``erase`` (and
    count the same), then after every event is delivered again."""
    memory, dynamo = both(events)
    fake, real = Contacts(memory, clock=lambda: NOW), Contacts(dynamo, clock=lambda: NOW)
    asked = queries(memory)
    before = answers(fake, asked)
    assert before == answers(real, asked)
    assert {cid for _, cid in memory.customers} == dynamo_customer_ids()
    if erase is None:
        return
    query = {QUERY_OF[erase.kind]: erase.value}
    holder = fake.find(TENANT, query, region="US")["id"]
    assert real.find(TENANT, query, region="US")["id"] == holder
    phones = sorted({p.e164 for c in memory.customers.values() for p in c.phones})
    erased = fake.erase(TENANT, holder)
    assert real.erase(TENANT, holder) == erased  # the same items (no send requests here) and phones
    assert erased["counts"]["items_deleted"] > 0
    suppressed = {phone: memory.suppression(TENANT, phone) for phone in phones}
    assert suppressed == {phone: DynamoSendStore(dynamo).suppression(TENANT, phone) for phone in phones}
    assert sum(at is not None for at in suppressed.values()) == erased["counts"]["phones_suppressed"]
    after = answers(fake, asked)
    assert after == answers(real, asked)
    assert {cid for _, cid in memory.customers} == dynamo_customer_ids()
    # The erased customer is gone; everyone else is found as before.
    assert after["found"][dumps({"id": holder})] == after["found"][dumps(query)] == "NoSuchContact"
    for q, answer in before["found"].items():
        if not (isinstance(answer, dict) and answer["id"] == holder):
            assert after["found"][q] == answer, q
    # Delivered again: without tombstones (neither store has a masking key) the erased customer's events
    # make a new customer (ids r0, r1, ...), the others' are duplicates.
    ingest_each(memory, events, "r")
    ingest_each(dynamo, events, "r")
    asked += [q for q in queries(memory) if q not in asked]
    assert answers(fake, asked) == answers(real, asked)
    assert {cid for _, cid in memory.customers} == dynamo_customer_ids()


# --------------------------------------------------------------------------- the tests


def test_the_fake_cuts_texts_where_the_table_does() -> None:
    assert fake_identity_store.TEXT_BYTES == identity_store.TEXT_BYTES


@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_both_stores_answer_alike(table: str, name: str) -> None:
    assert_agree(*HISTORIES[name])


def test_the_comparison_sees_what_matters(table: str) -> None:
    """Guard: the timelines compared are not empty, include merged ids' entries and span pages."""
    events, _ = HISTORIES["merge-by-contact-request"]
    memory, dynamo = both(events)
    answered = answers(Contacts(dynamo), queries(memory))
    shape, entries = answered["timelines"][("c1", "1")]
    assert len(shape) == len(entries) > 5
    assert {e["customer_id"] for e in entries} == {"c0", "c1"}
    assert {e["kind"] for e in entries} == {"message", "identity"}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_both_stores_answer_alike_for_any_history(table: str, data: st.DataObject) -> None:
    history = data.draw(histories(max_steps=8))
    note(history.describe())
    held = sorted({k for (_, k) in ingest_each(MemoryIdentityStore(), history.events).keys}, key=str)
    assert_agree(history.events, data.draw(st.sampled_from(held)) if held else None)


# Records from the business's own systems (I11), then the provider events of some of those people.
RECORDS = [
    [
        {"external_id": "crm-1", "phone": "+16505550001", "name": "Ann", "sms_opted_out": True},
        {"external_id": "crm-2", "bsuid": "US.111", "whatsapp_opt_in": True},  # R15
        {"external_id": "crm-3", "phone": "+16505550001"},  # the phone is crm-1's: a conflict
        {"external_id": "crm-4", "phone": "(650) 555-0004", "marketing_opted_out": True},
        {"phone": "not a phone", "colour": "red"},
    ],
    [
        {"external_id": "crm-1", "sms_opted_out": False, "name": "Ann B"},  # the opt-out stays
        {"external_id": "crm-2", "phone": "+16505550001", "whatsapp_opt_in": False},  # refused (R15)
        {"external_id": "crm-4", "phone": "+16505550004"},  # nothing new
    ],
]
RECORDED_PEOPLE = [
    whatsapp("wamid.1", 1, "US.444", phone="+16505550004"),  # crm-4's phone and a BSUID: linked (I4)
    sms_in("SM1", "+16505550001", 2),
    whatsapp("wamid.2", 3, "US.111", phone="+16505550009"),  # crm-2 by its BSUID, with a new phone
    whatsapp("wamid.3", 4, "US.111", phone="+16505550001"),  # crm-1's phone: crm-1 and crm-2 merge (I4)
]


def test_both_stores_take_business_records_alike(table: str) -> None:
    wipe_table()
    stores = MemoryIdentityStore(), DynamoIdentityStore()
    answered = []
    for store in stores:
        numbers = itertools.count()
        book = Contacts(store, clock=lambda: NOW, new_id=lambda n=numbers: f"b{next(n)}")
        answered.append([[a.as_doc() for a in book.upsert(TENANT, batch, region="US")] for batch in RECORDS])
    assert answered[0] == answered[1]
    assert [a["outcome"] for a in answered[0][0]] == ["created", "created", "conflict", "created", "invalid"]
    memory, dynamo = stores
    ingest_each(memory, RECORDED_PEOPLE)
    ingest_each(dynamo, RECORDED_PEOPLE)
    asked = queries(memory)
    assert {"external_id": "crm-4"} in asked
    fake, real = Contacts(memory, clock=lambda: NOW), Contacts(dynamo, clock=lambda: NOW)
    assert answers(fake, asked) == answers(real, asked)
    found = real.find(TENANT, {"external_id": "crm-4"}, region="US")
    assert [b["id"] for b in found["bsuids"]] == ["US.444"] and found["marketing_opted_out"]
    holder = found["id"]
    erased = real.erase(TENANT, holder)
    assert erased == fake.erase(TENANT, holder) and erased["counts"]["items_deleted"] > 0
    assert erased["external_id"] == "crm-4"  # CustomerErased names the business's own id (I11)
    assert answers(fake, asked) == answers(real, asked)
    assert outcome(partial(real.find, TENANT, {"external_id": "crm-4"}, region="US")) == "NoSuchContact"
    # The merge kept crm-1 on the survivor; crm-2 stays with the merged-away id and finds the survivor.
    survivor = real.find(TENANT, {"external_id": "crm-1"}, region="US")
    assert real.find(TENANT, {"external_id": "crm-2"}, region="US")["id"] == survivor["id"]
    assert survivor["external_id"] == "crm-1" and len(survivor["merged_from"]) == 1
    assert survivor["whatsapp_opt_in"]["value"] and survivor["whatsapp_opt_in"]["source"] == "business.record"
    real.erase(TENANT, survivor["id"])
    fake.erase(TENANT, survivor["id"])
    assert answers(fake, asked) == answers(real, asked)
    assert not [i for i in TableItem.scan() if "#K#external#" in i.pk and i.pk.endswith(("crm-1", "crm-2"))]
