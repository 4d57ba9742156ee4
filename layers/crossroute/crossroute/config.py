"""Settings from the function environment, and the tenant registry from Secrets Manager."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

from crossroute.tenants import TenantRegistry
from crossroute.webhooks.errors import BadSignature, UnknownChannel, WrongVerifyToken

T = TypeVar("T")


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
        try:
            return cls(
                tenants_secret_id=env["TENANTS_SECRET_ID"],
                inbound_queue_url=env["INBOUND_QUEUE_URL"],
                public_base_url=env.get("PUBLIC_BASE_URL", ""),
            )
        except KeyError as missing:
            raise ConfigurationError(f"environment variable {missing} is not set") from None


def require_env(name: str, env: Mapping[str, str] = os.environ) -> str:
    """A setting template.yaml must have passed to the function."""
    value = env.get(name)
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def masking_key(secret_id: str) -> Callable[[], bytes]:
    """The stack's secret key for keyed hashes (template ``MaskingKey``), read from Secrets Manager on
    first use, then kept for the container's life: it never changes once deployed."""

    @cache
    def load() -> bytes:
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_secret(secret_id)).encode()

    return load


# Misses that a tenant added a moment ago would explain: worth one fresh read of the registry.
_REGISTRY_MISSES = (UnknownChannel, BadSignature, WrongVerifyToken)


class RegistrySource:
    """The tenant registry, cached per container; re-read after ``max_age`` or, rate-limited, on a miss."""

    def __init__(
        self,
        load: Callable[[bool], str],
        *,
        max_age: float = 300.0,
        refresh_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._max_age = max_age
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._registry: TenantRegistry | None = None
        self._loaded_at = float("-inf")

    @classmethod
    def from_secret(cls, secret_id: str) -> RegistrySource:
        """Read the registry document from Secrets Manager (Powertools caches the value)."""
        from aws_lambda_powertools.utilities import parameters

        def load(force: bool) -> str:
            return str(parameters.get_secret(secret_id, max_age=0 if force else 300, force_fetch=force))

        return cls(load)

    def get(self, *, fresh: bool = False) -> TenantRegistry:
        now = self._clock()
        if self._registry is None or fresh or now - self._loaded_at > self._max_age:
            self._registry = TenantRegistry.from_json(self._load(fresh))
            self._loaded_at = now
        return self._registry

    def attempt(self, use: Callable[[TenantRegistry], T]) -> T:
        """Run ``use`` with the registry; after a miss, once more with a fresh copy (at most every 30 s)."""
        try:
            return use(self.get())
        except _REGISTRY_MISSES:
            if self._clock() - self._loaded_at < self._refresh_interval:
                raise
            return use(self.get(fresh=True))
