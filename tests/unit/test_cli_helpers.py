"""The pure parts of the operator CLI (``crossroute_cli``): send requests and their outcome, signed
provider payloads, the registry's redaction and check, what a dead letter shows, the CSV export's
columns, and the local stack's SigV4 and CloudFormation helpers the CLI's tests rely on."""

from __future__ import annotations

import json
from typing import Any

import click
import pytest

from crossroute.media import MediaJob
from crossroute.tenants import TenantRegistry
from crossroute_cli.dlq import describe_body
from crossroute_cli.export import CSV_COLUMNS, flat
from crossroute_cli.registry import REDACTED, check_document, redact
from crossroute_cli.render import decision_lines
from crossroute_cli.sending import outcome, progress_outcome, send_request
from crossroute_cli.simulate import meta_message, meta_signature, twilio_message, twilio_signature
from infra.local.cloudformation import template
from infra.local.gateway import sigv4_scope
from tests.support import (
    APP_SECRET,
    LOCAL_TENANT,
    PHONE_NUMBER_ID,
    TWILIO_ACCOUNT,
    TWILIO_SMS_NUMBER,
    TWILIO_TOKEN,
    WABA_ID,
    registry_document,
)
from tests.support import meta_signature as signed_as_meta
from tests.support import twilio_signature as signed_as_twilio

DEMO = TenantRegistry.from_json(registry_document()).tenants[0]


# ---------------------------------------------------------------------- send
def options(**given: Any) -> dict[str, Any]:
    base = {"to_phone": None, "to_bsuid": None, "to_id": None, "text": None, "template": None, "key": None}
    return {**base, **given}


def test_a_send_request_from_the_options() -> None:
    doc = send_request(
        options(
            to_bsuid="US.123",
            text="hi",
            template="order_shipped",
            category="utility",
            channels="sms,whatsapp",
            key="k-1",
        ),
        tenant="demo",
    )
    assert doc == {
        "idempotency_key": "k-1",
        "tenant": "demo",
        "to": {"bsuid": "US.123"},
        "text": "hi",
        "template": {"name": "order_shipped", "language": "en_US", "category": "utility", "components": []},
        "channels": ["sms", "whatsapp"],
    }


def test_without_a_key_each_send_gets_a_new_one() -> None:
    first = send_request(options(to_id="c1", text="hi"), tenant=None)["idempotency_key"]
    second = send_request(options(to_id="c1", text="hi"), tenant=None)["idempotency_key"]
    assert first != second
    assert first.startswith("cli-")


@pytest.mark.parametrize(
    "given",
    [
        {"text": "hi"},
        {"to_phone": "+16505551234", "to_id": "c1", "text": "hi"},
        {"to_id": "c1"},
        {"to_bsuid": "not a bsuid", "text": "hi"},
        {"to_phone": "call me maybe", "text": "hi"},
        {"to_id": "c1", "text": "hi", "channels": "whatsapp,fax"},
        {"to_id": "c1", "text": "hi", "channels": "sms,sms"},
    ],
)
def test_bad_send_options_are_bad_usage(given: dict[str, Any]) -> None:
    with pytest.raises(click.UsageError):
        send_request(options(**given), tenant=None)


WA_YES = {"channel": "whatsapp", "qualified": True, "reason": "whatsapp.window_open"}
SMS_YES = {"channel": "sms", "qualified": True, "reason": "sms.current_phone"}
SMS_NO = {"channel": "sms", "qualified": False, "reason": "sms.no_phone"}
WA_NO = {"channel": "whatsapp", "qualified": False, "reason": "whatsapp.unknown_bsuid"}


