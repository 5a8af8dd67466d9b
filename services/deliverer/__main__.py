"""`python -m services.deliverer` / `integrator-deliverer`: every copy for a subscriber that is a
web endpoint, POSTed to it signed, and retried until it is delivered or parked."""

from __future__ import annotations

import asyncio
import logging
import sys

from aio_pika.abc import AbstractConnection

from integrator import db, metrics
from integrator.connection import stay_connected
from integrator.consumer import wait_for
from integrator.health import serve_health
from integrator.journal import Journal, TurnJournal
from integrator.publisher import Publisher
from integrator.service import run_service, settings_or_exit
from integrator.subscriptions import Subscriptions, SubscriptionsError
from integrator.topology import Topology
from services.deliverer.delivery import EndpointDelivery
from services.deliverer.sender import Sender
from services.deliverer.switches import Switches

log = logging.getLogger("integrator.deliverer")

DEPTH_EVERY = 5.0  # seconds between readings of each endpoint's queue depth


def main() -> None:
    settings = settings_or_exit()
    try:
        subscriptions = Subscriptions.load(
            settings.subscriptions, allow_private_endpoints=settings.allow_private_endpoints, signing=True
        )
    except SubscriptionsError as exc:
        sys.exit(f"deliverer: {exc}")
    topology = Topology.from_settings(settings)
    subscribers = [s for s in subscriptions.subscribers if s.endpoint is not None]
    names = [s.name for s in subscribers]

    async def deliverer(stopping: asyncio.Event) -> None:
        pool = await db.open_pool(settings.database_url, max_size=2)
        switches = Switches(pool, settings.database_url, settings.prefix, stopping)
        journal = TurnJournal(Journal(topology)) if settings.ledger else None
        delivering = False

        async def session(connection: AbstractConnection) -> None:
            nonlocal delivering
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, tuple(names))
            await topology.declare_delivery(channel, names)
            publisher = await Publisher.on(channel, settings.publish_timeout, "deliverer")
            deliveries = [
                EndpointDelivery(s, await (await connection.channel()).get_underlay_channel(), publisher,
                                 sender, journal, topology, settings.retry_schedule, switches)
                for s in subscribers
            ]  # fmt: skip
            delivering = True
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(watch_depths(connection, stopping))
                    for delivery in deliveries:
                        group.create_task(delivery.run(stopping))
                    await asyncio.gather(*(delivery.started.wait() for delivery in deliveries))
                    log.info("consuming", extra={"queues": [topology.accepted_queue(n) for n in names]})
            finally:
                delivering = False

        async def watch_depths(connection: AbstractConnection, stopping: asyncio.Event) -> None:
            channel = await connection.channel()
            while True:
                for name in names:
                    queue = await channel.declare_queue(topology.accepted_queue(name), passive=True)
                    metrics.endpoint_queue_depth.labels(name).set(queue.declaration_result.message_count or 0)
                if await wait_for(stopping, DEPTH_EVERY):
                    return

        port = settings.deliverer_port
        health = await serve_health(settings.health_host, port, "deliverer", lambda: delivering)
        watching = asyncio.ensure_future(switches.run())
        try:
            async with Sender(settings.allow_private_endpoints) as sender:
                await stay_connected(settings.amqp_url, "integrator-deliverer", session, stopping)
        finally:
            watching.cancel()
            await health.cleanup()
            await pool.close()

    run_service("deliverer", settings, deliverer)


if __name__ == "__main__":
    main()
