"""What a message or preference says about a customer's attributes (I8, the window, opt-outs, R15 opt-in).

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
# R15: the sources of a WhatsApp opt-in change this module records (``whatsapp_opt_in_source``).
KEYWORD_SOURCE = "user.keyword"
RESUME_SOURCE = "meta.marketing_resume"
STOP_SOURCE = "meta.marketing_stop"  # a marketing stop withdraws the opt-in


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


def opt_in_keyword(message: InboundMessage) -> bool:
    """R15: the whole text (any case, spaces around ignored) is one of the tenant's WhatsApp opt-in
    keywords, which the intake put on the message. Coexistence history records no opt-in."""
    if message.channel not in ("whatsapp", "sms") or message.historical or not message.text:
        return False
    word = message.text.strip().upper()
    return any(word == keyword.strip().upper() for keyword in message.opt_in_keywords)


def observe_message(customer: Customer, message: InboundMessage) -> Customer:
    """The customer after ``message``: profile attributes, WhatsApp window, SMS opt-out, opt-in keyword."""
    updated = _observe_profile(customer, message)
    updated = _observe_parent(updated, message)
    updated = _open_window(updated, message)
    updated = _observe_sms_number(updated, message)
    updated = _observe_sms_keyword(updated, message)
    if opt_in_keyword(message):
        updated = _set_opt_in(updated, True, message.sent_at, KEYWORD_SOURCE)
    return updated


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
    stop = change.value == "stop"
    # R15: a resume records the WhatsApp opt-in, a stop withdraws it (each by its own time).
    updated = _set_opt_in(customer, not stop, change.at, STOP_SOURCE if stop else RESUME_SOURCE)
    if not _newer(change.at, customer.marketing_opt_at):
        return updated
    return replace(updated, marketing_opted_out=stop, marketing_opt_at=change.at)


def _set_opt_in(customer: Customer, value: bool, at: datetime, source: str) -> Customer:
    """R15: the WhatsApp opt-in as of ``at``, unless a later change is already recorded."""
    if not _newer(at, customer.whatsapp_opt_in_at):
        return customer
    return replace(customer, whatsapp_opt_in=value, whatsapp_opt_in_at=at, whatsapp_opt_in_source=source)


def _newer(at: datetime, than: datetime | None) -> bool:
    return than is None or at >= than
