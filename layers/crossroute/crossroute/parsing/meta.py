"""Meta WhatsApp Cloud API webhooks → crossroute events. Meta's field names stop here.

An envelope (split per sender by ``webhooks.meta``) holds entries → changes, each with a ``field`` and a
``value`` carrying item lists (``messages``, ``statuses``, ...). Each item becomes one event; anything not
understood becomes ``Unrecognised``. ``value.contacts[]`` is not an item list: it describes the people the
items name (profile name, username, ids) and is matched to them by BSUID or phone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crossroute import ids, limits
from crossroute.inbound import (
    Choice,
    ContactLink,
    IdentityChange,
    InboundMessage,
    MediaRef,
    OutboundEcho,
    Person,
    PreferenceChange,
    ProviderError,
    ProviderEvent,
    StatusUpdate,
    Unrecognised,
)
from crossroute.parsing.context import Context

Json = dict[str, Any]
_NOBODY = Person()
_MAX_UNIX_SECONDS = 253402300799  # 9999-12-31
# System messages that move a user to a new phone and/or BSUID (contract I7); others are unrecognised.
_IDENTITY_CHANGES = frozenset({"user_changed_number", "user_changed_user_id", "customer_changed_number"})
# Meta has spelled a status's parent BSUID three ways.
_STATUS_PARENT = ("recipient_parent_user_id", "parent_recipient_user_id", "parent_user_id")


@dataclass(frozen=True)
class _Change:
    """One ``changes[]`` entry: its field, our business number, and the people its ``contacts[]`` describe."""

    ctx: Context
    field: str
    business: str  # phone_number_id
    business_digits: str  # display_phone_number, to tell the business's own messages in history apart
    contacts: tuple[Person, ...]

    @property
    def historical(self) -> bool:
        return self.field == "history"

    def unrecognised(self, items: str, reason: str, raw: Any) -> Unrecognised:
        return self.ctx.unrecognised("meta", f"meta.{self.field}.{items}", reason, raw)

    def known_as(self, person: Person) -> Person:
        """``person`` completed from the ``contacts[]`` entry with the same BSUID or phone."""
        match = next((c for c in self.contacts if _same(c, person)), None)
        return _merged(person, match) if match else person

    def when(self, value: Any, where: str) -> datetime:
        """Unix seconds (string or number) as aware UTC; arrival time, recorded as a drop, if invalid."""
        seconds = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
            seconds = int(value)
        if seconds is not None and 0 <= seconds <= _MAX_UNIX_SECONDS:
            return datetime.fromtimestamp(seconds, UTC)
        self.ctx.rejected.append(f"invalid timestamp in {where}")
        return self.ctx.received_at


ItemReader = Callable[[_Change, Any], list[ProviderEvent]]


def parse_payload(ctx: Context, payload: Any) -> list[ProviderEvent]:
    """Every event of a webhook envelope, in the order Meta listed them."""
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return [ctx.unrecognised("meta", "meta.webhook", "payload is not a webhook envelope", payload)]
    return [event for entry in entries for event in _entry(ctx, entry)]


def _entry(ctx: Context, entry: Any) -> list[ProviderEvent]:
    changes = entry.get("changes") if isinstance(entry, dict) else None
    if not isinstance(changes, list):
        return [ctx.unrecognised("meta", "meta.webhook", "entry without a changes list", entry)]
    return [event for change in changes for event in _change(ctx, change)]


def _change(ctx: Context, change: Any) -> list[ProviderEvent]:
    value = change.get("value") if isinstance(change, dict) else None
    if not isinstance(change, dict) or not isinstance(value, dict):
        return [ctx.unrecognised("meta", "meta.webhook", "change without a value object", change)]
    field = ctx.label(change.get("field"))
    readers = _FIELDS.get(field)
    if readers is None:
        return [ctx.unrecognised("meta", f"meta.{field}", "unknown field", change)]
    metadata = _obj(value.get("metadata"))
    here = _Change(
        ctx,
        field,
        business=_id(metadata.get("phone_number_id")) or ctx.business,
        business_digits=_digits(metadata.get("display_phone_number")),
        contacts=_contacts(ctx, value.get("contacts")),
    )
    lists = {key: items for key, items in value.items() if key in readers or isinstance(items, list)}
    lists.pop("contacts", None)
    if not lists:
        return [ctx.unrecognised("meta", f"meta.{field}", "change without items", change)]
    return [event for key, items in lists.items() for event in _items(here, readers, key, items)]


def _items(here: _Change, readers: dict[str, ItemReader], key: str, items: Any) -> list[ProviderEvent]:
    reader = readers.get(key)
    if reader is None:
        return [here.unrecognised(here.ctx.label(key), "unknown item list", {key: items})]
    if not isinstance(items, list):
        return [here.unrecognised(key, "item list is not a list", {key: items})]
    return [event for item in items for event in reader(here, item)]


def _contacts(ctx: Context, contacts: Any) -> tuple[Person, ...]:
    return tuple(
        ctx.person(
            {**_obj(c.get("profile")), **c},
            wa_id="wa_id",
            bsuid="user_id",
            parent="parent_user_id",
            username="username",
            name="name",
            prefix="contacts",
        )
        for c in _list(contacts)
        if isinstance(c, dict)
    )


# --- messages ---------------------------------------------------------------------------------------------


def _message(
    here: _Change, item: Any, thread: Person = _NOBODY, where: str = "messages"
) -> list[ProviderEvent]:
    """A customer's message (``thread``: who a history thread is with, filling gaps in the sender)."""
    if not isinstance(item, dict):
        return [here.unrecognised("messages", "item is not an object", item)]
    kind = here.ctx.label(item.get("type"), "unknown")
    if kind == "system":
        return [_system(here, item)]
    own = here.ctx.person(
        item, wa_id="from", bsuid="from_user_id", parent="from_parent_user_id", prefix=where
    )
    sender = here.known_as(_merged(own, thread))
    message_id = _id(item.get("id"))
    if not message_id or not sender.known:
        return [here.unrecognised("messages", "message without an id or a valid sender", item)]
    return [
        InboundMessage(
            tenant=here.ctx.tenant,
            provider="meta",
            channel="whatsapp",
            message_id=message_id,
            business=here.business,
            sender=sender,
            sent_at=here.when(item.get("timestamp"), f"{where}.timestamp"),
            type=kind,
            text=_content(item, kind),
            reply_to=_reply_to(item, kind),
            shared_own_phone=_shared_own_phone(here, item) if kind == "contacts" else None,
            errors=_errors(item.get("errors")),
            historical=here.historical,
            media=_media(item, kind),
            raw=item,
            choice=_choice(item, kind),
        )
    ]


