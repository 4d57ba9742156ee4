"""The real size limits of the services crossroute stores and publishes to, and how content is fitted.

Every limit that decides whether something accepted can be kept lives here, so the door (the webhooks)
and the stores agree: whatever the webhooks queue fits the queue, and whatever the queue holds fits a
DynamoDB item and an EventBridge entry once stored. Oversized content is trimmed with a visible marker,
never dropped (docs/operations.md, "Size limits").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

# SQS: one message, and one SendMessageBatch request (all its messages together). SQS accepts up to
# 1 MiB since 2026, but only where the queue's MaximumMessageSize says so: template.yaml sets 256 KiB,
# which every message below a DynamoDB item's size fits.
SQS_MESSAGE_BYTES = 256 * 1024
SQS_BATCH_BYTES = 256 * 1024
SQS_BATCH_ENTRIES = 10
SQS_MAX_DELAY_SECONDS = 900  # SendMessage's longest DelaySeconds
# DynamoDB: one item, attribute names and values together.
DYNAMODB_ITEM_BYTES = 400 * 1024
# EventBridge PutEvents: one request, all its entries together (the API reference's figure), 10 entries.
EVENTBRIDGE_REQUEST_BYTES = 256 * 1024
EVENTBRIDGE_ENTRIES = 10
# WhatsApp's own limit on a text body; no genuine message, WhatsApp or SMS, is longer.
MESSAGE_TEXT_CHARS = 4096
# Nesting of a provider's JSON: Meta's deepest payloads (history threads) stay under 16 levels.
JSON_DEPTH = 64
# Provider ids (wamid, Twilio SIDs) are under 100 characters; they become parts of DynamoDB keys.
PROVIDER_ID_CHARS = 256
# Profile names and usernames: WhatsApp keeps them far shorter.
PROFILE_TEXT_CHARS = 256

TRIMMED = "[crossroute: trimmed {} characters]"


def dumps(value: Any) -> str:
    """``value`` as compact JSON (keys sorted, UTF-8 as is): the form crossroute stores, and measures."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def json_bytes(value: Any) -> int:
    """Size of ``value`` as compact UTF-8 JSON (``dumps``)."""
    return len(dumps(value).encode())


def fitted_json(value: Any, max_bytes: int) -> str:
    """``dumps`` of ``value`` fitted to ``max_bytes`` (see ``fitted``), serialised once when it fits."""
    text = dumps(value)
    return text if len(text.encode()) <= max_bytes else dumps(fitted(value, max_bytes))


def too_deep(value: Any, limit: int = JSON_DEPTH) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` levels deep (without recursion)."""
    if not isinstance(value, dict | list):
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def fitted(value: Any, max_bytes: int) -> Any:
    """``value`` if its JSON fits ``max_bytes``; else a copy whose longest strings are cut, each with a
    marker saying how much was cut. If even that cannot fit (a huge number of small fields), a marker
    object with a prefix of the JSON text."""
    if json_bytes(value) <= max_bytes:
        return value
    longest = _longest_string(value)
    low, high = 0, longest  # the largest per-string length that fits, by bisection
    best = None
    while low <= high:
        cap = (low + high) // 2
        candidate = _cut_strings(value, cap)
        if json_bytes(candidate) <= max_bytes:
            best, low = candidate, cap + 1
        else:
            high = cap - 1
    if best is not None:
        return best
    text = dumps(value)
    keep = max(0, max_bytes // 4 - 200)  # 4 bytes per character at most, room for the marker
    return {"crossroute_trimmed": TRIMMED.format(len(text) - keep), "json_prefix": text[:keep]}


def packed(items: Iterable[T], size: Callable[[T], int], *, count: int, max_bytes: int) -> list[list[T]]:
    """``items`` in order, in batches of at most ``count`` items and ``max_bytes`` of ``size`` each (an
    API's batch limits: SendMessageBatch, PutEvents)."""
    batches: list[list[T]] = []
    total = 0
    for item in items:
        bytes_ = size(item)
        if not batches or len(batches[-1]) == count or total + bytes_ > max_bytes:
            batches.append([])
            total = 0
        batches[-1].append(item)
        total += bytes_
    return batches


def cut_text(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters plus a marker, if it is longer."""
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + TRIMMED.format(len(text) - max_chars)


def cut_to_bytes(text: str, max_bytes: int) -> str:
    """``text`` cut so that it, with its marker, takes at most ``max_bytes`` of UTF-8."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    kept = data[: max(0, max_bytes - 64)].decode("utf-8", "ignore")  # never half a character
    return kept + TRIMMED.format(len(text) - len(kept))


def _cut_strings(value: Any, cap: int) -> Any:
    if isinstance(value, str):
        return cut_text(value, cap)
    if isinstance(value, dict):
        return {cut_text(str(k), cap): _cut_strings(v, cap) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cut_strings(v, cap) for v in value]
    return value


def _longest_string(value: Any) -> int:
    longest, stack = 0, [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            longest = max(longest, len(node))
        elif isinstance(node, dict):
            longest = max([longest, *(len(str(k)) for k in node)])
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return longest
