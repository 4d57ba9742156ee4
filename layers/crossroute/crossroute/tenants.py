"""The tenant and channel registry: which tenant owns a WhatsApp number or Twilio address, and its secrets.

Deployed, the registry is one JSON document in Secrets Manager (template resource ``TenantsSecret``)::

    {"tenants": {"demo": {
        "default_region": "US", "channel_preference": ["whatsapp", "sms"],
        "meta": {"app_secret": "...", "verify_token": "...", "access_token": "...",
                 "waba_id": "100000000000000",
                 "phone_numbers": [{"phone_number_id": "100000000000001",
                                    "display_phone_number": "15550100001", "coexistence": false}]},
        "twilio": {"account_sid": "AC...", "auth_token": "...",
                   "sms_numbers": ["+15550100002"], "whatsapp_senders": ["whatsapp:+15550100003"],
                   "messaging_service_sids": []}}}}

Plain dataclasses, not pydantic: the webhook functions load this on their cold-start path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class RegistryError(ValueError):
    """The registry document is malformed; the message says where."""


@dataclass(frozen=True)
class MetaNumber:
    phone_number_id: str
    display_phone_number: str = ""
    coexistence: bool = False


@dataclass(frozen=True)
class MetaChannel:
    app_secret: str
    verify_token: str
    access_token: str = ""
    waba_id: str = ""
    phone_numbers: tuple[MetaNumber, ...] = ()


@dataclass(frozen=True)
class TwilioChannel:
    account_sid: str
    auth_token: str
    sms_numbers: tuple[str, ...] = ()
    whatsapp_senders: tuple[str, ...] = ()
    messaging_service_sids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tenant:
    id: str
    default_region: str = "US"
    meta: MetaChannel | None = None
    twilio: TwilioChannel | None = None
    channel_preference: tuple[str, ...] = ("whatsapp", "sms")  # when a send request names no order


@dataclass(frozen=True)
class TenantRegistry:
    """Every tenant of one deployment, with lookups from provider addresses to tenants."""

    tenants: tuple[Tenant, ...]
    _by_phone_number_id: dict[str, Tenant] = field(init=False, repr=False, compare=False)
    _by_twilio_address: dict[tuple[str, str], Tenant] = field(init=False, repr=False, compare=False)
    _by_waba_id: dict[str, Tenant] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_pnid: dict[str, Tenant] = {}
        by_twilio: dict[tuple[str, str], Tenant] = {}
        by_waba: dict[str, Tenant] = {}
        for tenant in self.tenants:
            if tenant.meta and tenant.meta.waba_id:
                _claim(by_waba, tenant.meta.waba_id, tenant, "waba_id")
            for number in tenant.meta.phone_numbers if tenant.meta else ():
                _claim(by_pnid, number.phone_number_id, tenant, "phone_number_id")
            if tenant.twilio:
                tw = tenant.twilio
                for address in (*tw.sms_numbers, *tw.whatsapp_senders, *tw.messaging_service_sids):
                    _claim(by_twilio, (tw.account_sid, address), tenant, "Twilio address")
        object.__setattr__(self, "_by_phone_number_id", by_pnid)
        object.__setattr__(self, "_by_twilio_address", by_twilio)
        object.__setattr__(self, "_by_waba_id", by_waba)

    @classmethod
    def from_json(cls, text: str | bytes) -> TenantRegistry:
        """Parse the registry document (see the module docstring)."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise RegistryError(f"registry is not JSON: {exc}") from None
        tenants = _obj(doc, "registry").get("tenants", {})
        return cls(
            tuple(_tenant(tid, _obj(t, f"tenants.{tid}")) for tid, t in _obj(tenants, "tenants").items())
        )

    def by_id(self, tenant_id: str) -> Tenant | None:
        return next((t for t in self.tenants if t.id == tenant_id), None)

    def by_phone_number_id(self, phone_number_id: str) -> Tenant | None:
        return self._by_phone_number_id.get(phone_number_id)

    def by_waba_id(self, waba_id: str) -> Tenant | None:
        """For account-level changes that carry no phone_number_id."""
        return self._by_waba_id.get(waba_id)

    def by_twilio_address(self, account_sid: str, address: str) -> Tenant | None:
        """The tenant owning a Twilio number (``+1555…``, ``whatsapp:+1555…``) or messaging service."""
        return self._by_twilio_address.get((account_sid, address))

    def meta_channels(self) -> list[MetaChannel]:
        return [t.meta for t in self.tenants if t.meta]

    def twilio_channels(self) -> list[TwilioChannel]:
        return [t.twilio for t in self.tenants if t.twilio]


def _claim(index: dict[Any, Tenant], key: Any, tenant: Tenant, what: str) -> None:
    owner = index.setdefault(key, tenant)
    if owner.id != tenant.id:
        raise RegistryError(f"{what} claimed by both tenants {owner.id!r} and {tenant.id!r}")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RegistryError(f"{where}: expected an object")
    return value


def _str(doc: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise RegistryError(f"{where}.{key}: expected a non-empty string")
    return value


def _strs(doc: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = doc.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise RegistryError(f"{where}.{key}: expected a list of strings")
    return tuple(values)


def _tenant(tenant_id: str, doc: dict[str, Any]) -> Tenant:
    where = f"tenants.{tenant_id}"
    meta = twilio = None
    if "meta" in doc:
        m, mw = _obj(doc["meta"], f"{where}.meta"), f"{where}.meta"
        numbers = m.get("phone_numbers", [])
        if not isinstance(numbers, list):
            raise RegistryError(f"{mw}.phone_numbers: expected a list")
        meta = MetaChannel(
            app_secret=_str(m, "app_secret", mw),
            verify_token=_str(m, "verify_token", mw),
            access_token=_str(m, "access_token", mw, required=False),
            waba_id=_str(m, "waba_id", mw, required=False),
            phone_numbers=tuple(_meta_number(_obj(n, f"{mw}.phone_numbers[]"), mw) for n in numbers),
        )
    if "twilio" in doc:
        t, tw = _obj(doc["twilio"], f"{where}.twilio"), f"{where}.twilio"
        twilio = TwilioChannel(
            account_sid=_str(t, "account_sid", tw),
            auth_token=_str(t, "auth_token", tw),
            sms_numbers=_strs(t, "sms_numbers", tw),
            whatsapp_senders=_strs(t, "whatsapp_senders", tw),
            messaging_service_sids=_strs(t, "messaging_service_sids", tw),
        )
    region = doc.get("default_region", "US")
    if not (isinstance(region, str) and len(region) == 2 and region.isalpha() and region.isupper()):
        raise RegistryError(f"{where}.default_region: expected an ISO 3166 alpha-2 code like 'US'")
    preference = doc.get("channel_preference", ["whatsapp", "sms"])
    if (
        not isinstance(preference, list)
        or not preference
        or not set(preference) <= {"whatsapp", "sms"}
        or len(set(preference)) != len(preference)
    ):
        raise RegistryError(f"{where}.channel_preference: a list of distinct 'whatsapp', 'sms'")
    return Tenant(tenant_id, region, meta, twilio, tuple(preference))


def _meta_number(doc: dict[str, Any], where: str) -> MetaNumber:
    coexistence = doc.get("coexistence", False)
    if not isinstance(coexistence, bool):
        raise RegistryError(f"{where}.phone_numbers[].coexistence: expected true or false")
    return MetaNumber(
        phone_number_id=_str(doc, "phone_number_id", f"{where}.phone_numbers[]"),
        display_phone_number=_str(doc, "display_phone_number", f"{where}.phone_numbers[]", required=False),
        coexistence=coexistence,
    )
