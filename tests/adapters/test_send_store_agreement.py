"""The in-memory send store (``tests/fakes/send_store.py``) answers as ``DynamoSendStore`` does.

Hypothesis draws sequences of the operations dispatch and the send door perform on one or two keys
(records, claims, settlements by the right and the wrong attempt, provider messages, pair paces, the
R12 dead-letter mark) and
both stores must give the same answer to every one. Each example runs in a tenant of its own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossroute.channels import Outbound, Sent
from crossroute.identity.model import Key
from crossroute.ports import IdempotencyKeyReused, StatusRecord
from crossroute.routing.pacing import Pair, PairPace
from crossroute.routing.settlement import Claim, Settlement
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.sends import DynamoSendStore
from tests.fakes import MemoryIdentityStore, MemorySendStore
from tests.support import TENANT, ingest_each, sms_in

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEYS = ("order-1", "order-2")
CHANNELS = ("whatsapp", "sms")
ATTEMPTS = ("a1", "a2")
tenants = itertools.count()


@dataclass(frozen=True)
class Op:
    name: str
    args: dict[str, Any]


def claims() -> st.SearchStrategy[Claim]:
    return st.builds(
        lambda key, channel, attempt: Claim("?", key, channel, attempt),
        st.sampled_from(KEYS),
        st.sampled_from(CHANNELS),
        st.sampled_from(ATTEMPTS),
    )


def settlements() -> st.SearchStrategy[Settlement]:
    def build(
        claim: Claim, result: str, code: int | None, message: int, pace: tuple[str, float]
    ) -> Settlement:
        at = T0 + timedelta(seconds=message)
        if result == "released":
            return Settlement.released(claim, at)
        if result in ("failed", "unknown"):
            return Settlement.failed(claim, at, "permanent" if result == "failed" else "unknown", code)
        provider = "meta" if claim.channel == "whatsapp" else "twilio"
        outbound = Outbound(claim.channel, "100000000000001", to="+15550123456", text="hi")
        kind, amount = pace
        moved = PairPace(0.0, add=amount) if kind == "add" else PairPace(0.0, set_to=amount)
        paced = (Pair("?", "100000000000001", "C:c1"), moved)
        return Settlement.delivered(
            claim, at, Sent(provider, f"m{message}"), "default", outbound, "c1", paced if kind else None
        )

    return st.builds(
        build,
        claims(),
        st.sampled_from(["released", "failed", "unknown", "sent"]),
        st.none() | st.sampled_from([131026, 21610]),
        st.integers(0, 3),
        st.sampled_from([("", 0.0), ("add", 6.0), ("set_to", 1_790_000_000.5)]),
    )


operations = st.one_of(
    st.builds(
        lambda key, n, claim, customer: Op(
            "begin", {"key": key, "n": n, "claim": claim, "customer_id": customer}
        ),
        st.sampled_from(KEYS),
        st.integers(0, 2),
        st.none() | claims(),
        st.none() | st.just("c1"),
    ),
    st.builds(lambda key, n: Op("accept", {"key": key, "n": n}), st.sampled_from(KEYS), st.integers(0, 2)),
    st.builds(lambda claim: Op("claim", {"claim": claim}), claims()),
    st.builds(lambda settlement: Op("settle", {"settlement": settlement}), settlements()),
    st.builds(lambda key: Op("get", {"key": key}), st.sampled_from(KEYS)),
    st.builds(lambda n: Op("progress", {"n": n}), st.integers(0, 2)),
    st.builds(lambda m: Op("request_of", {"message": m}), st.integers(0, 3)),
    st.builds(
        lambda key, n, minute: Op("dead_lettered", {"key": key, "n": n, "minute": minute}),
        st.sampled_from(KEYS),
        st.integers(0, 2),
        st.integers(0, 2),
    ),
    st.builds(lambda by_id: Op("recipient_and_pace", {"by_id": by_id}), st.booleans()),
)


def apply(store: Any, tenant: str, op: Op) -> Any:
    a = op.args
    if op.name == "begin":
        claim = a["claim"]
        return store.begin(
            tenant=tenant,
            key=a["key"],
            request_id=f"r{a['n']}",
            request={"text": f"v{a['n']}"},
            decision=[{"channel": "whatsapp", "qualified": True, "reason": f"d{a['n']}"}],
            customer_id=a["customer_id"],
            claim=Claim(tenant, a["key"], claim.channel, claim.attempt) if claim else None,
            now=T0,
        )
    if op.name == "accept":
        try:
            return store.accept(
                tenant=tenant, key=a["key"], request_id=f"r{a['n']}", request={"n": a["n"]}, now=T0
            )
        except IdempotencyKeyReused as exc:  # the key holds another request: refused, naming the first
            return ("reused", exc.request_id)
    if op.name == "progress":
        return store.progress(tenant, f"r{a['n']}")
    if op.name == "claim":
        claim = a["claim"]
        return store.claim(Claim(tenant, claim.key, claim.channel, claim.attempt), T0)
    if op.name == "settle":
        s = a["settlement"]
        claim = Claim(tenant, s.claim.key, s.claim.channel, s.claim.attempt)
        pair = Pair(tenant, s.pair.business, s.pair.user) if s.pair else None
        return store.settle(Settlement(**{**s.__dict__, "claim": claim, "pair": pair}))
    if op.name == "get":
        return store.get(tenant, a["key"])
    if op.name == "dead_lettered":
        return store.dead_lettered(
            tenant=tenant,
            key=a["key"],
            request_id=f"r{a['n']}",
            request={"n": a["n"]},
            now=T0 + timedelta(minutes=a["minute"]),
        )
    if op.name == "request_of":
        return [store.request_of(tenant, p, f"m{a['message']}") for p in ("meta", "twilio")]
    pair = Pair(tenant, "100000000000001", "C:c1")
    if a["by_id"]:
        return store.recipient_and_pace(tenant, customer_id="c1", keys=[], pair=pair)
    return store.recipient_and_pace(tenant, customer_id=None, keys=[Key("phone", "+15550123456")], pair=pair)


@pytest.mark.usefixtures("table")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operations, min_size=1, max_size=14))
def test_the_fake_answers_every_operation_as_the_table_does(ops: list[Op]) -> None:
    tenant = f"agree{next(tenants)}"
    dynamo, memory = DynamoSendStore(), MemorySendStore()
    for step, op in enumerate(ops):
        expected, got = apply(dynamo, tenant, op), apply(memory, tenant, op)
        assert got == expected, f"step {step}: {op}"


@pytest.mark.usefixtures("table")
def test_a_claim_settled_by_its_own_attempt_sends_once_in_both() -> None:
    """A fixed scenario, so the agreement above is not only about sequences that do nothing."""
    for store in (DynamoSendStore(), MemorySendStore()):
        tenant = f"agree{next(tenants)}"
        claim = Claim(tenant, "order-1", "whatsapp", "a1")
        record = store.begin(
            tenant=tenant,
            key="order-1",
            request_id="r1",
            request={},
            decision=[],
            customer_id=None,
            claim=claim,
            now=T0,
        )
        outbound = Outbound("whatsapp", "100000000000001", to="+15550123456", text="hi")
        sent = Settlement.delivered(claim, T0, Sent("meta", "wamid.1"), "default", outbound, None)
        assert record.claimed == "whatsapp"
        assert store.settle(sent) and not store.settle(sent)
        assert not store.claim(Claim(tenant, "order-1", "whatsapp", "a2"), T0)
        assert store.request_of(tenant, "meta", "wamid.1") == "order-1"
        final = store.get(tenant, "order-1")
        assert final is not None and final.sends["whatsapp"]["provider_message_id"] == "wamid.1"


@pytest.mark.usefixtures("table")
def test_the_pair_pace_moves_alike_in_both() -> None:
    """Set, then added to: what a first and a second message to one user do to the pair rate."""
    tats = []
    for store in (DynamoSendStore(), MemorySendStore()):
        tenant = f"agree{next(tenants)}"
        pair = Pair(tenant, "100000000000001", "C:c1")
        outbound = Outbound("whatsapp", "100000000000001", to="+15550123456", text="hi")
        for n, pace in enumerate([PairPace(0.0, set_to=1_790_000_000.5), PairPace(0.0, add=6.0)]):
            claim = Claim(tenant, f"order-{n}", "whatsapp", "a1")
            store.begin(
                tenant=tenant,
                key=claim.key,
                request_id="r",
                request={},
                decision=[],
                customer_id="c1",
                claim=claim,
                now=T0,
            )
            sent = Settlement.delivered(
                claim, T0, Sent("meta", f"wamid.{n}"), "default", outbound, "c1", (pair, pace)
            )
            assert store.settle(sent)
        tats.append(store.recipient_and_pace(tenant, customer_id="c1", keys=[], pair=pair).pair_tat)
    assert tats == [1_790_000_006.5, 1_790_000_006.5]


@pytest.mark.usefixtures("table")
def test_a_request_is_marked_dead_lettered_once_in_both() -> None:
    """R12: the first mark returns the record (its caller reports it), every later one None; a request
    never recorded is remembered by the mark, and a later ``begin`` keeps its request id."""
    for store in (DynamoSendStore(), MemorySendStore()):
        tenant = f"agree{next(tenants)}"
        first = store.dead_lettered(tenant=tenant, key="order-1", request_id="r1", request={"n": 1}, now=T0)
        assert first is not None and (first.request_id, first.request) == ("r1", {"n": 1})
        assert store.dead_lettered(tenant=tenant, key="order-1", request_id="r2", request={}, now=T0) is None
        record = store.begin(
            tenant=tenant,
            key="order-1",
            request_id="r3",
            request={"n": 3},
            decision=[],
            customer_id=None,
            claim=Claim(tenant, "order-1", "sms", "a1"),
            now=T0,
        )
        assert record.request_id == "r1" and record.claimed == "sms"  # a redrive sends as before
        assert store.dead_lettered(tenant=tenant, key="order-1", request_id="r4", request={}, now=T0) is None


@pytest.mark.usefixtures("table")
def test_an_erased_stop_is_read_alike_in_both() -> None:
    """I10, R4: an SMS customer says STOP and is erased, in each identity store; each send store reads
    the phone's suppression (its time: the erasure's) along with the recipient, by phone and by id, and
    on its own; a phone nobody erased has none."""
    phone, other, erased_at = "+16505550001", "+16505550002", T0 + timedelta(days=1)
    answers = []
    dynamo_identity, memory_identity = DynamoIdentityStore(), MemoryIdentityStore()
    stores: list[tuple[Any, Any]] = [(dynamo_identity, DynamoSendStore(dynamo_identity))]
    stores += [(memory_identity, MemorySendStore(customers=memory_identity))]
    for identity, sends in stores:
        ingest_each(identity, [sms_in("SM1", phone, 0), sms_in("SM2", phone, 1, text="STOP")])
        (customer,) = identity.holders(TENANT, [Key("phone", phone)]).values()
        assert identity.erase(TENANT, customer, now=erased_at).suppressed == 1
        keys = [Key("phone", phone), Key("phone", other)]
        pair = Pair(TENANT, "100000000000001", "C:c1")
        answers.append(
            (
                sends.recipient_and_pace(TENANT, customer_id=None, keys=keys, pair=None),
                sends.recipient_and_pace(TENANT, customer_id="c1", keys=keys[:1], pair=pair),
                sends.suppression(TENANT, phone),
                sends.suppression(TENANT, other),
            )
        )
    assert answers[0] == answers[1]
    by_phone, by_id, suppressed, not_suppressed = answers[0]
    assert (by_phone.holders, by_id.customer) == ({}, None)  # erased: nobody holds the phone
    assert by_phone.suppressions == {phone: erased_at, other: None}
    assert by_id.suppressions == {phone: erased_at}
    assert (suppressed, not_suppressed) == (erased_at, None)


@pytest.mark.usefixtures("table")
def test_a_request_and_its_whatsapp_status_are_read_alike_in_both() -> None:
    """R14: ``record_and_status`` gives the record and the status ``apply_status`` stored (the fake keeps
    it in ``statuses``); None for a message with no status and for a key never recorded."""
    answers = []
    for store in (DynamoSendStore(), MemorySendStore()):
        tenant = f"agree{next(tenants)}"
        claim = Claim(tenant, "order-1", "whatsapp", "a1")
        store.begin(
            tenant=tenant,
            key="order-1",
            request_id="r1",
            request={"fallback_after": 60},
            decision=[],
            customer_id=None,
            claim=claim,
            now=T0,
        )
        outbound = Outbound("whatsapp", "100000000000001", to="+15550123456", text="hi")
        assert store.settle(
            Settlement.delivered(claim, T0, Sent("meta", "wamid.1"), "default", outbound, None)
        )
        before = store.record_and_status(tenant, "order-1", "meta", "wamid.1")
        if isinstance(store, DynamoSendStore):
            DynamoIdentityStore().apply_status(StatusRecord(tenant, "meta", "wamid.1", "sent", T0))
        else:
            store.statuses[(tenant, "meta", "wamid.1")] = "sent"
        record, status = store.record_and_status(tenant, "order-1", "meta", "wamid.1")
        assert record is not None
        nothing = store.record_and_status(tenant, "order-2", "meta", "wamid.2")
        answers.append((before[1], status, record.request, record.sends["whatsapp"]["state"], nothing))
    assert answers[0] == answers[1] == (None, "sent", {"fallback_after": 60}, "sent", (None, None))
