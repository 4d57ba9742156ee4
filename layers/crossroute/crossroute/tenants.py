"""The tenant and channel registry: which tenant owns a WhatsApp number or Twilio address, and its secrets.

Deployed, the registry is one JSON document in Secrets Manager (template resource ``TenantsSecret``)::

    {"tenants": {"demo": {
        "default_region": "US", "channel_preference": ["whatsapp", "sms"],
        "meta": {"app_secret": "...", "previous_app_secret": "", "verify_token": "...",
                 "access_token": "...", "waba_id": "100000000000000",
                 "phone_numbers": [{"phone_number_id": "100000000000001",
                                    "display_phone_number": "15550100001", "coexistence": false}]},
        "twilio": {"account_sid": "AC...", "auth_token": "...", "previous_auth_token": "",
                   "sms_numbers": ["+15550100002"], "whatsapp_senders": ["whatsapp:+15550100003"],
                   "messaging_service_sids": [], "mms_senders": ["+15550100002"]}}}}

Its JSON Schema is ``registry.schema.json`` (= ``docs/registry.schema.json``; every field is explained in
``docs/registry.md``). Each tenant is validated on its own: one that breaks the schema, or claims a
number another tenant listed before it holds, is left out (``TenantRegistry.skipped`` says where and why)
and the others are used. Only a document that is wholly unusable raises ``RegistryError``.

Plain dataclasses, not pydantic: the webhook functions load this on their cold-start path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from crossroute import registry_schema
from crossroute.registry_schema import Location

# Provider address -> its tenant: ("phone_number_id", id), ("waba_id", id), ("twilio", account, address).
Claim = tuple[str, ...]


class RegistryError(ValueError):
    """The registry document is wholly unusable; the message says where.

    ``reason`` is a stable code: ``not_json``, ``malformed`` (not shaped as a registry), ``no_valid_tenant``
    (it has tenants and none is usable), ``conflict`` (two tenants given to ``TenantRegistry`` directly
    claim one address). ``problems`` lists what was found, never quoting a value from the document.
    """

    def __init__(self, summary: str, *, reason: str, problems: Sequence[Problem] = ()) -> None:
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{summary}: {shown}{more}" if shown else summary)
        self.reason = reason
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Problem:
    """Why part of the registry document is not used: where (keys and indexes from the root) and what."""

    where: Location
    message: str

    @property
    def tenant(self) -> str | None:
        """The tenant left out for it; ``None``: the document itself is unusable."""
        return str(self.where[1]) if len(self.where) >= 2 and self.where[0] == "tenants" else None

    @property
    def path(self) -> str:
        return json_path(self.where)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class MetaNumber:
    phone_number_id: str
    display_phone_number: str = ""
    coexistence: bool = False


@dataclass(frozen=True)
class MetaChannel:
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    access_token: str = field(default="", repr=False)
    waba_id: str = ""
    phone_numbers: tuple[MetaNumber, ...] = ()
    previous_app_secret: str = field(default="", repr=False)  # during a rotation; "" when none

    @property
    def app_secrets(self) -> tuple[str, ...]:
        """Every secret a webhook signature may be made with: the current one, and during a rotation the
        previous one."""
        return tuple(dict.fromkeys(s for s in (self.app_secret, self.previous_app_secret) if s))


@dataclass(frozen=True)
class TwilioChannel:
    account_sid: str
    auth_token: str = field(repr=False)
    sms_numbers: tuple[str, ...] = ()
    whatsapp_senders: tuple[str, ...] = ()
    messaging_service_sids: tuple[str, ...] = ()
    # R13: the SMS numbers and messaging services (of the two lists above) that can send MMS
    mms_senders: tuple[str, ...] = ()
    previous_auth_token: str = field(default="", repr=False)  # during a rotation; "" when none

    @property
    def auth_tokens(self) -> tuple[str, ...]:
        """Every token a webhook signature may be made with: the current one, and during a rotation the
        previous one. Sends always use ``auth_token``."""
        return tuple(dict.fromkeys(t for t in (self.auth_token, self.previous_auth_token) if t))


@dataclass(frozen=True)
class Tenant:
    id: str
    default_region: str = "US"
    meta: MetaChannel | None = None
    twilio: TwilioChannel | None = None
    channel_preference: tuple[str, ...] = ("whatsapp", "sms")  # when a send request names no order
    # R15: template categories that need the customer's WhatsApp opt-in; whole-message opt-in keywords.
    whatsapp_opt_in_required: tuple[str, ...] = ()
    whatsapp_opt_in_keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class TenantRegistry:
    """Every usable tenant of one deployment, with lookups from provider addresses to tenants."""

    tenants: tuple[Tenant, ...]
    # What from_json left out, and why (for the logs): empty when every tenant was usable.
    skipped: tuple[Problem, ...] = field(default=(), compare=False)
    _by_id: dict[str, Tenant] = field(init=False, repr=False, compare=False)
    _by_claim: dict[Claim, Tenant] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_claim: dict[Claim, Tenant] = {}
        for tenant in self.tenants:
            for claim, where in _claims(tenant):
                owner = by_claim.setdefault(claim, tenant)
                if owner.id != tenant.id:
                    raise RegistryError(
                        f"{json_path(where)}: claimed by both tenants {owner.id!r} and {tenant.id!r}",
                        reason="conflict",
                    )
        by_id: dict[str, Tenant] = {}
        for tenant in self.tenants:
            by_id.setdefault(tenant.id, tenant)
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_by_claim", by_claim)

    @classmethod
    def from_json(cls, text: str | bytes) -> TenantRegistry:
        """Parse the registry document and validate it tenant by tenant (see the module docstring)."""
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise RegistryError(f"registry is not JSON: {exc}", reason="not_json") from None
        problems = [Problem(where, message) for where, message in registry_schema.errors(doc)]
        if any(p.tenant is None for p in problems):
            unusable = [p for p in problems if p.tenant is None]
            raise RegistryError("registry is unusable", reason="malformed", problems=unusable)
        broken = {p.tenant for p in problems}
        tenants, clashes = _unclaimed(
            _tenant(tenant_id, entry)
            for tenant_id, entry in doc["tenants"].items()
            if tenant_id not in broken
        )
        skipped = (*problems, *clashes)
        if skipped and not tenants:
            raise RegistryError("registry has no usable tenant", reason="no_valid_tenant", problems=skipped)
        return cls(tenants, skipped)

    def by_id(self, tenant_id: str) -> Tenant | None:
        return self._by_id.get(tenant_id)

    def by_phone_number_id(self, phone_number_id: str) -> Tenant | None:
        return self._by_claim.get(("phone_number_id", phone_number_id))

    def by_waba_id(self, waba_id: str) -> Tenant | None:
        """For account-level changes that carry no phone_number_id."""
        return self._by_claim.get(("waba_id", waba_id))

    def by_twilio_address(self, account_sid: str, address: str) -> Tenant | None:
        """The tenant owning a Twilio number (``+1555…``, ``whatsapp:+1555…``) or messaging service."""
        return self._by_claim.get(("twilio", account_sid, address))

    def meta_channels(self) -> list[MetaChannel]:
        return [t.meta for t in self.tenants if t.meta]

    def twilio_channels(self) -> list[TwilioChannel]:
        return [t.twilio for t in self.tenants if t.twilio]


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def json_path(where: Location) -> str:
    """``("tenants", "acme", "meta", "phone_numbers", 0)`` -> ``$.tenants.acme.meta.phone_numbers[0]``;
    a key that is not a plain name is bracketed: ``$.tenants['acme-eu']``."""
    parts = ["$"]
    for step in where:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _NAME.fullmatch(step):
            parts.append(f".{step}")
        else:
            parts.append("['" + step.replace("\\", "\\\\").replace("'", "\\'") + "']")
    return "".join(parts)


def _claims(tenant: Tenant) -> Iterator[tuple[Claim, Location]]:
    """The provider addresses ``tenant`` owns, each with where the registry names it."""
    at = ("tenants", tenant.id)
    if tenant.meta and tenant.meta.waba_id:
        yield ("waba_id", tenant.meta.waba_id), (*at, "meta", "waba_id")
    for i, number in enumerate(tenant.meta.phone_numbers if tenant.meta else ()):
        yield (
            ("phone_number_id", number.phone_number_id),
            (*at, "meta", "phone_numbers", i, "phone_number_id"),
        )
    if tenant.twilio:
        tw = tenant.twilio
        lists = {"sms_numbers": tw.sms_numbers, "whatsapp_senders": tw.whatsapp_senders}
        lists["messaging_service_sids"] = tw.messaging_service_sids
        for key, addresses in lists.items():
            for i, address in enumerate(addresses):
                yield ("twilio", tw.account_sid, address), (*at, "twilio", key, i)


def _unclaimed(tenants: Iterable[Tenant]) -> tuple[tuple[Tenant, ...], list[Problem]]:
    """The tenants in document order, less each one claiming an address a tenant before it holds."""
    owners: dict[Claim, str] = {}
    kept: list[Tenant] = []
    clashes: list[Problem] = []
    for tenant in tenants:
        claims = list(_claims(tenant))
        clash = next(((w, owners[c]) for c, w in claims if owners.get(c, tenant.id) != tenant.id), None)
        if clash is not None:
            clashes.append(Problem(clash[0], f"already claimed by tenant {clash[1]!r}"))
            continue
        owners.update((claim, tenant.id) for claim, _ in claims)
        kept.append(tenant)
    return tuple(kept), clashes


def _tenant(tenant_id: str, doc: dict[str, Any]) -> Tenant:
    """A tenant from its entry, which the schema has validated; absent keys keep the defaults."""
    meta = twilio = None
    if "meta" in doc:
        m = doc["meta"]
        numbers = tuple(
            MetaNumber(**_present(n, "phone_number_id", "display_phone_number", "coexistence"))
            for n in m.get("phone_numbers", ())
        )
        secrets = _present(m, "app_secret", "previous_app_secret", "verify_token", "access_token")
        meta = MetaChannel(**secrets, **_present(m, "waba_id"), phone_numbers=numbers)
    if "twilio" in doc:
        credentials = _present(doc["twilio"], "account_sid", "auth_token", "previous_auth_token")
        addresses = _present(
            doc["twilio"], "sms_numbers", "whatsapp_senders", "messaging_service_sids", "mms_senders"
        )
        twilio = TwilioChannel(**credentials, **addresses)
    options = _present(
        doc, "default_region", "channel_preference", "whatsapp_opt_in_required", "whatsapp_opt_in_keywords"
    )
    return Tenant(tenant_id, meta=meta, twilio=twilio, **options)


def _present(doc: dict[str, Any], *names: str) -> dict[str, Any]:
    """The keys of ``doc`` among ``names`` (lists as tuples); an absent one keeps its dataclass default."""
    return {
        name: tuple(doc[name]) if isinstance(doc[name], list) else doc[name] for name in names if name in doc
    }
