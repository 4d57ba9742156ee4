"""What a message or preference says about a customer's attributes (I8, the window, opt-outs).

Pure, and order-proof: each attribute keeps the provider time it was set at, and an older event
never overwrites a newer one, so redelivered and reordered events end in the same profile.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from crossroute.identity.model import Customer
from crossroute.inbound import InboundMessage, PreferenceChange

# Twilio's default opt-out keywords: matched when they are the whole message, any case.
SMS_STOP = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
SMS_START = frozenset({"START", "YES", "UNSTOP"})


def sms_keyword(message: InboundMessage) -> str | None:
    """``"stop"``, ``"start"`` or None: Twilio's ``OptOutType`` if it sent one, else the whole body."""
    if message.channel != "sms":
        return None
    word = (message.opt_out_keyword or message.text or "").strip().upper()
    if word in SMS_STOP:
        return "stop"
    if word in SMS_START:
        return "start"
    return None


def observe_message(customer: Customer, message: InboundMessage) -> Customer:
    """The customer after ``message``: profile attributes, WhatsApp window, SMS opt-out."""
    updated = _observe_profile(customer, message)
    updated = _observe_parent(updated, message)
    updated = _open_window(updated, message)
    updated = _observe_sms_number(updated, message)
    return _observe_sms_keyword(updated, message)


def _observe_profile(customer: Customer, message: InboundMessage) -> Customer:
    """Each attribute keeps its own time: an event without a username says nothing about it."""
    updated = customer
    sender = message.sender
    if sender.name and _newer(message.sent_at, customer.profile_at):
        updated = replace(updated, name=sender.name, profile_at=message.sent_at)
    if sender.username and _newer(message.sent_at, customer.username_at):
        updated = replace(updated, username=sender.username, username_at=message.sent_at)
    return updated


def _observe_parent(customer: Customer, message: InboundMessage) -> Customer:
    """The parent BSUID, only when the message comes from the customer's current BSUID."""
    sender = message.sender
    current = sender.bsuid is not None and sender.bsuid == customer.current_bsuid()
    if sender.parent_bsuid and current and customer.parent_bsuid != sender.parent_bsuid:
        return replace(customer, parent_bsuid=sender.parent_bsuid)
    return customer


def _open_window(customer: Customer, message: InboundMessage) -> Customer:
    """The window is per business number: a message whose number is unknown opens none."""
    if message.channel != "whatsapp" or message.historical or not message.business:
        return customer
    last = customer.whatsapp_last_inbound.get(message.business)
    if last is not None and message.sent_at <= last:
        return customer
    windows = {**customer.whatsapp_last_inbound, message.business: message.sent_at}
    return replace(customer, whatsapp_last_inbound=windows)


def _observe_sms_number(customer: Customer, message: InboundMessage) -> Customer:
    """R10: the tenant SMS number the customer last texted (its sticky sender); the latest message wins,
    and of two at the same time the greater number, so the order they arrive in does not matter."""
    if message.channel != "sms" or not message.business:
        return customer
    last, at = customer.sms_last_to, customer.sms_last_to_at
    if at is not None and (message.sent_at, message.business) <= (at, last or ""):
        return customer
    return replace(customer, sms_last_to=message.business, sms_last_to_at=message.sent_at)


def _observe_sms_keyword(customer: Customer, message: InboundMessage) -> Customer:
    """STOP opts the customer out of SMS, START back in."""
    keyword = sms_keyword(message)
    if keyword and _newer(message.sent_at, customer.sms_opt_at):
        return replace(customer, sms_opted_out=keyword == "stop", sms_opt_at=message.sent_at)
    return customer


def observe_preference(customer: Customer, change: PreferenceChange) -> Customer:
    """``user_preferences``: marketing messages stopped or resumed (R5)."""
    if change.category != "marketing_messages" or change.value not in ("stop", "resume"):
        return customer
    if not _newer(change.at, customer.marketing_opt_at):
        return customer
    return replace(customer, marketing_opted_out=change.value == "stop", marketing_opt_at=change.at)


def _newer(at: datetime, than: datetime | None) -> bool:
    return than is None or at >= than
