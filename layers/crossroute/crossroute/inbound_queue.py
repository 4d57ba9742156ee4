"""The inbound FIFO queue: every accepted provider event is stored here before the provider gets a 2xx.

One SQS message body is a JSON object::

    {"schema": "crossroute.inbound/1", "tenant": "demo", "region": "US",
     "received_at": "2026-11-22T10:00:00.123Z",
     "kind": "meta.webhook", "payload": {...}}          # a Meta envelope holding one sender's items
    {"schema": "crossroute.inbound/1", "tenant": "demo", "region": "US", "received_at": "...",
     "kind": "twilio.message" | "twilio.status", "form": "<the raw form body Twilio posted>"}

``region`` is the tenant's default region, for reading national phone formats. ``correlation_id`` (when
the webhook had one: API Gateway's request id) follows the event into ingest's logs and events.
``opt_in_keywords`` (when the tenant lists some: the registry's ``whatsapp_opt_in_keywords``) are the texts
that record a customer's WhatsApp opt-in (R15): ingest has no registry of its own.

``MessageGroupId`` is the tenant plus a keyed hash of the sender (``group_id``), so one person's events
stay in order; ``MessageDeduplicationId`` hashes the content, so a provider's immediate redelivery is
dropped by SQS.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from crossroute import correlation, ids, limits, privacy

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from mypy_boto3_sqs import SQSClient

SCHEMA = "crossroute.inbound/1"
# The queue's message size limit (bytes); a larger event is split or trimmed before it gets here.
MAX_MESSAGE_BYTES = limits.SQS_MESSAGE_BYTES
# SendMessageBatch requests in flight at once for one webhook POST with many senders.
PARALLEL_BATCHES = 16


class QueueUnavailable(Exception):
    """The queue did not take the events: nothing was stored, so the provider must not get a 2xx."""


@dataclass(frozen=True)
class QueuedEvent:
    """One SQS message: its FIFO group, its deduplication id and its JSON body."""

    group_id: str
    dedup_id: str
    body: str

    @classmethod
    def build(
        cls,
        *,
        tenant: str,
        sender: str,
        kind: str,
        content: dict[str, Any],
        region: str = "US",
        opt_in_keywords: Sequence[str] = (),
    ) -> QueuedEvent:
        """Wrap ``content`` (``payload`` or ``form``) for ``tenant``; ids derive from content, not time."""
        correlation_id = correlation.current()
        keywords = {"opt_in_keywords": list(opt_in_keywords)} if opt_in_keywords else {}
        body = json.dumps(
            {
                "schema": SCHEMA,
                "tenant": tenant,
                "region": region,
                "received_at": _now(),
                "kind": kind,
                **({"correlation_id": correlation_id} if correlation_id else {}),
                **keywords,
                **content,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return cls(
            group_id=group_id(tenant, sender),
            dedup_id=ids.content_digest([tenant, kind, content], 64),
            body=body,
        )

    @property
    def size(self) -> int:
        return len(self.body.encode())


def group_id(tenant: str, sender: str) -> str:
    """``<tenant>:<HMAC of the sender under the stack's masking key>``: group ids are visible where the
    body is not (CloudTrail's SQS data events log them, the body hidden), and a bare hash of a phone
    number is reversed by enumerating numbers. The key is read once per container, on the first event
    (``privacy.configure``); if it cannot be read, nothing is queued (the provider gets a 503 and retries)."""
    try:
        return f"{tenant}:{privacy.stable_tag('inbound-group', sender)}"
    except privacy.KeyUnavailable as exc:
        raise QueueUnavailable(f"masking key unavailable: {exc}") from exc


class InboundQueue(Protocol):
    def put(self, events: Sequence[QueuedEvent]) -> None:
        """Store every event durably or raise ``QueueUnavailable``."""


class SqsInboundQueue:
    """``InboundQueue`` on an SQS FIFO queue."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def put(self, events: Sequence[QueuedEvent]) -> None:
        """Send in batches that fit SendMessageBatch (10 messages, 256 KiB), several lanes at once.

        A FIFO group's events all go through one lane, in order: a sender split into several parts keeps
        them in order; different senders need no order between them.
        """
        work = lanes(events, PARALLEL_BATCHES)
        if len(work) == 1:
            self._send_lane(work[0])
            return
        for _ in _pool().map(self._send_lane, work):  # re-raises the first failure
            pass

    def _send_lane(self, batches: list[list[QueuedEvent]]) -> None:
        for batch in batches:
            self._send(batch)

    def _send(self, chunk: Sequence[QueuedEvent]) -> None:
        entries = [
            {
                "Id": str(i),
                "MessageBody": e.body,
                "MessageGroupId": e.group_id,
                "MessageDeduplicationId": e.dedup_id,
            }
            for i, e in enumerate(chunk)
        ]
        try:
            answer = self._client.send_message_batch(QueueUrl=self._url, Entries=entries)  # type: ignore[arg-type]
        except Exception as exc:  # botocore raises many types; all mean "not stored"
            raise QueueUnavailable(f"SQS SendMessageBatch failed: {type(exc).__name__}") from exc
        failed = answer.get("Failed", [])
        if failed:
            codes = sorted({f.get("Code", "?") for f in failed})
            raise QueueUnavailable(f"SQS refused {len(failed)} of {len(chunk)} messages: {codes}")


def lanes(events: Sequence[QueuedEvent], count: int) -> list[list[list[QueuedEvent]]]:
    """``events`` dealt into at most ``count`` lanes of batches, each FIFO group whole in one lane."""
    lane_of: dict[str, int] = {}
    dealt: list[list[QueuedEvent]] = [[] for _ in range(count)]
    for event in events:
        dealt[lane_of.setdefault(event.group_id, len(lane_of) % count)].append(event)
    return [batched(lane) for lane in dealt if lane]


def batched(events: Sequence[QueuedEvent]) -> list[list[QueuedEvent]]:
    """``events`` in order, in batches of at most 10 messages and 256 KiB of bodies each."""
    return limits.packed(
        events, lambda e: e.size, count=limits.SQS_BATCH_ENTRIES, max_bytes=limits.SQS_BATCH_BYTES
    )


@cache
def _pool() -> ThreadPoolExecutor:
    """Made on the first POST with more than one lane: most never need it (nor its import at cold start)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=PARALLEL_BATCHES, thread_name_prefix="sqs-batch")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SqsDeadLetters:
    """``DeadLetters`` on the inbound queue's FIFO DLQ: what SQS's redrive would do, done one receive
    early by the consumer, so that the sender's later records held in the same batch can proceed."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def park(self, body: str, *, group_id: str, message_id: str, reason: str) -> None:
        self._client.send_message(
            QueueUrl=self._url,
            MessageBody=body,
            MessageGroupId=group_id,
            MessageDeduplicationId=message_id,
            MessageAttributes={"crossroute_failure": {"DataType": "String", "StringValue": reason}},
        )
