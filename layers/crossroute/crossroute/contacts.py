"""The read side: a customer found by phone, BSUID or id, as ``GET /contacts`` shows it (docs/api.md),
its timeline, and its erasure (I10), over the ``ContactBook`` port. Timeline entries come ready from
the store. ``NoSuchContact`` and ``BadQuery`` are what the API answers 404 and 400 for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crossroute import ids
from crossroute.identity.model import Customer, Key
from crossroute.ports import ContactBook
from crossroute.routing.policy import WINDOW

TIMELINE_PAGE = 50  # entries per page unless ``limit`` says otherwise (1-200)


class NoSuchContact(LookupError):
    pass


class BadQuery(ValueError):
    pass


class Contacts:
    def __init__(self, book: ContactBook) -> None:
        self._book = book

    def find(self, tenant: str, query: Mapping[str, str], *, region: str) -> dict[str, Any]:
        """The contact named by exactly one of ``phone`` (national formats read in ``region``),
        ``bsuid`` or ``id``; a merged-away id finds its survivor (I4)."""
        asked = {name: query[name] for name in ("phone", "bsuid", "id") if query.get(name)}
        if len(asked) != 1:
            raise BadQuery("give exactly one of phone, bsuid, id")
        name, value = next(iter(asked.items()))
        if name == "id":
            return contact_view(self._customer(tenant, value))
        try:
            key = Key("phone", ids.e164(value, region)) if name == "phone" else Key("bsuid", ids.bsuid(value))
        except ids.InvalidIdentifier as exc:
            raise BadQuery(f"{name}: {exc}") from None
        holder = self._book.holders(tenant, [key]).get(key)
        if holder is None:
            raise NoSuchContact("no such contact")
        return contact_view(holder)

    def timeline(
        self, tenant: str, customer_id: str, *, limit: str | None, before: str | None
    ) -> dict[str, Any]:
        """One page, newest first, of the customer's timeline and of every id merged into it."""
        customer = self._customer(tenant, customer_id)
        raw_limit = limit or str(TIMELINE_PAGE)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
            raise BadQuery("limit: 1-200")
        items, cursor = self._book.timeline(
            tenant, [customer.id, *customer.merged_from], before=before, limit=int(raw_limit)
        )
        return {"customer_id": customer.id, "items": items, "next": cursor}

    def erase(self, tenant: str, customer_id: str) -> int:
        """I10: the customer and everything about it; the number of items deleted."""
        return self._book.erase(tenant, self._customer(tenant, customer_id))

    def _customer(self, tenant: str, customer_id: str) -> Customer:
        customer = self._book.customer(tenant, customer_id)
        if customer is None:
            raise NoSuchContact("no such contact")
        return customer


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
