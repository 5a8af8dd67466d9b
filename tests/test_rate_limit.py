"""The per-store token bucket: in one gateway's memory on a clock the test moves, and shared by
several gateways through PostgreSQL."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from integrator import db
from services.gateway import rate_limit
from services.gateway.rate_limit import SharedRateLimiter, StoreRateLimiter
from tests.conftest import STORE
from tests.support.proxy import Proxy


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


SLOW = 0.001  # tokens a second: nothing refills while a test runs


async def test_two_gateways_share_one_bucket_of_a_store(ledger_db: asyncpg.Pool, prefix: str) -> None:
    first, second = (SharedRateLimiter(ledger_db, prefix, rate=SLOW, burst=10) for _ in range(2))
    allowed = [await gateway.retry_after(STORE) for _ in range(6) for gateway in (first, second)]
    assert allowed == [None] * 10 + [1000, 1000], "ten in all, not ten each; then a wait of 1/rate"
    other_hub = SharedRateLimiter(ledger_db, prefix + "-other", rate=SLOW, burst=10)
    assert await other_hub.retry_after(STORE) is None, "a hub (prefix) of its own has buckets of its own"


async def test_pushes_of_a_store_arriving_together_get_what_the_bucket_holds(
    ledger_db: asyncpg.Pool, prefix: str
) -> None:
    limiter = SharedRateLimiter(ledger_db, prefix, rate=SLOW, burst=10)
    answers = await asyncio.gather(*(limiter.retry_after(STORE) for _ in range(50)))
    assert answers.count(None) == 10 and answers.count(1000) == 40


async def test_a_gateway_takes_a_lease_of_its_share_and_no_more(ledger_db: asyncpg.Pool, prefix: str) -> None:
    first, second = (SharedRateLimiter(ledger_db, prefix, rate=SLOW * 100_000, burst=10) for _ in range(2))
    assert await first.retry_after(STORE) is None  # a lease of 5 (rate x LEASE_SECONDS): 4 held
    async with ledger_db.acquire() as conn:
        left = await conn.fetchval("SELECT tokens FROM rate_buckets WHERE prefix = $1", prefix)
    assert 5 <= left < 5.1, "the other gateway still has the rest of the bucket"
    assert [await second.retry_after(STORE) for _ in range(5)] == [None] * 5


async def test_while_postgresql_is_away_each_gateway_enforces_the_rate_alone(
    proxied_database_url: str, postgres_proxy: Proxy, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await db.open_pool(proxied_database_url)
    try:
        limiter = SharedRateLimiter(pool, prefix, rate=SLOW, burst=3)
        limiter.ALONE_SECONDS = 0.0  # asks PostgreSQL again at each push, so the test need not wait
        assert await limiter.retry_after(STORE) is None
        postgres_proxy.cut()
        with caplog.at_level(logging.INFO, "integrator.gateway"):
            assert [await limiter.retry_after(STORE) for _ in range(4)] == [None, None, None, 1000]
            postgres_proxy.restore()
            assert await limiter.retry_after(STORE) is None, "the shared bucket had two left"
        assert [r.getMessage() for r in caplog.records] == [
            "store rates enforced by this gateway alone: PostgreSQL unavailable",
            "store rates shared again through PostgreSQL",
        ]
    finally:
        await pool.close()


async def test_a_flood_s_refusals_are_answered_without_postgresql(
    proxied_database_url: str, postgres_proxy: Proxy, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the shared bucket said empty, the gateway refuses the store on its own until the next
    token is due: a store flooding with 429s costs PostgreSQL nothing."""
    pool = await db.open_pool(proxied_database_url)
    try:
        limiter = SharedRateLimiter(pool, prefix, rate=SLOW, burst=1)
        assert [await limiter.retry_after(STORE) for _ in range(2)] == [None, 1000]
        postgres_proxy.cut()
        with caplog.at_level(logging.INFO, "integrator.gateway"):
            assert {await limiter.retry_after(STORE) for _ in range(100)} == {1000}
        assert caplog.records == [], "PostgreSQL was not asked"
    finally:
        await pool.close()
