"""Dispatch per send request: DynamoDB round trips (moto), and CPU of one routing decision and of one
whole send through ``Dispatch`` over the in-memory fakes (``tests/fakes``: no I/O at all).

Round trips: the scene (Ana wrote on WhatsApp an hour ago) is ingested through the real use cases; then
one send request goes through ``Dispatch`` over the DynamoDB stores, with a provider sender that
answers at once (no network), and its DynamoDB calls are counted like the ingest rows.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from crossroute.dispatch import Dispatch, TenantSetup
from crossroute.identity.model import Key
from crossroute.ingest import Ingest
from crossroute.parsing.queued import parse
from crossroute.ports import StatusRecord
from crossroute.routing.policy import Recipient, TenantChannels, decide
from crossroute.routing.request import parse_send_request
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.sends import DynamoSendStore
from infra.bench import Context, Row, Table
from infra.bench.ingest import ANA, T0, DynamoCalls, _breakdown, meta_text, moto_table
from tests.fakes import MemoryIdentityStore, MemorySendStore, RecordingPublisher, ScriptedSender

SEND_TARGET = 3
CHANNELS = TenantChannels("100000000000001", "+15550100002")
ANA_KEY = Key("bsuid", ANA["bsuid"])


def _measure(request: dict[str, Any], *, warm: bool) -> tuple[list[Any], Any]:
    with moto_table():
        identity = DynamoIdentityStore()
        Ingest(identity, RecordingPublisher(), sleep=lambda _: None).handle(parse(meta_text(ANA, 1)).events)
        ana = identity.holders("demo", [ANA_KEY])[ANA_KEY]
        setup = TenantSetup(CHANNELS, {"whatsapp": ScriptedSender("meta"), "sms": ScriptedSender("twilio")})
        now = datetime.fromtimestamp(T0, UTC) + timedelta(hours=1)
        dispatch = Dispatch(
            DynamoSendStore(identity if warm else None),
            lambda tenant: setup,
            RecordingPublisher(),
            clock=lambda: now,
        )
        doc = {"tenant": "demo", "idempotency_key": "bench-1", "text": "Shipped", **request}
        if doc.get("to") == "ANA":
            doc["to"] = {"customer_id": ana.id}
        with DynamoCalls() as counter:
            result = dispatch.send(doc)
    return list(counter.calls), result


def _measure_check(status: str) -> tuple[list[Any], Any]:
    """R14: a request with ``fallback_after`` sent on WhatsApp, its message at ``status``; the round trips
    of its timed check, once due."""
    with moto_table():
        identity = DynamoIdentityStore()
        Ingest(identity, RecordingPublisher(), sleep=lambda _: None).handle(parse(meta_text(ANA, 1)).events)
        ana = identity.holders("demo", [ANA_KEY])[ANA_KEY]
        setup = TenantSetup(CHANNELS, {"whatsapp": ScriptedSender("meta"), "sms": ScriptedSender("twilio")})
        clock = [datetime.fromtimestamp(T0, UTC) + timedelta(hours=1)]
        dispatch = Dispatch(
            DynamoSendStore(), lambda tenant: setup, RecordingPublisher(), clock=lambda: clock[0]
        )
        doc = {"tenant": "demo", "idempotency_key": "bench-1", "text": "Shipped", "fallback_after": 60}
        sent = dispatch.send({**doc, "to": {"customer_id": ana.id}})
        assert sent.check is not None
        identity.apply_status(StatusRecord("demo", "meta", sent.check.message_id, status, clock[0]))
        clock[0] += timedelta(seconds=60)
        with DynamoCalls() as counter:
            result = dispatch.timed_fallback(sent.check)
    return list(counter.calls), result


def round_trips(context: Context) -> Table:
    table = Table(
        "DynamoDB round trips per send request (Dispatch + DynamoDB stores, moto in-process)",
        ["request", "round trips", "breakdown"],
    )
    cases = [
        ("known customer by id, WhatsApp text", {"to": "ANA"}, False, SEND_TARGET),
        ("known customer by BSUID, new container", {"to": {"bsuid": ANA["bsuid"]}}, False, SEND_TARGET),
        ("known customer by BSUID, warm container", {"to": {"bsuid": ANA["bsuid"]}}, True, SEND_TARGET),
        ("unknown BSUID: undeliverable", {"to": {"bsuid": "US.404"}}, False, None),
    ]
    for label, request, warm, goal in cases:
        calls, result = _measure(request, warm=warm)
        sent = bool(result.sent)
        if sent == (goal is None):
            raise AssertionError(f"{label}: not the case it claims to be ({result})")
        met = None if goal is None else len(calls) <= goal
        table.rows.append(Row([label, str(len(calls)), _breakdown(calls)], f"<= {goal}" if goal else "", met))
    for label, status, goal in [
        ("R14 check, WhatsApp delivered in time", "delivered", 1),
        ("R14 check, still sent: the SMS", "sent", None),
    ]:
        calls, result = _measure_check(status)
        if bool(result.sent) == (status == "delivered"):
            raise AssertionError(f"{label}: not the case it claims to be ({result})")
        met = None if goal is None else len(calls) <= goal
        table.rows.append(Row([label, str(len(calls)), _breakdown(calls)], f"<= {goal}" if goal else "", met))
    table.notes.append(
        "the provider call itself is not counted; a send = decision + claim + the outbound record"
    )
    return table


def _ana_in_memory() -> MemoryIdentityStore:
    """The scene in the identity-store fake: Ana wrote on WhatsApp (the real ``Ingest``)."""
    store = MemoryIdentityStore()
    Ingest(store, RecordingPublisher(), sleep=lambda _: None).handle(parse(meta_text(ANA, 1)).events)
    return store


def routing_cpu(context: Context) -> Table:
    """CPU of one routing decision (the pure policy), and of one send through ``Dispatch`` over the
    fakes (parse the request, read the recipient, decide, record, claim, send, settle, publish)."""
    table = Table(
        "CPU per routing decision (pure policy) and per send (Dispatch over tests/fakes), 2000 calls",
        ["case", "median µs", "p90 µs"],
    )
    identity = _ana_in_memory()
    (customer,) = identity.live_customers("demo")
    now = datetime.fromtimestamp(T0, UTC) + timedelta(hours=1)
    request = parse_send_request(
        {"tenant": "demo", "idempotency_key": "k", "to": {"customer_id": "c"}, "text": "Shipped"}
    )
    decisions = _cpu(lambda i: decide(request, Recipient(customer), CHANNELS, now))
    table.rows.append(_cpu_row("decision: window open, WhatsApp text + SMS considered", decisions))
    sends = MemorySendStore(customers=identity)
    setup = TenantSetup(CHANNELS, {"whatsapp": ScriptedSender("meta"), "sms": ScriptedSender("twilio")})
    dispatch = Dispatch(sends, lambda tenant: setup, RecordingPublisher(), clock=lambda: now)
    to = {"customer_id": customer.id}

    def send(i: int) -> None:
        sends.tats.clear()  # one message per user: the pair rate never says wait
        dispatch.send({"tenant": "demo", "idempotency_key": f"k{i}", "to": to, "text": "Hi"})

    sent = _cpu(send)
    table.rows.append(_cpu_row("send: known customer by id, WhatsApp text, sent", sent))
    return table


def _cpu(call: Any, *, warmup: int = 300, count: int = 2000) -> list[float]:
    samples = []
    for i in range(warmup + count):
        start = time.process_time_ns()
        call(i)
        if i >= warmup:
            samples.append((time.process_time_ns() - start) / 1000)
    return samples


def _cpu_row(label: str, samples: list[float]) -> Row:
    p90 = statistics.quantiles(samples, n=10)[-1]
    return Row([label, f"{statistics.median(samples):.1f}", f"{p90:.1f}"])
