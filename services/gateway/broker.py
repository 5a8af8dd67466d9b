"""The gateway's link to the broker: a confirmed publisher kept connected in the background."""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractConnection

from integrator.connection import BROKER_ERRORS, stay_connected
from integrator.publisher import Outbound, Publisher, PublishFailed
from integrator.settings import Settings
from integrator.topology import Topology

log = logging.getLogger("integrator.gateway")


class BrokerUnavailable(Exception):
    """The message is not safely stored; the client should retry."""


class BrokerLink:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.topology = Topology.from_settings(settings)
        self._publisher: Publisher | None = None

    @property
    def ready(self) -> bool:
        return self._publisher is not None

    async def publish(self, out: Outbound) -> None:
        """Return once the broker confirmed `out`, or raise BrokerUnavailable."""
        if self._publisher is None:
            raise BrokerUnavailable("not connected to the broker")
        try:
            await self._publisher.publish(out)
        except PublishFailed as exc:
            raise BrokerUnavailable(str(exc)) from None
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"broker connection lost: {exc!r}") from None

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep connected until `stopping` is set, reconnecting after every loss."""

        async def session(connection: AbstractConnection) -> None:
            channel = await connection.channel(publisher_confirms=True)
            await self.topology.declare(channel)
            self._publisher = await Publisher.on(channel, self._settings.publish_timeout)
            log.info("accepting messages")
            raw = await channel.get_underlay_channel()
            try:
                stop = asyncio.ensure_future(stopping.wait())
                await asyncio.wait((stop, raw.closing), return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if not stopping.is_set():
                    raise ConnectionError("broker channel closed")
            finally:
                self._publisher = None

        await stay_connected(self._settings.amqp_url, "integrator-gateway", session, stopping)
