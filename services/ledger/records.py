"""What the ledger's deliveries say, folded into one row per message and per copy for a batch.

Two kinds arrive on the ledger's queue: the batch events of the gateway and the workers
(integrator/journal.py), and a copy of every dead message. Folding a batch first means a
message whose receipt, validation and routing arrive together is written once, and the order
in which they arrive does not matter: a row's state is that of its latest event, ties going to
the later stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
from aiormq.abc import DeliveredMessage

from integrator import envelope, metrics
from integrator.ids import day_of, is_object_id
from integrator.topology import Topology

log = logging.getLogger("integrator.ledger")

RANK = {"accepted": 0, "validated": 1, "routed": 2, "unrouted": 2, "rejected": 2, "dead": 3}


@dataclass(slots=True)
class Original:
    day: date
    message_id: str
    state: str = ""
    updated_at: int = -1  # unix ms of the latest event
    message: str | None = None
    store_id: str | None = None
    received_at: int | None = None
    envelope: str | None = None
    errors: list | None = None
    warnings: list | None = None
    children: list | None = None
    routing: list | None = None  # each subscriber's outcome (integrator.subscriptions.Outcome)
    timeline: list[list[Any]] = field(default_factory=list)

    def happened(self, at: int, state: str, detail: Any = None) -> bool:
        """Add an event to the timeline; True if it is now the latest (and sets the state)."""
        self.timeline.append([at, state] if detail is None else [at, state, detail])
        if (at, RANK[state]) < (self.updated_at, RANK.get(self.state, -1)):
            return False
        self.state, self.updated_at = state, at
        return True


@dataclass(slots=True)
class Copy:
    day: date
    message_id: str
    parent_id: str
    subscriber: str
    state: str
    updated_at: int
    reason: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)  # at its endpoint, in any order


class Batch:
    """The rows one batch of deliveries writes."""

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self.originals: dict[str, Original] = {}
        self.copies: dict[str, Copy] = {}
        self.first_seen: list[int] = []  # received_at of each receipt: the ledger's lag

    def original(self, message_id: str) -> Original:
        row = self.originals.get(message_id)
        if row is None:
            row = self.originals[message_id] = Original(day_of(message_id), message_id)
        return row

    def add(self, delivery: DeliveredMessage) -> None:
        exchange = delivery.delivery.exchange
        try:
            if exchange == self._topology.ledger_events:
                self._events(orjson.loads(delivery.body))
            elif exchange == self._topology.dead:
                self._dead(delivery)
            else:
                raise ValueError(f"from an exchange the ledger does not read: {exchange!r}")
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # orjson's errors are ValueErrors
            metrics.ledger_skipped.labels("malformed").inc()
            log.warning(
                "not recorded: malformed",
                extra={"message_id": delivery.header.properties.message_id, "error": repr(exc)},
            )

    def _events(self, doc: dict[str, Any]) -> None:
        at = doc["at"]
        for event in doc["events"]:
            kind, message_id = event[0], _object_id(event[1])
            if kind == "attempt":  # of a copy, at its endpoint
                parent_id, subscriber, attempt, state = event[2:]
                self._copy(at, message_id, _object_id(parent_id), subscriber, state, attempt=attempt)
                continue
            row = self.original(message_id)
            if kind == "accepted":
                self._accepted(at, row, *event[2:])
            elif kind == "validated":
                if row.happened(at, kind):
                    row.errors, row.warnings = [], event[2]
            elif kind == "rejected":
                if row.happened(at, kind):
                    row.errors, row.warnings = event[2], event[3]
            elif kind == "routed":
                row.happened(at, kind)
                row.children, row.routing = event[2], event[3] if len(event) > 3 else None
                for copy_id, subscriber in event[2]:
                    self._copy(at, _object_id(copy_id), message_id, subscriber, "pending")
            elif kind == "unrouted":
                row.happened(at, kind)
                row.routing = event[2] if len(event) > 2 else None
            else:
                raise ValueError(f"unknown event {kind!r}")

    def _accepted(
        self, at: int, row: Original, message: str, store_id: str, received_at: int, warnings: list, body: str
    ) -> None:
        row.message, row.store_id, row.envelope = message, store_id, body
        if isinstance(received_at, int):
            row.received_at = received_at
            self.first_seen.append(received_at)
        if row.happened(at, "accepted"):
            row.errors, row.warnings = [], warnings

    def _dead(self, delivery: DeliveredMessage) -> None:
        props = delivery.header.properties
        headers = props.headers or {}
        message_id = _object_id(props.message_id)
        reason = dead_reason(headers)
        if "x-death" in headers and headers["x-death"][0].get("queue") == self._topology.ledger_events:
            return  # cannot happen (the ledger's queue dead-letters nowhere), and must not loop
        at = envelope.now_ms()
        parent_id, subscriber = headers.get("parent_id"), headers.get("subscriber")
        if parent_id is not None and subscriber is not None:
            self._copy(at, message_id, _object_id(parent_id), subscriber, "dead", reason)
        else:
            self.original(message_id).happened(at, "dead", reason)

    def _copy(
        self,
        at: int,
        copy_id: str,
        parent_id: str,
        subscriber: str,
        state: str,
        reason: str | None = None,
        attempt: dict[str, Any] | None = None,
    ) -> None:
        """A copy's latest state wins; its attempts add up, whatever their order."""
        known = self.copies.get(copy_id)
        if known is None or at >= known.updated_at:
            attempts = [] if known is None else known.attempts
            known = self.copies[copy_id] = Copy(
                day_of(parent_id), copy_id, parent_id, subscriber, state, at, reason, attempts
            )
        if attempt is not None:
            known.attempts.append(attempt)


def dead_reason(headers: dict[str, Any]) -> str:
    """Why a message is on `dead`: the reason a service gave, or the broker's."""
    if isinstance(headers.get("reason"), str):
        return headers["reason"]
    deaths = headers.get("x-death") or [{}]
    death = deaths[0]
    if death.get("reason") == "delivery_limit":
        return f"delivery limit reached on {death.get('queue')}"
    return f"set aside from {death.get('queue')} ({death.get('reason')})"


def _object_id(value: Any) -> str:
    if not is_object_id(value):
        raise ValueError(f"not an ObjectId: {value!r}")
    return value
