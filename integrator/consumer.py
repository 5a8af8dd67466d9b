"""The consume-and-ack loop every worker runs: take deliveries in batches, have each decided,
publish what the decisions produce with confirms awaited together, then ack the batch with one frame.

A handler is a plain function from one delivery to its decision (the messages it produces and
what the ledger hears of it), so a service is its business logic and nothing else; a service
that must look something up for a whole batch decides the batch at once. A delivery is acked
only after everything produced from it is confirmed. A refused publish is retried until
confirmed. A delivery whose handler raises goes back to its queue once; raising again on its
redelivery, or producing a message that can never be published, it is set aside on `dead` at
once, and the rest of its batch settles as usual.
Every decision to ack, requeue or set aside is made in `_settle`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

from integrator import metrics
from integrator.journal import Journal
from integrator.publisher import Outbound, Publisher, Unpublishable

log = logging.getLogger("integrator.consumer")

RETRY_FIRST_DELAY = 0.1
RETRY_MAX_DELAY = 2.0


@dataclass(frozen=True, slots=True)
class Decision:
    """What became of one delivery: the messages to publish, and the ledger's event for it."""

    outs: list[Outbound]
    event: list[Any] | None = None


Handler = Callable[[DeliveredMessage], Decision]
BatchHandler = Callable[[list[DeliveredMessage]], Awaitable[list[Decision | None] | None]]
"""Decides a batch: None in place of a delivery whose handling failed; None for the whole batch
when stopping interrupted it (nothing is acked then, and the broker requeues it on close)."""


def guarded(handler: Handler, service: str) -> Callable[[DeliveredMessage], Decision | None]:
    """`handler`, answering None (and saying why in the log) where it raises."""
    failures = metrics.handler_failures.labels(service)

    def handle(delivery: DeliveredMessage) -> Decision | None:
        try:
            return handler(delivery)
        except Exception:
            failures.inc()
            log.exception(
                "handler failed; returning the message to its queue",
                extra={"message_id": delivery.header.properties.message_id},
            )
            return None

    return handle


def one_by_one(handler: Handler, service: str) -> BatchHandler:
    """A batch handler that decides each delivery on its own."""
    handle = guarded(handler, service)

    async def decide(batch: list[DeliveredMessage]) -> list[Decision | None]:
        return [handle(delivery) for delivery in batch]

    return decide


STALL_CHECK_SECONDS = 5.0
"""How often an idle consumer looks whether its queue holds messages it is not given."""


