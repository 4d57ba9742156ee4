"""Records from the business's own systems over HTTP (I11, docs/api.md): ``POST /contacts`` and
``POST /contacts/batch`` against the local stack, ``GET /contacts?external_id=``, and an imported phone
that its user then writes from on WhatsApp (signed webhook): linked by I4, the external id kept."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from infra.local import StackClient
from tests.support import ANA_BSUID, ANA_PHONE, contact, eventually, new_bsuid, new_phone, personal, post_meta

pytestmark = pytest.mark.e2e


def external_id() -> str:
    return f"crm-{secrets.token_hex(6)}"


def upsert(stack: StackClient, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    answer = stack.post("/contacts", json_body=record)
    return answer.status, answer.json()


def test_a_record_is_created_then_unchanged_and_found_by_its_external_id(local_stack: StackClient) -> None:
    crm, phone = external_id(), "+" + new_phone()
    record = {"external_id": crm, "phone": phone, "name": "Ana", "sms_opted_out": True}
    status, created = upsert(local_stack, record)
    assert status == 201, created
    assert created["outcome"] == "created" and created["contact"]["external_id"] == crm
    assert created["contact"]["phones"] == [{"e164": phone, "status": "current", "source": "business.record"}]
    status, again = upsert(local_stack, record)
    assert (status, again["outcome"], again["customer_id"]) == (200, "unchanged", created["customer_id"])
    found = contact(local_stack, external_id=crm)
    assert found is not None and found["id"] == created["customer_id"] and found["sms_opted_out"]
    status, back_on = upsert(local_stack, {"external_id": crm, "sms_opted_out": False})
    assert (status, [r["code"] for r in back_on["refused"]]) == (200, ["opt_in.needs_user"])
    assert contact(local_stack, external_id=crm)["sms_opted_out"]  # type: ignore[index]


def test_a_key_of_another_customer_is_409_naming_it_and_a_bad_record_400_listing_every_field(
    local_stack: StackClient,
) -> None:
    phone = "+" + new_phone()
    _, first = upsert(local_stack, {"external_id": external_id(), "phone": phone})
    status, clash = upsert(local_stack, {"external_id": external_id(), "phone": phone})
    assert status == 409 and clash["conflicts"] == [{"field": "phone", "customer_id": first["customer_id"]}]
    status, bad = upsert(local_stack, {"phone": "call me", "bsuid": "nope", "colour": "red"})
    assert status == 400
    assert {(e["field"], e["code"]) for e in bad["errors"]} == {
        ("phone", "phone.invalid"),
        ("bsuid", "bsuid.invalid"),
        ("colour", "field.unknown"),
    }


def test_the_batch_door_answers_each_record_and_a_dry_run_writes_nothing(local_stack: StackClient) -> None:
    crm, phone = external_id(), "+" + new_phone()
    records = [
        {"external_id": crm, "phone": phone},
        {"external_id": external_id(), "phone": phone},  # the first record's phone: a conflict
        {"phone": "bad"},
    ]
    dry = local_stack.post("/contacts/batch", json_body={"records": records, "dry_run": True})
    assert dry.status == 200, dry.text
    assert [r["outcome"] for r in dry.json()["results"]] == ["created", "created", "invalid"]
    assert contact(local_stack, external_id=crm) is None
    answer = local_stack.post("/contacts/batch", json_body={"records": records})
    results = answer.json()["results"]
    assert [(r["index"], r["status"], r["outcome"]) for r in results] == [
        (0, 201, "created"),
        (1, 409, "conflict"),
        (2, 400, "invalid"),
    ]
    assert results[1]["conflicts"] == [{"field": "phone", "customer_id": results[0]["customer_id"]}]
    too_many = local_stack.post("/contacts/batch", json_body={"records": [{"phone": phone}] * 101})
    assert too_many.status == 400


def test_an_imported_phone_links_by_i4_when_its_user_writes_on_whatsapp(local_stack: StackClient) -> None:
    crm, phone, bsuid = external_id(), new_phone(), new_bsuid("BR")
    status, imported = upsert(local_stack, {"external_id": crm, "phone": "+" + phone})
    assert status == 201
    raw = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: bsuid})
    assert post_meta(local_stack, raw).status == 200
    view = eventually(lambda: (c := contact(local_stack, bsuid=bsuid)) and c)
    assert view["id"] == imported["customer_id"] and view["external_id"] == crm
    assert view["name"] == "Ana Lima"  # the profile from WhatsApp, on the imported customer
