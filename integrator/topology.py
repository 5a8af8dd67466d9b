"""Every exchange and queue of the hub, with its arguments, named under one prefix and declared here.

    gateway ─▶ <p>.incoming ─▶ validator ─▶ <p>.validated ─▶ router ─▶ <p>.accepted ─▶ <p>.accepted.<sub>
                                   │                            └─▶ <p>.unrouted
                                   └─▶ <p>.rejected
    any queue, after `delivery_limit` failed deliveries ──▶ <p>.dead

Each name is both an exchange and the queue bound to it; `accepted` is a direct exchange keyed by
subscriber, whose alternate exchange is `unrouted`, so even a copy for a queue someone deleted is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from integrator.settings import Settings

STAGES = ("incoming", "validated", "rejected", "unrouted", "dead")
"""Queues every service declares; each is fed by a fanout exchange of the same name."""


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str
    delivery_limit: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        return cls(settings.prefix, settings.delivery_limit)

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

    def accepted_queue(self, subscriber: str) -> str:
        return f"{self.accepted}.{subscriber}"

    def queue_arguments(self, stage: str) -> dict[str, Any]:
        """Quorum queues; all but `dead` hand a message that keeps failing to `dead`, losing nothing.

        At-least-once dead-lettering needs `reject-publish` overflow: a full queue refuses new
        publishes (the publisher sees a nack) instead of silently dropping old messages.
        """
        arguments: dict[str, Any] = {"x-queue-type": "quorum"}
        if stage != "dead":
            arguments |= {
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dead,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        return arguments

    async def declare(self, channel: AbstractChannel, subscribers: tuple[str, ...] = ()) -> None:
        """Declare everything, idempotently, so any service may start first."""
        for stage in STAGES:
            exchange = await channel.declare_exchange(
                self.name(stage), aio_pika.ExchangeType.FANOUT, durable=True
            )
            queue = await channel.declare_queue(
                self.name(stage), durable=True, arguments=self.queue_arguments(stage)
            )
            await queue.bind(exchange)
        accepted = await channel.declare_exchange(
            self.accepted,
            aio_pika.ExchangeType.DIRECT,
            durable=True,
            arguments={"alternate-exchange": self.unrouted},
        )
        for subscriber in subscribers:
            queue = await channel.declare_queue(
                self.accepted_queue(subscriber), durable=True, arguments=self.queue_arguments("accepted")
            )
            await queue.bind(accepted, routing_key=subscriber)
