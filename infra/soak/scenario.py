"""A soak scenario: hundreds of synthetic senders and the provider webhooks that describe them.

Deterministic from ``seed``: the same seed gives the same identifiers, payloads and delivery plan.
Every payload is a signed-as-the-provider-would webhook body for the built-in local tenant
(``tests.support``): Meta envelopes for ``/webhooks/whatsapp``, Twilio forms for ``/webhooks/twilio``.

Senders (each one person, none sharing an identifier with another, no number ever recycled):

``both``      WhatsApp from phone + BSUID (a profile name, sometimes a username).
``bsuid``     a username user: WhatsApp from the BSUID only, with the username.
``phone``     WhatsApp from the phone only (older payloads: ``from`` without ``from_user_id``).
``changer``   like ``both``, then ``user_changed_number`` (new ``wa_id`` and new ``user_id``) in the
              middle of their history; later events use the new phone and BSUID.
``merge``     an SMS via Twilio from phone P, WhatsApp BSUID-only messages from B, then B answers our
              contact request (a ``contacts`` message with ``origin: contact_request``) attesting P:
              the SMS customer and the WhatsApp customer are one person (I4/I5).

Each sender writes several messages with strictly increasing provider timestamps (a name or username
change on a later one), gets business-app echoes (``smb_message_echoes``) with their Meta statuses
(``sent``, ``delivered``, ``read``), and may stop and resume marketing messages (``user_preferences``).

Left out on purpose, as order-dependent by design (documented in ``tests/unit/test_identity_properties``
and the README): Twilio SMS STOP/START keywords and Twilio status callbacks (Twilio sends no event
time: their order is arrival order), and any SMS from a number that changes hands.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode

from tests.support import PHONE_NUMBER_ID, TWILIO_ACCOUNT, TWILIO_SMS_NUMBER, WABA_ID

META_PATH = "/webhooks/whatsapp"
TWILIO_PATH = "/webhooks/twilio"
DISPLAY_NUMBER = "15550100001"  # the local tenant's WhatsApp display number (``from`` of an echo)
# Provider time of the first event: a fixed day in the past (2026-05-28), plus a per-seed offset.
T0 = 1_780_000_000

SENDER_KINDS = ("both", "bsuid", "phone", "changer", "merge")
SENDER_WEIGHTS = (30, 20, 15, 17, 18)

# What ``--without`` may leave out of a scenario.
OPTIONAL = {
    "phone_only": "senders who write from a phone only",
    "bsuid_only": "username users (BSUID only)",
    "number_change": "user_changed_number system messages (and their senders)",
    "merge": "SMS + WhatsApp + contact request answers that merge two customers",
    "echo": "business-app echoes (and so their statuses)",
    "status": "Meta statuses of the echoes",
    "preference": "marketing stop/resume (user_preferences)",
    "profile_change": "a new name or username on a later message",
}

STATUS_LADDER = ("sent", "delivered", "read")
WORDS = (
    "hi there",
    "is my order on its way?",
    "Oi! Meu pedido chegou?",
    "Hallo, ist mein Paket unterwegs?",
    "thanks 🙏",
    "can I change the delivery address",
    "¿dónde está mi pedido?",
    "ok",
    "Need an invoice please",
    "ตกลง",
    "the box arrived damaged",
    "what time do you open tomorrow",
)
REPLIES = ("Your order has shipped", "We open at 9", "Here is your invoice", "Sorry about that!")
FIRST = ("Ana", "Jonas", "Lena", "Priya", "Kofi", "Mei", "Omar", "Sara", "Yuki", "Luis", "Ines", "Tom")
LAST = ("Lima", "Weber", "Bauer", "Shah", "Mensah", "Chen", "Haddad", "Nilsson", "Sato", "Reyes")
COUNTRIES = ("US", "BR", "DE", "IN", "MX", "GB")


@dataclass(frozen=True)
class Event:
    """One provider event: one webhook POST body (a Meta envelope with one item, or a Twilio form)."""

    n: int  # position in the scenario
    sender: int  # index of the sender it is about
    kind: str  # text, text_bsuid, text_phone, contact_answer, sms, echo, status, number_change, preference
    path: str  # META_PATH or TWILIO_PATH
    body: bytes
    at: int  # provider unix time (Twilio: none, 0; it gets the arrival time)


@dataclass
class Sender:
    n: int
    kind: str
    phones: list[str] = field(default_factory=list)  # wa_id digits, every phone they ever used
    bsuids: list[str] = field(default_factory=list)  # every BSUID they ever had
    events: list[Event] = field(default_factory=list)


@dataclass
class Scenario:
    seed: int
    senders: list[Sender]
    events: list[Event]
    deliveries: list[int]  # event indexes in the chaos run's posting order, each event 1-3 times
    late: int = 0  # the last ``late`` deliveries are redeliveries posted after the queue was drained

    def counts(self) -> Counter[str]:
        return Counter(e.kind for e in self.events)

    def sender_counts(self) -> Counter[str]:
        return Counter(s.kind for s in self.senders)

    def phones(self) -> list[str]:
        """Every phone of the scenario, E.164."""
        return ["+" + p for s in self.senders for p in s.phones]

    def bsuids(self) -> list[str]:
        return [b for s in self.senders for b in s.bsuids]

    def overtaken(self) -> int:
        """Events whose first delivery comes after that of a later event (provider time) of the same
        sender: how much the posting order reorders each person's history."""
        first: dict[int, int] = {}
        for position, n in enumerate(self.deliveries):
            first.setdefault(n, position)
        count = 0
        for sender in self.senders:
            timed = sorted((e for e in sender.events if e.at), key=lambda e: (e.at, e.n))
            earliest_later = len(self.deliveries)
            for event in reversed(timed):
                if earliest_later < first[event.n]:
                    count += 1
                earliest_later = min(earliest_later, first[event.n])
        return count

    def owner(self) -> dict[str, Sender]:
        """Identifier (E.164 phone or BSUID) -> the sender it belongs to."""
        out = {"+" + p: s for s in self.senders for p in s.phones}
        out.update({b: s for s in self.senders for b in s.bsuids})
        return out


