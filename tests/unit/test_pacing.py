"""Pacing: per number, each container's share of the number's rate as a token bucket; per user, the
pair rate as a GCRA (``pair_pace``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute.routing.pacing import (
    COEXISTENCE_RATE,
    DEFAULT_RATE,
    PAIR_BURST,
    PAIR_INTERVAL,
    PaceExceeded,
    Pacer,
    Pair,
    pair_pace,
)


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


# --------------------------------------------------------------------------- per user: the pair rate


def run_pair(times: list[float], interval: float = PAIR_INTERVAL, burst: int = PAIR_BURST) -> list[float]:
    """Offer one message at each time (sorted); send it when ``pair_pace`` allows, keeping ``tat`` as the
    store would (set, or an atomic add). Returns the times messages went out."""
    tat: float | None = None
    sent: list[float] = []
    for now in times:
        pace = pair_pace(tat, now, interval=interval, burst=burst)
        if pace.wait:
            assert pace.set_to is None and pace.add is None  # nothing to record: nothing was sent
            continue
        tat = pace.set_to if pace.add is None else (tat or 0.0) + pace.add
        sent.append(now)
    return sent


def test_a_user_gets_a_burst_then_one_message_per_interval() -> None:
    assert run_pair([0.0] * 25) == [0.0] * PAIR_BURST
    tat = 0.0 + PAIR_BURST * PAIR_INTERVAL  # after the burst at t=0
    assert pair_pace(tat, 0.0).wait == pytest.approx(PAIR_INTERVAL)
    assert pair_pace(tat, PAIR_INTERVAL).wait == 0.0
    # Steady: one offer every interval always goes.
    steady = [i * PAIR_INTERVAL for i in range(50)]
    assert run_pair(steady) == steady


def test_a_quiet_pair_starts_afresh() -> None:
    pace = pair_pace(100.0, 10_000.0)
    assert (pace.wait, pace.set_to, pace.add) == (0.0, 10_000.0 + PAIR_INTERVAL, None)
    assert pair_pace(None, 5.0).set_to == 5.0 + PAIR_INTERVAL


def test_pairs_are_keyed_without_the_address() -> None:
    by_phone = Pair.of("demo", "100000000000001", customer_id=None, address="+5511987654321")
    assert "5511987654321" not in by_phone.user and by_phone.user.startswith("A:")
    assert by_phone == Pair.of("demo", "100000000000001", customer_id=None, address="+5511987654321")
    assert Pair.of("demo", "1", customer_id="c-1", address="+5511987654321").user == "C:c-1"


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=120),
    window=st.floats(min_value=1.0, max_value=600.0),
)
def test_no_window_of_time_carries_more_than_the_burst_plus_the_rate(
    gaps: list[float], window: float
) -> None:
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    sent = run_pair(times)
    for i, start in enumerate(sent):
        within = [t for t in sent[i:] if t < start + window]
        assert len(within) <= PAIR_BURST + window / PAIR_INTERVAL + 1e-9, (start, within)
    # And it never holds back a message the rate allows: offers spaced by the interval all go.
    if all(g >= PAIR_INTERVAL for g in gaps[1:]):
        assert sent == times
