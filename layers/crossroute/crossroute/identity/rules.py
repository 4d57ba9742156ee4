"""The identity rules (contract §6) as pure functions: what an event's identifiers do to customers.

``resolve`` takes what an event attests (``Sighting``) and the live customers currently holding those keys,
and returns a ``Resolution``: the customer the event belongs to, every customer state to write, every
key whose owner changes, and the identity events to record (I9). The store applies it atomically.
Provider timestamps, not arrival order, decide conflicts, so redelivered and reordered events end in
the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from crossroute.identity.model import BsuidRecord, BsuidStatus, Customer, Key, PhoneRecord, PhoneStatus

# Sources whose phone is the user's WhatsApp number: the one a number change leaves behind.
WHATSAPP_SOURCES = frozenset({"meta.message", "meta.contact_request", "meta.state_sync", "twilio.whatsapp"})


def whatsapp_source(source: str) -> bool:
    """Also a number change's own source (``meta.user_changed_number``, ...): it names a WhatsApp number."""
    return source in WHATSAPP_SOURCES or source.startswith("meta.")


@dataclass(frozen=True)
class Sighting:
    """Identifiers one provider event attests for one person, at the provider's time."""

    at: datetime
    source: str  # e.g. "meta.message", "meta.contact_request", "twilio.sms", "meta.state_sync"
    event_id: str  # the provider event it came from, for the identity events (I9)
    phone: str | None = None  # E.164, attested by the provider (never from a shared contact card, I5)
    phone_raw: str | None = None
    bsuid: str | None = None
    parent_bsuid: str | None = None

    @property
    def keys(self) -> list[Key]:
        return [k for k in (self.phone_key, self.bsuid_key) if k]

    @property
    def phone_key(self) -> Key | None:
        return Key("phone", self.phone) if self.phone else None

    @property
    def bsuid_key(self) -> Key | None:
        return Key("bsuid", self.bsuid) if self.bsuid else None


@dataclass(frozen=True)
class NumberChange:
    """I7: the user moved from ``previous_*`` to ``bsuid`` (and ``phone`` when shareable)."""

    at: datetime
    source: str
    event_id: str
    bsuid: str
    phone: str | None = None
    previous_bsuid: str | None = None
    previous_phone: str | None = None
    parent_bsuid: str | None = None  # the parent of ``bsuid`` (None: not given)

    @property
    def keys(self) -> list[Key]:
        values = [
            ("bsuid", self.previous_bsuid),
            ("phone", self.previous_phone),
            ("bsuid", self.bsuid),
            ("phone", self.phone),
        ]
        return [Key(kind, value) for kind, value in values if value]  # type: ignore[arg-type]


@dataclass(frozen=True)
class IdentityEvent:
    """One link, merge, rotation or conflict, kept on the customer it happened to (I9)."""

    customer_id: str
    kind: str  # created, linked, merged, merged_into, number_changed, phone_stale, phone_moved_in/out,
    # whatsapp_opt_in (R15: recorded here by business records, by ingest for the user's own changes)
    at: datetime
    source: str
    event_id: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resolution:
    customer_id: str
    customers: dict[str, Customer]  # the new state of every customer to write
    created: frozenset[str]
    base_versions: dict[str, int]  # the version each existing customer had when read
    key_owners: dict[Key, tuple[str | None, str]]  # key -> (owner before, owner after)
    events: list[IdentityEvent]

    @property
    def changed(self) -> bool:
        return bool(self.created or self.key_owners or self.events)


class Cause(Protocol):
    """What changed identities (I9): when, which kind of source, which event. A ``Sighting``, a
    ``NumberChange``, or a record from the business's own systems (``business_records``)."""

    @property
    def at(self) -> datetime: ...

    @property
    def source(self) -> str: ...

    @property
    def event_id(self) -> str: ...


