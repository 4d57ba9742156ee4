"""Pacing WhatsApp sends per business number and per user (Meta's two throughput limits).

Per number (80 messages/s by default, 20/s for coexistence numbers; error 130429): each dispatch
container takes an equal share of a number's rate, the number's limit divided by the send queue's
``MaximumConcurrency`` (template.yaml), so all containers together stay under it without coordinating.
A token bucket per number, in memory; a send that would wait too long is retried later.

Per user (the pair rate: one business number to one user, about one message every 6 s, in short
bursts; error 131056): ``pair_pace``, a GCRA over a theoretical arrival time (``tat``) that all
containers share in DynamoDB. The rule is pure; where ``tat`` lives is the store's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from crossroute import privacy

DEFAULT_RATE = 80.0  # messages per second per WhatsApp business number
COEXISTENCE_RATE = 20.0  # a number shared with the WhatsApp Business App


PAIR_INTERVAL = 6.0  # seconds per message, on average, from one business number to one user
PAIR_BURST = 10  # messages a user may get at once before the interval applies (Meta tolerates bursts)


@dataclass(frozen=True)
class Pair:
    """One business number and one user, as the pair rate counts them."""

    tenant: str
    business: str  # Meta phone_number_id
    user: str  # who the request names: ``C:<customer id>``, or a keyed hash of the BSUID or phone

    @classmethod
    def of(cls, tenant: str, business: str, *, customer_id: str | None, address: str | None) -> Pair:
        """By customer id when the request names one, else by a keyed hash of the address: no PII in
        keys, and, unlike a bare hash, none a reader of the table can reverse by enumerating phones.
        Raises ``privacy.KeyUnavailable`` while the stack's key cannot be read (the send is retried)."""
        if customer_id:
            return cls(tenant, business, f"C:{customer_id}")
        return cls(tenant, business, "A:" + privacy.stable_tag("pace", address or ""))


@dataclass(frozen=True)
class PairPace:
    """What the pair rate says about one more message: wait ``wait`` seconds first (0: send now); after
    sending, either set the stored ``tat`` to ``set_to`` (it had fallen behind) or add ``add`` to it
    (an atomic add: two containers sending at once both count)."""

    wait: float
    set_to: float | None = None
    add: float | None = None


def pair_pace(
    tat: float | None, now: float, *, interval: float = PAIR_INTERVAL, burst: int = PAIR_BURST
) -> PairPace:
    """GCRA: a message may go when ``now >= tat - (burst - 1) * interval``; each one moves ``tat`` on by
    ``interval`` from ``max(tat, now)``. Times are seconds since the epoch."""
    if tat is None or tat < now:
        return PairPace(0.0, set_to=now + interval)
    allowed_at = tat - (burst - 1) * interval
    if now < allowed_at:
        return PairPace(allowed_at - now)
    return PairPace(0.0, add=interval)


class PaceExceeded(Exception):
    """Sending now would exceed the number's rate for longer than the pacer may wait (``wait`` s)."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"{wait:.2f}s to wait")
        self.wait = wait


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
            raise PaceExceeded(wait)
        if wait:
            self._sleep(wait)
            bucket.tokens += wait * rate
            bucket.at = now + wait
        bucket.tokens -= 1
        return wait