@pytest.mark.parametrize(
    ("decision", "sends", "expected"),
    [
        ([], {}, None),
        ([WA_YES, SMS_YES], {}, None),
        ([WA_YES, SMS_YES], {"whatsapp": {"state": "sending"}}, None),
        ([WA_YES, SMS_YES], {"whatsapp": {"state": "sent"}}, ("sent", "whatsapp")),
        ([WA_YES, SMS_YES], {"whatsapp": {"state": "failed"}}, None),
        ([WA_YES, SMS_YES], {"whatsapp": {"state": "failed"}, "sms": {"state": "sent"}}, ("sent", "sms")),
        (
            [WA_YES, SMS_YES],
            {"whatsapp": {"state": "failed"}, "sms": {"state": "failed"}},
            ("undeliverable", None),
        ),
        ([WA_YES, SMS_NO], {"whatsapp": {"state": "unknown"}}, ("unknown", "whatsapp")),
        ([WA_NO, SMS_NO], {}, ("undeliverable", None)),
    ],
)
def test_the_outcome_of_a_send(decision: list[Any], sends: dict[str, Any], expected: Any) -> None:
    assert outcome(decision, sends) == expected


def test_a_dead_lettered_request_is_undeliverable_whatever_its_channels_show() -> None:
    """``send --wait`` on ``GET /messages/{id}``: the server's status wins where the channels say nothing
    yet (dead-lettered before any decision or before a qualifying channel settled, R12)."""
    assert progress_outcome({"status": "undeliverable", "decision": [], "channels": {}}) == (
        "undeliverable",
        None,
    )
    waiting = {
        "status": "undeliverable",
        "decision": [WA_YES],
        "channels": {"whatsapp": {"state": "sending"}},
    }
    assert progress_outcome(waiting) == ("undeliverable", None)
    assert progress_outcome({**waiting, "status": "sending"}) is None
    sent = {"status": "sent", "decision": [WA_YES], "channels": {"whatsapp": {"state": "sent"}}}
    assert progress_outcome(sent) == ("sent", "whatsapp")


def test_decisions_read_with_the_meaning_of_each_reason() -> None:
    lines = decision_lines(
        [WA_NO, SMS_YES, {"channel": "sms", "qualified": True, "reason": "fallback.whatsapp_failed.131026"}]
    )
    assert lines[0].split()[:3] == ["whatsapp", "no", "whatsapp.unknown_bsuid:"]
    assert lines[0].endswith("no customer holds this BSUID: it cannot be sent to")
    assert "a current phone that has not opted out (R4)" in lines[1]
    assert "WhatsApp failed with error 131026 (R7)" in lines[2]
    (sent_from,) = decision_lines([{**SMS_YES, "from": "+15550100004", "from_reason": "from.last_inbound"}])
    assert sent_from.endswith("(from +15550100004)")  # R10
    assert "(from" not in lines[1]


# ---------------------------------------------------------------------- simulate
def test_a_whatsapp_message_is_signed_as_meta_signs_it() -> None:
    raw = json.dumps(
        meta_message(DEMO, text="hi", message_id="wamid.1", timestamp=1, wa_id="16505551234")
    ).encode()
    assert meta_signature(raw, APP_SECRET) == signed_as_meta(raw)


def test_a_bsuid_only_user_has_no_phone_anywhere_in_the_payload() -> None:
    payload = meta_message(
        DEMO,
        text="Hallo",
        message_id="wamid.2",
        timestamp=1779872400,
        bsuid="DE.88",
        username="@jonas",
        name="Jonas",
    )
    value = payload["entry"][0]["changes"][0]["value"]
    assert payload["entry"][0]["id"] == WABA_ID
    assert value["metadata"]["phone_number_id"] == PHONE_NUMBER_ID
    assert value["contacts"] == [{"profile": {"name": "Jonas", "username": "@jonas"}, "user_id": "DE.88"}]
    assert value["messages"] == [
        {
            "from_user_id": "DE.88",
            "id": "wamid.2",
            "timestamp": "1779872400",
            "type": "text",
            "text": {"body": "Hallo"},
        }
    ]


