"""Meta WhatsApp Cloud API webhooks: handshake, ``X-Hub-Signature-256``, and per-sender queueing.

A POST may carry several entries, changes, senders and statuses. It is split into one queued event per
(change, sender): every field of the change value is kept; only the item lists (``messages``,
``statuses``, ...) and the ``contacts`` describing their people are narrowed to that sender's. This keeps
one person's events in one FIFO group.

What is queued can always be stored (``crossroute.limits``): a part over the queue's message size is
split, and one item that alone is too large has its longest strings trimmed with a marker. A POST that
would fan out into more than ``MAX_QUEUED_EVENTS`` queued events is refused with 413, so that queueing
always fits the function's timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from crossroute import limits
from crossroute.inbound_queue import InboundQueue, QueuedEvent
from crossroute.tenants import Tenant, TenantRegistry
from crossroute.webhooks.errors import (
    BadSignature,
    MalformedRequest,
    PayloadTooLarge,
    UnknownChannel,
    UnsupportedMediaType,
    WrongVerifyToken,
)

KIND = "meta.webhook"
# Meta sends up to 3 MB; leave room, refuse what can only be abuse.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_BYTES = limits.SQS_MESSAGE_BYTES
# Queued events one POST may fan out into: queued in parallel, 1,500 take 1.6-2.7 s on the local stack
# (make bench, section webhook-fanout), well inside the function's timeout. Real batches carry a few.
MAX_QUEUED_EVENTS = 1500
_SIGNATURE_PREFIX = "sha256="
# Meta's challenge is a number; anything but a short plain token is not echoed.
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{1,256}")


def handshake(registry: TenantRegistry, params: Mapping[str, str]) -> str:
    """Answer Meta's subscription check: the challenge, if the verify token is one of ours."""
    token = params.get("hub.verify_token", "")
    ok = params.get("hub.mode") == "subscribe" and any(
        hmac.compare_digest(token.encode(), m.verify_token.encode()) for m in registry.meta_channels()
    )
    if not ok:
        raise WrongVerifyToken("hub.mode/hub.verify_token do not match")
    challenge = params.get("hub.challenge", "")
    if not _CHALLENGE.fullmatch(challenge):
        raise MalformedRequest("hub.challenge must be a plain token of 1-256 characters")
    return challenge


def verified_app_secret(registry: TenantRegistry, raw: bytes, signature: str | None) -> str:
    """The app secret whose HMAC-SHA256 of the raw body matches ``signature``, each compared in constant
    time. During a rotation a tenant's previous app secret verifies too (``MetaChannel.app_secrets``)."""
    if not signature or not signature.startswith(_SIGNATURE_PREFIX):
        raise BadSignature("missing or malformed X-Hub-Signature-256")
    given = signature[len(_SIGNATURE_PREFIX) :].strip().lower().encode()
    for secret in {s for m in registry.meta_channels() for s in m.app_secrets}:
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, given):
            return secret
    raise BadSignature("X-Hub-Signature-256 does not match")


