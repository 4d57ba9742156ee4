"""Content is fitted to the real size limits with a visible marker, never dropped; batches fit their APIs."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute import limits
from crossroute.bus import BusEvent, requests
from crossroute.inbound_queue import QueuedEvent, batched, lanes

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.integers(min_value=300, max_value=5000))
def test_a_fitted_value_fits_and_one_that_fits_is_unchanged(value: Any, budget: int) -> None:
    fitted = limits.fitted(value, budget)
    assert limits.json_bytes(fitted) <= budget
    if limits.json_bytes(value) <= budget:
        assert fitted == value


def test_the_longest_strings_are_cut_with_a_marker_and_the_rest_kept() -> None:
    value = {"id": "wamid.1", "text": {"body": "x" * 200_000}, "type": "text"}
    fitted = limits.fitted(value, 10_000)
    assert fitted["id"] == "wamid.1" and fitted["type"] == "text"
    body = fitted["text"]["body"]
    assert body.startswith("xxx") and body.endswith("characters]") and "[crossroute: trimmed" in body
    assert limits.json_bytes(fitted) <= 10_000


def test_a_structure_too_big_even_with_empty_strings_becomes_a_marked_prefix() -> None:
    value = [[i] for i in range(5000)]
    fitted = limits.fitted(value, 2000)
    assert limits.json_bytes(fitted) <= 2000
    assert "crossroute_trimmed" in fitted and fitted["json_prefix"].startswith("[[0],[1]")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000), st.integers(min_value=64, max_value=3000))
def test_a_text_cut_to_bytes_fits_and_keeps_a_prefix(text: str, budget: int) -> None:
    cut = limits.cut_to_bytes(text, budget)
    assert len(cut.encode()) <= budget
    if len(text.encode()) <= budget:
        assert cut == text
    else:
        kept = cut[: cut.index("[crossroute: trimmed")]
        assert text.startswith(kept)


def test_nesting_depth_is_measured_without_recursion() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert limits.too_deep(deep)
    assert not limits.too_deep({"a": [{"b": [1, 2, {"c": "d"}]}]})
    assert not limits.too_deep(None) and not limits.too_deep("text")
    assert limits.too_deep(json.loads("[" * 65 + "]" * 65))
    assert not limits.too_deep(json.loads("[" * 64 + "]" * 64))


def _event(group: str, size: int, n: int = 0) -> QueuedEvent:
    return QueuedEvent(group_id=group, dedup_id=f"{group}-{n}", body="x" * size)


def test_queue_batches_hold_at_most_ten_messages_and_256_kib() -> None:
    events = [_event(f"g{i}", 60_000, i) for i in range(12)] + [_event(f"s{i}", 10, i) for i in range(25)]
    batches = batched(events)
    assert [e for b in batches for e in b] == events
    assert all(len(b) <= 10 and sum(e.size for e in b) <= 256 * 1024 for b in batches)


def test_lanes_keep_each_fifo_group_whole_and_in_order() -> None:
    events = [_event(f"g{i % 40}", 100, i) for i in range(200)]
    work = lanes(events, 16)
    assert len(work) == 16
    for lane in work:
        sent = [e for batch in lane for e in batch]
        for group in {e.group_id for e in sent}:
            assert [e for e in sent if e.group_id == group] == [e for e in events if e.group_id == group]
    groups_per_lane = [{e.group_id for b in lane for e in b} for lane in work]
    assert sum(len(g) for g in groups_per_lane) == 40  # no group in two lanes


def test_putevents_requests_hold_at_most_ten_entries_and_256_kb() -> None:
    events = [BusEvent("MessageReceived", {"text": "y" * 60_000, "n": i}) for i in range(9)]
    events += [BusEvent("IdentityChanged", {"n": i}) for i in range(15)]
    chunks = requests([e.entry("bus") for e in events])
    assert sum(len(c) for c in chunks) == 24
    for chunk in chunks:
        assert len(chunk) <= 10
        assert (
            sum(14 + len((e["Source"] + e["DetailType"] + e["Detail"]).encode()) for e in chunk) <= 256 * 1024
        )


def test_an_event_detail_over_the_entry_limit_is_trimmed_not_refused() -> None:
    entry = BusEvent("MessageReceived", {"message_id": "wamid.1", "text": "z" * 400_000}).entry("bus")
    detail = json.loads(entry["Detail"])
    assert detail["message_id"] == "wamid.1" and "[crossroute: trimmed" in detail["text"]
    assert len(entry["Detail"].encode()) <= 256 * 1024


def test_a_non_ascii_detail_over_the_entry_limit_fits_too() -> None:
    entry = BusEvent("MessageReceived", {"text": "€" * 200_000}).entry("bus")
    assert len(entry["Detail"].encode()) <= 256 * 1024
