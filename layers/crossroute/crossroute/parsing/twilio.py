"""Twilio callbacks (inbound SMS / WhatsApp, status callbacks) → crossroute events. Twilio's names stop here.

Twilio sends no event time: ``sent_at`` and ``at`` are when crossroute received the callback (the queued
body's ``received_at``), normally within a second of the event, since Twilio waits for our answer.
WhatsApp addresses carry a ``whatsapp:`` prefix; with usernames, ``From`` may be a BSUID, not a phone.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from crossroute import ids, limits
from crossroute.channels import Channel
from crossroute.inbound import (
    Choice,
    InboundMessage,
    MediaRef,
    Person,
    ProviderError,
    ProviderEvent,
    StatusUpdate,
)
from crossroute.parsing.context import Context

_MESSAGE_SID = ("MessageSid", "SmsMessageSid", "SmsSid")
_BSUID = ("ExternalUserId", "ExternalUserIdentifier")
_PARENT_BSUID = ("ParentExternalUserId", "ParentExternalUserIdentifier")
_USERNAME = ("ProfileUsername", "Username")
_MEDIA_TYPES = frozenset({"image", "video", "audio"})


def parse_message(ctx: Context, form: Any) -> list[ProviderEvent]:
    """An inbound SMS/MMS or WhatsApp message; ``business`` is our ``To`` address as Twilio wrote it."""
    params = _params(form)
    if params is None:
        return [ctx.unrecognised("twilio", "twilio.message", "form is not text", form)]
    message_id = _first(params, _MESSAGE_SID)
    sender = _customer(ctx, params, "From")
    if not message_id or not sender.known:
        return [
            ctx.unrecognised("twilio", "twilio.message", "message without a sid or a valid sender", params)
        ]
    kind = _type(ctx, params)
    return [
        InboundMessage(
            tenant=ctx.tenant,
            provider="twilio",
            channel=_channel(params),
            message_id=message_id,
            business=_first(params, ("To",)),
            sender=sender,
            sent_at=ctx.received_at,
            type=kind,
            text=_text(params, kind),
            reply_to=params.get("OriginalRepliedMessageSid") or None,
            opt_out_keyword=_opt_out(params),
            media=_media(params),
            raw=_raw(form),
            choice=_choice(params),
        )
    ]


def _choice(params: dict[str, str]) -> Choice | None:
    """A WhatsApp quick-reply tap through Twilio: ``ButtonPayload`` is the button's id (R13)."""
    payload = params.get("ButtonPayload", "").strip()
    return Choice(payload, params.get("ButtonText", ""), "whatsapp.quick_reply") if payload else None


def parse_status(ctx: Context, form: Any) -> list[ProviderEvent]:
    """A status callback: ``To`` is the customer, ``From`` our address."""
    params = _params(form)
    if params is None:
        return [ctx.unrecognised("twilio", "twilio.status", "form is not text", form)]
    message_id = _first(params, _MESSAGE_SID)
    status = _first(params, ("MessageStatus", "SmsStatus")).strip().lower()
    if not message_id or not status:
        return [ctx.unrecognised("twilio", "twilio.status", "status without a sid or a status", params)]
    return [
        StatusUpdate(
            tenant=ctx.tenant,
            provider="twilio",
            channel=_channel(params),
            message_id=message_id,
            business=_first(params, ("From",)),
            recipient=_customer(ctx, params, "To"),
            status=ctx.label(status, "unknown"),
            at=ctx.received_at,
            errors=_errors(params),
            raw=_raw(form),
        )
    ]


def _params(form: Any) -> dict[str, str] | None:
    # As signed and queued: one value per name, blank values kept.
    return dict(parse_qsl(form, keep_blank_values=True)) if isinstance(form, str) else None


def _raw(form: str) -> dict[str, Any]:
    """Every parameter, kept: a repeated name (several ``MediaUrl``, say) as the list of its values."""
    raw: dict[str, Any] = {}
    for name, value in parse_qsl(form, keep_blank_values=True):
        if name in raw:
            before = raw[name]
            raw[name] = [*before, value] if isinstance(before, list) else [before, value]
        else:
            raw[name] = value
    return raw


def _first(params: dict[str, str], names: tuple[str, ...]) -> str:
    """The first of ``names`` with a value; a value too long to be a genuine id or address counts as none."""
    values = (params.get(name, "").strip() for name in names)
    return next((v for v in values if 0 < len(v) <= limits.PROVIDER_ID_CHARS), "")


def _customer(ctx: Context, params: dict[str, str], side: str) -> Person:
    """The customer's side: a phone (``From``/``To``, ``WaId``) and/or a BSUID (``ExternalUserId``, or the
    address itself when WhatsApp shares no phone)."""
    address_is_bsuid = ids.is_bsuid(ids.strip_channel_prefix(params.get(side, "").strip()))
    return ctx.person(
        params,
        wa_id="WaId",
        phone=() if address_is_bsuid else side,
        bsuid=(*_BSUID, side) if address_is_bsuid else _BSUID,
        parent=_PARENT_BSUID,
        username=_USERNAME,
        name="ProfileName",
    )


def _channel(params: dict[str, str]) -> Channel:
    addresses = (params.get("From", ""), params.get("To", ""))
    return "whatsapp" if any(a.strip().startswith("whatsapp:") for a in addresses) else "sms"


def _type(ctx: Context, params: dict[str, str]) -> str:
    """WhatsApp's ``MessageType``; for SMS/MMS, text or the kind of the first attachment."""
    given = params.get("MessageType", "").strip().lower()
    if given:
        return ctx.label(given, "unknown")
    count = params.get("NumMedia", "").strip()
    if count.isascii() and count.isdigit() and int(count) > 0:
        major = params.get("MediaContentType0", "").split("/")[0].strip().lower()
        return major if major in _MEDIA_TYPES else "document"
    return "text"


def _media(params: dict[str, str]) -> tuple[MediaRef, ...]:
    """``MediaUrlN`` with ``MediaContentTypeN`` for N below ``NumMedia`` (at most 10, Twilio's limit)."""
    count = params.get("NumMedia", "").strip()
    number = int(count) if count.isascii() and count.isdigit() and len(count) <= 2 else 0
    found = []
    for n in range(min(number, 10)):
        url = params.get(f"MediaUrl{n}", "").strip()
        mime = params.get(f"MediaContentType{n}", "").split(";")[0].strip().lower()
        if url and len(url) <= 512:
            major = mime.split("/")[0]
            found.append(
                MediaRef(type=major if major in _MEDIA_TYPES else "document", mime_type=mime, url=url)
            )
    return tuple(found)


def _text(params: dict[str, str], kind: str) -> str | None:
    # A quick-reply button's label arrives as ButtonText (Body repeats it on most accounts).
    chosen = params.get("ButtonText") if kind == "button" else None
    return chosen or params.get("Body") or None


def _opt_out(params: dict[str, str]) -> str | None:
    """``OptOutType`` (STOP, START, HELP), sent with Advanced Opt-Out."""
    keyword = params.get("OptOutType", "").strip().upper()
    return keyword if keyword.isascii() and keyword.isalpha() else None


def _errors(params: dict[str, str]) -> tuple[ProviderError, ...]:
    code = params.get("ErrorCode", "").strip()
    if not code:
        return ()
    number = int(code) if code.isascii() and code.isdigit() and len(code) <= 12 else None
    return (ProviderError(code=number, title=params.get("ErrorMessage", "")),)
