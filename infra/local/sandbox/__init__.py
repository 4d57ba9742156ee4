"""Sandbox providers (contract section 4): a fake Graph API and a fake Twilio REST API that the real
provider clients talk to, recording every send. Local only, never deployed; mounted by the local stack
under ``/_sandbox/``, and the functions get ``META_GRAPH_BASE_URL=<base>/_sandbox/graph`` and
``TWILIO_API_BASE_URL=<base>/_sandbox/twilio``.

Routes
======

``POST /_sandbox/graph/<version>/<phone_number_id>/messages``
    Meta's send. ``Authorization: Bearer <the tenant's access token>`` (or ``?access_token=``): missing
    -> 401 code 104, wrong -> 401 code 190; a phone_number_id not registered (or another tenant's) ->
    400 code 100 subcode 33. The JSON body is checked like Meta does (code 100 otherwise):
    ``messaging_product: "whatsapp"``, ``recipient_type`` absent or ``individual``, ``to`` (a phone,
    ``+`` optional) or ``recipient`` (a BSUID); **``to`` wins** when both are given; ``type`` (default
    ``text``) with its object: ``text.body``, ``template.name`` + ``template.language.code``; ``image``,
    ``video``, ``audio``, ``document`` with ``{link (http(s)) or id, caption? (not on audio, <=1024),
    filename? (documents only)}``; ``interactive`` ``button`` (``body.text`` <=1024, ``action.buttons``
    1-3 of ``{type: reply, reply: {id <=256 without edge spaces, title <=20}}``, ids and titles unique,
    an optional ``header`` text/image/video/document) or ``list`` (``body.text`` <=4096, a text header
    only, ``action.button`` <=20, ``action.sections`` 1-10, a title <=24 required with more than one,
    <=10 rows in all, row id <=200 unique, title <=24, description <=72); code 100 otherwise. Answer:
    ``{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"?, "user_id"?}], "messages":
    [{"id": "wamid.…"}]}``. A BSUID in ``to`` is accepted (Meta does not refuse it) and then fails with
    131026. ``{"status": "read", "message_id": …}`` (mark as read) answers ``{"success": true}``, no record.
    Then signed (``X-Hub-Signature-256``, the tenant's app secret) status webhooks go to the stack's
    ``/webhooks/whatsapp``: ``sent``, ``delivered``, ``read`` in order, or ``failed`` with
    ``errors[{code, title, message, error_data.details, href}]`` (a failed status of a phone send names
    the phone only, as Meta does). Refused webhooks are retried 3 times (0.5, 1, 2 s).

``POST /_sandbox/twilio/2010-04-01/Accounts/<AccountSid>/Messages.json``
    Twilio's send (what ``client.messages.create`` posts). HTTP Basic ``AccountSid:AuthToken`` (401 code
    20003 otherwise); form parameters ``To``, ``From`` or ``MessagingServiceSid``, ``Body`` (or
    ``MediaUrl`` / ``ContentSid``), ``StatusCallback``. Checks, in order: 21604 no To, 21603 no From /
    service, 21602 no body, 21617 body over 1600, 21910 ``whatsapp:`` on one side only, 21211 To not a
    phone (a BSUID only as ``whatsapp:XX.…``), 21705 unknown messaging service, 21606 From not the
    account's, 21609 bad StatusCallback; then ``MediaUrl`` (repeatable): at most 10 (21623), each an
    absolute http(s) URL (21620). Answer ``201`` with a Message resource (``sid`` ``SM`` + 32 hex,
    ``status`` ``queued``, or ``accepted`` for a messaging service without From, as Twilio does) or a
    Twilio error ``{"code", "message", "more_info", "status"}`` with its HTTP status. Then, only when a
    ``StatusCallback`` was given, signed (``X-Twilio-Signature`` over that exact URL and every form
    parameter) callbacks with ``MessageSid``/``SmsSid``, ``MessageStatus``/``SmsStatus``, ``To``,
    ``From``, ``AccountSid``, ``ApiVersion`` (+ ``MessagingServiceSid``, ``ErrorCode``,
    ``ErrorMessage``): ``sent``, ``delivered`` by default. A callback URL under the stack's public base
    URL is delivered to the stack itself (signed over the public URL). Retried once, only when the
    connection failed (as Twilio does).

``GET /_sandbox/graph[/<version>]/<media id>``, then the ``url`` it answers
    Meta's media download (``sandbox/media.py``): any media id, only with a tenant's access token
    (401 code 104 / 190 otherwise): ``{"url", "mime_type", "sha256", "file_size", "id"}``, the ``url``
    valid for 5 minutes and only with the same token, then a small deterministic file of that type.

``GET /_sandbox/twilio/2010-04-01/Accounts/<AccountSid>/Messages/<MessageSid>/Media/<MediaSid>``
    Twilio's ``MediaUrlN``: any media, only with HTTP Basic ``AccountSid:AuthToken`` (401 code 20003
    otherwise), a small deterministic file of the type the request's ``Accept`` names (``image/jpeg``
    otherwise).

``GET|POST|DELETE /_sandbox/media``
    What a media id or MediaSid is served as: ``{"1029384756102938": {"mime_type": "application/pdf",
    "size": 20000000}, "ME…": {"status": 500}}`` (``status``: answer with it instead: 404 for an expired
    id, 5xx for a failing download). ``POST`` merges (``null`` forgets one), ``DELETE`` resets.

``GET /_sandbox/outbox`` (optional filters ``?provider=&channel=&to=&recipient=&provider_message_id=``)
    Every send the fakes received from an authenticated client, oldest first: ``{"provider",
    "channel", "to", "recipient", "from", "type", "text", "template", "provider_message_id", "at"}``
    (``from``: the sending phone_number_id for Meta; Twilio's ``From`` as given, else its
    ``MessagingServiceSid``), and ``"media"`` (``{"type", "url"}``: Meta's media message or a button
    message's media header; Twilio's first ``MediaUrl``, its type guessed from the file extension, or
    null), ``"buttons"`` (``[{"id", "title"}]``: the reply buttons, or a list's rows in order; null for
    Twilio) and ``"list"`` (``{"button", "sections"}`` or null). ``text`` is the words shown (a text
    body, a caption, an interactive body); ``type`` is Meta's (``image``, ``interactive``, ...), and
    ``media`` for a Twilio send with a ``MediaUrl``. A send
    the fake refused (validation or a configured error) has ``"error_code"`` too and no message id.
    WhatsApp ``to`` is E.164 (``+`` and digits), kept verbatim when it is not a phone (a BSUID in ``to``
    shows up there). Requests refused for authentication or an unknown sender are not recorded.
    ``DELETE /_sandbox/outbox`` empties it (``{"deleted": n}``). Kept to the last 10,000 sends.

``GET|POST|DELETE /_sandbox/recipients``
    How the fakes treat a recipient. ``POST`` merges, per recipient (``null`` forgets one); ``DELETE``
    resets all; each answers the whole configuration. Keys: a BSUID or a phone (normalised to E.164)::

        {"whatsapp": {"NL.77": {"status": "failed", "error_code": 131026},
                      "+15550123456": {"status": "delivered", "user_id": "US.5"}},
         "sms": {"+15550123456": {"error_code": 21610}}}

    WhatsApp options: ``status`` - the last status reported (``sent`` | ``delivered`` | ``read``
    (default) | ``failed``); ``error_code`` - the failed status's code (alone it implies ``failed``;
    default 131026); ``sync_error_code`` - the API call itself fails with that Meta error (HTTP 400,
    401 for 190/104, 5xx for 1/2/131000/131016); ``user_id`` (for a phone) / ``phone`` (for a BSUID) -
    the other identifier Meta reports in ``contacts`` and statuses.
    SMS options (the fake Twilio's, also for WhatsApp via Twilio to a phone): ``error_code`` -
    a 2xxxx code (21610, 21211, 21614, 20429, ...) makes the API call fail synchronously (HTTP 400, 429
    for 20429); a 3xxxx / 6xxxx code is reported later: ``failed`` for 30001, 30002, 30010, 63016,
    otherwise ``sent`` then ``undelivered``; ``status`` - the last status (``sent`` | ``delivered``
    (default) | ``read`` | ``undelivered`` (default code 30003) | ``failed`` (default code 30001));
    ``sync_error_code`` - fail the API call with any code.

``GET|DELETE /_sandbox/callbacks``
    The status webhooks / callbacks posted so far (``provider``, ``provider_message_id``, ``status``,
    ``url``, ``attempt``, ``http_status``, ``error``, ``at``), oldest first; ``?pending`` counts those
    still waiting.

Status timing: each status follows the previous one after a random delay, 50-200 ms by default
(``CROSSROUTE_SANDBOX_DELAY_MS``: ``"50-200"``, ``"100"``, ``"0"``). One worker thread posts them all
(at most 10,000 waiting); it stops with the stack. Each send logs one INFO line with the recipient
masked (``crossroute.privacy.mask``), never a body.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from ..gateway import LocalRequest, LocalResponse
from . import graph, media, twilio_api
from .callbacks import Callback, CallbackWorker, Plan
from .state import ConfigError, Outbox, Recipients

if TYPE_CHECKING:
    from crossroute.tenants import TenantRegistry

__all__ = ["Sandbox", "parse_delay_ms"]

log = logging.getLogger("infra.local.sandbox")

DEFAULT_DELAY_MS = (50.0, 200.0)


def parse_delay_ms(raw: str) -> tuple[float, float]:
    """``"50-200"`` / ``"100"`` / ``"0"`` -> (min, max) milliseconds."""
    text = raw.strip()
    low, sep, high = text.partition("-")
    try:
        lo = float(low)
        hi = float(high) if sep else lo
    except ValueError:
        raise ValueError(f"CROSSROUTE_SANDBOX_DELAY_MS: expected '50-200' or '100', got {raw!r}") from None
    if lo < 0 or hi < lo:
        raise ValueError(f"CROSSROUTE_SANDBOX_DELAY_MS: expected 0 <= min <= max, got {raw!r}")
    return lo, hi


class Sandbox:
    """Both fake providers, their outbox and recipient settings. Mount :meth:`handle` at ``/_sandbox/``;
    :meth:`bind` once the stack knows its tenants and address; :meth:`stop` with the stack."""

    def __init__(self, *, delay_ms: tuple[float, float] = DEFAULT_DELAY_MS) -> None:
        self.delay_ms = delay_ms
        self._registry: TenantRegistry | None = None
        self.outbox = Outbox()
        self.recipients = Recipients()
        self.worker = CallbackWorker()
        self.media = media.MediaFiles()  # fake media downloads (sandbox/media.py)
        self.base_url = ""
        self.public_base_url = ""
        self._bound = False
        self._random = random.Random()  # noqa: S311 - timing jitter, not security

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Sandbox:
        env = os.environ if environ is None else environ
        raw = env.get("CROSSROUTE_SANDBOX_DELAY_MS", "").strip()
        return cls(delay_ms=parse_delay_ms(raw) if raw else DEFAULT_DELAY_MS)

    # ------------------------------------------------------------------ lifecycle
    def bind(self, tenants_document: str, *, base_url: str, public_base_url: str | None = None) -> None:
        """Use this tenant registry and post webhooks to the stack at ``base_url``; starts the worker."""
        from crossroute.tenants import RegistryError, TenantRegistry

        try:
            self._registry = TenantRegistry.from_json(tenants_document)
        except RegistryError as exc:
            log.warning("sandbox providers disabled: the tenant registry is invalid (%s)", exc)
            self._registry = TenantRegistry(())
        self.base_url = base_url.rstrip("/")
        self.public_base_url = (public_base_url or base_url).rstrip("/")
        self.worker.start()
        self._bound = True

    def stop_callbacks(self) -> None:
        """Post no more status callbacks (those not yet due are dropped); the fake APIs keep answering
        until :meth:`stop`, so that sends in flight can finish while the stack stops."""
        self.worker.stop(timeout=0)

    def stop(self, timeout: float = 5.0) -> None:
        self._bound = False
        self.worker.stop(timeout)

    @property
    def registry(self) -> TenantRegistry:
        """The tenants whose tokens, numbers and secrets the fakes use (set by :meth:`bind`)."""
        if self._registry is None:
            raise RuntimeError("Sandbox.bind() has not been called")
        return self._registry

    def environment(self) -> dict[str, str]:
        """What the functions need to talk to the fakes instead of the real providers."""
        return {
            "META_GRAPH_BASE_URL": f"{self.base_url}/_sandbox/graph",
            "TWILIO_API_BASE_URL": f"{self.base_url}/_sandbox/twilio",
        }

    # ------------------------------------------------------------------ helpers for the fakes
    def delay(self) -> float:
        lo, hi = self.delay_ms
        return self._random.uniform(lo, hi) / 1000.0

    def deliverable(self, url: str) -> str:
        """Where to POST a callback for ``url``: the stack itself for a URL under its public base URL."""
        public = self.public_base_url
        if public and public != self.base_url and (url == public or url.startswith(public + "/")):
            return self.base_url + url[len(public) :]
        return url

    def report(self, plan: Plan, callback: Callable[[str, int | None], Callback]) -> None:
        """Schedule ``callback(status, code)`` for each status of ``plan``, each one a random delay
        after the previous one."""
        at = time.monotonic()
        for status, code in plan:
            at += self.delay()
            self.worker.schedule(callback(status, code), at)

    def record_refusal(self, record: Mapping[str, Any], code: int) -> None:
        """A send the fake refused: in the outbox with its error code and no message id, and logged."""
        self.outbox.add(**record, provider_message_id=None, error_code=code)
        self.log_send(record, f"refused {code}")

    def log_send(self, record: Mapping[str, Any], outcome: str) -> None:
        """One INFO line per send; the recipient masked (normalised first, so one person, one tag)."""
        from crossroute.privacy import mask

        provider, channel = record.get("provider"), record.get("channel")
        address = record.get("to") or record.get("recipient")

        log.info(
            "sandbox %s %s %s to %s: %s", provider, channel, record.get("type") or "-", mask(address), outcome
        )

    # ------------------------------------------------------------------ routes
    def handle(self, request: LocalRequest) -> LocalResponse:
        path = request.path
        if not self._bound:
            return LocalResponse.json(503, {"message": "the sandbox providers are starting"})
        media_response = media.handle(self, request)
        if media_response is not None:
            return media_response
        if path.startswith("/_sandbox/graph/"):
            return graph.handle(self, request)
        if path.startswith("/_sandbox/twilio/"):
            return twilio_api.handle(self, request)
        routes = {
            "/_sandbox/outbox": self._outbox,
            "/_sandbox/recipients": self._recipients,
            "/_sandbox/callbacks": self._callbacks,
        }
        route = routes.get(path.rstrip("/"))
        if route is None:
            return LocalResponse.json(404, {"message": "Not Found"})
        return route(request, dict(parse_qsl(request.query, keep_blank_values=True)))

    def _outbox(self, request: LocalRequest, query: dict[str, str]) -> LocalResponse:
        if request.method == "GET":
            return LocalResponse.json(200, self.outbox.list(query))
        if request.method == "DELETE":
            return LocalResponse.json(200, {"deleted": self.outbox.clear()})
        return _not_allowed()

    def _recipients(self, request: LocalRequest, _query: dict[str, str]) -> LocalResponse:
        if request.method == "POST":
            try:
                self.recipients.update(request.json())
            except ValueError as exc:  # also malformed JSON
                message = str(exc) if isinstance(exc, ConfigError) else "body is not JSON"
                return LocalResponse.json(400, {"message": message})
        elif request.method == "DELETE":
            self.recipients.clear()
        elif request.method != "GET":
            return _not_allowed()
        return LocalResponse.json(200, self.recipients.as_json())

    def _callbacks(self, request: LocalRequest, query: dict[str, str]) -> LocalResponse:
        if request.method == "GET":
            if "pending" in query:
                return LocalResponse.json(200, {"pending": self.worker.pending()})
            return LocalResponse.json(200, self.worker.history())
        if request.method == "DELETE":
            self.worker.clear_history()
            return LocalResponse.json(200, [])
        return _not_allowed()


def _not_allowed() -> LocalResponse:
    return LocalResponse.json(405, {"message": "Method Not Allowed"})
