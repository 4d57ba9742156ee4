"""Records from the business's own systems (I11): ``POST /contacts``, its batch form and the CLI import.

A record is not Meta attestation. It creates or updates one customer: the one holding its external id,
else its BSUID, else its phone. It links a phone and a BSUID it names only when no other customer holds
them, and reports a conflict instead of merging (a conflict changes nothing). An opt-out in a record is
applied; turning one off needs the user's own START or marketing resume, so a record cannot do it: that
field is refused and the rest of the record applied. Likewise a record may record the WhatsApp opt-in
(R15) but not withdraw it: that is the user's own marketing stop (``opt_in.withdraw_needs_user``).

``parse_record`` checks a record's JSON (every problem, with a code); ``upsert`` is the rule, pure: the
store reads the holders of the record's keys and commits the ``Resolution`` (conditional writes, I3).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from crossroute import ids
from crossroute.identity.model import BsuidRecord, Customer, Key, PhoneRecord
from crossroute.identity.rules import Resolution, Working

SOURCE = "business.record"  # a phone's source when a record linked it
FIELDS = ("external_id", "phone", "bsuid", "name", "sms_opted_out", "marketing_opted_out", "whatsapp_opt_in")
MAX_EXTERNAL_ID = 128
MAX_NAME = 256
_EXTERNAL_ID = re.compile(r"[^\x00-\x1f\x7f]+")  # printable: no control characters
# Which field of a record names each kind of key, in the order that picks the customer to update.
KEY_FIELDS: dict[str, str] = {"external": "external_id", "bsuid": "bsuid", "phone": "phone"}

Outcome = Literal["created", "updated", "unchanged", "conflict"]


@dataclass(frozen=True)
class Problem:
    """Why a field was refused: ``code`` is stable (docs/api.md), ``problem`` is for people."""

    field: str
    code: str
    problem: str

    def as_doc(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "problem": self.problem}


class InvalidRecord(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class BusinessRecord:
    """One customer as the business's systems know it; None: the record does not say."""

    at: datetime
    event_id: str  # names this record in the identity events it causes (I9)
    external_id: str | None = None
    phone: str | None = None  # E.164
    phone_raw: str | None = None
    bsuid: str | None = None
    name: str | None = None
    sms_opted_out: bool | None = None
    marketing_opted_out: bool | None = None
    whatsapp_opt_in: bool | None = None  # R15: a record may record the opt-in, never withdraw it
    source: str = SOURCE

    @property
    def keys(self) -> list[Key]:
        named = [("external", self.external_id), ("bsuid", self.bsuid), ("phone", self.phone)]
        return [Key(kind, value) for kind, value in named if value]  # type: ignore[arg-type]


@dataclass(frozen=True)
class Upsert:
    """What a record does: the customer it names, what to commit (None: nothing), conflicts as
    ``(field, the other customer's id)``, and the fields refused while the rest was applied."""

    outcome: Outcome
    customer_id: str | None
    resolution: Resolution | None = None
    conflicts: tuple[tuple[str, str], ...] = ()
    refused: tuple[Problem, ...] = ()


def parse_record(doc: Any, *, region: str, at: datetime, event_id: str) -> BusinessRecord:
    """A record's JSON as a ``BusinessRecord``; raises ``InvalidRecord`` listing every problem.
    National phone formats are read in ``region``; ``tenant`` may be present (the caller checks it)."""
    if not isinstance(doc, dict):
        raise InvalidRecord([Problem("record", "record.invalid", "a record is a JSON object")])
    problems = [
        Problem(name, "field.unknown", "not a field of a contact record")
        for name in doc
        if name not in FIELDS and name != "tenant"
    ]
    values: dict[str, Any] = {}
    for name, check in _CHECKS.items():
        value = doc.get(name)
        if value is None:
            continue
        try:
            values.update(check(value, region))
        except InvalidRecord as exc:
            problems.extend(exc.problems)
    if not problems and not any(values.get(KEY_FIELDS[kind]) for kind in KEY_FIELDS):
        problems.append(Problem("record", "record.no_key", "name an external_id, a phone or a bsuid"))
    if problems:
        raise InvalidRecord(problems)
    return BusinessRecord(at=at, event_id=event_id, **values)