class Working:
    """The customers an event touches, changed step by step; becomes a ``Resolution``."""

    def __init__(self, holders: Mapping[Key, Customer], new_id: Callable[[], str], at: datetime) -> None:
        self.holder_of: dict[Key, str] = {k: c.id for k, c in holders.items()}
        self.customers: dict[str, Customer] = {c.id: c for c in holders.values()}
        self.base_versions = {c.id: c.version for c in holders.values()}
        self.created: set[str] = set()
        self.key_owners: dict[Key, tuple[str | None, str]] = {}
        self.events: list[IdentityEvent] = []
        self.touched: set[str] = set()
        self._new_id = new_id
        self._at = at

    def holder(self, key: Key | None) -> Customer | None:
        owner = self.holder_of.get(key) if key else None
        return self.customers[owner] if owner else None

    def put(self, customer: Customer) -> Customer:
        self.customers[customer.id] = customer
        self.touched.add(customer.id)
        return customer

    def create(self, tenant: str, cause: Cause) -> Customer:
        customer = Customer(id=self._new_id(), tenant=tenant, created_at=self._at, updated_at=self._at)
        self.created.add(customer.id)
        self.note(customer.id, "created", cause)
        return self.put(customer)

    def assign(self, key: Key, owner: str) -> None:
        before = self.holder_of.get(key)
        if before == owner:
            return
        first_before = self.key_owners.get(key, (before, owner))[0]
        self.key_owners[key] = (first_before, owner)
        self.holder_of[key] = owner

    def note(self, customer_id: str, kind: str, cause: Cause, **detail: Any) -> None:
        self.events.append(IdentityEvent(customer_id, kind, cause.at, cause.source, cause.event_id, detail))

    def resolution(self, customer_id: str) -> Resolution:
        customers = {
            cid: replace(c, updated_at=max(c.updated_at, self._at))
            for cid, c in self.customers.items()
            if cid in self.touched
        }
        return Resolution(
            customer_id=customer_id,
            customers=customers,
            created=frozenset(self.created),
            base_versions={cid: v for cid, v in self.base_versions.items() if cid in customers},
            key_owners={k: v for k, v in self.key_owners.items() if v[0] != v[1]},
            events=self.events,
        )


IdentityCause = Sighting | NumberChange


def resolve(
    tenant: str, sighting: Sighting, holders: Mapping[Key, Customer], new_id: Callable[[], str]
) -> Resolution:
    """Which customer ``sighting`` belongs to, creating, linking, merging or moving keys as I3-I6 say."""
    if not sighting.keys:
        raise ValueError("a sighting needs a phone or a BSUID")
    work = Working(holders, new_id, sighting.at)
    target = _holder_for(work, tenant, sighting)
    return work.resolution(target.id)


def change_number(
    tenant: str, change: NumberChange, holders: Mapping[Key, Customer], new_id: Callable[[], str]
) -> Resolution:
    """I7: the customer keeps its id and history, gains the new BSUID (and phone); the old phone is stale."""
    work = Working(holders, new_id, change.at)
    now = _attested_now(change)
    target = _changing_customer(work, tenant, change)
    target = _keep_previous_bsuid(work, target, change)
    target = _merge_bsuid_less_old_holder(work, target, change)
    target = _take_new_bsuid(work, target, change, now)
    target = _keep_old_number(work, target, change)
    target = _leave_old_numbers(work, target, change)
    if change.phone:
        target = _link_phone(work, target, now)
    target = _move_parent(work, target, change)
    work.note(target.id, "number_changed", change, bsuid=change.bsuid, previous_bsuid=change.previous_bsuid)
    return work.resolution(target.id)


def _attested_now(change: NumberChange) -> Sighting:
    """What the change attests about the user from now on: the new BSUID, and the new phone if shared."""
    return Sighting(
        at=change.at, source=change.source, event_id=change.event_id, phone=change.phone, bsuid=change.bsuid
    )


def _changing_customer(work: Working, tenant: str, change: NumberChange) -> Customer:
    """Who changed number: the holder of the old BSUID, else of the old number, else of the new BSUID,
    else a new customer."""
    target = work.holder(Key("bsuid", change.previous_bsuid)) if change.previous_bsuid else None
    by_phone = work.holder(Key("phone", change.previous_phone)) if change.previous_phone else None
    if target is None and by_phone and by_phone.current_bsuid() in (None, change.bsuid):
        target = by_phone  # not when another WhatsApp user has the old number by now (I6)
    if target is None:
        target = work.holder(Key("bsuid", change.bsuid)) or work.create(tenant, change)
    return target


