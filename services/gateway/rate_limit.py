"""Per-store rate limiting, so one store's flood cannot take every other store's capacity.

The bucket of each store is kept in PostgreSQL and shared by every gateway of the hub, so a
store gets its rate in total however many replicas serve it. A gateway takes tokens from the
shared bucket a lease at a time (LEASE_SECONDS of the rate), so a push waits on PostgreSQL only
when its gateway's lease for that store is spent. While PostgreSQL is away each gateway
enforces the whole rate on its own (`StoreRateLimiter`), which is what the hub did before.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable

import asyncpg

from integrator.db import DatabaseUnavailable, connection

log = logging.getLogger("integrator.gateway")

MAX_TRACKED_STORES = 100_000
"""Buckets (and leases) kept at once; the least recently seen store's is forgotten."""

LEASE_SECONDS = 0.05
"""How much of a store's rate a gateway takes from the shared bucket at once: more means fewer
round trips to PostgreSQL, and more tokens idle in one gateway while another needs them."""

ASK_TIMEOUT = 1.0
"""Seconds a push waits for a lease before its gateway decides alone."""

TAKE = "SELECT granted, wait_seconds FROM take_tokens($1, $2, $3, $4, $5)"


class StoreRateLimiter:
    """A token bucket per store in this process's memory."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, last refill

    def retry_after(self, store_id: str) -> int | None:
        """None if the store may send one message now; otherwise whole seconds to wait."""
        if self._rate <= 0:
            return None
        now = self._clock()
        tokens, last = self._buckets.pop(store_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1
        self._buckets[store_id] = (tokens - 1 if allowed else tokens, now)
        if len(self._buckets) > MAX_TRACKED_STORES:
            self._buckets.popitem(last=False)
        return None if allowed else max(1, math.ceil((1 - tokens) / self._rate))


class SharedRateLimiter:
    """A store's bucket shared by the gateways of one hub (`prefix`) through PostgreSQL."""

    ALONE_SECONDS = 1.0
    """After PostgreSQL failed to answer, how long this gateway decides alone before asking again."""

    def __init__(self, db: asyncpg.Pool, prefix: str, rate: float, burst: int) -> None:
        self._db = db
        self._prefix = prefix
        self._rate = rate
        self._burst = float(burst)
        self._lease_size = max(1, min(burst, math.ceil(rate * LEASE_SECONDS)))
        self._leases: OrderedDict[str, int] = OrderedDict()  # tokens this gateway holds, by store
        self._empty_until: dict[str, float] = {}  # stores whose shared bucket was empty, till when
        self._taking: dict[str, asyncio.Future[int | None]] = {}
        self._alone = StoreRateLimiter(rate, burst)
        self._alone_until = 0.0

    async def retry_after(self, store_id: str) -> int | None:
        """None if the store may send one message now; otherwise whole seconds to wait."""
        if self._rate <= 0:
            return None
        while True:
            held = self._leases.get(store_id, 0)
            if held > 0:
                self._leases[store_id] = held - 1
                return None
            now = time.monotonic()
            if now < self._alone_until:
                return self._alone.retry_after(store_id)
            if now < (empty_until := self._empty_until.get(store_id, 0.0)):
                return math.ceil(empty_until - now)  # a flood's refusals never reach PostgreSQL
            if (taking := self._taking.get(store_id)) is None:
                return await self._take(store_id)
            await asyncio.wait((taking,))  # pushes of the store that arrive meanwhile wait for its lease
            if not taking.cancelled() and (wait := taking.result()) is not None:
                return wait  # the bucket was empty for the push that asked first too

    async def _take(self, store_id: str) -> int | None:
        """A new lease for `store_id`, one token of it for this push; the future in `_taking`
        says to the pushes that waited for it whether the bucket was empty (seconds to wait)."""
        taking = self._taking[store_id] = asyncio.get_running_loop().create_future()
        try:
            granted, wait = await self._ask(store_id)
        except BaseException as exc:
            del self._taking[store_id]
            taking.cancel()  # the waiting pushes look again
            if not isinstance(exc, DatabaseUnavailable):
                raise
            if self._alone_until == 0.0:
                log.warning("store rates enforced by this gateway alone: PostgreSQL unavailable",
                            extra={"error": str(exc)})  # fmt: skip
            self._alone_until = time.monotonic() + self.ALONE_SECONDS
            return self._alone.retry_after(store_id)
        del self._taking[store_id]
        if self._alone_until:
            log.info("store rates shared again through PostgreSQL")
            self._alone_until = 0.0
        if granted == 0:
            if len(self._empty_until) >= MAX_TRACKED_STORES:
                self._empty_until = {s: t for s, t in self._empty_until.items() if t > time.monotonic()}
            self._empty_until[store_id] = time.monotonic() + wait
            taking.set_result(refused := max(1, math.ceil(wait)))
            return refused
        self._leases[store_id] = granted - 1
        self._leases.move_to_end(store_id)
        if len(self._leases) > MAX_TRACKED_STORES:
            self._leases.popitem(last=False)
        taking.set_result(None)
        return None

    async def _ask(self, store_id: str) -> tuple[int, float]:
        """(tokens granted, seconds until the next one if none was)."""
        try:
            async with connection(self._db) as conn:
                row = await conn.fetchrow(
                    TAKE, self._prefix, store_id, self._lease_size, self._rate, self._burst
                )
        except asyncpg.PostgresError as exc:  # such as take_tokens missing: no migrations yet
            raise DatabaseUnavailable(str(exc)) from exc
        return row["granted"], row["wait_seconds"]
