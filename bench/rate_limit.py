"""The cost of the shared per-store rate limit, measured in-process where noise does not drown it.

A push the limiter lets through costs the gateway a dictionary step, and one in a lease's worth
a round trip to PostgreSQL (`take_tokens`). The lease is LEASE_SECONDS of the store's rate: 15
tokens at the default 300/s, the case measured here, against the in-memory bucket of one gateway.
PostgreSQL's own CPU is read from its backend process for the pool's one connection.
"""

from __future__ import annotations

import statistics
import time
import uuid

from bench.procstat import cpu_seconds
from integrator import db
from services.gateway.rate_limit import LEASE_SECONDS, SharedRateLimiter, StoreRateLimiter
from tests.support.database import create_database, drop_database

CALLS = 30_000
ROUNDS = 5
STORE = "5279008084a81693d5000001"
DEFAULT_RATE = 300


async def rate_limit_section() -> str:
    database_url = await create_database()
    pool = await db.open_pool(database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
        lease = round(DEFAULT_RATE * LEASE_SECONDS)
        shared, postgres, alone = [], [], []
        for _ in range(ROUNDS):
            # a rate no push reaches, a burst of one lease: every lease is the default's size
            limiter = SharedRateLimiter(pool, f"bench-{uuid.uuid4().hex[:6]}", rate=1e9, burst=lease)
            started, pg_started = time.process_time(), cpu_seconds(backend)
            for _ in range(CALLS):
                assert await limiter.retry_after(STORE) is None
            shared.append((time.process_time() - started) * 1000 / CALLS)
            postgres.append((cpu_seconds(backend) - pg_started) * 1000 / CALLS)
            local = StoreRateLimiter(rate=1e9, burst=lease)
            started = time.process_time()
            for _ in range(CALLS):
                local.retry_after(STORE)
            alone.append((time.process_time() - started) * 1000 / CALLS)
    finally:
        await pool.close()
        await drop_database(database_url)
    return f"""
### The shared rate limit (same run)

Per push let through, in-process, median of {ROUNDS} runs of {CALLS:,} pushes, leases of {lease}
tokens (the default {DEFAULT_RATE}/s x {LEASE_SECONDS * 1000:.0f} ms): gateway
**{statistics.median(shared) * 1000:.1f} µs** with the bucket shared through PostgreSQL,
{statistics.median(alone) * 1000:.1f} µs with the in-memory bucket it replaced; PostgreSQL's
backend {statistics.median(postgres) * 1000:.1f} µs. A push costs the hub about 1,000 µs of CPU.
"""
