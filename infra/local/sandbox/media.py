"""Fake media downloads (contract section 4): Meta's two-step download and Twilio's ``MediaUrlN``, with the
providers' auth checks, each answering a small deterministic file of the announced type.

- ``GET /_sandbox/graph[/<version>]/<media id>`` with the tenant's access token (``Authorization:
  Bearer``; missing: 401 code 104, wrong: 401 code 190) -> ``{"messaging_product", "url", "mime_type",
  "sha256", "file_size", "id"}``; ``url`` works for ``URL_SECONDS`` (Meta: 5 minutes) and only with the
  same token (401 without it, 404 once expired or altered).
- ``GET /_sandbox/twilio/2010-04-01/Accounts/<AccountSid>/Messages/<MessageSid>/Media/<MediaSid>`` with
  HTTP Basic ``AccountSid:AuthToken`` (401 code 20003 otherwise) -> the file, of the type the request's
  ``Accept`` names (the type the webhook announced), else ``image/jpeg``.
- ``GET|POST|DELETE /_sandbox/media``: per media id or MediaSid, ``{"mime_type", "size", "status"}``
  (``status``: answer that HTTP status instead, e.g. 404 for an expired id, 500 for a failing download);
  POST merges (``null`` forgets one), DELETE resets.

A file is ``size`` bytes (default ``DEFAULT_SIZE``): the type's magic number, then bytes derived from the
id, so the same id always gives the same bytes (and SHA-256).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from ..gateway import LocalRequest, LocalResponse
from .graph import authenticated_token
from .twilio_api import authenticated_channel, twilio_error

if TYPE_CHECKING:
    from . import Sandbox

__all__ = ["MediaFiles", "handle"]

URL_SECONDS = 300
DEFAULT_SIZE = 2048
DEFAULT_TYPE = "image/jpeg"
_MAGIC = {
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    "image/gif": b"GIF89a",
    "application/pdf": b"%PDF-1.4\n",
    "audio/ogg": b"OggS\x00\x02",
    "video/mp4": b"\x00\x00\x00\x18ftypmp42",
}
_GRAPH_ID = re.compile(r"/_sandbox/graph(?:/v\d{1,2}\.\d{1,2})?/(?P<id>\d{1,32})/?")
_GRAPH_FILE = re.compile(r"/_sandbox/graph/media-download/(?P<id>\d{1,32})")
_TWILIO = re.compile(
    r"/_sandbox/twilio/2010-04-01/Accounts/(?P<account>AC\w{32})/Messages/(?:MM|SM)\w{32}/Media/(?P<id>ME\w{32})"
)


class MediaFiles:
    """What the fakes serve for each id (``/_sandbox/media``), and the key of their download URLs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: dict[str, dict[str, Any]] = {}
        self._key = secrets.token_bytes(32)

    def setting(self, media_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._settings.get(media_id, {}))

    def update(self, doc: Any) -> None:
        if not isinstance(doc, dict) or not all(isinstance(v, dict | None) for v in doc.values()):
            raise ValueError('expected {"<media id>": {"mime_type", "size", "status"} or null}')
        with self._lock:
            for media_id, value in doc.items():
                if value is None:
                    self._settings.pop(str(media_id), None)
                else:
                    self._settings[str(media_id)] = {**self._settings.get(str(media_id), {}), **value}

    def clear(self) -> None:
        with self._lock:
            self._settings.clear()

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {k: dict(v) for k, v in self._settings.items()}

    def file(self, media_id: str, mime_type: str) -> bytes:
        """``size`` deterministic bytes of ``mime_type``."""
        size = int(self.setting(media_id).get("size", DEFAULT_SIZE))
        head = _MAGIC.get(mime_type, mime_type.encode() + b"\n")
        seed = hashlib.sha256(media_id.encode()).digest()
        body = (seed * (size // len(seed) + 1))[: max(0, size - len(head))]
        return (head + body)[:size]

    def signature(self, media_id: str, expires: int, token: str) -> str:
        message = f"{media_id}|{expires}|{hashlib.sha256(token.encode()).hexdigest()}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]


def handle(sb: Sandbox, request: LocalRequest) -> LocalResponse | None:
    """The response to a media request, or None when ``request`` is not one."""
    if request.path.rstrip("/") == "/_sandbox/media":
        return _settings(sb, request)
    if request.method != "GET":
        return None
    if m := _GRAPH_FILE.fullmatch(request.path):
        return _graph_file(sb, request, m["id"])
    if m := _GRAPH_ID.fullmatch(request.path):
        return _graph_metadata(sb, request, m["id"])
    if m := _TWILIO.fullmatch(request.path):
        return _twilio_file(sb, request, m["account"], m["id"])
    return None


def _settings(sb: Sandbox, request: LocalRequest) -> LocalResponse:
    if request.method == "POST":
        try:
            sb.media.update(request.json())
        except ValueError as exc:
            return LocalResponse.json(400, {"message": str(exc)})
    elif request.method == "DELETE":
        sb.media.clear()
    elif request.method != "GET":
        return LocalResponse.json(405, {"message": "Method Not Allowed"})
    return LocalResponse.json(200, sb.media.as_json())


def _graph_metadata(sb: Sandbox, request: LocalRequest, media_id: str) -> LocalResponse:
    token = authenticated_token(sb, request)
    if isinstance(token, LocalResponse):
        return token
    setting = sb.media.setting(media_id)
    if "status" in setting:
        return _status(int(setting["status"]))
    mime_type = str(setting.get("mime_type", DEFAULT_TYPE))
    data = sb.media.file(media_id, mime_type)
    expires = int(time.time()) + URL_SECONDS
    query = urlencode({"expires": expires, "sig": sb.media.signature(media_id, expires, token)})
    doc = {
        "messaging_product": "whatsapp",
        "url": f"{sb.base_url}/_sandbox/graph/media-download/{media_id}?{query}",
        "mime_type": mime_type,
        "sha256": hashlib.sha256(data).hexdigest(),
        "file_size": str(len(data)),  # Meta sends it as a string at times
        "id": media_id,
    }
    return LocalResponse.json(200, doc)


def _graph_file(sb: Sandbox, request: LocalRequest, media_id: str) -> LocalResponse:
    token = authenticated_token(sb, request)
    if isinstance(token, LocalResponse):
        return token
    query = dict(parse_qsl(request.query))
    expires = int(query["expires"]) if query.get("expires", "").isdigit() else 0
    expected = sb.media.signature(media_id, expires, token)
    if expires < time.time() or not hmac.compare_digest(query.get("sig", ""), expected):
        return LocalResponse.json(404, {"error": {"message": "URL expired or invalid", "code": 100}})
    mime_type = str(sb.media.setting(media_id).get("mime_type", DEFAULT_TYPE))
    return _file(sb, media_id, mime_type)


def _twilio_file(sb: Sandbox, request: LocalRequest, account: str, media_sid: str) -> LocalResponse:
    if authenticated_channel(sb, request, account) is None:
        return twilio_error(20003)
    setting = sb.media.setting(media_sid)
    accept = (request.headers.get("Accept") or "").split(",")[0].split(";")[0].strip().lower()
    announced = accept if "/" in accept and "*" not in accept else DEFAULT_TYPE
    return _file(sb, media_sid, str(setting.get("mime_type", announced)))


def _file(sb: Sandbox, media_id: str, mime_type: str) -> LocalResponse:
    setting = sb.media.setting(media_id)
    if "status" in setting:
        return _status(int(setting["status"]))
    data = sb.media.file(media_id, mime_type)
    return LocalResponse(200, [("Content-Type", mime_type)], data)


def _status(status: int) -> LocalResponse:
    return LocalResponse.json(status, {"message": f"configured with POST /_sandbox/media ({status})"})