def test_an_sms_is_signed_as_twilio_signs_it() -> None:
    from urllib.parse import urlencode

    params = twilio_message(DEMO, phone="+16505551234", text="Where is my order?", message_sid="SM1")
    assert dict(params)["AccountSid"] == TWILIO_ACCOUNT
    assert dict(params)["To"] == TWILIO_SMS_NUMBER
    url = "https://api.example.com/webhooks/twilio"
    assert twilio_signature(url, params, TWILIO_TOKEN) == signed_as_twilio(url, urlencode(params).encode())


# ---------------------------------------------------------------------- tenants
def test_show_redacts_every_secret_and_keeps_the_rest() -> None:
    doc = json.loads(registry_document())
    doc["tenants"]["demo"]["meta"]["previous_app_secret"] = "old-secret"
    doc["tenants"]["demo"]["twilio"]["previous_auth_token"] = ""
    shown = redact(doc)
    text = json.dumps(shown)
    for secret in (
        "local-app-secret",
        "local-verify-token",
        "local-access-token",
        TWILIO_TOKEN,
        "old-secret",
    ):
        assert secret not in text
    meta, twilio = shown["tenants"]["demo"]["meta"], shown["tenants"]["demo"]["twilio"]
    assert meta["app_secret"] == meta["previous_app_secret"] == meta["verify_token"] == REDACTED
    assert twilio["auth_token"] == REDACTED
    assert twilio["previous_auth_token"] == ""  # empty: no rotation under way, and that shows
    assert twilio["account_sid"] == TWILIO_ACCOUNT
    assert meta["phone_numbers"] == LOCAL_TENANT["meta"]["phone_numbers"]  # type: ignore[index]


def test_a_document_is_valid_only_when_every_tenant_is_usable() -> None:
    assert check_document(registry_document()) == {"valid": True, "tenants": ["demo"], "problems": []}
    broken = json.loads(registry_document())
    broken["tenants"]["acme"] = {"meta": {"verify_token": "v"}}
    checked = check_document(json.dumps(broken))
    assert checked["valid"] is False
    assert checked["tenants"] == ["demo"]
    assert checked["problems"] == [
        {"tenant": "acme", "path": "$.tenants.acme.meta.app_secret", "problem": "is required"}
    ]
    unusable = check_document("{not json")
    assert (unusable["valid"], unusable["reason"]) == (False, "not_json")


# ---------------------------------------------------------------------- dead letters
def test_a_dead_letter_shows_its_tenant_and_kind_only() -> None:
    inbound = {
        "schema": "crossroute.inbound/1",
        "tenant": "demo",
        "kind": "twilio.message",
        "form": "From=%2B1650",
    }
    assert describe_body(json.dumps(inbound)) == ("demo", "twilio.message")
    request = {"tenant": "demo", "idempotency_key": "k", "to": {"phone": "+16505551234"}, "text": "hi"}
    assert describe_body(json.dumps(request)) == ("demo", "send_request")
    event = {"detail-type": "SendMessage", "detail": {"tenant": "acme", "to": {"bsuid": "US.1"}}}
    assert describe_body(json.dumps(event)) == ("acme", "event:SendMessage")
    follow_up = {"crossroute:settle": {}, "then": json.dumps(request)}
    assert describe_body(json.dumps(follow_up)) == ("demo", "settlement")
    job = MediaJob("demo", "meta", "wamid.1", 0, "image", "image/jpeg", "media/demo/meta/ab/0.jpg", "m1")
    assert describe_body(job.body()) == ("demo", "media:image")
    assert describe_body("not json") == (None, "unreadable")


