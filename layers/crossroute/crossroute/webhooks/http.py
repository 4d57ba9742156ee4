"""What the webhook handlers share: wiring made once per cold start, routing, raw bodies, refusals.

The webhook functions answer two fixed routes each, so they route on API Gateway's ``routeKey``
themselves: Powertools' HTTP resolver would add ~95 ms (asyncio, every event class) to each cold start.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from crossroute.config import RegistrySource, RegistryUnavailable, Settings
from crossroute.inbound_queue import InboundQueue, QueueUnavailable, SqsInboundQueue
from crossroute.log import child_logger
from crossroute.tenants import TenantRegistry
from crossroute.webhooks.errors import (
    BadSignature,
    NoRegistry,
    NotStored,
    UnknownChannel,
    WebhookRejected,
    WrongVerifyToken,
)

if TYPE_CHECKING:
    from crossroute.ports import Metrics

logger = child_logger(__name__)

HttpEvent = dict[str, Any]
HttpResponse = dict[str, Any]
Route = Callable[[HttpEvent], HttpResponse]
T = TypeVar("T")
# Misses that a tenant added a moment ago would explain: worth one fresh read of the registry.
REGISTRY_MISSES = (UnknownChannel, BadSignature, WrongVerifyToken)


class Wiring:
    """Adapters of a webhook function, made once per cold start.

    The SQS client is built during init (Lambda's init phase, and what a cold start really costs);
    the registry is read on first use, so importing a handler calls no AWS API. ``on_invalid`` is called
    with a reason code for each unusable registry document read (the ``RegistryInvalid`` metric).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_invalid: Callable[[str], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.settings = settings
        self.metrics = metrics
        if on_invalid is None and metrics is not None:
            on_invalid = lambda reason: metrics.count("RegistryInvalid")  # noqa: E731 - the reason is logged
        self._on_invalid = on_invalid
        # Fail fast: a provider waits for our answer, and a 5xx makes it retry anyway.
        config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
        self.queue: InboundQueue = SqsInboundQueue(
            boto3.client("sqs", config=config), settings.inbound_queue_url
        )

    @cached_property
    def registry(self) -> RegistrySource:
        return RegistrySource.from_secret(self.settings.tenants_secret_id, on_invalid=self._on_invalid)

    def attempt(self, use: Callable[[TenantRegistry], T]) -> T:
        return attempt(self.registry, use)


def attempt(source: RegistrySource, use: Callable[[TenantRegistry], T]) -> T:
    """Run ``use`` with the registry; after a miss, once more with a fresh copy (at most every 30 s).
    Without any usable registry the request is refused with 503 (``NoRegistry``), so the provider retries."""
    try:
        return use(_registry(source, fresh=False))
    except REGISTRY_MISSES:
        if not source.refreshable():
            raise
        return use(_registry(source, fresh=True))


def _registry(source: RegistrySource, *, fresh: bool) -> TenantRegistry:
    try:
        return source.get(fresh=fresh)
    except RegistryUnavailable:
        # The reason was logged where the registry was read; the provider learns nothing about it.
        raise NoRegistry("the tenant registry is unavailable; retry later") from None


def raw_body(event: HttpEvent) -> bytes:
    """The exact bytes the provider sent (API Gateway base64-encodes form and binary bodies)."""
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")


def base_url(settings: Settings, event: HttpEvent) -> str:
    """The public base URL providers call: configured, else the host API Gateway was reached on."""
    return settings.public_base_url or f"https://{event['requestContext']['domainName']}"


def response(status: int, content_type: str, body: str) -> HttpResponse:
    """An API Gateway HTTP API (payload 2.0) response; never content-sniffed (the handshake echoes input)."""
    headers = {"Content-Type": content_type, "X-Content-Type-Options": "nosniff"}
    return {"statusCode": status, "headers": headers, "body": body}


def route(routes: Mapping[str, Route], event: HttpEvent, metrics: Metrics | None = None) -> HttpResponse:
    """Call the route for ``event["routeKey"]`` (``"POST /webhooks/twilio"``); refusals become 4xx/5xx.
    ``metrics``: a POST answered 2xx counts ``WebhookAccepted``, a refusal ``WebhookRejected`` by reason."""
    key = str(event.get("routeKey", ""))
    handler = routes.get(key)
    if handler is None:
        return response(404, "application/json", json.dumps({"message": "Not Found"}))
    try:
        answer = handler(event)
    except WebhookRejected as exc:
        rejected = exc
    except QueueUnavailable as exc:
        rejected = NotStored(str(exc))
    else:
        if metrics is not None and key.startswith("POST ") and answer["statusCode"] < 300:
            metrics.count("WebhookAccepted")
        return answer
    if metrics is not None:
        metrics.count("WebhookRejected", dimension=rejected.reason)
    return refusal(rejected)


def header(event: HttpEvent, name: str) -> str | None:
    """A request header (API Gateway lower-cases their names in payload 2.0)."""
    value = (event.get("headers") or {}).get(name.lower())
    return str(value) if value is not None else None


def refusal(exc: WebhookRejected) -> HttpResponse:
    """A refused request as a JSON error; logged without any payload content."""
    log = logger.error if exc.status >= 500 else logger.warning
    log("webhook refused", extra={"reason": exc.reason, "status": exc.status, "detail": exc.detail})
    return response(exc.status, "application/json", json.dumps({"error": exc.reason, "message": exc.detail}))
