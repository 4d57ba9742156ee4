"""Twilio callbacks are verified against the public URL, resolved to a tenant and queued raw."""

from __future__ import annotations

import json

import pytest
from twilio.request_validator import RequestValidator

from crossroute.inbound_queue import QueuedEvent
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import twilio
from crossroute.webhooks.errors import (
    BadSignature,
    MalformedRequest,
    PayloadTooLarge,
    UnknownChannel,
    UnsupportedMediaType,
    WebhookRejected,
)
from tests.fakes import RecordingInboundQueue
from tests.support import LOCAL_TENANT, TWILIO_ACCOUNT, fixture_bytes, registry_document, twilio_signature

REGISTRY = TenantRegistry.from_json(registry_document())
FORM = "application/x-www-form-urlencoded"
URL = "http://127.0.0.1:3000/webhooks/twilio"
STATUS_URL = "http://127.0.0.1:3000/webhooks/twilio/status"


def _accept(
    raw: bytes,
    callback: twilio.Callback = twilio.INBOUND,
    *,
    url: str = URL,
    content_type: str = FORM,
    registry: TenantRegistry = REGISTRY,
    signature: str | None = "",
) -> tuple[QueuedEvent | None, RecordingInboundQueue]:
    queue = RecordingInboundQueue()
    sig = twilio_signature(url, raw) if signature == "" else signature
    event = twilio.accept(
        registry, queue, callback, raw=raw, content_type=content_type, url=url, signature=sig
    )
    return event, queue


@pytest.mark.parametrize(
    ("fixture", "callback", "url", "kind"),
    [
        ("twilio_sms_inbound.form", twilio.INBOUND, URL, "twilio.message"),
        ("twilio_sms_stop.form", twilio.INBOUND, URL, "twilio.message"),
        ("twilio_whatsapp_inbound_bsuid.form", twilio.INBOUND, URL, "twilio.message"),
        ("twilio_status_undelivered.form", twilio.STATUS, STATUS_URL, "twilio.status"),
    ],
)
def test_signed_callbacks_are_queued_with_the_raw_form(
    fixture: str, callback: twilio.Callback, url: str, kind: str
) -> None:
    raw = fixture_bytes(fixture)
    event, queue = _accept(raw, callback, url=url)
    assert queue.events == [event]
    body = json.loads(queue.events[0].body)
    assert (body["tenant"], body["kind"], body["form"]) == ("demo", kind, raw.decode())


def test_whatsapp_via_twilio_groups_by_the_bsuid_and_sms_by_the_phone() -> None:
    wa, _ = _accept(fixture_bytes("twilio_whatsapp_inbound_bsuid.form"))
    sms, _ = _accept(fixture_bytes("twilio_sms_inbound.form"))
    stop, _ = _accept(fixture_bytes("twilio_sms_stop.form"))
    assert wa and sms and stop
    assert sms.group_id == stop.group_id != wa.group_id
    assert "US.20938475610293847" not in wa.group_id and "16505551234" not in sms.group_id


def test_a_signature_for_the_inbound_url_does_not_verify_on_the_status_url() -> None:
    raw = fixture_bytes("twilio_status_undelivered.form")
    with pytest.raises(BadSignature):
        _accept(raw, twilio.STATUS, url=STATUS_URL, signature=twilio_signature(URL, raw))


def test_a_number_nobody_registered_is_unknown_and_nothing_is_queued() -> None:
    raw = fixture_bytes("twilio_sms_inbound.form").replace(b"To=%2B15550100002", b"To=%2B15559999999")
    with pytest.raises(UnknownChannel):
        _accept(raw)


def test_a_messaging_service_names_the_tenant() -> None:
    tenant = {**LOCAL_TENANT, "twilio": {**LOCAL_TENANT["twilio"], "messaging_service_sids": ["MG123"]}}
    registry = TenantRegistry.from_json(registry_document(demo=tenant))
    raw = fixture_bytes("twilio_sms_inbound.form").replace(b"To=%2B15550100002", b"To=%2B15559999999")
    raw += b"&MessagingServiceSid=MG123"
    event, _ = _accept(raw, registry=registry)
    assert event and json.loads(event.body)["tenant"] == "demo"


