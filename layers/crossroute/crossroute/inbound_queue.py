"""The inbound FIFO queue: every accepted provider event is stored here before the provider gets a 2xx.

One SQS message body is a JSON object::

    {"schema": "crossroute.inbound/1", "tenant": "demo", "region": "US",
     "received_at": "2026-11-22T10:00:00.123Z",
     "kind": "meta.webhook", "payload": {...}}          # a Meta envelope holding one sender's items
    {"schema": "crossroute.inbound/1", "tenant": "demo", "region": "US", "received_at": "...",
     "kind": "twilio.message" | "twilio.status", "form": "<the raw form body Twilio posted>"}

``region`` is the tenant's default region, for reading national phone formats.

``MessageGroupId`` is the tenant plus a hash of the sender, so one person's events stay in order;
``MessageDeduplicationId`` hashes the content, so a provider's immediate redelivery is dropped by SQS.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from crossroute.webhooks.errors import QueueUnavailable

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SCHEMA = "crossroute.inbound/1"
# SQS's message size limit (bytes); a larger event is split before it gets here.
MAX_MESSAGE_BYTES = 256 * 1024
_BATCH = 10


@dataclass(frozen=True)
class QueuedEvent:
    """One SQS message: its FIFO group, its deduplication id and its JSON body."""

    group_id: str
    dedup_id: str
    body: str

    @classmethod
    def build(
        cls, *, tenant: str, sender: str, kind: str, content: dict[str, Any], region: str = "US"
    ) -> QueuedEvent:
        """Wrap ``content`` (``payload`` or ``form``) for ``tenant``; ids derive from content, not time."""
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        body = json.dumps(
            {
                "schema": SCHEMA,
                "tenant": tenant,
                "region": region,
                "received_at": _now(),
                "kind": kind,
                **content,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return cls(
            group_id=f"{tenant}:{_hash(sender)[:32]}",
            dedup_id=_hash(f"{tenant}\n{kind}\n{canonical}"),
            body=body,
        )

    @property
    def size(self) -> int:
        return len(self.body.encode())


class InboundQueue(Protocol):
    def put(self, events: Sequence[QueuedEvent]) -> None:
        """Store every event durably or raise ``QueueUnavailable``."""


class SqsInboundQueue:
    """``InboundQueue`` on an SQS FIFO queue."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def put(self, events: Sequence[QueuedEvent]) -> None:
        for start in range(0, len(events), _BATCH):
            chunk = events[start : start + _BATCH]
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


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
