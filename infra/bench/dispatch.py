"""Dispatch per send request: DynamoDB round trips (moto) and the CPU of one routing decision.

Round trips: the scene (Ana wrote on WhatsApp an hour ago) is ingested through the real use cases; then
one send request goes through ``Dispatch`` over the DynamoDB stores, with a provider sender that
answers at once (no network), and its DynamoDB calls are counted like the ingest rows.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from crossroute.channels import Outbound, Sent
from crossroute.dispatch import Dispatch, TenantSetup
from crossroute.identity.model import Key
from crossroute.ingest import Ingest
from crossroute.routing.policy import Recipient, TenantChannels, decide
from crossroute.routing.request import parse_send_request
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.sends import DynamoSendStore
from crossroute.webhooks.parse import parse
from infra.bench import Context, Row, Table
from infra.bench.ingest import ANA, T0, DynamoCalls, Recorder, _breakdown, meta_text, moto_table

SEND_TARGET = 3
CHANNELS = TenantChannels("100000000000001", "+15550100002")
ANA_KEY = Key("bsuid", ANA["bsuid"])


class Instant:
    """A provider sender that accepts at once (the bench counts DynamoDB, not HTTP)."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.count = 0

    def send(self, message: Outbound) -> Sent:
        self.count += 1
        return Sent(self.provider, f"{self.provider}-{self.count}")  # type: ignore[arg-type]


def _measure(request: dict[str, Any], *, warm: bool) -> tuple[list[Any], Any]:
    with moto_table():
        identity = DynamoIdentityStore()
        Ingest(identity, Recorder(), sleep=lambda _: None).handle(parse(meta_text(ANA, 1)).events)
        ana = identity.holders("demo", [ANA_KEY])[ANA_KEY]
        setup = TenantSetup(CHANNELS, {"whatsapp": Instant("meta"), "sms": Instant("twilio")})
        now = datetime.fromtimestamp(T0, UTC) + timedelta(hours=1)
        dispatch = Dispatch(
            identity if warm else DynamoIdentityStore(),
            DynamoSendStore(),
            lambda tenant: setup,
            Recorder(),
            clock=lambda: now,
        )
        doc = {"tenant": "demo", "idempotency_key": "bench-1", "text": "Shipped", **request}
        if doc.get("to") == "ANA":
            doc["to"] = {"customer_id": ana.id}
        with DynamoCalls() as counter:
            result = dispatch.send(doc)
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
    table.notes.append(
        "the provider call itself is not counted; a send = decision + claim + the outbound record"
    )
    return table


def routing_cpu(context: Context) -> Table:
    """CPU of one routing decision (the pure policy), median over many calls."""
    request = parse_send_request(
        {"tenant": "demo", "idempotency_key": "k", "to": {"customer_id": "c"}, "text": "Shipped"}
    )
    from infra.bench.ingest import FakeStore  # a customer shaped like the bench's Ana

    store = FakeStore()
    Ingest(store, Recorder(), sleep=lambda _: None).handle(parse(meta_text(ANA, 1)).events)
    (customer,) = store.customers.values()
    now = datetime.fromtimestamp(T0, UTC) + timedelta(hours=1)
    samples = []
    for i in range(2300):
        start = time.process_time_ns()
        decide(request, Recipient(customer), CHANNELS, now)
        if i >= 300:
            samples.append((time.process_time_ns() - start) / 1000)
    table = Table("CPU per routing decision (pure policy, 2000 calls)", ["decision", "median µs", "p90 µs"])
    p90 = statistics.quantiles(samples, n=10)[-1]
    table.rows.append(
        Row(
            ["window open, WhatsApp text + SMS considered", f"{statistics.median(samples):.1f}", f"{p90:.1f}"]
        )
    )
    return table
