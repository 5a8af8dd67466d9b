"""One endpoint's deliveries: its subscriber's queue consumed, each copy attempted and settled.

A copy is acked only once what came of it is safe elsewhere: the ledger told of the attempt,
and the copy published to a delay queue for its next attempt, to its parked queue, or back to
its own queue when the endpoint is disabled. A deliverer killed mid-flight leaves its copies
unacked and the broker hands them out again: at-least-once, and a receiver dedupes on
`webhook-id`, which is the copy's `message_id` on every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

from integrator import envelope, metrics
from integrator.connection import BROKER_ERRORS
from integrator.journal import TurnJournal
from integrator.publisher import Outbound, Publisher
from integrator.subscriptions import Subscriber
from integrator.topology import Topology
from services.deliverer.decision import DELIVERED, DISABLE, PARK, RETRY, Verdict, decide
from services.deliverer.gates import STATE_VALUES, Circuit, Pace
from services.deliverer.sender import Attempt, Sender
from services.deliverer.switches import Switches

log = logging.getLogger("integrator.deliverer")

STOP_GRACE = 5.0  # seconds the copies in hand get to settle when the endpoint stops
JITTER = 0.1  # a delay is stretched by up to a tenth, so that copies failing together spread out


class EndpointDelivery:
    def __init__(
        self,
        subscriber: Subscriber,
        channel: RawChannel,
        publisher: Publisher,
        sender: Sender,
        journal: TurnJournal | None,
        topology: Topology,
        schedule: tuple[float, ...],
        switches: Switches,
    ) -> None:
        assert subscriber.endpoint is not None
        self.name, self.endpoint = subscriber.name, subscriber.endpoint
        self._channel = channel
        self._publisher = publisher
        self._sender = sender
        self._journal = journal
        self._topology = topology
        self._schedule = schedule
        self._switches = switches
        self._circuit = Circuit()
        self._pace = Pace(self.endpoint.rate)
        self._in_hand: set[asyncio.Task] = set()
        self.started = asyncio.Event()  # set once it has consumed or found the endpoint disabled
        metrics.circuit_state.labels(self.name).set_function(lambda: STATE_VALUES[self._circuit.state])

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume while the endpoint is enabled, until `stopping` (then finish the copies in
        hand); raise when the channel closes underneath, so the caller can reconnect."""
        queue = self._topology.accepted_queue(self.name)
        await self._channel.basic_qos(prefetch_count=self.endpoint.max_in_flight)
        closing = asyncio.ensure_future(self._channel.closing)
        try:
            if not self._switches.enabled(self.name):
                self.started.set()
            while await self._until(closing, stopping, enabled=True):
                consume_ok = await self._channel.basic_consume(queue, self._on_delivery)
                self.started.set()
                log.info("delivering", extra={"subscriber": self.name, "queue": queue})
                stopped = not await self._until(closing, stopping, enabled=False)
                await self._channel.basic_cancel(consume_ok.consumer_tag)
                await self._finish_in_hand()
                if stopped:
                    return
                log.warning("endpoint disabled; its copies wait on its queue",
                            extra={"subscriber": self.name, "queue": queue})  # fmt: skip
        finally:
            closing.cancel()

    async def _finish_in_hand(self) -> None:
        """Let the copies in hand settle for up to STOP_GRACE seconds; the rest are left unacked,
        and the broker hands them out again (to be sent again, with the same webhook-id)."""
        if self._in_hand:
            await asyncio.wait(self._in_hand, timeout=STOP_GRACE)
        for task in self._in_hand:
            task.cancel()

    async def _until(self, closing: asyncio.Future, stopping: asyncio.Event, enabled: bool) -> bool:
        """Wait until the endpoint is enabled (or disabled): True; or stopping: False. Raises
        when the channel closes."""
        switched = asyncio.ensure_future(self._switches.until(self.name, enabled))
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait((closing, stop, switched), return_when=asyncio.FIRST_COMPLETED)
        finally:
            switched.cancel()
            stop.cancel()
        if closing.done():
            raise ConnectionError("channel closed")
        return not stopping.is_set()

    async def _on_delivery(self, delivery: DeliveredMessage) -> None:
        task = asyncio.ensure_future(self._settle(delivery))
        self._in_hand.add(task)
        task.add_done_callback(self._in_hand.discard)

    async def _settle(self, delivery: DeliveredMessage) -> None:
        try:
            await self._deliver(delivery)
        except BROKER_ERRORS as exc:  # the copy is unacked, and comes again on the next channel
            log.warning("copy not settled: broker lost", extra={"subscriber": self.name, "error": repr(exc)})
        except Exception:
            # A fault of ours: hand the copy back; its delivery limit sets it aside if it keeps failing.
            log.exception("copy not settled", extra={"subscriber": self.name})
            with contextlib.suppress(*BROKER_ERRORS):
                await self._channel.basic_nack(delivery.delivery.delivery_tag, requeue=True)

    async def _deliver(self, delivery: DeliveredMessage) -> None:
        if not self._switches.enabled(self.name):
            return await self._put_back(delivery)
        await self._circuit.admit()
        await self._pace.take()
        if not self._switches.enabled(self.name):  # disabled while this copy waited
            self._circuit.record(True)  # no attempt made: let the next one through
            return await self._put_back(delivery)
        props = delivery.header.properties
        attempt = await self._sender.post(self.endpoint, props.message_id or "", delivery.body)
        self._circuit.record(attempt.ok)
        tried = [*((props.headers or {}).get("attempts") or []), _brief(attempt)]
        verdict = decide(attempt.status, attempt.retry_after, len(tried), self._schedule)
        metrics.delivery_attempts.labels(self.name, _outcome(attempt)).inc()
        metrics.delivery_seconds.labels(self.name).observe(attempt.duration_ms / 1000)
        if verdict.kind == DISABLE:  # first, so that the copy put back is not taken again
            await self._switches.disable(self.name, f"{self.endpoint.url} answered 410 Gone")
        outs = self._onward(verdict, delivery, tried)
        told = self._tell(delivery, attempt, verdict)
        refused = await self._publisher.publish_all(outs)
        if told is not None:
            await asyncio.shield(told)
        if refused:  # a full delay or parked queue: keep the copy where it is, and try again later
            log.error("copy kept: onward publish refused", extra={"subscriber": self.name,
                      "message_id": props.message_id, "error": str(refused[0][1])})  # fmt: skip
            await self._channel.basic_nack(delivery.delivery.delivery_tag, requeue=True)
            return None
        await self._channel.basic_ack(delivery.delivery.delivery_tag)
        return None

    def _onward(self, verdict: Verdict, delivery: DeliveredMessage, tried: list[list[Any]]) -> list[Outbound]:
        """Where the copy goes next, if anywhere: its next attempt waits in a delay queue (then
        dead-letters back to its own queue), or it is parked, or it goes back to the end of
        its queue while the endpoint is disabled."""
        props = delivery.header.properties
        if verdict.kind == DELIVERED:
            return []
        if verdict.kind == DISABLE:
            return [Outbound(self._topology.accepted, self.name, delivery.body, props)]
        again = envelope.with_headers(props, attempts=tried)
        if verdict.kind == PARK:
            parked = self._topology.parked_queue(self.name)
            return [Outbound("", parked, delivery.body, again)]
        assert verdict.kind == RETRY
        delay = self._topology.delay_for(verdict.delay)
        again.expiration = str(int(delay * 1000 * (1 + random.random() * JITTER)))
        return [Outbound(self._topology.delay_exchange(delay), self.name, delivery.body, again)]

    def _tell(self, delivery: DeliveredMessage, attempt: Attempt, verdict: Verdict) -> asyncio.Future | None:
        if self._journal is None:
            return None
        props = delivery.header.properties
        parent_id = (props.headers or {}).get("parent_id")
        event = ["attempt", props.message_id, parent_id, self.name, attempt.summary(), verdict.state]
        return self._journal.tell(self._publisher, event)

    async def _put_back(self, delivery: DeliveredMessage) -> None:
        """To the end of its own queue, untried: the endpoint is disabled."""
        props = delivery.header.properties
        await self._publisher.publish(Outbound(self._topology.accepted, self.name, delivery.body, props))
        await self._channel.basic_ack(delivery.delivery.delivery_tag)


def _brief(attempt: Attempt) -> list[Any]:
    """An attempt as a copy carries it from one attempt to the next: when, and what came of it."""
    return [attempt.at, attempt.status if attempt.status is not None else attempt.error]


def _outcome(attempt: Attempt) -> str:
    """The attempts metric's label: the status class, or `error`."""
    return "error" if attempt.status is None else f"{attempt.status // 100}xx"
