"""Contract R8 against DynamoDB (moto): one idempotency key sends at most one message per channel,
across retries, redeliveries and restarts, through ``Dispatch`` and the real ``DynamoSendStore``.

1. A property: the same send request is delivered again and again (a ``RetryLater`` is the queue
   redelivering it later), sometimes with an R7 fallback for the WhatsApp message in between and
   sometimes with a restart (a fresh ``Dispatch`` and fresh stores: a new container) before a step;
   each provider call answers success or a ``SendFailed`` outcome drawn for that call.
2. Faults: a DynamoDB error (botocore ``before-call`` hook on PynamoDB's clients, answering with a
   stubbed error so the request never reaches moto) at each step of a send, then a redelivery.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from crossroute.channels import Channel, Outbound, SendFailed, Sent
from crossroute.channels.errors import FALLBACK_CODES
from crossroute.dispatch import Dispatch, Dispatched, RetryLater, TenantSetup, Unsettled
from crossroute.routing.policy import FALLBACK_PREFIX
from crossroute.store.sends import DynamoSendStore
from crossroute.store.tables import TableItem
from tests.fakes import FAILURES, RecordingPublisher
from tests.support import (
    AFTER_WINDOW,
    IN_WINDOW,
    LOCAL_CHANNELS,
    SEND_KEY,
    SHIPPED_TEMPLATE,
    DynamoFault,
    DynamoFaults,
    FaultWorld,
    ana_customer_id,
    claims,
    finishes,
    releases,
    send_request,
)

# What a provider answers to one call (``FAILURES``: a representative error for each failing one).
ANSWERS = ("sent", "retry", "fallback", "permanent", "unknown")


def wipe() -> None:
    """Empty the table between examples (a fresh moto account per example is slower)."""
    with TableItem.batch_write() as batch:
        for item in TableItem.scan(consistent_read=True):
            batch.delete(item)


@dataclass
class Call:
    channel: Channel
    answer: str
    step: int
    during: str  # "send" | "fallback"
    code: int | None  # the fallback code of the R7 call this happened in


@dataclass
class Provider:
    """One provider (it outlives any container): answers each call with ``answer()``, records every call."""

    name: str
    channel: Channel
    answer: Callable[[], str]
    log: list[Call]
    context: Callable[[], tuple[int, str, int | None]]
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def send(self, message: Outbound) -> Sent:
        assert message.channel == self.channel
        answer = self.answer()
        step, during, code = self.context()
        self.log.append(Call(self.channel, answer, step, during, code))
        if answer != "sent":
            failure, title = FAILURES[self.name][answer]
            raise SendFailed(self.name, answer, failure, title)  # type: ignore[arg-type]
        prefix = "wamid." if self.name == "meta" else "SM"
        return Sent(self.name, f"{prefix}{next(self.ids)}")  # type: ignore[arg-type]


class Container:
    """What a Lambda container holds: a ``Dispatch`` over fresh stores. The providers are shared."""

    def __init__(self, setup: TenantSetup, bus: RecordingPublisher, now: datetime) -> None:
        self.sends = DynamoSendStore()
        self.dispatch = Dispatch(
            self.sends,
            lambda tenant: setup if tenant == "demo" else None,
            bus,
            clock=lambda: now,
        )


steps = st.lists(
    st.tuples(
        st.sampled_from(["deliver", "deliver", "fallback"]),
        st.booleans(),  # restart (a new container) before this step
        st.sampled_from([131026, 131047, 132001]),  # the fallback code, for a fallback step
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_one_key_sends_at_most_one_message_per_channel(table: str, data: st.DataObject) -> None:
    wipe()
    customer = ana_customer_id()
    now = data.draw(st.sampled_from([IN_WINDOW, AFTER_WINDOW]), label="now")
    with_template = data.draw(st.booleans(), label="template")
    plan = data.draw(steps, label="steps")
    doc = send_request(
        SEND_KEY, to={"customer_id": customer}, **({"template": SHIPPED_TEMPLATE} if with_template else {})
    )

    calls: list[Call] = []
    where: list[tuple[int, str, int | None]] = [(0, "send", None)]

    def answers(channel: str) -> Callable[[], str]:
        return lambda: data.draw(st.sampled_from(ANSWERS), label=f"{channel} answers")

    whatsapp = Provider("meta", "whatsapp", answers("whatsapp"), calls, lambda: where[-1])
    sms = Provider("twilio", "sms", answers("sms"), calls, lambda: where[-1])
    setup = TenantSetup(LOCAL_CHANNELS, {"whatsapp": whatsapp, "sms": sms})
    bus = RecordingPublisher()
    container = Container(setup, bus, now)
    request_ids: set[str | None] = set()
    wamids: list[str] = []

    for n, (kind, restart, code) in enumerate(plan):
        if restart:
            container = Container(setup, bus, now)
        where.append((n, "send" if kind == "deliver" else "fallback", code))
        result: Dispatched | None = None
        try:
            if kind == "deliver":
                result = container.dispatch.send(doc)
            else:
                wamid = wamids[-1] if wamids else "wamid.never-sent"
                result = container.dispatch.fallback("demo", "meta", wamid, code)
        except RetryLater:
            note(f"step {n} {kind}: RetryLater (the queue redelivers)")
        else:
            note(f"step {n} {kind}: {result}")
            if kind == "deliver" or wamids:
                request_ids.add(result.request_id)
            if "whatsapp" in result.sent and result.sent["whatsapp"] not in wamids:
                wamids.append(result.sent["whatsapp"])
        record = container.sends.get("demo", SEND_KEY)
        if record is not None:
            request_ids.add(record.request_id)
        note(f"  record sends: {record.sends if record else None}")

    check_at_most_once_per_channel(calls, bus, request_ids)


def check_at_most_once_per_channel(
    calls: list[Call], bus: RecordingPublisher, request_ids: set[str | None]
) -> None:
    """R8 over everything the providers were asked, and the store agreeing with what they answered."""
    note("calls: " + ", ".join(f"{c.channel}:{c.answer}@{c.step}/{c.during}" for c in calls))
    # The request id stays the same across deliveries, restarts and fallbacks.
    assert len(request_ids - {None}) <= 1, request_ids
    for channel in ("whatsapp", "sms"):
        mine = [c for c in calls if c.channel == channel]
        # At most one message per channel: at most one call that was (or may have been) accepted, and
        # no call at all after it.
        delivered = [i for i, c in enumerate(mine) if c.answer in ("sent", "unknown")]
        assert len(delivered) <= 1, (channel, mine)
        if delivered:
            assert delivered[0] == len(mine) - 1, ("called again after sent/unknown", channel, mine)
        # Failed for good on this channel (permanent / fallback): never called again either.
        final = [i for i, c in enumerate(mine) if c.answer in ("permanent", "fallback")]
        if final:
            assert final[0] == len(mine) - 1, ("called again after a definite failure", channel, mine)
    # After a WhatsApp success, SMS only as an R7 fallback for a fallback code.
    first_whatsapp = next(
        (i for i, c in enumerate(calls) if c.channel == "whatsapp" and c.answer == "sent"), None
    )
    if first_whatsapp is not None:
        for later in calls[first_whatsapp + 1 :]:
            if later.channel == "sms":
                assert later.during == "fallback" and later.code in FALLBACK_CODES, later
        sms_sent = [i for i, c in enumerate(calls) if c.channel == "sms" and c.answer == "sent"]
        if sms_sent and sms_sent[0] > first_whatsapp:
            routed = [r for r in bus.of("MessageRouted") if r["channel"] == "sms"]
            assert routed and all(r == routed[0] for r in routed), routed  # at least once, identical
            code = calls[sms_sent[0]].code
            assert routed[0]["reason"] == f"{FALLBACK_PREFIX}{code}", routed
    # What the store says agrees with the providers.
    record = DynamoSendStore().get("demo", SEND_KEY)
    for channel in ("whatsapp", "sms"):
        answered = [c.answer for c in calls if c.channel == channel]
        state = record.sends.get(channel, {}).get("state") if record else None
        if "sent" in answered:
            assert state == "sent", (channel, record)
        elif "unknown" in answered:
            assert state == "unknown", (channel, record)


# --------------------------------------------------------------------------- a property with faults
# The same request, but DynamoDB fails now and then (any step of a send: reading the customer, the claim,
# recording how a send ended) and what the dispatch function carries forward on the send queue
# (``Unsettled``) comes back as a follow-up at some later step, possibly failing again. At the end the
# faults stop, the providers accept, the follow-ups left are handled and the request is delivered once
# more: then besides R8, nothing may be left ``sending`` (nothing the providers answered was lost).

FAULTS = [
    None,
    ("BatchGetItem", 1),  # reading the recipient
    ("UpdateItem", 1),  # begin: the request and its claim
    ("UpdateItem", 2),  # a settlement (released, failed), or the next claim
    ("UpdateItem", 2),
    ("UpdateItem", 3),
    ("TransactWriteItems", 1),  # the sent settlement: state + timeline + pair pace
    ("TransactWriteItems", 1),
]
fault_steps = st.lists(
    st.tuples(
        st.sampled_from(["deliver", "deliver", "fallback", "follow_up"]),
        st.sampled_from(FAULTS),
        st.sampled_from([131026, 131047, 132001]),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_with_dynamodb_faults_and_follow_ups_nothing_is_sent_twice_or_left_sending(
    table: str, data: st.DataObject
) -> None:
    wipe()
    customer = ana_customer_id()
    now = data.draw(st.sampled_from([IN_WINDOW, AFTER_WINDOW]), label="now")
    with_template = data.draw(st.booleans(), label="template")
    plan = data.draw(fault_steps, label="steps")
    doc = send_request(
        SEND_KEY, to={"customer_id": customer}, **({"template": SHIPPED_TEMPLATE} if with_template else {})
    )

    calls: list[Call] = []
    where: list[tuple[int, str, int | None]] = [(0, "send", None)]
    accepting = [False]  # at the end every provider accepts

    def answers(channel: str) -> Callable[[], str]:
        return lambda: "sent" if accepting[0] else data.draw(st.sampled_from(ANSWERS), label=f"{channel}")

    whatsapp = Provider("meta", "whatsapp", answers("whatsapp"), calls, lambda: where[-1])
    sms = Provider("twilio", "sms", answers("sms"), calls, lambda: where[-1])
    setup = TenantSetup(LOCAL_CHANNELS, {"whatsapp": whatsapp, "sms": sms})
    bus = RecordingPublisher()
    request_ids: set[str | None] = set()
    wamids: list[str] = []
    pending: list[tuple[dict[str, Any], tuple[Any, ...]]] = []  # (settlement doc, what to handle then)

    def handle(action: tuple[Any, ...], settle: dict[str, Any] | None = None) -> bool:
        """One SQS record in a new container: True when it is done with (handled, or carried forward)."""
        dispatch = Container(setup, bus, now).dispatch
        try:
            if settle is not None:
                dispatch.settle(settle)
            result = dispatch.send(doc) if action[0] == "deliver" else dispatch.fallback(*action[1:])
        except Unsettled as unsettled:
            pending.append((json.loads(json.dumps(unsettled.settlement.as_doc())), action))
            note(f"  carried forward: {unsettled.settlement.result} on {unsettled.settlement.claim.channel}")
            event(f"carried forward: {unsettled.settlement.result}")
            return True
        except Exception as exc:  # the queue redelivers the record (RetryLater, or a DynamoDB error)
            note(f"  failed: {type(exc).__name__}")
            event(f"failed: {type(exc).__name__}")
            return False
        request_ids.add(result.request_id)
        if "whatsapp" in result.sent and result.sent["whatsapp"] not in wamids:
            wamids.append(result.sent["whatsapp"])
        return True

    faults = DynamoFaults()
    try:
        for n, (kind, fault, code) in enumerate(plan):
            faults.clear()
            if fault:
                faults.arm(DynamoFault(fault[0], nth=fault[1]))
            where.append((n, "fallback" if kind == "fallback" else "send", code))
            note(f"step {n} {kind} fault={fault}")
            if kind == "deliver":
                handle(("deliver",))
            elif kind == "fallback" and wamids:
                handle(("fallback", "demo", "meta", wamids[-1], code))
            elif kind == "follow_up" and pending:
                settle, action = pending[0]
                if handle(action, settle):
                    pending.remove((settle, action))
        faults.clear()
        accepting[0] = True
        where.append((len(plan), "send", None))
        for _ in range(10):  # the follow-ups left, then the request once more
            while pending:
                settle, action = pending.pop(0)
                assert handle(action, settle)
            if handle(("deliver",)) and not pending:
                break
    finally:
        faults.close()

    check_at_most_once_per_channel(calls, bus, request_ids)
    record = DynamoSendStore().get("demo", SEND_KEY)
    assert record is not None
    note(f"record sends: {record.sends}")
    assert all(state["state"] != "sending" for state in record.sends.values()), record.sends
    for wamid in wamids:  # every message that went out is on the timeline, findable for R7
        assert DynamoSendStore().request_of("demo", "meta", wamid) == SEND_KEY


# --------------------------------------------------------------------------- faults
@pytest.fixture
def faulty(table: str) -> Iterator[FaultWorld]:
    world = FaultWorld()
    yield world
    world.faults.close()


def follow_up(dispatch: Dispatch, failed: object) -> bool:
    """What the dispatch function does with ``Unsettled``: the settlement goes on the send queue (as JSON)
    and is recorded from there; the caller then handles the request again."""
    assert isinstance(failed, Unsettled), failed
    return dispatch.settle(json.loads(json.dumps(failed.settlement.as_doc())))


def deliver(dispatch: Dispatch, doc: dict[str, Any]) -> Dispatched | BaseException:
    try:
        return dispatch.send(doc)
    except Exception as exc:
        return exc


def test_the_customer_read_fails_nothing_is_recorded_and_the_redelivery_sends_once(
    faulty: FaultWorld,
) -> None:
    fault = faulty.faults.arm(DynamoFault("BatchGetItem"))
    failed = deliver(faulty.container(), faulty.doc())
    assert isinstance(failed, Exception) and not isinstance(failed, RetryLater) and fault.hits == 1
    assert faulty.whatsapp.calls == faulty.sms.calls == [] and DynamoSendStore().get("demo", SEND_KEY) is None
    faulty.faults.clear()
    result = deliver(faulty.container(), faulty.doc())
    assert isinstance(result, Dispatched) and result.sent == {"whatsapp": "wamid.1"}
    assert len(faulty.whatsapp.calls) == 1 and faulty.sms.calls == []


def test_the_claim_fails_nothing_is_sent_and_the_redelivery_sends_once(faulty: FaultWorld) -> None:
    fault = faulty.faults.arm(DynamoFault("UpdateItem", when=claims("whatsapp")))
    failed = deliver(faulty.container(), faulty.doc())
    assert isinstance(failed, Exception) and fault.hits == 1
    assert faulty.whatsapp.calls == [] and faulty.state("whatsapp") is None
    faulty.faults.clear()
    first = deliver(faulty.container(), faulty.doc())
    again = deliver(faulty.container(), faulty.doc())
    assert isinstance(first, Dispatched) and first.sent == {"whatsapp": "wamid.1"}
    assert isinstance(again, Dispatched) and again.request_id == first.request_id
    assert len(faulty.whatsapp.calls) == 1 and faulty.sms.calls == []


def test_recording_the_outbound_fails_after_the_provider_accepted_it_is_recorded_from_the_follow_up(
    faulty: FaultWorld,
) -> None:
    fault = faulty.faults.arm(DynamoFault("TransactWriteItems"))
    failed = deliver(faulty.container(), faulty.doc())
    assert isinstance(failed, Unsettled) and not failed.later and fault.hits == 1
    assert len(faulty.whatsapp.calls) == 1 and faulty.bus.of("MessageRouted") == []
    faulty.faults.clear()
    # Until the follow-up is recorded the claim is "sending": a redelivery reports it and resends nothing.
    again = deliver(faulty.container(), faulty.doc())
    assert isinstance(again, Dispatched) and again.sent == {} and faulty.state("whatsapp") == "sending"
    assert follow_up(faulty.container(), failed) is True
    assert follow_up(faulty.container(), failed) is False  # the follow-up delivered twice: no change
    handled = deliver(faulty.container(), faulty.doc())  # then the request is handled again
    assert isinstance(handled, Dispatched) and handled.sent == {"whatsapp": "wamid.1"}
    assert (
        faulty.state("whatsapp") == "sent"
        and DynamoSendStore().request_of("demo", "meta", "wamid.1") == SEND_KEY
    )
    (routed,) = faulty.bus.of("MessageRouted")
    assert routed["provider_message_id"] == "wamid.1" and routed["request_id"] == handled.request_id
    assert len(faulty.whatsapp.calls) == 1 and faulty.sms.calls == []


def test_a_follow_up_settles_only_the_attempt_that_claimed(faulty: FaultWorld) -> None:
    faulty.faults.arm(DynamoFault("TransactWriteItems"))
    failed = deliver(faulty.container(), faulty.doc())
    faulty.faults.clear()
    assert isinstance(failed, Unsettled)
    forged = {**failed.settlement.as_doc(), "attempt": "someone-else", "result": "released"}
    assert faulty.container().settle(forged) is False and faulty.state("whatsapp") == "sending"


def test_recording_an_unknown_outcome_fails_it_is_recorded_from_the_follow_up(faulty: FaultWorld) -> None:
    faulty.whatsapp.script.append("unknown")
    fault = faulty.faults.arm(DynamoFault("UpdateItem", when=finishes))
    failed = deliver(faulty.container(), faulty.doc())
    assert isinstance(failed, Unsettled) and fault.hits == 1 and len(faulty.whatsapp.calls) == 1
    assert faulty.state("whatsapp") == "sending"
    faulty.faults.clear()
    assert follow_up(faulty.container(), failed)
    result = deliver(faulty.container(), faulty.doc())
    assert isinstance(result, Dispatched) and result.undeliverable and faulty.state("whatsapp") == "unknown"
    assert len(faulty.whatsapp.calls) == 1 and faulty.sms.calls == []  # never resent, never SMS (R8)
    (undeliverable,) = faulty.bus.of("MessageUndeliverable")
    assert undeliverable["failures"] == [{"channel": "whatsapp", "outcome": "unknown", "code": None}]


def test_a_definite_failure_not_recorded_moves_on_to_sms_from_the_follow_up(faulty: FaultWorld) -> None:
    faulty.whatsapp.script.append("fallback")
    faulty.faults.arm(DynamoFault("UpdateItem", when=finishes))
    failed = deliver(faulty.container(), faulty.doc(template=SHIPPED_TEMPLATE))
    assert isinstance(failed, Unsettled) and faulty.sms.calls == []
    faulty.faults.clear()
    assert follow_up(faulty.container(), failed)
    result = deliver(faulty.container(), faulty.doc(template=SHIPPED_TEMPLATE))
    assert isinstance(result, Dispatched) and result.sent == {"sms": "SM1"}
    (routed,) = faulty.bus.of("MessageRouted")
    assert routed["failures"] == [{"channel": "whatsapp", "outcome": "fallback", "code": 131026}]


def test_a_fallback_sms_whose_record_fails_is_recorded_from_the_follow_up(faulty: FaultWorld) -> None:
    first = deliver(faulty.container(), faulty.doc())
    assert isinstance(first, Dispatched) and first.sent == {"whatsapp": "wamid.1"}
    fault = faulty.faults.arm(DynamoFault("TransactWriteItems"))
    with pytest.raises(Unsettled) as failed:
        faulty.container().fallback("demo", "meta", "wamid.1", 131026)
    assert fault.hits == 1 and len(faulty.sms.calls) == 1
    faulty.faults.clear()
    again = faulty.container().fallback("demo", "meta", "wamid.1", 131026)
    assert again.sent.get("sms") is None and faulty.state("sms") == "sending"
    assert follow_up(faulty.container(), failed.value)
    handled = faulty.container().fallback("demo", "meta", "wamid.1", 131026)
    assert handled.sent == {"sms": "SM1"} and len(faulty.sms.calls) == 1 and faulty.state("sms") == "sent"
    assert [r["reason"] for r in faulty.bus.of("MessageRouted")] == [
        "whatsapp.window_open",
        "fallback.whatsapp_failed.131026",
    ]


def test_a_failed_publish_is_published_when_the_request_is_handled_again(faulty: FaultWorld) -> None:
    faulty.bus.fail_next = 1
    failed = deliver(faulty.container(), faulty.doc())
    assert isinstance(failed, Exception) and faulty.bus.of("MessageRouted") == []
    result = deliver(faulty.container(), faulty.doc())  # the queue redelivers it
    assert isinstance(result, Dispatched) and result.sent == {"whatsapp": "wamid.1"}
    (routed,) = faulty.bus.of("MessageRouted")
    assert routed["request_id"] == result.request_id and len(faulty.whatsapp.calls) == 1


def test_a_fallback_claim_fails_nothing_is_sent_and_the_retry_sends_once(faulty: FaultWorld) -> None:
    deliver(faulty.container(), faulty.doc())
    fault = faulty.faults.arm(DynamoFault("UpdateItem", when=claims("sms")))
    with pytest.raises(Exception):  # noqa: B017
        faulty.container().fallback("demo", "meta", "wamid.1", 131026)
    assert fault.hits == 1 and faulty.sms.calls == [] and faulty.state("sms") is None
    faulty.faults.clear()
    for _ in range(2):
        faulty.container().fallback("demo", "meta", "wamid.1", 131026)
    assert len(faulty.sms.calls) == 1 and faulty.state("sms") == "sent"


# --------------------------------------------------------------------------- liveness (not R8)
# At most once holds in every case above. These show requests that a redelivery never sends, although
# nothing was sent and the providers answer again: the redelivery only ever claims the FIRST chosen
# channel (``Dispatch.send`` -> ``begin(claim=chosen)``), and when that claim exists in any state it
# reports (``_already``) instead of resuming at the channel the earlier attempt had reached.


def test_a_throttled_sms_after_a_whatsapp_failure_is_sent_on_redelivery(faulty: FaultWorld) -> None:
    faulty.whatsapp.script.append("fallback")
    faulty.sms.script.append("retry")
    with pytest.raises(RetryLater):
        faulty.container().send(faulty.doc(template=SHIPPED_TEMPLATE))
    assert faulty.state("whatsapp") == "failed" and faulty.state("sms") is None
    result = faulty.container().send(faulty.doc(template=SHIPPED_TEMPLATE))  # the queue redelivers
    assert result.sent == {"sms": "SM2"} and len(faulty.sms.calls) == 2


def test_a_failed_claim_of_the_next_channel_is_sent_on_redelivery(faulty: FaultWorld) -> None:
    faulty.whatsapp.script.append("fallback")
    faulty.faults.arm(DynamoFault("UpdateItem", when=claims("sms"), nth=1))
    failed = deliver(faulty.container(), faulty.doc(template=SHIPPED_TEMPLATE))
    assert isinstance(failed, Exception) and faulty.sms.calls == []
    faulty.faults.clear()
    result = deliver(faulty.container(), faulty.doc(template=SHIPPED_TEMPLATE))
    assert isinstance(result, Dispatched) and result.sent == {"sms": "SM1"}


def test_a_throttled_send_whose_release_fails_is_sent_after_the_follow_up(faulty: FaultWorld) -> None:
    faulty.whatsapp.script.append("retry")
    faulty.faults.arm(DynamoFault("UpdateItem", when=releases))
    failed = deliver(faulty.container(), faulty.doc())
    assert isinstance(failed, Unsettled) and failed.later and len(faulty.whatsapp.calls) == 1
    faulty.faults.clear()
    assert follow_up(faulty.container(), failed) and faulty.state("whatsapp") is None
    result = deliver(faulty.container(), faulty.doc())
    assert isinstance(result, Dispatched) and result.sent == {"whatsapp": "wamid.2"}
