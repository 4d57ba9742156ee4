"""A fake WhatsApp Cloud API (Graph API): ``POST /_sandbox/graph/<version>/<phone_number_id>/messages``.

Checks what Meta checks, answers what Meta answers, records the send in the outbox, then reports
``sent``/``delivered``/``read`` (or ``failed``) as signed status webhooks to the stack's
``/webhooks/whatsapp``. See the package docstring for the knobs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from ..gateway import LocalRequest, LocalResponse
from .callbacks import Build, Callback, Plan, final_status
from .state import Behaviour, is_bsuid, meta_phone

if TYPE_CHECKING:
    from crossroute.tenants import MetaNumber, Tenant

    from . import Sandbox

__all__ = ["META_ERRORS", "handle", "meta_error"]

PATH = re.compile(r"/_sandbox/graph/(?P<version>[^/]+)/(?P<node>[^/]+)/messages/?")
VERSION = re.compile(r"v\d{1,2}\.\d{1,2}")
MESSAGE_TYPES = (
    "audio",
    "contacts",
    "document",
    "image",
    "interactive",
    "location",
    "reaction",
    "sticker",
    "template",
    "text",
    "video",
)
MAX_TEXT = 4096
ERROR_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
RETRY_DELAYS = (0.5, 1.0, 2.0)  # Meta retries a refused webhook with backoff (for days; here 3 times)

# code -> (title, HTTP status when returned synchronously)
META_ERRORS: dict[int, tuple[str, int]] = {
    1: ("API Unknown", 500),
    2: ("API Service", 503),
    100: ("Invalid parameter", 400),
    104: ("An access token is required to request this resource", 401),
    190: ("Invalid OAuth access token - Cannot parse access token", 401),
    368: ("Temporarily blocked for policies violations", 400),
    130429: ("Rate limit hit", 400),
    131000: ("Something went wrong", 500),
    131016: ("Service unavailable", 503),
    131026: ("Message undeliverable", 400),
    131031: ("Account has been locked", 400),
    131042: ("Business eligibility payment issue", 400),
    131047: ("Re-engagement message", 400),
    131049: ("This message was not delivered to maintain healthy ecosystem engagement", 400),
    131050: ("Unable to deliver the message: the user stopped marketing messages", 400),
    131051: ("Unsupported message type", 400),
    131056: ("(Business Account, Consumer Account) pair rate limit hit", 400),
    131062: ("Business-scoped user ID (BSUID) recipients are not supported for this message", 400),
    132000: ("Number of parameters does not match the expected number of params", 400),
    132001: ("Template name does not exist in the translation", 400),
}


def meta_error(
    code: int, details: str | None = None, *, message: str | None = None, subcode: int | None = None
) -> LocalResponse:
    """Meta's synchronous error: ``{"error": {"message", "type", "code", "error_data", "fbtrace_id"}}``."""
    title, status = META_ERRORS.get(code, ("Unknown error", 400))
    error: dict[str, Any] = {
        "message": message or f"(#{code}) {title}",
        "type": "OAuthException",
        "code": code,
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = "A" + secrets.token_urlsafe(16).replace("-", "x").replace("_", "y")
    return LocalResponse.json(status, {"error": error})


class _Refused(Exception):
    def __init__(self, code: int, details: str, message: str | None = None) -> None:
        super().__init__(details)
        self.code, self.details, self.message = code, details, message


def _wamid() -> str:
    return "wamid." + base64.b32encode(secrets.token_bytes(30)).decode()


def _bearer(request: LocalRequest) -> str:
    auth = request.headers.get("Authorization") or ""
    scheme, _, token = auth.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return dict(parse_qsl(request.query)).get("access_token", "")


def handle(sb: Sandbox, request: LocalRequest) -> LocalResponse:
    m = PATH.fullmatch(request.path)
    if m is None or VERSION.fullmatch(m["version"]) is None:
        return meta_error(100, message=f"Unknown path components: {request.path[len('/_sandbox/graph') :]}")
    pnid = m["node"]
    if request.method != "POST":
        return _no_such_object(pnid, request.method)
    token = _bearer(request)
    if not token:
        return meta_error(104, message=META_ERRORS[104][0])
    if not _known_token(sb, token):
        return meta_error(190, message=META_ERRORS[190][0])
    sender = _sender(sb, pnid, token)
    if sender is None:
        return _no_such_object(pnid, request.method)
    doc = _json_object(request.body)
    if doc is None:
        return meta_error(100, "the request body must be a JSON object")
    if doc.get("status") == "read" and "message_id" in doc:  # mark as read / typing indicator
        return LocalResponse.json(200, {"success": True})
    return _send(sb, *sender, doc)


def _no_such_object(pnid: str, method: str) -> LocalResponse:
    return meta_error(
        100,
        subcode=33,
        message=f"Unsupported {method.lower()} request. Object with ID '{pnid}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
    )


def _known_token(sb: Sandbox, token: str) -> bool:
    """Is ``token`` the access token of any tenant (compared in constant time)?"""
    tenants = [t for t in sb.registry.tenants if t.meta and t.meta.access_token]
    return any(hmac.compare_digest(token.encode(), t.meta.access_token.encode()) for t in tenants if t.meta)


def _sender(sb: Sandbox, pnid: str, token: str) -> tuple[Tenant, MetaNumber] | None:
    """The tenant owning phone_number_id ``pnid`` and that number, when ``token`` is that tenant's."""
    tenant = sb.registry.by_phone_number_id(pnid)
    if tenant is None or tenant.meta is None or tenant.meta.access_token != token:
        return None
    return tenant, next(n for n in tenant.meta.phone_numbers if n.phone_number_id == pnid)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body or b"null")
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _send(sb: Sandbox, tenant: Tenant, number: MetaNumber, doc: dict[str, Any]) -> LocalResponse:
    to, recipient = _address(doc.get("to")), _address(doc.get("recipient"))
    record = {**_outbox_record(doc, to, recipient), "sender": number.phone_number_id}
    behaviour = sb.recipients.lookup("whatsapp", to, recipient)
    try:
        _validate(doc, to, recipient)
        if behaviour.sync_error_code is not None:
            raise _Refused(behaviour.sync_error_code, "configured with POST /_sandbox/recipients")
    except _Refused as refused:
        sb.record_refusal(record, refused.code)
        return meta_error(refused.code, refused.details, message=refused.message)

    wamid = _wamid()
    contact, recipient_ids, bsuid_in_to = _contact(to, recipient, behaviour)
    sb.outbox.add(**record, provider_message_id=wamid)
    plan = _plan(behaviour, bsuid_in_to)
    category = "utility" if doc.get("type", "text") == "template" else "service"
    sb.report(
        plan,
        lambda status, code: Callback(
            provider="meta",
            message_id=wamid,
            status=status,
            url=sb.base_url + "/webhooks/whatsapp",
            deliver_to=sb.base_url + "/webhooks/whatsapp",
            build=_status_webhook(
                tenant,
                number,
                wamid,
                status,
                code,
                _reported_ids(status, to, recipient_ids),
                category,
                bsuid_in_to,
            ),
            retry_delays=RETRY_DELAYS,
            retry_http_errors=True,
        ),
    )
    sb.log_send(record, f"accepted {wamid} then {final_status(plan)}")
    return LocalResponse.json(
        200, {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]}
    )


