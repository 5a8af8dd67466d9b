"""Publishing with publisher confirms, pipelined and written in batches.

Everything published during one turn of the event loop goes to the broker as a single socket
write, and every message awaits only its own confirm (through `aiormq_channel.BatchChannel`,
the one place that touches aiormq's internals). Every publish is `mandatory`, so a message no
queue would take comes back as an error instead of vanishing; that is matched by message id,
so a message without one is refused. A confirm that times out is not taken back: the message
may still be stored, so a retry can repeat it (at-least-once, as everywhere).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel
from aiormq import spec
from aiormq.exceptions import DeliveryError

from integrator import metrics
from integrator.aiormq_channel import BatchChannel
from integrator.frames import message_frames


class PublishFailed(Exception):
    """The broker did not take responsibility for a message: nacked, unroutable or unconfirmed."""


class Unpublishable(PublishFailed):
    """A message that no retry can publish: it has no message_id, or cannot be encoded."""


@dataclass(frozen=True, slots=True)
class Outbound:
    exchange: str
    routing_key: str
    body: bytes
    properties: spec.Basic.Properties  # with a message_id: returns are matched by it
    confirmed: Callable[[], None] | None = None  # called once the broker has it: metrics of what arrived


class Publisher:
    def __init__(self, channel: BatchChannel, timeout: float, service: str) -> None:
        self._channel = channel
        self._timeout = timeout
        self._confirm_seconds = metrics.confirm_seconds.labels(service)
        self._encoded: list[bytes] = []  # messages sent since the last write, as AMQP frames
        self._unconfirmed: list[asyncio.Future] = []  # their confirms, to time out together
        self._writer: asyncio.Task | None = None

    @classmethod
    async def on(cls, channel: AbstractChannel, confirm_timeout: float, service: str) -> Publisher:
        """A publisher on an aio-pika channel opened with `publisher_confirms=True`."""
        return cls(BatchChannel.on(await channel.get_underlay_channel()), confirm_timeout, service)

    async def publish(self, out: Outbound) -> None:
        """Return once the broker has confirmed `out`; raise PublishFailed if it will not."""
        if refused := await self.publish_all((out,)):
            raise refused[0][1]

    async def publish_all(self, outs: Sequence[Outbound]) -> list[tuple[Outbound, PublishFailed]]:
        """Publish `outs` together; return the ones the broker refused, each with its reason.

        A lost connection raises, like `publish`.
        """
        started = time.perf_counter()
        confirms = [self._send(out) for out in outs]
        refused = []
        for out, confirm in zip(outs, confirms, strict=True):
            try:
                await _confirmed(confirm, out)
                self._confirm_seconds.observe(time.perf_counter() - started)
            except PublishFailed as exc:
                refused.append((out, exc))
        return refused

    def send(self, out: Outbound) -> asyncio.Task[None]:
        """Queue `out` for this turn's write now; the task settles with its confirm (raising
        PublishFailed if refused) and may be awaited by many, each through `asyncio.shield`."""
        return asyncio.ensure_future(_confirmed(self._send(out), out))

    def _send(self, out: Outbound) -> asyncio.Future:
        """Register `out` with the channel, queue its frames for the next write, and return the
        future aiormq settles with its confirm."""
        channel = self._channel
        message_id = out.properties.message_id
        try:
            if not message_id:  # a mandatory publish is matched to its return by the id
                raise ValueError("it has no message_id")
            # Encoded here, so that a message that cannot be encoded fails its own publish only.
            encoded = message_frames(
                out.exchange,
                out.routing_key,
                out.properties,
                out.body,
                channel.number,
                channel.max_content_size,
            )
        except (ValueError, TypeError) as exc:
            return channel.failed(Unpublishable(f"cannot publish to {out.exchange}: {exc}"))
        confirm = channel.register(message_id)
        self._encoded.append(encoded)
        self._unconfirmed.append(confirm)
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write())  # runs once this turn's publishes are in
        return confirm

    async def _write(self) -> None:
        """Hand what accumulated to aiormq's writer as one frame, until nothing is left.

        One writer at a time keeps the frames in delivery-tag order; while it waits for room in
        aiormq's write queue (a blocked connection), new publishes join the next write.
        """
        try:
            while self._encoded:
                encoded, self._encoded = self._encoded, []
                unconfirmed, self._unconfirmed = self._unconfirmed, []
                asyncio.get_running_loop().call_later(self._timeout, _expire, unconfirmed, self._timeout)
                await self._channel.write(b"".join(encoded))
        finally:
            self._writer = None


async def _confirmed(confirm: asyncio.Future, out: Outbound) -> None:
    try:
        result = await confirm
    except PublishFailed:
        raise
    except TimeoutError as exc:
        raise PublishFailed(str(exc)) from None
    except DeliveryError as exc:  # a nack: a full queue, say
        raise PublishFailed(f"{out.exchange} refused the message: {exc.frame!r}") from None
    if not isinstance(result, spec.Basic.Ack):  # the returned message itself
        raise PublishFailed(f"{out.exchange} returned the message: no queue took it")


def _expire(confirms: list[asyncio.Future], timeout: float) -> None:
    for confirm in confirms:
        if not confirm.done():
            confirm.set_exception(TimeoutError(f"no confirm from the broker within {timeout}s"))
