"""The ingest consumer per event: DynamoDB round trips (moto) and the CPU of our own code (store stubbed).

Round trips: each scenario first sets its scene through the real use case (``Ingest`` over
``DynamoIdentityStore``, moto in-process, the table provisioned from template.yaml as the adapter tests
do), then counts every DynamoDB API call made while ``Ingest.handle`` takes the one measured event.
Calls are counted with botocore's ``before-call.dynamodb`` event on the clients PynamoDB builds (one
per ``Connection``); ``before-send`` counts the HTTP attempts, so a retry would show.

CPU: ``parse`` of a queued Meta text, and ``parse`` + ``Ingest.handle`` against the tests' in-memory
fakes of the ports (``tests.fakes``: the ``IdentityStore`` over dicts, with the DynamoDB store's
conditions, and a recording publisher): our code only.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from crossroute.inbound_queue import QueuedEvent
from crossroute.ingest import InboundConsumer, Ingest, Ingested
from crossroute.metrics import EmfMetrics
from crossroute.parsing.queued import parse
from crossroute.ports import Delivery
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.tables import TableItem
from infra.bench import Context, Row, Table
from infra.local.emulated import emulated_account
from tests.fakes import MemoryIdentityStore, RecordingDeadLetters, RecordingPublisher

TENANT = "demo"
PHONE_NUMBER_ID = "100000000000001"  # the local tenant's Meta number (tests/support.py)
TWILIO_SMS_NUMBER = "+15550100002"
T0 = 1779868800  # provider epoch seconds of the first message of every scenario

# Ana: a WhatsApp user Meta names by phone and BSUID. Jonas: BSUID-only on WhatsApp, phone known by SMS.
ANA = {"bsuid": "BR.1502576394655843", "wa_id": "5511987654321", "name": "Ana Lima", "username": "ana.lima"}
JONAS = {"bsuid": "DE.88201937465502911", "parent": "DE.ENT.55102938475610293", "name": "Jonas"}
JONAS_PHONE = "+4915123456789"
NEW_USER = {"bsuid": "US.4400918273645501", "name": "Sam", "username": "sam_k"}

ROUND_TRIP_TARGETS = {"known": 2, "new": 3, "merge": 6}
CPU_ITERATIONS = 3000
CPU_WARMUP = 300


# ---------------------------------------------------------------------- queued bodies


def queued(kind: str, content: dict[str, Any], sender: str) -> str:
    """One inbound-queue body, as the webhooks build it."""
    return QueuedEvent.build(tenant=TENANT, sender=sender, kind=kind, content=content).body


def _meta(value: dict[str, Any]) -> dict[str, Any]:
    metadata = {"display_phone_number": "15550100001", "phone_number_id": PHONE_NUMBER_ID}
    change = {"field": "messages", "value": {"messaging_product": "whatsapp", "metadata": metadata, **value}}
    return {"object": "whatsapp_business_account", "entry": [{"id": "100000000000000", "changes": [change]}]}


def _contact(user: dict[str, str]) -> dict[str, Any]:
    profile = {"name": user["name"], **({"username": "@" + user["username"]} if "username" in user else {})}
    return {
        "profile": profile,
        "user_id": user["bsuid"],
        **({"wa_id": user["wa_id"]} if "wa_id" in user else {}),
        **({"parent_user_id": user["parent"]} if "parent" in user else {}),
    }


def _sender(user: dict[str, str]) -> dict[str, str]:
    return {
        "from_user_id": user["bsuid"],
        **({"from": user["wa_id"]} if "wa_id" in user else {}),
        **({"from_parent_user_id": user["parent"]} if "parent" in user else {}),
    }


def meta_text(user: dict[str, str], n: int, text: str = "Oi! Meu pedido chegou?") -> str:
    """A queued Meta text from ``user``: message ``n`` of the scenario (its id and time follow ``n``)."""
    message = {
        **_sender(user),
        "id": f"wamid.BENCH{user['bsuid']}.{n}",
        "timestamp": str(T0 + 60 * n),
        "type": "text",
        "text": {"body": text},
    }
    payload = _meta({"contacts": [_contact(user)], "messages": [message]})
    return queued("meta.webhook", {"payload": payload}, user["bsuid"])


def meta_contact_request_answer(user: dict[str, str], phone: str, n: int) -> str:
    """``user`` answers our contact request: Meta's ``contacts`` message with ``origin: contact_request``."""
    card = {
        "origin": "contact_request",
        "name": {"formatted_name": user["name"], "first_name": user["name"]},
        "phones": [{"phone": phone, "wa_id": phone.lstrip("+"), "type": "CELL"}],
    }
    message = {
        "from_user_id": user["bsuid"],
        "id": f"wamid.BENCH{user['bsuid']}.{n}",
        "timestamp": str(T0 + 60 * n),
        "type": "contacts",
        "contacts": [card],
    }
    payload = _meta(
        {"contacts": [_contact({k: v for k, v in user.items() if k != "parent"})], "messages": [message]}
    )
    return queued("meta.webhook", {"payload": payload}, user["bsuid"])


