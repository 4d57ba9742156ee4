"""Queued Meta webhooks become crossroute events, with identifiers checked and nothing crashing."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute.inbound import (
    ContactLink,
    IdentityChange,
    InboundMessage,
    OutboundEcho,
    Person,
    PreferenceChange,
    ProviderError,
    ProviderEvent,
    StatusUpdate,
    Unrecognised,
)
from crossroute.parsing.queued import Parsed, parse
from tests.support import CORE_FIXTURES, TRICKY_STRINGS, assert_clean, fixture_json

LOCAL_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECEIVED_AT = "2026-11-22T10:00:00.123Z"
BUSINESS = "100000000000001"  # the local tenant's phone_number_id


def local_json(name: str) -> dict[str, Any]:
    return json.loads((LOCAL_FIXTURES / name).read_text())


def queued(payload: Any, **overrides: Any) -> str:
    """The inbound-queue body that ``webhooks.meta`` writes for ``payload``."""
    body = {"schema": "crossroute.inbound/1", "tenant": "demo", "received_at": RECEIVED_AT}
    return json.dumps({**body, "kind": "meta.webhook", "payload": payload, **overrides})


def parsed(payload: Any) -> Parsed:
    return parse(queued(payload))


def events(payload: Any) -> list[ProviderEvent]:
    result = parsed(payload)
    assert result.rejected == []
    return result.events


def only(payload: Any) -> Any:
    (event,) = events(payload)
    return event


def value_of(payload: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = payload["entry"][0]["changes"][0]["value"]
    return value


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


ANA = Person(
    phone="+5511987654321",
    phone_raw="5511987654321",
    bsuid="BR.1502576394655843",
    username="ana.lima",
    name="Ana Lima",
)
JONAS = Person(
    bsuid="DE.88201937465502911", parent_bsuid="DE.ENT.55102938475610293", username="jonas_w", name="Jonas"
)
PRIYA = Person(phone="+919812345678", phone_raw="919812345678", bsuid="IN.1648738043044942", name="Priya")
LENA = Person(
    phone="+14155550142",
    phone_raw="14155550142",
    bsuid="US.7261503849271650384",
    parent_bsuid="US.ENT.9182736450918273645",
    username="lena.b",
    name="Lena",
)


# --- the shared fixtures, field by field -------------------------------------------------------------------


def test_a_customer_with_phone_and_bsuid_is_named_by_both() -> None:
    assert only(fixture_json("meta_text_phone_and_bsuid.json")) == InboundMessage(
        tenant="demo",
        provider="meta",
        channel="whatsapp",
        message_id="wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBMDFBQkNEMDEA",
        business=BUSINESS,
        sender=ANA,
        sent_at=at(1779868800),
        type="text",
        text="Oi! Meu pedido chegou?",
    )


def test_a_username_user_without_a_shared_phone_is_known_by_bsuid_and_parent() -> None:
    message = only(fixture_json("meta_text_bsuid_only.json"))
    assert message == InboundMessage(
        tenant="demo",
        provider="meta",
        channel="whatsapp",
        message_id="wamid.HBgLREUuODgyMDE5Mzc0NjU1MDI5MTEVAgASGBQzQUIxMjM0NTY3ODkwQUJDREVGAA==",
        business=BUSINESS,
        sender=JONAS,
        sent_at=at(1779872400),
        type="text",
        text="Hallo, ist mein Paket unterwegs?",
    )
    assert message.sender.phone is None


def test_one_post_with_two_messages_and_a_status_yields_all_three_in_order() -> None:
    text, button, status = events(fixture_json("meta_batch_messages_and_status.json"))
    assert isinstance(text, InboundMessage) and isinstance(button, InboundMessage)
    assert (text.message_id, text.type, text.text, text.sent_at) == (
        "wamid.BATCH0001",
        "text",
        "Hi",
        at(1779880000),
    )
    assert (button.message_id, button.type, button.text) == ("wamid.BATCH0002", "interactive", "Track order")
    assert text.sender == button.sender == PRIYA
    assert status == StatusUpdate(
        tenant="demo",
        provider="meta",
        channel="whatsapp",
        message_id="wamid.OUT0001",
        business=BUSINESS,
        recipient=Person(phone="+919812345678", phone_raw="919812345678", bsuid="IN.1648738043044942"),
        status="read",
        at=at(1779880005),
    )


def test_answering_our_contact_request_attests_the_senders_own_phone() -> None:
    message = only(fixture_json("meta_contacts_request_answer.json"))
    assert isinstance(message, InboundMessage)
    assert message.type == "contacts"
    assert message.shared_own_phone == "+4915123456789"
    assert message.sender == Person(bsuid="DE.88201937465502911", username="jonas_w", name="Jonas")
    assert (message.message_id, message.sent_at) == (
        "wamid.HBgLREUuODgyMDE5Mzc0NjU1MDI5MTEVAgASGBQzQUNPTlRBQ1RSRVFVRVNUMDEA",
        at(1779876500),
    )


def test_a_contact_card_shared_by_hand_is_content_never_identity() -> None:
    message = only(fixture_json("meta_shared_contact_card.json"))
    assert isinstance(message, InboundMessage)
    assert message.shared_own_phone is None
    assert message.sender == Person(bsuid="DE.88201937465502911", username="jonas_w", name="Jonas")
    assert message.raw["contacts"][0]["phones"][0]["phone"] == "+49 160 5550199"  # kept as content


def test_a_delivered_status_to_a_bsuid_carries_parent_profile_and_pricing() -> None:
    assert only(fixture_json("meta_status_delivered_bsuid.json")) == StatusUpdate(
        tenant="demo",
        provider="meta",
        channel="whatsapp",
        message_id="wamid.HBgLREUuODgyMDE5Mzc0NjU1MDI5MTEVAgARGBJBQkNERUYwMTIzNDU2Nzg5AA==",
        business=BUSINESS,
        recipient=JONAS,
        status="delivered",
        at=at(1779876060),
        pricing_category="service",
    )


def test_a_failed_status_carries_the_error_and_the_phone_it_went_to() -> None:
    assert only(fixture_json("meta_status_failed_131026.json")) == StatusUpdate(
        tenant="demo",
        provider="meta",
        channel="whatsapp",
        message_id="wamid.HBgNMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
        business=BUSINESS,
        recipient=Person(phone="+16505551234", phone_raw="16505551234"),
        status="failed",
        at=at(1779876000),
        errors=(ProviderError(131026, "Message undeliverable", "Message Undeliverable."),),
    )


def test_a_user_who_changed_number_moves_from_old_phone_and_bsuid_to_new_ones() -> None:
    assert only(fixture_json("meta_system_user_changed_number.json")) == IdentityChange(
        tenant="demo",
        provider="meta",
        event_id="wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBMDJTWVNURU0wMDAwMDAwMDEA",
        business=BUSINESS,
        kind="user_changed_number",
        previous=Person(phone="+5511987654321", phone_raw="5511987654321", bsuid="BR.1502576394655843"),
        current=Person(phone="+5511912345678", phone_raw="5511912345678", bsuid="BR.7730019283746501"),
        at=at(1779962400),
    )


def test_a_marketing_stop_is_a_preference_change() -> None:
    assert only(fixture_json("meta_user_preferences_stop.json")) == PreferenceChange(
        tenant="demo",
        provider="meta",
        business=BUSINESS,
        person=PRIYA,
        category="marketing_messages",
        value="stop",
        at=at(1779890000),
    )


def test_every_shared_meta_fixture_parses_without_drops_or_unrecognised_items() -> None:
    for path in sorted(CORE_FIXTURES.glob("meta_*.json")):
        result = parsed(json.loads(path.read_bytes()))
        assert result.rejected == [], path.name
        assert result.events and not any(isinstance(e, Unrecognised) for e in result.events), path.name


# --- every message type -------------------------------------------------------------------------------------

OUT_TEMPLATE = "wamid.HBgLMTQxNTU1NTAxNDIVAgARGBJPVVRUUEwwMDAwMDAwMDAwMQA="


@pytest.mark.parametrize(
    ("index", "kind", "text", "reply_to"),
    [
        (0, "interactive", "Medium", "wamid.HBgLMTQxNTU1NTAxNDIVAgARGBJPVVRMSVNUMDAwMDAwMDAwMQA="),
        (1, "interactive", "Sent", "wamid.HBgLMTQxNTU1NTAxNDIVAgARGBJPVVRGTE9XMDAwMDAwMDAwMQA="),
        (2, "button", "Yes, deliver tomorrow", OUT_TEMPLATE),
        (3, "image", "The box arrived like this", None),
        (4, "audio", None, None),
        (5, "video", "Unboxing", None),
        (6, "document", "My invoice", None),
        (7, "sticker", None, None),
        (8, "location", None, None),
        (9, "reaction", "\N{THUMBS UP SIGN}", OUT_TEMPLATE),
        (10, "order", "Please gift-wrap it", None),
        (11, "unsupported", None, None),
        (12, "text", "Is this still available?", None),
    ],
)
def test_each_message_type_yields_its_text_and_what_it_answers(
    index: int, kind: str, text: str | None, reply_to: str | None
) -> None:
    payload = local_json("meta_message_types.json")
    message = events(payload)[index]
    assert isinstance(message, InboundMessage)
    assert (message.type, message.text, message.reply_to) == (kind, text, reply_to)
    assert message.sender == LENA
    assert (
        message.raw is value_of(payload)["messages"][index]
        or message.raw == value_of(payload)["messages"][index]
    )


def test_media_objects_flow_answers_and_referrals_stay_in_raw() -> None:
    image, flow, order, ad = (events(local_json("meta_message_types.json"))[i] for i in (3, 1, 10, 12))
    assert image.raw["image"]["id"] == "1029384756102938"
    assert json.loads(flow.raw["interactive"]["nfm_reply"]["response_json"])["flow_token"] == "booking-42"
    assert order.raw["order"]["product_items"][0]["product_retailer_id"] == "SKU-4711"
    assert ad.raw["referral"]["source_type"] == "ad"


def test_an_unsupported_message_still_opens_a_conversation_and_carries_its_error() -> None:
    message = events(local_json("meta_message_types.json"))[11]
    assert isinstance(message, InboundMessage)
    assert message.errors == (
        ProviderError(131051, "Message type unknown", "Message type is currently not supported."),
    )
    assert message.sent_at == at(1779881660)


def test_a_message_type_meta_adds_later_is_still_a_message_of_that_type() -> None:
    payload = fixture_json("meta_text_phone_and_bsuid.json")
    item = value_of(payload)["messages"][0]
    item["type"] = "poll_vote"
    item["poll_vote"] = {"poll_id": "wamid.POLL", "text": "Tuesday"}
    del item["text"]
    message = only(payload)
    assert isinstance(message, InboundMessage)
    assert (message.type, message.text, message.sender) == ("poll_vote", "Tuesday", ANA)


def test_timestamps_as_numbers_or_strings_become_aware_utc() -> None:
    payload = fixture_json("meta_text_phone_and_bsuid.json")
    value_of(payload)["messages"][0]["timestamp"] = 1779868800
    assert only(payload).sent_at == datetime(2026, 5, 27, 8, 0, tzinfo=UTC)


def test_a_missing_timestamp_falls_back_to_arrival_and_is_reported() -> None:
    payload = fixture_json("meta_text_phone_and_bsuid.json")
    value_of(payload)["messages"][0]["timestamp"] = "yesterday"
    result = parsed(payload)
    assert result.events[0].sent_at == datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC)  # type: ignore[union-attr]
    assert result.rejected == ["invalid timestamp in messages.timestamp"]


# --- statuses ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling", ["recipient_parent_user_id", "parent_recipient_user_id", "parent_user_id"]
)
def test_a_status_parent_bsuid_is_read_under_every_spelling_meta_used(spelling: str) -> None:
    payload = fixture_json("meta_status_delivered_bsuid.json")
    value = value_of(payload)
    del value["contacts"]  # so the parent can only come from the status itself
    status = value["statuses"][0]
    status[spelling] = status.pop("recipient_parent_user_id")
    assert only(payload).recipient == Person(
        bsuid="DE.88201937465502911", parent_bsuid="DE.ENT.55102938475610293"
    )


def test_a_status_in_a_group_names_the_participant_not_the_group() -> None:
    payload = fixture_json("meta_status_delivered_bsuid.json")
    status = value_of(payload)["statuses"][0]
    status.update(
        recipient_type="group",
        recipient_id="120363025555555555",
        recipient_participant_id="4916055501990",
        recipient_participant_user_id=status.pop("recipient_user_id"),
        recipient_participant_parent_user_id=status.pop("recipient_parent_user_id"),
    )
    recipient = only(payload).recipient
    assert recipient.bsuid == "DE.88201937465502911"
    assert recipient.phone == "+4916055501990"


def test_a_status_word_meta_adds_later_is_kept() -> None:
    payload = fixture_json("meta_status_delivered_bsuid.json")
    value_of(payload)["statuses"][0]["status"] = "played"
    assert only(payload).status == "played"


# --- number and user-id changes, in all three shapes -------------------------------------------------------


def test_a_user_id_change_without_a_shareable_phone_moves_bsuid_and_parent() -> None:
    assert only(local_json("meta_system_user_changed_user_id.json")) == IdentityChange(
        tenant="demo",
        provider="meta",
        event_id="wamid.HBgLVVMuNzI2MTUwMzg0OTI3MTY1MDM4NBUCABIYFDNBMDJTWVNURU0wMDAwMDAwMDIA",
        business=BUSINESS,
        kind="user_changed_user_id",
        previous=Person(bsuid="US.7261503849271650384", parent_bsuid="US.ENT.9182736450918273645"),
        current=Person(bsuid="US.5093827164501928374", parent_bsuid="US.ENT.4455667788990011223"),
        at=at(1779966000),
    )


def test_the_older_customer_changed_number_moves_the_phone() -> None:
    change = only(local_json("meta_system_customer_changed_number.json"))
    assert isinstance(change, IdentityChange)
    assert change.kind == "customer_changed_number"
    assert change.previous == Person(phone="+16505551234", phone_raw="16505551234")
    assert change.current == Person(phone="+16505559876", phone_raw="16505559876")


def test_the_legacy_user_id_update_field_rotates_bsuids_and_keeps_the_phone_current() -> None:
    payload = local_json("meta_user_id_update.json")
    change = only(payload)
    assert isinstance(change, IdentityChange)
    assert change.kind == "user_id_update"
    assert change.previous == Person(bsuid="BR.7730019283746501", parent_bsuid="BR.ENT.3301928374650192")
    assert change.current == Person(
        phone="+5511912345678",
        phone_raw="5511912345678",
        bsuid="BR.8841120394857612",
        parent_bsuid="BR.ENT.4412039485761203",
        name="Ana Lima",
    )
    assert change.at == at(1780000000)
    assert change.event_id.startswith("user_id_update.")
    assert only(copy.deepcopy(payload)).event_id == change.event_id  # a redelivery is recognisably the same


def test_a_number_change_that_keeps_the_phone_does_not_mark_it_old() -> None:
    payload = fixture_json("meta_system_user_changed_number.json")
    item = value_of(payload)["messages"][0]
    item["system"].update(type="user_changed_user_id", wa_id=item["from"])
    change = only(payload)
    assert change.previous == Person(bsuid="BR.1502576394655843")
    assert change.current.phone == "+5511987654321"


def test_a_system_message_crossroute_does_not_act_on_is_kept_unrecognised() -> None:
    payload = fixture_json("meta_system_user_changed_number.json")
    value_of(payload)["messages"][0]["system"] = {
        "body": "Security code changed",
        "type": "customer_identity_changed",
    }
    event = only(payload)
    assert isinstance(event, Unrecognised)
    assert (event.kind, event.reason) == (
        "meta.messages.messages",
        "system message customer_identity_changed",
    )


# --- coexistence --------------------------------------------------------------------------------------------


def test_messages_sent_from_the_business_app_are_echoes_on_the_customers_timeline() -> None:
    text, image = events(local_json("meta_smb_message_echoes.json"))
    ana = Person(
        phone="+5511912345678", phone_raw="5511912345678", bsuid="BR.8841120394857612", username="ana.lima"
    )
    assert text == OutboundEcho(
        tenant="demo",
        provider="meta",
        channel="whatsapp",
        message_id="wamid.HBgNNTUxMTkxMjM0NTY3OBUCABEYEkVDSE8wMDAwMDAwMDAwMDAxAA==",
        business=BUSINESS,
        recipient=ana,
        sent_at=at(1780003600),
        type="text",
        text="Seu pedido saiu para entrega",
    )
    assert isinstance(image, OutboundEcho)
    assert (image.type, image.text, image.recipient) == ("image", "Comprovante", ana)  # phone from contacts


def test_a_history_chunk_tells_the_customers_messages_from_the_business_ones() -> None:
    lena_out, lena_in, lena_media, jonas_in, jonas_out = events(local_json("meta_history_chunk.json"))
    lena = Person(
        phone="+14155550142", phone_raw="14155550142", bsuid="US.7261503849271650384", username="lena.b"
    )
    jonas = Person(bsuid="DE.88201937465502911", username="jonas_w")
    assert isinstance(lena_out, OutboundEcho) and isinstance(jonas_out, OutboundEcho)
    assert isinstance(lena_in, InboundMessage) and isinstance(jonas_in, InboundMessage)
    assert (lena_out.recipient, lena_out.text, lena_out.sent_at) == (
        lena,
        "Your table for two is booked for Friday.",
        at(1770000000),
    )
    assert (lena_in.sender, lena_in.text) == (lena, "Thanks! Can we make it 8pm?")
    assert (lena_media.type, lena_media.text) == ("media_placeholder", None)
    assert (jonas_in.sender, jonas_in.text) == (jonas, "Habt ihr am Samstag offen?")
    assert (jonas_out.recipient, jonas_out.text) == (jonas, "Ja, von 10 bis 18 Uhr.")
    for event in (lena_out, lena_in, lena_media, jonas_in, jonas_out):
        assert event.historical is True  # type: ignore[union-attr]


def test_a_declined_history_share_is_kept_as_unrecognised_with_its_code() -> None:
    event = only(local_json("meta_history_declined.json"))
    assert isinstance(event, Unrecognised)
    assert (event.kind, event.reason) == ("meta.history.history", "history not shared: error 2593109")


def test_the_business_apps_address_book_links_phones_and_bsuids() -> None:
    lena, jonas, supplier = events(local_json("meta_smb_app_state_sync.json"))
    assert lena == ContactLink(
        tenant="demo",
        provider="meta",
        business=BUSINESS,
        person=Person(
            phone="+14155550142",
            phone_raw="14155550142",
            bsuid="US.7261503849271650384",
            username="lena.b",
            name="Lena Berg",
        ),
        action="add",
        at=at(1779000000),
    )
    assert (jonas.person, jonas.action) == (  # type: ignore[union-attr]
        Person(bsuid="DE.88201937465502911", username="jonas_w", name="Jonas W"),
        "edit",
    )
    assert (supplier.person.phone, supplier.person.phone_raw, supplier.action) == (  # type: ignore[union-attr]
        "+442079460958",
        "+44 20 7946 0958",
        "remove",
    )


# --- identity hygiene (contract I1, I2) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "BR." + "1" * 129,
        "br.1502576394655843",
        "BR.ENT.1502576394655843",
        "BR-1502576394655843",
        1502576394655843,
    ],
)
def test_a_malformed_bsuid_is_dropped_from_the_sender_and_reported(bad: Any) -> None:
    payload = fixture_json("meta_text_phone_and_bsuid.json")
    value = value_of(payload)
    value["messages"][0]["from_user_id"] = bad
    value["contacts"][0]["user_id"] = bad
    result = parsed(payload)
    (message,) = result.events
    assert isinstance(message, InboundMessage)
    assert message.sender == Person(
        phone="+5511987654321", phone_raw="5511987654321", username="ana.lima", name="Ana Lima"
    )
    assert result.rejected == [
        "malformed BSUID in contacts.user_id",
        "malformed BSUID in messages.from_user_id",
    ]


def test_a_malformed_parent_bsuid_is_dropped_and_reported() -> None:
    payload = fixture_json("meta_text_bsuid_only.json")
    value = value_of(payload)
    value["messages"][0]["from_parent_user_id"] = "DE.55102938475610293"  # lacks ENT
    value["contacts"][0]["parent_user_id"] = "DE.55102938475610293"
    result = parsed(payload)
    assert result.events[0].sender.parent_bsuid is None  # type: ignore[union-attr]
    assert "malformed parent BSUID in messages.from_parent_user_id" in result.rejected


def test_a_sender_with_only_a_malformed_bsuid_is_not_a_customer() -> None:
    payload = fixture_json("meta_text_bsuid_only.json")
    value = value_of(payload)
    value["messages"][0]["from_user_id"] = value["contacts"][0]["user_id"] = "DE:88201937465502911"
    result = parsed(payload)
    (event,) = result.events
    assert isinstance(event, Unrecognised)
    assert event.reason == "message without an id or a valid sender"
    assert "malformed BSUID in messages.from_user_id" in result.rejected


def test_an_unparseable_phone_is_dropped_and_reported() -> None:
    payload = fixture_json("meta_text_phone_and_bsuid.json")
    value = value_of(payload)
    value["messages"][0]["from"] = value["contacts"][0]["wa_id"] = "55-11-98765"
    result = parsed(payload)
    assert result.events[0].sender == Person(  # type: ignore[union-attr]
        bsuid="BR.1502576394655843", username="ana.lima", name="Ana Lima"
    )
    assert result.rejected == ["unparseable phone in contacts.wa_id", "unparseable phone in messages.from"]


def test_a_contact_is_matched_to_its_message_by_bsuid_or_phone_never_by_position() -> None:
    payload = fixture_json("meta_text_phone_and_bsuid.json")
    value = value_of(payload)
    value["contacts"].insert(
        0, {"profile": {"name": "Someone Else"}, "wa_id": "16505551234", "user_id": "US.1"}
    )
    assert only(payload).sender == ANA


# --- what crossroute does not understand is kept, never a crash --------------------------------------------


def test_an_unknown_field_is_kept_as_unrecognised() -> None:
    payload = fixture_json("meta_text_phone_and_bsuid.json")
    change = payload["entry"][0]["changes"][0]
    change["field"] = "business_username_update"
    change["value"] = {"display_phone_number": "15550100001", "username": "acme", "status": "approved"}
    event = only(payload)
    assert isinstance(event, Unrecognised)
    assert (event.provider, event.kind, event.reason) == (
        "meta",
        "meta.business_username_update",
        "unknown field",
    )
    assert event.raw == change


def test_an_unknown_item_list_in_a_known_field_is_kept_beside_the_known_items() -> None:
    payload = fixture_json("meta_text_phone_and_bsuid.json")
    value_of(payload)["reactions_summary"] = [{"id": "wamid.X", "count": 3}]
    message, unknown = events(payload)
    assert isinstance(message, InboundMessage)
    assert isinstance(unknown, Unrecognised)
    assert (unknown.kind, unknown.reason) == ("meta.messages.reactions_summary", "unknown item list")


def test_webhook_level_errors_are_kept_as_unrecognised() -> None:
    payload = fixture_json("meta_text_phone_and_bsuid.json")
    value = value_of(payload)
    del value["messages"], value["contacts"]
    value["errors"] = [{"code": 131000, "title": "Something went wrong", "message": "Something went wrong"}]
    event = only(payload)
    assert isinstance(event, Unrecognised)
    assert event.reason == "webhook error 131000"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "text",
        {"object": "whatsapp_business_account"},
        {"entry": [1]},
        {"entry": [{"changes": [{}]}]},
    ],
)
def test_a_payload_that_is_not_an_envelope_is_unrecognised(payload: Any) -> None:
    (event,) = events(payload)
    assert isinstance(event, Unrecognised)
    assert event.kind == "meta.webhook"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "queued body is not JSON"),
        ("[]", "queued body is not an object"),
        (
            json.dumps({"schema": "crossroute.inbound/9", "tenant": "demo", "kind": "meta.webhook"}),
            "unsupported queue schema",
        ),
        (
            json.dumps({"schema": "crossroute.inbound/1", "kind": "meta.webhook", "payload": {}}),
            "queued body without tenant",
        ),
        (
            json.dumps({"schema": "crossroute.inbound/1", "tenant": "demo", "kind": "x.y"}),
            "unknown queued kind",
        ),
    ],
)
def test_a_queued_body_crossroute_did_not_write_is_rejected(body: str, reason: str) -> None:
    assert parse(body) == Parsed(events=[], rejected=[reason])


def test_the_queued_body_may_be_given_as_a_dict() -> None:
    body = json.loads(queued(fixture_json("meta_text_phone_and_bsuid.json")))
    assert parse(body).events == parse(json.dumps(body)).events


# --- properties: any damage never raises, never leaks, never makes a bad key ------------------------------

ALL_META_FIXTURES = [json.loads(p.read_bytes()) for p in sorted(CORE_FIXTURES.glob("meta_*.json"))] + [
    json.loads(p.read_bytes()) for p in sorted(LOCAL_FIXTURES.glob("meta_*.json"))
]
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(TRICKY_STRINGS),
)
JSONISH = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def mutate(draw: st.DrawFn, node: Any) -> Any:
    """``node`` with keys dropped, values retyped and unknown keys added, anywhere in the tree."""
    if isinstance(node, dict):
        out = {}
        for key, child in node.items():
            action = draw(
                st.sampled_from(["keep", "keep", "recurse", "recurse", "recurse", "drop", "replace"])
            )
            if action != "drop":
                out[key] = (
                    child
                    if action == "keep"
                    else mutate(draw, child)
                    if action == "recurse"
                    else draw(JSONISH)
                )
        if draw(st.integers(0, 4)) == 0:
            out[draw(st.text(max_size=10))] = draw(JSONISH)
        return out
    if isinstance(node, list):
        items = [mutate(draw, child) for child in node if draw(st.integers(0, 5))]
        return items + ([draw(JSONISH)] if draw(st.integers(0, 5)) == 0 else [])
    return draw(JSONISH) if draw(st.integers(0, 3)) == 0 else node


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_any_damage_to_a_meta_payload_is_parsed_without_raising(data: st.DataObject) -> None:
    payload = data.draw(st.sampled_from(ALL_META_FIXTURES))
    damaged = data.draw(st.composite(lambda draw: mutate(draw, copy.deepcopy(payload)))())
    assert_clean(parsed(damaged))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_damage_to_a_message_item_is_parsed_without_raising(data: st.DataObject) -> None:
    """Deeper damage where it matters most: inside the items."""
    payload = copy.deepcopy(data.draw(st.sampled_from(ALL_META_FIXTURES)))
    value = payload["entry"][0]["changes"][0]["value"]
    for key, items in list(value.items()):
        if isinstance(items, list):
            value[key] = [data.draw(st.composite(lambda draw, i=i: mutate(draw, i))()) for i in items]
    assert_clean(parsed(payload))


@settings(max_examples=200, deadline=None)
@given(JSONISH)
def test_any_json_as_a_payload_is_parsed_without_raising(payload: Any) -> None:
    assert_clean(parsed(payload))


# --- content that would not fit the table is never taken as an id or profile -----------------------------


def test_a_message_id_too_long_to_be_genuine_is_kept_as_unrecognised() -> None:
    payload = fixture_json("meta_text_bsuid_only.json")
    value_of(payload)["messages"][0]["id"] = "wamid." + "x" * 5000
    (event,) = events(payload)
    assert isinstance(event, Unrecognised) and event.reason == "message without an id or a valid sender"


def test_a_huge_profile_name_is_cut_to_a_sane_length() -> None:
    payload = fixture_json("meta_text_phone_and_bsuid.json")
    value_of(payload)["contacts"][0]["profile"]["name"] = "N" * 100_000
    message = only(payload)
    assert message.sender.name == "N" * 256


def test_without_phone_number_id_the_business_the_intake_resolved_is_used() -> None:
    payload = fixture_json("meta_text_bsuid_only.json")
    del value_of(payload)["metadata"]["phone_number_id"]
    assert only(payload).business == ""
    (message,) = parse(queued(payload, business=BUSINESS)).events
    assert message.business == BUSINESS
