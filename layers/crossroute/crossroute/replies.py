"""R13, the way back: a customer who got numbered options by SMS (rendered from a request's buttons or
list) answers with a number or an option's title; the inbound message is then recorded as that option
picked, exactly as a WhatsApp reply button would be (``type: "interactive"``, ``text``: the title,
``choice``: the option's id), so automations see one shape whatever the channel.

What was offered is kept per phone (``Offer``: the latest numbered options sent to it, for
``OFFER_KEEP``), written when the SMS went out and read along with the sender's identity, so mapping
a reply costs ingest no extra round trip. Pure functions; the store is ``IdentityStore``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from crossroute.inbound import Choice, InboundMessage

OFFER_KEEP = timedelta(days=7)  # a reply later than this is a message like any other
TITLE_CHARS = 24  # the longest option title (a WhatsApp list row's; a button's is 20)
VIA = "sms.numbered_option"
_NUMBER = re.compile(r"\s*(?:#|no\.?\s*)?(\d{1,2})\s*[.)!]?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Offer:
    """The numbered options last sent to a phone (option k is ``options[k - 1]``, (id, title) pairs)."""

    channel: str
    options: tuple[tuple[str, str], ...]
    sent_at: datetime
    request_key: str | None = None  # the idempotency key of the request that offered them


def may_answer_an_offer(message: InboundMessage) -> bool:
    """Whether ``message`` could be the answer to numbered options: worth reading the offer for. A
    text (no choice of its own) short enough to be a number or a title, from a phone, on a channel that
    renders options as numbered text (SMS, and WhatsApp through Twilio)."""
    return (
        message.choice is None
        and message.type == "text"
        and message.provider == "twilio"
        and message.sender.phone is not None
        and message.text is not None
        and 0 < len(message.text.strip()) <= TITLE_CHARS
    )


def option_number(text: str) -> int | None:
    """The number ``text`` is, as a reply to numbered options (``2``, ``2.``, ``#2``, ``no. 2``), or None."""
    number = _NUMBER.fullmatch(text)
    return int(number.group(1)) if number is not None else None


def picked(text: str, options: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    """The option ``text`` names: its number (``2``, ``2.``, ``#2``) when in range, else its title (any
    case and spacing; exactly one option's)."""
    index = option_number(text)
    if index is not None and 1 <= index <= len(options):
        return options[index - 1]
    wanted = " ".join(text.split()).casefold()
    named = [option for option in options if " ".join(option[1].split()).casefold() == wanted]
    return named[0] if len(named) == 1 else None


def answered(message: InboundMessage, offer: Offer | None) -> InboundMessage:
    """``message`` as the option it picks from ``offer``, when it answers it: same channel, after the
    offer and within ``OFFER_KEEP``; else ``message`` unchanged."""
    if offer is None or not may_answer_an_offer(message) or offer.channel != message.channel:
        return message
    if not offer.sent_at <= message.sent_at <= offer.sent_at + OFFER_KEEP:
        return message
    option = picked(message.text or "", offer.options)
    if option is None:
        return message
    option_id, title = option
    return replace(message, type="interactive", text=title, choice=Choice(option_id, title, VIA))
