"""What a worker's batch did, told to the ledger in one small message published with the batch.

The ledger sees incoming and dead messages through its queue's bindings; what the validator
and the router decide in between (validated, rejected, routed with its copies, unrouted) reaches
it here, one message per batch rather than one per decision, so the pipeline pays a few
microseconds a message for the ledger and never waits on PostgreSQL.

    {"at": <unix ms>, "events": [["validated", id, warnings], ["rejected", id, errors, warnings],
                                 ["routed", parent_id, [[copy_id, subscriber], ...]], ["unrouted", id]]}
"""

from __future__ import annotations

from collections.abc import Iterable
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
        self._validated, self._rejected = topology.validated, topology.rejected
        self._accepted, self._unrouted = topology.accepted, topology.unrouted

    def entry(self, outs: Iterable[Outbound]) -> Outbound | None:
        """The batch event for `outs` (what one batch produced); None if it decided nothing."""
        events: list[list[Any]] = []
        copies: dict[str, list[list[str]]] = {}
        for out in outs:
            props = out.properties
            if out.exchange == self._accepted:
                parent_id = props.headers["parent_id"]
                if parent_id not in copies:
                    copies[parent_id] = []
                    events.append(["routed", parent_id, copies[parent_id]])
                copies[parent_id].append([props.message_id, out.routing_key])
            elif out.exchange == self._validated:
                events.append(["validated", props.message_id, (props.headers or {}).get("warnings", [])])
            elif out.exchange == self._rejected:
                headers = props.headers or {}
                events.append(["rejected", props.message_id, headers["errors"], headers.get("warnings", [])])
            elif out.exchange == self._unrouted:
                events.append(["unrouted", props.message_id])
        if not events:
            return None
        body = orjson.dumps({"at": envelope.now_ms(), "events": events})
        return Outbound(self._exchange, "", body, envelope.properties(EVENTS_TYPE, new_message_id(), {}))