def _keep_previous_bsuid(work: Working, target: Customer, change: NumberChange) -> Customer:
    """The old BSUID stays on the customer as a previous one, unless another customer holds it."""
    if change.previous_bsuid and work.holder(Key("bsuid", change.previous_bsuid)) in (None, target):
        return _attach_bsuid(work, target, change.previous_bsuid, change, status="previous")
    return target


def _merge_bsuid_less_old_holder(work: Working, target: Customer, change: NumberChange) -> Customer:
    """I4: Meta attests the old number was this user's; its customer without a BSUID is them."""
    old_holder = work.holder(Key("phone", change.previous_phone)) if change.previous_phone else None
    if old_holder is None or old_holder.id == target.id or old_holder.current_bsuid() is not None:
        return target
    record = old_holder.phone(change.previous_phone or "")
    if record and record.status == "current":
        return _merge(work, old_holder, target, change)
    return target


def _take_new_bsuid(work: Working, target: Customer, change: NumberChange, now: Sighting) -> Customer:
    """The new BSUID becomes current. Anyone already holding it is this same person: merge them into the
    customer with history."""
    new_holder = work.holder(now.bsuid_key)
    if new_holder and new_holder.id != target.id:
        target = _merge(work, target, new_holder, change, survivor_id=target.id)
    return _attach_bsuid(work, target, change.bsuid, change, status="current", rotate=True)


def _keep_old_number(work: Working, target: Customer, change: NumberChange) -> Customer:
    """The old number stays on the customer (it goes stale next). If it already went to another WhatsApp
    user (I6): a stale copy, or it moves here if that user's attestation is older than this change."""
    if not change.previous_phone:
        return target
    if work.holder(Key("phone", change.previous_phone)) in (None, target):
        return _attach_phone(work, target, change.previous_phone, None, change)
    old = Sighting(
        change.at, change.source, change.event_id, change.previous_phone, bsuid=change.previous_bsuid
    )
    return _take_phone(work, target, old, work.holder(old.phone_key))


def _leave_old_numbers(work: Working, target: Customer, change: NumberChange) -> Customer:
    """The number the user left is never used for SMS again; other numbers (say, a landline) stay.
    A WhatsApp number attested after the change (with the new id) was not left: keep it.
    A stale number keeps the change's time: it was the customer's until then."""
    for record in target.phones:
        whatsapp = whatsapp_source(record.source) and record.at < change.at
        left = record.e164 == change.previous_phone or whatsapp
        if left and record.status == "current" and record.e164 != change.phone:
            stale = replace(record, status="stale", at=max(record.at, change.at))
            target = work.put(target.with_phone(stale))
            work.note(target.id, "phone_stale", change, phone=record.e164)
    return target


def _move_parent(work: Working, target: Customer, change: NumberChange) -> Customer:
    """The parent goes with the current BSUID: the old id's parent is not the new id's."""
    if target.current_bsuid() == change.bsuid and target.parent_bsuid != change.parent_bsuid:
        return work.put(replace(target, parent_bsuid=change.parent_bsuid))
    return target


def _holder_for(work: Working, tenant: str, sighting: Sighting) -> Customer:
    if sighting.bsuid:
        target = work.holder(sighting.bsuid_key)
        if target is None:
            # I4: a phone whose customer has no BSUID of its own is the same person: the BSUID joins it.
            target = _bsuid_less_holder(work, sighting) or work.create(tenant, sighting)
            target = _attach_bsuid(work, target, sighting.bsuid, sighting, status="current")
        else:  # keep when it was first seen, whatever the order (a later number change outranks it)
            target = _attach_bsuid(work, target, sighting.bsuid, sighting, status="previous")
    else:
        target = _phone_only(work, tenant, sighting)
    if sighting.phone and sighting.bsuid:
        target = _link_phone(work, target, sighting)
    parent = sighting.parent_bsuid
    if parent and sighting.bsuid == target.current_bsuid() and target.parent_bsuid != parent:
        # Only next to the current BSUID: an old event's parent is the parent of an old id.
        target = work.put(replace(target, parent_bsuid=parent))
    return work.customers[target.id]


