"""What the webhook handlers share: wiring made once per cold start, raw bodies, refusals as responses."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response

from crossroute.config import RegistrySource, Settings
from crossroute.inbound_queue import SqsInboundQueue
from crossroute.webhooks.errors import WebhookRejected

logger = Logger(child=True)


@dataclass
class Wiring:
    """Adapters of a webhook function, created lazily so importing a handler touches no AWS API."""

    settings: Settings

    @cached_property
    def registry(self) -> RegistrySource:
        return RegistrySource.from_secret(self.settings.tenants_secret_id)

    @cached_property
    def queue(self) -> SqsInboundQueue:
        import boto3
        from botocore.config import Config

        # Fail fast: a provider waits for our answer, and a 5xx makes it retry anyway.
        config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
        return SqsInboundQueue(boto3.client("sqs", config=config), self.settings.inbound_queue_url)


def raw_body(event: dict[str, Any]) -> bytes:
    """The exact bytes the provider sent (API Gateway base64-encodes form and binary bodies)."""
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")


def base_url(settings: Settings, event: dict[str, Any]) -> str:
    """The public base URL providers call: configured, else the host API Gateway was reached on."""
    return settings.public_base_url or f"https://{event['requestContext']['domainName']}"


def refusal(exc: WebhookRejected) -> Response[str]:
    """A refused request as a JSON error; logged without any payload content."""
    log = logger.error if exc.status >= 500 else logger.warning
    log("webhook refused", extra={"reason": exc.reason, "status": exc.status, "detail": exc.detail})
    return Response(exc.status, "application/json", json.dumps({"error": exc.reason, "message": exc.detail}))
