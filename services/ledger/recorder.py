"""The ledger's consumer: fold a batch, write it, then ack it; hold it while PostgreSQL is away.

An unwritten batch stays unacked, so the broker keeps what the ledger has not written (the
queue grows while PostgreSQL is down and drains when it returns). A batch PostgreSQL refuses
for its content is written a delivery at a time, and only what it still refuses is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

from integrator import db, envelope, metrics
from integrator.consumer import BatchConsumer, wait_for
from integrator.db import DatabaseUnavailable
from integrator.topology import Topology
from services.ledger.records import Batch
from services.ledger.store import LedgerStore

log = logging.getLogger("integrator.ledger")

FIRST_DELAY = 0.2
MAX_DELAY = 5.0


class Recorder(BatchConsumer):
    def __init__(
        self, channel: RawChannel, stopping: asyncio.Event, store: LedgerStore, topology: Topology, url: str
    ) -> None:
        super().__init__(channel, stopping)
        self._store = store
        self._topology = topology
        self._url = url
        self.database_up = True
        self._migrated = False  # migrations are applied before the first write of each session

    async def _settle(self, batch: list[DeliveredMessage]) -> None:
        folded = Batch(self._topology)
        for delivery in batch:
            folded.add(delivery)
        if not await self._write(folded, batch):
            return  # stopping with the batch unwritten: the broker requeues it on close
        now = envelope.now_ms()
        for received_at in folded.first_seen:
            metrics.ledger_lag_seconds.observe(max(0, now - received_at) / 1000)
        await self._channel.basic_ack(batch[-1].delivery.delivery_tag, multiple=True)

    async def _write(self, folded: Batch, batch: list[DeliveredMessage]) -> bool:
        """Write until written; False if `stopping` is set first."""
        delay = FIRST_DELAY
        while True:
            try:
                if not self._migrated:
                    await self._upgrade()
                    self._migrated = True
                started = time.perf_counter()
                await self._store.write(folded)
                metrics.ledger_write_seconds.observe(time.perf_counter() - started)
                self._up(True)
                return True
            except DatabaseUnavailable as exc:
                self._up(False)
                log.warning("PostgreSQL unavailable; holding the batch", extra={
                    "count": len(batch), "retry_in": delay, "error": str(exc)})  # fmt: skip
            except asyncpg.PostgresError as exc:
                log.error("batch refused; writing it a delivery at a time", extra={"error": repr(exc)})
                await self._write_one_by_one(batch)
                return True
            if await wait_for(self._stopping, delay):
                return False
            delay = min(delay * 2, MAX_DELAY)

    async def _upgrade(self) -> None:
        """Apply the migrations this release has: the tables are never made by hand."""
        try:
            await db.upgrade(self._url)
        except db.UNAVAILABLE as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    async def _write_one_by_one(self, batch: list[DeliveredMessage]) -> None:
        for delivery in batch:
            alone = Batch(self._topology)
            alone.add(delivery)
            try:
                await self._store.write(alone)
            except asyncpg.PostgresError as exc:
                metrics.ledger_skipped.labels("unwritable").inc()
                log.error("not recorded: unwritable", extra={
                    "message_id": delivery.header.properties.message_id, "error": repr(exc)})  # fmt: skip

    def _up(self, up: bool) -> None:
        if up != self.database_up:
            log.info("PostgreSQL reachable again" if up else "PostgreSQL unreachable")
        self.database_up = up
        metrics.database_up.set(1 if up else 0)
