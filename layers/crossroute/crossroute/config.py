"""Settings from the function environment, and the tenant registry from Secrets Manager."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

from crossroute.tenants import TenantRegistry


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

    def refreshable(self) -> bool:
        """Whether a fresh read is allowed now: at most one every ``refresh_interval`` seconds."""
        return self._clock() - self._loaded_at >= self._refresh_interval
