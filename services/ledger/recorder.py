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

from integrator import envelope, metrics
from integrator.consumer import BatchConsumer
from integrator.db import Persistence
from integrator.topology import Topology
from services.ledger.records import Batch
from services.ledger.store import LedgerStore

log = logging.getLogger("integrator.ledger")


class Recorder(BatchConsumer):
    def __init__(
        self,
        channel: RawChannel,
        stopping: asyncio.Event,
        store: LedgerStore,
        topology: Topology,
        url: str,
        linger: float,
    ) -> None:
        super().__init__(channel, stopping, linger)
        self._store = store
        self._topology = topology
        self.persistence = Persistence(url, stopping)

    async def _settle(self, batch: list[DeliveredMessage]) -> None:
        folded = Batch(self._topology)
        for delivery in batch:
            folded.add(delivery)
        if not await self.persistence.until_done(lambda: self._write(folded, batch), len(batch)):
            return  # stopping with the batch unwritten: the broker requeues it on close
        now = envelope.now_ms()
        for received_at in folded.first_seen:
            metrics.ledger_lag_seconds.observe(max(0, now - received_at) / 1000)
        await self._channel.basic_ack(batch[-1].delivery.delivery_tag, multiple=True)

    async def _write(self, folded: Batch, batch: list[DeliveredMessage]) -> None:
        started = time.perf_counter()
        try:
            await self._store.write(folded)
        except asyncpg.PostgresError as exc:
            log.error("batch refused; writing it a delivery at a time", extra={"error": repr(exc)})
            await self._write_one_by_one(batch)
        else:
            metrics.ledger_write_seconds.observe(time.perf_counter() - started)

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
