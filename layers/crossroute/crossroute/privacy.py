"""Masking for logs: phone numbers, BSUIDs, usernames and bodies never reach INFO logs in clear."""

from __future__ import annotations

import hashlib
import hmac


def fingerprint(value: str) -> str:
    """A short, stable, non-reversible tag for correlating one identifier across log lines."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def mask(value: str | None) -> str:
    """``+1650…34#3f2a9c``-style mask: enough to eyeball, never enough to contact anyone."""
    if not value:
        return "-"
    keep = value[:3] if len(value) > 8 else ""
    return f"{keep}…#{fingerprint(value)}"


def keyed_digest(key: bytes, *parts: str) -> str:
    """HMAC-SHA256 of ``parts`` under the stack's masking key: stable, and without the key not
    recoverable by enumerating phone numbers or ids (unlike a bare hash)."""
    message = "\n".join(parts).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]
