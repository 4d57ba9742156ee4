"""A tenant's sending setup from the registry: its business numbers, channel order and provider clients.

``TenantSetups`` is what a dispatch container asks for a tenant's ``TenantSetup``: built from the registry
on first use and kept while the tenant's registry entry stays the same (the clients keep their
connections), ``None`` for an unknown tenant. The registry is re-read after its cache time, so rotated
provider credentials reach a warm container within it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from crossroute.channels import Channel, Sender
from crossroute.config import RegistrySource, optional_env
from crossroute.dispatch import TenantSetup
from crossroute.routing.pacing import COEXISTENCE_RATE, DEFAULT_RATE
from crossroute.routing.policy import TenantChannels
from crossroute.senders import meta_ready, whatsapp_numbers
from crossroute.tenants import Tenant


@dataclass(frozen=True)
class Endpoints:
    """Where the provider clients connect and where Twilio posts status callbacks."""

    public_base_url: str = ""  # empty: no status callbacks requested
    graph_version: str = ""  # empty: the client's default
    graph_base_url: str = ""  # empty: the real Graph API
    twilio_base_url: str = ""  # empty: the real Twilio API

    @classmethod
    def from_env(cls) -> Endpoints:
        """``PUBLIC_BASE_URL``, ``GRAPH_API_VERSION``; the local stack's ``META_GRAPH_BASE_URL`` and
        ``TWILIO_API_BASE_URL`` point the clients at its sandbox providers."""
        return cls(
            public_base_url=optional_env("PUBLIC_BASE_URL"),
            graph_version=optional_env("GRAPH_API_VERSION"),
            graph_base_url=optional_env("META_GRAPH_BASE_URL"),
            twilio_base_url=optional_env("TWILIO_API_BASE_URL"),
        )


class TenantSetups:
    """Tenant id -> ``TenantSetup``, built on first use and rebuilt when the tenant's entry in the registry
    (as ``RegistrySource`` last read it) differs from the one it was built from."""

    def __init__(self, registry: RegistrySource, endpoints: Endpoints) -> None:
        self._registry = registry
        self._endpoints = endpoints
        self._setups: dict[str, tuple[Tenant, TenantSetup]] = {}

    def __call__(self, tenant_id: str) -> TenantSetup | None:
        tenant = self._registry.get().by_id(tenant_id)
        if tenant is None:
            self._setups.pop(tenant_id, None)
            return None
        built = self._setups.get(tenant_id)
        if built is None or built[0] != tenant:
            built = tenant, tenant_setup(tenant, self._endpoints)
            self._setups[tenant_id] = built
        return built[1]


def tenant_setup(tenant: Tenant, endpoints: Endpoints) -> TenantSetup:
    """Clients are built here but connect lazily (``twilio.rest`` loads on the first SMS)."""
    senders: dict[Channel, Sender] = {}
    rates = _whatsapp(tenant, endpoints, senders)
    via_twilio = False
    if not rates:  # R11: no Meta number, so WhatsApp through Twilio when the tenant has senders there
        rates = _twilio_whatsapp(tenant, endpoints, senders)
        via_twilio = bool(rates)
    sms_sender = _sms(tenant, endpoints, senders)
    base = endpoints.public_base_url.rstrip("/")
    twilio = tenant.twilio
    channels = TenantChannels(
        whatsapp_business=next(iter(rates), None),
        sms_sender=sms_sender,
        preference=cast(tuple[Channel, ...], tenant.channel_preference),
        status_callback=f"{base}/webhooks/twilio/status" if base else None,
        whatsapp_numbers=whatsapp_numbers(tenant) if rates else (),
        sms_numbers=twilio.sms_numbers if twilio and sms_sender else (),
        messaging_services=twilio.messaging_service_sids if twilio and sms_sender else (),
        whatsapp_opt_in_required=tenant.whatsapp_opt_in_required,
        whatsapp_provider="twilio" if via_twilio else "meta",
        mms_senders=twilio.mms_senders if twilio and sms_sender else (),
    )
    first_rate = next(iter(rates.values()), DEFAULT_RATE)
    return TenantSetup(
        channels, senders, tenant.default_region, whatsapp_rate=first_rate, whatsapp_rates=rates
    )


def _whatsapp(tenant: Tenant, endpoints: Endpoints, senders: dict[Channel, Sender]) -> dict[str, float]:
    """The business numbers WhatsApp messages may go out from (the first is the default, R10), each with
    its rate (a coexistence number's is lower); empty when the tenant has no WhatsApp."""
    meta = tenant.meta
    if not meta_ready(tenant) or meta is None:
        return {}
    from crossroute.channels.meta import GRAPH_BASE_URL, GRAPH_VERSION, MetaCloudClient

    senders["whatsapp"] = MetaCloudClient(
        meta.access_token,
        graph_version=endpoints.graph_version or GRAPH_VERSION,
        base_url=endpoints.graph_base_url or GRAPH_BASE_URL,
    )
    return {
        n.phone_number_id: COEXISTENCE_RATE if n.coexistence else DEFAULT_RATE for n in meta.phone_numbers
    }


def _twilio_whatsapp(
    tenant: Tenant, endpoints: Endpoints, senders: dict[Channel, Sender]
) -> dict[str, float]:
    """R11: WhatsApp through Twilio, for a tenant with Twilio WhatsApp senders and no Meta number (a tenant
    with both sends WhatsApp through Meta): the senders (``whatsapp:+...``), each at the default rate."""
    twilio = tenant.twilio
    if not (twilio and twilio.whatsapp_senders):
        return {}
    from crossroute.channels.twilio_whatsapp import TwilioWhatsAppClient

    base_url = endpoints.twilio_base_url or None
    senders["whatsapp"] = TwilioWhatsAppClient(twilio.account_sid, twilio.auth_token, base_url=base_url)
    return dict.fromkeys(twilio.whatsapp_senders, DEFAULT_RATE)


def _sms(tenant: Tenant, endpoints: Endpoints, senders: dict[Channel, Sender]) -> str | None:
    """The SMS sender: the first messaging service, else the first number."""
    twilio = tenant.twilio
    if not (twilio and (twilio.messaging_service_sids or twilio.sms_numbers)):
        return None
    from crossroute.channels.twilio_sms import TwilioSmsClient

    base_url = endpoints.twilio_base_url or None
    senders["sms"] = TwilioSmsClient(twilio.account_sid, twilio.auth_token, base_url=base_url)
    return (twilio.messaging_service_sids or twilio.sms_numbers)[0]
