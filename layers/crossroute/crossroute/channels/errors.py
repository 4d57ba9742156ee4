"""What a provider's answer means for the router: the one place that reads Meta's and Twilio's error tables
(summarised in ``docs/providers.md``). Pure and import-light; the clients and the router both use it.

Branch on the numeric ``code`` only (Meta deprecates titles); the HTTP status decides for codes not listed:
429 is throttling (retry), any other 4xx was refused as sent (permanent), and a 5xx or a missing answer may
or may not have been accepted (unknown, never resent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from crossroute.channels import Outcome

# Meta Cloud API error codes (synchronous `error.code` and asynchronous `statuses[].errors[].code`).
META_CODES: Final[Mapping[int, Outcome]] = {
    # Throughput and transient service errors: back off and send again.
    130429: "retry",  # the business number's throughput exceeded
    131056: "retry",  # too many messages to one user in a short time: pace per user
    131000: "retry",  # something went wrong
    131016: "retry",  # service unavailable
    1: "retry",  # API unknown (possible server error)
    2: "retry",  # API service: downtime or overload
    # Less common ones; Meta's error-code page lists them as throttling / temporary states.
    4: "retry",  # app-level request limit reached
    80007: "retry",  # WhatsApp Business Account rate limit
    131048: "retry",  # spam rate limit on this business number (quality-based): lifts with time
    131057: "retry",  # business account in maintenance mode (e.g. a throughput upgrade)
    # This user cannot get this message on WhatsApp now: the next channel may (FALLBACK_CODES).
    131047: "fallback",  # more than 24 h since the user's last message: a template, else SMS
    131026: "fallback",  # undeliverable to that user (no WhatsApp, old client, terms not accepted)
    131049: "fallback",  # held back for ecosystem health (marketing cap); the router judges the content
    131062: "fallback",  # BSUID recipients not supported for this message (authentication templates)
    130472: "fallback",  # user in Meta's marketing-message experiment; Meta says: reach them another way
    # Do not send again on WhatsApp: fix the request, the template, the account, or respect the user.
    131050: "permanent",  # the user stopped marketing messages: record it, never resend marketing
    131051: "permanent",  # unsupported message type
    100: "permanent",  # invalid parameter: a bug
    190: "permanent",  # access token expired or invalid: alert the operator
    368: "permanent",  # temporarily blocked for policy violations
    131031: "permanent",  # business account locked
    131042: "permanent",  # payment problem
    **dict.fromkeys(range(132000, 132017), "permanent"),  # template problems: fix the template
}

# Meta codes meaning "this user cannot get it on WhatsApp" (contract R7): when a send or a later `failed`
# status carries one, SMS may be sent instead, once. 131053 (media upload error) is deliberately absent:
# it is a problem with the content, not with reaching the user; so are 131050 (the user said no to
# marketing: SMS must not route around that) and 131051 (message type).
FALLBACK_CODES: Final[frozenset[int]] = frozenset(c for c, o in META_CODES.items() if o == "fallback")

# Twilio error codes (REST `code`, status-callback `ErrorCode`).
TWILIO_CODES: Final[Mapping[int, Outcome]] = {
    21610: "permanent",  # the recipient opted out (STOP): never retry
    21211: "permanent",  # invalid 'To' number
    21614: "permanent",  # 'To' is not a mobile number
    30005: "permanent",  # unknown destination handset
    30006: "permanent",  # landline or unreachable carrier
    20429: "retry",  # too many requests: back off
    30001: "retry",  # queue overflow: back off
    21611: "retry",  # the sender has too many queued messages: back off
    63018: "retry",  # channel rate limit exceeded: back off
    30003: "retry",  # unreachable handset: a few times only (LIMITED_RETRY_CODES)
    30008: "retry",  # unknown error: a few times only (LIMITED_RETRY_CODES)
    63016: "fallback",  # WhatsApp via Twilio outside the 24 h window (needs a template), like Meta 131047
    63003: "fallback",  # channel could not find the To address: not (or no longer) a WhatsApp user
    63024: "fallback",  # invalid message recipient: WhatsApp's "receiver incapable" (1026), like Meta 131026
}

# Twilio codes meaning "this user cannot get this message on WhatsApp" (R7, WhatsApp through Twilio: R11).
TWILIO_FALLBACK_CODES: Final[frozenset[int]] = frozenset(
    c for c, o in TWILIO_CODES.items() if o == "fallback"
)

# Retryable, but only a few times: the handset or carrier may never come back.
LIMITED_RETRY_CODES: Final[frozenset[int]] = frozenset({30003, 30008})


def meta_outcome(code: int | None, http_status: int) -> Outcome:
    """What a Meta error means for the router: by ``code`` when listed, else by HTTP status."""
    if code is not None and code in META_CODES:
        return META_CODES[code]
    return _by_status(http_status)


def twilio_outcome(code: int | None, http_status: int) -> Outcome:
    """What a Twilio error means for the router: by ``code`` when listed, else by HTTP status."""
    if code is not None and code in TWILIO_CODES:
        return TWILIO_CODES[code]
    return _by_status(http_status)


def is_fallback(code: int | None, provider: str = "meta") -> bool:
    """Whether a provider's code (e.g. of a ``failed`` status) means the user cannot get it on WhatsApp
    (R7): Meta's ``FALLBACK_CODES``, or for ``twilio`` (R11) ``TWILIO_FALLBACK_CODES``."""
    codes = TWILIO_FALLBACK_CODES if provider == "twilio" else FALLBACK_CODES
    return code is not None and code in codes


def error_code(value: object) -> int | None:
    """A provider's error code as an int (Meta and Twilio send numbers; some relays send digit strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _by_status(http_status: int) -> Outcome:
    if http_status == 429:
        return "retry"
    if 400 <= http_status < 500:
        return "permanent"
    return "unknown"  # 5xx, or an answer that is no answer: it may have been accepted


def transport_outcome(error: BaseException) -> Outcome:
    """A failure without an HTTP answer: ``retry`` when the connection was never made (connect timeout,
    DNS, refused), so nothing was sent; else ``unknown`` (read timeout, connection dropped after sending,
    TLS errors, which can happen mid-stream). Reads urllib3's errors, also when wrapped by requests."""
    from urllib3.exceptions import ConnectTimeoutError, MaxRetryError  # loaded already by the caller

    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectTimeoutError):  # NewConnectionError and NameResolutionError too
            return "retry"
        if isinstance(current, MaxRetryError) and isinstance(current.reason, BaseException):
            pending.append(current.reason)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return "unknown"


_PHONE_LIKE = re.compile(r"\+?\d[\d ()-]{5,}\d")
_BSUID_LIKE = re.compile(r"\b[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]*\d[A-Za-z0-9]*\b")


def safe_title(text: object, limit: int = 200) -> str:
    """A provider's error message fit for ``SendFailed`` and logs: providers echo parameters (Twilio: "The
    'To' number +1555… is not a valid phone number"), so phone-like digit runs and BSUIDs are cut out."""
    if not isinstance(text, str):
        return ""
    return _PHONE_LIKE.sub("…", _BSUID_LIKE.sub("…", text))[:limit]
