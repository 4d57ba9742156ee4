"""A tenant's sending setup from the registry: its business numbers, channel order and provider clients."""

from __future__ import annotations

from typing import cast

from crossroute.channels import Channel, Sender
from crossroute.dispatch import TenantSetup
from crossroute.routing.pacing import COEXISTENCE_RATE, DEFAULT_RATE
from crossroute.routing.policy import TenantChannels
from crossroute.tenants import Tenant


def tenant_setup(
    tenant: Tenant,
    *,
    public_base_url: str,
    graph_version: str,
    graph_base_url: str,
    twilio_base_url: str | None,
) -> TenantSetup:
    """Clients are built here but connect lazily (``twilio.rest`` loads on the first SMS)."""
    from crossroute.channels.meta import MetaCloudClient
    from crossroute.channels.twilio_sms import TwilioSmsClient

    senders: dict[Channel, Sender] = {}
    business = None
    rate = DEFAULT_RATE
    if tenant.meta and tenant.meta.phone_numbers and tenant.meta.access_token:
        number = tenant.meta.phone_numbers[0]
        business = number.phone_number_id
        rate = COEXISTENCE_RATE if number.coexistence else DEFAULT_RATE
        senders["whatsapp"] = MetaCloudClient(
            tenant.meta.access_token, graph_version=graph_version, base_url=graph_base_url
        )
    sms_sender = None
    twilio = tenant.twilio
    if twilio and (twilio.messaging_service_sids or twilio.sms_numbers):
        sms_sender = (twilio.messaging_service_sids or twilio.sms_numbers)[0]
        senders["sms"] = TwilioSmsClient(twilio.account_sid, twilio.auth_token, base_url=twilio_base_url)
    callback = f"{public_base_url.rstrip('/')}/webhooks/twilio/status" if public_base_url else None
    channels = TenantChannels(
        whatsapp_business=business,
        sms_sender=sms_sender,
        preference=cast(tuple[Channel, ...], tenant.channel_preference),
        status_callback=callback,
    )
    return TenantSetup(channels, senders, tenant.default_region, whatsapp_rate=rate)
