"""The one phone normaliser and the one BSUID validator (I1 and I2, docs/identity.md), and the one
digest that gives content without an id a stable id."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

E164_PATTERN = re.compile(r"\+[1-9][0-9]{6,14}")
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
    ``001 650 555 1234`` are one number. National formats read in ``default_region``.

    This is the one normaliser for writes and reads (I12). A number already written as E.164
    (``+`` and 7-15 digits, as Meta's ``wa_id`` and Twilio's ``From`` are) is taken as written, even in a
    range the phone-number library does not know; so are bare digits that are no valid national number
    (a ``wa_id`` without its ``+``). Anything written with spaces, dashes or brackets is parsed.
    """
    import phonenumbers  # ~45 ms: only the functions that normalise pay for it

    text = strip_channel_prefix(raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    if E164_PATTERN.fullmatch(text):
        return text
    national = _parsed(phonenumbers, text, default_region) if not text.startswith("+") else []
    if _DIGITS.fullmatch(text):
        valid = [n for n in national if phonenumbers.is_valid_number(n)]
        return _formatted(phonenumbers, valid[0]) if valid else "+" + text
    if text.startswith("+"):
        candidates = _parsed(phonenumbers, text, None)
    else:
        # Decorated digits may be national (``650-555-1234``) or international without "+".
        candidates = national + _parsed(phonenumbers, "+" + re.sub(r"\D", "", text), None)
    if not candidates:
        raise InvalidIdentifier("not a phone number")
    best = next((n for n in candidates if phonenumbers.is_valid_number(n)), candidates[0])
    return _formatted(phonenumbers, best)


def e164_from_wa_id(wa_id: str) -> str:
    """Meta's ``wa_id`` / ``from`` / ``recipient_id``: international digits without ``+``."""
    digits = wa_id.strip().lstrip("+")
    # E.164: a country code never starts with 0.
    if not digits.isdigit() or not 7 <= len(digits) <= 15 or digits[0] == "0":
        raise InvalidIdentifier("not a wa_id")
    return e164("+" + digits)


_DIGITS = re.compile(r"[1-9][0-9]{6,14}")


def _parsed(phonenumbers: Any, text: str, region: str | None) -> list[Any]:
    """``text`` as a possible number (a list of one), or nothing."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return []
    return [number] if phonenumbers.is_possible_number(number) else []


def _formatted(phonenumbers: Any, number: Any) -> str:
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def content_digest(value: Any, chars: int = 32, *, compact: bool = True) -> str:
    """The first ``chars`` hex digits of the SHA-256 of ``value`` as canonical JSON (sorted keys): the
    same content, the same id, whatever the order of its fields. ``compact=False`` is the spacing the
    ids already stored by ingest were made with; it stays, so a redelivered event keeps its id."""
    separators = (",", ":") if compact else (", ", ": ")
    text = json.dumps(value, sort_keys=True, separators=separators, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:chars]
