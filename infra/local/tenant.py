"""The built-in local tenant (contract section 4), stored in the ``TenantsSecret`` of the local stack.

``CROSSROUTE_TENANTS_FILE=/path/registry.json`` replaces it with a whole registry document (the format
is in ``docs/registry.md``); either way the document is validated with ``TenantRegistry.from_json``
before the stack starts, as the functions will: a malformed tenant is left out with a warning naming it
and the JSON path, and the stack starts with the others; a document with no usable tenant stops it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["LOCAL_TENANT", "describe", "local_registry_document", "read_tenants_document", "validate"]

log = logging.getLogger("infra.local.tenant")

LOCAL_TENANT: dict[str, Any] = {
    "tenants": {
        "demo": {
            "default_region": "US",
            "meta": {
                "app_secret": "local-app-secret",
                "verify_token": "local-verify-token",
                "access_token": "local-access-token",
                "waba_id": "100000000000000",
                "phone_numbers": [
                    {
                        "phone_number_id": "100000000000001",
                        "display_phone_number": "15550100001",
                        "coexistence": False,
                    }
                ],
            },
            "twilio": {
                "account_sid": "AC00000000000000000000000000000000",
                "auth_token": "local-twilio-token",
                "sms_numbers": ["+15550100002"],
                "whatsapp_senders": ["whatsapp:+15550100003"],
                "messaging_service_sids": [],
                "mms_senders": ["+15550100002"],  # R13: a US long code, MMS-enabled as Twilio sells them
            },
        }
    }
}


def local_registry_document() -> str:
    return json.dumps(LOCAL_TENANT, indent=2)


def read_tenants_document(environ: Mapping[str, str] | None = None) -> str:
    """The registry document for the local stack: ``$CROSSROUTE_TENANTS_FILE`` or the built-in tenant."""
    environ = os.environ if environ is None else environ
    path = environ.get("CROSSROUTE_TENANTS_FILE", "").strip()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"CROSSROUTE_TENANTS_FILE: cannot read {path}: {exc}") from None
    else:
        text = local_registry_document()
    return text


def validate(text: str, *, where: str) -> None:
    """Raise ``ValueError`` unless the document has a usable tenant; log each tenant left out."""
    from crossroute.tenants import TenantRegistry  # the layer source, put on sys.path by the stack

    try:
        registry = TenantRegistry.from_json(text)
    except ValueError as exc:
        raise ValueError(f"tenant registry ({where}) is invalid: {exc}") from None
    if not registry.tenants:
        raise ValueError(f"tenant registry ({where}) has no tenants")
    for problem in registry.skipped:
        log.warning("tenant registry (%s): tenant %r left out: %s", where, problem.tenant, problem)


def describe(text: str) -> str:
    """A one-line summary of the registry for the startup log (ids only, no secrets)."""
    from crossroute.tenants import TenantRegistry

    parts = []
    registry = TenantRegistry.from_json(text)
    for tenant in registry.tenants:
        bits = []
        if tenant.meta:
            ids = ",".join(n.phone_number_id for n in tenant.meta.phone_numbers)
            bits.append(f"meta phone_number_id {ids or '-'}")
        if tenant.twilio:
            bits.append(f"twilio {tenant.twilio.account_sid}")
        parts.append(f"{tenant.id} ({'; '.join(bits) or 'no channels'})")
    left_out = sorted({str(problem.tenant) for problem in registry.skipped})
    if left_out:
        parts.append(f"left out (invalid): {', '.join(left_out)}")
    return ", ".join(parts)
