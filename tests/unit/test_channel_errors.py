"""What a provider's error means for routing: Meta's and Twilio's tables (docs/providers.md, "Error codes"),
and failures without an answer (sent nothing: retry; may have been sent: unknown)."""

from __future__ import annotations

import socket

import pytest
import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from crossroute.channels import Outbound
from crossroute.channels.errors import (
    FALLBACK_CODES,
    LIMITED_RETRY_CODES,
    META_CODES,
    TWILIO_CODES,
    error_code,
    is_fallback,
    meta_outcome,
    safe_title,
    transport_outcome,
    twilio_outcome,
)
from crossroute.channels.meta import whatsapp_payload
from crossroute.channels.twilio_sms import sms_arguments

# ---------------------------------------------------------------- Meta (docs/providers.md error codes)

META_SPEC = [
    (130429, "retry", "number's throughput exceeded"),
    (131056, "retry", "too many messages to one user"),
    (131000, "retry", "transient service error"),
    (131016, "retry", "transient service error"),
    (1, "retry", "transient service error"),
    (2, "retry", "transient service error"),
    (131047, "fallback", "more than 24 h since the user's last message"),
    (131026, "fallback", "undeliverable to that user"),
    (131049, "fallback", "held back for ecosystem health: the router judges the content"),
    (131062, "fallback", "BSUID recipient not supported (auth templates)"),
    (131050, "permanent", "user stopped marketing messages"),
    (131051, "permanent", "unsupported message type"),
    (100, "permanent", "invalid parameter"),
    (190, "permanent", "token problem"),
    (368, "permanent", "policy problem"),
    (131031, "permanent", "account problem"),
    (131042, "permanent", "payment problem"),
    *((code, "permanent", "template problem") for code in range(132000, 132017)),
]


@pytest.mark.parametrize(("code", "outcome", "meaning"), META_SPEC, ids=[str(c) for c, _, _ in META_SPEC])
@pytest.mark.parametrize("http_status", [400, 429, 500])
def test_a_listed_meta_code_decides_whatever_the_http_status(
    code: int, outcome: str, meaning: str, http_status: int
) -> None:
    assert meta_outcome(code, http_status) == outcome


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(4, "retry"), (80007, "retry"), (131048, "retry"), (131057, "retry"), (130472, "fallback")],
    ids=["app-rate-limit", "waba-rate-limit", "spam-rate-limit", "maintenance", "marketing-experiment"],
)
def test_meta_codes_beyond_the_spec_table_from_metas_error_page(code: int, outcome: str) -> None:
    assert meta_outcome(code, 400) == outcome


@pytest.mark.parametrize(
    ("code", "http_status", "outcome"),
    [
        (None, 429, "retry"),
        (999999, 429, "retry"),
        (None, 400, "permanent"),
        (131053, 400, "permanent"),  # media upload error: a content problem, not an unreachable user
        (131021, 400, "permanent"),  # recipient cannot be the sender
        (0, 401, "permanent"),
        (10, 403, "permanent"),
        (None, 500, "unknown"),
        (None, 502, "unknown"),
        (999999, 503, "unknown"),
        (None, 0, "unknown"),
        (None, 302, "unknown"),
    ],
)
def test_an_unlisted_meta_code_goes_by_http_status(code: int | None, http_status: int, outcome: str) -> None:
    assert meta_outcome(code, http_status) == outcome


def test_fallback_codes_are_exactly_the_meta_codes_that_fall_back() -> None:
    assert frozenset({131026, 131047, 131049, 131062}) <= FALLBACK_CODES
    assert frozenset(c for c, o in META_CODES.items() if o == "fallback") == FALLBACK_CODES
    assert {131026, 131047, 131049, 131062, 130472} == FALLBACK_CODES


@pytest.mark.parametrize("code", [131026, 131047, 131049, 131062, 130472])
def test_a_failed_status_with_a_fallback_code_means_try_sms(code: int) -> None:
    assert is_fallback(code)


