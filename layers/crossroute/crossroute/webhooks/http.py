"""What the webhook handlers share: wiring made once per cold start, routing, raw bodies, refusals.

The webhook functions answer two fixed routes each, so they route on API Gateway's ``routeKey``
themselves: Powertools' HTTP resolver would add ~95 ms (asyncio, every event class) to each cold start.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, TypeVar

from crossroute.config import RegistrySource, Settings
from crossroute.inbound_queue import InboundQueue, QueueUnavailable, SqsInboundQueue
from crossroute.log import child_logger
from crossroute.tenants import TenantRegistry
from crossroute.webhooks.errors import (
    BadSignature,
    NotStored,
    UnknownChannel,
    WebhookRejected,
    WrongVerifyToken,
)

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
    the registry is read on first use, so importing a handler calls no AWS API.
    """

    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        self.settings = settings
        # Fail fast: a provider waits for our answer, and a 5xx makes it retry anyway.
        config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
        self.queue: InboundQueue = SqsInboundQueue(
            boto3.client("sqs", config=config), settings.inbound_queue_url
        )

    @cached_property
    def registry(self) -> RegistrySource:
        return RegistrySource.from_secret(self.settings.tenants_secret_id)

    def attempt(self, use: Callable[[TenantRegistry], T]) -> T:
        return attempt(self.registry, use)


def attempt(source: RegistrySource, use: Callable[[TenantRegistry], T]) -> T:
    """Run ``use`` with the registry; after a miss, once more with a fresh copy (at most every 30 s)."""
    try:
        return use(source.get())
    except REGISTRY_MISSES:
        if not source.refreshable():
            raise
        return use(source.get(fresh=True))


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


def route(routes: Mapping[str, Route], event: HttpEvent) -> HttpResponse:
    """Call the route for ``event["routeKey"]`` (``"POST /webhooks/twilio"``); refusals become 4xx/5xx."""
    handler = routes.get(event.get("routeKey", ""))
    if handler is None:
        return response(404, "application/json", json.dumps({"message": "Not Found"}))
    try:
        return handler(event)
    except WebhookRejected as exc:
        return refusal(exc)
    except QueueUnavailable as exc:
        return refusal(NotStored(str(exc)))


def header(event: HttpEvent, name: str) -> str | None:
    """A request header (API Gateway lower-cases their names in payload 2.0)."""
    value = (event.get("headers") or {}).get(name.lower())
    return str(value) if value is not None else None


def refusal(exc: WebhookRejected) -> HttpResponse:
    """A refused request as a JSON error; logged without any payload content."""
    log = logger.error if exc.status >= 500 else logger.warning
    log("webhook refused", extra={"reason": exc.reason, "status": exc.status, "detail": exc.detail})
    return response(exc.status, "application/json", json.dumps({"error": exc.reason, "message": exc.detail}))