def _choice(item: Json, kind: str) -> Choice | None:
    """The option a reply button, list row or template quick reply names (R13); None otherwise."""
    obj = _obj(item.get(kind))
    if kind == "interactive":
        reply_type = _str(obj.get("type")) or ""
        if reply_type not in ("button_reply", "list_reply"):
            return None
        reply = _obj(obj.get(reply_type))
        reply_id, title = _str(reply.get("id")), _str(reply.get("title"))
        return Choice(reply_id, title or "", f"whatsapp.{reply_type}") if reply_id else None
    if kind == "button":  # a template's quick-reply button: its payload is the id
        payload = _str(obj.get("payload"))
        return Choice(payload, _str(obj.get("text")) or "", "whatsapp.quick_reply") if payload else None
    return None


def _text_of(key: str) -> Callable[[Json], str | None]:
    return lambda obj: _str(obj.get(key))


def _interactive(obj: Json) -> str | None:
    """The chosen button/list title; a flow (``nfm_reply``) has a body, its answers stay in ``raw``."""
    reply = _obj(obj.get(_str(obj.get("type")) or ""))
    return _str(reply.get("title")) or _str(reply.get("body"))


def _button(obj: Json) -> str | None:
    return _str(obj.get("text")) or _str(obj.get("payload"))


def _edit(obj: Json) -> str | None:
    edited = _obj(obj.get("message"))
    kind = _str(edited.get("type")) or ""
    return None if kind == "edit" else _content(edited, kind)


def _nothing(obj: Json) -> str | None:
    return None


def _any_text(obj: Json) -> str | None:
    """For types crossroute does not know yet: whatever reads like their text."""
    return next(filter(None, (_str(obj.get(key)) for key in ("body", "caption", "text", "title"))), None)


_caption = _text_of("caption")
# The text of each message type (its body, caption or chosen title); media, places and cards stay in raw.
_TEXT: dict[str, Callable[[Json], str | None]] = {
    "text": _text_of("body"),
    "interactive": _interactive,
    "button": _button,
    "image": _caption,
    "video": _caption,
    "audio": _caption,
    "document": _caption,
    "sticker": _caption,
    "reaction": _text_of("emoji"),
    "order": _text_of("text"),
    "edit": _edit,
    "location": _nothing,
    "contacts": _nothing,
    "unsupported": _nothing,
    "revoke": _nothing,
    "request_welcome": _nothing,
    "media_placeholder": _nothing,
}