def test_one_tenants_token_cannot_post_for_another_tenants_number() -> None:
    other = {"twilio": {"account_sid": LOCAL_TENANT["twilio"]["account_sid"], "auth_token": "other-token"}}
    registry = TenantRegistry.from_json(registry_document(demo=LOCAL_TENANT, other=other))
    raw = fixture_bytes("twilio_sms_inbound.form")
    with pytest.raises(UnknownChannel):
        _accept(raw, registry=registry, signature=twilio_signature(URL, raw, "other-token"))


@pytest.mark.parametrize(
    ("raw", "content_type", "signature", "error"),
    [
        (b"", FORM, "", MalformedRequest),
        (b"Body=hi&&x", FORM, "", MalformedRequest),
        (b"Body=%ff", FORM, "", MalformedRequest),
        (b"\xff\xfe", FORM, "", MalformedRequest),
        (b"AccountSid=AC00000000000000000000000000000000&Body=hi", FORM, "", MalformedRequest),
        (b'{"MessageSid": "SM1"}', "application/json", "", UnsupportedMediaType),
        (b"MessageSid=SM1", "", "", UnsupportedMediaType),
        (b"MessageSid=SM1&Body=" + b"x" * twilio.MAX_BODY_BYTES, FORM, "", PayloadTooLarge),
        (b"MessageSid=SM1", FORM, None, BadSignature),
        (b"MessageSid=SM1", FORM, "bm90IGEgc2lnbmF0dXJl", BadSignature),
    ],
    ids=[
        "empty",
        "broken-form",
        "non-utf8-escape",
        "non-utf8-bytes",
        "missing-params",
        "json",
        "no-content-type",
        "oversized",
        "no-signature",
        "bad-signature",
    ],
)
def test_bad_input_is_refused_and_nothing_is_queued(
    raw: bytes, content_type: str, signature: str | None, error: type[WebhookRejected]
) -> None:
    queue = RecordingInboundQueue()
    sig = twilio_signature(URL, raw) if signature == "" and raw.isascii() and b"&&" not in raw else signature
    with pytest.raises(error):
        twilio.accept(
            REGISTRY, queue, twilio.INBOUND, raw=raw, content_type=content_type, url=URL, signature=sig
        )
    assert queue.events == []


def test_repeated_parameters_are_verified_as_twilio_signs_them() -> None:
    """Twilio signs every value of a repeated name (sorted); keeping only the last one refused these."""
    raw = (
        b"MessageSid=SM1&AccountSid=AC00000000000000000000000000000000&From=%2B16505551234"
        b"&To=%2B15550100002&NumMedia=2&MediaUrl=https%3A%2F%2Fx%2Fb&MediaUrl=https%3A%2F%2Fx%2Fa&Body="
    )
    event, queue = _accept(raw)  # signed by tests.support.twilio_signature: every value
    assert event is not None and queue.events == [event]
    last_only = {"MessageSid": "SM1", "AccountSid": TWILIO_ACCOUNT, "From": "+16505551234"}
    last_only |= {"To": "+15550100002", "NumMedia": "2", "MediaUrl": "https://x/a", "Body": ""}
    forged = RequestValidator("local-twilio-token").compute_signature(URL, last_only)
    with pytest.raises(BadSignature):
        _accept(raw, signature=forged)


def _status_without_our_number() -> bytes:
    form = fixture_bytes("twilio_status_undelivered.form").decode()
    return "&".join(p for p in form.strip().split("&") if not p.startswith("From=")).encode()


def test_a_status_callback_naming_only_the_account_resolves_to_its_one_tenant() -> None:
    event, queue = _accept(_status_without_our_number(), twilio.STATUS, url=STATUS_URL)
    assert event is not None and json.loads(event.body)["tenant"] == "demo" and queue.events == [event]


def test_an_account_shared_by_two_tenants_names_neither_and_an_inbound_message_needs_our_number() -> None:
    twin = {
        "twilio": {
            "account_sid": TWILIO_ACCOUNT,
            "auth_token": "local-twilio-token",
            "sms_numbers": ["+15550109998"],
        }
    }
    shared = TenantRegistry.from_json(registry_document(demo=LOCAL_TENANT, twin=twin))
    assert {t.id for t in shared.tenants} == {"demo", "twin"}
    with pytest.raises(UnknownChannel):
        _accept(_status_without_our_number(), twilio.STATUS, url=STATUS_URL, registry=shared)
    inbound = fixture_bytes("twilio_sms_inbound.form").decode()
    without_to = "&".join(p for p in inbound.strip().split("&") if not p.startswith("To=")).encode()
    with pytest.raises((UnknownChannel, MalformedRequest)):
        _accept(without_to)
