"""The per-store token bucket, on a clock the test moves."""

from __future__ import annotations

import pytest

from services.gateway import rate_limit
from services.gateway.rate_limit import StoreRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answers(limiter: StoreRateLimiter, store: str, count: int) -> list[int | None]:
    return [limiter.retry_after(store) for _ in range(count)]


def test_a_burst_passes_then_the_store_waits_for_the_rate() -> None:
    clock = Clock()
    limiter = StoreRateLimiter(rate=2, burst=3, clock=clock)
    assert answers(limiter, "a", 5) == [None, None, None, 1, 1]
    clock.now += 0.5  # one token back at 2 a second
    assert answers(limiter, "a", 2) == [None, 1]


def test_retry_after_is_the_whole_seconds_until_a_token() -> None:
    clock = Clock()
    limiter = StoreRateLimiter(rate=0.1, burst=1, clock=clock)
    assert answers(limiter, "a", 2) == [None, 10]
    clock.now += 7.5
    assert limiter.retry_after("a") == 3  # 2.5 s left, rounded up
    clock.now += 2.5
    assert limiter.retry_after("a") is None


def test_an_idle_store_refills_to_its_burst_and_no_further() -> None:
    clock = Clock()
    limiter = StoreRateLimiter(rate=10, burst=4, clock=clock)
    assert answers(limiter, "a", 4) == [None] * 4
    clock.now += 3600
    assert answers(limiter, "a", 5) == [None] * 4 + [1]


def test_stores_have_buckets_of_their_own() -> None:
    limiter = StoreRateLimiter(rate=1, burst=2, clock=Clock())
    assert answers(limiter, "a", 3) == [None, None, 1]
    assert answers(limiter, "b", 3) == [None, None, 1]


def test_rate_zero_turns_the_limit_off() -> None:
    limiter = StoreRateLimiter(rate=0, burst=0, clock=Clock())
    assert answers(limiter, "a", 1000) == [None] * 1000


def test_only_the_most_recently_seen_stores_are_tracked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limit, "MAX_TRACKED_STORES", 2)
    limiter = StoreRateLimiter(rate=1, burst=1, clock=Clock())
    assert answers(limiter, "a", 2) == [None, 1]
    assert limiter.retry_after("b") is None
    assert limiter.retry_after("a") == 1, "seen more recently than b: still tracked"
    assert limiter.retry_after("c") is None  # b, the least recently seen, is forgotten
    assert limiter.retry_after("b") is None, "a forgotten store starts with a full bucket"
    assert limiter.retry_after("a") is None, "...and so does a, forgotten in turn for b"
