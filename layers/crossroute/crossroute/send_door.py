"""The send door: ``POST /messages``. A send request is checked, remembered under its idempotency key and
put on the send queue; its answer is the request id (the first one given to that key).

Recorded before it is queued: a retry of the same POST queues it again, and dispatch is idempotent (R8).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from crossroute.log import child_logger
from crossroute.ports import SendQueue, SendRequests
from crossroute.routing.policy import UNKNOWN_SENDER, BusinessNumber, TenantChannels, unknown_sender
from crossroute.routing.request import InvalidRequest, SendRequest, parse_send_request
from crossroute.tenants import Tenant, TenantRegistry

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

    def accept(self, doc: Any, *, default_tenant: Callable[[], str]) -> str:
        """The request id of ``doc``, recorded and queued. ``default_tenant`` is asked only when ``doc``
        names none. Raises ``UnknownTenant``, or ``InvalidRequest`` listing every problem."""
        if isinstance(doc, dict) and not doc.get("tenant"):
            doc = {**doc, "tenant": default_tenant()}
        tenant_id = doc.get("tenant") if isinstance(doc, dict) else None
        tenant = self._registry().by_id(tenant_id) if isinstance(tenant_id, str) else None
        if tenant is None:
            raise UnknownTenant("unknown tenant")
        request = parse_send_request(doc, default_region=tenant.default_region)
        if _unknown_sender(request, tenant):
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


def _unknown_sender(request: SendRequest, tenant: Tenant) -> bool:
    """R10: the request's ``from`` is none of the tenant's Meta numbers and Twilio SMS senders."""
    meta = tuple(
        BusinessNumber(n.phone_number_id, n.display_phone_number)
        for n in (tenant.meta.phone_numbers if tenant.meta else ())
    )
    twilio = tenant.twilio
    channels = TenantChannels(
        None,
        None,
        whatsapp_numbers=meta,
        sms_numbers=twilio.sms_numbers if twilio else (),
        messaging_services=twilio.messaging_service_sids if twilio else (),
    )
    return unknown_sender(request, channels)