def _bsuid_less_holder(work: Working, sighting: Sighting) -> Customer | None:
    holder = work.holder(sighting.phone_key)
    record = holder.phone(sighting.phone) if holder and sighting.phone else None
    if holder and record and record.status == "current" and holder.current_bsuid() is None:
        return holder
    return None


def _phone_only(work: Working, tenant: str, sighting: Sighting) -> Customer:
    """An event with a phone and no BSUID (SMS, older WhatsApp payloads)."""
    assert sighting.phone
    holder = work.holder(sighting.phone_key)
    record = holder.phone(sighting.phone) if holder else None
    if holder and record and (record.status == "current" or record.at >= sighting.at):
        return _refresh_phone(work, holder, sighting)
    # Unknown, or a number its holder gave up (I7) and someone writes from now: a new customer.
    target = work.create(tenant, sighting)
    return _take_phone(work, target, sighting, holder)


def _link_phone(work: Working, target: Customer, sighting: Sighting) -> Customer:
    """I4 / I6: an attested phone next to the BSUID of ``target``."""
    assert sighting.phone
    holder = work.holder(sighting.phone_key)
    if holder is None:
        return _attach_phone(work, target, sighting.phone, sighting.phone_raw, sighting)
    if holder.id == target.id:
        return _unless_left(work, _refresh_phone(work, target, sighting), sighting)
    record = holder.phone(sighting.phone)
    holder_bsuid = holder.current_bsuid()
    if holder_bsuid is None and record is not None and record.status == "current":
        # I4: the phone's customer has no BSUID of its own: the same person, two profiles. Merge.
        return _unless_left(
            work, _refresh_phone(work, _merge(work, holder, target, sighting), sighting), sighting
        )
    # I6: the number belongs to another WhatsApp user now (or did, later than this event says).
    return _unless_left(work, _take_phone(work, target, sighting, holder), sighting)


def _take_phone(work: Working, target: Customer, sighting: Sighting, holder: Customer | None) -> Customer:
    """Give ``target`` the claimed phone; if ``holder`` attested it later, ``target`` only gets it stale."""
    assert sighting.phone
    record = holder.phone(sighting.phone) if holder else None
    if holder is None or record is None:
        return _attach_phone(work, target, sighting.phone, sighting.phone_raw, sighting)
    if record.at > sighting.at:
        # The holder's attestation is newer: this event is from before the number passed on.
        stale = PhoneRecord(sighting.phone, "stale", sighting.source, sighting.at, sighting.phone_raw)
        return work.put(target.with_phone(stale))
    work.put(holder.with_phone_status(sighting.phone, "stale"))
    work.assign(Key("phone", sighting.phone), target.id)
    target = work.put(
        target.with_phone(
            PhoneRecord(sighting.phone, "current", sighting.source, sighting.at, sighting.phone_raw)
        )
    )
    detail = {"phone": sighting.phone, "from_customer": holder.id, "to_customer": target.id}
    work.note(holder.id, "phone_moved_out", sighting, **detail)
    work.note(target.id, "phone_moved_in", sighting, **detail)
    return target


def _attach_phone(
    work: Working, target: Customer, phone: str, raw: str | None, cause: IdentityCause
) -> Customer:
    if target.phone(phone):
        return target
    # A phone seen with a BSUID the customer has since replaced is an old number: stale from the start.
    left = _left_at(target, cause) if isinstance(cause, Sighting) else None
    status: PhoneStatus = "stale" if left else "current"
    work.assign(Key("phone", phone), target.id)
    work.note(target.id, "linked", cause, key="phone", value=phone)
    at = max(cause.at, left) if left else cause.at
    return work.put(target.with_phone(PhoneRecord(phone, status, cause.source, at, raw)))


