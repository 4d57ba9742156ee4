"""What the provider parsers share: the tenant, the arrival time, and identifier checks that record
every identifier they drop (docs/identity.md, I1 and I2: only a well-formed phone or BSUID is a key)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crossroute import ids, limits
from crossroute.inbound import Person, Provider, Unrecognised

# One field name, or several spellings of it (the first one present and valid wins).
Names = str | tuple[str, ...]
_LABEL = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass
class Context:
    """Shared by the provider parsers: tenant, arrival time, and identifier checks that record drops."""

    tenant: str
    received_at: datetime
    default_region: str = "US"
    # The business number the intake resolved when the payload names none (Meta: by the WABA).
    business: str = ""
    rejected: list[str] = field(default_factory=list)

    def phone(self, value: Any, where: str, *, wa_id: bool = False) -> str | None:
        """E.164 of a provider phone (``wa_id``: international digits), or ``None`` and a recorded drop."""
        if value is None or value == "":
            return None
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
        try:
            if text is None:
                raise ids.InvalidIdentifier("not text")
            return ids.e164_from_wa_id(text) if wa_id else ids.e164(text, self.default_region)
        except ValueError:  # InvalidIdentifier, or a region phonenumbers does not know
            self.rejected.append(f"unparseable phone in {where}")
            return None

    def bsuid(self, value: Any, where: str, *, parent: bool = False) -> str | None:
        """A (parent) BSUID verbatim, or ``None`` and a recorded drop: a malformed one is never a key."""
        if value is None or value == "":
            return None
        check = ids.parent_bsuid if parent else ids.bsuid
        try:
            if not isinstance(value, str):
                raise ids.InvalidIdentifier("not text")
            return check(value)
        except ids.InvalidIdentifier:
            self.rejected.append(f"malformed {'parent BSUID' if parent else 'BSUID'} in {where}")
            return None

    def person(
        self,
        item: Mapping[str, Any],
        *,
        wa_id: Names = (),
        phone: Names = (),
        bsuid: Names = (),
        parent: Names = (),
        username: Names = (),
        name: Names = (),
        prefix: str = "",
    ) -> Person:
        """A ``Person`` from ``item``'s fields, each checked; ``prefix`` names the item in drop reasons.

        ``wa_id`` fields hold international digits (Meta's form), ``phone`` fields any written form.
        """

        def where(key: str) -> str:
            return f"{prefix}.{key}" if prefix else key

        phones = [
            (self.phone(item.get(key), where(key), wa_id=is_wa), item.get(key))
            for names, is_wa in ((wa_id, True), (phone, False))
            for key in _names(names)
        ]
        e164, raw = next(((p, str(r)) for p, r in phones if p), (None, None))
        bsuids = [self.bsuid(item.get(key), where(key)) for key in _names(bsuid)]
        parents = [self.bsuid(item.get(key), where(key), parent=True) for key in _names(parent)]
        return Person(
            phone=e164,
            phone_raw=raw,
            bsuid=next(filter(None, bsuids), None),
            parent_bsuid=next(filter(None, parents), None),
            username=next(filter(None, (_username(item.get(key)) for key in _names(username))), None),
            name=next(filter(None, (_text(item.get(key)) for key in _names(name))), None),
        )

    def unrecognised(self, provider: Provider, kind: str, reason: str, raw: Any) -> Unrecognised:
        return Unrecognised(
            self.tenant, provider, kind, reason, raw if isinstance(raw, dict) else {"value": raw}
        )

    @staticmethod
    def label(value: Any, default: str = "other") -> str:
        """A provider's type or field name if it is a plain lowercase word, else ``default``: safe to log."""
        return value if isinstance(value, str) and _LABEL.fullmatch(value) else default


def _names(names: Names) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else names


def _text(value: Any) -> str | None:
    """A profile name or username: text, cut to a sane length (it is stored on the customer)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value[: limits.PROFILE_TEXT_CHARS]


def _username(value: Any) -> str | None:
    """Usernames are compared without the ``@`` Meta may put in front (and any ``whatsapp:``)."""
    text = _text(value)
    if text is None:
        return None
    text = ids.strip_channel_prefix(text.strip())
    return text.removeprefix("@") or None
