"""The gateway's link to the broker: a confirmed publisher kept connected in the background."""

from __future__ import annotations

import asyncio
import logging
import time

from aio_pika.abc import AbstractConnection

from integrator import journal, metrics
from integrator.connection import BROKER_ERRORS, stay_connected
from integrator.journal import Journal, TurnJournal
from integrator.publisher import Outbound, Publisher, PublishFailed
from integrator.settings import Settings
from integrator.topology import Topology

log = logging.getLogger("integrator.gateway")

SHEDDING_SECONDS = 0.05
"""After a nack, how long the gateway refuses without trying; then one publish probes again."""


class BrokerUnavailable(Exception):
    """The message is not safely stored; the client should retry."""


class AtCapacity(BrokerUnavailable):
    """The incoming backlog is full or too many publishes await confirms: shed at the door."""


class BrokerLink:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.topology = Topology.from_settings(settings)
        self._receipts = TurnJournal(Journal(self.topology)) if settings.ledger else None
        self._publisher: Publisher | None = None
        self._in_flight = 0
        metrics.in_flight.labels("gateway").set_function(lambda: self._in_flight)  # read when scraped
        self._shedding_until = 0.0

    @property
    def ready(self) -> bool:
        return self._publisher is not None

    async def publish(self, out: Outbound) -> None:
        """Return once the broker confirmed `out` (and the ledger's receipt of it), or raise
        BrokerUnavailable."""
        publisher = self.admit()
        receipt = None
        if self._receipts is not None:  # the ledger learns of the message from this receipt
            props = out.properties
            event = journal.accepted(props.message_id, props.message_type, props.headers, out.body)
            receipt = self._receipts.tell(publisher, event)
        self._in_flight += 1
        try:
            await publisher.publish(out)
            if receipt is not None:
                await asyncio.shield(receipt)
        except PublishFailed as exc:
            # A nack: the incoming backlog is full. Refuse outright for a moment rather than
            # spend a publish and a nack on every request while the pipeline catches up.
            self._shedding_until = time.monotonic() + SHEDDING_SECONDS
            raise AtCapacity(str(exc)) from None
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"broker connection lost: {exc!r}") from None
        finally:
            self._in_flight -= 1

    def admit(self) -> Publisher:
        """The publisher to use now; or BrokerUnavailable, cheaply, while a push cannot be taken:
        disconnected, or AtCapacity while the hub is known to be full."""
        if self._publisher is None:
            raise BrokerUnavailable("not connected to the broker")
        if self._in_flight >= self._settings.gateway_max_in_flight:
            raise AtCapacity("too many publishes awaiting confirms")
        if time.monotonic() < self._shedding_until:
            raise AtCapacity("incoming backlog full")
        return self._publisher

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep connected until `stopping` is set, reconnecting after every loss."""

        async def session(connection: AbstractConnection) -> None:
            channel = await connection.channel(publisher_confirms=True)
            await self.topology.declare(channel)
            self._publisher = await Publisher.on(channel, self._settings.publish_timeout, "gateway")
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
