"""Settings from the function environment, and the tenant registry from Secrets Manager."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

from crossroute.tenants import RegistryError, TenantRegistry


class ConfigurationError(RuntimeError):
    """The function is deployed without a setting it needs."""


@dataclass(frozen=True)
class Settings:
    """What template.yaml passes to the webhook functions (Globals, and PUBLIC_BASE_URL on each)."""

    tenants_secret_id: str
    inbound_queue_url: str
    # Empty: use the host API Gateway reports (see template parameter PublicBaseUrl).
    public_base_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            tenants_secret_id=require_env("TENANTS_SECRET_ID", env),
            inbound_queue_url=require_env("INBOUND_QUEUE_URL", env),
            public_base_url=optional_env("PUBLIC_BASE_URL", "", env),
        )


def require_env(name: str, env: Mapping[str, str] = os.environ) -> str:
    """A setting template.yaml must have passed to the function."""
    value = env.get(name)
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def optional_env(name: str, default: str = "", env: Mapping[str, str] = os.environ) -> str:
    """A setting with a default: unset and empty both mean the default."""
    return env.get(name) or default


def masking_key(secret_id: str) -> Callable[[], bytes]:
    """The stack's secret key for keyed hashes (template ``MaskingKey``), read from Secrets Manager on
    first use, then kept for the container's life: it never changes once deployed."""

    @cache
    def load() -> bytes:
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_secret(secret_id)).encode()

    return load


class RegistryUnavailable(RuntimeError):
    """No usable tenant registry: none could be read yet, or every document read so far was unusable.
    The webhooks answer 503 for it, so that providers retry."""


class RegistrySource:
    """The tenant registry, cached per container; re-read after ``max_age`` or, rate-limited, on a miss.

    A newly read document that is wholly unusable (``RegistryError``: not JSON, not a registry, no usable
    tenant) or that cannot be read at all does not replace the last usable one: it is logged at WARNING
    and the previous registry is kept until the next read. Each unusable document read is reported to
    ``on_invalid`` with its reason code (the ``RegistryInvalid`` metric). Tenants left out of a usable
    document are logged at WARNING, one line per problem: tenant id, JSON path, what is wrong; and the
    read is reported to ``on_invalid`` too (``tenant_invalid``): the others are served, someone is not.

    Before any usable document, ``get`` raises ``RegistryUnavailable`` and reads again (bypassing the
    secret's cache) at most every ``refresh_interval`` seconds.
    """

    def __init__(
        self,
        load: Callable[[bool], str],
        *,
        max_age: float = 300.0,
        refresh_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_invalid: Callable[[str], None] | None = None,
    ) -> None:
        self._load = load
        self._max_age = max_age
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._on_invalid = on_invalid
        self._registry: TenantRegistry | None = None
        self._loaded_at = float("-inf")  # the last read, usable or not
        self._unusable = "not read yet"  # why there is no registry, while there is none

    @classmethod
    def from_secret(
        cls, secret_id: str, *, on_invalid: Callable[[str], None] | None = None
    ) -> RegistrySource:
        """Read the registry document from Secrets Manager (Powertools caches the value)."""
        from aws_lambda_powertools.utilities import parameters

        def load(force: bool) -> str:
            return str(parameters.get_secret(secret_id, max_age=0 if force else 300, force_fetch=force))

        return cls(load, on_invalid=on_invalid)

    def get(self, *, fresh: bool = False) -> TenantRegistry:
        """The registry (``fresh``: read again first); ``RegistryUnavailable`` while none is usable."""
        now = self._clock()
        age = now - self._loaded_at
        if self._registry is None:
            if fresh or age >= self._refresh_interval:
                # A retry after an unusable read skips the secret's cache: the fix may be there already.
                self._read(force=fresh or self._loaded_at > float("-inf"), now=now)
        elif fresh or age > self._max_age:
            self._read(force=fresh, now=now)
        if self._registry is None:
            raise RegistryUnavailable(self._unusable)
        return self._registry

    def refreshable(self) -> bool:
        """Whether a fresh read is allowed now: at most one every ``refresh_interval`` seconds."""
        return self._clock() - self._loaded_at >= self._refresh_interval

    def _read(self, force: bool, now: float) -> None:
        """Read and parse the document; keep the previous registry when it is unusable."""
        self._loaded_at = now
        kept = "keeping the previous registry" if self._registry else "no registry yet"
        try:
            text = self._load(force)
        except Exception as exc:  # Secrets Manager unreachable, throttled, denied: same answer as unusable
            self._unusable = f"registry could not be read ({type(exc).__name__})"
            _logger().warning("tenant registry not read; %s", kept, extra={"error": type(exc).__name__})
            return
        try:
            registry = TenantRegistry.from_json(text)
        except RegistryError as exc:
            self._unusable = str(exc)
            _logger().warning(
                "tenant registry unusable; %s", kept, extra={"reason": exc.reason, "problem": str(exc)}
            )
            if self._on_invalid is not None:
                self._on_invalid(exc.reason)
            return
        for problem in registry.skipped:
            _logger().warning(
                "tenant left out of the registry",
                extra={"tenant": problem.tenant, "path": problem.path, "problem": problem.message},
            )
        if registry.skipped and self._on_invalid is not None:  # the others are served: still alarm
            self._on_invalid("tenant_invalid")
        self._registry = registry


def _logger() -> logging.Logger:
    """What ``crossroute.log.child_logger`` gives (that module imports this one, so not from there)."""
    return logging.getLogger(f"{optional_env('POWERTOOLS_SERVICE_NAME', 'service_undefined')}.{__name__}")
