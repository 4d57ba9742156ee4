"""The correlation id that follows one webhook request through the inbound queue, ingest and the events
it causes (docs/alarms.md, logs): API Gateway's request id, set by the webhook handler for the request,
written into each queued body (``inbound_queue.QueuedEvent.build``), read back by the parser, and put
into the details of every event ingest publishes for that body."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

MAX_CHARS = 128  # an API Gateway request id is 36; anything longer is not one of ours

_CURRENT: ContextVar[str | None] = ContextVar("crossroute_correlation_id", default=None)


def current() -> str | None:
    return _CURRENT.get()


@contextmanager
def scope(correlation_id: str | None) -> Iterator[None]:
    """``correlation_id`` is current inside the block (None: there is none)."""
    valid = (
        correlation_id if isinstance(correlation_id, str) and 0 < len(correlation_id) <= MAX_CHARS else None
    )
    token = _CURRENT.set(valid)
    try:
        yield
    finally:
        _CURRENT.reset(token)
