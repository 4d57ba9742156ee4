"""Webhook authentication: Meta's X-Hub-Signature-256 and Twilio's X-Twilio-Signature."""

from __future__ import annotations

import json

import pytest

from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta, twilio
from crossroute.webhooks.errors import BadSignature, UnknownChannel, WrongVerifyToken
from crossroute.webhooks.http import raw_body
from tests.fakes import RecordingInboundQueue
from tests.support import (
    APP_SECRET,
    LOCAL_TENANT,
    TWILIO_ACCOUNT,
    TWILIO_TOKEN,
    b64,
    fixture_bytes,
    meta_signature,
    registry_document,
    twilio_signature,
)

REGISTRY = TenantRegistry.from_json(registry_document())


# ---------------------------------------------------------------- Meta


def test_meta_signature_over_the_raw_bytes_is_accepted() -> None:
    raw = fixture_bytes("meta_text_bsuid_only.json")
    assert meta.verified_app_secret(REGISTRY, raw, meta_signature(raw)) == APP_SECRET


def test_meta_signature_of_re_serialised_json_does_not_match_the_raw_bytes() -> None:
    raw = fixture_bytes("meta_text_bsuid_only.json")
    reserialised = json.dumps(json.loads(raw)).encode()
    assert reserialised != raw
    with pytest.raises(BadSignature):
        meta.verified_app_secret(REGISTRY, raw, meta_signature(reserialised))


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=abc", "deadbeef", "sha256=" + "0" * 64],
    ids=["absent", "empty", "no-digest", "wrong-algorithm", "no-prefix", "wrong-digest"],
)
def test_meta_signature_missing_or_wrong_is_refused(header: str | None) -> None:
    with pytest.raises(BadSignature):
        meta.verified_app_secret(REGISTRY, b'{"object":"whatsapp_business_account"}', header)


def test_meta_signature_with_another_apps_secret_is_refused() -> None:
    raw = fixture_bytes("meta_text_bsuid_only.json")
    with pytest.raises(BadSignature):
        meta.verified_app_secret(REGISTRY, raw, meta_signature(raw, "someone-elses-secret"))


def test_meta_signature_hex_case_does_not_matter() -> None:
    raw = b"{}"
    assert meta.verified_app_secret(REGISTRY, raw, meta_signature(raw).upper().replace("SHA256=", "sha256="))


def test_meta_signature_picks_the_matching_app_among_tenants() -> None:
    other = {"meta": {"app_secret": "second-app", "verify_token": "t2", "waba_id": "200"}}
    registry = TenantRegistry.from_json(registry_document(demo=LOCAL_TENANT, other=other))
    raw = b'{"entry": []}'
    assert meta.verified_app_secret(registry, raw, meta_signature(raw, "second-app")) == "second-app"


def test_handshake_echoes_the_challenge_for_our_token() -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": "local-verify-token",
        "hub.challenge": "1158201444",
    }
    assert meta.handshake(REGISTRY, params) == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "local-verify-token", "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
    ids=["wrong-token", "wrong-mode", "no-token"],
)
def test_handshake_refuses_anything_else(params: dict[str, str]) -> None:
    with pytest.raises(WrongVerifyToken):
        meta.handshake(REGISTRY, params)


# ---------------------------------------------------------------- Twilio

TWILIO_VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}


def _registry_with_token(token: str) -> TenantRegistry:
    tenant = {**LOCAL_TENANT, "twilio": {**LOCAL_TENANT["twilio"], "auth_token": token}}
    return TenantRegistry.from_json(registry_document(demo=tenant))


