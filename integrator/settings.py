"""Every setting of every service, read from environment variables, with defaults in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Settings:
    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    prefix: str = "integrator"
    subscriptions: Path = Path("config/subscriptions.yml")
    stores: Path = Path("config/stores.yml")
    auth: bool = True
    schemas_dir: Path = Path("schemas")
    strict_schemas: bool = False
    gateway_validates: bool = True  # refuse a payload with errors at the door (422), not only later
    gateway_host: str = "0.0.0.0"
    gateway_port: int = 8080
    health_host: str = "0.0.0.0"  # where the validator and router serve /healthz, /readyz, /metrics
    validator_port: int = 8081  # /healthz, /readyz, /metrics
    router_port: int = 8082
    ledger_port: int = 8084
    deliverer_port: int = 8085
    console_host: str = "0.0.0.0"
    console_port: int = 8083
    management_url: str = ""  # RabbitMQ's management API (the console's rates): http://user:pw@host:15672
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    allow_private_endpoints: bool = False  # endpoints on loopback, private and link-local addresses
    ledger: bool = True  # feed the ledger's queue: the gateway's receipts and the workers' batch events
    database_url: str = "postgresql://localhost:5432/integrator"
    retention_days: int = 30
    idempotency_hours: int = 24
    ledger_batch: int = 1000  # deliveries the ledger writes in one transaction, at most
    ledger_linger_ms: int = 250  # how long the ledger gathers a batch: a message's events fold into one write
    max_body_bytes: int = 1 << 20
    max_depth: int = 32  # nesting of objects and arrays in a request body
    max_keys: int = 1000  # keys of one object, or items of one array
    max_nodes: int = 10_000  # keys and items of a whole request body
    max_string_length: int = 65_536
    body_timeout: float = 10.0  # seconds for a request body to arrive, once its headers have
    prefetch: int = 128
    delivery_limit: int = 20
    quorum_size: int = 0  # replicas of each quorum queue; 0: RabbitMQ's default
    publish_timeout: float = 10.0
    retry_after_seconds: int = 1
    max_backlog: int = 250
    gateway_max_in_flight: int = 1024
    store_rate: float = 300.0
    store_burst: int = 600
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read `AMQP_URL` and `INTEGRATOR_<FIELD>` variables; a malformed value stops start-up."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_NAMES[f.name]
            raw = environ.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = _parse(type(f.default), raw)
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r}: {exc}") from None
        return cls(**values)


ENV_NAMES: dict[str, str] = {
    f.name: "AMQP_URL" if f.name == "amqp_url" else f"INTEGRATOR_{f.name.upper()}" for f in fields(Settings)
}
ENV_NAMES["subscriptions"] = "INTEGRATOR_SUBSCRIPTIONS"
ENV_NAMES["schemas_dir"] = "INTEGRATOR_SCHEMAS"


def _parse(kind: type, raw: str) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError("expected true or false")
    if kind is int:
        value = int(raw)
        if value < 0:
            raise ValueError("must not be negative")
        return value
    if kind is float:
        return float(raw)
    if kind is tuple:  # of seconds, comma-separated
        values = tuple(float(part) for part in raw.split(","))
        if not all(0 < value <= 7 * 86_400 for value in values):
            raise ValueError("expected seconds above 0 and at most a week, comma-separated")
        return values
    return kind(raw)
