"""A worker service: consume one queue with a handler, reconnecting after every broker loss."""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractConnection

from integrator.connection import stay_connected
from integrator.consumer import Consumer, Handler
from integrator.publisher import Publisher
from integrator.service import run_service
from integrator.settings import Settings
from integrator.topology import Topology


def run_worker(
    name: str, settings: Settings, queue: str, handler: Handler, subscribers: tuple[str, ...] = ()
) -> None:
    """Run a worker process until SIGTERM/SIGINT; `subscribers` are the accepted queues to declare."""

    async def session(connection: AbstractConnection, stopping: asyncio.Event) -> None:
        channel = await connection.channel(publisher_confirms=True)
        await Topology.from_settings(settings).declare(channel, subscribers)
        publisher = await Publisher.on(channel, settings.publish_timeout)
        consumer = Consumer(await channel.get_underlay_channel(), publisher, handler, stopping)
        await consumer.run(queue, settings.prefetch)

    async def main(stopping: asyncio.Event) -> None:
        await stay_connected(
            settings.amqp_url, f"integrator-{name}", lambda c: session(c, stopping), stopping
        )

    run_service(name, settings, main)
