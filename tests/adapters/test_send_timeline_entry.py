"""R9 and R10 on the customer's timeline: a send request's decision entry says which number it went out
from (``SendRequestItem.timeline_entry``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from crossroute.store.sends import SendRequestItem, SendState

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DECISION = [
    {"channel": "whatsapp", "qualified": True, "reason": "whatsapp.window_open", "from": "100000000000002"},
    {"channel": "sms", "qualified": True, "reason": "sms.current_phone", "from": "+15550100004"},
]


def entry(decision: list[dict[str, Any]], **sends: str | SendState) -> dict[str, Any]:
    """The timeline entry of a request with ``decision`` whose channels' sends are ``sends`` (a state
    name, or the whole ``SendState``)."""
    states = {c: s if isinstance(s, SendState) else SendState(state=s, at=NOW) for c, s in sends.items()}
    item = SendRequestItem(
        pk="T#demo#R#k1",
        sk="REQUEST",
        tenant="demo",
        idempotency_key="k1",
        request_id="r1",
        request="{}",
        decision=json.dumps(decision),
        created_at=NOW,
        **states,
    )
    return item.timeline_entry()


def test_from_is_the_sender_of_the_channel_that_sent() -> None:
    assert entry(DECISION, whatsapp="sent")["from"] == "100000000000002"
    # WhatsApp failed for good, SMS went out (R7): the SMS number.
    assert entry(DECISION, whatsapp="failed", sms="sent")["from"] == "+15550100004"


def test_the_number_a_send_recorded_wins_over_the_decisions() -> None:
    """A request handled again decides again: the number it then went out from is the one recorded."""
    recorded = SendState(state="sent", at=NOW, sender="100000000000001")
    assert entry(DECISION, whatsapp=recorded)["from"] == "100000000000001"


def test_before_anything_went_out_from_is_the_chosen_channels_and_null_when_none_qualified() -> None:
    assert entry(DECISION, whatsapp="sending")["from"] == "100000000000002"
    refused = [{"channel": "whatsapp", "qualified": False, "reason": "whatsapp.no_address"}]
    assert entry(refused)["from"] is None
    older = [{"channel": "sms", "qualified": True, "reason": "sms.current_phone"}]  # recorded before R10
    assert entry(older, sms="sent")["from"] is None
