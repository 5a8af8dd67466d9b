"""A worker service: consume one queue in batches, reconnecting after every broker loss."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractChannel, AbstractConnection

from integrator.connection import stay_connected
from integrator.consumer import BatchConsumer, BatchHandler, Consumer, Handler, one_by_one
from integrator.health import serve_health
from integrator.journal import Journal
from integrator.publisher import Publisher
from integrator.service import Main, run_service
from integrator.settings import Settings
from integrator.topology import Topology

ConsumerFactory = Callable[[AbstractChannel, asyncio.Event], Awaitable[BatchConsumer]]
"""Makes the consumer of one session, on its channel (opened with publisher confirms)."""


def run_worker(name: str, settings: Settings, queue: str, handler: Handler, health_port: int) -> None:
    """Run a worker whose handler decides each delivery on its own, until SIGTERM/SIGINT."""

    async def decider(channel: AbstractChannel) -> BatchHandler:
        return one_by_one(handler, name)

    consumer = deciding(name, settings, decider)
    run_service(name, settings, worker_main(name, settings, queue, consumer, health_port))


def deciding(
    name: str, settings: Settings, decider_for: Callable[[AbstractChannel], Awaitable[BatchHandler]]
) -> ConsumerFactory:
    """Consumers that publish what `decider_for(channel)` decides, journalling it for the ledger."""
    journal = Journal(Topology.from_settings(settings)) if settings.ledger else None

    async def consumer(channel: AbstractChannel, stopping: asyncio.Event) -> BatchConsumer:
        publisher = await Publisher.on(channel, settings.publish_timeout, name)
        decide = await decider_for(channel)
        raw = await channel.get_underlay_channel()
        return Consumer(raw, publisher, decide, stopping, name, journal)

    return consumer


def worker_main(
    name: str,
    settings: Settings,
    queue: str,
    consumer_for: ConsumerFactory,
    health_port: int,
    prefetch: int | None = None,
    ready: Callable[[], bool] = lambda: True,
) -> Main:
    """The main of a worker service: health on `health_port`, ready while consuming and `ready()`."""
    consuming = False

    async def session(connection: AbstractConnection, stopping: asyncio.Event) -> None:
        nonlocal consuming
        channel = await connection.channel(publisher_confirms=True)
        await Topology.from_settings(settings).declare(channel)
        consumer = await consumer_for(channel, stopping)
        consuming = True
        try:
            await consumer.run(queue, prefetch or settings.prefetch)
        finally:
            consuming = False

    async def main(stopping: asyncio.Event) -> None:
        health = await serve_health(settings.health_host, health_port, name, lambda: consuming and ready())
        try:
            await stay_connected(
                settings.amqp_url, f"integrator-{name}", lambda c: session(c, stopping), stopping
            )
        finally:
            await health.cleanup()

    return main
