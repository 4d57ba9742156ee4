"""WhatsApp through Meta's Cloud API: one ``POST /<version>/<phone_number_id>/messages`` per message.

HTTP is urllib3, which botocore already depends on (the Lambda runtime ships it, and a function that talks
to DynamoDB has imported it anyway): no extra package, nothing extra at cold start. One pool per execution
environment is shared by every client, so warm invocations reuse the TLS connection to graph.facebook.com.
urllib3 never retries here: a request is sent at most once, and what happened is classified
(``errors.meta_outcome`` for Meta's answers, ``errors.transport_outcome`` when there is none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

from crossroute.channels import Interactive, Media, Outbound, SendFailed, Sent
from crossroute.channels.errors import error_code, meta_outcome, safe_title, transport_outcome
from crossroute.ids import E164_PATTERN, PARENT_BSUID_PATTERN, is_bsuid
from crossroute.log import child_logger

logger = child_logger(__name__)


# The Graph API version and host when the function is given none (template parameter GraphApiVersion).
GRAPH_VERSION = "v24.0"
GRAPH_BASE_URL = "https://graph.facebook.com"


class PoolResponse(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


class HttpPool(Protocol):
    """The part of ``urllib3.PoolManager`` this client uses."""

    def request(
        self, method: str, url: str, *, body: bytes, headers: Mapping[str, str], **kw: Any
    ) -> PoolResponse: ...


_shared_pool: HttpPool | None = None


def shared_pool() -> HttpPool:
    """The execution environment's one urllib3 pool (made on first use): kept alive between invocations."""
    global _shared_pool
    if _shared_pool is None:
        import urllib3

        _shared_pool = urllib3.PoolManager(num_pools=4, maxsize=8, retries=False)
    return _shared_pool


class MetaCloudClient:
    """A ``Sender`` for WhatsApp through the Cloud API of one access token (a tenant's system user)."""

    def __init__(
        self,
        access_token: str,
        *,
        graph_version: str = GRAPH_VERSION,
        base_url: str = GRAPH_BASE_URL,
        timeout: float | tuple[float, float] = (2, 10),
        http: HttpPool | None = None,
    ) -> None:
        import urllib3

        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._timeout = urllib3.Timeout(connect=connect, read=read)
        self._http = http if http is not None else shared_pool()
        self._prefix = f"{base_url.rstrip('/')}/{graph_version.strip('/')}"
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def __repr__(self) -> str:
        return f"MetaCloudClient({self._prefix!r})"  # never the token

    def send(self, message: Outbound) -> Sent:
        """Send once. Raises ``SendFailed`` with Meta's code and what it means, or ``ValueError`` for a
        message that must never reach Meta (a BSUID in ``to``, no recipient, not exactly one content)."""
        from urllib3.exceptions import HTTPError, LocationValueError

        body = json.dumps(whatsapp_payload(message)).encode()
        url = f"{self._prefix}/{quote(message.business, safe='')}/messages"
        try:
            response = self._http.request(
                "POST", url, body=body, headers=self._headers, timeout=self._timeout, retries=False
            )
        except LocationValueError:
            raise  # a malformed base_url or phone_number_id: a bug, not a provider failure
        except (HTTPError, OSError) as error:
            outcome = transport_outcome(error)
            logger.warning(
                "whatsapp send got no answer", extra={"outcome": outcome, "error": type(error).__name__}
            )
            raise SendFailed("meta", outcome, None, f"no answer: {type(error).__name__}") from error
        return _read(response.status, response.data, response.headers)


def whatsapp_payload(message: Outbound) -> dict[str, Any]:
    """The Cloud API body for ``message``: ``to`` for a phone, else ``recipient`` for a BSUID (R2)."""
    if message.channel != "whatsapp":
        raise ValueError("not a WhatsApp message")
    if not message.business:
        raise ValueError("no phone_number_id to send from")
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    if message.to is not None:
        if E164_PATTERN.fullmatch(message.to) is None:
            # Never a BSUID (or anything else) in `to`: Meta drops it silently or fails with 131026.
            raise ValueError("`to` must be an E.164 phone; a BSUID goes in `recipient`")
        payload["to"] = message.to  # `to` wins over `recipient` at Meta too: send only one
    elif message.recipient is not None:
        if not (is_bsuid(message.recipient) or PARENT_BSUID_PATTERN.fullmatch(message.recipient)):
            raise ValueError("`recipient` must be a BSUID or a parent BSUID")
        payload["recipient"] = message.recipient
    else:
        raise ValueError("no recipient: `to` or `recipient` is needed")
    if message.reply_to:
        payload["context"] = {"message_id": message.reply_to}
    payload.update(_content(message))
    return payload