def accept(
    registry: TenantRegistry, queue: InboundQueue, *, raw: bytes, content_type: str, signature: str | None
) -> list[QueuedEvent]:
    """Verify, resolve tenants and queue a webhook POST; returns what was queued."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("expected application/json")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body of {len(raw)} bytes exceeds {MAX_BODY_BYTES}")
    secret = verified_app_secret(registry, raw, signature)
    events = split(registry, secret, _parse(raw))
    if len(events) > MAX_QUEUED_EVENTS:
        raise PayloadTooLarge(f"{len(events)} events in one POST exceed {MAX_QUEUED_EVENTS}")
    queue.put(events)
    return events


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedRequest("body is not UTF-8 JSON") from None
    except RecursionError:
        raise MalformedRequest(f"JSON nested deeper than {limits.JSON_DEPTH} levels") from None
    if limits.too_deep(doc):
        raise MalformedRequest(f"JSON nested deeper than {limits.JSON_DEPTH} levels")
    if not isinstance(doc, dict) or not isinstance(doc.get("entry"), list) or not doc["entry"]:
        raise MalformedRequest("expected an object with a non-empty 'entry' list")
    if doc.get("object") != "whatsapp_business_account":
        raise MalformedRequest("'object' is not 'whatsapp_business_account'")
    return doc


def split(registry: TenantRegistry, app_secret: str, doc: dict[str, Any]) -> list[QueuedEvent]:
    """One queued event per (change, sender); every change must belong to a tenant of this app."""
    events: list[QueuedEvent] = []
    for entry in doc["entry"]:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise MalformedRequest("each entry needs a 'changes' list")
        for change in changes:
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                raise MalformedRequest("each change needs a 'value' object")
            tenant, business = _tenant_of(registry, app_secret, str(entry.get("id", "")), change["value"])
            for sender, value in _by_sender(change["value"]):
                envelope = {**doc, "entry": [{**entry, "changes": [{**change, "value": value}]}]}
                events.extend(_sized(tenant, business, sender, envelope))
    return events


def _tenant_of(
    registry: TenantRegistry, app_secret: str, waba_id: str, value: dict[str, Any]
) -> tuple[Tenant, str]:
    """The tenant and the business number (phone_number_id) a change is for.

    A change without ``metadata.phone_number_id`` is found by its WABA; its number is the WABA's only
    one, or ``""`` (unknown: such an event is stored but opens no window) when the WABA has several.
    """
    metadata = value.get("metadata")
    pnid = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    pnid = str(pnid) if isinstance(pnid, str | int) and not isinstance(pnid, bool) else ""
    tenant = registry.by_phone_number_id(pnid) if pnid else registry.by_waba_id(waba_id)
    # A tenant of another Meta app must not be reachable with this app's signature.
    if tenant is None or tenant.meta is None or app_secret not in tenant.meta.app_secrets:
        raise UnknownChannel("phone_number_id (or WABA id) is not registered")
    if not pnid and len(tenant.meta.phone_numbers) == 1:
        pnid = tenant.meta.phone_numbers[0].phone_number_id
    return tenant, pnid


# Keys naming the customer in an item of any list a change value carries, most stable first.
_SENDER_PATHS: tuple[tuple[str, ...], ...] = (
    ("from_user_id",),
    ("recipient_user_id",),
    ("to_user_id",),
    ("user_id",),
    ("context", "user_id"),
    ("contact", "user_id"),
    ("user_id", "previous"),
    ("from",),
    ("recipient_id",),
    ("to",),
    ("wa_id",),
    ("context", "wa_id"),
    ("contact", "phone_number"),
)


def _sender(item: Any) -> str:
    return next(iter(_identifiers(item)), "")


def _identifiers(item: Any) -> list[str]:
    """Every id naming the customer in an item, most stable first (the first one is its sender)."""
    threads = item.get("threads") if isinstance(item, dict) else None
    if isinstance(threads, list) and len(threads) == 1:  # a history chunk narrowed to one chat
        return _identifiers(threads[0])
    found: list[str] = []
    for path in _SENDER_PATHS:
        node = item
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str | int) and not isinstance(node, bool) and str(node):
            found.append(str(node))
    return found


def _by_sender(value: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """Narrow every item list to one sender at a time, and ``contacts`` to the entries naming that sender
    (entries naming no sender stay in every part); other fields stay as they are. Linear in the items."""
    value = {k: _per_thread(v) if isinstance(v, list) else v for k, v in value.items()}
    lists = [k for k, v in value.items() if k != "contacts" and isinstance(v, list) and v]
    items, named_by = _items_by_sender(value, lists)
    if len(items) <= 1:
        yield next(iter(items), ""), value
        return
    contacts = value.get("contacts")
    described = _contacts_by_sender(contacts, items, named_by)
    for sender, own in items.items():
        narrowed = {k: own.get(k, []) for k in lists}
        if isinstance(contacts, list):
            narrowed["contacts"] = described[sender]
        yield sender, {**value, **narrowed}


def _items_by_sender(
    value: dict[str, Any], lists: list[str]
) -> tuple[dict[str, dict[str, list[Any]]], dict[str, set[str]]]:
    """The items of each list grouped by sender (sender -> list name -> its items there, in order), and
    which senders' items name each id (any id an item names -> the senders of those items)."""
    items: dict[str, dict[str, list[Any]]] = {}
    named_by: dict[str, set[str]] = {}
    for key in lists:
        for item in value[key]:
            ids = _identifiers(item)
            sender = ids[0] if ids else ""
            items.setdefault(sender, {}).setdefault(key, []).append(item)
            for found in ids:
                named_by.setdefault(found, set()).add(sender)
    return items, named_by