def meta_status(user: dict[str, str], message_id: str, status: str, n: int) -> str:
    item = {
        "id": message_id,
        "status": status,
        "timestamp": str(T0 + 60 * n),
        "recipient_user_id": user["bsuid"],
    }
    payload = _meta({"contacts": [_contact(user)], "statuses": [item]})
    return queued("meta.webhook", {"payload": payload}, user["bsuid"])


def twilio_sms(phone: str, n: int, text: str = "Where is my order?") -> str:
    sid = f"SM{n:032x}"
    form = urlencode(
        {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": text,
            "To": TWILIO_SMS_NUMBER,
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": "AC00000000000000000000000000000000",
            "From": phone,
            "ApiVersion": "2010-04-01",
        }
    )
    return queued("twilio.message", {"form": form}, phone)


# ---------------------------------------------------------------------- counting DynamoDB calls


@dataclass(frozen=True)
class Call:
    operation: str
    items: int  # keys of a BatchGetItem, items of a TransactWriteItems / BatchWriteItem; else 1


def _items(operation: str, request: dict[str, Any]) -> int:
    if operation not in ("BatchGetItem", "TransactWriteItems", "TransactGetItems", "BatchWriteItem"):
        return 1
    try:
        body = json.loads(request.get("body") or b"{}")
    except ValueError:
        return 0
    if "TransactItems" in body:
        return len(body["TransactItems"])
    tables = body.get("RequestItems", {}).values()
    return sum(len(t["Keys"]) if isinstance(t, dict) else len(t) for t in tables)


def pynamodb_clients() -> list[Any]:
    """Every botocore DynamoDB client PynamoDB's models use now (created here if not yet)."""
    models: list[type[Any]] = [TableItem]
    for model in models:  # TableItem first: its subclasses then share its connection
        models.extend(model.__subclasses__())
    clients = {id(c): c for c in (m._get_connection().connection.client for m in models)}
    return list(clients.values())


