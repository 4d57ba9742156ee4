"""R15: the WhatsApp opt-in. Where it comes from (a business record, a tenant keyword, Meta's marketing
resume), what withdraws it (a marketing stop), how a merge keeps it, and how the policy enforces it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from crossroute.contacts import Contacts, contact_view
from crossroute.identity.business_records import parse_record, upsert
from crossroute.identity.model import Customer, Key
from crossroute.identity.profile import observe_message, observe_preference, opt_in_keyword
from crossroute.identity.rules import _merge_attributes
from crossroute.inbound import InboundMessage, Person, PreferenceChange
from crossroute.inbound_queue import QueuedEvent
from crossroute.ingest import Ingest
from crossroute.parsing.queued import parse
from crossroute.routing.policy import REASONS, Recipient, TenantChannels, decide
from crossroute.routing.request import parse_send_request
from crossroute.tenant_setup import Endpoints, tenant_setup
from crossroute.tenants import TenantRegistry
from tests.fakes import MemoryIdentityStore, RecordingPublisher
from tests.support import sms_in, whatsapp_in

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PHONE = "+15550123456"
BSUID = "US.13491208655302741918"
BUSINESS = "100000000000001"
MARKETING = {"name": "sale", "language": "en_US", "category": "marketing"}
UTILITY = {"name": "order_shipped", "language": "en_US", "category": "utility"}
META = {"app_secret": "s", "verify_token": "v", "access_token": "t"}
REQUIRING = TenantChannels(BUSINESS, "+15550100002", whatsapp_opt_in_required=("marketing",))


def ids() -> Any:
    numbers = count(1)
    return lambda: f"c{next(numbers)}"


def customer(**fields: Any) -> Customer:
    return Customer("c1", "demo", NOW, NOW, **fields)


def send(
    template: dict[str, Any], who: Customer | None, tenant: TenantChannels = REQUIRING
) -> dict[str, str]:
    doc = {"tenant": "demo", "idempotency_key": "k", "to": {"phone": PHONE}, "template": template}
    decision = decide(parse_send_request(doc), Recipient(who), tenant, NOW)
    return {c.channel: c.reason for c in decision.considered}


def preference(value: str, at: datetime) -> PreferenceChange:
    return PreferenceChange("demo", "meta", BUSINESS, Person(bsuid=BSUID), "marketing_messages", value, at)


# ---------------------------------------------------------------- the policy


def test_a_required_category_needs_an_opt_in_and_others_do_not() -> None:
    without = customer()
    opted_in = customer(whatsapp_opt_in=True, whatsapp_opt_in_at=NOW, whatsapp_opt_in_source="user.keyword")
    assert send(MARKETING, without)["whatsapp"] == "whatsapp.no_opt_in"
    assert send(MARKETING, None)["whatsapp"] == "whatsapp.no_opt_in"  # an unknown phone has none either
    assert send(MARKETING, opted_in)["whatsapp"] == "whatsapp.template"
    assert send(UTILITY, without)["whatsapp"] == "whatsapp.template"  # not a listed category
    assert not REASONS["whatsapp.no_opt_in"][0]


def test_a_tenant_that_requires_nothing_sends_as_before() -> None:
    plain = TenantChannels(BUSINESS, "+15550100002")
    assert send(MARKETING, customer(), plain)["whatsapp"] == "whatsapp.template"


def test_the_registry_setting_reaches_the_policy() -> None:
    doc = {
        "tenants": {
            "demo": {
                "meta": META | {"phone_numbers": [{"phone_number_id": BUSINESS}]},
                "whatsapp_opt_in_required": ["marketing"],
                "whatsapp_opt_in_keywords": ["JOIN"],
            },
            "plain": {"meta": META | {"phone_numbers": [{"phone_number_id": "100000000000009"}]}},
        }
    }
    registry = TenantRegistry.from_json(json.dumps(doc))
    demo, plain = registry.by_id("demo"), registry.by_id("plain")
    assert demo and plain and not registry.skipped
    assert demo.whatsapp_opt_in_keywords == ("JOIN",)
    assert tenant_setup(demo, Endpoints()).channels.whatsapp_opt_in_required == ("marketing",)
    assert tenant_setup(plain, Endpoints()).channels.whatsapp_opt_in_required == ()
    bad = {"tenants": {**doc["tenants"], "x": {"whatsapp_opt_in_required": ["newsletters"]}}}
    assert TenantRegistry.from_json(json.dumps(bad)).by_id("x") is None


# ---------------------------------------------------------------- where an opt-in comes from


def keyed(message: InboundMessage, *keywords: str) -> InboundMessage:
    return replace(message, opt_in_keywords=keywords)


def test_a_tenant_keyword_as_the_whole_message_records_the_opt_in_on_whatsapp_and_sms() -> None:
    join = keyed(whatsapp_in("wamid.1", 5, BSUID, text="  join "), "JOIN")
    assert opt_in_keyword(join)
    after = observe_message(customer(), join)
    assert (after.whatsapp_opt_in, after.whatsapp_opt_in_at, after.whatsapp_opt_in_source) == (
        True,
        join.sent_at,
        "user.keyword",
    )
    assert observe_message(customer(), keyed(sms_in("SM1", PHONE, 5, text="Join"), "JOIN")).whatsapp_opt_in
    assert not opt_in_keyword(keyed(whatsapp_in("wamid.2", 5, BSUID, text="join us"), "JOIN"))
    assert not opt_in_keyword(whatsapp_in("wamid.3", 5, BSUID, text="JOIN"))  # the tenant lists none
    history = replace(keyed(whatsapp_in("wamid.4", 5, BSUID, text="JOIN"), "JOIN"), historical=True)
    assert not observe_message(customer(), history).whatsapp_opt_in


def test_the_marketing_resume_records_it_and_a_stop_withdraws_it_latest_first() -> None:
    resumed = observe_preference(customer(), preference("resume", NOW))
    assert (resumed.whatsapp_opt_in, resumed.whatsapp_opt_in_source) == (True, "meta.marketing_resume")
    stopped = observe_preference(resumed, preference("stop", NOW + timedelta(minutes=1)))
    assert (stopped.whatsapp_opt_in, stopped.whatsapp_opt_in_source) == (False, "meta.marketing_stop")
    assert stopped.marketing_opted_out
    # An older resume, delivered late, changes nothing.
    assert observe_preference(stopped, preference("resume", NOW - timedelta(minutes=1))) == stopped


def test_the_queued_body_carries_the_tenant_keywords_to_the_message() -> None:
    form = "MessageSid=SM1&AccountSid=AC1&From=%2B15550123456&To=%2B15550100002&Body=JOIN"
    event = QueuedEvent.build(
        tenant="demo", sender=PHONE, kind="twilio.message", content={"form": form}, opt_in_keywords=("JOIN",)
    )
    (message,) = parse(event.body).events
    assert isinstance(message, InboundMessage) and message.opt_in_keywords == ("JOIN",)
    plain = QueuedEvent.build(tenant="demo", sender=PHONE, kind="twilio.message", content={"form": form})
    assert "opt_in_keywords" not in json.loads(plain.body)
    (unkeyed,) = parse(plain.body).events
    assert isinstance(unkeyed, InboundMessage) and unkeyed.opt_in_keywords == ()


def test_ingest_records_a_keyword_opt_in_with_an_identity_event_on_the_timeline() -> None:
    store = MemoryIdentityStore()
    ingest = Ingest(store, RecordingPublisher(), new_id=ids(), sleep=lambda _: None)
    ingest.handle([keyed(whatsapp_in("wamid.1", 5, BSUID, text="JOIN"), "JOIN")])
    (who,) = store.live_customers("demo")
    assert who.whatsapp_opt_in and who.whatsapp_opt_in_source == "user.keyword"
    entries, _ = store.timeline("demo", [who.id], before=None, limit=50)
    assert opt_ins(entries) == 1
    ingest.handle([keyed(whatsapp_in("wamid.1", 5, BSUID, text="JOIN"), "JOIN")])  # redelivered
    again, _ = store.timeline("demo", [who.id], before=None, limit=50)
    assert len(again) == len(entries) and opt_ins(again) == 1


def opt_ins(entries: list[dict[str, Any]]) -> int:
    """How many identity entries of a timeline record a WhatsApp opt-in."""
    return sum(1 for e in entries if e["kind"] == "identity" and e["change"] == "whatsapp_opt_in")


@pytest.mark.parametrize("value", [True, "yes"])
def test_a_record_may_record_the_opt_in(value: Any) -> None:
    if value is not True:
        with pytest.raises(ValueError, match="whatsapp_opt_in"):
            parse_record({"phone": PHONE, "whatsapp_opt_in": value}, region="US", at=NOW, event_id="r")
        return
    record = parse_record({"phone": PHONE, "whatsapp_opt_in": value}, region="US", at=NOW, event_id="r")
    done = upsert("demo", record, {}, ids())
    assert done.resolution is not None
    created = done.resolution.customers[done.customer_id or ""]
    assert (created.whatsapp_opt_in, created.whatsapp_opt_in_source) == (True, "business.record")
    assert "whatsapp_opt_in" in [e.kind for e in done.resolution.events]


def test_a_record_cannot_withdraw_the_opt_in_and_the_rest_is_applied() -> None:
    store = MemoryIdentityStore()
    book = Contacts(store, clock=lambda: NOW, new_id=ids())
    book.upsert("demo", [{"phone": PHONE, "whatsapp_opt_in": True}], region="US")
    (off,) = book.upsert("demo", [{"phone": PHONE, "whatsapp_opt_in": False, "name": "Ana"}], region="US")
    assert off.outcome == "updated"
    assert [(p.field, p.code) for p in off.refused] == [("whatsapp_opt_in", "opt_in.withdraw_needs_user")]
    (who,) = store.live_customers("demo")
    assert who.whatsapp_opt_in and who.name == "Ana"
    holders = store.holders("demo", [Key("phone", PHONE)])
    record = parse_record({"phone": PHONE, "whatsapp_opt_in": True}, region="US", at=NOW, event_id="r2")
    assert upsert("demo", record, holders, ids()).outcome == "unchanged"


# ---------------------------------------------------------------- merge and view


def test_a_merge_keeps_the_later_opt_in_change() -> None:
    later = NOW + timedelta(hours=1)
    survivor = customer(whatsapp_opt_in=True, whatsapp_opt_in_at=NOW, whatsapp_opt_in_source="user.keyword")
    loser = replace(
        customer(
            whatsapp_opt_in=False, whatsapp_opt_in_at=later, whatsapp_opt_in_source="meta.marketing_stop"
        ),
        id="c2",
    )
    merged = _merge_attributes(survivor, loser)
    assert (merged.whatsapp_opt_in, merged.whatsapp_opt_in_source) == (False, "meta.marketing_stop")
    assert _merge_attributes(loser, survivor).whatsapp_opt_in is False
    assert _merge_attributes(survivor, customer()).whatsapp_opt_in is True  # no time: nothing to take


def test_the_contact_view_shows_value_time_and_source() -> None:
    assert contact_view(customer())["whatsapp_opt_in"] == {"value": False, "at": None, "source": None}
    opted = customer(whatsapp_opt_in=True, whatsapp_opt_in_at=NOW, whatsapp_opt_in_source="business.record")
    assert contact_view(opted)["whatsapp_opt_in"] == {
        "value": True,
        "at": NOW.isoformat(),
        "source": "business.record",
    }
