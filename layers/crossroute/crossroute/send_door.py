"""The send door: ``POST /messages``. A send request is checked, remembered under its idempotency key and
put on the send queue; its answer is the request id (the first one given to that key). The same key with
a different request is refused (``IdempotencyKeyReused``). ``GET /messages/{request_id}`` reads what
became of it (``progress_view``).

Recorded before it is queued: a retry of the same POST queues it again, and dispatch is idempotent (R8).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from crossroute.log import child_logger
from crossroute.ports import SendProgress, SendQueue, SendRequests
from crossroute.routing.policy import UNKNOWN_SENDER, unknown_sender
from crossroute.routing.request import InvalidRequest, parse_send_request
from crossroute.senders import sender_channels
from crossroute.tenants import TenantRegistry

logger = child_logger(__name__)


class UnknownTenant(LookupError):
    """The request names a tenant this deployment does not have."""


class SendDoor:
    def __init__(
        self,
        requests: SendRequests,
        queue: SendQueue,
        registry: Callable[[], TenantRegistry],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._requests = requests
        self._queue = queue
        self._registry = registry
        self._clock = clock
        self._new_id = new_id

    def accept(self, doc: Any, *, default_tenant: Callable[[], str], key: str | None = None) -> str:
        """The request id of ``doc``, recorded and queued. ``default_tenant`` is asked only when ``doc``
        names none. ``key``: an idempotency key given beside the body (the ``Idempotency-Key`` header),
        in place of its ``idempotency_key``. Raises ``UnknownTenant``, ``InvalidRequest`` listing every
        problem, or ``IdempotencyKeyReused``."""
        if isinstance(doc, dict) and not doc.get("tenant"):
            doc = {**doc, "tenant": default_tenant()}
        if isinstance(doc, dict) and key is not None:
            doc = _with_key(doc, key)
        tenant_id = doc.get("tenant") if isinstance(doc, dict) else None
        tenant = self._registry().by_id(tenant_id) if isinstance(tenant_id, str) else None
        if tenant is None:
            raise UnknownTenant("unknown tenant")
        request = parse_send_request(doc, default_region=tenant.default_region)
        if unknown_sender(request, sender_channels(tenant)):
            raise InvalidRequest([UNKNOWN_SENDER])
        request_id = self._requests.accept(
            tenant=request.tenant,
            key=request.idempotency_key,
            request_id=self._new_id(),
            request=request.raw,
            now=self._clock(),
            to=request.to,  # indexed under its address until dispatch knows its customer (I10)
        )
        self._queue.enqueue(json.dumps(request.raw))
        logger.info("send request queued", extra={"tenant": request.tenant, "request_id": request_id})
        return request_id

    def progress(self, tenant: str, request_id: str) -> dict[str, Any] | None:
        """``GET /messages/{request_id}``: ``progress_view`` of the request, or None."""
        found = self._requests.progress(tenant, request_id)
        return progress_view(found) if found is not None else None


def _with_key(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """``doc`` with the key given beside it; a different ``idempotency_key`` in it is a problem."""
    if doc.get("idempotency_key") not in (None, key):
        raise InvalidRequest(["idempotency_key: differs from the Idempotency-Key header"])
    return {**doc, "idempotency_key": key}


# What a channel's send has come to, least to most advanced; a request's status is its best channel's.
_PROGRESS = ("failed", "sending", "sent", "delivered", "read")
_PROVIDER_STATUS = {
    "delivered": "delivered",
    "read": "read",
    "played": "read",  # a voice message listened to
    "failed": "failed",
    "undelivered": "failed",  # Twilio
}


def progress_view(found: SendProgress) -> dict[str, Any]:
    """A send request as ``GET /messages/{request_id}`` answers it: the request as accepted, its
    decision (R9), each channel's send with its provider status, and an overall ``status``: ``queued``
    (not decided yet, or nothing sent yet), ``sending``, ``sent``, ``delivered``, ``read``, ``failed``
    (every send failed) or ``undeliverable`` (no channel qualified, or dead-lettered: R12)."""
    record = found.record
    channels = {}
    for channel, state in record.sends.items():
        delivery = found.deliveries.get(channel)
        channels[channel] = {
            **{k: _iso(v) for k, v in state.items() if k not in ("attempt", "sender")},
            "from": state.get("sender"),
            "status": delivery.status if delivery else None,
            "status_at": _iso(delivery.at) if delivery else None,
            "errors": delivery.errors if delivery else [],
        }
    view = {
        "request_id": record.request_id,
        "tenant": record.tenant,
        "idempotency_key": record.idempotency_key,
        "created_at": _iso(found.created_at),
        "status": _status(found, channels),
        "customer_id": record.customer_id,
        "request": record.request,
        "decision": record.decision,
        "chosen": next((c["channel"] for c in record.decision if c.get("qualified")), None),
        "channels": channels,
        "dead_lettered_at": _iso(found.dead_lettered_at),
    }
    if record.external_id:
        view["external_id"] = record.external_id
    return view


def _status(found: SendProgress, channels: dict[str, dict[str, Any]]) -> str:
    decision = found.record.decision
    if found.dead_lettered_at is not None or (
        decision and not channels and not any(c.get("qualified") for c in decision)
    ):
        return "undeliverable"
    if not channels:
        return "queued"
    return _PROGRESS[max(_PROGRESS.index(_channel_progress(c)) for c in channels.values())]


def _channel_progress(channel: dict[str, Any]) -> str:
    """``sending`` until settled (also when its outcome is unknown), ``failed``, else the provider's
    latest word: ``sent`` (accepted) until it says delivered, read or failed."""
    if channel["state"] == "failed":
        return "failed"
    if channel["state"] != "sent":
        return "sending"
    return _PROVIDER_STATUS.get(channel["status"] or "", "sent")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
