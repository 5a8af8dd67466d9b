"""The overview's figures: every queue of the hub with its depth, consumers and net change per
second (from AMQP; per-queue rates in and out need RabbitMQ's management plugin, which the hub
does not assume), and the messages received per minute over the last hour (from the ledger),
drawn as an SVG bar chart on the server."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel

from integrator.db import connection
from integrator.subscriptions import Subscriptions
from integrator.topology import STAGES, Topology


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    kind: str  # stage, subscriber, parked
    depth: int | None  # None: the queue is not there
    consumers: int | None
    change_per_s: float | None  # since the previous look, over a few seconds


class QueueWatch:
    """Looks at the queues; keeps each look so the next can say how the depth moved."""

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._last: dict[str, tuple[float, int]] = {}

    def names(self, subscriptions: Subscriptions) -> list[tuple[str, str]]:
        t = self._topology
        names = [(t.name(stage), "stage") for stage in STAGES] + [(t.ledger_events, "stage")]
        for s in subscriptions.subscribers:
            names.append((t.accepted_queue(s.name), "subscriber"))
            if s.endpoint is not None:
                names.append((t.parked_queue(s.name), "parked"))
        return names

    async def look(self, channel: AbstractChannel, subscriptions: Subscriptions) -> list[QueueRow]:
        rows = []
        for name, kind in self.names(subscriptions):
            try:
                declared = (await channel.declare_queue(name, passive=True)).declaration_result
            except aio_pika.exceptions.ChannelClosed:  # not declared yet; the channel needs reopening
                await channel.reopen()
                rows.append(QueueRow(name, kind, None, None, None))
                continue
            depth, now = declared.message_count or 0, time.monotonic()
            before = self._last.get(name)
            self._last[name] = (now, depth)
            change = None
            if before is not None and now - before[0] >= 0.5:
                change = (depth - before[1]) / (now - before[0])
            rows.append(QueueRow(name, kind, depth, declared.consumer_count or 0, change))
        return rows


async def received_per_minute(db: asyncpg.Pool, store_id: str | None) -> list[int]:
    """Originals received in each of the last 60 minutes, oldest first."""
    now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    since = now - timedelta(minutes=60)
    async with connection(db) as conn:
        rows = await conn.fetch(
            "SELECT date_trunc('minute', received_at) AS minute, count(*) AS n FROM messages"
            " WHERE received_at >= $1 AND day >= $2 AND ($3::text IS NULL OR store_id = $3)"
            " GROUP BY 1",
            since, (since - timedelta(days=1)).date(), store_id,
        )  # fmt: skip
    counts = {row["minute"]: row["n"] for row in rows}
    return [counts.get(since + timedelta(minutes=i), 0) for i in range(60)]


def bar_chart(counts: list[int], width: int = 600, height: int = 120) -> str:
    """An SVG of one bar per count, labelled for screen readers with the total and the peak."""
    peak = max(counts) or 1
    bar = width / len(counts)
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - n / peak * height:.1f}" width="{bar - 1:.1f}" '
        f'height="{n / peak * height:.1f}"><title>{n}</title></rect>'
        for i, n in enumerate(counts)
    )
    label = f"messages received per minute over the last hour: {sum(counts)} in all, at most {max(counts)}"
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{label}" '
        f'preserveAspectRatio="none">{bars}</svg>'
    )