class DynamoCalls:
    """``with DynamoCalls() as calls:`` counts DynamoDB API calls on PynamoDB's clients.

    ``calls.calls`` lists them in order (``before-call``); ``calls.attempts`` counts HTTP requests
    (``before-send``: more than the calls only if botocore retried). Enter after the table is bound.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.attempts = 0
        self._clients: list[Any] = []
        self._id = f"crossroute-bench-{id(self)}"

    def __enter__(self) -> DynamoCalls:
        self._clients = pynamodb_clients()
        for client in self._clients:
            client.meta.events.register("before-call.dynamodb", self._on_call, unique_id=self._id + "-call")
            client.meta.events.register("before-send.dynamodb", self._on_send, unique_id=self._id + "-send")
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self._clients:
            client.meta.events.unregister("before-call.dynamodb", unique_id=self._id + "-call")
            client.meta.events.unregister("before-send.dynamodb", unique_id=self._id + "-send")
        self._clients = []

    def _on_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(Call(model.name, _items(model.name, params)))
        # None: a value returned from before-call would replace the response

    def _on_send(self, **_: Any) -> None:
        self.attempts += 1


@contextmanager
def moto_table() -> Iterator[str]:
    """moto in-process, template.yaml's identity table provisioned, PynamoDB's models bound to it."""
    with emulated_account() as account:
        yield str(account.ref("IdentityTable"))


# ---------------------------------------------------------------------- round-trip scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    scene: tuple[str, ...]  # queued bodies ingested first, not counted
    event: str  # the one queued body counted
    target: int | None
    # (what handle returned, what the event published): is it the case we mean?
    check: Callable[[Ingested, RecordingPublisher], bool]
    warm: bool = False  # the event runs in the container that ingested the scene (its key owners known)


def scenarios() -> list[Scenario]:
    first = meta_text(ANA, 1)
    sent = f"wamid.BENCHOUT.{JONAS['bsuid']}"
    return [
        Scenario(
            "(a) known customer, text",
            (first,),
            meta_text(ANA, 2, "Alguma novidade?"),
            ROUND_TRIP_TARGETS["known"],
            lambda o, bus: (
                o.handled == ["InboundMessage"] and not o.duplicates and not bus.of("IdentityChanged")
            ),
        ),
        Scenario(
            "(a') known customer, text, warm container",
            (first,),
            meta_text(ANA, 2, "Alguma novidade?"),
            ROUND_TRIP_TARGETS["known"],
            lambda o, bus: (
                o.handled == ["InboundMessage"] and not o.duplicates and not bus.of("IdentityChanged")
            ),
            warm=True,
        ),
        Scenario(
            "(b) new BSUID, first message",
            (),
            meta_text(NEW_USER, 1, "Hi"),
            ROUND_TRIP_TARGETS["new"],
            lambda o, bus: [e["change"] for e in bus.of("IdentityChanged")][:1] == ["created"],
        ),
        Scenario(
            "(c) merge: contact-request answer",
            (twilio_sms(JONAS_PHONE, 1), meta_text(JONAS, 2, "Hallo, ist mein Paket unterwegs?")),
            meta_contact_request_answer(JONAS, JONAS_PHONE, 3),
            ROUND_TRIP_TARGETS["merge"],
            lambda o, bus: len(bus.of("ContactsMerged")) == 1,
        ),
        Scenario(
            "(d) status update",
            (meta_text(JONAS, 1), meta_status(JONAS, sent, "sent", 2)),
            meta_status(JONAS, sent, "delivered", 3),
            None,
            lambda o, bus: [e["status"] for e in bus.of("MessageStatusChanged")] == ["delivered"],
        ),
        Scenario(
            "(e) redelivered message",
            (first,),
            first,
            None,
            lambda o, bus: o.duplicates == 1 and len(bus.of("MessageReceived")) == 1,
        ),
    ]


@dataclass
class Measured:
    scenario: Scenario
    calls: list[Call]
    attempts: int
    put_events: int
    retries: int

    @property
    def round_trips(self) -> int:
        return len(self.calls)


def measure_round_trips(scenario: Scenario) -> Measured:
    """A fresh table, the scene ingested, then the DynamoDB calls of the one event."""
    with moto_table():
        store = DynamoIdentityStore()
        ingest = Ingest(store, RecordingPublisher(), sleep=lambda _: None)
        for body in scenario.scene:
            ingest.handle(parse(body).events)
        bus = RecordingPublisher()
        # Cold: a new container (nothing remembered); warm: the container that saw the scene.
        ingest = Ingest(store if scenario.warm else DynamoIdentityStore(), bus, sleep=lambda _: None)
        events = parse(scenario.event).events
        with DynamoCalls() as counter:
            outcome = ingest.handle(events)
    if not scenario.check(outcome, bus):
        raise AssertionError(f"{scenario.name}: not the case it claims to be ({outcome}, {bus.events})")
    return Measured(scenario, list(counter.calls), counter.attempts, bus.put_events_calls, outcome.retries)


_UNITS = {
    "BatchGetItem": "keys",
    "TransactGetItems": "items",
    "TransactWriteItems": "items",
    "BatchWriteItem": "items",
}


def _breakdown(calls: Sequence[Call]) -> str:
    parts = []
    for operation, count in Counter(c.operation for c in calls).items():
        sizes = [c.items for c in calls if c.operation == operation]
        unit = _UNITS.get(operation)
        if unit and sizes == [1]:
            unit = unit.removesuffix("s")
        detail = f" ({'+'.join(map(str, sizes))} {unit})" if unit else ""
        parts.append(f"{count} {operation}{detail}")
    return ", ".join(parts)


def round_trips(context: Context) -> Table:
    table = Table(
        "DynamoDB round trips per event (Ingest + DynamoIdentityStore, moto in-process)",
        ["scenario", "round trips", "breakdown (in order of first call)", "PutEvents"],
    )
    measured = [measure_round_trips(s) for s in scenarios()]
    for m in measured:
        target = m.scenario.target
        table.rows.append(
            Row(
                [m.scenario.name, str(m.round_trips), _breakdown(m.calls), str(m.put_events)],
                f"<= {target}" if target is not None else "",
                None if target is None else m.round_trips <= target,
            )
        )
    retried = [m.scenario.name for m in measured if m.attempts != m.round_trips or m.retries]
    table.notes.append(
        "round trips = DynamoDB API calls (botocore before-call on PynamoDB's clients) for that one event,"
        " scene set first; cold = a fresh container, warm = the container that ingested the scene"
    )
    table.notes.append(
        f"HTTP attempts (before-send) differ or Conflict retried in: {', '.join(retried)}"
        if retried
        else "HTTP attempts (before-send) = API calls in every row: no retries, no Conflict"
    )
    table.notes.append("PutEvents = EventBridge calls the real publisher would make (10 entries a call)")
    return table


# ---------------------------------------------------------------------- CPU, store stubbed


def median_us(run: Callable[[], object], prepare: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """Median and 90th percentile CPU µs of ``run`` (``prepare`` runs untimed before each call)."""
    samples = []
    for i in range(CPU_WARMUP + CPU_ITERATIONS):
        prepare()
        start = time.process_time_ns()
        run()
        elapsed = time.process_time_ns() - start
        if i >= CPU_WARMUP:
            samples.append(elapsed / 1e3)
    return statistics.median(samples), statistics.quantiles(samples, n=10)[-1]


def _ingesting(
    body: str, seed: MemoryIdentityStore, customers_after: int
) -> tuple[Callable[[], object], Callable[[], None]]:
    """(run, prepare): parse + ``Ingest.handle`` of ``body``, each run on a fresh copy of ``seed``."""
    store = MemoryIdentityStore()
    bus = RecordingPublisher()
    ingest = Ingest(store, bus, sleep=lambda _: None)

    def prepare() -> None:  # untimed: the scene again, nothing published yet
        store.restore(seed)
        bus.clear()

    def run() -> Ingested:
        return ingest.handle(parse(body).events)

    prepare()
    outcome = run()
    if outcome.handled != ["InboundMessage"] or outcome.duplicates or len(store.customers) != customers_after:
        raise AssertionError(f"not the case it claims to be: {outcome}, {len(store.customers)} customers")
    return run, prepare


def _consuming(body: str, *, with_metrics: bool) -> tuple[Callable[[], object], Callable[[], None]]:
    """(run, prepare): the inbound consumer on one queued body over an empty store, then (with
    metrics) the flush the handler does after each invocation, its EMF lines written to a buffer."""
    store = MemoryIdentityStore()
    metrics = EmfMetrics.for_function() if with_metrics else None
    consumer = InboundConsumer(
        Ingest(store, RecordingPublisher(), sleep=lambda _: None),
        RecordingDeadLetters,
        max_receives=5,
        metrics=metrics,
    )
    sink = io.StringIO()
    empty = MemoryIdentityStore()

    def prepare() -> None:
        store.restore(empty)
        sink.seek(0)
        sink.truncate()

    def run() -> None:
        with contextlib.redirect_stdout(sink):
            consumer.consume(Delivery(body, "m1", 1))
            if metrics is not None:
                metrics.flush()

    prepare()
    run()
    if len(store.customers) != 1 or (with_metrics and "EventsIngested" not in sink.getvalue()):
        raise AssertionError("not the case it claims to be")
    return run, prepare


def consumer_cpu(context: Context) -> Table:
    text = meta_text(ANA, 1)
    known = MemoryIdentityStore()
    Ingest(known, RecordingPublisher()).handle(parse(text).events)  # Ana exists with phone + BSUID
    if len(known.customers) != 1 or len(known.keys) != 2:
        raise AssertionError("the known-customer scene is not one customer with two keys")
    cases: list[tuple[str, Callable[[], object], Callable[[], None]]] = [
        ("parse (Meta text body)", lambda: parse(text), lambda: None),
    ]
    known_text = meta_text(ANA, 2, "Alguma novidade?")
    new_text = meta_text(NEW_USER, 1, "Hi")
    cases.append(("parse + handle, known customer text", *_ingesting(known_text, known, 1)))
    cases.append(("parse + handle, new BSUID text", *_ingesting(new_text, MemoryIdentityStore(), 1)))
    queued = QueuedEvent.build(
        tenant="demo", sender="x", kind="meta.webhook", content={"payload": json.loads(new_text)["payload"]}
    ).body
    cases.append(("consume (+ metrics off), new BSUID text", *_consuming(queued, with_metrics=False)))
    cases.append(("consume (+ EMF metrics, flushed), new BSUID text", *_consuming(queued, with_metrics=True)))
    table = Table(
        f"Consumer CPU per event, DynamoDB stubbed (in-memory store; {CPU_ITERATIONS} iterations)",
        ["path", "median µs", "p90 µs"],
    )
    for label, run, prepare in cases:
        median, p90 = median_us(run, prepare)
        table.rows.append(Row([label, f"{median:.0f}", f"{p90:.0f}"]))
    version = ".".join(map(str, sys.version_info[:3]))
    table.notes.append(
        f"time.process_time_ns per call, .venv Python {version}, after {CPU_WARMUP} warm-up calls"
    )
    table.notes.append(
        "handle = identity rules, profile, records and events; store and bus: the tests' in-memory fakes"
    )
    table.notes.append(
        "consume = what the ingest function does per record (parse, handle, log); the EMF row adds the"
        " metrics counted and the per-invocation flush (Powertools, written to a buffer)"
    )
    return table