class BatchConsumer:
    """Consume one queue in batches: whatever has arrived when the last batch is settled is the
    next batch, so batches grow with the load and cost one round trip each. `_settle` decides.

    With `linger` (seconds), a batch waits until its first delivery is that old, so that what
    arrives soon after joins it (the ledger folds a message's receipt, validation and routing
    into one write that way)."""

    def __init__(self, channel: RawChannel, stopping: asyncio.Event, linger: float = 0.0) -> None:
        self._channel = channel
        self._stopping = stopping
        self._linger = linger
        self._pending: list[DeliveredMessage] = []
        self._first_arrived = 0.0  # monotonic time of the first pending delivery
        self._arrived = asyncio.Event()

    async def _on_delivery(self, delivery: DeliveredMessage) -> None:
        if not self._pending:
            self._first_arrived = time.monotonic()
        self._pending.append(delivery)
        self._arrived.set()

    async def run(self, queue: str, prefetch: int) -> None:
        """Consume `queue` until `stopping` is set, then finish what was delivered and return.

        Raises when the channel closes underneath, so the caller can reconnect.
        """
        await self._channel.basic_qos(prefetch_count=prefetch)
        consume_ok = await self._channel.basic_consume(queue, self._on_delivery)
        log.info("consuming", extra={"queue": queue, "prefetch": prefetch})
        closing = asyncio.ensure_future(self._channel.closing)
        stop = asyncio.ensure_future(self._stopping.wait())
        idle_checks = 0
        try:
            while not self._stopping.is_set():
                arrived = asyncio.ensure_future(self._arrived.wait())
                await asyncio.wait((arrived, stop, closing), timeout=STALL_CHECK_SECONDS,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                arrived.cancel()
                if closing.done():
                    closing.result()
                    raise ConnectionError("channel closed")
                idle_checks = 0 if self._pending else idle_checks + 1
                if idle_checks >= 2 and not self._stopping.is_set():
                    await self._resubscribe_if_stalled(queue)
                    idle_checks = 0
                await self._drain()
            await self._channel.basic_cancel(consume_ok.consumer_tag)
            await self._drain()
            log.info("stopped consuming", extra={"queue": queue})
        finally:
            closing.cancel()
            stop.cancel()

    async def _resubscribe_if_stalled(self, queue: str) -> None:
        """Raise (so that the worker reconnects and subscribes again) if `queue` holds messages
        ready for consumers while none has come to this idle consumer for two checks. Seen on a
        RabbitMQ 3.10 cluster: after a quorum queue's leader died, a consumer that had subscribed
        again through another node was told consume-ok and then given nothing."""
        ready = (await self._channel.queue_declare(queue, passive=True)).message_count or 0
        if ready:
            log.warning("messages ready but none delivered; subscribing again", extra={
                "queue": queue, "ready": ready, "idle_seconds": 2 * STALL_CHECK_SECONDS})  # fmt: skip
            raise ConnectionError(f"{queue}: {ready} messages ready, none delivered")

    async def _drain(self) -> None:
        while self._pending:
            if (wait := self._first_arrived + self._linger - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            batch, self._pending = self._pending, []
            self._arrived.clear()
            await self._settle(batch)

    async def _settle(self, batch: list[DeliveredMessage]) -> None:
        raise NotImplementedError


class Consumer(BatchConsumer):
    """Have each batch decided, publish what the decisions produce, then ack."""

    def __init__(
        self,
        channel: RawChannel,
        publisher: Publisher,
        decide: BatchHandler,
        stopping: asyncio.Event,
        service: str,
        journal: Journal | None = None,
    ) -> None:
        super().__init__(channel, stopping)
        self._in_hand = metrics.in_flight.labels(service)
        self._set_aside_count = metrics.set_aside.labels(service)
        self._publisher = publisher
        self._decide = decide
        self._journal = journal

    async def _settle(self, batch: list[DeliveredMessage]) -> None:
        self._in_hand.set(len(batch))
        decisions = await self._decide(batch)
        if decisions is None:
            return  # stopping before the batch was decided: the broker requeues it on close
        outs = [out for decision in decisions if decision for out in decision.outs]
        if self._journal is not None:
            events = [decision.event for decision in decisions if decision and decision.event]
            if events:
                outs.append(self._journal.entry(events))  # confirmed with the batch it tells of
        unpublishable = await self._publish(outs)
        if unpublishable is None:
            return  # stopping with publishes unconfirmed: the broker requeues the batch on close
        last_ok = None
        for delivery, decision in zip(batch, decisions, strict=True):
            tag = delivery.delivery.delivery_tag
            produced = decision.outs if decision else ()
            reason = next((unpublishable[id(out)] for out in produced if id(out) in unpublishable), None)
            if decision is None and not delivery.delivery.redelivered:
                await self._channel.basic_nack(tag, requeue=True)
            elif decision is None or reason is not None:
                self._set_aside(delivery, reason or "its handler failed on redelivery too")
                await self._channel.basic_reject(tag, requeue=False)  # to `dead`, by the queue's DLX
            else:
                last_ok = tag
                for out in produced:
                    if out.confirmed is not None:
                        out.confirmed()
        if last_ok is not None:
            # Everything delivered up to last_ok is settled by now: one frame acks it all.
            await self._channel.basic_ack(last_ok, multiple=True)
        self._in_hand.set(0)

    def _set_aside(self, delivery: DeliveredMessage, reason: str) -> None:
        self._set_aside_count.inc()
        log.error(
            "set aside on dead", extra={"message_id": delivery.header.properties.message_id, "reason": reason}
        )

    async def _publish(self, outs: list[Outbound]) -> dict[int, str] | None:
        """Publish until every message is confirmed or found unpublishable, retrying the refused.

        A refusal (a full queue, say) is back-pressure, not a fault of the message, so it is
        retried here rather than requeued, where it would count toward the delivery limit.
        Returns why each unpublishable message (by `id`) cannot be published, or None if
        stopping interrupts the retries.
        """
        unpublishable: dict[int, str] = {}
        delay = RETRY_FIRST_DELAY
        while outs:
            refused = await self._publisher.publish_all(outs)
            for out, exc in refused:
                if isinstance(exc, Unpublishable):
                    unpublishable[id(out)] = str(exc)
            refused = [(out, exc) for out, exc in refused if id(out) not in unpublishable]
            if refused:
                log.warning(
                    "publishes not confirmed; retrying",
                    extra={"count": len(refused), "error": str(refused[0][1]), "retry_in": delay},
                )
                if await wait_for(self._stopping, delay):
                    return None
                delay = min(delay * 2, RETRY_MAX_DELAY)
            outs = [out for out, _ in refused]
        return unpublishable


async def wait_for(event: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True if `event` was set meanwhile."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True