def _external_id(value: Any, region: str) -> dict[str, Any]:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_EXTERNAL_ID
        or value != value.strip()
        or not _EXTERNAL_ID.fullmatch(value)
    ):
        problem = f"1-{MAX_EXTERNAL_ID} printable characters, no surrounding spaces"
        raise InvalidRecord([Problem("external_id", "external_id.invalid", problem)])
    return {"external_id": value}


def _phone(value: Any, region: str) -> dict[str, Any]:
    try:
        if not isinstance(value, str):
            raise ids.InvalidIdentifier("not a phone number")
        return {"phone": ids.e164(value, region), "phone_raw": value}
    except ids.InvalidIdentifier as exc:
        raise InvalidRecord([Problem("phone", "phone.invalid", str(exc))]) from None


def _bsuid(value: Any, region: str) -> dict[str, Any]:
    try:
        if not isinstance(value, str):
            raise ids.InvalidIdentifier("not a BSUID")
        return {"bsuid": ids.bsuid(value)}
    except ids.InvalidIdentifier as exc:
        raise InvalidRecord([Problem("bsuid", "bsuid.invalid", str(exc))]) from None


def _name(value: Any, region: str) -> dict[str, Any]:
    if not isinstance(value, str) or not 0 < len(value.strip()) <= MAX_NAME:
        raise InvalidRecord([Problem("name", "name.invalid", f"1-{MAX_NAME} characters")])
    return {"name": value.strip()}


def _flag(name: str) -> Callable[[Any, str], dict[str, Any]]:
    def check(value: Any, region: str) -> dict[str, Any]:
        if not isinstance(value, bool):
            raise InvalidRecord([Problem(name, f"{name}.invalid", "true or false")])
        return {name: value}

    return check


_CHECKS: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    "external_id": _external_id,
    "phone": _phone,
    "bsuid": _bsuid,
    "name": _name,
    "sms_opted_out": _flag("sms_opted_out"),
    "marketing_opted_out": _flag("marketing_opted_out"),
    "whatsapp_opt_in": _flag("whatsapp_opt_in"),
}


def upsert(
    tenant: str, record: BusinessRecord, holders: Mapping[Key, Customer], new_id: Callable[[], str]
) -> Upsert:
    """I11 for one record, given the live customers holding its keys (``holders``)."""
    work = Working(holders, new_id, record.at)
    found_by = next((key for key in record.keys if work.holder(key) is not None), None)
    target = work.holder(found_by)
    conflicts = _conflicts(work, record, target, found_by)
    if conflicts:
        return Upsert("conflict", target.id if target else None, conflicts=conflicts)
    created = target is None
    customer = target or work.create(tenant, record)
    refused: list[Problem] = []
    customer = _link(work, customer, record, refused)
    customer = _profile(work, customer, record, refused)
    resolution = work.resolution(customer.id)
    if created:
        return Upsert("created", customer.id, resolution, refused=tuple(refused))
    changed = bool(resolution.customers or resolution.key_owners or resolution.events)
    return Upsert(
        "updated" if changed else "unchanged",
        customer.id,
        resolution if changed else None,
        refused=tuple(refused),
    )


def _conflicts(
    work: Working, record: BusinessRecord, target: Customer | None, found_by: Key | None
) -> tuple[tuple[str, str], ...]:
    """Keys of the record held by a customer other than the one it updates; and the key that found that
    customer when it carries another external id than the record's (one per customer). Never a merge."""
    if target is None or found_by is None:
        return ()
    found = [
        (KEY_FIELDS[key.kind], holder.id)
        for key in record.keys
        if (holder := work.holder(key)) is not None and holder.id != target.id
    ]
    if record.external_id and target.external_id not in (None, record.external_id):
        found.append((KEY_FIELDS[found_by.kind], target.id))
    return tuple(found)