def _left_at(target: Customer, sighting: Sighting) -> datetime | None:
    """When the sighting's BSUID was replaced on ``target`` (its current one's first sighting), if it was."""
    current = next((b for b in target.bsuids if b.status == "current"), None)
    if current is None or sighting.bsuid is None or sighting.bsuid == current.id:
        return None
    return current.at


def _unless_left(work: Working, target: Customer, sighting: Sighting) -> Customer:
    """I7 whatever the order: a number last seen with an id the customer has since replaced was left."""
    left = _left_at(target, sighting)
    record = target.phone(sighting.phone or "")
    if left is None or record is None or record.status != "current" or record.at >= left:
        return target
    return work.put(target.with_phone(replace(record, status="stale", at=left)))


def _attach_bsuid(
    work: Working,
    target: Customer,
    bsuid: str,
    cause: IdentityCause,
    *,
    status: BsuidStatus,
    rotate: bool = False,
) -> Customer:
    """Give ``target`` a BSUID. Only a later number change (``rotate``) replaces a current one."""
    existing = target.bsuid(bsuid)
    if existing is None:
        work.assign(Key("bsuid", bsuid), target.id)
        work.note(target.id, "linked", cause, key="bsuid", value=bsuid)
    status = _unless_outranked(target, bsuid, cause, status, rotate=rotate)
    if existing and status == "previous":
        status = existing.status  # seeing an id it already has as "previous" leaves its status be
    first_seen = min(existing.at, cause.at) if existing else cause.at
    if existing and existing.status == status and existing.at == first_seen:
        return target
    return work.put(target.with_bsuid(BsuidRecord(bsuid, status, first_seen)))


def _unless_outranked(
    target: Customer, bsuid: str, cause: IdentityCause, status: BsuidStatus, *, rotate: bool
) -> BsuidStatus:
    """A BSUID becomes current only if ``target`` has no other current one, or this is a number change
    (``rotate``) no older than that one's first sighting; otherwise it is a previous one."""
    current = next((b for b in target.bsuids if b.status == "current"), None)
    outranked = current is not None and current.id != bsuid and (not rotate or current.at > cause.at)
    return "previous" if status == "current" and outranked else status


def _refresh_phone(work: Working, target: Customer, sighting: Sighting) -> Customer:
    """The holder attests the number again: keep its newest attestation time, and that it is a WhatsApp
    number once any WhatsApp event said so (a number change leaves those behind), whatever the order."""
    assert sighting.phone
    record = target.phone(sighting.phone)
    if record is None:
        return target
    refreshed = replace(record, at=max(record.at, sighting.at))
    if whatsapp_source(sighting.source) and not whatsapp_source(record.source):
        refreshed = replace(refreshed, source=sighting.source)
    again = sighting.bsuid is not None and sighting.bsuid == target.current_bsuid()
    if record.status == "stale" and sighting.at > record.at and again:
        # Seen with the current id after it went stale: the number was not left after all.
        refreshed = replace(refreshed, status="current")
    return target if refreshed == record else work.put(target.with_phone(refreshed))


def _merge(
    work: Working, a: Customer, b: Customer, cause: IdentityCause, *, survivor_id: str | None = None
) -> Customer:
    """I4: one survivor keeps every key and both histories; the other id keeps resolving to it."""
    if survivor_id is None:
        survivor_id = min((a, b), key=lambda c: (c.created_at, c.id)).id
    survivor, loser = (a, b) if a.id == survivor_id else (b, a)
    merged = survivor
    for record in loser.phones:
        merged = merged.with_phone(_combined_phone(work, merged.phone(record.e164), record, loser.id))
    for bsuid in loser.bsuids:
        current = next((x for x in merged.bsuids if x.status == "current"), None)
        keep_current = bsuid.status == "current" and (current is None or bsuid.at > current.at)
        merged = merged.with_bsuid(replace(bsuid, status="current" if keep_current else "previous"))
    merged = _merge_attributes(merged, loser)
    merged = replace(merged, merged_from=(*merged.merged_from, loser.id, *loser.merged_from))
    merged = replace(merged, external_id=survivor.external_id or loser.external_id)
    _move_keys(work, loser, survivor)
    # A second external id stays on the loser's tombstone (see ``_move_keys``).
    left_external = loser.external_id if survivor.external_id is not None else None
    tombstone = replace(
        loser, phones=(), bsuids=(), merged_into=survivor.id, merged_from=(), external_id=left_external
    )
    work.put(tombstone)
    work.note(survivor.id, "merged", cause, merged_from=loser.id)
    work.note(loser.id, "merged_into", cause, merged_into=survivor.id)
    return work.put(merged)


