"""The sandbox's shared state: the outbox and the per-recipient behaviour. Both thread-safe and bounded."""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "SMS_STATUSES",
    "WHATSAPP_STATUSES",
    "Behaviour",
    "ConfigError",
    "Outbox",
    "Recipients",
    "is_bsuid",
    "meta_phone",
    "now_iso",
    "recipient_key",
]

Channel = Literal["whatsapp", "sms"]

# The last status a recipient's messages reach ("failed"/"undelivered" carry an error code).
WHATSAPP_STATUSES = ("sent", "delivered", "read", "failed")
SMS_STATUSES = ("sent", "delivered", "read", "undelivered", "failed")
_OPTIONS: dict[str, tuple[str, ...]] = {
    "whatsapp": ("status", "error_code", "sync_error_code", "user_id", "phone"),
    "sms": ("status", "error_code", "sync_error_code"),
}
_BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
_PHONE_PUNCTUATION = re.compile(r"[\s\-().]")
OUTBOX_LIMIT = 10_000
RECIPIENTS_LIMIT = 10_000


class ConfigError(ValueError):
    """A ``POST /_sandbox/recipients`` document the sandbox cannot use; the message says why."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_bsuid(value: str) -> bool:
    return _BSUID.fullmatch(value) is not None


def meta_phone(raw: str) -> str | None:
    """A phone as Meta reads ``to``: international digits, ``+`` optional, punctuation ignored."""
    text = _PHONE_PUNCTUATION.sub("", raw.strip())
    if text.startswith("whatsapp:"):
        text = text[len("whatsapp:") :]
    digits = text[1:] if text.startswith("+") else text
    if not digits.isascii() or not digits.isdigit() or not 7 <= len(digits) <= 15 or digits[0] == "0":
        return None
    return "+" + digits


def recipient_key(raw: str) -> str | None:
    """The key a recipient is configured under: a BSUID verbatim, a phone as E.164 (``+`` and digits)."""
    text = raw.strip()
    if text.startswith("whatsapp:"):
        text = text[len("whatsapp:") :]
    return text if is_bsuid(text) else meta_phone(text)


@dataclass(frozen=True)
class Behaviour:
    """How the fake providers treat one recipient (``POST /_sandbox/recipients``)."""

    status: str | None = None  # the last status reported; failed/undelivered need an error
    error_code: int | None = None  # asynchronous failure (a status webhook / callback)
    sync_error_code: int | None = None  # the API call itself fails with this provider error
    user_id: str | None = None  # WhatsApp: the BSUID Meta reports for a phone recipient
    phone: str | None = None  # WhatsApp: the phone Meta reports for a BSUID recipient

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


DEFAULT = Behaviour()


class Recipients:
    """Per-channel recipient behaviour, keyed by BSUID or E.164 phone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_channel: dict[str, dict[str, Behaviour]] = {"whatsapp": {}, "sms": {}}

    def update(self, doc: Any) -> None:
        """Merge ``{"whatsapp": {key: options|null}, "sms": {...}}``; ``null`` forgets a recipient.

        Validated whole before anything changes: :class:`ConfigError` leaves the state as it was.
        """
        parsed = _parse_recipients(doc)
        with self._lock:
            for channel, entries in parsed.items():
                table = self._by_channel[channel]
                if len(table.keys() | entries.keys()) > RECIPIENTS_LIMIT:
                    raise ConfigError(f"{channel}: more than {RECIPIENTS_LIMIT} recipients configured")
            for channel, entries in parsed.items():
                table = self._by_channel[channel]
                for key, behaviour in entries.items():
                    if behaviour is None:
                        table.pop(key, None)
                    else:
                        table[key] = behaviour

    def lookup(self, channel: Channel, *addresses: str | None) -> Behaviour:
        """The behaviour of the first configured address (raw ``to``/``recipient`` values), else default."""
        with self._lock:
            table = self._by_channel[channel]
            for address in addresses:
                key = recipient_key(address) if address else None
                if key is not None and key in table:
                    return table[key]
        return DEFAULT

    def clear(self) -> None:
        with self._lock:
            for table in self._by_channel.values():
                table.clear()

    def as_json(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                channel: {key: b.as_json() for key, b in table.items()}
                for channel, table in self._by_channel.items()
            }


