"""The customer profile as the identity rules see it: plain, immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

PhoneStatus = Literal["current", "stale"]
BsuidStatus = Literal["current", "previous"]
KeyKind = Literal["phone", "bsuid", "external"]  # external: the business's own id (I11)


@dataclass(frozen=True)
class Key:
    """An identifier that names at most one live customer per tenant (I3)."""

    kind: KeyKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}#{self.value}"


@dataclass(frozen=True)
class PhoneRecord:
    e164: str
    status: PhoneStatus
    source: str  # which kind of provider event attested it, e.g. "meta.message", "twilio.sms"
    at: datetime  # provider time of the latest attestation: decides who holds a recycled number
    raw: str | None = None


@dataclass(frozen=True)
class BsuidRecord:
    id: str
    status: BsuidStatus
    at: datetime  # provider time it was first seen: a later number change outranks an earlier one


@dataclass(frozen=True)
class Customer:
    """One person for one tenant. A merged-away customer is a tombstone with ``merged_into`` set."""

    id: str
    tenant: str
    created_at: datetime
    updated_at: datetime
    phones: tuple[PhoneRecord, ...] = ()
    bsuids: tuple[BsuidRecord, ...] = ()
    parent_bsuid: str | None = None
    username: str | None = None
    name: str | None = None
    # When the attribute above was last set, by provider time: the latest event wins, whatever the order.
    profile_at: datetime | None = None  # the name's time
    username_at: datetime | None = None  # the username's: an event may carry one without the other
    sms_opted_out: bool = False
    sms_opt_at: datetime | None = None
    marketing_opted_out: bool = False
    marketing_opt_at: datetime | None = None
    # R15: the recorded WhatsApp opt-in, when it last changed and who changed it ("business.record",
    # "user.keyword", "meta.marketing_resume"; "meta.marketing_stop" when a marketing stop withdrew it).
    whatsapp_opt_in: bool = False
    whatsapp_opt_in_at: datetime | None = None
    whatsapp_opt_in_source: str | None = None
    # Business number -> provider time of the customer's last WhatsApp message to it (the 24 h window).
    whatsapp_last_inbound: dict[str, datetime] = field(default_factory=dict)
    # The tenant SMS number the customer last texted, and that message's provider time (R10, sticky).
    sms_last_to: str | None = None
    sms_last_to_at: datetime | None = None
    merged_from: tuple[str, ...] = ()
    merged_into: str | None = None
    version: int = 0
    # The business's own id for this customer (I11): a key like a phone, set only by its own records.
    external_id: str | None = None

    @property
    def live(self) -> bool:
        return self.merged_into is None

    @property
    def keys(self) -> tuple[Key, ...]:
        """Every key this customer lists: stale phones and previous BSUIDs included, and its external id.
        A stale phone's key may belong to someone else by now (I6): the key items say who holds it."""
        external = (Key("external", self.external_id),) if self.external_id else ()
        return (
            tuple(Key("phone", p.e164) for p in self.phones)
            + tuple(Key("bsuid", b.id) for b in self.bsuids)
            + external
        )

    def current_phones(self) -> list[str]:
        return [p.e164 for p in self.phones if p.status == "current"]

    def current_bsuid(self) -> str | None:
        return next((b.id for b in self.bsuids if b.status == "current"), None)

    def phone(self, e164: str) -> PhoneRecord | None:
        return next((p for p in self.phones if p.e164 == e164), None)

    def with_phone(self, record: PhoneRecord) -> Customer:
        """Add or replace the record for that number."""
        others = tuple(p for p in self.phones if p.e164 != record.e164)
        return replace(self, phones=(*others, record))

    def with_phone_status(self, e164: str, status: PhoneStatus) -> Customer:
        record = self.phone(e164)
        return self.with_phone(replace(record, status=status)) if record else self

    def bsuid(self, bsuid: str) -> BsuidRecord | None:
        return next((b for b in self.bsuids if b.id == bsuid), None)

    def with_bsuid(self, record: BsuidRecord) -> Customer:
        """Add or replace that BSUID; a current one retires the others (one current BSUID, I7)."""
        others = tuple(b for b in self.bsuids if b.id != record.id)
        if record.status == "current":
            others = tuple(replace(b, status="previous") for b in others)
        return replace(self, bsuids=(*others, record))
