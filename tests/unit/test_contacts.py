"""The read side (``crossroute.contacts.Contacts``) over the in-memory ``ContactBook``
(``tests/fakes/identity_store.py``), with the events ingested by the real ``Ingest``: find by phone, BSUID
or id, the timeline page by page, erasure (I10). ``tests/adapters/test_contact_book_agreement.py`` checks
that DynamoDB answers the same.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import pytest

from crossroute.contacts import BadQuery, Contacts, NoSuchContact
from crossroute.inbound import (
    IdentityChange,
    Person,
    ProviderError,
    ProviderEvent,
)
from crossroute.inbound_queue import QueuedEvent
from crossroute.ingest import Ingest
from crossroute.parsing.queued import parse
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta as meta_webhook
from tests.fakes import MemoryIdentityStore, RecordingPublisher
from tests.support import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    TENANT,
    business_echo,
    fixture_bytes,
    fixture_json,
    meta_status,
    minute_at,
    number_change,
    registry_document,
    sms_in,
    whatsapp_in,
)

ANN_PHONE, ANN_NEW_PHONE, ANN_BSUID, ANN_NEW_BSUID = "+16505550001", "+16505550002", "US.111", "US.222"
BOB_BSUID = "US.333"


def ann_changes_number(event_id: str, minute: int) -> IdentityChange:
    """Ann moves from her first number and BSUID to new ones (I7)."""
    previous = Person(phone=ANN_PHONE, bsuid=ANN_BSUID)
    return number_change(event_id, minute, previous, Person(phone=ANN_NEW_PHONE, bsuid=ANN_NEW_BSUID))


# Ann: an SMS (customer c0), a WhatsApp from her BSUID alone (c1), her answer to a contact request that
# attests her phone (c1 merges into c0), a message from the business app and its failed status, and a
# number change.
ANN = (
    sms_in("SM1", ANN_PHONE, 0),
    whatsapp_in("wamid.1", 1, ANN_BSUID),
    whatsapp_in("wamid.2", 2, ANN_BSUID, own_phone=ANN_PHONE, text=None),
    business_echo("wamid.OUT1", 3, ANN_BSUID),
    meta_status("wamid.OUT1", 4, "failed", ProviderError(131026, "Message undeliverable", "Undeliverable")),
    ann_changes_number("wamid.SYS1", 5),
)


class World:
    """``Contacts`` over the in-memory store, fed by the real ``Ingest`` (customer ids c0, c1, ...)."""

    def __init__(self, *events: ProviderEvent) -> None:
        self.store = MemoryIdentityStore()
        ids = itertools.count()
        self.ingest = Ingest(
            self.store, RecordingPublisher(), new_id=lambda: f"c{next(ids)}", sleep=lambda _: None
        )
        self.contacts = Contacts(self.store)
        self.feed(*events)

    def feed(self, *events: ProviderEvent) -> None:
        for event in events:
            self.ingest.handle([event])

    def meta(self, fixture: str) -> None:
        """A core Meta fixture, split and parsed as the webhook and the consumer do."""
        registry = TenantRegistry.from_json(registry_document())
        for queued in meta_webhook.split(registry, APP_SECRET, fixture_json(fixture)):
            self.ingest.handle(parse(queued.body).events)

    def twilio(self, fixture: str) -> None:
        form = fixture_bytes(fixture).decode()
        queued = QueuedEvent.build(tenant=TENANT, sender="x", kind="twilio.message", content={"form": form})
        self.ingest.handle(parse(queued.body).events)

    def find(self, region: str = "US", **query: str) -> dict[str, Any]:
        return self.contacts.find(TENANT, query, region=region)

    def pages(self, customer_id: str, limit: str | None) -> list[dict[str, Any]]:
        """Every page of the timeline, following the cursor."""
        pages, before = [], None
        while True:
            page = self.contacts.timeline(TENANT, customer_id, limit=limit, before=before)
            pages.append(page)
            if page["next"] is None:
                return pages
            before = page["next"]


def entries(pages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for page in pages for entry in page["items"]]


# --------------------------------------------------------------------------- find


def test_a_phone_is_found_in_any_format_national_ones_read_in_the_region() -> None:
    world = World(sms_in("SM1", ANN_PHONE, 0))
    for written in (ANN_PHONE, "+1 650-555-0001", "(650) 555-0001", "16505550001"):
        assert world.find(phone=written)["id"] == "c0", written
    # Jonas, from the core fixtures: a BSUID-only text, then his answer to a contact request.
    world.meta("meta_text_bsuid_only.json")
    world.meta("meta_contacts_request_answer.json")
    jonas = world.find(region="DE", phone="0151 23456789")
    assert jonas["phones"] == [
        {"e164": "+4915123456789", "status": "current", "source": "meta.contact_request"}
    ]
    assert world.find(bsuid="DE.88201937465502911") == jonas
    with pytest.raises(BadQuery):  # the same digits read in the US are no number at all
        world.find(region="US", phone="0151 23456789")


def test_a_bsuid_is_found_verbatim_or_with_the_twilio_prefix() -> None:
    world = World(whatsapp_in("wamid.1", 1, BOB_BSUID))
    view = world.find(bsuid=BOB_BSUID)
    assert (view["id"], view["bsuids"]) == ("c0", [{"id": BOB_BSUID, "status": "current"}])
    assert world.find(bsuid=f"whatsapp:{BOB_BSUID}") == view
    assert world.find(id="c0") == view


def test_a_twilio_sms_fixture_is_found_by_its_number() -> None:
    world = World()
    world.twilio("twilio_sms_inbound.form")
    view = world.find(phone="650 555 1234")
    assert view["phones"] == [{"e164": "+16505551234", "status": "current", "source": "twilio.sms"}]


def test_a_merged_away_id_finds_its_survivor() -> None:
    world = World(*ANN[:3])
    survivor = world.find(phone=ANN_PHONE)
    assert survivor["id"] == "c0" and survivor["merged_from"] == ["c1"]
    assert world.find(id="c1") == survivor
    assert world.find(bsuid=ANN_BSUID) == survivor


def test_after_a_number_change_the_new_keys_find_her_and_the_old_ones_too_while_she_holds_them() -> None:
    world = World(*ANN)
    ann = world.find(phone=ANN_NEW_PHONE)
    assert (
        world.find(bsuid=ANN_NEW_BSUID) == ann == world.find(bsuid=ANN_BSUID) == world.find(phone=ANN_PHONE)
    )
    assert {p["e164"]: p["status"] for p in ann["phones"]} == {ANN_PHONE: "stale", ANN_NEW_PHONE: "current"}
    assert {b["id"]: b["status"] for b in ann["bsuids"]} == {ANN_BSUID: "previous", ANN_NEW_BSUID: "current"}


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"phone": ANN_PHONE, "bsuid": ANN_BSUID},
        {"id": "c0", "phone": ANN_PHONE},
        {"phone": "", "bsuid": ""},
    ],
    ids=["none", "phone-and-bsuid", "id-and-phone", "empty-values"],
)
def test_exactly_one_of_phone_bsuid_id(query: dict[str, str]) -> None:
    world = World(*ANN)
    with pytest.raises(BadQuery, match="exactly one"):
        world.contacts.find(TENANT, query, region="US")


@pytest.mark.parametrize(
    "query", [{"phone": "not a number"}, {"phone": "12"}, {"bsuid": "us.1"}, {"bsuid": "+16505550001"}]
)
def test_an_identifier_that_is_not_one_is_a_bad_query(query: dict[str, str]) -> None:
    world = World(*ANN)
    with pytest.raises(BadQuery):
        world.contacts.find(TENANT, query, region="US")


@pytest.mark.parametrize(
    "query", [{"phone": "+16505559999"}, {"bsuid": "US.999"}, {"id": "c9"}], ids=["phone", "bsuid", "id"]
)
def test_unknown_is_no_such_contact(query: dict[str, str]) -> None:
    world = World(*ANN)
    with pytest.raises(NoSuchContact):
        world.contacts.find(TENANT, query, region="US")
    with pytest.raises(NoSuchContact):  # and another tenant sees none of this one's
        world.contacts.find("other", {"phone": ANN_NEW_PHONE}, region="US")


def test_an_unknown_id_has_no_timeline_and_cannot_be_erased() -> None:
    world = World(*ANN)
    with pytest.raises(NoSuchContact):
        world.contacts.timeline(TENANT, "c9", limit=None, before=None)
    with pytest.raises(NoSuchContact):
        world.contacts.erase(TENANT, "c9")


# --------------------------------------------------------------------------- timeline


def test_the_timeline_shows_messages_with_their_status_and_identity_events_newest_first() -> None:
    world = World(*ANN)
    page = world.contacts.timeline(TENANT, "c0", limit=None, before=None)
    items = page["items"]
    assert page["customer_id"] == "c0" and page["next"] is None
    assert [e["at"] for e in items] == sorted((e["at"] for e in items), reverse=True)
    messages = {e["message_id"]: e for e in items if e["kind"] == "message"}
    assert list(messages) == ["wamid.SYS1", "wamid.OUT1", "wamid.2", "wamid.1", "SM1"]
    assert messages["wamid.OUT1"] == {
        "kind": "message",
        "direction": "out",
        "channel": "whatsapp",
        "provider": "meta",
        "message_id": "wamid.OUT1",
        "business": PHONE_NUMBER_ID,
        "type": "text",
        "text": "thanks",
        "at": minute_at(3).isoformat(),
        "status": "failed",
        "status_at": minute_at(4).isoformat(),
        "errors": [{"code": 131026, "title": "Message undeliverable", "detail": "Undeliverable"}],
        "historical": False,
        "customer_id": "c0",
        "media": None,  # no attachment (crossroute.media)
        "choice": None,  # no option picked (R13, crossroute.replies)
    }
    assert messages["SM1"]["status"] is None and messages["SM1"]["errors"] == []
    assert messages["wamid.SYS1"]["type"] == "system"
    merged = next(e for e in items if e["kind"] == "identity" and e["change"] == "merged")
    assert merged == {
        "kind": "identity",
        "change": "merged",
        "at": minute_at(2).isoformat(),
        "source": "meta.contact_request",
        "event_id": "wamid.2",
        "detail": {"merged_from": "c1"},
        "customer_id": "c0",
    }
    changes = {(e["customer_id"], e["change"]) for e in items if e["kind"] == "identity"}
    assert {("c0", "created"), ("c1", "created"), ("c1", "merged_into"), ("c0", "number_changed")} <= changes


def test_the_timeline_includes_the_entries_of_the_ids_merged_into_it() -> None:
    world = World(*ANN[:3])
    owners = {
        e["message_id"]: e["customer_id"] for e in entries(world.pages("c0", None)) if e["kind"] == "message"
    }
    assert owners == {"wamid.2": "c0", "wamid.1": "c1", "SM1": "c0"}  # messages are never moved
    assert world.pages("c1", None) == world.pages("c0", None)  # the merged-away id: the survivor's


@pytest.mark.parametrize("limit", ["1", "2", "3", "7", "200"])
def test_pages_follow_the_cursor_to_the_end_without_gaps_or_repeats(limit: str) -> None:
    world = World(*ANN)
    (whole,) = world.pages("c0", "200")
    pages = world.pages("c0", limit)
    assert entries(pages) == whole["items"]
    assert all(len(page["items"]) == int(limit) for page in pages[:-1])
    assert 1 <= len(pages[-1]["items"]) <= int(limit)
    for page in pages[:-1]:  # the cursor is the last entry's sort key: "<time>#<kind>#..."
        last = page["items"][-1]
        assert page["next"].startswith(f"{last['at']}#{last['kind']}#")
        if last["kind"] == "message":
            assert page["next"] == f"{last['at']}#message#{last['provider']}#{last['message_id']}"


def test_the_default_page_is_50_entries() -> None:
    world = World(*(sms_in(f"SM{n}", ANN_PHONE, n) for n in range(60)))
    first = world.contacts.timeline(TENANT, "c0", limit=None, before=None)
    assert len(first["items"]) == 50 and first["next"] is not None
    rest = world.contacts.timeline(TENANT, "c0", limit=None, before=first["next"])
    assert len(rest["items"]) == 60 + 2 - 50 and rest["next"] is None  # 60 messages, created and linked
    assert rest["items"][-1]["change"] == "created"


@pytest.mark.parametrize("limit", ["0", "201", "-1", "1.5", "ten", " 5"])
def test_a_limit_outside_1_to_200_is_a_bad_query(limit: str) -> None:
    world = World(*ANN)
    with pytest.raises(BadQuery, match="limit"):
        world.contacts.timeline(TENANT, "c0", limit=limit, before=None)


def test_a_message_whose_status_came_first_shows_both() -> None:
    world = World(
        whatsapp_in("wamid.1", 1, BOB_BSUID),
        meta_status("wamid.OUT1", 4, "read"),
        business_echo("wamid.OUT1", 3, BOB_BSUID),
    )
    (out,) = [e for e in entries(world.pages("c0", None)) if e.get("message_id") == "wamid.OUT1"]
    assert (out["status"], out["status_at"], out["at"]) == (
        "read",
        minute_at(4).isoformat(),
        minute_at(3).isoformat(),
    )


def test_a_status_alone_is_on_no_timeline() -> None:
    world = World(whatsapp_in("wamid.1", 1, BOB_BSUID), meta_status("wamid.ELSEWHERE", 2, "delivered"))
    assert "wamid.ELSEWHERE" not in {e.get("message_id") for e in entries(world.pages("c0", None))}


# --------------------------------------------------------------------------- erase


def test_erasure_removes_the_customer_and_everything_it_held() -> None:
    world = World(*ANN, whatsapp_in("wamid.BOB", 6, BOB_BSUID))
    bob = world.find(bsuid=BOB_BSUID)
    bob_timeline = world.pages(bob["id"], "2")
    identity_events = sum(e["kind"] == "identity" for e in entries(world.pages("c0", None)))
    erased = world.contacts.erase(TENANT, "c1")  # a merged-away id erases its survivor
    assert (erased["customer_id"], erased["merged_from"]) == ("c0", ["c1"])
    # Profiles c0 and c1, Ann's four keys, her five messages and her identity events; no STOP.
    assert erased["counts"] == {"items_deleted": 2 + 4 + 5 + identity_events, "phones_suppressed": 0}
    for query in (
        {"id": "c0"},
        {"id": "c1"},
        {"phone": ANN_PHONE},
        {"phone": ANN_NEW_PHONE},
        {"bsuid": ANN_BSUID},
        {"bsuid": ANN_NEW_BSUID},
    ):
        with pytest.raises(NoSuchContact):
            world.contacts.find(TENANT, query, region="US")
    with pytest.raises(NoSuchContact):
        world.contacts.timeline(TENANT, "c0", limit=None, before=None)
    with pytest.raises(NoSuchContact):
        world.contacts.erase(TENANT, "c0")
    # Gone, not just unreachable; Bob untouched.
    assert world.store.message(TENANT, "meta", "wamid.OUT1") is None
    assert all(e.event.customer_id not in ("c0", "c1") for e in world.store.events)
    assert world.find(bsuid=BOB_BSUID) == bob and world.pages(bob["id"], "2") == bob_timeline


def test_erasure_leaves_a_stale_number_to_whoever_holds_it_now() -> None:
    """I6: Ann's old number passed to Carl; erasing Ann leaves it his."""
    carl = whatsapp_in("wamid.CARL", 7, "US.444", phone=ANN_PHONE)
    world = World(*ANN, carl)
    carl_view = world.find(bsuid="US.444")
    assert world.find(phone=ANN_PHONE) == carl_view != world.find(bsuid=ANN_BSUID)
    world.contacts.erase(TENANT, world.find(bsuid=ANN_BSUID)["id"])
    assert world.find(phone=ANN_PHONE) == carl_view
    with pytest.raises(NoSuchContact):
        world.find(phone=ANN_NEW_PHONE)


def test_an_erased_customer_comes_back_only_as_a_new_one_when_written_to_again() -> None:
    """The fake keeps no tombstones (as ``DynamoIdentityStore`` without a masking key): a replayed event
    is stored again, under a new customer."""
    world = World(sms_in("SM1", ANN_PHONE, 0))
    world.contacts.erase(TENANT, "c0")
    world.feed(sms_in("SM1", ANN_PHONE, 0))
    again = world.find(phone=ANN_PHONE)
    assert again["id"] == "c1"
    kinds = [(e["kind"], e.get("message_id") or e.get("change")) for e in entries(world.pages("c1", None))]
    assert kinds == [("message", "SM1"), ("identity", "linked"), ("identity", "created")]


def test_the_timeline_entries_are_plain_json() -> None:
    world = World(*ANN)
    items = entries(world.pages("c0", "3"))
    assert json.loads(json.dumps(items)) == items