def _link(work: Working, customer: Customer, record: BusinessRecord, refused: list[Problem]) -> Customer:
    """The record's keys that no one holds yet join the customer (the conflicts were ruled out)."""
    if record.external_id and customer.external_id is None:
        work.assign(Key("external", record.external_id), customer.id)
        work.note(customer.id, "linked", record, key="external_id", value=record.external_id)
        customer = work.put(replace(customer, external_id=record.external_id))
    if record.phone:
        customer = _link_phone(work, customer, record, refused)
    if record.bsuid and customer.bsuid(record.bsuid) is None:
        if customer.current_bsuid() is not None:
            problem = "the customer has another current BSUID: only the user's number change replaces it"
            refused.append(Problem("bsuid", "bsuid.other_current", problem))
        else:
            work.assign(Key("bsuid", record.bsuid), customer.id)
            work.note(customer.id, "linked", record, key="bsuid", value=record.bsuid)
            customer = work.put(customer.with_bsuid(BsuidRecord(record.bsuid, "current", record.at)))
    return customer


def _link_phone(
    work: Working, customer: Customer, record: BusinessRecord, refused: list[Problem]
) -> Customer:
    assert record.phone
    listed = customer.phone(record.phone)
    if listed is not None:
        if listed.status == "stale":  # the user left it (I7) or it passed to someone else (I6)
            problem = "the customer left this number: it stays stale, and is never texted"
            refused.append(Problem("phone", "phone.stale", problem))
        return customer
    work.assign(Key("phone", record.phone), customer.id)
    work.note(customer.id, "linked", record, key="phone", value=record.phone)
    phone = PhoneRecord(record.phone, "current", record.source, record.at, record.phone_raw)
    return work.put(customer.with_phone(phone))


# An opt-out a record may turn on: (its field, the customer's attribute of its time, who alone ends it).
_OPT_OUTS = (
    ("sms_opted_out", "sms_opt_at", "an SMS opt-out ends only with the user's own START"),
    ("marketing_opted_out", "marketing_opt_at", "a marketing opt-out ends only with the user's own resume"),
)


def _profile(work: Working, customer: Customer, record: BusinessRecord, refused: list[Problem]) -> Customer:
    """The name, and the opt-outs a record may turn on (never off)."""
    changed = customer
    if record.name is not None and record.name != customer.name:
        profile_at = max(record.at, customer.profile_at or record.at)
        changed = replace(changed, name=record.name, profile_at=profile_at)
    for name, at, ended_by in _OPT_OUTS:
        wanted = getattr(record, name)
        if wanted is None or wanted == getattr(customer, name):
            continue
        if wanted:
            turned_on: dict[str, Any] = {name: True, at: record.at}
            changed = replace(changed, **turned_on)
        else:
            refused.append(Problem(name, "opt_in.needs_user", ended_by))
    changed = _opt_in(work, changed, record, refused)
    return work.put(changed) if changed != customer else customer


def _opt_in(work: Working, customer: Customer, record: BusinessRecord, refused: list[Problem]) -> Customer:
    """R15: ``true`` records the WhatsApp opt-in (an identity event on the timeline); ``false`` on an
    opted-in customer is refused, and on one without an opt-in changes nothing."""
    if record.whatsapp_opt_in is None or record.whatsapp_opt_in == customer.whatsapp_opt_in:
        return customer
    if not record.whatsapp_opt_in:
        problem = "a WhatsApp opt-in ends only with the user's own marketing stop"
        refused.append(Problem("whatsapp_opt_in", "opt_in.withdraw_needs_user", problem))
        return customer
    work.note(customer.id, "whatsapp_opt_in", record, value=True)
    at = max(record.at, customer.whatsapp_opt_in_at or record.at)
    source = record.source
    return replace(customer, whatsapp_opt_in=True, whatsapp_opt_in_at=at, whatsapp_opt_in_source=source)
