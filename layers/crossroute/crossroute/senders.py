"""Which numbers a tenant sends from (R10, R11), read from its registry entry: one answer for dispatch
(``tenant_setup``, which also builds the clients) and for the send door (a request's ``from``)."""

from __future__ import annotations

from crossroute.routing.policy import BusinessNumber, TenantChannels
from crossroute.tenants import Tenant


def meta_ready(tenant: Tenant) -> bool:
    """WhatsApp goes through Meta: a number and a token (else through Twilio when it has senders, R11)."""
    meta = tenant.meta
    return bool(meta and meta.phone_numbers and meta.access_token)


def whatsapp_numbers(tenant: Tenant) -> tuple[BusinessNumber, ...]:
    """The WhatsApp numbers: Meta's phone numbers, else the Twilio WhatsApp senders (``whatsapp:+...``,
    with the phone as display number)."""
    if meta_ready(tenant):
        assert tenant.meta is not None
        return tuple(
            BusinessNumber(n.phone_number_id, n.display_phone_number) for n in tenant.meta.phone_numbers
        )
    senders = tenant.twilio.whatsapp_senders if tenant.twilio else ()
    return tuple(BusinessNumber(s, s.removeprefix("whatsapp:")) for s in senders)


def sender_channels(tenant: Tenant) -> TenantChannels:
    """Every address a request's ``from`` may name: the WhatsApp numbers and the SMS senders (numbers
    and messaging services). No client is built."""
    twilio = tenant.twilio
    return TenantChannels(
        None,
        None,
        whatsapp_numbers=whatsapp_numbers(tenant),
        sms_numbers=twilio.sms_numbers if twilio else (),
        messaging_services=twilio.messaging_service_sids if twilio else (),
    )
