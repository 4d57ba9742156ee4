"""Pacing sends per business number (Meta: 80 messages/s by default, 20/s for coexistence numbers).

Each dispatch container takes an equal share of a number's rate: the number's limit divided by the
send queue's ``MaximumConcurrency`` (template.yaml), so all containers together stay under it without
coordinating. A token bucket per number, in memory; a send that would wait too long is retried later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_RATE = 80.0  # messages per second per WhatsApp business number
COEXISTENCE_RATE = 20.0  # a number shared with the WhatsApp Business App


class PaceExceeded(Exception):
    """Sending now would exceed the number's rate for longer than the pacer may wait."""


@dataclass
class _Bucket:
    rate: float  # tokens per second
    tokens: float
    at: float


class Pacer:
    def __init__(
        self,
        containers: int,
        *,
        max_wait: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._containers = max(1, containers)
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, business: str, limit: float) -> float:
        """Take one send's token for ``business`` (limit: messages/s for the whole number); returns the
        seconds waited. Raises ``PaceExceeded`` instead of waiting more than ``max_wait``."""
        rate = limit / self._containers
        now = self._clock()
        bucket = self._buckets.get(business)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[business] = _Bucket(rate, max(1.0, rate), now)
        capacity = max(1.0, rate)  # at most one second's worth in a burst
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        wait = 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / rate
        if wait > self._max_wait:
            raise PaceExceeded(f"{wait:.2f}s to wait")
        if wait:
            self._sleep(wait)
            bucket.tokens += wait * rate
            bucket.at = now + wait
        bucket.tokens -= 1
        return wait