def _address(value: Any) -> str | None:
    """``to`` / ``recipient`` when it is a non-blank string."""
    return value if isinstance(value, str) and value.strip() else None


def _outbox_record(doc: dict[str, Any], to: str | None, recipient: str | None) -> dict[str, Any]:
    """What the outbox shows of a send (``to`` as E.164 when it is a phone)."""
    kind = doc.get("type", "text")
    text_obj, template_obj = doc.get("text"), doc.get("template")
    return {
        "provider": "meta",
        "channel": "whatsapp",
        "to": (meta_phone(to) or to) if to else None,
        "recipient": recipient,
        "type": kind if isinstance(kind, str) else None,
        "text": text_obj.get("body") if kind == "text" and isinstance(text_obj, dict) else None,
        "template": template_obj.get("name")
        if kind == "template" and isinstance(template_obj, dict)
        else None,
    }


def _contact(
    to: str | None, recipient: str | None, behaviour: Behaviour
) -> tuple[dict[str, Any], dict[str, str], bool]:
    """The answer's ``contacts[0]``, the ids the status webhooks carry (``recipient_id``,
    ``recipient_user_id``), and whether ``to`` held a BSUID. ``to`` wins when both are given."""
    recipient_ids: dict[str, str] = {}
    if to is None:
        assert recipient is not None  # validated
        contact: dict[str, Any] = {"input": recipient, "user_id": recipient}
        recipient_ids["recipient_user_id"] = recipient
        if behaviour.phone:
            contact["wa_id"] = recipient_ids["recipient_id"] = behaviour.phone[1:]
        return contact, recipient_ids, False
    contact = {"input": to}
    if is_bsuid(to.strip()):
        return contact, recipient_ids, True  # Meta accepts it, then the message never arrives
    phone = meta_phone(to)
    assert phone is not None  # validated
    contact["wa_id"] = recipient_ids["recipient_id"] = phone[1:]
    if behaviour.user_id:
        contact["user_id"] = recipient_ids["recipient_user_id"] = behaviour.user_id
    return contact, recipient_ids, False


def _reported_ids(status: str, to: str | None, recipient_ids: dict[str, str]) -> dict[str, str]:
    """The ids a status webhook carries: a failed status of a phone send carries the phone only."""
    if status == "failed" and to is not None:
        return {k: v for k, v in recipient_ids.items() if k == "recipient_id"}
    return recipient_ids


