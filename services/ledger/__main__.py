"""`python -m services.ledger` / `integrator-ledger`."""

from __future__ import annotations

import asyncio
import contextlib

from aio_pika.abc import AbstractChannel

from integrator import db
from integrator.consumer import BatchConsumer, wait_for
from integrator.service import run_service, settings_or_exit
from integrator.topology import Topology
from integrator.worker import worker_main
from services.ledger.recorder import Recorder
from services.ledger.store import LedgerStore

RETENTION_EVERY = 3600.0  # seconds between drops of expired partitions


async def keep_retention(store: LedgerStore, stopping: asyncio.Event) -> None:
    """Drop expired partitions now and every hour, while PostgreSQL lets us."""
    while True:
        with contextlib.suppress(db.DatabaseUnavailable):
            await store.drop_expired()
        if await wait_for(stopping, RETENTION_EVERY):
            return


def main() -> None:
    settings = settings_or_exit()
    topology = Topology.from_settings(settings)

    async def ledger(stopping: asyncio.Event) -> None:
        pool = await db.open_pool(settings.database_url)
        store = LedgerStore(pool, settings.retention_days, settings.idempotency_hours)
        recorders: list[Recorder] = []  # the current session's

        async def recorder(channel: AbstractChannel, stopping: asyncio.Event) -> BatchConsumer:
            raw = await channel.get_underlay_channel()
            linger = settings.ledger_linger_ms / 1000
            recorders[:] = [Recorder(raw, stopping, store, topology, settings.database_url, linger)]
            return recorders[0]

        consume = worker_main(
            "ledger", settings, topology.ledger_events, recorder, settings.ledger_port,
            prefetch=settings.ledger_batch, ready=lambda: all(r.persistence.up for r in recorders),
        )  # fmt: skip
        retention = asyncio.ensure_future(keep_retention(store, stopping))
        try:
            await consume(stopping)
        finally:
            retention.cancel()
            await pool.close()

    run_service("ledger", settings, ledger)


if __name__ == "__main__":
    main()
