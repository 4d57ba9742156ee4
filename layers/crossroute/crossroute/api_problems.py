"""Errors of the HTTP API (every route but the webhooks) as RFC 9457 problem documents:
``application/problem+json``, ``{"type", "title", "status", "detail", "errors"?}`` plus extension members.

``type`` is ``urn:crossroute:problem:<kind>``, one of ``KINDS``; its meaning is documented in docs/api.md.
``errors`` lists every problem found in the request as ``{"field", "problem"}`` (with a ``code`` where the
rule has one). Only what is safe to show the caller goes in: no stack traces, no other customer's data.
"""

from __future__ import annotations

import json
from typing import Any

CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:crossroute:problem:"

# kind -> (status, title). A title is the same for every occurrence of its kind (RFC 9457 §3.1.3).
KINDS: dict[str, tuple[int, str]] = {
    "validation": (400, "The request is not valid"),
    "tenant-required": (400, "Several tenants: name one"),
    "unknown-tenant": (404, "No such tenant"),
    "not-found": (404, "Not found"),
    "conflict": (409, "A key of the record is held by another customer"),
    "idempotency-key-reused": (422, "The idempotency key is already used by a different request"),
    "internal": (500, "Internal error"),
    "busy": (503, "Busy: try again"),
    "registry-unavailable": (503, "Tenant registry unavailable"),
}
RETRY_AFTER = {"busy": 1, "registry-unavailable": 5}  # seconds, sent as ``Retry-After``


class ApiProblem(Exception):
    """Raised by a route; answered as its problem document."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        self.kind = kind
        self.detail = detail
        self.errors = errors
        self.extensions = extensions

    @property
    def status(self) -> int:
        return KINDS[self.kind][0]

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": TYPE_PREFIX + self.kind,
            "title": KINDS[self.kind][1],
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            doc["errors"] = self.errors
        return {**self.extensions, **doc}

    def headers(self) -> dict[str, str]:
        retry = RETRY_AFTER.get(self.kind)
        return {"Retry-After": str(retry)} if retry is not None else {}

    def body(self) -> str:
        return json.dumps(self.document())


def field_problems(problems: list[str]) -> list[dict[str, str]]:
    """``"field: problem"`` lines (``routing.request.InvalidRequest``) as ``{"field", "problem"}``; a line
    about the whole body has the field ``body``."""
    found = []
    for line in problems:
        name, sep, problem = line.partition(": ")
        if not sep or " " in name.replace(" and/or ", "/"):
            name, problem = "body", line
        found.append({"field": name.replace(" and/or ", "/"), "problem": problem})
    return found
