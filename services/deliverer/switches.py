"""Which endpoints are disabled (they answered 410 Gone), kept in PostgreSQL so that a restart and
every replica know it, and `integrator endpoints enable NAME` undoes it.

Read every POLL_SECONDS. Deliveries never wait on PostgreSQL: while it is away the state last
read holds, and a disable not yet written is kept here and written once it can be.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from integrator import db, metrics
from integrator.consumer import wait_for
from integrator.db import DatabaseUnavailable, Persistence

log = logging.getLogger("integrator.deliverer")

POLL_SECONDS = 1.0


class Switches:
    def __init__(self, pool: asyncpg.Pool, url: str, prefix: str, stopping: asyncio.Event) -> None:
        self._pool = pool
        self._prefix = prefix
        self._persistence = Persistence(url, stopping)
        self._stopping = stopping
        self._disabled: dict[str, str] = {}  # subscriber -> why
        self._unwritten: dict[str, str] = {}
        self._changed = asyncio.Event()

    def enabled(self, subscriber: str) -> bool:
        return subscriber not in self._disabled

    async def until(self, subscriber: str, enabled: bool) -> None:
        """Return once `subscriber`'s endpoint is enabled (or disabled)."""
        while self.enabled(subscriber) != enabled:
            changed = self._changed
            await changed.wait()

    async def disable(self, subscriber: str, reason: str) -> None:
        if subscriber in self._disabled:
            return
        log.warning("endpoint disabled", extra={"subscriber": subscriber, "reason": reason})
        self._unwritten[subscriber] = reason
        self._become({**self._disabled, subscriber: reason})
        await self._sync()

    async def run(self) -> None:
        """Read (and write) the switches every POLL_SECONDS until stopping."""
        while True:
            await self._sync()
            if await wait_for(self._stopping, POLL_SECONDS):
                return

    async def _sync(self) -> None:
        try:
            await self._persistence.migrated()
            async with db.connection(self._pool) as conn:
                for subscriber, reason in list(self._unwritten.items()):
                    await conn.execute(
                        "INSERT INTO disabled_endpoints (prefix, subscriber, reason) VALUES ($1, $2, $3)"
                        " ON CONFLICT DO NOTHING",
                        self._prefix, subscriber, reason,
                    )  # fmt: skip
                    del self._unwritten[subscriber]
                rows = await conn.fetch(
                    "SELECT subscriber, reason FROM disabled_endpoints WHERE prefix = $1", self._prefix
                )
        except DatabaseUnavailable as exc:
            log.debug("endpoint switches not read", extra={"error": str(exc)})
            return
        self._become({**{row["subscriber"]: row["reason"] for row in rows}, **self._unwritten})

    def _become(self, disabled: dict[str, str]) -> None:
        if disabled == self._disabled:
            return
        for subscriber in self._disabled.keys() - disabled.keys():
            log.info("endpoint enabled", extra={"subscriber": subscriber})
        for subscriber in self._disabled.keys() | disabled.keys():
            metrics.endpoint_disabled.labels(subscriber).set(1 if subscriber in disabled else 0)
        self._disabled = disabled
        self._changed.set()
        self._changed = asyncio.Event()
