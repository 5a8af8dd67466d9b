"""What the router does with a batch of valid messages.

Each message is matched against the subscriptions in force when its batch began: patterns,
stores, then filters. The identities of the subscribers that have identifiers are claimed for
the whole batch in one round trip to PostgreSQL; a subscriber that already received a message's
identity gets no copy. Every subscriber's outcome goes to the ledger with the batch, so anyone
can ask why a subscriber did not get a message. A message no subscriber takes by type and store
is held on `unrouted` (adding a subscriber and replaying it delivers it); one that subscribers
declined by filter or identifier is done with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage

from integrator import envelope, metrics
from integrator.consumer import BatchHandler, Decision, guarded
from integrator.db import Persistence
from integrator.ids import child_message_id
from integrator.logs import message_line
from integrator.publisher import Outbound
from integrator.subscriptions import (
    FILTER,
    IDENTIFIER,
    STORE,
    TYPE,
    Identity,
    Outcome,
    Subscriber,
    Subscriptions,
)
from integrator.topology import Topology
from services.router.identities import Claim, Identities, Key

log = logging.getLogger("integrator.router")


def _arrival(count: Callable[[], None], received_at: int) -> Callable[[], None]:
    """`count`, and the time from the gateway's receipt to the confirmed arrival of the copies."""

    def confirmed() -> None:
        count()
        metrics.end_to_end_seconds.observe(max(0, envelope.now_ms() - received_at) / 1000)

    return confirmed


@dataclass(slots=True)
class Plan:
    """A message matched, its copies not yet made: they wait for the batch's identity check."""

    delivery: DeliveredMessage
    message: str
    parent_id: str
    store_id: str
    payload: Any
    outcomes: list[Outcome]
    takers: list[tuple[Subscriber, Outcome, Identity | None]]


class Router:
    def __init__(
        self,
        subscriptions: Subscriptions,
        topology: Topology,
        identities: Identities,
        persistence: Persistence,
    ) -> None:
        self.subscriptions = subscriptions  # replaced whole on reload, read once per batch
        self._topology = topology
        self._identities = identities
        self._persistence = persistence
        self._routed: dict[str, Callable[[], None]] = {}  # each subscriber's counter, by name

    async def on(self, channel: AbstractChannel) -> BatchHandler:
        """The batch handler of one session: every subscriber's queue is declared now, and a
        subscriber added by a reload has its queue declared before its first copy."""
        declared: set[str] = set()

        async def declare(names: list[str]) -> None:
            await self._topology.declare_subscribers(channel, names)
            declared.update(names)
            for name in names:  # counted from 0, so a subscriber that gets nothing shows it
                self._routed.setdefault(name, metrics.routed.labels(name).inc)

        await declare(list(self.subscriptions.names))

        async def decide(batch: list[DeliveredMessage]) -> list[Decision | None] | None:
            subscriptions = self.subscriptions  # one file for the whole batch
            if new := [name for name in subscriptions.names if name not in declared]:
                await declare(new)
            plan = guarded(partial(self._match, subscriptions), "router")  # the same file, after the await
            plans = [plan(delivery) for delivery in batch]
            claims = [
                Claim(self._topology.accepted_queue(subscriber.name), identity.digest,
                      child_message_id(plan.parent_id, subscriber.name), subscriber.identifier_days)
                for plan in plans if isinstance(plan, Plan)
                for subscriber, _, identity in plan.takers if identity is not None and identity.digest
            ]  # fmt: skip
            holders: dict[Key, str] = {}
            if claims:

                async def claim() -> None:
                    holders.update(await self._identities.holders(claims))

                if not await self._persistence.until_done(claim, len(batch)):
                    return None
            return [self._copies(plan, holders) if isinstance(plan, Plan) else plan for plan in plans]

        return decide

    def _match(self, subscriptions: Subscriptions, delivery: DeliveredMessage) -> Decision | Plan:
        props = delivery.header.properties
        try:
            doc = orjson.loads(delivery.body)
            message, parent_id, store_id, payload = (
                doc["message"], doc["message_id"], doc["store_id"], doc["payload"]
            )  # fmt: skip
            outcomes, takers = subscriptions.route(message, store_id, payload)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            # Only something that bypassed the validator gets here; keep it where a person looks.
            reason = f"not a validated message: {type(exc).__name__}: {exc}"
            metrics.dead_lettered.labels("router").inc()
            log.warning("dead-lettered", extra={"message_id": props.message_id, "reason": reason})
            noted = envelope.with_headers(props, reason=reason)
            return Decision([Outbound(self._topology.dead, "", delivery.body, noted)])
        if not takers and all(outcome[1] in (TYPE, STORE) for outcome in outcomes):
            metrics.unrouted.inc()
            message_line(
                log, "unrouted", {"message_id": parent_id, "message_type": message, "store_id": store_id}
            )
            out = Outbound(self._topology.unrouted, message, delivery.body, props)
            return Decision([out], ["unrouted", parent_id, outcomes])
        with_identities = [
            (subscriber, outcome, subscriber.identity(payload) if subscriber.identifiers else None)
            for subscriber, outcome in takers
        ]
        return Plan(delivery, message, parent_id, store_id, payload, outcomes, with_identities)

    def _copies(self, plan: Plan, holders: dict[Key, str]) -> Decision:
        """The copies of a matched message for the subscribers whose identity check it passed."""
        outs: list[Outbound] = []
        children = []
        payload_json = b""
        for subscriber, outcome, identity in plan.takers:
            name = subscriber.name
            child_id = child_message_id(plan.parent_id, name)
            if identity is not None and identity.digest is not None:
                holder = holders[(self._topology.accepted_queue(name), identity.digest)]
                if holder != child_id:
                    outcome[1:] = [IDENTIFIER, identity.shown, holder]
                    metrics.declined.labels(name, IDENTIFIER).inc()
                    continue
            outcome.extend((None if identity is None else identity.shown, child_id))
            payload_json = payload_json or orjson.dumps(plan.payload)  # encoded once for all copies
            outs.append(self._copy(plan, name, child_id, payload_json, first=not outs))
            children.append([child_id, name])
        for outcome in plan.outcomes:
            if outcome[1] == FILTER:
                metrics.declined.labels(outcome[0], FILTER).inc()
        if not outs:
            message_line(log, "declined", {"message_id": plan.parent_id, "message_type": plan.message,
                                           "store_id": plan.store_id})  # fmt: skip
            return Decision([], ["unrouted", plan.parent_id, plan.outcomes])
        return Decision(outs, ["routed", plan.parent_id, children, plan.outcomes])

    def _copy(self, plan: Plan, name: str, child_id: str, payload_json: bytes, first: bool) -> Outbound:
        noted = plan.delivery.header.properties.headers or {}
        received_at, warnings = noted.get("received_at"), noted.get("warnings")
        headers = {"parent_id": plan.parent_id, "store_id": plan.store_id, "subscriber": name}
        if received_at is not None:
            headers["received_at"] = received_at
        if warnings:
            headers["warnings"] = warnings
        body = envelope.dump(plan.message, child_id, plan.store_id, payload_json, parent_id=plan.parent_id)
        confirmed = self._routed[name]
        if first and isinstance(received_at, int):  # the copies are confirmed together
            confirmed = _arrival(confirmed, received_at)
        message_line(log, "routed", {
            "message_id": child_id, "parent_id": plan.parent_id, "message_type": plan.message,
            "store_id": plan.store_id, "subscriber": name})  # fmt: skip
        properties = envelope.properties(plan.message, child_id, headers)
        return Outbound(self._topology.accepted, name, body, properties, confirmed)
