"""The read side: a customer as ``GET /contacts`` shows it (docs/api.md). Timeline entries come ready
from the store (``ContactBook.timeline``)."""

from __future__ import annotations

from typing import Any

from crossroute.identity.model import Customer
from crossroute.routing.policy import WINDOW


def contact_view(customer: Customer) -> dict[str, Any]:
    """Contract §6: fields may grow, never shrink."""
    windows = {b: (at + WINDOW).isoformat() for b, at in sorted(customer.whatsapp_last_inbound.items())}
    return {
        "id": customer.id,
        "tenant": customer.tenant,
        "phones": [{"e164": p.e164, "status": p.status, "source": p.source} for p in customer.phones],
        "bsuids": [{"id": b.id, "status": b.status} for b in customer.bsuids],
        "parent_bsuid": customer.parent_bsuid,
        "username": customer.username,
        "name": customer.name,
        "sms_opted_out": customer.sms_opted_out,
        "marketing_opted_out": customer.marketing_opted_out,
        "whatsapp": {"window_open_until": max(windows.values(), default=None), "windows": windows},
        "merged_from": list(customer.merged_from),
        "created_at": customer.created_at.isoformat(),
        "updated_at": customer.updated_at.isoformat(),
    }