class _Ids:
    """Fresh, unique identifiers drawn from the scenario's random generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.tag = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(4))
        self.count = 0

    def _fresh(self, make: object) -> str:
        while True:
            value = make()  # type: ignore[operator]
            if value not in self.used:
                self.used.add(value)
                return str(value)

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(n))

    def phone(self) -> str:
        """A US number as Meta writes a wa_id (digits, no +), valid for phonenumbers."""
        area = self.rng.choice(("650", "415", "212", "312", "617", "206"))
        return self._fresh(lambda: "1" + area + self.rng.choice("23456789") + self.digits(6))

    def bsuid(self) -> str:
        return self._fresh(
            lambda: f"{self.rng.choice(COUNTRIES)}.{self.rng.choice('123456789')}{self.digits(18)}"
        )

    def wamid(self) -> str:
        self.count += 1
        return f"wamid.SOAK{self.tag}{self.count:06d}{self.digits(6)}"

    def sms_sid(self) -> str:
        return self._fresh(lambda: "SM" + "".join(self.rng.choice("0123456789abcdef") for _ in range(32)))


def _envelope(field_name: str, value: dict[str, object]) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": _metadata(), **value}
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": field_name}]}],
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def _metadata() -> dict[str, str]:
    return {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID}


def _profile(name: str | None, username: str | None) -> dict[str, str]:
    profile = {"name": name} if name else {}
    if username:
        profile["username"] = "@" + username
    return profile


def _contact(phone: str | None, bsuid: str | None, profile: dict[str, str]) -> dict[str, object]:
    contact: dict[str, object] = {"profile": profile}
    if phone:
        contact["wa_id"] = phone
    if bsuid:
        contact["user_id"] = bsuid
    return contact


def meta_text(
    wamid: str,
    at: int,
    text: str,
    *,
    phone: str | None,
    bsuid: str | None,
    name: str | None,
    username: str | None,
) -> bytes:
    """An inbound text: ``from`` (phone) and/or ``from_user_id`` (BSUID), the profile in ``contacts``."""
    item: dict[str, object] = {}
    if phone:
        item["from"] = phone
    if bsuid:
        item["from_user_id"] = bsuid
    item.update({"id": wamid, "timestamp": str(at), "type": "text", "text": {"body": text}})
    return _envelope(
        "messages", {"contacts": [_contact(phone, bsuid, _profile(name, username))], "messages": [item]}
    )


def meta_contact_answer(
    wamid: str, at: int, *, bsuid: str, phone: str, name: str, username: str | None
) -> bytes:
    """A username user answering our contact request: their own phone, attested (I5)."""
    national = f"+{phone[0]} {phone[1:4]}-{phone[4:7]}-{phone[7:]}"
    first, _, last = name.partition(" ")
    card = {
        "name": {"formatted_name": name, "first_name": first, "last_name": last},
        "phones": [{"phone": national, "wa_id": phone, "type": "CELL"}],
        "origin": "contact_request",
    }
    item = {"from_user_id": bsuid, "id": wamid, "timestamp": str(at), "type": "contacts", "contacts": [card]}
    contact = _contact(None, bsuid, _profile(name, username))
    return _envelope("messages", {"contacts": [contact], "messages": [item]})


def meta_echo(wamid: str, at: int, text: str, *, phone: str | None, bsuid: str | None) -> bytes:
    """A message the business sent from the WhatsApp Business app (coexistence), to the customer."""
    item: dict[str, object] = {"from": DISPLAY_NUMBER}
    if phone:
        item["to"] = phone
    if bsuid:
        item["to_user_id"] = bsuid
    item.update({"id": wamid, "timestamp": str(at), "type": "text", "text": {"body": text}})
    return _envelope("smb_message_echoes", {"message_echoes": [item]})


def meta_status(wamid: str, at: int, status: str, *, phone: str | None, bsuid: str | None) -> bytes:
    item: dict[str, object] = {"id": wamid, "status": status, "timestamp": str(at)}
    if phone:
        item["recipient_id"] = phone
    if bsuid:
        item["recipient_user_id"] = bsuid
    item["pricing"] = {"billable": False, "pricing_model": "PMP", "category": "service"}
    return _envelope("messages", {"statuses": [item]})


def meta_number_change(
    wamid: str, at: int, *, old_phone: str, old_bsuid: str, new_phone: str, new_bsuid: str
) -> bytes:
    """``user_changed_number``: from the old phone and BSUID, to the new ``wa_id`` and ``user_id``."""
    item = {
        "from": old_phone,
        "from_user_id": old_bsuid,
        "id": wamid,
        "timestamp": str(at),
        "type": "system",
        "system": {
            "body": "User changed their phone number",
            "type": "user_changed_number",
            "new_wa_id": new_phone,
            "user_id": new_bsuid,
            "previous_user_id": old_bsuid,
        },
    }
    return _envelope("messages", {"messages": [item]})


def meta_preference(at: int, value: str, *, phone: str | None, bsuid: str | None) -> bytes:
    item: dict[str, object] = {}
    if phone:
        item["wa_id"] = phone
    if bsuid:
        item["user_id"] = bsuid
    detail = "User requested to stop marketing messages" if value == "stop" else "User resumed marketing"
    item.update({"detail": detail, "category": "marketing_messages", "value": value, "timestamp": str(at)})
    return _envelope("user_preferences", {"user_preferences": [item]})


def twilio_sms(sid: str, phone: str, text: str) -> bytes:
    """An inbound SMS as Twilio posts it (the shape of tests/fixtures/twilio_mms_inbound.form, no media)."""
    pairs = [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", sid),
        ("FromState", ""),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", text),
        ("FromCountry", "US"),
        ("To", TWILIO_SMS_NUMBER),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", TWILIO_ACCOUNT),
        ("From", "+" + phone),
        ("ApiVersion", "2010-04-01"),
    ]
    return urlencode(pairs).encode()


class _Builder:
    """One sender's history, step by step in provider time."""

    def __init__(self, scenario: _Generator, sender: Sender) -> None:
        self.g = scenario
        self.rng = scenario.rng
        self.sender = sender
        self.at = T0 + scenario.offset + self.rng.randrange(0, 10 * 86400)
        self.name = f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}"
        self.username: str | None = None

    def tick(self) -> int:
        """The next provider time of this sender: strictly later than the last."""
        self.at += self.rng.choice((7, 60, 300, 3600, 5 * 3600, 30 * 3600))
        return self.at

    def add(self, kind: str, path: str, body: bytes, at: int) -> None:
        event = Event(len(self.g.events), self.sender.n, kind, path, body, at)
        self.g.events.append(event)
        self.sender.events.append(event)

    def maybe_rename(self, chance: float) -> None:
        if not self.g.allowed("profile_change") or self.rng.random() >= chance:
            return
        self.name = f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}"
        if self.username:
            self.username = f"{self.username.split('.')[0]}.{self.rng.randrange(10, 99)}"

    def text(self, phone: str | None, bsuid: str | None, *, username: bool = True) -> None:
        kind = "text" if phone and bsuid else "text_bsuid" if bsuid else "text_phone"
        at = self.tick()
        body = meta_text(
            self.g.ids.wamid(),
            at,
            self.rng.choice(WORDS),
            phone=phone,
            bsuid=bsuid,
            name=self.name,
            username=self.username if username else None,
        )
        self.add(kind, META_PATH, body, at)

    def echo(self, phone: str | None, bsuid: str | None) -> None:
        if not self.g.allowed("echo"):
            return
        at, wamid = self.tick(), self.g.ids.wamid()
        self.add(
            "echo", META_PATH, meta_echo(wamid, at, self.rng.choice(REPLIES), phone=phone, bsuid=bsuid), at
        )
        if not self.g.allowed("status"):
            return
        # A prefix of the ladder; each status a little later than the one before (read: minutes later).
        steps = self.rng.choice((1, 2, 3, 3))
        when = at
        for status in STATUS_LADDER[:steps]:
            when += self.rng.choice((1, 2, 5)) if status != "read" else self.rng.choice((30, 600))
            self.add("status", META_PATH, meta_status(wamid, when, status, phone=phone, bsuid=bsuid), when)
        self.at = max(self.at, when)

    def preference(self, phone: str | None, bsuid: str | None, value: str) -> None:
        at = self.tick()
        self.add("preference", META_PATH, meta_preference(at, value, phone=phone, bsuid=bsuid), at)


