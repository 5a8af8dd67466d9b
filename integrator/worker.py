"""A worker service: consume one queue with a handler, reconnecting after every broker loss."""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractConnection

from integrator.connection import stay_connected
from integrator.consumer import Consumer, Handler
from integrator.health import serve_health
from integrator.publisher import Publisher
from integrator.service import run_service
from integrator.settings import Settings
from integrator.topology import Topology


def run_worker(
    name: str,
    settings: Settings,
    queue: str,
    handler: Handler,
    health_port: int,
    subscribers: tuple[str, ...] = (),
) -> None:
    """Run a worker process until SIGTERM/SIGINT; `subscribers` are the accepted queues to declare."""
    consuming = False

    async def session(connection: AbstractConnection, stopping: asyncio.Event) -> None:
        nonlocal consuming
        channel = await connection.channel(publisher_confirms=True)
        await Topology.from_settings(settings).declare(channel, subscribers)
        publisher = await Publisher.on(channel, settings.publish_timeout, name)
        consumer = Consumer(await channel.get_underlay_channel(), publisher, handler, stopping, name)
        consuming = True
        try:
            await consumer.run(queue, settings.prefetch)
        finally:
            consuming = False

    async def main(stopping: asyncio.Event) -> None:
        health = await serve_health(settings.health_host, health_port, name, lambda: consuming)
        try:
            await stay_connected(
                settings.amqp_url, f"integrator-{name}", lambda c: session(c, stopping), stopping
            )
        finally:
            await health.cleanup()

    run_service(name, settings, main)
