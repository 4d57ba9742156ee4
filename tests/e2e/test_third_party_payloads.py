"""Other projects' real webhook payloads (tests/fixtures/third_party: 201 Meta, 49 Twilio, sources and
licences beside them), each signed and posted to the local stack for the local tenant.

Every 2xx is a promise kept: nothing is answered 5xx, nothing ends in a DLQ, and the sender of every
message the stack accepted can be looked up with GET /contacts.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from crossroute import ids
from infra.local import StackClient
from tests.support import (
    as_local_meta,
    as_local_twilio,
    contact,
    post_meta,
    post_twilio,
    third_party_meta,
    third_party_twilio,
)

pytestmark = pytest.mark.e2e


Sender = tuple[str, str]  # ("bsuid" | "phone", the value as the store keeps it)


def senders_of_meta(doc: Any) -> list[tuple[str, Sender]]:
    """(message id, sender) of each live message in a Meta envelope with a usable id and sender."""
    found = []
    entries = doc.get("entry") if isinstance(doc, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict) or change.get("field") != "messages":
                continue
            value = change.get("value")
            messages = value.get("messages") if isinstance(value, dict) else None
            for message in messages if isinstance(messages, list) else []:
                if not isinstance(message, dict) or message.get("type") == "system":
                    continue
                if not isinstance(message.get("id"), str | int) or not str(message.get("id")):
                    continue
                key = _key(("bsuid", message.get("from_user_id")), ("wa_id", message.get("from")))
                if key:
                    found.append((f"meta:{message['id']}", key))
    return found


def sender_of_twilio(params: list[tuple[str, str]]) -> tuple[str, Sender | None]:
    form = dict(params)
    sid = next((form[n] for n in ("MessageSid", "SmsMessageSid", "SmsSid") if form.get(n)), "")
    return f"twilio:{sid}", None if not sid else _key(
        ("bsuid", form.get("ExternalUserId")),
        ("bsuid", form.get("From")),
        ("phone", form.get("WaId")),
        ("phone", form.get("From")),
    )


def _key(*candidates: tuple[str, Any]) -> Sender | None:
    """The first candidate crossroute accepts as an identifier, normalised as the store keeps it."""
    for kind, value in candidates:
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
            continue
        try:
            if kind == "bsuid":
                return ("bsuid", ids.bsuid(str(value)))
            if kind == "wa_id":
                return ("phone", ids.e164_from_wa_id(str(value)))
            return ("phone", ids.e164(str(value)))
        except ValueError:
            continue
    return None


def drained(stack: StackClient, timeout: float = 90.0) -> None:
    """Wait until the consumer has taken every event off the inbound queue."""
    sqs, url = stack.client("sqs"), stack.inbound_queue_url
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.monotonic() + timeout
    while True:
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        if all(counts[n] == "0" for n in names) or time.monotonic() > deadline:
            assert all(counts[n] == "0" for n in names), counts
            return
        time.sleep(0.5)


def dead_lettered(stack: StackClient) -> int:
    sqs = stack.client("sqs")
    url = stack.dead_letter_queue_url
    return int(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )


def test_every_third_party_payload_is_stored_or_refused_at_the_door(local_stack: StackClient) -> None:
    stack = local_stack
    drained(stack)  # what earlier tests queued is consumed: any dead letter from now on is ours
    dead_before = dead_lettered(stack)
    meta, twilio = third_party_meta(), third_party_twilio()
    assert len(meta) >= 150 and len(twilio) >= 30
    answers: dict[str, int] = {}
    # The sender of the first accepted message with each provider message id: the sources reuse ids
    # (e.g. "SMxx") for different senders, and a message id is stored once, for its first sender.
    expected: dict[str, tuple[Sender, str]] = {}
    for name, payload in meta:
        doc = as_local_meta(payload)
        status = post_meta(stack, json.dumps(doc).encode()).status
        answers[name] = status
        if 200 <= status < 300:
            for message_id, sender in senders_of_meta(doc):
                expected.setdefault(message_id, (sender, name))
    for name, kind, params in twilio:
        path, form = as_local_twilio(kind, params)
        status = post_twilio(stack, form, path).status
        answers[name] = status
        message_id, twilio_sender = sender_of_twilio(params) if kind == "message" else ("", None)
        if 200 <= status < 300 and twilio_sender:
            expected.setdefault(message_id, (twilio_sender, name))

    refused = {n: s for n, s in answers.items() if s >= 300}
    print(f"third-party payloads: {len(answers)} posted, {len(refused)} refused at the door: {refused}")
    assert {n: s for n, s in answers.items() if s >= 500} == {}
    accepted = [n for n, s in answers.items() if 200 <= s < 300]
    assert len(accepted) >= 200, {n: s for n, s in answers.items() if s >= 300}
    drained(stack)
    assert dead_lettered(stack) == dead_before
    assert len({sender for sender, _ in expected.values()}) >= 15  # the sources reuse test numbers
    missing = {name: kind for (kind, value), name in expected.values() if not contact(stack, **{kind: value})}
    assert missing == {}, "senders not found by GET /contacts"
