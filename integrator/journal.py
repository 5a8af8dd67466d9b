"""What a worker's batch decided, told to the ledger in one small message published with the batch.

The ledger sees incoming and dead messages through its queue's bindings; what the validator
and the router decide in between reaches it here, one message per batch rather than one per
decision, so the pipeline pays a few microseconds a message for the ledger and never waits on
PostgreSQL. Each decision brings its own event (integrator.consumer.Decision):

    {"at": <unix ms>, "events": [["validated", id, warnings], ["rejected", id, errors, warnings],
                                 ["routed", parent_id, [[copy_id, subscriber], ...], routing],
                                 ["unrouted", id, routing]]}

`routing` is each subscriber's outcome, in file order (integrator.subscriptions.Outcome).
"""

from __future__ import annotations

from typing import Any

import orjson

from integrator import envelope
from integrator.ids import new_message_id
from integrator.publisher import Outbound
from integrator.topology import Topology

EVENTS_TYPE = "ledger:events"


class Journal:
    def __init__(self, topology: Topology) -> None:
        self._exchange = topology.ledger_events

    def entry(self, events: list[list[Any]]) -> Outbound:
        """The batch event telling of `events`."""
        body = orjson.dumps({"at": envelope.now_ms(), "events": events})
        return Outbound(self._exchange, "", body, envelope.properties(EVENTS_TYPE, new_message_id(), {}))