# ---------------------------------------------------------------------- export
def test_the_csv_export_flattens_a_contact_into_import_columns() -> None:
    contact = {
        "id": "c1",
        "external_id": "crm-1",
        "phones": [
            {"e164": "+15550000001", "status": "stale"},
            {"e164": "+15550000002", "status": "current"},
        ],
        "bsuids": [{"id": "US.2", "status": "current"}],
        "name": "Ana",
        "sms_opted_out": True,
        "whatsapp_opt_in": {"value": True, "at": "2026-01-01T00:00:00+00:00", "source": "business.record"},
        "whatsapp": {"window_open_until": "2026-01-02T00:00:00+00:00"},
        "merged_from": ["c0"],
    }
    row = flat(contact)
    assert row["whatsapp_opt_in"] == "true"  # R15: the value, so the CSV imports as it is
    assert list(row) == list(CSV_COLUMNS)
    assert (row["phone"], row["bsuid"], row["sms_opted_out"], row["marketing_opted_out"]) == (
        "+15550000002",
        "US.2",
        "true",
        "false",
    )
    assert row["phones"] == "+15550000001:stale +15550000002:current"
    assert row["merged_from"] == "c0"


# ---------------------------------------------------------------------- the local stack's side
def test_sigv4_scope_names_the_credential_never_the_signature() -> None:
    header = (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/execute-api/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc123"
    )
    assert sigv4_scope(header) == {
        "credential": "AKIDEXAMPLE/20260101/us-east-1/execute-api/aws4_request",
        "signed_headers": "host;x-amz-date",
    }
    assert sigv4_scope(None) is None
    assert sigv4_scope("Bearer abc") is None


def test_the_registered_template_holds_the_outputs_and_parameters() -> None:
    doc = template(
        {"ApiUrl": "http://127.0.0.1:3000", "CustomDomainTarget": ""}, {"PublicBaseUrl": "http://x"}
    )
    assert doc["Outputs"] == {"ApiUrl": {"Value": "http://127.0.0.1:3000"}}
    assert doc["Parameters"] == {"PublicBaseUrl": {"Type": "String", "Default": "http://x"}}
    assert [r["Type"] for r in doc["Resources"].values()] == ["AWS::CloudFormation::WaitConditionHandle"]


def test_a_timeline_reads_as_messages_identity_changes_and_decisions() -> None:
    import io

    from rich.console import Console

    from crossroute_cli.render import timeline_table

    items = [
        {"kind": "decision", "at": "2026-11-01T10:00:05+00:00", "channels": [WA_NO, SMS_YES]},
        {"kind": "other", "at": "2026-11-01T10:00:04+00:00"},
        {
            "kind": "message",
            "at": "2026-11-01T10:00:00+00:00",
            "direction": "out",
            "channel": "whatsapp",
            "text": "Your order has shipped",
            "status": "failed",
            "errors": [{"code": 131026}],
        },
        {"kind": "identity", "at": "2026-11-01T09:59:00+00:00", "change": "linked", "source": "meta.message",
         "detail": {"key": "bsuid"}},
    ]  # fmt: skip
    screen = io.StringIO()
    timeline_table(Console(file=screen, width=200), "c1", items)
    text = screen.getvalue()
    assert "timeline of c1, newest first" in text
    assert "2026-11-01 10:00:05 │ routing decision" in text
    assert "whatsapp  no   whatsapp.unknown_bsuid: no customer holds this BSUID" in text
    assert "sms       yes  sms.current_phone" in text
    assert "send request" in text
    assert "message out" in text and "Your order has shipped [failed] error 131026" in text
    assert "identity: linked" in text and "key=bsuid" in text


def test_contact_data_is_shown_as_written_never_as_markup() -> None:
    import io

    from rich.console import Console

    from crossroute_cli.render import contact_table

    screen = io.StringIO()
    contact = {
        "id": "c1",
        "name": "[bold red]Ana[/bold red]",
        "phones": [{"e164": "+15550000001", "status": "current"}],
    }
    contact_table(Console(file=screen, width=200), contact)
    assert "[bold red]Ana[/bold red]" in screen.getvalue()
    assert "+15550000001 (current)" in screen.getvalue()
