"""A fake Twilio REST API: ``POST /_sandbox/twilio/2010-04-01/Accounts/<AccountSid>/Messages.json``.

HTTP Basic auth (account SID : auth token), form-encoded parameters as twilio-python sends them.
Answers ``201`` with a Message resource (or a Twilio error), records the send in the outbox, then posts
signed status callbacks to the request's ``StatusCallback`` (when given). See the package docstring.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..gateway import LocalRequest, LocalResponse
from .callbacks import Callback, Plan, final_status
from .state import Behaviour, is_bsuid

if TYPE_CHECKING:
    from crossroute.tenants import TwilioChannel

    from . import Sandbox

__all__ = [
    "TWILIO_ERRORS",
    "authenticated_channel",
    "handle",
    "sync_failure",
    "twilio_error",
    "twilio_signature",
]

API_VERSION = "2010-04-01"
PATH = re.compile(r"/_sandbox/twilio/(?P<version>[^/]+)/Accounts/(?P<account>[^/]+)/Messages\.json")
MAX_BODY = 1600
MAX_MEDIA = 10  # MediaUrl values per message
WHATSAPP = "whatsapp:"
RETRY_DELAYS = (1.0,)  # Twilio retries once, and only when the connection failed

# code -> (message, HTTP status when returned synchronously)
TWILIO_ERRORS: dict[int, tuple[str, int]] = {
    20003: ("Authenticate", 401),
    20404: ("The requested resource was not found", 404),
    20429: ("Too Many Requests", 429),
    21211: ("Invalid 'To' Phone Number", 400),
    21408: (
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
        400,
    ),
    21602: ("Message body is required.", 400),
    21603: ("A 'From' phone number is required.", 400),
    21604: ("A 'To' phone number is required.", 400),
    21606: ("The 'From' phone number provided is not a valid message-capable Twilio phone number.", 400),
    21609: ("Invalid StatusCallback URL", 400),
    21610: ("Attempt to send to unsubscribed recipient", 400),
    21611: ("This 'From' number has exceeded the maximum number of queued messages", 400),
    21612: ("The 'To' phone number is not currently reachable via SMS", 400),
    21614: ("'To' number is not a valid mobile number", 400),
    21617: ("The concatenated message body exceeds the 1600 character limit.", 400),
    21620: ("Invalid media URL(s)", 400),
    21623: ("Number of media files exceeds allowed limit", 400),
    21705: ("The Messaging Service Sid is invalid.", 400),
    21910: ("Invalid From and To pair. From and To should be of the same channel", 400),
    30001: ("Queue overflow", 0),
    30002: ("Account suspended", 0),
    30003: ("Unreachable destination handset", 0),
    30004: ("Message blocked", 0),
    30005: ("Unknown destination handset", 0),
    30006: ("Landline or unreachable carrier", 0),
    30007: ("Message filtered", 0),
    30008: ("Unknown error", 0),
    63016: ("Failed to send freeform message because you are outside the allowed window", 0),
    63024: ("Invalid message recipient", 0),
}
# Delivery errors that end in "failed" (never left Twilio) rather than "undelivered" (the carrier or
# WhatsApp could not deliver it).
FAILED_CODES = frozenset({30001, 30002, 30010, 63016})


def sync_failure(code: int) -> bool:
    """Does Twilio refuse the API call itself with this code (else it reports it in a status callback)?

    Twilio's 2xxxx codes (request, account and recipient checks such as 21610, 21211, 21614, 20429) are
    answered synchronously; 3xxxx (carrier) and 6xxxx (WhatsApp) errors arrive later as ``failed`` or
    ``undelivered`` status callbacks.
    """
    return code < 30000


def twilio_error(code: int, message: str | None = None, status: int | None = None) -> LocalResponse:
    text, http = TWILIO_ERRORS.get(code, ("Error", 400))
    status = status or http or 400
    doc = {
        "code": code,
        "message": message or text,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    response = LocalResponse.json(status, doc)
    if status == 401:
        response.headers.append(("WWW-Authenticate", 'Basic realm="Twilio API"'))
    return response


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """``X-Twilio-Signature``: base64(HMAC-SHA1(token, URL + every parameter sorted by name, name+value))."""
    payload = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


class _Refused(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or str(code))
        self.code, self.message = code, message


def _basic_auth(request: LocalRequest) -> tuple[str, str] | None:
    scheme, _, value = (request.headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def handle(sb: Sandbox, request: LocalRequest) -> LocalResponse:
    m = PATH.fullmatch(request.path)
    if m is None or m["version"] != API_VERSION:
        return _not_found(request)
    channel = authenticated_channel(sb, request, m["account"])
    if channel is None:
        return twilio_error(20003)
    if request.method != "POST":
        return _not_found(request)
    return _send(sb, channel, _read_send(_form(request)))


def _not_found(request: LocalRequest) -> LocalResponse:
    return twilio_error(
        20404, f"The requested resource {request.path[len('/_sandbox/twilio') :]} was not found"
    )


def authenticated_channel(sb: Sandbox, request: LocalRequest, account: str) -> TwilioChannel | None:
    """The account's channel when the request carries its SID and auth token (compared in constant time)."""
    credentials = _basic_auth(request)
    channel = next((c for c in sb.registry.twilio_channels() if c.account_sid == account), None)
    if (
        credentials is None
        or channel is None
        or not hmac.compare_digest(credentials[0].encode(), account.encode())
        or not hmac.compare_digest(credentials[1].encode(), channel.auth_token.encode())
    ):
        return None
    return channel


