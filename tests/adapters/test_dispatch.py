"""Send requests through the dispatch use case against DynamoDB (moto), with scripted provider senders."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crossroute.channels import SendFailed
from crossroute.dispatch import RetryLater
from crossroute.routing.pacing import PAIR_BURST, PAIR_INTERVAL, Pacer
from crossroute.store.sends import DynamoSendStore
from tests.support import AFTER_WINDOW, IN_WINDOW, SHIPPED_TEMPLATE, DispatchWorld, send_request


@pytest.fixture
def world(table: str) -> DispatchWorld:
    return DispatchWorld(IN_WINDOW)


def test_inside_the_window_a_text_goes_out_on_whatsapp_to_the_phone(world: DispatchWorld) -> None:
    customer = world.ana()
    result = world.dispatch.send(send_request(to={"customer_id": customer}))
    (sent,) = world.whatsapp.calls
    assert (sent.to, sent.recipient, sent.text) == ("+5511987654321", None, "Your order has shipped")
    assert world.sms.calls == [] and result.sent == {"whatsapp": "wamid.1"}
    (routed,) = world.bus.of("MessageRouted")
    assert routed["reason"] == "whatsapp.window_open" and routed["request_id"] == result.request_id
    outbound = world.ingest.store.message("demo", "meta", "wamid.1")
    assert outbound and outbound.direction == "out" and outbound.customer_id == customer
    assert outbound.request_key == "order-42-shipped"


def test_the_same_key_again_is_the_same_request_and_no_second_message(world: DispatchWorld) -> None:
    customer = world.ana()
    first = world.dispatch.send(send_request(to={"customer_id": customer}))
    again = world.dispatch.send(send_request(to={"customer_id": customer}))
    assert again.request_id == first.request_id and len(world.whatsapp.calls) == 1


def test_after_the_window_without_a_template_it_goes_by_sms(world: DispatchWorld) -> None:
    customer = world.ana()
    world.now = AFTER_WINDOW
    result = world.dispatch.send(send_request(to={"customer_id": customer}))
    assert world.whatsapp.calls == [] and result.sent == {"sms": "SM1"}
    assert world.sms.calls[0].to == "+5511987654321"
    (routed,) = world.bus.of("MessageRouted")
    assert [d["reason"] for d in routed["decision"]] == [
        "whatsapp.window_closed_no_template",
        "sms.current_phone",
    ]


def test_a_definite_whatsapp_failure_falls_back_to_sms_once(world: DispatchWorld) -> None:
    customer = world.ana()
    world.whatsapp.script.append(SendFailed("meta", "fallback", 131026, "undeliverable"))
    result = world.dispatch.send(send_request(to={"customer_id": customer}, template=SHIPPED_TEMPLATE))
    assert result.sent == {"sms": "SM1"} and len(world.whatsapp.calls) == 1
    world.dispatch.send(send_request(to={"customer_id": customer}, template=SHIPPED_TEMPLATE))  # a redelivery
    assert len(world.sms.calls) == 1 and len(world.whatsapp.calls) == 1


def test_a_throttled_send_is_retried_later_and_then_sent_once(world: DispatchWorld) -> None:
    customer = world.ana()
    world.whatsapp.script.append(SendFailed("meta", "retry", 130429, "throughput"))
    with pytest.raises(RetryLater):
        world.dispatch.send(send_request(to={"customer_id": customer}))
    result = world.dispatch.send(send_request(to={"customer_id": customer}))  # the queue redelivers
    assert result.sent == {"whatsapp": "wamid.2"} and len(world.whatsapp.calls) == 2
    assert world.sms.calls == []


def test_an_unknown_outcome_is_never_sent_again_anywhere(world: DispatchWorld) -> None:
    customer = world.ana()
    world.whatsapp.script.append(SendFailed("meta", "unknown", None, "read timeout"))
    result = world.dispatch.send(send_request(to={"customer_id": customer}))
    assert result.undeliverable and world.sms.calls == []
    world.dispatch.send(send_request(to={"customer_id": customer}))
    assert len(world.whatsapp.calls) == 1 and world.sms.calls == []


def test_nothing_qualifies_nothing_is_sent_and_the_reasons_are_published(world: DispatchWorld) -> None:
    result = world.dispatch.send(send_request(to={"bsuid": "US.404"}))
    assert result.undeliverable and world.whatsapp.calls == world.sms.calls == []
    (undeliverable,) = world.bus.of("MessageUndeliverable")
    assert [d["reason"] for d in undeliverable["decision"]] == ["whatsapp.unknown_bsuid", "sms.no_phone"]


def test_an_unknown_phone_may_still_get_an_sms(world: DispatchWorld) -> None:
    result = world.dispatch.send(send_request(to={"phone": "+14155550100"}, channels=["sms"]))
    assert result.sent == {"sms": "SM1"} and world.sms.calls[0].to == "+14155550100"


def test_r7_a_later_whatsapp_failure_gets_exactly_one_sms(world: DispatchWorld) -> None:
    customer = world.ana()
    world.dispatch.send(send_request(to={"customer_id": customer}))
    assert world.sms.calls == []
    first = world.dispatch.fallback("demo", "meta", "wamid.1", 131026)
    again = world.dispatch.fallback("demo", "meta", "wamid.1", 131026)
    assert first.sent == {"sms": "SM1"} and again.sent.get("sms") in (None, "SM1")
    assert len(world.sms.calls) == 1
    routed = world.bus.of("MessageRouted")[-1]
    assert routed["channel"] == "sms" and routed["reason"] == "fallback.whatsapp_failed.131026"


def test_r7_not_for_a_code_that_does_not_mean_unreachable(world: DispatchWorld) -> None:
    customer = world.ana()
    world.dispatch.send(send_request(to={"customer_id": customer}))
    assert world.dispatch.fallback("demo", "meta", "wamid.1", 132001).sent == {}
    assert world.sms.calls == []


def test_r7_no_sms_to_an_opted_out_phone(world: DispatchWorld) -> None:
    customer = world.ana()
    world.dispatch.send(send_request(to={"customer_id": customer}))
    stop = (
        b"MessageSid=SMstop&AccountSid=AC00000000000000000000000000000000&From=%2B5511987654321"
        b"&To=%2B15550100002&Body=STOP"
    )
    from crossroute.inbound_queue import QueuedEvent

    world.ingest.body(
        QueuedEvent.build(tenant="demo", sender="x", kind="twilio.message", content={"form": stop.decode()})
    )
    result = world.dispatch.fallback("demo", "meta", "wamid.1", 131026)
    assert result.undeliverable and world.sms.calls == []
    reasons = [d["reason"] for d in world.bus.of("MessageUndeliverable")[-1]["decision"]]
    assert "sms.opted_out" in reasons and "fallback.whatsapp_failed.131026" in reasons


def test_an_invalid_request_from_a_queue_is_reported_not_retried(world: DispatchWorld) -> None:
    result = world.dispatch.send({"tenant": "demo", "to": {"phone": "nope"}})
    assert result.undeliverable and result.request_id is None
    (undeliverable,) = world.bus.of("MessageUndeliverable")
    assert undeliverable["reason"] == "request.invalid" and undeliverable["problems"]


def test_a_send_over_the_numbers_rate_releases_its_claim_and_is_retried(table: str) -> None:
    # 80 containers share 80/s: one send a second here, and waiting is not allowed; the clock stands still.
    paced = DispatchWorld(IN_WINDOW, pacer=Pacer(80, max_wait=0.0, clock=lambda: 0.0))
    customer = paced.ana()
    paced.dispatch.send(send_request("first", to={"customer_id": customer}))
    with pytest.raises(RetryLater) as refused:
        paced.dispatch.send(send_request("second", to={"customer_id": customer}))
    assert len(paced.whatsapp.calls) == 1
    assert refused.value.after == pytest.approx(1.0)  # the number's next token, a second on
    # Another container (same table, its own share) gets the released claim and sends it, once.
    other = DispatchWorld(IN_WINDOW)
    assert other.dispatch.send(send_request("second", to={"customer_id": customer})).sent == {
        "whatsapp": "wamid.1"
    }
    assert other.dispatch.send(send_request("second", to={"customer_id": customer})).sent == {
        "whatsapp": "wamid.1"
    }
    assert len(other.whatsapp.calls) == 1


def test_a_national_phone_in_a_request_is_read_in_the_tenants_region(table: str) -> None:
    germany = DispatchWorld(IN_WINDOW, region="DE")
    result = germany.dispatch.send(send_request(to={"phone": "0151 23456789"}, channels=["sms"]))
    assert result.sent == {"sms": "SM1"} and germany.sms.calls[0].to == "+4915123456789"


# --------------------------------------------------------------------------- the pair rate (per user)


def test_a_user_gets_a_burst_then_the_pair_rate_across_containers(table: str) -> None:
    customer = DispatchWorld(IN_WINDOW).ana()
    sent = 0
    for n in range(PAIR_BURST):  # each send in a new container: the pace is in the table, not in memory
        burst = send_request(f"burst-{n}", to={"customer_id": customer})
        sent += len(DispatchWorld(IN_WINDOW).dispatch.send(burst).sent)
    assert sent == PAIR_BURST
    over = DispatchWorld(IN_WINDOW)
    with pytest.raises(RetryLater) as paced:
        over.dispatch.send(send_request("one-too-many", to={"customer_id": customer}))
    assert paced.value.after == pytest.approx(PAIR_INTERVAL) and over.whatsapp.calls == []
    assert DynamoSendStore().get("demo", "one-too-many").sends == {}  # the claim was released
    # Another user of the same number is not held back.
    other = DispatchWorld(IN_WINDOW)
    assert other.dispatch.send(
        send_request("to-bob", to={"phone": "+14155550100"}, template=SHIPPED_TEMPLATE)
    ).sent == {"whatsapp": "wamid.1"}
    # When the interval has passed, the queue's redelivery sends it, once.
    later = DispatchWorld(IN_WINDOW + timedelta(seconds=PAIR_INTERVAL))
    assert later.dispatch.send(send_request("one-too-many", to={"customer_id": customer})).sent == {
        "whatsapp": "wamid.1"
    }
    with pytest.raises(RetryLater):  # and the next one waits its turn again
        later.dispatch.send(send_request("next", to={"customer_id": customer}))


def test_the_pair_rate_counts_whatsapp_only(table: str) -> None:
    customer = DispatchWorld(IN_WINDOW).ana()
    for n in range(PAIR_BURST):
        DispatchWorld(IN_WINDOW).dispatch.send(send_request(f"burst-{n}", to={"customer_id": customer}))
    sms = DispatchWorld(IN_WINDOW)
    result = sms.dispatch.send(send_request("by-sms", to={"customer_id": customer}, channels=["sms"]))
    assert result.sent == {"sms": "SM1"}


def test_a_pair_rate_error_from_meta_is_retried_after_the_interval(world: DispatchWorld) -> None:
    customer = world.ana()
    world.whatsapp.script.append(SendFailed("meta", "retry", 131056, "pair rate limit hit"))
    with pytest.raises(RetryLater) as refused:
        world.dispatch.send(send_request(to={"customer_id": customer}))
    assert refused.value.after == PAIR_INTERVAL
    assert world.dispatch.send(send_request(to={"customer_id": customer})).sent == {"whatsapp": "wamid.2"}
