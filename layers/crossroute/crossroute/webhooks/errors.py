"""Why a webhook request is refused, with the HTTP status each reason gets."""

from __future__ import annotations


class WebhookRejected(Exception):
    """A request crossroute will not queue. ``reason`` is a stable code for logs and metrics."""

    status = 400
    reason = "rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MalformedRequest(WebhookRejected):
    status, reason = 400, "malformed"


class BadSignature(WebhookRejected):
    status, reason = 401, "bad_signature"


class WrongVerifyToken(WebhookRejected):
    status, reason = 403, "wrong_verify_token"


class UnknownChannel(WebhookRejected):
    status, reason = 404, "unknown_channel"


class PayloadTooLarge(WebhookRejected):
    status, reason = 413, "too_large"


class UnsupportedMediaType(WebhookRejected):
    status, reason = 415, "unsupported_media_type"


class NotStored(WebhookRejected):
    """The queue did not take the event: the provider must retry, so this is never a 2xx."""

    status, reason = 503, "queue_unavailable"


class NoRegistry(WebhookRejected):
    """No usable tenant registry (``config.RegistryUnavailable``): the provider must retry, never a 2xx."""

    status, reason = 503, "registry_unavailable"
