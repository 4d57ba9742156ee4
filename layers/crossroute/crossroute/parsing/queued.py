"""Queued provider payloads -> crossroute events (``crossroute.inbound``): the one place that reads them.

``parse`` takes one body of the inbound queue (``crossroute.inbound_queue``) and returns ``Parsed``: the
events it holds and short reasons for every identifier it had to drop. It never raises on provider
data: what it does not understand becomes ``Unrecognised``. Meta's and Twilio's field names stay in
``parsing.meta`` and ``parsing.twilio``; identity hygiene (I1, I2) in ``parsing.context.Context``.
The ingest function runs it; the webhooks only authenticate and queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from crossroute import correlation, limits
from crossroute.inbound import InboundMessage, Provider, ProviderEvent, Raw
from crossroute.inbound_queue import SCHEMA
from crossroute.parsing import meta, twilio
from crossroute.parsing.context import Context

MAX_KEYWORD_CHARS = 32  # as the registry schema's whatsapp_opt_in_keywords allow


@dataclass
class Parsed:
    """What one queued body held: events in provider order, and PII-free reasons for what was dropped."""

    events: list[ProviderEvent] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    correlation_id: str | None = None  # the webhook request's, when the body carries one


def parse(queued_body: str | dict[str, Any], *, default_region: str = "US") -> Parsed:
    """The events of one inbound-queue body; never raises on what a provider sent.

    National phone formats are read in the body's ``region`` (the tenant's), else in ``default_region``.
    """
    body = _body(queued_body)
    if isinstance(body, str):
        return Parsed(rejected=[body])
    ctx = Context(
        str(body["tenant"]),
        _received_at(body),
        _region(body.get("region"), default_region),
        business=_business(body.get("business")),
    )
    kind = str(body.get("kind"))
    reader = _KINDS.get(kind)
    if reader is None:
        return Parsed(rejected=["unknown queued kind"])
    try:
        events = reader(ctx, body)
    except Exception as exc:  # a parser bug must not poison the queue; tests assert this never happens
        provider: Provider = "meta" if kind.startswith("meta.") else "twilio"
        events = [ctx.unrecognised(provider, kind, f"parser failed: {type(exc).__name__}", body)]
    keywords = _keywords(body.get("opt_in_keywords"))
    if keywords:  # R15: each message carries its tenant's opt-in keywords to identity/profile.py
        events = [_with_keywords(e, keywords) for e in events]
    return Parsed(events, ctx.rejected, _correlation_id(body.get("correlation_id")))


def _with_keywords(event: ProviderEvent, keywords: tuple[str, ...]) -> ProviderEvent:
    return replace(event, opt_in_keywords=keywords) if isinstance(event, InboundMessage) else event


def _keywords(value: Any) -> tuple[str, ...]:
    """The tenant's opt-in keywords as the intake wrote them; anything else is none."""
    if not isinstance(value, list):
        return ()
    return tuple(k for k in value if isinstance(k, str) and 0 < len(k) <= MAX_KEYWORD_CHARS)


_KINDS: dict[str, Callable[[Context, Raw], list[ProviderEvent]]] = {
    "meta.webhook": lambda ctx, body: meta.parse_payload(ctx, body.get("payload")),
    "twilio.message": lambda ctx, body: twilio.parse_message(ctx, body.get("form")),
    "twilio.status": lambda ctx, body: twilio.parse_status(ctx, body.get("form")),
}


def _body(queued_body: str | dict[str, Any]) -> dict[str, Any] | str:
    """The queued JSON object, or the reason it is not one."""
    if isinstance(queued_body, str | bytes):
        try:
            queued_body = json.loads(queued_body)
        except ValueError:
            return "queued body is not JSON"
    if not isinstance(queued_body, dict):
        return "queued body is not an object"
    if queued_body.get("schema", SCHEMA) != SCHEMA:
        return "unsupported queue schema"
    tenant = queued_body.get("tenant")
    if not isinstance(tenant, str) or not tenant:
        return "queued body without tenant"
    return queued_body


def _correlation_id(value: Any) -> str | None:
    ok = isinstance(value, str) and 0 < len(value) <= correlation.MAX_CHARS and value.isprintable()
    return value if ok else None


def _received_at(body: Raw) -> datetime:
    # Set by our own intake; "now" only if a hand-made body lacks it.
    try:
        at = datetime.fromisoformat(str(body.get("received_at")))
    except ValueError:
        return datetime.now(UTC)
    return at.replace(tzinfo=at.tzinfo or UTC).astimezone(UTC)


def _region(value: Any, fallback: str) -> str:
    """The tenant's region as the intake wrote it, if it looks like one."""
    ok = isinstance(value, str) and len(value) == 2 and value.isascii() and value.isupper()
    return value if ok else fallback


def _business(value: Any) -> str:
    ok = isinstance(value, str) and 0 < len(value) <= limits.PROVIDER_ID_CHARS
    return value if ok else ""
