"""The correlation id of the work in hand (contract §11, docs/operations.md).

- A webhook request: API Gateway's request id, set by the webhook handler for the request, written
  into each queued body (``inbound_queue.QueuedEvent.build``), read back by the parser, and put into
  the details of every event ingest publishes for that body.
- A send request: its ``request_id``, bound by dispatch once the send's record names it.

Every line the package's loggers write inside a scope carries it (``crossroute.log``)."""

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
    token = _CURRENT.set(_valid(correlation_id))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def bind(correlation_id: str | None) -> None:
    """``correlation_id`` is current until the enclosing ``scope`` ends (the id became known within it:
    a send's request id, read from its record)."""
    _CURRENT.set(_valid(correlation_id))


def _valid(correlation_id: str | None) -> str | None:
    return (
        correlation_id if isinstance(correlation_id, str) and 0 < len(correlation_id) <= MAX_CHARS else None
    )
