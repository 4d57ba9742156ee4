"""SMS through Twilio's Messages API, with the twilio SDK.

``twilio.rest`` (and ``requests`` under it) costs ~120 ms to import, so it is loaded when the first SMS is
sent, not when this module is. Twilio has no idempotency key for Messages: a ``create`` whose outcome is
unknown (timeout or dropped connection after sending) is reported as ``unknown`` and never sent again here.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from crossroute.channels import Outbound, SendFailed, Sent
from crossroute.channels.errors import error_code, safe_title, transport_outcome, twilio_outcome
from crossroute.ids import E164_PATTERN
from crossroute.log import child_logger

logger = child_logger(__name__)


# The SDK logs every request's URL and headers at INFO; keep that out of the function's logs.
_SDK_LOGGER = logging.getLogger("crossroute.channels.twilio_sdk")
_SDK_LOGGER.setLevel(logging.WARNING)


class TwilioSmsClient:
    """A ``Sender`` for SMS through one Twilio account (``TwilioWhatsAppClient``: WhatsApp, R11).
    ``base_url`` (e.g. the local sandbox) receives every SDK request instead of ``*.twilio.com``, path and
    query kept."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str | None = None,
        timeout: float = 10,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._base_url = base_url
        self._timeout = float(timeout)
        self._sdk: Any = None  # twilio.rest.Client, built on the first send

    kind = "sms"  # in log messages

    def arguments(self, message: Outbound) -> dict[str, Any]:
        """The ``messages.create`` arguments for ``message`` (``ValueError`` when it cannot be sent)."""
        return sms_arguments(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._account_sid!r})"  # never the token

    def send(self, message: Outbound) -> Sent:
        """Send once. Raises ``SendFailed`` with Twilio's code and what it means, or ``ValueError`` for a
        message that is not an SMS to an E.164 phone with a text."""
        arguments = self.arguments(message)
        client = self._client()
        from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException

        try:
            created = client.messages.create(**arguments)
        except (TwilioRestException, TwilioServiceException) as error:
            status = error_code(error.status) or 0
            # Without a Twilio code in the body, the SDK puts the HTTP status in `code`.
            code = error_code(error.code)
            code = code if code is not None and code >= 1000 else None
            outcome = twilio_outcome(code, status)
            logger.warning(
                f"{self.kind} send refused", extra={"outcome": outcome, "code": code, "http_status": status}
            )
            text = error.msg if isinstance(error, TwilioRestException) else error.title
            raise SendFailed("twilio", outcome, code, safe_title(text) or f"HTTP {status}") from error
        except OSError as error:  # requests' errors (connect, timeout, dropped connection) are OSErrors
            outcome = transport_outcome(error)
            logger.warning(
                f"{self.kind} send got no answer", extra={"outcome": outcome, "error": type(error).__name__}
            )
            raise SendFailed("twilio", outcome, None, f"no answer: {type(error).__name__}") from error
        except (TwilioException, ValueError) as error:
            # Anything else, e.g. a 2xx body that is not JSON: it may well have been sent.
            logger.warning(
                f"{self.kind} send failed", extra={"outcome": "unknown", "error": type(error).__name__}
            )
            raise SendFailed("twilio", "unknown", None, type(error).__name__) from error
        sid = getattr(created, "sid", None)
        if not isinstance(sid, str) or not sid:
            raise SendFailed("twilio", "unknown", None, "accepted without a message SID")
        return Sent("twilio", sid)

    def _client(self) -> Any:
        if self._sdk is None:
            from twilio.rest import Client

            http_client = _http_client(self._timeout, self._base_url)
            self._sdk = Client(self._account_sid, self._auth_token, http_client=http_client)
        return self._sdk


def sms_arguments(message: Outbound) -> dict[str, Any]:
    """The ``messages.create`` arguments: ``messaging_service_sid`` when sending from a service (MG…),
    else ``from_``; ``body``, and an MMS image as ``media_url`` (R13); ``status_callback`` when given."""
    if message.channel != "sms":
        raise ValueError("not an SMS")
    if message.to is None or E164_PATTERN.fullmatch(message.to) is None:
        raise ValueError("`to` must be an E.164 phone")
    if (
        message.recipient is not None
        or message.template is not None
        or message.reply_to is not None
        or message.interactive is not None
    ):
        raise ValueError("an SMS has only `to`, `text` and an MMS image (buttons are rendered as text)")
    if not message.text and message.media is None:
        raise ValueError("an SMS needs `text` (or an MMS image)")
    if not message.business:
        raise ValueError("no sender: a phone number or a messaging service SID")
    sender = "messaging_service_sid" if message.business.startswith("MG") else "from_"
    arguments: dict[str, Any] = {"to": message.to, sender: message.business}
    if message.text:
        arguments["body"] = message.text
    if message.media is not None:
        arguments["media_url"] = [message.media.url]
    if message.status_callback:
        arguments["status_callback"] = message.status_callback
    return arguments


def _http_client(timeout: float, base_url: str | None) -> Any:
    """A ``TwilioHttpClient``; with ``base_url``, one that rewrites every final URL to that host. Setting
    ``client.api.base_url`` would cover only the ``api`` domain, and ``TWILIO_EDGE``/``TWILIO_REGION``
    rewrite hostnames after it; the HTTP client sees the URL last."""
    from twilio.http.http_client import TwilioHttpClient

    if base_url is None:
        return TwilioHttpClient(timeout=timeout, logger=_SDK_LOGGER)
    target = urlsplit(base_url)
    if target.scheme not in ("http", "https") or not target.netloc:
        raise ValueError("base_url must be an http(s) URL")
    prefix = target.path.rstrip("/")

    class RedirectingHttpClient(TwilioHttpClient):  # type: ignore[misc]
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            parts = urlsplit(url)
            redirected = urlunsplit((target.scheme, target.netloc, prefix + parts.path, parts.query, ""))
            return super().request(method, redirected, *args, **kwargs)

    return RedirectingHttpClient(timeout=timeout, logger=_SDK_LOGGER)
