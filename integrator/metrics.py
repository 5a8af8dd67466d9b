"""Every Prometheus metric of the hub, defined once, and which service exports which. Labels stay
bounded: no ids, and message types outside the schema catalogue are folded into "other"."""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

requests = Counter(
    "integrator_gateway_requests_total",
    "Pushes answered by the gateway, by outcome: accepted, invalid, refused (at capacity), "
    "denied (credentials), limited (store rate), unavailable (no broker).",
    ["outcome"],
    registry=None,
)
validated = Counter(
    "integrator_messages_validated_total",
    "Messages checked by the validator, by type and outcome (accepted, rejected) and, for "
    "rejections, the reason class (json, envelope, schema, no_schema).",
    ["message", "outcome", "reason"],
    registry=None,
)
routed = Counter(
    "integrator_messages_routed_total", "Copies delivered to accepted queues.", ["subscriber"], registry=None
)
unrouted = Counter(
    "integrator_messages_unrouted_total", "Valid messages no subscription matched.", registry=None
)
declined = Counter(
    "integrator_copies_declined_total",
    "Copies not made for a subscriber whose patterns and stores took the message, by why:"
    " filter or identifier.",
    ["subscriber", "outcome"],
    registry=None,
)
subscriptions_reloads = Counter(
    "integrator_subscriptions_reloads_total",
    "Changes to the subscriptions file: loaded, or refused (the old subscriptions stay in force).",
    ["outcome"],
    registry=None,
)
subscriptions_valid = Gauge(
    "integrator_subscriptions_file_valid",
    "1 while the subscriptions file on disk is the one in force, 0 while a broken change is refused.",
    registry=None,
)
dead_lettered = Counter(
    "integrator_messages_dead_lettered_total",
    "Deliveries a service moved to the dead queue itself (not a validated message).",
    ["service"],
    registry=None,
)
handler_failures = Counter(
    "integrator_handler_failures_total",
    "Deliveries whose handling raised: returned to their queue the first time, set aside after.",
    ["service"],
    registry=None,
)
set_aside = Counter(
    "integrator_set_aside_total",
    "Deliveries sent to dead at once: their handling raised on redelivery too, or produced a "
    "message that can never be published (no message_id, properties larger than a frame).",
    ["service"],
    registry=None,
)
confirm_seconds = Histogram(
    "integrator_publish_confirm_seconds",
    "Time from publishing a message to the broker's confirm.",
    ["service"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
end_to_end_seconds = Histogram(
    "integrator_end_to_end_seconds",
    "Time from gateway receipt to the copy's confirmed arrival on its accepted queue.",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
in_flight = Gauge(
    "integrator_in_flight",
    "Messages a service holds: publishes awaiting confirms (gateway) or deliveries in hand (workers).",
    ["service"],
)

ledger_recorded = Counter(
    "integrator_ledger_recorded",
    "Rows the ledger wrote (inserted or updated), by table.",
    ["table"],
    registry=None,
)
ledger_skipped = Counter(
    "integrator_ledger_skipped",
    "Ledger deliveries not recorded, by reason: malformed, expired (older than retention), unwritable.",
    ["reason"],
    registry=None,
)
ledger_write_seconds = Histogram(
    "integrator_ledger_write_seconds",
    "Time to write one batch to PostgreSQL.",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
ledger_lag_seconds = Histogram(
    "integrator_ledger_lag_seconds",
    "Time from gateway receipt to the message's first row in the ledger.",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
database_up = Gauge(
    "integrator_database_up",
    "1 when the last PostgreSQL write succeeded, 0 while it is unavailable.",
    registry=None,
)

delivery_attempts = Counter(
    "integrator_delivery_attempts",
    "Requests to endpoints, by subscriber and outcome: 2xx, 3xx, 4xx, 5xx, error (no answer).",
    ["subscriber", "outcome"],
    registry=None,
)
delivery_seconds = Histogram(
    "integrator_delivery_seconds",
    "Time from a request to an endpoint to its answer, or to giving up on one.",
    ["subscriber"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
endpoint_queue_depth = Gauge(
    "integrator_endpoint_queue_depth",
    "Copies waiting on an endpoint subscriber's queue, read every few seconds.",
    ["subscriber"],
    registry=None,
)
circuit_state = Gauge(
    "integrator_endpoint_circuit_state",
    "An endpoint's circuit: 0 closed (sending), 1 open (failing: waiting), 2 half-open (probing).",
    ["subscriber"],
    registry=None,
)
endpoint_disabled = Gauge(
    "integrator_endpoint_disabled",
    "1 while an endpoint is disabled (it answered 410 Gone), until `integrator endpoints enable`.",
    ["subscriber"],
    registry=None,
)

WORKER = (handler_failures, set_aside, confirm_seconds, in_flight)
BY_SERVICE = {
    "gateway": (requests, confirm_seconds, in_flight),
    "validator": (validated, *WORKER),
    "router": (
        routed,
        unrouted,
        declined,
        subscriptions_reloads,
        subscriptions_valid,
        database_up,
        dead_lettered,
        end_to_end_seconds,
        *WORKER,
    ),
    "ledger": (ledger_recorded, ledger_skipped, ledger_write_seconds, ledger_lag_seconds, database_up),
    "deliverer": (
        delivery_attempts,
        delivery_seconds,
        endpoint_queue_depth,
        circuit_state,
        endpoint_disabled,
        confirm_seconds,
        database_up,
    ),
    "console": (),
}
"""Each service exports only what it keeps: no router counter stands at 0 on the gateway."""


def registry_for(service: str) -> CollectorRegistry:
    """The service's metrics, created unregistered above, with the process, platform and GC ones."""
    registry = CollectorRegistry()
    for collector in (*BY_SERVICE[service], PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


def message_label(message_type: object, known: frozenset[str]) -> str:
    return message_type if isinstance(message_type, str) and message_type in known else "other"