def test_twilio_official_test_vector() -> None:
    registry = _registry_with_token("12345")
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert (
        twilio.verified_auth_token(registry, url, TWILIO_VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        == "12345"
    )


def test_twilio_official_vector_fails_with_one_parameter_changed() -> None:
    registry = _registry_with_token("12345")
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    tampered = {**TWILIO_VECTOR_PARAMS, "Digits": "1235"}
    with pytest.raises(BadSignature):
        twilio.verified_auth_token(registry, url, tampered, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_twilio_url_is_public_base_plus_raw_path_and_query() -> None:
    assert twilio.public_url("https://hooks.example.com", "/webhooks/twilio", "") == (
        "https://hooks.example.com/webhooks/twilio"
    )
    # A named stage is part of rawPath; a trailing slash on the base is not doubled.
    assert twilio.public_url(
        "https://abc.execute-api.eu-west-1.amazonaws.com/", "/prod/webhooks/twilio", ""
    ) == ("https://abc.execute-api.eu-west-1.amazonaws.com/prod/webhooks/twilio")
    # The raw query string is kept byte for byte (order and encoding matter to the signature).
    assert twilio.public_url("https://h.example", "/webhooks/twilio", "b=2&a=%2B1") == (
        "https://h.example/webhooks/twilio?b=2&a=%2B1"
    )


def test_twilio_signature_with_query_string_verifies_only_with_that_query() -> None:
    raw = fixture_bytes("twilio_sms_inbound.form")
    params = twilio.parse_form(raw, "application/x-www-form-urlencoded")
    url = twilio.public_url("https://hooks.example.com", "/webhooks/twilio", "tenant=demo")
    signature = twilio_signature(url, raw)
    assert twilio.verified_auth_token(REGISTRY, url, params, signature)
    with pytest.raises(BadSignature):
        twilio.verified_auth_token(REGISTRY, url.split("?")[0], params, signature)


def test_twilio_signed_with_explicit_443_port_still_verifies() -> None:
    raw = fixture_bytes("twilio_sms_inbound.form")
    params = twilio.parse_form(raw, "application/x-www-form-urlencoded")
    signature = twilio_signature("https://hooks.example.com:443/webhooks/twilio", raw)
    assert twilio.verified_auth_token(
        REGISTRY, "https://hooks.example.com/webhooks/twilio", params, signature
    )


def test_twilio_blank_parameters_are_part_of_the_signature() -> None:
    raw = fixture_bytes("twilio_sms_inbound.form")  # ToCity=, FromZip=, ... are blank
    params = twilio.parse_form(raw, "application/x-www-form-urlencoded")
    assert params["ToCity"] == "" and params["FromZip"] == ""
    url = "https://hooks.example.com/webhooks/twilio"
    signature = twilio_signature(url, raw)
    assert twilio.verified_auth_token(REGISTRY, url, params, signature)
    without_blanks = {k: v for k, v in params.items() if v}
    with pytest.raises(BadSignature):
        twilio.verified_auth_token(REGISTRY, url, without_blanks, signature)


def test_twilio_signature_from_an_internal_url_does_not_verify() -> None:
    raw = fixture_bytes("twilio_sms_inbound.form")
    params = twilio.parse_form(raw, "application/x-www-form-urlencoded")
    signature = twilio_signature("https://internal-alb.local/webhooks/twilio", raw)
    with pytest.raises(BadSignature):
        twilio.verified_auth_token(REGISTRY, "https://hooks.example.com/webhooks/twilio", params, signature)


def test_base64_body_from_api_gateway_is_decoded_to_the_exact_bytes() -> None:
    raw = fixture_bytes("twilio_whatsapp_inbound_bsuid.form")
    assert raw_body({"body": b64(raw), "isBase64Encoded": True}) == raw
    assert raw_body({"body": raw.decode(), "isBase64Encoded": False}) == raw
    assert raw_body({"isBase64Encoded": False}) == b""


# ---------------------------------------------------------------- rotation: the previous secret verifies too

OTHER_PNID = "200000000000001"


def _rotating(
    *, meta_previous: str = "", twilio_previous: str = "", **others: dict[str, object]
) -> TenantRegistry:
    """The local tenant with its Meta app secret and Twilio auth token mid-rotation, beside ``others``."""
    demo = {
        **LOCAL_TENANT,
        "meta": {**LOCAL_TENANT["meta"], "previous_app_secret": meta_previous},
        "twilio": {**LOCAL_TENANT["twilio"], "previous_auth_token": twilio_previous},
    }
    return TenantRegistry.from_json(registry_document(demo=demo, **others))


def test_meta_during_a_rotation_both_the_current_and_the_previous_app_secret_verify() -> None:
    registry = _rotating(meta_previous="old-app-secret")
    raw = fixture_bytes("meta_text_bsuid_only.json")
    assert meta.verified_app_secret(registry, raw, meta_signature(raw, APP_SECRET)) == APP_SECRET
    assert meta.verified_app_secret(registry, raw, meta_signature(raw, "old-app-secret")) == "old-app-secret"
    with pytest.raises(BadSignature):
        meta.verified_app_secret(registry, raw, meta_signature(raw, "older-app-secret"))


def test_meta_once_the_rotation_ends_the_previous_app_secret_is_refused() -> None:
    raw = fixture_bytes("meta_text_bsuid_only.json")
    for registry in (_rotating(meta_previous=""), REGISTRY):
        with pytest.raises(BadSignature):
            meta.verified_app_secret(registry, raw, meta_signature(raw, "old-app-secret"))
        with pytest.raises(BadSignature):  # an empty previous secret is no secret at all
            meta.verified_app_secret(registry, raw, meta_signature(raw, ""))


def test_meta_a_post_signed_with_the_previous_secret_is_queued_for_its_tenant() -> None:
    registry = _rotating(meta_previous="old-app-secret")
    raw = fixture_bytes("meta_text_bsuid_only.json")
    queue = RecordingInboundQueue()
    meta.accept(
        registry,
        queue,
        raw=raw,
        content_type="application/json",
        signature=meta_signature(raw, "old-app-secret"),
    )
    assert [json.loads(e.body)["tenant"] for e in queue.events] == ["demo"]


def test_meta_another_apps_previous_secret_does_not_reach_this_tenant() -> None:
    other = {
        "meta": {
            "app_secret": "other-app",
            "previous_app_secret": "other-old-app",
            "verify_token": "t",
            "phone_numbers": [{"phone_number_id": OTHER_PNID}],
        }
    }
    registry = _rotating(meta_previous="old-app-secret", other=other)
    raw = fixture_bytes("meta_text_bsuid_only.json")  # for the demo tenant's number
    with pytest.raises(UnknownChannel):
        meta.accept(
            registry,
            RecordingInboundQueue(),
            raw=raw,
            content_type="application/json",
            signature=meta_signature(raw, "other-old-app"),
        )


def test_twilio_during_a_rotation_both_the_current_and_the_previous_auth_token_verify() -> None:
    registry = _rotating(twilio_previous="old-twilio-token")
    raw = fixture_bytes("twilio_sms_inbound.form")
    params = twilio.parse_form(raw, "application/x-www-form-urlencoded")
    url = "https://hooks.example.com/webhooks/twilio"
    for token in (TWILIO_TOKEN, "old-twilio-token"):
        assert twilio.verified_auth_token(registry, url, params, twilio_signature(url, raw, token)) == token
    for registry_now in (registry, _rotating(twilio_previous=""), REGISTRY):
        with pytest.raises(BadSignature):
            twilio.verified_auth_token(registry_now, url, params, twilio_signature(url, raw, "older-token"))
    with pytest.raises(BadSignature):
        twilio.verified_auth_token(REGISTRY, url, params, twilio_signature(url, raw, "old-twilio-token"))


def test_twilio_a_callback_signed_with_the_previous_token_is_queued_for_its_tenant() -> None:
    other = {
        "twilio": {
            "account_sid": TWILIO_ACCOUNT,
            "auth_token": "other-token",
            "previous_auth_token": "other-old",
            "sms_numbers": ["+15550109999"],
        }
    }
    registry = _rotating(twilio_previous="old-twilio-token", other=other)
    raw = fixture_bytes("twilio_sms_inbound.form")  # to the demo tenant's number
    url = "https://hooks.example.com/webhooks/twilio"
    queue = RecordingInboundQueue()
    form = "application/x-www-form-urlencoded"
    event = twilio.accept(
        registry,
        queue,
        twilio.INBOUND,
        raw=raw,
        content_type=form,
        url=url,
        signature=twilio_signature(url, raw, "old-twilio-token"),
    )
    assert json.loads(event.body)["tenant"] == "demo" and len(queue.events) == 1
    with pytest.raises(UnknownChannel):  # another tenant's previous token cannot post for this one
        twilio.accept(
            registry,
            queue,
            twilio.INBOUND,
            raw=raw,
            content_type=form,
            url=url,
            signature=twilio_signature(url, raw, "other-old"),
        )
