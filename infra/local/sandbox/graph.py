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

__all__ = ["META_ERRORS", "authenticated_token", "handle", "meta_error"]

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
MEDIA_TYPES = ("image", "video", "audio", "document")
# Meta's limits of interactive messages and captions (docs/routing.md, R13).
MAX_CAPTION, MAX_BUTTON_BODY, MAX_BUTTONS, MAX_BUTTON_TITLE, MAX_BUTTON_ID = 1024, 1024, 3, 20, 256
MAX_LIST_BUTTON, MAX_SECTIONS, MAX_ROWS, MAX_SECTION_TITLE = 20, 10, 10, 24
MAX_ROW_ID, MAX_ROW_TITLE, MAX_ROW_DESCRIPTION = 200, 24, 72
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


def authenticated_token(sb: Sandbox, request: LocalRequest) -> str | LocalResponse:
    """The tenant access token the request carries (``Authorization: Bearer`` or ``access_token``), or
    Meta's 401: code 104 when there is none, 190 when no tenant has it."""
    token = _bearer(request)
    if not token:
        return meta_error(104, message=META_ERRORS[104][0])
    if not _known_token(sb, token):
        return meta_error(190, message=META_ERRORS[190][0])
    return token


def handle(sb: Sandbox, request: LocalRequest) -> LocalResponse:
    m = PATH.fullmatch(request.path)
    if m is None or VERSION.fullmatch(m["version"]) is None:
        return meta_error(100, message=f"Unknown path components: {request.path[len('/_sandbox/graph') :]}")
    pnid = m["node"]
    if request.method != "POST":
        return _no_such_object(pnid, request.method)
    token = authenticated_token(sb, request)
    if isinstance(token, LocalResponse):
        return token
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
    template_obj = doc.get("template")
    return {
        "provider": "meta",
        "channel": "whatsapp",
        "to": (meta_phone(to) or to) if to else None,
        "recipient": recipient,
        "type": kind if isinstance(kind, str) else None,
        "text": _words(kind, doc.get(kind) if isinstance(kind, str) else None),
        "template": template_obj.get("name")
        if kind == "template" and isinstance(template_obj, dict)
        else None,
        **_rich_record(kind, doc.get(kind) if isinstance(kind, str) else None),
    }


def _words(kind: Any, obj: Any) -> str | None:
    """The words the user reads: a text's body, a media caption, an interactive message's body."""
    if not isinstance(obj, dict):
        return None
    if kind == "text":
        return _string(obj.get("body"))
    if kind in MEDIA_TYPES:
        return _string(obj.get("caption"))
    body = obj.get("body")
    return _string(body.get("text")) if kind == "interactive" and isinstance(body, dict) else None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _rich_record(kind: Any, obj: Any) -> dict[str, Any]:
    """R13 in the outbox: ``media`` ``{"type", "url"}`` (a media message, or a button message's media
    header), ``buttons`` ``[{"id", "title"}]`` (a list's rows, in order, too) and ``list``."""
    record: dict[str, Any] = {"media": None, "buttons": None, "list": None}
    if not isinstance(obj, dict):
        return record
    if kind in MEDIA_TYPES:
        record["media"] = {"type": kind, "url": obj.get("link")}
        return record
    header, action = obj.get("header"), obj.get("action")
    if kind != "interactive" or not isinstance(action, dict):
        return record
    if (
        isinstance(header, dict)
        and header.get("type") in MEDIA_TYPES
        and isinstance(header.get(header["type"]), dict)
    ):
        record["media"] = {"type": header["type"], "url": header[header["type"]].get("link")}
    record.update(_choices(obj.get("type"), action))
    return record


def _choices(kind: Any, action: dict[str, Any]) -> dict[str, Any]:
    """``buttons`` (a button message's replies, or a list's rows in order) and ``list``."""
    record: dict[str, Any] = {}
    if kind == "button":
        replies = [b.get("reply") for b in _dicts(action.get("buttons"))]
        record["buttons"] = [
            {"id": r.get("id"), "title": r.get("title")} for r in replies if isinstance(r, dict)
        ]
    elif kind == "list":
        sections = _dicts(action.get("sections"))
        rows = [row for section in sections for row in _dicts(section.get("rows"))]
        record["buttons"] = [{"id": r.get("id"), "title": r.get("title")} for r in rows]
        record["list"] = {"button": action.get("button"), "sections": sections}
    return record


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


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
    if kind in MEDIA_TYPES:
        _validate_media(kind, obj)
    if kind == "interactive":
        _validate_interactive(obj)
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


def _validate_media(kind: str, obj: dict[str, Any], where: str | None = None) -> None:
    """A media object: ``link`` (an http(s) URL) or ``id``; a caption (not on audio); ``filename``
    (documents only)."""
    where = where or kind
    link, media_id = obj.get("link"), obj.get("id")
    if not (isinstance(link, str) and link.startswith(("https://", "http://"))) and not isinstance(
        media_id, str
    ):
        raise _Refused(
            100,
            f"{where}.link or {where}.id is required",
            f"(#100) The parameter {where}['link'] is required.",
        )
    caption = obj.get("caption")
    if caption is not None and (
        kind == "audio" or not isinstance(caption, str) or len(caption) > MAX_CAPTION
    ):
        raise _Refused(100, f"{where}.caption: not on audio, at most {MAX_CAPTION} characters")
    if obj.get("filename") is not None and kind != "document":
        raise _Refused(100, f"{where}.filename: documents only")


