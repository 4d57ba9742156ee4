"""The queue ports: ``InboundQueue`` (``crossroute.inbound_queue``), ``DeadLetters`` and ``SendQueue``
(``crossroute.ports``), as recorders of what was put on them, failures injectable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crossroute.inbound_queue import QueuedEvent, QueueUnavailable


class RecordingInboundQueue:
    """Keeps every event put on it, in order; ``fail_next`` puts raise ``QueueUnavailable`` first (keeping
    nothing), as ``SqsInboundQueue`` does when SQS does not take them."""

    def __init__(self, *, fail_next: int = 0) -> None:
        self.events: list[QueuedEvent] = []
        self.puts: list[list[QueuedEvent]] = []  # one per put that succeeded
        self.fail_next = fail_next

    def put(self, events: Sequence[QueuedEvent]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise QueueUnavailable("injected: SendMessageBatch failed")
        self.puts.append(list(events))
        self.events.extend(events)


@dataclass(frozen=True)
class Parked:
    body: str
    group_id: str
    message_id: str
    reason: str


class RecordingDeadLetters:
    """Keeps every record parked on it, in order; ``fail_next`` parks raise first (keeping nothing)."""

    def __init__(self, *, fail_next: int = 0) -> None:
        self.parked: list[Parked] = []
        self.fail_next = fail_next

    def park(self, body: str, *, group_id: str, message_id: str, reason: str) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("injected: SendMessage to the dead-letter queue failed")
        self.parked.append(Parked(body, group_id, message_id, reason))


@dataclass(frozen=True)
class Enqueued:
    body: str
    delay: int


class RecordingSendQueue:
    """Keeps every message put on it and every visibility change; ``fail_next`` enqueues raise first."""

    def __init__(self, *, fail_next: int = 0) -> None:
        self.messages: list[Enqueued] = []
        self.retries: list[tuple[str, int]] = []  # (receipt handle, delay)
        self.fail_next = fail_next

    def enqueue(self, body: str, *, delay: int = 0) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("injected: SendMessage to the send queue failed")
        self.messages.append(Enqueued(body, min(delay, 900)))

    def retry_later(self, receipt_handle: str, delay: int) -> None:
        self.retries.append((receipt_handle, delay))
