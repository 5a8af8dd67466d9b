"""The console's link to RabbitMQ: one connection, opened when first needed and again after it
is lost, and a fresh channel for each look (closing it puts back whatever the look took)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aio_pika.abc import AbstractChannel, AbstractConnection

from integrator.connection import connect_first


class BrokerLink:
    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: AbstractConnection | None = None
        self._connecting = asyncio.Lock()  # two pages at once open one connection, not two

    async def _connected(self) -> AbstractConnection:
        async with self._connecting:
            if self._connection is None or self._connection.is_closed:
                self._connection = await connect_first(self._url, "integrator-console", per_node=5)
            return self._connection

    @asynccontextmanager
    async def channel(self) -> AsyncIterator[AbstractChannel]:
        channel = await (await self._connected()).channel(publisher_confirms=True)
        try:
            yield channel
        finally:
            if not channel.is_closed:
                await channel.close()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
