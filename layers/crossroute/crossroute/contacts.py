"""The read side: a customer as the contract's ``GET /contacts`` shows it, and its timeline."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from crossroute.identity.model import Customer
from crossroute.store.tables import IdentityEventItem, MessageItem, TableItem

WINDOW = timedelta(hours=24)  # R1: the customer service window a WhatsApp message opens


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


def timeline_entry(item: TableItem) -> dict[str, Any]:
    """One timeline row: a message in or out, or an identity event (I9)."""
    if isinstance(item, MessageItem):
        return {
            "kind": "message",
            "direction": item.direction,
            "channel": item.channel,
            "provider": item.provider,
            "message_id": item.message_id,
            "business": item.business,
            "type": item.message_type,
            "text": item.text,
            "at": item.sent_at.isoformat() if item.sent_at else None,
            "status": item.status,
            "status_at": item.status_at.isoformat() if item.status_at else None,
            "errors": json.loads(item.errors) if item.errors else [],
            "historical": bool(item.historical),
            "customer_id": item.customer_id,
        }
    if isinstance(item, IdentityEventItem):
        return {
            "kind": "identity",
            "change": item.kind,
            "at": item.at.isoformat(),
            "source": item.source,
            "event_id": item.event_id,
            "detail": json.loads(item.detail),
            "customer_id": item.customer_id,
        }
    return {
        "kind": item.type if isinstance(item.type, str) else "other",
        "at": (item.gsi1sk or "").split("#")[0],
    }