@pytest.mark.parametrize("code", [None, 131050, 131051, 131053, 130429, 131000, 100, 132001, 21610])
def test_other_codes_do_not_fall_back(code: int | None) -> None:
    assert not is_fallback(code)


# ---------------------------------------------------------------- Twilio (docs/providers.md error codes)

TWILIO_SPEC = [
    (21610, "permanent", "opted out"),
    (21211, "permanent", "invalid number"),
    (21614, "permanent", "not mobile"),
    (30005, "permanent", "unknown handset"),
    (30006, "permanent", "landline or unreachable carrier"),
    (20429, "retry", "too many requests: back off"),
    (30001, "retry", "queue overflow: back off"),
    (21611, "retry", "sender queue full: back off"),
    (63018, "retry", "channel rate limit: back off"),
    (30003, "retry", "unreachable handset: a few times"),
    (30008, "retry", "unknown error: a few times"),
    (63016, "fallback", "WhatsApp outside the 24 h window"),
    (63003, "fallback", "not a WhatsApp user (channel could not find the To address)"),
    (63024, "fallback", "invalid WhatsApp recipient (receiver incapable)"),
]


@pytest.mark.parametrize("code", [63016, 63003, 63024])
def test_a_failed_twilio_whatsapp_status_with_a_fallback_code_means_try_sms(code: int) -> None:
    assert is_fallback(code, "twilio")
    assert not is_fallback(code)  # not a Meta code


@pytest.mark.parametrize("code", [None, 21610, 63018, 30008, 131026])
def test_other_twilio_codes_do_not_fall_back(code: int | None) -> None:
    assert not is_fallback(code, "twilio")


@pytest.mark.parametrize(("code", "outcome", "meaning"), TWILIO_SPEC, ids=[str(c) for c, _, _ in TWILIO_SPEC])
@pytest.mark.parametrize("http_status", [400, 429, 500])
def test_a_listed_twilio_code_decides_whatever_the_http_status(
    code: int, outcome: str, meaning: str, http_status: int
) -> None:
    assert twilio_outcome(code, http_status) == outcome


@pytest.mark.parametrize(
    ("code", "http_status", "outcome"),
    [
        (None, 429, "retry"),
        (20003, 401, "permanent"),  # authentication
        (21408, 400, "permanent"),  # region not enabled
        (None, 404, "permanent"),
        (None, 500, "unknown"),
        (20500, 500, "unknown"),
        (None, 503, "unknown"),
    ],
)
def test_an_unlisted_twilio_code_goes_by_http_status(
    code: int | None, http_status: int, outcome: str
) -> None:
    assert twilio_outcome(code, http_status) == outcome


def test_twilio_codes_to_retry_only_a_few_times() -> None:
    assert {30003, 30008} == LIMITED_RETRY_CODES
    assert all(TWILIO_CODES[code] == "retry" for code in LIMITED_RETRY_CODES)


@pytest.mark.parametrize(
    ("value", "code"),
    [(131026, 131026), ("131026", 131026), (None, None), ("x", None), (True, None), (1.5, None)],
)
def test_error_codes_are_read_as_ints(value: object, code: int | None) -> None:
    assert error_code(value) == code


# ---------------------------------------------------------------- no answer at all


def _refused() -> NewConnectionError:
    return NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(_refused(), id="refused"),
        pytest.param(NameResolutionError("graph.facebook.com", None, socket.gaierror()), id="dns"),
        pytest.param(ConnectTimeoutError(None, "connect timeout=2"), id="connect-timeout"),
        pytest.param(MaxRetryError(None, "/", _refused()), id="max-retry-wrapped"),
        pytest.param(
            requests.exceptions.ConnectionError(MaxRetryError(None, "/", _refused())),
            id="requests-connection-error",
        ),
        pytest.param(
            requests.exceptions.ConnectTimeout(
                MaxRetryError(None, "/", ConnectTimeoutError(None, "connect timeout=10"))
            ),
            id="requests-connect-timeout",
        ),
    ],
)
def test_a_connection_that_was_never_made_sent_nothing_so_retry(error: BaseException) -> None:
    assert transport_outcome(error) == "retry"


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ReadTimeoutError(None, "/", "read timeout=10"), id="read-timeout"),
        pytest.param(ProtocolError("Connection aborted.", ConnectionResetError()), id="dropped"),
        pytest.param(SSLError("EOF occurred in violation of protocol"), id="tls"),
        pytest.param(requests.exceptions.ReadTimeout(ReadTimeoutError(None, "/", "t")), id="requests-read"),
        pytest.param(
            requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())),
            id="requests-dropped",
        ),
        pytest.param(ConnectionResetError(), id="bare-reset"),
    ],
)
def test_a_failure_after_connecting_may_have_sent_it_so_unknown(error: BaseException) -> None:
    assert transport_outcome(error) == "unknown"


