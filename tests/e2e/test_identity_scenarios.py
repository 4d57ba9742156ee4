"""Customers as a user of the local stack sees them: signed provider webhooks in, contacts and
timelines out over HTTP (contract §5, §6, §9). Each test uses fresh identities: the stack is shared."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from infra.local import StackClient
from tests.support import (
    ANA_BSUID,
    ANA_PHONE,
    contact,
    eventually,
    new_bsuid,
    new_phone,
    personal,
    post_meta,
    post_twilio,
    timeline,
)

pytestmark = pytest.mark.e2e

JONAS_BSUID = "DE.88201937465502911"


def messages(stack: StackClient, customer_id: str) -> list[str]:
    return [i["message_id"] for i in timeline(stack, customer_id) if i["kind"] == "message"]


def phones(view: dict[str, Any]) -> dict[str, str]:
    return {p["e164"]: p["status"] for p in view["phones"]}


def test_a_whatsapp_message_becomes_a_contact_with_its_message_and_window(local_stack: StackClient) -> None:
    phone, bsuid = new_phone(), new_bsuid("BR")
    raw = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: bsuid})
    assert post_meta(local_stack, raw).status == 200
    view = eventually(lambda: contact(local_stack, bsuid=bsuid))
    assert phones(view) == {"+" + phone: "current"}
    assert view["bsuids"] == [{"id": bsuid, "status": "current"}]
    assert (view["username"], view["name"]) == ("ana.lima", "Ana Lima")
    assert view["whatsapp"]["window_open_until"].startswith("2026-05-")  # the fixture's time + 24 h
    assert contact(local_stack, phone="+" + phone)["id"] == view["id"]  # type: ignore[index]
    assert contact(local_stack, id=view["id"])["id"] == view["id"]  # type: ignore[index]
    (entry,) = [i for i in timeline(local_stack, view["id"]) if i["kind"] == "message"]
    assert entry["text"] == "Oi! Meu pedido chegou?" and entry["direction"] == "in"


def test_an_sms_customer_who_later_writes_on_whatsapp_is_one_customer(local_stack: StackClient) -> None:
    phone, bsuid = new_phone(), new_bsuid("BR")
    sms = personal("twilio_sms_inbound.form", **{"%2B16505551234": "%2B" + phone})
    assert post_twilio(local_stack, sms).status == 200
    first = eventually(lambda: contact(local_stack, phone="+" + phone))
    wa = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: bsuid})
    assert post_meta(local_stack, wa).status == 200
    both = eventually(lambda: contact(local_stack, bsuid=bsuid))
    assert both["id"] == first["id"] and both["merged_from"] == []
    assert (
        len(
            eventually(
                lambda: len(messages(local_stack, both["id"])) == 2 and messages(local_stack, both["id"])
            )
        )
        == 2
    )


def test_a_username_user_who_answers_a_contact_request_merges_with_the_earlier_sms_customer(
    local_stack: StackClient,
) -> None:
    """The SMS history and the WhatsApp history end on one customer; the merged-away id still resolves."""
    phone, bsuid = new_phone(), new_bsuid("DE")
    sms = personal("twilio_sms_inbound.form", **{"%2B16505551234": "%2B" + phone})
    assert post_twilio(local_stack, sms).status == 200
    sms_customer = eventually(lambda: contact(local_stack, phone="+" + phone))
    text = personal("meta_text_bsuid_only.json", **{JONAS_BSUID: bsuid})
    assert post_meta(local_stack, text).status == 200
    wa_customer = eventually(lambda: contact(local_stack, bsuid=bsuid))
    assert wa_customer["id"] != sms_customer["id"]

    answer = personal(
        "meta_contacts_request_answer.json",
        **{JONAS_BSUID: bsuid, "4915123456789": phone, "+49 151 23456789": "+" + phone},
    )
    assert post_meta(local_stack, answer).status == 200
    merged = eventually(lambda: (c := contact(local_stack, bsuid=bsuid)) and c["merged_from"] and c)
    # The customer first seen (by provider time) survives; the other id resolves to it.
    survivor, gone = sorted([sms_customer, wa_customer], key=lambda c: (c["created_at"], c["id"]))
    assert merged["id"] == survivor["id"] and merged["merged_from"] == [gone["id"]]
    assert phones(merged) == {"+" + phone: "current"}
    assert contact(local_stack, id=gone["id"])["id"] == merged["id"]  # type: ignore[index]
    history = timeline(local_stack, merged["id"])
    channels = sorted(i["channel"] for i in history if i["kind"] == "message")
    assert channels == ["sms", "whatsapp", "whatsapp"]  # the SMS, the text, the contact answer
    assert any(i["kind"] == "identity" and i["change"] == "merged" for i in history)


def test_a_contact_card_shared_by_hand_links_nothing(local_stack: StackClient) -> None:
    bsuid = new_bsuid("DE")
    card = personal(
        "meta_shared_contact_card.json", **{JONAS_BSUID: bsuid, "+49 160 5550199": "+1 650 201 0000"}
    )
    assert post_meta(local_stack, card).status == 200
    view = eventually(lambda: contact(local_stack, bsuid=bsuid))
    assert view["phones"] == []
    assert contact(local_stack, phone="+16502010000") is None


def test_a_number_change_keeps_the_customer_and_retires_the_old_phone(local_stack: StackClient) -> None:
    old_phone, new_phone_, old_bsuid, new_bsuid_ = new_phone(), new_phone(), new_bsuid("BR"), new_bsuid("BR")
    first = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: old_phone, ANA_BSUID: old_bsuid})
    assert post_meta(local_stack, first).status == 200
    before = eventually(lambda: contact(local_stack, bsuid=old_bsuid))
    change = personal(
        "meta_system_user_changed_number.json",
        **{
            ANA_PHONE: old_phone,
            "5511912345678": new_phone_,
            "BR.7730019283746501": new_bsuid_,
            ANA_BSUID: old_bsuid,
        },
    )
    assert post_meta(local_stack, change).status == 200
    after = eventually(lambda: contact(local_stack, bsuid=new_bsuid_))
    assert after["id"] == before["id"]
    assert phones(after) == {"+" + old_phone: "stale", "+" + new_phone_: "current"}
    assert {b["id"]: b["status"] for b in after["bsuids"]} == {old_bsuid: "previous", new_bsuid_: "current"}


def test_a_recycled_number_moves_to_its_new_owner_without_merging(local_stack: StackClient) -> None:
    phone, first_owner, second_owner = new_phone(), new_bsuid("BR"), new_bsuid("BR")
    one = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: first_owner})
    assert post_meta(local_stack, one).status == 200
    old = eventually(lambda: contact(local_stack, bsuid=first_owner))
    doc = json.loads(
        personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: second_owner})
    )
    doc["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = "1779999999"  # later
    assert post_meta(local_stack, json.dumps(doc).encode()).status == 200
    new = eventually(lambda: contact(local_stack, bsuid=second_owner))
    assert new["id"] != old["id"] and new["merged_from"] == []
    assert phones(new) == {"+" + phone: "current"}
    assert phones(contact(local_stack, id=old["id"])) == {"+" + phone: "stale"}  # type: ignore[arg-type]
    assert contact(local_stack, phone="+" + phone)["id"] == new["id"]  # type: ignore[index]


def test_stop_then_start_by_sms(local_stack: StackClient) -> None:
    phone = new_phone()
    stop = personal("twilio_sms_stop.form", **{"%2B16505551234": "%2B" + phone})
    assert post_twilio(local_stack, stop).status == 200
    assert eventually(lambda: (c := contact(local_stack, phone="+" + phone)) and c["sms_opted_out"])
    start = stop.replace(b"Body=Stop", b"Body=start").replace(b"OptOutType=STOP", b"OptOutType=START")
    start = start.replace(b"SM", b"SMx")
    assert post_twilio(local_stack, start).status == 200
    assert eventually(lambda: contact(local_stack, phone="+" + phone)["sms_opted_out"] is False)  # type: ignore[index]


def test_a_redelivered_webhook_stores_the_message_once_and_statuses_never_go_back(
    local_stack: StackClient,
) -> None:
    phone, bsuid = new_phone(), new_bsuid("IN")
    batch = personal(
        "meta_batch_messages_and_status.json", **{"919812345678": phone, "IN.1648738043044942": bsuid}
    )
    for _ in range(2):
        assert post_meta(local_stack, batch).status == 200
    view = eventually(lambda: contact(local_stack, bsuid=bsuid))
    ids = eventually(
        lambda: len(messages(local_stack, view["id"])) >= 2 and messages(local_stack, view["id"])
    )
    assert len(ids) == len(set(ids)) == 2
    # The status in the batch was "read"; a late "delivered" must not move it back.
    doc = json.loads(batch)
    status = doc["entry"][0]["changes"][1]["value"]["statuses"][0]
    status["status"], status["timestamp"] = "delivered", "1779880004"
    doc["entry"][0]["changes"] = doc["entry"][0]["changes"][1:]
    assert post_meta(local_stack, json.dumps(doc).encode()).status == 200
    time.sleep(1.0)
    wamid = status["id"]
    assert local_stack_status(local_stack, wamid) == "read"


def local_stack_status(stack: StackClient, wamid: str) -> str | None:
    item = stack.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": f"T#demo#M#meta#{wamid}"}, "sk": {"S": "MSG"}}
    )
    return item.get("Item", {}).get("status", {}).get("S")


def test_erasure_removes_profile_keys_and_timeline(local_stack: StackClient) -> None:
    phone, bsuid = new_phone(), new_bsuid("BR")
    raw = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: bsuid})
    assert post_meta(local_stack, raw).status == 200
    view = eventually(lambda: contact(local_stack, bsuid=bsuid))
    assert local_stack.request("DELETE", f"/contacts/{view['id']}").status == 204
    assert contact(local_stack, bsuid=bsuid) is None and contact(local_stack, phone="+" + phone) is None
    assert contact(local_stack, id=view["id"]) is None
    scan = local_stack.client("dynamodb").scan(TableName=local_stack.table_name)["Items"]
    assert not [i for i in scan if view["id"] in json.dumps(i) or bsuid in json.dumps(i)]


def test_a_webhook_replayed_after_erasure_does_not_bring_the_customer_back(local_stack: StackClient) -> None:
    """Meta retries for up to 7 days: the same signed webhook after DELETE /contacts/{id} stores nothing."""
    phone, bsuid = new_phone(), new_bsuid("BR")
    raw = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: bsuid})
    assert post_meta(local_stack, raw).status == 200
    view = eventually(lambda: contact(local_stack, bsuid=bsuid))
    assert local_stack.request("DELETE", f"/contacts/{view['id']}").status == 204
    replayed = raw.replace(b'"entry"', b'"retry": 1, "entry"')  # a new body: past the queue's dedup window
    assert post_meta(local_stack, replayed).status == 200
    eventually(
        lambda: (
            local_stack.client("sqs").get_queue_attributes(
                QueueUrl=local_stack.inbound_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
            == "0"
        )
    )
    time.sleep(1.0)
    assert contact(local_stack, bsuid=bsuid) is None and contact(local_stack, phone="+" + phone) is None
    scan = local_stack.client("dynamodb").scan(TableName=local_stack.table_name)["Items"]
    assert not [i for i in scan if bsuid in json.dumps(i) or phone in json.dumps(i)]


def test_the_read_api_refuses_bad_queries(local_stack: StackClient) -> None:
    assert local_stack.get("/contacts").status == 400
    assert local_stack.get("/contacts", query={"phone": "+1650", "bsuid": "US.1"}).status == 400
    assert local_stack.get("/contacts", query={"bsuid": "not-a-bsuid"}).status == 400
    assert local_stack.get("/contacts", query={"tenant": "nobody", "bsuid": "US.1"}).status == 404
    assert local_stack.get("/contacts/none/timeline").status == 404


def test_a_phone_in_any_format_finds_the_same_contact(local_stack: StackClient) -> None:
    """I1: 16505551234, +1 650-555-1234 and 001 650 555 1234 are one key."""
    phone = new_phone()
    sms = personal("twilio_sms_inbound.form", **{"%2B16505551234": "%2B" + phone})
    assert post_twilio(local_stack, sms).status == 200
    view = eventually(lambda: contact(local_stack, phone="+" + phone))
    national = f"({phone[1:4]}) {phone[4:7]}-{phone[7:]}"
    for spelling in (
        phone,
        f"+1 {phone[1:4]}-{phone[4:7]}-{phone[7:]}",
        f"001 {phone[1:4]} {phone[4:7]} {phone[7:]}",
        national,
    ):
        assert contact(local_stack, phone=spelling)["id"] == view["id"]  # type: ignore[index]


def test_a_malformed_bsuid_never_becomes_a_key(local_stack: StackClient) -> None:
    """I2: rejected at the edge; the message still lands on the customer its phone names."""
    phone = new_phone()
    raw = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: "br.not-a-bsuid"})
    assert post_meta(local_stack, raw).status == 200
    view = eventually(lambda: contact(local_stack, phone="+" + phone))
    assert view["bsuids"] == []
    assert local_stack.get("/contacts", query={"bsuid": "br.not-a-bsuid"}).status == 400


def test_the_latest_username_wins_whatever_the_arrival_order(local_stack: StackClient) -> None:
    """I8: username and profile name are attributes; the provider's later message wins."""
    bsuid = new_bsuid("DE")
    newer = json.loads(
        personal("meta_text_bsuid_only.json", **{JONAS_BSUID: bsuid, "@jonas_w": "@jonas_new"})
    )
    older = json.loads(personal("meta_text_bsuid_only.json", **{JONAS_BSUID: bsuid}))
    older["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = "1779872000"  # earlier
    assert post_meta(local_stack, json.dumps(newer).encode()).status == 200
    eventually(lambda: contact(local_stack, bsuid=bsuid))
    assert post_meta(local_stack, json.dumps(older).encode()).status == 200
    view = eventually(
        lambda: (c := contact(local_stack, bsuid=bsuid)) and len(messages(local_stack, c["id"])) == 2 and c
    )
    assert view["username"] == "jonas_new"


def test_simultaneous_first_messages_from_one_person_make_one_customer(local_stack: StackClient) -> None:
    """I3: an SMS and a WhatsApp message (phone + BSUID) from one number, posted at once, land in
    different FIFO groups and may be ingested in parallel: still exactly one customer, no merge."""
    for _ in range(3):
        _first_contact_race(local_stack, new_phone(), new_bsuid("BR"))


def _first_contact_race(stack: StackClient, phone: str, bsuid: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sms = personal("twilio_sms_inbound.form", **{"%2B16505551234": "%2B" + phone})
    wa = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: bsuid})
    with ThreadPoolExecutor(2) as pool:
        answers = [pool.submit(post_twilio, stack, sms), pool.submit(post_meta, stack, wa)]
        assert [a.result().status for a in answers] == [200, 200]

    def both_stored() -> dict[str, Any] | None:
        found = contact(stack, bsuid=bsuid)
        return found if found and len(messages(stack, found["id"])) == 2 else None

    view = eventually(both_stored)
    assert contact(stack, phone="+" + phone)["id"] == view["id"]  # type: ignore[index]
    assert view["merged_from"] == []
