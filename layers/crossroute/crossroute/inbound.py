"""What providers tell crossroute, in crossroute's own terms.

``crossroute.parsing`` turns queued Meta and Twilio payloads into these; nothing past it sees a
provider's field names. Identifiers are already normalised (``crossroute.ids``): phones are E.164,
BSUIDs verbatim, usernames without ``@``. Every event keeps the provider item it came from in ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from crossroute.channels import Channel

Provider = Literal["meta", "twilio"]
Raw = dict[str, Any]


@dataclass(frozen=True)
class Person:
    """Who an event is about, as far as the provider said. ``phone`` is attested by the provider."""

    phone: str | None = None
    phone_raw: str | None = None
    bsuid: str | None = None
    parent_bsuid: str | None = None
    username: str | None = None
    name: str | None = None

    @property
    def known(self) -> bool:
        return bool(self.phone or self.bsuid)


@dataclass(frozen=True)
class ProviderError:
    code: int | None
    title: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Choice:
    """An option the customer picked (R13): a WhatsApp reply button or list row, a template's quick
    reply, or a numbered option answered by SMS. ``via`` says which (``whatsapp.button_reply``,
    ``whatsapp.list_reply``, ``whatsapp.quick_reply``, ``sms.numbered_option``)."""

    id: str
    title: str
    via: str


@dataclass(frozen=True)
class MediaRef:
    """One attachment as the webhook announced it: Meta's media id, or Twilio's ``MediaUrlN``. ``type``:
    image, video, audio, document, sticker; ``placeholder``: a history item whose media Meta does not
    share (nothing to fetch)."""

    type: str
    mime_type: str
    media_id: str | None = None  # Meta
    url: str | None = None  # Twilio
    sha256: str | None = None  # Meta's, when given
    placeholder: bool = False


@dataclass(frozen=True)
class InboundMessage:
    """A message from a customer (live, or from a coexistence history chunk when ``historical``)."""

    tenant: str
    provider: Provider
    channel: Channel
    message_id: str
    business: str  # phone_number_id (Meta) or our Twilio address: the window is per business number
    sender: Person
    sent_at: datetime
    type: str  # text, interactive, button, image, location, contacts, reaction, system, unsupported, ...
    text: str | None = None  # body, caption or the chosen button/list title
    reply_to: str | None = None
    # A phone from an answer to our REQUEST_CONTACT_INFO / contact_request: attested, it links (I5).
    # Phones in contact cards shared by hand are content only and stay in ``raw``.
    shared_own_phone: str | None = None
    opt_out_keyword: str | None = None  # Twilio's OptOutType (STOP, START, HELP) when it sent one
    # R15: the tenant's WhatsApp opt-in keywords as the intake queued them (the registry's, at arrival).
    opt_in_keywords: tuple[str, ...] = ()
    errors: tuple[ProviderError, ...] = ()
    historical: bool = False
    media: tuple[MediaRef, ...] = ()  # attachments, copied to the media bucket off the ingest path
    raw: Raw = field(default_factory=dict, compare=False)
    choice: Choice | None = None  # the option picked, when the message answers one (R13)


@dataclass(frozen=True)
class OutboundEcho:
    """A message the business sent outside crossroute (WhatsApp Business App, coexistence)."""

    tenant: str
    provider: Provider
    channel: Channel
    message_id: str
    business: str
    recipient: Person
    sent_at: datetime
    type: str
    text: str | None = None
    historical: bool = False
    media: tuple[MediaRef, ...] = ()
    raw: Raw = field(default_factory=dict, compare=False)


Status = Literal["queued", "sent", "delivered", "read", "played", "failed", "undelivered", "canceled"]


# Delivery progress: a status only ever moves up this ladder ("delivered" may be skipped).
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "read": 4,
    "played": 5,
    "failed": 6,
    "undelivered": 6,
    "canceled": 6,
}


@dataclass(frozen=True)
class StatusUpdate:
    """Delivery news about a message we (or the business app) sent."""

    tenant: str
    provider: Provider
    channel: Channel
    message_id: str
    business: str
    recipient: Person
    status: str  # a ``Status`` or whatever new word the provider uses (kept, ranked as unknown)
    at: datetime
    errors: tuple[ProviderError, ...] = ()
    pricing_category: str | None = None
    raw: Raw = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class IdentityChange:
    """The user changed number or user id (I7): ``previous`` becomes ``current``."""

    tenant: str
    provider: Provider
    event_id: str
    business: str
    kind: str  # user_changed_number, user_changed_user_id, customer_changed_number, user_id_update
    previous: Person
    current: Person
    at: datetime
    raw: Raw = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PreferenceChange:
    """``user_preferences``: e.g. marketing messages ``stop`` / ``resume``."""

    tenant: str
    provider: Provider
    business: str
    person: Person
    category: str
    value: str
    at: datetime
    raw: Raw = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ContactLink:
    """The business app's address book says this phone and this BSUID are one person."""

    tenant: str
    provider: Provider
    business: str
    person: Person
    action: str
    at: datetime
    raw: Raw = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Unrecognised:
    """Anything the parser does not understand yet: kept, never a crash."""

    tenant: str
    provider: Provider
    kind: str
    reason: str
    raw: Raw = field(default_factory=dict, compare=False)


ProviderEvent = (
    InboundMessage
    | OutboundEcho
    | StatusUpdate
    | IdentityChange
    | PreferenceChange
    | ContactLink
    | Unrecognised
)