def _contacts_by_sender(
    contacts: Any, senders: Iterable[str], named_by: dict[str, set[str]]
) -> dict[str, list[Any]]:
    """Each sender's ``contacts`` entries: those naming it, and those naming no sender (in every part)."""
    every = list(senders)
    described: dict[str, list[Any]] = {sender: [] for sender in every}
    for contact in contacts if isinstance(contacts, list) else []:
        named = set().union(*(named_by.get(i, set()) for i in _contact_ids(contact)))
        for sender in named or every:
            described[sender].append(contact)
    return described


def _contact_ids(contact: Any) -> list[str]:
    """The ids a ``contacts[]`` entry names."""
    if not isinstance(contact, dict):
        return []
    return [str(contact[key]) for key in ("wa_id", "user_id") if contact.get(key) is not None]


def _per_thread(items: list[Any]) -> list[Any]:
    """Coexistence ``history`` nests every chat of a chunk in one item: one item per chat instead."""
    out: list[Any] = []
    for item in items:
        threads = item.get("threads") if isinstance(item, dict) else None
        if isinstance(threads, list) and len(threads) > 1:
            out.extend({**item, "threads": [thread]} for thread in threads)
        else:
            out.append(item)
    return out


def _sized(tenant: Tenant, business: str, sender: str, envelope: dict[str, Any]) -> list[QueuedEvent]:
    """The envelope as one event, or halved along its longest item list until each part fits SQS; one
    item too large on its own is trimmed (its longest strings cut, with a marker) to fit."""
    event = _event(tenant, business, sender, envelope)
    if event.size <= MAX_MESSAGE_BYTES:
        return [event]
    change = envelope["entry"][0]["changes"][0]
    halves = _halves(change["value"])
    if halves is None:
        room = MAX_MESSAGE_BYTES - (event.size - limits.json_bytes(envelope)) - 1024
        return [_event(tenant, business, sender, limits.fitted(envelope, room))]
    parts = []
    for value in halves:
        part = {**envelope, "entry": [{**envelope["entry"][0], "changes": [{**change, "value": value}]}]}
        parts.extend(_sized(tenant, business, sender, part))
    return parts


def _event(tenant: Tenant, business: str, sender: str, envelope: dict[str, Any]) -> QueuedEvent:
    content = {"payload": envelope, "business": business} if business else {"payload": envelope}
    return QueuedEvent.build(
        tenant=tenant.id,
        sender=sender,
        kind=KIND,
        content=content,
        region=tenant.default_region,
        opt_in_keywords=tenant.whatsapp_opt_in_keywords,
    )


def _halves(value: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``value`` split in two along its longest item list, or its one chat's messages (history)."""
    key = max((k for k, v in value.items() if isinstance(v, list)), key=lambda k: len(value[k]), default=None)
    if key is None:
        return None
    items = value[key]
    if len(items) >= 2:
        half = len(items) // 2
        return {**value, key: items[:half]}, {**value, key: items[half:]}
    threads = items[0].get("threads") if items and isinstance(items[0], dict) else None
    if isinstance(threads, list) and len(threads) == 1 and isinstance(threads[0], dict):
        inner = _halves(threads[0])
        if inner is not None:
            return tuple(  # type: ignore[return-value]
                {**value, key: [{**items[0], "threads": [thread]}]} for thread in inner
            )
    return None