def _form(request: LocalRequest) -> list[tuple[str, str]]:
    """The form parameters; none unless the body is ``application/x-www-form-urlencoded`` UTF-8."""
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return []
    try:
        return parse_qsl((request.body or b"").decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return []


@dataclass(frozen=True)
class _Send:
    """A send's parameters as this fake reads them (``to``: ``To`` without ``whatsapp:``)."""

    raw_to: str
    raw_from: str
    service: str  # MessagingServiceSid
    body: str
    content_sid: str
    callback_url: str  # StatusCallback
    media: list[str]
    is_whatsapp: bool
    to: str
    bsuid: str | None  # ``to`` when it is a BSUID (WhatsApp only)
    phone: str | None  # ``to`` as E.164 when it is a phone

    @property
    def echo_to(self) -> str:
        """``To`` as the Message resource and the status callbacks give it back."""
        return (WHATSAPP if self.is_whatsapp else "") + (self.phone or self.bsuid or self.to)


def _read_send(pairs: list[tuple[str, str]]) -> _Send:
    params = dict(pairs)
    raw_to = params.get("To", "").strip()
    raw_from = params.get("From", "").strip()
    is_whatsapp = raw_to.startswith(WHATSAPP) or raw_from.startswith(WHATSAPP)
    to = raw_to[len(WHATSAPP) :] if raw_to.startswith(WHATSAPP) else raw_to
    bsuid = to if is_whatsapp and is_bsuid(to) else None
    return _Send(
        raw_to=raw_to,
        raw_from=raw_from,
        service=params.get("MessagingServiceSid", "").strip(),
        body=params.get("Body", ""),
        content_sid=params.get("ContentSid", "").strip(),
        callback_url=params.get("StatusCallback", "").strip(),
        media=[v for k, v in pairs if k == "MediaUrl" and v],
        is_whatsapp=is_whatsapp,
        to=to,
        bsuid=bsuid,
        phone=None if bsuid else _e164(to),
    )


def _send(sb: Sandbox, channel: TwilioChannel, send: _Send) -> LocalResponse:
    record = _outbox_record(send)
    # The "sms" settings (keyed by phone) govern everything this fake sends, WhatsApp via Twilio too.
    behaviour = sb.recipients.lookup("sms", send.phone)
    try:
        _check_message(send)
        sender = _check_account(channel, send)
        code = _sync_error_code(behaviour)
        if code is not None:
            raise _Refused(code)
    except _Refused as refused:
        sb.record_refusal(record, refused.code)
        return twilio_error(refused.code, refused.message)

    sid = "SM" + uuid.uuid4().hex
    sb.outbox.add(**record, provider_message_id=sid)
    plan = _plan(behaviour)
    if send.callback_url:
        sb.report(
            plan,
            lambda status, code: Callback(
                provider="twilio",
                message_id=sid,
                status=status,
                url=send.callback_url,
                deliver_to=sb.deliverable(send.callback_url),
                build=_callback(
                    channel.auth_token,
                    send.callback_url,
                    _status_form(channel, send, sid, sender, status, code),
                ),
                retry_delays=RETRY_DELAYS,
                retry_http_errors=False,
            ),
        )
    final = final_status(plan)
    note = f"then {final}" if send.callback_url else f"({final}, no StatusCallback)"
    sb.log_send(record, f"accepted {sid} {note}")
    return LocalResponse.json(201, _message_resource(channel, send, sid))


def _outbox_record(send: _Send) -> dict[str, Any]:
    kind = "template" if send.content_sid else "media" if send.media else "text"
    return {
        "provider": "twilio",
        "channel": "whatsapp" if send.is_whatsapp else "sms",
        "to": send.phone or (send.to if send.to and not send.bsuid else None),
        "recipient": send.bsuid,
        "sender": send.raw_from or send.service or None,  # the sender address, else the Messaging Service
        "type": kind,
        "text": send.body or None,
        "template": send.content_sid or None,
        # R13: the first MediaUrl, its type told by the file extension as Twilio would by the content
        "media": {"type": _media_type(send.media[0]), "url": send.media[0]} if send.media else None,
        "buttons": None,  # Twilio sends no buttons without a Content template: crossroute numbers them
    }


_EXTENSIONS = {
    "image": (".jpg", ".jpeg", ".png", ".gif", ".webp"),
    "video": (".mp4", ".3gp"),
    "audio": (".mp3", ".ogg", ".amr", ".aac", ".m4a"),
    "document": (".pdf", ".txt", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx"),
}


def _media_type(url: str) -> str | None:
    path = urlsplit(url).path.lower()
    return next((kind for kind, endings in _EXTENSIONS.items() if path.endswith(endings)), None)


def _sync_error_code(behaviour: Behaviour) -> int | None:
    """The error the API call itself fails with, when the recipient is configured to make it fail."""
    return behaviour.sync_error_code or (
        behaviour.error_code if behaviour.error_code and sync_failure(behaviour.error_code) else None
    )


def _e164(address: str) -> str | None:
    from crossroute import ids

    try:
        return ids.e164(address) if address else None
    except ids.InvalidIdentifier:
        return None


def _check_message(send: _Send) -> None:
    """Twilio's checks of the message itself, in Twilio's order."""
    if not send.raw_to:
        raise _Refused(21604)
    if not send.raw_from and not send.service:
        raise _Refused(21603)
    if not send.body and not send.media and not send.content_sid:
        raise _Refused(21602)
    if len(send.body) > MAX_BODY:
        raise _Refused(21617)
    _check_media(send.media)
    if send.raw_from and send.raw_from.startswith(WHATSAPP) != send.raw_to.startswith(WHATSAPP):
        raise _Refused(21910)
    if (send.phone or send.bsuid) is None:
        raise _Refused(21211, f"The 'To' number {send.raw_to} is not a valid phone number.")


def _check_media(urls: list[str]) -> None:
    """``MediaUrl``: at most 10, each an absolute http(s) URL (Twilio fetches them)."""
    if len(urls) > MAX_MEDIA:
        raise _Refused(21623)
    if any(urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc for url in urls):
        raise _Refused(21620)


def _check_account(channel: TwilioChannel, send: _Send) -> str:
    """Twilio's checks against the account, after :func:`_check_message`; returns the sender reported
    in status callbacks."""
    if send.service and send.service not in channel.messaging_service_sids:
        raise _Refused(21705)
    senders = channel.whatsapp_senders if send.raw_to.startswith(WHATSAPP) else channel.sms_numbers
    if send.raw_from and send.raw_from not in senders:
        raise _Refused(21606)
    callback = urlsplit(send.callback_url)
    if send.callback_url and (callback.scheme not in ("http", "https") or not callback.netloc):
        raise _Refused(21609)
    # A messaging service picks a sender from its pool: the account's first number of that channel.
    return send.raw_from or next(iter(senders), "")


def _status_form(
    channel: TwilioChannel, send: _Send, sid: str, sender: str, status: str, code: int | None
) -> dict[str, str]:
    """The form parameters of one status callback."""
    form = {
        "SmsSid": sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": send.echo_to,
        "MessageSid": sid,
        "AccountSid": channel.account_sid,
        "From": sender,
        "ApiVersion": API_VERSION,
    }
    if send.service:
        form["MessagingServiceSid"] = send.service
    if code is not None:
        form["ErrorCode"] = str(code)
        form["ErrorMessage"] = TWILIO_ERRORS.get(code, ("Error", 0))[0]
    return form


def _message_resource(channel: TwilioChannel, send: _Send, sid: str) -> dict[str, Any]:
    """The ``201`` answer: the Message resource Twilio creates (``queued``, or ``accepted`` when a
    messaging service picks the sender)."""
    now = format_datetime(datetime.now(UTC))
    uri = f"/{API_VERSION}/Accounts/{channel.account_sid}/Messages/{sid}"
    return {
        "account_sid": channel.account_sid,
        "api_version": API_VERSION,
        "body": send.body,
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": send.raw_from or None,
        "messaging_service_sid": send.service or None,
        "num_media": str(len(send.media)),
        "num_segments": str(_segments(send.body)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued" if send.raw_from else "accepted",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": send.echo_to,
        "uri": f"{uri}.json",
    }


def _segments(body: str) -> int:
    """SMS segments: 160 characters alone, 153 each when concatenated."""
    return max(1, math.ceil(len(body) / (160 if len(body) <= 160 else 153))) if body else 1


def _plan(behaviour: Behaviour) -> Plan:
    """The status callbacks to post, in order (Twilio posts none for the initial queued/accepted)."""
    code = behaviour.error_code
    status = behaviour.status or (
        ("failed" if code in FAILED_CODES else "undelivered") if code else "delivered"
    )
    if status == "failed":
        return [("failed", code or 30001)]
    if status == "undelivered":
        return [("sent", None), ("undelivered", code or 30003)]
    ladder = ("sent", "delivered", "read")
    return [(s, None) for s in ladder[: ladder.index(status) + 1]]


def _callback(auth_token: str, url: str, form: dict[str, str]) -> Any:
    def build() -> tuple[bytes, dict[str, str]]:
        return urlencode(form).encode(), {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(auth_token, url, form),
            "User-Agent": "TwilioProxy/1.1",
        }

    return build