def _parse_recipients(doc: Any) -> dict[str, dict[str, Behaviour | None]]:
    """A ``POST /_sandbox/recipients`` document, validated: channel -> key -> behaviour (``None``: forget)."""
    if not isinstance(doc, dict):
        raise ConfigError('expected an object {"whatsapp": {...}, "sms": {...}}')
    unknown = sorted(set(doc) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown channel(s) {unknown}: use 'whatsapp' and/or 'sms'")
    parsed: dict[str, dict[str, Behaviour | None]] = {}
    for channel, entries in doc.items():
        if not isinstance(entries, dict):
            raise ConfigError(f"{channel}: expected an object keyed by BSUID or E.164 phone")
        parsed[channel] = {}
        for raw_key, options in entries.items():
            key = _configured_key(channel, raw_key)
            parsed[channel][key] = None if options is None else _behaviour(channel, raw_key, options)
    return parsed


def _configured_key(channel: str, raw_key: Any) -> str:
    """The key a recipient is configured under; SMS takes phones only."""
    key = recipient_key(str(raw_key))
    if key is None or (channel == "sms" and is_bsuid(key)):
        kind = "an E.164 phone" if channel == "sms" else "a BSUID or an E.164 phone"
        raise ConfigError(f"{channel}: key {raw_key!r} is not {kind}")
    return key


def _behaviour(channel: str, key: Any, options: Any) -> Behaviour:
    where = f"{channel}.{key}"
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: expected an object of options {list(_OPTIONS[channel])}")
    unknown = sorted(set(options) - set(_OPTIONS[channel]))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; known: {list(_OPTIONS[channel])}")
    statuses = WHATSAPP_STATUSES if channel == "whatsapp" else SMS_STATUSES
    status = options.get("status")
    if status is not None and status not in statuses:
        raise ConfigError(f"{where}.status: expected one of {list(statuses)}, got {status!r}")
    error_code = _error_code(where, "error_code", options.get("error_code"))
    sync_error_code = _error_code(where, "sync_error_code", options.get("sync_error_code"))
    if error_code is not None and status in ("sent", "delivered", "read"):
        raise ConfigError(f"{where}: error_code needs status failed/undelivered (or none), not {status!r}")
    user_id, phone = options.get("user_id"), options.get("phone")
    if user_id is not None and not (isinstance(user_id, str) and is_bsuid(user_id)):
        raise ConfigError(f"{where}.user_id: expected a BSUID")
    normalised_phone = meta_phone(phone) if isinstance(phone, str) else None
    if phone is not None and normalised_phone is None:
        raise ConfigError(f"{where}.phone: expected an E.164 phone")
    return Behaviour(
        status=status,
        error_code=error_code,
        sync_error_code=sync_error_code,
        user_id=user_id,
        phone=normalised_phone,
    )


def _error_code(where: str, name: str, value: Any) -> int | None:
    """An ``error_code`` option: a positive integer (digits in a string are accepted), or none."""
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{where}.{name}: expected a positive integer, got {value!r}")
    return value


class Outbox:
    """Every message the fake providers were asked to send, oldest first (the oldest drop past a limit)."""

    FIELDS = (
        "provider",
        "channel",
        "to",
        "recipient",
        "from",
        "type",
        "text",
        "template",
        "provider_message_id",
        "at",
        "media",
        "buttons",
        "list",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=OUTBOX_LIMIT)

    def add(
        self,
        *,
        provider: str,
        channel: str,
        to: str | None,
        recipient: str | None,
        type: str | None,
        text: str | None,
        template: str | None,
        provider_message_id: str | None,
        error_code: int | None = None,
        sender: str | None = None,
        media: dict[str, Any] | None = None,
        buttons: list[dict[str, Any]] | None = None,
        list: dict[str, Any] | None = None,  # the outbox field's name
    ) -> dict[str, Any]:
        """Record one send. R13: ``media`` ``{"type", "url"}``, ``buttons`` ``[{"id", "title"}]`` (a list
        message's rows too) and ``list`` ``{"button", "sections"}``, each ``None`` when absent."""
        entry: dict[str, Any] = {
            "provider": provider,
            "channel": channel,
            "to": to,
            "recipient": recipient,
            "from": sender,  # the business address it was sent from (R10)
            "type": type,
            "text": text,
            "template": template,
            "provider_message_id": provider_message_id,
            "at": now_iso(),
            "media": media,
            "buttons": buttons,
            "list": list,
        }
        if error_code is not None:  # refused by the provider: no message exists
            entry["error_code"] = error_code
        with self._lock:
            self._entries.append(entry)
        return entry

    def list(self, filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            entries = [dict(e) for e in self._entries]
        for name, value in (filters or {}).items():
            if name in self.FIELDS:
                entries = [e for e in entries if str(e.get(name)) == value]
        return entries

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
        return count
