"""Meta webhooks become one queued event per (change, sender), with nothing dropped."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute import inbound_queue
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta
from crossroute.webhooks.errors import (
    BadSignature,
    MalformedRequest,
    PayloadTooLarge,
    UnknownChannel,
    UnsupportedMediaType,
)
from tests.fakes import RecordingInboundQueue
from tests.support import (
    APP_SECRET,
    LOCAL_TENANT,
    fixture_bytes,
    fixture_json,
    meta_from_senders,
    meta_signature,
    registry_document,
)

REGISTRY = TenantRegistry.from_json(registry_document())
JSON = "application/json"


def _accept(raw: bytes, *, signature: str | None = None, content_type: str = JSON) -> RecordingInboundQueue:
    queue = RecordingInboundQueue()
    sig = meta_signature(raw) if signature is None else signature
    meta.accept(REGISTRY, queue, raw=raw, content_type=content_type, signature=sig)
    return queue


def _payloads(queue: RecordingInboundQueue) -> list[dict[str, Any]]:
    return [json.loads(e.body) for e in queue.events]


def _items(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [i for e in body["payload"]["entry"] for c in e["changes"] for i in c["value"].get(key, [])]


def test_a_single_text_message_is_queued_with_every_field_intact() -> None:
    raw = fixture_bytes("meta_text_phone_and_bsuid.json")
    (body,) = _payloads(_accept(raw))
    assert body["schema"] == "crossroute.inbound/1"
    assert body["tenant"] == "demo" and body["kind"] == "meta.webhook"
    assert body["payload"] == fixture_json("meta_text_phone_and_bsuid.json")


def test_a_batch_is_split_per_sender_and_statuses_are_kept() -> None:
    queue = _accept(fixture_bytes("meta_batch_messages_and_status.json"))
    bodies = _payloads(queue)
    # Two messages from one sender stay together, in order; the status change is its own event.
    assert [[m["id"] for m in _items(b, "messages")] for b in bodies] == [
        ["wamid.BATCH0001", "wamid.BATCH0002"],
        [],
    ]
    assert [s["id"] for s in _items(bodies[1], "statuses")] == ["wamid.OUT0001"]
    # The same person: the same FIFO group, which names the tenant but not the person.
    assert queue.events[0].group_id == queue.events[1].group_id
    assert queue.events[0].group_id.startswith("demo:")
    assert "IN.1648738043044942" not in queue.events[0].group_id


def test_messages_from_two_senders_in_one_change_go_to_two_groups() -> None:
    doc = fixture_json("meta_batch_messages_and_status.json")
    second = dict(doc["entry"][0]["changes"][0]["value"]["messages"][1], from_user_id="IN.999", id="wamid.X")
    doc["entry"][0]["changes"][0]["value"]["messages"][1] = second
    queue = _accept(json.dumps(doc).encode())
    groups = [e.group_id for e in queue.events]
    assert len(queue.events) == 3 and len(set(groups[:2])) == 2
    firsts = [[m["id"] for m in _items(json.loads(e.body), "messages")] for e in queue.events[:2]]
    assert firsts == [["wamid.BATCH0001"], ["wamid.X"]]


def test_unknown_fields_and_fields_survive_queueing() -> None:
    doc = fixture_json("meta_text_bsuid_only.json")
    doc["entry"][0]["changes"][0]["value"]["brand_new_list"] = [
        {"from_user_id": "DE.88201937465502911", "x": 1}
    ]
    doc["entry"][0]["changes"][0]["value"]["future_flag"] = {"nested": True}
    doc["entry"][0]["changes"][0]["field"] = "some_future_field"
    (body,) = _payloads(_accept(json.dumps(doc).encode()))
    assert body["payload"] == doc


def test_redelivery_gets_the_same_deduplication_id_and_group() -> None:
    raw = fixture_bytes("meta_status_failed_131026.json")
    first, again = _accept(raw).events[0], _accept(raw).events[0]
    assert (first.dedup_id, first.group_id) == (again.dedup_id, again.group_id)
    other = _accept(fixture_bytes("meta_status_delivered_bsuid.json")).events[0]
    assert other.dedup_id != first.dedup_id


def test_account_level_change_without_phone_number_id_resolves_by_waba() -> None:
    doc = {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "100000000000000", "changes": [{"field": "account_update", "value": {"event": "X"}}]}
        ],
    }
    (body,) = _payloads(_accept(json.dumps(doc).encode()))
    assert body["tenant"] == "demo" and body["payload"] == doc


def test_unknown_phone_number_id_refuses_the_whole_post() -> None:
    doc = fixture_json("meta_batch_messages_and_status.json")
    doc["entry"][0]["changes"][1]["value"]["metadata"]["phone_number_id"] = "999"
    queue = RecordingInboundQueue()
    raw = json.dumps(doc).encode()
    with pytest.raises(UnknownChannel):
        meta.accept(REGISTRY, queue, raw=raw, content_type=JSON, signature=meta_signature(raw))
    assert queue.events == []


def test_a_number_of_another_app_is_unknown_under_this_apps_signature() -> None:
    other = {
        "meta": {
            "app_secret": "other-app",
            "verify_token": "t",
            "phone_numbers": [{"phone_number_id": "200000000000001"}],
        }
    }
    registry = TenantRegistry.from_json(registry_document(demo=LOCAL_TENANT, other=other))
    doc = fixture_json("meta_text_bsuid_only.json")
    doc["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "200000000000001"
    raw = json.dumps(doc).encode()
    with pytest.raises(UnknownChannel):
        meta.accept(
            registry,
            RecordingInboundQueue(),
            raw=raw,
            content_type=JSON,
            signature=meta_signature(raw, APP_SECRET),
        )


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", MalformedRequest),
        (b"{not json", MalformedRequest),
        (b"\xff\xfe{}", MalformedRequest),
        (b"[]", MalformedRequest),
        (b'{"object": "page", "entry": [{"changes": []}]}', MalformedRequest),
        (b'{"object": "whatsapp_business_account", "entry": []}', MalformedRequest),
        (b'{"object": "whatsapp_business_account", "entry": [{"changes": [1]}]}', MalformedRequest),
        (b'{"object": "whatsapp_business_account", "entry": ["x"]}', MalformedRequest),
    ],
    ids=["empty", "not-json", "not-utf8", "array", "other-object", "no-entries", "bad-change", "bad-entry"],
)
def test_malformed_bodies_are_refused_and_nothing_is_queued(raw: bytes, error: type[Exception]) -> None:
    queue = RecordingInboundQueue()
    with pytest.raises(error):
        meta.accept(REGISTRY, queue, raw=raw, content_type=JSON, signature=meta_signature(raw))
    assert queue.events == []


def test_the_signature_is_checked_before_the_body_is_read() -> None:
    with pytest.raises(BadSignature):
        _accept(b"{not json", signature="sha256=00")


def test_wrong_content_type_and_oversized_bodies_are_refused() -> None:
    raw = fixture_bytes("meta_text_bsuid_only.json")
    with pytest.raises(UnsupportedMediaType):
        _accept(raw, content_type="application/x-www-form-urlencoded")
    assert _accept(raw, content_type="application/json; charset=utf-8").events
    huge = b" " * (meta.MAX_BODY_BYTES + 1)
    with pytest.raises(PayloadTooLarge):
        _accept(huge)


def test_an_event_over_the_sqs_limit_is_split_into_parts_that_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meta, "MAX_MESSAGE_BYTES", 3000)
    doc = fixture_json("meta_batch_messages_and_status.json")
    value = doc["entry"][0]["changes"][0]["value"]
    value["messages"] = [
        dict(value["messages"][0], id=f"wamid.{i}", text={"body": "x" * 300}) for i in range(12)
    ]
    doc["entry"][0]["changes"] = doc["entry"][0]["changes"][:1]
    queue = _accept(json.dumps(doc).encode())
    assert len(queue.events) > 1 and all(e.size <= 3000 for e in queue.events)
    ids = [m["id"] for b in _payloads(queue) for m in _items(b, "messages")]
    assert ids == [f"wamid.{i}" for i in range(12)]
    assert len({e.group_id for e in queue.events}) == 1
    assert inbound_queue.MAX_MESSAGE_BYTES == 256 * 1024


_ids = st.text("ABCDEFGHIJ0123456789", min_size=1, max_size=6)
_item = st.fixed_dictionaries(
    {"id": _ids, "from_user_id": st.sampled_from(["US.1", "US.2", "BR.3"]), "timestamp": st.just("1")}
)
_status = st.fixed_dictionaries(
    {
        "id": _ids,
        "status": st.sampled_from(["sent", "read"]),
        "recipient_id": st.sampled_from(["1650", "4915"]),
    }
)


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(_item, max_size=8), statuses=st.lists(_status, max_size=5))
def test_splitting_keeps_every_item_exactly_once_and_each_sender_in_order(
    messages: list[dict[str, str]], statuses: list[dict[str, str]]
) -> None:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": "100000000000001"},
    }
    value |= {"messages": messages} if messages else {}
    value |= {"statuses": statuses} if statuses else {}
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    bodies = _payloads(_accept(json.dumps(doc).encode()))
    got_messages = [m for b in bodies for m in _items(b, "messages")]
    got_statuses = [s for b in bodies for s in _items(b, "statuses")]
    assert sorted(map(json.dumps, got_messages)) == sorted(map(json.dumps, messages))
    assert sorted(map(json.dumps, got_statuses)) == sorted(map(json.dumps, statuses))
    for sender in {m["from_user_id"] for m in messages}:
        assert [m for m in got_messages if m["from_user_id"] == sender] == [
            m for m in messages if m["from_user_id"] == sender
        ]


def _history(threads: int, messages: int) -> dict[str, Any]:
    chats = [
        {
            "id": f"1650555{t:04d}",
            "context": {"wa_id": f"1650555{t:04d}", "user_id": f"US.{t}"},
            "messages": [
                {
                    "from": f"1650555{t:04d}",
                    "id": f"wamid.H{t}.{m}",
                    "timestamp": "1",
                    "type": "text",
                    "text": {"body": "x" * 200},
                }
                for m in range(messages)
            ],
        }
        for t in range(threads)
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": "100000000000001"},
        "history": [{"metadata": {"phase": 0, "chunk_order": 1, "progress": 100}, "threads": chats}],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "history", "value": value}]}],
    }


def _history_messages(queue: RecordingInboundQueue) -> list[str]:
    return [
        m["id"]
        for body in _payloads(queue)
        for h in body["payload"]["entry"][0]["changes"][0]["value"]["history"]
        for t in h["threads"]
        for m in t["messages"]
    ]


def test_a_history_chunk_is_queued_one_chat_per_event() -> None:
    queue = _accept(json.dumps(_history(threads=3, messages=2)).encode())
    assert len(queue.events) == 3 and len({e.group_id for e in queue.events}) == 3
    assert _history_messages(queue) == [f"wamid.H{t}.{m}" for t in range(3) for m in range(2)]


def test_one_long_chat_in_a_history_chunk_is_split_to_fit_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meta, "MAX_MESSAGE_BYTES", 4000)
    queue = _accept(json.dumps(_history(threads=1, messages=40)).encode())
    assert len(queue.events) > 1 and all(e.size <= 4000 for e in queue.events)
    assert _history_messages(queue) == [f"wamid.H0.{m}" for m in range(40)]
    assert len({e.group_id for e in queue.events}) == 1


# --- what is queued can always be stored; hostile shapes are refused at the door -----------------------


def _change_without_number(doc: dict[str, Any]) -> dict[str, Any]:
    del doc["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"]
    return doc


def test_a_message_without_phone_number_id_gets_the_wabas_only_number() -> None:
    doc = _change_without_number(fixture_json("meta_text_bsuid_only.json"))
    (body,) = _payloads(_accept(json.dumps(doc).encode()))
    assert body["business"] == "100000000000001" and body["payload"] == doc


def test_a_message_without_phone_number_id_of_a_waba_with_two_numbers_names_no_business() -> None:
    two = json.loads(json.dumps(LOCAL_TENANT))
    two["meta"]["phone_numbers"].append({"phone_number_id": "100000000000009"})
    registry = TenantRegistry.from_json(registry_document(demo=two))
    raw = json.dumps(_change_without_number(fixture_json("meta_text_bsuid_only.json"))).encode()
    queue = RecordingInboundQueue()
    meta.accept(registry, queue, raw=raw, content_type=JSON, signature=meta_signature(raw))
    (body,) = _payloads(queue)
    assert "business" not in body and body["tenant"] == "demo"


@pytest.mark.parametrize("depth", [65, 5_000, 200_000])
def test_json_nested_too_deep_is_malformed_not_a_crash(depth: int) -> None:
    inner = "[" * depth + "]" * depth
    raw = (
        '{"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", '
        f'"value": {{"metadata": {{"phone_number_id": "100000000000001"}}, "deep": {inner}}}}}]}}]}}'
    ).encode()
    queue = RecordingInboundQueue()
    with pytest.raises(MalformedRequest, match="nested deeper"):
        meta.accept(REGISTRY, queue, raw=raw, content_type=JSON, signature=meta_signature(raw))
    assert queue.events == []


def test_one_item_too_large_for_the_queue_is_trimmed_with_a_marker_not_refused() -> None:
    doc = fixture_json("meta_text_phone_and_bsuid.json")
    message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    message["text"]["body"] = "a" * 400_000
    (event,) = _accept(json.dumps(doc).encode()).events
    assert event.size <= inbound_queue.MAX_MESSAGE_BYTES
    (queued,) = _items(json.loads(event.body), "messages")
    assert queued["id"] == message["id"] and queued["from"] == message["from"]
    assert queued["text"]["body"].startswith("aaaa") and "[crossroute: trimmed" in queued["text"]["body"]


def test_a_200_kb_text_fits_the_queue_whole() -> None:
    doc = fixture_json("meta_text_phone_and_bsuid.json")
    doc["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "b" * 200_000
    (body,) = _payloads(_accept(json.dumps(doc).encode()))
    assert _items(body, "messages")[0]["text"]["body"] == "b" * 200_000


def test_each_sender_keeps_only_its_own_contact_entry() -> None:
    bodies = _payloads(_accept(json.dumps(meta_from_senders(3)).encode()))
    assert len(bodies) == 3
    for body in bodies:
        value = body["payload"]["entry"][0]["changes"][0]["value"]
        (message,) = value["messages"]
        assert [c["wa_id"] for c in value["contacts"]] == [message["from"]]


def test_a_post_fanning_out_beyond_the_cap_is_refused_whole() -> None:
    queue = RecordingInboundQueue()
    raw = json.dumps(meta_from_senders(meta.MAX_QUEUED_EVENTS + 1)).encode()
    with pytest.raises(PayloadTooLarge, match="events in one POST"):
        meta.accept(REGISTRY, queue, raw=raw, content_type=JSON, signature=meta_signature(raw))
    assert queue.events == []
    assert (
        len(_accept(json.dumps(meta_from_senders(meta.MAX_QUEUED_EVENTS)).encode()).events)
        == meta.MAX_QUEUED_EVENTS
    )


@pytest.mark.parametrize("challenge", ["", "x" * 257, "<script>alert(1)</script>", "a b", "é"])
def test_the_handshake_echoes_only_a_plain_token(challenge: str) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "local-verify-token", "hub.challenge": challenge}
    with pytest.raises(MalformedRequest):
        meta.handshake(REGISTRY, params)


def test_the_handshake_echoes_metas_numeric_challenge() -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": "local-verify-token",
        "hub.challenge": "1158201444",
    }
    assert meta.handshake(REGISTRY, params) == "1158201444"