def _content(message: Outbound) -> dict[str, Any]:
    """``type`` and its object: a template; else buttons or a list (``interactive``, R13); else media
    (captioned with the text); else text."""
    free_form = message.text is not None or message.media is not None or message.interactive is not None
    if free_form == (message.template is not None):
        raise ValueError("exactly one of a template or free-form content (text, media, buttons)")
    if message.template is not None:
        template: dict[str, Any] = {
            "name": message.template.name,
            "language": {"code": message.template.language},
        }
        if message.template.components:
            template["components"] = list(message.template.components)
        return {"type": "template", "template": template}
    if message.interactive is not None:
        if not message.text:
            raise ValueError("buttons and lists need `text`, their body")
        return {
            "type": "interactive",
            "interactive": _interactive(message.interactive, message.text, message.media),
        }
    if message.media is not None:
        return {"type": message.media.type, message.media.type: _media(message.media, message.text)}
    return {"type": "text", "text": {"body": message.text, "preview_url": False}}


def _media(media: Media, text: str | None) -> dict[str, Any]:
    """A media object by ``link``: its caption (the media's, else the text; never on audio), and a
    document's file name."""
    obj: dict[str, Any] = {"link": media.url}
    caption = media.caption or text
    if caption and media.type != "audio":
        obj["caption"] = caption
    if media.filename and media.type == "document":
        obj["filename"] = media.filename
    return obj


def _interactive(interactive: Interactive, body: str, media: Media | None) -> dict[str, Any]:
    """An interactive ``button`` message (a media header when given) or ``list`` message (R13)."""
    obj: dict[str, Any] = {"type": interactive.kind, "body": {"text": body}}
    if interactive.sections:
        sections = [
            {
                **({"title": s.title} if s.title else {}),
                "rows": [
                    {
                        "id": r.id,
                        "title": r.title,
                        **({"description": r.description} if r.description else {}),
                    }
                    for r in s.rows
                ],
            }
            for s in interactive.sections
        ]
        obj["action"] = {"button": interactive.list_button, "sections": sections}
        return obj
    if media is not None:
        header = {"link": media.url, **({"filename": media.filename} if media.filename else {})}
        obj["header"] = {"type": media.type, media.type: header}
    obj["action"] = {
        "buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in interactive.buttons]
    }
    return obj


def _read(status: int, data: bytes, headers: Mapping[str, str]) -> Sent:
    """Meta's answer: what was sent, or ``SendFailed`` saying what its error means."""
    doc = _json_object(data)
    if 200 <= status < 300:
        return _accepted(status, doc)
    raise _refusal(status, doc, headers)


def _accepted(status: int, doc: dict[str, Any]) -> Sent:
    """A 2xx answer: the message id statuses will name, and the recipient ids Meta echoed."""
    message_id = _first_object(doc, "messages").get("id")
    if not isinstance(message_id, str) or not message_id:
        # Accepted, perhaps, but nothing to match statuses on: resending could duplicate it.
        raise SendFailed("meta", "unknown", None, f"HTTP {status} without a message id")
    echoed = {
        key: value
        for key, value in _first_object(doc, "contacts").items()
        if key in ("wa_id", "user_id") and isinstance(value, str)
    }
    return Sent("meta", message_id, echoed)


def _first_object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """``doc[key][0]`` when that is an object, else an empty one."""
    items = doc.get(key)
    first = items[0] if isinstance(items, list) and items else None
    return first if isinstance(first, dict) else {}


def _refusal(status: int, doc: dict[str, Any], headers: Mapping[str, str]) -> SendFailed:
    """An error answer: Meta's code, what it means for the router, and when to retry."""
    error = doc.get("error")
    error = error if isinstance(error, dict) else {}
    code = error_code(error.get("code"))
    outcome = meta_outcome(code, status)
    retry_after = _retry_after(headers) if outcome == "retry" else None
    logger.warning(
        "whatsapp send refused",
        extra={
            "outcome": outcome,
            "code": code,
            "http_status": status,
            "fbtrace_id": error.get("fbtrace_id"),
        },
    )
    title = safe_title(error.get("message")) or f"HTTP {status}"
    return SendFailed("meta", outcome, code, title, retry_after=retry_after)


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:  # an HTML error page from a proxy, an empty body
        return {}
    return doc if isinstance(doc, dict) else {}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds when given as a number (HTTP dates are not worth parsing here)."""
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