def _validate(doc: dict[str, Any], to: str | None, recipient: str | None) -> None:
    """Meta's checks of a send, in order; :class:`_Refused` with the first that fails."""
    _validate_addressing(doc, to, recipient)
    kind = doc.get("type", "text")
    if kind not in MESSAGE_TYPES:
        allowed = ", ".join(t.upper() for t in MESSAGE_TYPES)
        raise _Refused(
            100, f"type {kind!r} is not supported", f"(#100) Param type must be one of {{{allowed}}}"
        )
    obj = doc.get(kind)
    if not isinstance(obj, dict):
        raise _Refused(100, f"{kind} object is required", f"(#100) The parameter {kind} is required.")
    if kind == "text":
        _validate_text(obj)
    if kind == "template":
        _validate_template(obj)
    context = doc.get("context")
    if context is not None and not (isinstance(context, dict) and isinstance(context.get("message_id"), str)):
        raise _Refused(100, "context.message_id must be a message id")


def _validate_addressing(doc: dict[str, Any], to: str | None, recipient: str | None) -> None:
    if doc.get("messaging_product") != "whatsapp":
        raise _Refused(
            100,
            "messaging_product must be 'whatsapp'",
            "(#100) The parameter messaging_product is required.",
        )
    if doc.get("recipient_type", "individual") != "individual":
        raise _Refused(100, "recipient_type must be 'individual'")
    if to is None and recipient is None:
        raise _Refused(100, "to or recipient is required", "(#100) The parameter to is required.")
    if to is not None:
        if not is_bsuid(to.strip()) and meta_phone(to) is None:
            raise _Refused(100, "to: not a phone number with a country code")
    elif recipient is not None and not is_bsuid(recipient.strip()):
        raise _Refused(100, "recipient: not a business-scoped user ID")


def _validate_text(obj: dict[str, Any]) -> None:
    body = obj.get("body")
    if not isinstance(body, str) or not body.strip():
        raise _Refused(100, "text.body is required", "(#100) The parameter text['body'] is required.")
    if len(body) > MAX_TEXT:
        raise _Refused(100, f"text.body is longer than {MAX_TEXT} characters")


def _validate_template(obj: dict[str, Any]) -> None:
    name, language = obj.get("name"), obj.get("language")
    if not isinstance(name, str) or not name:
        raise _Refused(100, "template.name is required", "(#100) The parameter template['name'] is required.")
    code = language.get("code") if isinstance(language, dict) else None
    if not isinstance(code, str) or not code:
        raise _Refused(
            100,
            "template.language.code is required",
            "(#100) The parameter template['language']['code'] is required.",
        )


def _plan(behaviour: Behaviour, bsuid_in_to: bool) -> Plan:
    """The statuses to report, in order."""
    if bsuid_in_to:
        return [("failed", 131026)]
    status = behaviour.status or ("failed" if behaviour.error_code else "read")
    if status == "failed":
        return [("failed", behaviour.error_code or 131026)]
    ladder = ("sent", "delivered", "read")
    return [(s, None) for s in ladder[: ladder.index(status) + 1]]


def _status_webhook(
    tenant: Tenant,
    number: MetaNumber,
    wamid: str,
    status: str,
    code: int | None,
    recipient_ids: dict[str, str],
    category: str,
    bsuid_in_to: bool,
) -> Build:
    """Builds the signed status webhook when it is sent (its timestamp is that moment)."""
    assert tenant.meta is not None
    meta = tenant.meta

    def build() -> tuple[bytes, dict[str, str]]:
        item = _status_item(wamid, status, code, recipient_ids, category, bsuid_in_to)
        doc = _webhook_document(meta.waba_id or number.phone_number_id, number, item)
        body = json.dumps(doc, separators=(",", ":")).encode()
        signature = hmac.new(meta.app_secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": f"sha256={signature}",
            "User-Agent": "facebookexternalua",
        }

    return build


def _status_item(
    wamid: str,
    status: str,
    code: int | None,
    recipient_ids: dict[str, str],
    category: str,
    bsuid_in_to: bool,
) -> dict[str, Any]:
    """One ``statuses[]`` entry: ``errors`` when failed, else ``pricing`` (and ``conversation`` if sent)."""
    item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(time.time()))}
    item.update(recipient_ids)
    if status == "failed":
        title = META_ERRORS.get(code or 0, ("Unknown error", 400))[0]
        details = (
            "a business-scoped user ID was sent in 'to'; send it in 'recipient'"
            if bsuid_in_to
            else "configured with POST /_sandbox/recipients"
        )
        item["errors"] = [
            {
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": details},
                "href": ERROR_HREF,
            }
        ]
        return item
    if status == "sent":
        item["conversation"] = {"id": hashlib.sha1(wamid.encode()).hexdigest()[:32]}  # noqa: S324
    item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": category, "type": "regular"}
    return item


def _webhook_document(entry_id: str, number: MetaNumber, item: dict[str, Any]) -> dict[str, Any]:
    """The webhook body around one status, as Meta nests it."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": entry_id,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": number.display_phone_number,
                                "phone_number_id": number.phone_number_id,
                            },
                            "statuses": [item],
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }
