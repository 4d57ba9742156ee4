"""Per-number pacing: each container's share of the number's rate, as a token bucket."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute.routing.pacing import COEXISTENCE_RATE, DEFAULT_RATE, PaceExceeded, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def pacer(containers: int, clock: Clock, max_wait: float = 60.0) -> Pacer:
    return Pacer(containers, max_wait=max_wait, clock=clock, sleep=clock.sleep)


def test_a_container_sends_its_share_of_the_number_rate() -> None:
    clock = Clock()
    pace = pacer(10, clock)  # 80/s over 10 containers: 8/s here
    for _ in range(8 + 80):
        pace.acquire("100000000000001", DEFAULT_RATE)
    # A burst of one second's share, then 8 per second: 80 more take 10 s.
    assert clock.slept == pytest.approx(10.0, rel=0.01)


def test_a_coexistence_number_is_paced_at_20_per_second() -> None:
    clock = Clock()
    pace = pacer(1, clock)
    for _ in range(20 + 40):
        pace.acquire("coexistence", COEXISTENCE_RATE)
    assert clock.slept == pytest.approx(2.0, rel=0.01)


def test_numbers_are_paced_apart() -> None:
    clock = Clock()
    pace = pacer(10, clock)
    for _ in range(8):
        pace.acquire("a", DEFAULT_RATE)
        pace.acquire("b", DEFAULT_RATE)
    assert clock.slept == 0


def test_a_send_that_would_wait_too_long_is_refused_for_later() -> None:
    clock = Clock()
    pace = pacer(80, clock, max_wait=0.5)  # 1/s here
    pace.acquire("a", DEFAULT_RATE)
    with pytest.raises(PaceExceeded):
        pace.acquire("a", DEFAULT_RATE)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.sampled_from([DEFAULT_RATE, COEXISTENCE_RATE]), st.integers(1, 300))
def test_never_faster_than_the_share(containers: int, limit: float, sends: int) -> None:
    clock = Clock()
    pace = pacer(containers, clock)
    start = clock.now
    for _ in range(sends):
        pace.acquire("n", limit)
    share = limit / containers
    burst = max(1.0, share)
    assert sends <= burst + (clock.now - start) * share + 1e-6