def _content(item: Json, kind: str) -> str | None:
    return _TEXT.get(kind, _any_text)(_obj(item.get(kind)))


# Message types whose object names a media id (``GET /<media id>`` gives a short-lived download URL).
_MEDIA = frozenset({"image", "video", "audio", "document", "sticker"})


def _media(item: Json, kind: str) -> tuple[MediaRef, ...]:
    """The attachment of a media message; a history ``media_placeholder`` as a placeholder (no id)."""
    if kind == "media_placeholder":
        return (MediaRef(type="unknown", mime_type="", placeholder=True),)
    obj = _obj(item.get(kind))
    media_id = _id(obj.get("id")) if kind in _MEDIA else None
    if media_id is None:
        return ()
    mime = (_str(obj.get("mime_type")) or "").split(";")[0].strip().lower()
    return (MediaRef(type=kind, mime_type=mime, media_id=media_id, sha256=_str(obj.get("sha256"))),)


def _reply_to(item: Json, kind: str) -> str | None:
    """The message this one answers: ``context.id``, or the message a reaction is about."""
    target = _id(_obj(item.get("context")).get("id"))
    return target or (_id(_obj(item.get("reaction")).get("message_id")) if kind == "reaction" else None)


def _shared_own_phone(here: _Change, item: Json) -> str | None:
    """The phone in an answer to our contact request: the sender's own, attested (I5). Cards: content only."""
    answers = (
        c for c in _list(item.get("contacts")) if isinstance(c, dict) and c.get("origin") == "contact_request"
    )
    for answer in answers:
        for phone in filter(lambda p: isinstance(p, dict), _list(answer.get("phones"))):
            attested = here.ctx.person(phone, wa_id="wa_id", phone="phone", prefix="contacts.phones").phone
            if attested:
                return attested
    return None


def _errors(errors: Any) -> tuple[ProviderError, ...]:
    return tuple(
        ProviderError(
            code=_code(error.get("code")),
            title=_str(error.get("title")) or _str(error.get("message")) or "",
            detail=_str(_obj(error.get("error_data")).get("details")) or "",
        )
        for error in _list(errors)
        if isinstance(error, dict)
    )


def _webhook_error(here: _Change, item: Any) -> list[ProviderEvent]:
    """``value.errors[]``: Meta could not deliver something to us (no message to attach it to)."""
    codes = [str(e.code) for e in _errors([item])] or ["none"]
    return [here.unrecognised("errors", f"webhook error {codes[0]}", item)]


# --- identity changes -------------------------------------------------------------------------------------


def _system(here: _Change, item: Json) -> ProviderEvent:
    """A number/user-id change; ``from`` (and ``from_user_id``) may still name the old identity."""
    system = _obj(item.get("system"))
    kind = here.ctx.label(system.get("type"))
    if kind not in _IDENTITY_CHANGES:
        return here.unrecognised("messages", f"system message {kind}", item)
    person = here.ctx.person
    current = person(
        system, wa_id=("wa_id", "new_wa_id"), bsuid="user_id", parent="parent_user_id", prefix="system"
    )
    sender = person(item, wa_id="from", bsuid="from_user_id", parent="from_parent_user_id", prefix="messages")
    previous = _merged(
        person(system, bsuid="previous_user_id", parent="previous_parent_user_id", prefix="system"),
        _without(sender, current),
    )
    return _identity_change(here, item, kind, previous, current, _id(item.get("id")))


def _user_id_update(here: _Change, item: Any) -> list[ProviderEvent]:
    """Legacy ``user_id_update``: ``user_id {previous, current}``; the phone (``wa_id``) did not change."""
    if not isinstance(item, dict):
        return [here.unrecognised("user_id_update", "item is not an object", item)]
    person, ids, parents = here.ctx.person, _obj(item.get("user_id")), _obj(item.get("parent_user_id"))
    where = "user_id_update"

    def side(key: str) -> Person:
        bsuid = person(ids, bsuid=key, prefix=f"{where}.user_id")
        return _merged(bsuid, person(parents, parent=key, prefix=f"{where}.parent_user_id"))

    current = here.known_as(_merged(side("current"), person(item, wa_id="wa_id", prefix=where)))
    return [_identity_change(here, item, "user_id_update", side("previous"), current, None)]


