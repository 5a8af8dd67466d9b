"""What the router does with one valid message."""

from __future__ import annotations

import orjson
from aiormq.abc import DeliveredMessage

from integrator import envelope
from integrator.consumer import Handler
from integrator.ids import child_message_id
from integrator.publisher import Outbound
from integrator.subscriptions import Subscriptions
from integrator.topology import Topology


def routing_handler(subscriptions: Subscriptions, topology: Topology) -> Handler:
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
            return [Outbound(topology.dead, "", delivery.body, envelope.with_headers(props, reason=reason))]
        if not subscribers:
            return [Outbound(topology.unrouted, message, delivery.body, props)]
        received_at = (props.headers or {}).get("received_at")
        outs = []
        for subscriber in subscribers:
            child_id = child_message_id(parent_id, subscriber)
            headers = {"parent_id": parent_id, "store_id": store_id, "subscriber": subscriber}
            if received_at is not None:
                headers["received_at"] = received_at
            body = envelope.dump(message, child_id, store_id, payload_json, parent_id=parent_id)
            outs.append(
                Outbound(topology.accepted, subscriber, body, envelope.properties(message, child_id, headers))
            )
        return outs

    return route
