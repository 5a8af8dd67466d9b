"""What the router does with one valid message."""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from aiormq.abc import DeliveredMessage

from integrator import envelope, metrics
from integrator.consumer import Handler
from integrator.ids import child_message_id
from integrator.logs import message_line
from integrator.publisher import Outbound
from integrator.subscriptions import Subscriptions
from integrator.topology import Topology

log = logging.getLogger("integrator.router")


def _arrival(count: Callable[[], None], received_at: int) -> Callable[[], None]:
    """`count`, and the time from the gateway's receipt to the confirmed arrival of the copies."""

    def confirmed() -> None:
        count()
        metrics.end_to_end_seconds.observe(max(0, envelope.now_ms() - received_at) / 1000)

    return confirmed


def routing_handler(subscriptions: Subscriptions, topology: Topology) -> Handler:
    routed = {name: metrics.routed.labels(name) for name in subscriptions.names}

    def route(delivery: DeliveredMessage) -> list[Outbound]:
        props = delivery.header.properties
        try:
            doc = orjson.loads(delivery.body)
            message, parent_id, store_id = doc["message"], doc["message_id"], doc["store_id"]
            subscribers = subscriptions.match(message, store_id)
            payload_json = orjson.dumps(doc["payload"])
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            # Only something that bypassed the validator gets here; keep it where a person looks.
            reason = f"not a validated message: {type(exc).__name__}: {exc}"
            metrics.dead_lettered.labels("router").inc()
            log.warning("dead-lettered", extra={"message_id": props.message_id, "reason": reason})
            return [Outbound(topology.dead, "", delivery.body, envelope.with_headers(props, reason=reason))]
        if not subscribers:
            metrics.unrouted.inc()
            message_line(
                log, "unrouted", {"message_id": parent_id, "message_type": message, "store_id": store_id}
            )
            return [Outbound(topology.unrouted, message, delivery.body, props)]
        noted = props.headers or {}
        received_at, warnings = noted.get("received_at"), noted.get("warnings")
        outs = []
        for subscriber in subscribers:
            child_id = child_message_id(parent_id, subscriber)
            headers = {"parent_id": parent_id, "store_id": store_id, "subscriber": subscriber}
            if received_at is not None:
                headers["received_at"] = received_at
            if warnings:
                headers["warnings"] = warnings
            body = envelope.dump(message, child_id, store_id, payload_json, parent_id=parent_id)
            props_out = envelope.properties(message, child_id, headers)
            confirmed = routed[subscriber].inc
            if not outs and isinstance(received_at, int):  # the copies are confirmed together
                confirmed = _arrival(confirmed, received_at)
            outs.append(Outbound(topology.accepted, subscriber, body, props_out, confirmed))
            fields = {"message_id": child_id, "parent_id": parent_id, "message_type": message,
                      "store_id": store_id, "subscriber": subscriber}  # fmt: skip
            message_line(log, "routed", fields)
        return outs

    return route