def _identity_change(
    here: _Change, item: Json, kind: str, previous: Person, current: Person, event_id: str | None
) -> ProviderEvent:
    if not previous.known or not current.known:
        return here.unrecognised(here.field, f"{kind} without valid old and new identifiers", item)
    return IdentityChange(
        tenant=here.ctx.tenant,
        provider="meta",
        event_id=event_id or _digest(kind, item),
        business=here.business,
        kind=kind,
        previous=previous,
        current=current,
        at=here.when(item.get("timestamp"), f"{kind}.timestamp"),
        raw=item,
    )


def _preference(here: _Change, item: Any) -> list[ProviderEvent]:
    if not isinstance(item, dict):
        return [here.unrecognised("user_preferences", "item is not an object", item)]
    own = here.ctx.person(
        item, wa_id="wa_id", bsuid="user_id", parent="parent_user_id", prefix="user_preferences"
    )
    person, value = here.known_as(own), _str(item.get("value"))
    if not person.known or not value:
        return [here.unrecognised("user_preferences", "preference without a valid user or value", item)]
    return [
        PreferenceChange(
            tenant=here.ctx.tenant,
            provider="meta",
            business=here.business,
            person=person,
            category=_str(item.get("category")) or "",
            value=value,
            at=here.when(item.get("timestamp"), "user_preferences.timestamp"),
            raw=item,
        )
    ]


# --- statuses ---------------------------------------------------------------------------------------------


def _status(here: _Change, item: Any) -> list[ProviderEvent]:
    """Delivery news; the recipient may be unknown (failed sends to a phone): match on the wamid first."""
    if not isinstance(item, dict):
        return [here.unrecognised("statuses", "item is not an object", item)]
    message_id, status = _id(item.get("id")), _str(item.get("status"))
    if not message_id or not status:
        return [here.unrecognised("statuses", "status without an id or a status", item)]
    return [
        StatusUpdate(
            tenant=here.ctx.tenant,
            provider="meta",
            channel="whatsapp",
            message_id=message_id,
            business=here.business,
            recipient=here.known_as(_recipient(here, item)),
            status=here.ctx.label(status.lower(), "unknown"),
            at=here.when(item.get("timestamp"), "statuses.timestamp"),
            errors=_errors(item.get("errors")),
            pricing_category=_str(_obj(item.get("pricing")).get("category")),
            raw=item,
        )
    ]


def _recipient(here: _Change, item: Json) -> Person:
    # In a group, recipient_id is the group; the person is the participant.
    if item.get("recipient_type") == "group":
        return here.ctx.person(
            item,
            wa_id="recipient_participant_id",
            bsuid="recipient_participant_user_id",
            parent="recipient_participant_parent_user_id",
            prefix="statuses",
        )
    return here.ctx.person(
        item, wa_id="recipient_id", bsuid="recipient_user_id", parent=_STATUS_PARENT, prefix="statuses"
    )


# --- coexistence: echoes, history, the business app's contacts ---------------------------------------------


def _echo(
    here: _Change, item: Any, thread: Person = _NOBODY, where: str = "message_echoes"
) -> list[ProviderEvent]:
    """A message the business sent from the WhatsApp Business app."""
    if not isinstance(item, dict):
        return [here.unrecognised("message_echoes", "item is not an object", item)]
    own = here.ctx.person(item, wa_id="to", bsuid="to_user_id", parent="to_parent_user_id", prefix=where)
    recipient = here.known_as(_merged(own, thread))
    message_id, kind = _id(item.get("id")), here.ctx.label(item.get("type"), "unknown")
    if not message_id or not recipient.known:
        return [here.unrecognised("message_echoes", "echo without an id or a valid recipient", item)]
    return [
        OutboundEcho(
            tenant=here.ctx.tenant,
            provider="meta",
            channel="whatsapp",
            message_id=message_id,
            business=here.business,
            recipient=recipient,
            sent_at=here.when(item.get("timestamp"), f"{where}.timestamp"),
            type=kind,
            text=_content(item, kind),
            historical=here.historical,
            media=_media(item, kind),
            raw=item,
        )
    ]


def _history(here: _Change, chunk: Any) -> list[ProviderEvent]:
    """A chunk of past chats: ``threads[]``, or ``errors[]`` when the business declined to share."""
    if not isinstance(chunk, dict):
        return [here.unrecognised("history", "item is not an object", chunk)]
    declined = [
        here.unrecognised("history", f"history not shared: error {e.code}", chunk)
        for e in _errors(chunk.get("errors"))
    ]
    return declined + [event for thread in _list(chunk.get("threads")) for event in _thread(here, thread)]