def _move_keys(work: Working, loser: Customer, survivor: Customer) -> None:
    """The loser's keys go to the survivor: not a phone that moved out of the loser (I6), that key is
    someone else's; and one external id per customer (I11): the survivor's, else the loser's. A second
    one stays with the loser's tombstone, whose id resolves to the survivor, so it still finds them."""
    for key in loser.keys:
        if key.kind == "external" and survivor.external_id is not None:
            continue
        if work.holder_of.get(key, loser.id) == loser.id:
            work.assign(key, survivor.id)


def _combined_phone(
    work: Working, mine: PhoneRecord | None, theirs: PhoneRecord, loser_id: str
) -> PhoneRecord:
    """One number on both sides of a merge: the side holding its key says whether it is current (the
    other has a stale copy, I6); the newest attestation and a WhatsApp source are kept either way."""
    if mine is None:
        return theirs
    base = theirs if work.holder_of.get(Key("phone", theirs.e164)) == loser_id else mine
    other = mine if base is theirs else theirs
    upgrade = whatsapp_source(other.source) and not whatsapp_source(base.source)
    source = other.source if upgrade else base.source
    return replace(base, at=max(mine.at, theirs.at), source=source)


def _merge_attributes(survivor: Customer, loser: Customer) -> Customer:
    """Latest-wins attributes take the newer side; windows take the later message per business number."""
    merged = survivor
    if _later(loser.profile_at, survivor.profile_at):
        merged = replace(merged, name=loser.name or merged.name, profile_at=loser.profile_at)
    if _later(loser.username_at, survivor.username_at):
        merged = replace(merged, username=loser.username or merged.username, username_at=loser.username_at)
    if _later(loser.sms_opt_at, survivor.sms_opt_at):
        merged = replace(merged, sms_opted_out=loser.sms_opted_out, sms_opt_at=loser.sms_opt_at)
    if _later(loser.marketing_opt_at, survivor.marketing_opt_at):
        merged = replace(
            merged, marketing_opted_out=loser.marketing_opted_out, marketing_opt_at=loser.marketing_opt_at
        )
    if _later(loser.whatsapp_opt_in_at, survivor.whatsapp_opt_in_at):  # R15
        merged = replace(
            merged,
            whatsapp_opt_in=loser.whatsapp_opt_in,
            whatsapp_opt_in_at=loser.whatsapp_opt_in_at,
            whatsapp_opt_in_source=loser.whatsapp_opt_in_source,
        )
    if _later_sms_number(loser, survivor):  # R10: the number last texted, as profile.py orders them
        merged = replace(merged, sms_last_to=loser.sms_last_to, sms_last_to_at=loser.sms_last_to_at)
    windows = dict(survivor.whatsapp_last_inbound)
    for business, at in loser.whatsapp_last_inbound.items():
        windows[business] = max(at, windows.get(business, at))
    # The parent goes with the current BSUID, whichever side it came from.
    current = merged.current_bsuid()
    parent = loser.parent_bsuid if current and loser.bsuid(current) else survivor.parent_bsuid
    return replace(
        merged,
        whatsapp_last_inbound=windows,
        parent_bsuid=parent,
        created_at=min(survivor.created_at, loser.created_at),
    )


def _later_sms_number(a: Customer, b: Customer) -> bool:
    if a.sms_last_to_at is None:
        return False
    if b.sms_last_to_at is None:
        return True
    return (a.sms_last_to_at, a.sms_last_to or "") > (b.sms_last_to_at, b.sms_last_to or "")


def _later(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and (b is None or a > b)
