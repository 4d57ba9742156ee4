"""Masking for logs: phone numbers, BSUIDs, usernames and bodies never reach INFO logs in clear.

Every tag that stands for an identifier is an HMAC-SHA256 under the stack's secret key (template
``MaskingKey``), never a bare hash: phone numbers are few enough to enumerate, so a bare hash of one can
be reversed. A function that logs identifiers, or queues inbound events (their FIFO group ids are such
tags), calls ``configure`` (or ``configure_from_env``) once at init with the key's cached loader; the key
is read on first use, so a cold start that never masks anything reads no secret.

Without a configured key (tests, scripts, a function not given the key) the tags use a random key drawn
per process: they still reveal nothing, but do not correlate across processes (containers); log tags
made so start with ``~``. Each use has its own key derived from the stack's (``purpose``), so a log tag,
a group id and an erasure tombstone (``keyed_digest``) of one value are unrelated.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable, Mapping
from functools import lru_cache

# Drawn once per process: the key when none is configured (see the module docstring).
_PROCESS_KEY = os.urandom(32)
# After the configured key could not be read, log tags use the per-process key this long before retrying.
RETRY_AFTER_S = 60.0
LOG = "log"  # the purpose of ``fingerprint``'s key


class KeyUnavailable(RuntimeError):
    """The stack's masking key is configured but could not be read (Secrets Manager failed)."""


class _Key:
    """The configured loader and, once read, the key: read once per process, whichever thread asks."""

    def __init__(self) -> None:
        self.loader: Callable[[], bytes] | None = None
        self.key: bytes | None = None
        self.failed_at = float("-inf")
        self.lock = threading.Lock()

    def get(self, *, strict: bool) -> bytes | None:
        """The stack's key; None when none is configured, or (not ``strict``) while it cannot be read."""
        loader = self.loader
        if loader is None:
            return None
        with self.lock:
            if self.key is None:
                if not strict and time.monotonic() - self.failed_at < RETRY_AFTER_S:
                    return None
                try:
                    self.key = loader()
                except Exception as exc:
                    self.failed_at = time.monotonic()
                    if strict:
                        raise KeyUnavailable(type(exc).__name__) from exc
                    _warn_unavailable(exc)
                    return None
            return self.key


_key = _Key()


def configure(key: Callable[[], bytes] | None) -> None:
    """Key every tag of this process with ``key()`` (``crossroute.config.masking_key``: read on first
    use, then cached); None: the per-process key again."""
    with _key.lock:
        _key.loader, _key.key, _key.failed_at = key, None, float("-inf")


def configure_from_env(env: Mapping[str, str] = os.environ) -> None:
    """``configure`` with the secret ``MASKING_KEY_SECRET_ID`` names. Unset, in Lambda it is a deployment
    error (raised at init: the template gives it to each function that calls this); elsewhere (tests,
    scripts) the per-process key is used."""
    from crossroute.config import ConfigurationError, masking_key

    secret_id = env.get("MASKING_KEY_SECRET_ID")
    if secret_id:
        configure(masking_key(secret_id))
    elif env.get("AWS_LAMBDA_FUNCTION_NAME"):
        raise ConfigurationError("environment variable MASKING_KEY_SECRET_ID is not set")
    else:
        configure(None)


def configured() -> bool:
    """Whether tags use the stack's key (once it is read) rather than the per-process one."""
    return _key.loader is not None


def fingerprint(value: str) -> str:
    """A short tag for correlating one identifier across log lines: 12 hex digits of an HMAC under the
    stack's key, so without the key nothing can be recovered by enumerating phone numbers. ``~`` and 12
    digits under the per-process key (no key configured, or it could not be read)."""
    key = _key.get(strict=False)
    tag = _tag(key or _PROCESS_KEY, LOG, value)[:12]
    return tag if key is not None else f"~{tag}"


def mask(value: str | None) -> str:
    """``+16…#3f2a9c1b0d4e``-style mask: enough to eyeball, never enough to contact anyone."""
    if not value:
        return "-"
    keep = value[:3] if len(value) > 8 else ""
    return f"{keep}…#{fingerprint(value)}"


def stable_tag(purpose: str, value: str, chars: int = 32) -> str:
    """``chars`` hex digits of an HMAC of ``value`` under the stack's key for ``purpose``: the same in
    every process of the stack. Raises ``KeyUnavailable`` if the configured key cannot be read (a tag
    under another key would not be stable); unconfigured, the per-process key (tests, scripts)."""
    return _tag(_key.get(strict=True) or _PROCESS_KEY, purpose, value)[:chars]


def keyed_digest(key: bytes, *parts: str) -> str:
    """HMAC-SHA256 of ``parts`` under the stack's masking key: stable, and without the key not
    recoverable by enumerating phone numbers or ids (unlike a bare hash)."""
    message = "\n".join(parts).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def _tag(key: bytes, purpose: str, value: str) -> str:
    return hmac.new(_subkey(key, purpose), value.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=16)
def _subkey(key: bytes, purpose: str) -> bytes:
    """The key for one use, derived from the stack's (HMAC as a PRF, one label per purpose)."""
    return hmac.new(key, f"crossroute.privacy/{purpose}".encode(), hashlib.sha256).digest()


def _warn_unavailable(exc: Exception) -> None:
    from crossroute.log import child_logger

    child_logger(__name__).warning(
        "masking key unavailable: log tags use a per-process key for now", extra={"error": type(exc).__name__}
    )
