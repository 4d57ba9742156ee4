"""The single-table layout, in one place. Every partition key starts with the tenant (contract §6).

- identity key: pk ``T#<tenant>#K#<phone|bsuid|external>#<value>``, sk ``KEY`` (external: the business's
  own id, I11)
- customer: pk ``T#<tenant>#C#<customer id>``, sk ``PROFILE``
- identity event: pk ``T#<tenant>#C#<customer id>``, sk ``EV#<time>#<n>``;
  timeline gsi1 ``T#<tenant>#C#<customer id>`` / ``<time>#identity#<n>``
- unrecognised provider event: pk ``T#<tenant>#U#<content hash>``, sk ``RAW`` (expires after 90 days)
- message: pk ``T#<tenant>#M#<provider>#<provider message id>``, sk ``MSG``;
  timeline gsi1 ``T#<tenant>#C#<customer id>`` / ``<time>#message#<provider>#<provider message id>``
- send request: pk ``T#<tenant>#R#<idempotency key>``, sk ``REQUEST`` (``store/sends.py``)
- send request id: pk ``T#<tenant>#Q#<request id>``, sk ``REQUEST_ID``: the key it was given under
- pair pace (WhatsApp, one business number to one user): pk ``T#<tenant>#P#<number>#<user>``, sk
  ``PACE`` (expires a day after its last send)
- erased provider event (I10): pk ``T#<tenant>#E#<keyed hash of the event id>``, sk ``ERASED``: a
  webhook of an erased customer replayed later is not stored again (expires after ``ERASED_FOR``)
- SMS suppression (I10, R4): pk ``T#<tenant>#S#<tag>``, sk ``SUPPRESSED``, ``at`` = when it was written;
  ``tag`` = ``crossroute.privacy.stable_tag("suppression", <E.164 phone>)`` (an HMAC under the stack's
  masking key): a phone whose customer said STOP and was erased. Never expires; the only item an
  erasure leaves besides the tombstones above.
- numbered options offered (R13): pk ``T#<tenant>#Y#<tag>``, sk ``OFFER``, ``tag`` =
  ``stable_tag("offer", <E.164 phone>)``: the options of the last SMS with numbered options sent to that
  phone (``crossroute.replies``), read by ingest with the sender's keys to map a reply to its option;
  expires after ``replies.OFFER_KEEP``, deleted by the erasure of the customer holding the phone.
- orphan index (I10): a send request or an outbound message stored while no customer held its address
  is on gsi1 ``T#<tenant>#O#<tag>`` / ``<time>#decision#<request id>`` (a request) or
  ``<time>#message#<provider>#<provider message id>`` (a message), ``tag`` =
  ``stable_tag("orphan", "<phone|bsuid>#<value>")``: erasing the customer that later holds the address
  finds and deletes them. A request moves to its customer's timeline once dispatch knows the customer.

A key item names the one customer holding that phone or BSUID (I3: claimed with a conditional put,
moved with a condition on its old owner). A message item is keyed by the provider's id, so it is
stored once however often it is delivered, and statuses update it in place. The timeline of a
customer is the ``gsi1`` partition of its id (and of the ids merged into it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    DiscriminatorAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from crossroute import privacy
from crossroute.config import optional_env
from crossroute.identity.model import Key

REQUEST_ID = "REQUEST_ID"  # the sort key of a request id's item
MSG = "MSG"  # the sort key of a message item
SUPPRESSION, ORPHAN, OFFER = (
    "suppression",
    "orphan",
    "offer",
)  # the purposes of their keyed hashes (``privacy.stable_tag``)


def key_pk(tenant: str, key: Key) -> str:
    return f"T#{tenant}#K#{key.kind}#{key.value}"


def customer_pk(tenant: str, customer_id: str) -> str:
    return f"T#{tenant}#C#{customer_id}"


def message_pk(tenant: str, provider: str, message_id: str) -> str:
    return f"T#{tenant}#M#{provider}#{message_id}"


def request_id_pk(tenant: str, request_id: str) -> str:
    return f"T#{tenant}#Q#{request_id}"


def erased_pk(tenant: str, event_digest: str) -> str:
    """``event_digest``: a keyed hash of the provider event id (``crossroute.privacy.keyed_digest``)."""
    return f"T#{tenant}#E#{event_digest}"


def suppression_pk(tenant: str, e164: str) -> str:
    """I10, R4: the SMS suppression of a phone, under a keyed hash of it (the same in every function of
    the stack). Raises ``privacy.KeyUnavailable`` while the stack's key cannot be read."""
    return f"T#{tenant}#S#{privacy.stable_tag(SUPPRESSION, e164)}"


def offer_pk(tenant: str, e164: str) -> str:
    """Where the numbered options last sent to a phone are kept (R13), under a keyed hash of it."""
    return f"T#{tenant}#Y#{privacy.stable_tag(OFFER, e164)}"


def orphan_pk(tenant: str, key: Key) -> str:
    """I10: the gsi1 partition of what was sent to ``key`` (a phone or BSUID) while no customer held it."""
    return f"T#{tenant}#O#{privacy.stable_tag(ORPHAN, str(key))}"


