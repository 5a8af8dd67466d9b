"""The overview's figures: every queue of the hub with its depth and consumers (over AMQP), its
rates in and out (from RabbitMQ's management plugin, where INTEGRATOR_MANAGEMENT_URL names it;
AMQP has no rates, so without it the depth's net change per second stands in), and the messages
received per minute over the last hour (from the ledger), drawn as an SVG bar chart on the
server. No queue is looked into: a look counts a delivery against each message it takes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
from aio_pika.abc import AbstractChannel
from markupsafe import Markup
from yarl import URL

from integrator.db import connection
from integrator.subscriptions import Subscriptions
from integrator.topology import HOLDING, STAGES, Topology, queue_state

MANAGEMENT_TIMEOUT = aiohttp.ClientTimeout(total=3)


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    held_stage: str | None  # the page of a holding queue: `rejected`, `parked.erp`
    depth: int | None  # None: the queue is not there
    consumers: int | None
    change_per_s: float | None  # net change of the depth since the previous look
    rate_in: float | None = None  # messages per second, from the management plugin
    rate_out: float | None = None


class QueueWatch:
    """Looks at the queues; keeps each look so the next can say how the depth moved."""

    def __init__(self, topology: Topology, management_url: str, vhost: str) -> None:
        self._topology = topology
        self._last: dict[str, tuple[float, int]] = {}
        self._management: tuple[URL, aiohttp.BasicAuth] | None = None  # the queues' URL, and whose
        self._http: aiohttp.ClientSession | None = None  # to the management API, made on first use
        if management_url:
            management = URL(management_url)
            queues = management.with_user(None).with_path(
                f"/api/queues/{quote(vhost, safe='')}", encoded=True
            )
            auth = aiohttp.BasicAuth(management.user or "guest", management.password or "guest")
            self._management = queues, auth

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def names(self, subscriptions: Subscriptions) -> list[tuple[str, str | None]]:
        """(queue, the stage of a holding queue) of every queue of the hub."""
        t = self._topology
        names = [(t.name(stage), stage if stage in HOLDING else None) for stage in STAGES]
        names.append((t.ledger_events, None))
        for s in subscriptions.subscribers:
            names.append((t.accepted_queue(s.name), None))
            if s.endpoint is not None:
                names.append((t.parked_queue(s.name), f"parked.{s.name}"))
        return names

    async def look(self, channel: AbstractChannel, subscriptions: Subscriptions) -> list[QueueRow]:
        rates = await self._rates()
        rows = []
        for name, stage in self.names(subscriptions):
            if (state := await queue_state(channel, name)) is None:  # not declared yet
                rows.append(QueueRow(name, stage, None, None, None))
                continue
            (depth, consumers), now = state, time.monotonic()
            before = self._last.get(name)
            self._last[name] = (now, depth)
            change = None
            if before is not None and now - before[0] >= 0.5:
                change = (depth - before[1]) / (now - before[0])
            rate_in, rate_out = rates.get(name, (None, None))
            rows.append(QueueRow(name, stage, depth, consumers, change, rate_in, rate_out))
        return rows

    async def _rates(self) -> dict[str, tuple[float, float]]:
        """Each queue's publish and deliver rates from the management plugin; none without it
        or while it does not answer."""
        if self._management is None:
            return {}
        url, auth = self._management
        columns = "name,message_stats.publish_details.rate,message_stats.deliver_get_details.rate"
        if self._http is None:
            self._http = aiohttp.ClientSession(auth=auth, timeout=MANAGEMENT_TIMEOUT)
        try:
            async with self._http.get(url, params={"columns": columns}) as response:
                response.raise_for_status()
                queues: list[dict[str, Any]] = await response.json()
        except (aiohttp.ClientError, TimeoutError):
            return {}
        return {q["name"]: _rates_of(q.get("message_stats") or {}) for q in queues}


def _rates_of(stats: dict[str, Any]) -> tuple[float, float]:
    return (stats.get("publish_details", {}).get("rate", 0.0),
            stats.get("deliver_get_details", {}).get("rate", 0.0))  # fmt: skip


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


def bar_chart(counts: list[int], width: int = 600, height: int = 120) -> Markup:
    """An SVG of one bar per count, labelled for screen readers with the total and the peak."""
    peak = max(counts) or 1
    bar = width / len(counts)
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - n / peak * height:.1f}" width="{bar - 1:.1f}" '
        f'height="{n / peak * height:.1f}"><title>{n}</title></rect>'
        for i, n in enumerate(counts)
    )
    label = f"messages received per minute over the last hour: {sum(counts)} in all, at most {max(counts)}"
    return Markup(  # numbers only: nothing in it comes from a message
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{label}" '
        f'preserveAspectRatio="none">{bars}</svg>'
    )
