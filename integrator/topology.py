"""Every exchange and queue of the hub, with its arguments, named under one prefix and declared here.

    gateway ─▶ <p>.incoming ─▶ validator ─▶ <p>.validated ─▶ router ─▶ <p>.accepted ─▶ <p>.accepted.<sub>
                                   │                            └─▶ <p>.unrouted
                                   └─▶ <p>.rejected
    any queue, after `delivery_limit` failed deliveries ──▶ <p>.dead
    deliverer: <p>.accepted.<endpoint sub> ─▶ POST; to retry ─▶ <p>.retry.<N>s ─(N s later)─▶ <p>.accepted
                                                   spent ─▶ <p>.parked.<sub>
    the gateway's and the workers' batch events (<p>.ledger), and <p>.dead ──▶ <p>.ledger ──▶ ledger

Each name is both an exchange and the queue bound to it; `accepted` is a direct exchange keyed by
subscriber, whose alternate exchange is `unrouted`, so even a copy for a queue someone deleted is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue
from aiormq.exceptions import ChannelPreconditionFailed

from integrator.settings import Settings


class TopologyConflict(Exception):
    """A queue exists with other arguments than these settings give it; the broker will not change it."""


HOLDING = ("rejected", "unrouted", "dead")
"""Queues where messages wait for a person, not for a service."""

STAGES = ("incoming", "validated", "rejected", "unrouted", "dead")
"""Queues every service declares; each is fed by a fanout exchange of the same name."""

RETRY_AFTER_STEPS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400)
"""Delays (s) a Retry-After is rounded up to, so that its wait has a delay queue of its own: each
queue's copies then expire in the order they arrived, none held up behind a longer wait."""


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str
    delivery_limit: int
    max_backlog: int = 0  # 0: unbounded
    ledger: bool = True
    retry_schedule: tuple[float, ...] = ()
    quorum_size: int = 0  # replicas of each queue; 0: RabbitMQ's default (every node, up to 3 by default)

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        s = settings
        return cls(s.prefix, s.delivery_limit, s.max_backlog, s.ledger, s.retry_schedule, s.quorum_size)

    def name(self, stage: str) -> str:
        return f"{self.prefix}.{stage}"

    @property
    def incoming(self) -> str:
        return self.name("incoming")

    @property
    def validated(self) -> str:
        return self.name("validated")

    @property
    def rejected(self) -> str:
        return self.name("rejected")

    @property
    def unrouted(self) -> str:
        return self.name("unrouted")

    @property
    def dead(self) -> str:
        return self.name("dead")

    @property
    def accepted(self) -> str:
        return self.name("accepted")

    @property
    def ledger_events(self) -> str:
        """The ledger's queue, and the exchange the workers send their batch events to."""
        return self.name("ledger")

    def accepted_queue(self, subscriber: str) -> str:
        return f"{self.accepted}.{subscriber}"

    def parked_queue(self, subscriber: str) -> str:
        return f"{self.name('parked')}.{subscriber}"

    @property
    def delays(self) -> tuple[float, ...]:
        """Every delay a copy may wait before its next attempt, each with its delay queue."""
        return tuple(sorted({*self.retry_schedule, *RETRY_AFTER_STEPS}))

    def delay_for(self, seconds: float) -> float:
        """The shortest delay of a delay queue that waits at least `seconds` (or the longest)."""
        return next((delay for delay in self.delays if delay >= seconds), self.delays[-1])

    def delay_exchange(self, delay: float) -> str:
        """A delay queue and the fanout exchange that feeds it; copies published there with their
        subscriber as the routing key dead-letter back to `accepted` when they expire."""
        return self.name(f"retry.{delay:g}s")

    def queue_arguments(self, stage: str) -> dict[str, Any]:
        """Quorum queues; all but `dead` hand a message that keeps failing to `dead`, losing nothing.

        At-least-once dead-lettering needs `reject-publish` overflow: a full queue refuses new
        publishes (the publisher sees a nack) instead of silently dropping old messages.
        """
        arguments: dict[str, Any] = {"x-queue-type": "quorum"}
        if self.quorum_size:  # RabbitMQ holds a queue to it: changing it later means a new queue
            arguments["x-quorum-initial-group-size"] = self.quorum_size
        if stage == "ledger":
            return arguments
        if stage == "delay":  # no consumer: copies leave when they expire
            return arguments | {
                "x-dead-letter-exchange": self.accepted,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        if stage != "dead":
            arguments |= {
                "x-dead-letter-exchange": self.dead,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        if stage not in (*HOLDING, "parked"):
            # consumed queues only: looking at a holding queue (integrator show) returns what it
            # reads, which must not count toward moving it on
            arguments["x-delivery-limit"] = self.delivery_limit
        if stage in ("incoming", "validated") and self.max_backlog:
            # Admission control: past this backlog the broker nacks. On `incoming` the gateway
            # then answers 503; on `validated` the validator holds its deliveries and retries,
            # so a slow router backs up into `incoming` and the door, not into unbounded latency.
            arguments["x-max-length"] = self.max_backlog
        return arguments

    async def declare(self, channel: AbstractChannel, subscribers: tuple[str, ...] = ()) -> None:
        """Declare everything, idempotently, so any service may start first."""
        for stage in STAGES:
            exchange = await channel.declare_exchange(
                self.name(stage), aio_pika.ExchangeType.FANOUT, durable=True
            )
            queue = await self._declare_queue(channel, self.name(stage), stage)
            await queue.bind(exchange)
        await self.declare_subscribers(channel, subscribers)
        if self.ledger:
            await self._declare_ledger(channel)

    async def declare_subscribers(self, channel: AbstractChannel, subscribers: Iterable[str]) -> None:
        """The `accepted` exchange and a queue per subscriber, bound by the subscriber's name."""
        accepted = await channel.declare_exchange(
            self.accepted,
            aio_pika.ExchangeType.DIRECT,
            durable=True,
            arguments={"alternate-exchange": self.unrouted},
        )
        for subscriber in subscribers:
            queue = await self._declare_queue(channel, self.accepted_queue(subscriber), "accepted")
            await queue.bind(accepted, routing_key=subscriber)

    async def declare_delivery(self, channel: AbstractChannel, subscribers: Iterable[str]) -> None:
        """The delay queues of every retry, and a parked queue per endpoint subscriber."""
        for delay in self.delays:
            exchange = await channel.declare_exchange(
                self.delay_exchange(delay), aio_pika.ExchangeType.FANOUT, durable=True
            )
            queue = await self._declare_queue(channel, exchange.name, "delay")
            await queue.bind(exchange)
        for subscriber in subscribers:
            await self._declare_queue(channel, self.parked_queue(subscriber), "parked")

    async def _declare_ledger(self, channel: AbstractChannel) -> None:
        """The ledger's queue takes the batch events (the gateway's receipts carry the payload)
        and a copy of every dead message (the reason travels only there). It dead-letters
        nowhere (`dead` feeds it) and holds whatever PostgreSQL has not taken yet, so it has no
        limits. Its binding to `incoming`, from before the gateway sent receipts, is undone:
        it would record every message twice over."""
        events = await channel.declare_exchange(
            self.ledger_events, aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await self._declare_queue(channel, self.ledger_events, "ledger")
        for exchange in (events.name, self.dead):
            await queue.bind(exchange)
        await queue.unbind(self.incoming)

    async def _declare_queue(self, channel: AbstractChannel, name: str, stage: str) -> AbstractQueue:
        arguments = self.queue_arguments(stage)
        try:
            return await channel.declare_queue(name, durable=True, arguments=arguments)
        except ChannelPreconditionFailed:
            raise TopologyConflict(
                f"queue {name} exists with other arguments than {arguments}; drain and delete it "
                "(rabbitmqctl delete_queue), or choose another INTEGRATOR_PREFIX"
            ) from None


async def queue_state(channel: AbstractChannel, name: str) -> tuple[int, int] | None:
    """A queue's depth and consumers as the broker says them; None if there is no such queue
    (the broker then closes the channel, which is reopened for the next look)."""
    try:
        declared = (await channel.declare_queue(name, passive=True)).declaration_result
    except aio_pika.exceptions.ChannelClosed:
        await channel.reopen()
        return None
    return declared.message_count or 0, declared.consumer_count or 0
