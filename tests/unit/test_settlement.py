"""A settlement survives the trip through the send queue (a follow-up) with what recording it needs."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from crossroute.channels import Outbound, Sent, Template
from crossroute.routing.pacing import Pair, PairPace
from crossroute.routing.settlement import Claim, Settlement

AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
CLAIM = Claim("demo", "order-42-shipped", "whatsapp", "attempt-1")


def trip(settlement: Settlement) -> Settlement:
    return Settlement.from_doc(json.loads(json.dumps(settlement.as_doc())))


def test_released_and_failed_settlements_come_back_whole() -> None:
    for settlement in (
        Settlement.released(CLAIM, AT),
        Settlement.failed(CLAIM, AT, "fallback", 131026),
        Settlement.failed(replace(CLAIM, channel="sms"), AT, "unknown", None),
    ):
        assert trip(settlement) == settlement
    assert Settlement.failed(CLAIM, AT, "unknown", None).result == "unknown"


def test_a_sent_settlement_keeps_the_timeline_record_and_the_pair_pace_but_not_the_address() -> None:
    outbound = Outbound(
        "whatsapp",
        "100000000000001",
        to="+5511987654321",
        template=Template("order_shipped", "en_US", "utility", [{"type": "body"}]),
    )
    pair = Pair.of("demo", "100000000000001", customer_id="c-1", address=None)
    settlement = Settlement.delivered(
        CLAIM,
        AT,
        Sent("meta", "wamid.1"),
        "whatsapp.template",
        outbound,
        "c-1",
        (pair, PairPace(0.0, add=6.0)),
    )
    back = trip(settlement)
    assert "5511987654321" not in json.dumps(settlement.as_doc())
    assert (back.claim, back.result, back.at, back.sent, back.reason) == (
        CLAIM,
        "sent",
        AT,
        Sent("meta", "wamid.1"),
        "whatsapp.template",
    )
    assert back.outbound and back.outbound.business == "100000000000001" and back.outbound.to is None
    assert back.outbound.template and back.outbound.template.name == "order_shipped"
    assert (back.customer_id, back.pair, back.pace) == ("c-1", pair, PairPace(0.0, add=6.0))