def _validate_interactive(obj: dict[str, Any]) -> None:
    """An interactive ``button`` or ``list`` message, with Meta's limits."""
    kind, body, action = obj.get("type"), obj.get("body"), obj.get("action")
    if kind not in ("button", "list"):
        raise _Refused(100, "interactive.type: button or list (the kinds crossroute sends)")
    text = body.get("text") if isinstance(body, dict) else None
    limit = MAX_BUTTON_BODY if kind == "button" else MAX_TEXT
    if not isinstance(text, str) or not text.strip() or len(text) > limit:
        raise _Refused(100, f"interactive.body.text is required, at most {limit} characters")
    if not isinstance(action, dict):
        raise _Refused(
            100, "interactive.action is required", "(#100) The parameter interactive['action'] is required."
        )
    if kind == "button":
        _validate_header(obj.get("header"))
        _validate_buttons(action.get("buttons"))
    else:
        _validate_list(obj.get("header"), action)


def _validate_header(header: Any) -> None:
    if header is None:
        return
    kind = header.get("type") if isinstance(header, dict) else None
    if kind == "text":
        return
    if kind not in ("image", "video", "document") or not isinstance(header.get(kind), dict):
        raise _Refused(100, "interactive.header: text, image, video or document")
    _validate_media(kind, header[kind], f"interactive.header.{kind}")


def _validate_buttons(buttons: Any) -> None:
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        raise _Refused(100, f"interactive.action.buttons: 1 to {MAX_BUTTONS} buttons")
    replies = [b.get("reply") if isinstance(b, dict) and b.get("type") == "reply" else None for b in buttons]
    for reply in replies:
        if not isinstance(reply, dict):
            raise _Refused(100, "interactive.action.buttons[]: {type: reply, reply: {id, title}}")
        _check_id_title(reply, MAX_BUTTON_ID, MAX_BUTTON_TITLE, "button")
    titles = [r["title"] for r in replies if isinstance(r, dict)]
    ids = [r["id"] for r in replies if isinstance(r, dict)]
    if len(set(titles)) != len(titles) or len(set(ids)) != len(ids):
        raise _Refused(100, "interactive.action.buttons: ids and titles must be unique")


def _validate_list(header: Any, action: dict[str, Any]) -> None:
    if header is not None and not (isinstance(header, dict) and header.get("type") == "text"):
        raise _Refused(100, "interactive.header: a list message has a text header only")
    label, sections = action.get("button"), action.get("sections")
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LIST_BUTTON:
        raise _Refused(100, f"interactive.action.button: required, at most {MAX_LIST_BUTTON} characters")
    if not isinstance(sections, list) or not 1 <= len(sections) <= MAX_SECTIONS:
        raise _Refused(100, f"interactive.action.sections: 1 to {MAX_SECTIONS} sections")
    rows = [row for section in sections for row in _section_rows(section, titled=len(sections) > 1)]
    if len(rows) > MAX_ROWS:
        raise _Refused(100, f"interactive.action.sections: at most {MAX_ROWS} rows in all")
    for row in rows:
        _validate_row(row)
    if len({r["id"] for r in rows}) != len(rows):
        raise _Refused(100, "interactive.action.sections: row ids must be unique")


def _section_rows(section: Any, *, titled: bool) -> list[Any]:
    """A list section's rows; its title is required when there are several sections."""
    if not isinstance(section, dict) or not isinstance(section.get("rows"), list) or not section["rows"]:
        raise _Refused(100, "interactive.action.sections[]: an object with rows")
    title = section.get("title")
    missing = title is None and titled
    if missing or (title is not None and (not isinstance(title, str) or len(title) > MAX_SECTION_TITLE)):
        raise _Refused(
            100, f"section title: required with several sections, at most {MAX_SECTION_TITLE} characters"
        )
    rows: list[Any] = section["rows"]
    return rows


def _validate_row(row: Any) -> None:
    if not isinstance(row, dict):
        raise _Refused(100, "interactive.action.sections[].rows[]: an object with id and title")
    _check_id_title(row, MAX_ROW_ID, MAX_ROW_TITLE, "row")
    description = row.get("description")
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_ROW_DESCRIPTION
    ):
        raise _Refused(100, f"row description: at most {MAX_ROW_DESCRIPTION} characters")


def _check_id_title(item: dict[str, Any], id_limit: int, title_limit: int, what: str) -> None:
    item_id, title = item.get("id"), item.get("title")
    if not isinstance(item_id, str) or not item_id or len(item_id) > id_limit or item_id != item_id.strip():
        raise _Refused(100, f"{what} id: 1 to {id_limit} characters, no leading or trailing space")
    if not isinstance(title, str) or not title.strip() or len(title) > title_limit:
        raise _Refused(100, f"{what} title: 1 to {title_limit} characters")


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
