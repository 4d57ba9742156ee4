"""Twilio webhooks (inbound SMS / WhatsApp and status callbacks): ``X-Twilio-Signature`` and queueing.

The signature covers the exact URL Twilio called. Behind API Gateway the Lambda never sees that URL
(custom domains, stages), so it is rebuilt from the configured public base URL, the request path and
the raw query string, never from an internal host name.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from crossroute.inbound_queue import InboundQueue, QueuedEvent
from crossroute.tenants import Tenant, TenantRegistry
from crossroute.webhooks.errors import (
    BadSignature,
    MalformedRequest,
    PayloadTooLarge,
    UnknownChannel,
    UnsupportedMediaType,
)

# A message with ten media URLs and every optional field stays far below this.
MAX_BODY_BYTES = 64 * 1024
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@dataclass(frozen=True)
class Callback:
    """What differs between the inbound and the status webhook."""

    kind: str
    required: tuple[tuple[str, ...], ...]  # each: one of these spellings must have a value
    our_side: str  # the parameter holding our number: it names the tenant
    their_side: str  # the customer: it names the FIFO group


# Twilio has named the message sid three ways; older inbound callbacks carry only the Sms* ones.
_SID = ("MessageSid", "SmsMessageSid", "SmsSid")
INBOUND = Callback(
    "twilio.message", (_SID, ("AccountSid",), ("From",), ("To",)), our_side="To", their_side="From"
)
STATUS = Callback(
    "twilio.status",
    (_SID, ("AccountSid",), ("MessageStatus",)),  # SmsStatus alone is an inbound message's "received"
    our_side="From",
    their_side="To",
)


def public_url(base_url: str, raw_path: str, raw_query: str) -> str:
    """The URL Twilio signed: configured public base + path + raw query string."""
    return base_url.rstrip("/") + raw_path + (f"?{raw_query}" if raw_query else "")


class Form(dict[str, str]):
    """Form parameters: the last value of each name, like a dict, and ``getall`` for every value of a
    name, which Twilio's ``RequestValidator`` signs (several ``MediaUrl``, say)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self._all: dict[str, list[str]] = {}
        for name, value in pairs:
            self._all.setdefault(name, []).append(value)

    def getall(self, name: str) -> list[str]:
        return self._all[name]


def parse_form(raw: bytes, content_type: str) -> Form:
    """Form parameters exactly as signed: blank values and repeated names kept."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("expected application/x-www-form-urlencoded")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body of {len(raw)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise MalformedRequest("body is not a UTF-8 form") from None
    return Form(pairs)


def verified_auth_token(registry: TenantRegistry, url: str, params: Form, signature: str | None) -> str:
    """The auth token that signed this request, checked with Twilio's own ``RequestValidator`` (a
    constant-time compare for each token). During a rotation a tenant's previous auth token verifies too
    (``TwilioChannel.auth_tokens``)."""
    if not signature:
        raise BadSignature("missing X-Twilio-Signature")
    for token in {t for channel in registry.twilio_channels() for t in channel.auth_tokens}:
        if RequestValidator(token).validate(url, params, signature):
            return token
    raise BadSignature("X-Twilio-Signature does not match")


def accept(
    registry: TenantRegistry,
    queue: InboundQueue,
    callback: Callback,
    *,
    raw: bytes,
    content_type: str,
    url: str,
    signature: str | None,
) -> QueuedEvent:
    """Verify, resolve the tenant and queue one Twilio callback; returns what was queued."""
    params = parse_form(raw, content_type)
    token = verified_auth_token(registry, url, params, signature)
    missing = [names[0] for names in callback.required if not any(params.get(n) for n in names)]
    if missing:
        raise MalformedRequest(f"missing parameters: {', '.join(missing)}")
    tenant = _tenant_of(registry, token, params, callback)
    sender = (
        params.get("ExternalUserId")
        or params.get("ExternalUserIdentifier")
        or params.get(callback.their_side)
    )
    event = QueuedEvent.build(
        tenant=tenant.id,
        sender=sender or next(params[n] for n in _SID if params.get(n)),
        kind=callback.kind,
        content={"form": raw.decode()},
        region=tenant.default_region,
        opt_in_keywords=tenant.whatsapp_opt_in_keywords,
    )
    queue.put([event])
    return event


def _tenant_of(registry: TenantRegistry, token: str, params: Form, callback: Callback) -> Tenant:
    """The tenant owning the messaging service or our number the callback names. A status callback
    that names neither (Twilio may leave ``From`` out of one) is the account's: when exactly one tenant
    has that account and signs with that token."""
    account = params["AccountSid"]
    addresses = [params.get("MessagingServiceSid", ""), params.get(callback.our_side, "")]
    for address in filter(None, addresses):
        tenant = registry.by_twilio_address(account, address)
        # The signing token must be this tenant's: one tenant's token cannot post for another.
        if tenant and tenant.twilio and token in tenant.twilio.auth_tokens:
            return tenant
    if callback is STATUS and not any(addresses):
        owners = [
            t
            for t in registry.tenants
            if t.twilio and t.twilio.account_sid == account and token in t.twilio.auth_tokens
        ]
        if len(owners) == 1:
            return owners[0]
    raise UnknownChannel("Twilio account/number is not registered")