# ---------------------------------------------------------------- titles never carry identifiers


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("(#131026) Message Undeliverable", "(#131026) Message Undeliverable"),
        (
            "Unable to create record: The 'To' number +15005550001 is not a valid phone number.",
            "Unable to create record: The 'To' number … is not a valid phone number.",
        ),
        ("Recipient US.13491208655302741918 is not reachable", "Recipient … is not reachable"),
        ("Parent US.ENT.99887766 unknown", "Parent … unknown"),
        ("call +1 (650) 555-1234 now", "call … now"),
        (None, ""),
        ({"x": 1}, ""),
    ],
)
def test_provider_messages_lose_phone_numbers_and_bsuids(text: object, title: str) -> None:
    assert safe_title(text) == title


def test_titles_are_bounded() -> None:
    assert len(safe_title("x" * 1000)) == 200


# ---------------------------------------------------------------- requests that must never be sent


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (Outbound("whatsapp", "100000000000001", to="US.13491208655302741918", text="hi"), "recipient"),
        (Outbound("whatsapp", "100000000000001", to="16505551234", text="hi"), "E.164"),
        (Outbound("whatsapp", "100000000000001", recipient="+16505551234", text="hi"), "BSUID"),
        (Outbound("whatsapp", "100000000000001", text="hi"), "no recipient"),
        (Outbound("whatsapp", "100000000000001", to="+16505551234"), "exactly one"),
        (Outbound("sms", "100000000000001", to="+16505551234", text="hi"), "not a WhatsApp"),
        (Outbound("whatsapp", "", to="+16505551234", text="hi"), "phone_number_id"),
    ],
    ids=["bsuid-in-to", "digits-in-to", "phone-in-recipient", "nobody", "no-content", "sms", "no-sender"],
)
def test_whatsapp_messages_that_are_programming_errors(message: Outbound, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        whatsapp_payload(message)


def test_a_parent_bsuid_is_a_valid_recipient() -> None:
    payload = whatsapp_payload(Outbound("whatsapp", "1", recipient="US.ENT.123", text="hi"))
    assert payload["recipient"] == "US.ENT.123"


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (Outbound("sms", "+15550100002", to="16505551234", text="hi"), "E.164"),
        (Outbound("sms", "+15550100002", recipient="US.1", text="hi"), "E.164"),
        (Outbound("sms", "+15550100002", to="+16505551234"), "text"),
        (Outbound("whatsapp", "+15550100002", to="+16505551234", text="hi"), "not an SMS"),
        (Outbound("sms", "", to="+16505551234", text="hi"), "sender"),
    ],
    ids=["digits", "bsuid", "no-text", "whatsapp", "no-sender"],
)
def test_sms_messages_that_are_programming_errors(message: Outbound, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        sms_arguments(message)


def test_sms_from_a_messaging_service_or_a_number() -> None:
    number = sms_arguments(Outbound("sms", "+15550100002", to="+16505551234", text="hi"))
    service = sms_arguments(
        Outbound("sms", "MG" + "0" * 32, to="+16505551234", text="hi", status_callback="https://x/y")
    )
    assert number == {"to": "+16505551234", "from_": "+15550100002", "body": "hi"}
    assert service == {
        "to": "+16505551234",
        "messaging_service_sid": "MG" + "0" * 32,
        "body": "hi",
        "status_callback": "https://x/y",
    }