class TimelineIndex(GlobalSecondaryIndex["TableItem"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class TableItem(Model):
    """Every item of the table; ``type`` tells which kind it is."""

    class Meta:
        table_name = optional_env("TABLE_NAME", "crossroute")  # ``bind`` sets the function's table
        region = optional_env("AWS_REGION") or optional_env("AWS_DEFAULT_REGION") or None
        connect_timeout_seconds = 2
        read_timeout_seconds = 5
        max_retry_attempts = 3

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    type = DiscriminatorAttribute()
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    # DynamoDB deletes expired items lazily (up to days later): readers must ignore them themselves.
    expires_at = TTLAttribute(null=True)
    timeline = TimelineIndex()


class KeyItem(TableItem, discriminator="key"):
    customer_id = UnicodeAttribute()


class PhoneMap(MapAttribute[str, Any]):
    e164 = UnicodeAttribute()
    status = UnicodeAttribute()
    source = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    raw = UnicodeAttribute(null=True)


class BsuidMap(MapAttribute[str, Any]):
    id = UnicodeAttribute()
    status = UnicodeAttribute()
    at = UTCDateTimeAttribute()


class CustomerItem(TableItem, discriminator="customer"):
    customer_id = UnicodeAttribute()
    tenant = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    phones = ListAttribute[PhoneMap](of=PhoneMap, default=list)
    bsuids = ListAttribute[BsuidMap](of=BsuidMap, default=list)
    parent_bsuid = UnicodeAttribute(null=True)
    username = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    profile_at = UTCDateTimeAttribute(null=True)
    username_at = UTCDateTimeAttribute(null=True)
    sms_opted_out = BooleanAttribute(default=False)
    sms_opt_at = UTCDateTimeAttribute(null=True)
    marketing_opted_out = BooleanAttribute(default=False)
    marketing_opt_at = UTCDateTimeAttribute(null=True)
    whatsapp_opt_in = BooleanAttribute(default=False)  # R15, with its time and source
    whatsapp_opt_in_at = UTCDateTimeAttribute(null=True)
    whatsapp_opt_in_source = UnicodeAttribute(null=True)
    # business number -> epoch seconds of the customer's last WhatsApp message to it
    whatsapp_last_inbound = MapAttribute[str, Any](default=dict)
    # the tenant SMS number the customer last texted, and when (R10)
    sms_last_to = UnicodeAttribute(null=True)
    sms_last_to_at = UTCDateTimeAttribute(null=True)
    merged_from = ListAttribute[str](default=list)
    merged_into = UnicodeAttribute(null=True)
    external_id = UnicodeAttribute(null=True)  # the business's own id (I11); its key item says who holds it
    version = VersionAttribute()


class IdentityEventItem(TableItem, discriminator="identity"):
    customer_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    source = UnicodeAttribute()
    event_id = UnicodeAttribute()
    detail = UnicodeAttribute()  # JSON


class MessageItem(TableItem, discriminator="message"):
    customer_id = UnicodeAttribute(null=True)
    tenant = UnicodeAttribute()
    provider = UnicodeAttribute()
    message_id = UnicodeAttribute()
    direction = UnicodeAttribute(null=True)  # "in" | "out"; absent while only a status is known
    channel = UnicodeAttribute(null=True)
    business = UnicodeAttribute(null=True)
    message_type = UnicodeAttribute(null=True)
    text = UnicodeAttribute(null=True)
    sent_at = UTCDateTimeAttribute(null=True)
    historical = BooleanAttribute(default=False)
    status = UnicodeAttribute(null=True)
    status_rank = NumberAttribute(null=True)
    status_at = UTCDateTimeAttribute(null=True)
    errors = UnicodeAttribute(null=True)  # JSON list of {code, title, detail}
    raw = UnicodeAttribute(null=True)  # JSON: the provider's item, kept whole
    published = UnicodeAttribute(null=True)  # JSON: the events this message caused, replayed on redelivery
    request_key = UnicodeAttribute(null=True)  # a message crossroute sent: its send request's key
    # attachments by index: type, mime_type, state (pending, stored, failed, placeholder), key, size,
    # sha256, reason (crossroute.media; the objects are in the media bucket)
    media = MapAttribute[str, Any](null=True)
    choice = UnicodeAttribute(null=True)  # JSON {id, title, via}: the option a message in picked (R13)


class ErasedItem(TableItem, discriminator="erased"):
    """A provider event of an erased customer: its id only as a keyed hash, no other data (I10)."""


class SuppressionItem(TableItem, discriminator="suppression"):
    """A phone that said STOP, kept past its customer's erasure (I10, R4): a keyed hash and a time only."""

    at = UTCDateTimeAttribute()  # when the (latest) erasure wrote it: a START after it lifts it (R4)


class OfferItem(TableItem, discriminator="offer"):
    """The numbered options last sent to a phone (R13): no phone in it, only under its keyed hash."""

    channel = UnicodeAttribute()
    options = UnicodeAttribute()  # JSON list of [id, title]
    sent_at = UTCDateTimeAttribute()
    request_key = UnicodeAttribute(null=True)  # the idempotency key of the request that offered them


class RequestIdItem(TableItem, discriminator="request_id"):
    """Which idempotency key a send request id was given under (``GET /messages/{request_id}``)."""

    idempotency_key = UnicodeAttribute()


class PaceItem(TableItem, discriminator="pace"):
    tat = NumberAttribute()  # the pair rate's theoretical arrival time, seconds since the epoch


@dataclass
class ReadAlong:
    """Items one store wants read in another store's batch read: one round trip instead of two."""

    keys: list[tuple[str, str]]
    found: dict[tuple[str, str], TableItem] = field(default_factory=dict)

    def take(self, items: list[TableItem]) -> None:
        wanted = set(self.keys)
        self.found.update({(i.pk, i.sk): i for i in items if (i.pk, i.sk) in wanted})


class UnrecognisedItem(TableItem, discriminator="unrecognised"):
    """A provider event crossroute could not read yet: kept for a later version to replay."""

    provider = UnicodeAttribute()
    kind = UnicodeAttribute()
    reason = UnicodeAttribute()
    raw = UnicodeAttribute()  # JSON


def bind(table_name: str) -> None:
    """Point every model at ``table_name`` (the function's ``TABLE_NAME``); call before first use."""
    TableItem.Meta.table_name = table_name
    TableItem._connection = None