def _thread(here: _Change, thread: Any) -> list[ProviderEvent]:
    if not isinstance(thread, dict):
        return [here.unrecognised("history", "thread is not an object", thread)]
    where = "history.threads"
    context = _obj(thread.get("context"))
    customer = _merged(
        here.ctx.person(
            context,
            wa_id="wa_id",
            bsuid="user_id",
            parent="parent_user_id",
            username="username",
            prefix=f"{where}.context",
        ),
        here.ctx.person(thread, wa_id="id", prefix=where),
    )
    return [
        event
        for item in _list(thread.get("messages"))
        for event in (_echo if _from_business(here, item) else _message)(
            here, item, customer, f"{where}.messages"
        )
    ]


def _from_business(here: _Change, item: Any) -> bool:
    """In history, the business's own messages come from its number (and only they carry ``to``)."""
    if not isinstance(item, dict):
        return False
    sent_by_us = bool(here.business_digits) and _digits(item.get("from")) == here.business_digits
    return sent_by_us or ("to" in item and not item.get("from_user_id"))


def _state_sync(here: _Change, item: Any) -> list[ProviderEvent]:
    """An entry of the business app's address book: Meta pairs its phone with the user's BSUID."""
    if not isinstance(item, dict):
        return [here.unrecognised("state_sync", "item is not an object", item)]
    if item.get("type", "contact") != "contact":
        return [here.unrecognised("state_sync", f"state sync of {here.ctx.label(item.get('type'))}", item)]
    person = here.ctx.person(
        _obj(item.get("contact")),
        phone="phone_number",
        bsuid="user_id",
        parent="parent_user_id",
        username="username",
        name=("full_name", "first_name"),
        prefix="state_sync.contact",
    )
    if not person.known:
        return [here.unrecognised("state_sync", "contact without a valid phone or BSUID", item)]
    return [
        ContactLink(
            tenant=here.ctx.tenant,
            provider="meta",
            business=here.business,
            person=person,
            action=_str(item.get("action")) or "",
            at=here.when(_obj(item.get("metadata")).get("timestamp"), "state_sync.metadata.timestamp"),
            raw=item,
        )
    ]


# Which item lists each webhook field carries, and who reads them.
_FIELDS: dict[str, dict[str, ItemReader]] = {
    "messages": {"messages": _message, "statuses": _status, "errors": _webhook_error},
    "user_preferences": {"user_preferences": _preference},
    "user_id_update": {"user_id_update": _user_id_update},
    "smb_message_echoes": {"message_echoes": _echo},
    "history": {"history": _history, "messages": _message, "message_echoes": _echo},
    "smb_app_state_sync": {"state_sync": _state_sync},
}


# --- small readers ----------------------------------------------------------------------------------------


def _merged(first: Person, second: Person) -> Person:
    """``first``, its gaps filled from ``second`` (a phone travels with its raw form)."""
    phone = first if first.phone else second
    return Person(
        phone=phone.phone,
        phone_raw=phone.phone_raw,
        bsuid=first.bsuid or second.bsuid,
        parent_bsuid=first.parent_bsuid or second.parent_bsuid,
        username=first.username or second.username,
        name=first.name or second.name,
    )


def _without(person: Person, other: Person) -> Person:
    """``person`` minus the identifiers it shares with ``other``."""
    same_phone = person.phone == other.phone
    return Person(
        phone=None if same_phone else person.phone,
        phone_raw=None if same_phone else person.phone_raw,
        bsuid=None if person.bsuid == other.bsuid else person.bsuid,
        parent_bsuid=None if person.parent_bsuid == other.parent_bsuid else person.parent_bsuid,
    )


def _same(a: Person, b: Person) -> bool:
    return bool(
        (a.bsuid and a.bsuid == b.bsuid)
        or (a.phone and a.phone == b.phone)
        or (a.parent_bsuid and a.parent_bsuid == b.parent_bsuid)
    )


def _digest(kind: str, item: Json) -> str:
    """A stable id for an event Meta gives none: the same item redelivered gets the same id."""
    return f"{kind}.{ids.content_digest(item)}"


def _obj(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _id(value: Any) -> str | None:
    """A provider id: it becomes part of table keys, so one too long to be genuine counts as none."""
    if isinstance(value, bool):
        return None
    text = str(value) if isinstance(value, int) or (isinstance(value, str) and value) else None
    return text if text and len(text) <= limits.PROVIDER_ID_CHARS else None


def _code(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = _str(value)
    return int(text) if text and text.isascii() and text.isdigit() and len(text) <= 12 else None


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", value) if isinstance(value, str) else str(_id(value) or "")
