"""The one phone normaliser and the one BSUID validator (contract rules I1 and I2)."""

from __future__ import annotations

import re

BSUID_PATTERN = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]{1,128}")
PARENT_BSUID_PATTERN = re.compile(r"[A-Z]{2}\.ENT\.[A-Za-z0-9]{1,128}")
_WHATSAPP_PREFIX = "whatsapp:"


class InvalidIdentifier(ValueError):
    """A phone number or BSUID that must not become a key."""


def strip_channel_prefix(value: str) -> str:
    """Twilio writes WhatsApp addresses as ``whatsapp:+1555…`` or ``whatsapp:US.123``."""
    return value[len(_WHATSAPP_PREFIX) :] if value.startswith(_WHATSAPP_PREFIX) else value


def is_bsuid(value: str) -> bool:
    return BSUID_PATTERN.fullmatch(value) is not None


def bsuid(value: str) -> str:
    """A business-scoped user id, verbatim (after any ``whatsapp:`` prefix), or ``InvalidIdentifier``."""
    candidate = strip_channel_prefix(value.strip())
    if not is_bsuid(candidate):
        raise InvalidIdentifier("not a BSUID")
    return candidate


def parent_bsuid(value: str) -> str:
    candidate = strip_channel_prefix(value.strip())
    if PARENT_BSUID_PATTERN.fullmatch(candidate) is None:
        raise InvalidIdentifier("not a parent BSUID")
    return candidate


def e164(raw: str, default_region: str = "US") -> str:
    """A phone number as E.164 (``+`` and digits): ``16505551234``, ``+1 650-555-1234`` and
    ``001 650 555 1234`` are one number. National formats read in ``default_region``."""
    import phonenumbers  # ~45 ms: only the functions that normalise pay for it

    text = strip_channel_prefix(raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    if text.startswith("+"):
        candidates = [text]
        region: str | None = None
    else:
        # Digits alone may be national (``6505551234``) or international without "+" (a ``wa_id``).
        digits = re.sub(r"\D", "", text)
        candidates, region = [text, "+" + digits], default_region
    parsed = []
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            parsed.append(number)
    if not parsed:
        raise InvalidIdentifier("not a phone number")
    best = next((n for n in parsed if phonenumbers.is_valid_number(n)), parsed[0])
    return str(phonenumbers.format_number(best, phonenumbers.PhoneNumberFormat.E164))


def e164_from_wa_id(wa_id: str) -> str:
    """Meta's ``wa_id`` / ``from`` / ``recipient_id``: international digits without ``+``."""
    digits = wa_id.strip().lstrip("+")
    # E.164: a country code never starts with 0.
    if not digits.isdigit() or not 7 <= len(digits) <= 15 or digits[0] == "0":
        raise InvalidIdentifier("not a wa_id")
    return "+" + digits