class _Generator:
    def __init__(self, seed: int, without: frozenset[str]) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data
        self.ids = _Ids(self.rng)
        self.without = without
        self.offset = self.rng.randrange(0, 30 * 86400)
        self.events: list[Event] = []

    def allowed(self, what: str) -> bool:
        return what not in self.without

    def kinds(self) -> tuple[list[str], list[int]]:
        gone = {
            "phone": "phone_only",
            "bsuid": "bsuid_only",
            "changer": "number_change",
            "merge": "merge",
        }
        pairs = [
            (k, w)
            for k, w in zip(SENDER_KINDS, SENDER_WEIGHTS, strict=True)
            if gone.get(k) not in self.without
        ]
        return [k for k, _ in pairs], [w for _, w in pairs]

    def sender(self, n: int, kind: str) -> Sender:
        sender = Sender(n, kind)
        b = _Builder(self, sender)
        rng = self.rng
        messages = rng.randint(3, 6)
        if kind in ("bsuid", "merge") or (kind in ("both", "changer") and rng.random() < 0.3):
            b.username = f"{b.name.split()[0].lower()}_{rng.randrange(100, 999)}"
        phone = self.ids.phone() if kind != "bsuid" else None
        bsuid = self.ids.bsuid() if kind != "phone" else None
        if phone:
            sender.phones.append(phone)
        if bsuid:
            sender.bsuids.append(bsuid)
        stops = rng.random() < 0.4 and self.allowed("preference")
        marketing = ["stop", "resume", "stop"][: rng.randint(1, 3)] if stops else []
        echoes = rng.randint(1, 2)

        if kind == "merge":
            assert phone and bsuid
            for _ in range(rng.randint(1, 2)):  # Twilio: no event time, arrival order decides nothing here
                body = twilio_sms(self.ids.sms_sid(), phone, rng.choice(WORDS))
                b.add("sms", TWILIO_PATH, body, 0)
            before = rng.randint(1, 3)
            for i in range(messages):
                if i == before:
                    at = b.tick()
                    answer = meta_contact_answer(
                        self.ids.wamid(), at, bsuid=bsuid, phone=phone, name=b.name, username=b.username
                    )
                    b.add("contact_answer", META_PATH, answer, at)
                if i == messages - 1:
                    b.maybe_rename(0.5)
                b.text(None, bsuid)
                if i == 0:
                    b.echo(None, bsuid)
                if marketing and rng.random() < 0.5:
                    b.preference(None, bsuid, marketing.pop(0))
            if before >= messages:
                at = b.tick()
                answer = meta_contact_answer(
                    self.ids.wamid(), at, bsuid=bsuid, phone=phone, name=b.name, username=b.username
                )
                b.add("contact_answer", META_PATH, answer, at)
            for value in marketing:
                b.preference(None, bsuid, value)
            return sender

        # both / bsuid / phone / changer
        change_at = rng.randint(1, messages - 1) if kind == "changer" else -1
        rename_at = rng.randint(1, messages - 1)
        echo_at = sorted(rng.sample(range(messages), k=min(echoes, messages)))
        for i in range(messages):
            if i == change_at:
                assert phone and bsuid
                new_phone, new_bsuid = self.ids.phone(), self.ids.bsuid()
                at = b.tick()
                change = meta_number_change(
                    self.ids.wamid(),
                    at,
                    old_phone=phone,
                    old_bsuid=bsuid,
                    new_phone=new_phone,
                    new_bsuid=new_bsuid,
                )
                b.add("number_change", META_PATH, change, at)
                phone, bsuid = new_phone, new_bsuid
                sender.phones.append(phone)
                sender.bsuids.append(bsuid)
            if i == rename_at:
                b.maybe_rename(0.6)
            b.text(phone, bsuid)
            if i in echo_at:
                b.echo(phone, bsuid)
            if marketing and rng.random() < 0.4:
                b.preference(phone, bsuid, marketing.pop(0))
        for value in marketing:
            b.preference(phone, bsuid, value)
        return sender


def generate(seed: int, senders: int, without: frozenset[str] = frozenset()) -> Scenario:
    """``senders`` synthetic people and their events; the posting plan of the chaos run."""
    unknown = without - set(OPTIONAL)
    if unknown:
        raise ValueError(f"unknown --without kind(s): {', '.join(sorted(unknown))}")
    g = _Generator(seed, without)
    kinds, weights = g.kinds()
    people = [g.sender(n, g.rng.choices(kinds, weights)[0]) for n in range(senders)]
    plan = random.Random(seed ^ 0x5EED)  # noqa: S311 - a reproducible delivery plan
    # Every event once, plus 0-2 more copies, in one random order. SQS drops a copy whose twin is still
    # queued (content deduplication), as it would for 5 minutes; a provider retrying later gets through:
    # half the extra copies are held back and posted, again in random order, once the queue is drained.
    first: list[int] = []
    late: list[int] = []
    for event in g.events:
        first.append(event.n)
        for _ in range(plan.randint(0, 2)):
            (first if plan.random() < 0.5 else late).append(event.n)
    plan.shuffle(first)
    plan.shuffle(late)
    return Scenario(seed, people, g.events, first + late, len(late))
