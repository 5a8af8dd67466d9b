"""What the validator does with one incoming message."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiormq import spec
from aiormq.abc import DeliveredMessage

from integrator import metrics
from integrator.consumer import Decision, Handler
from integrator.envelope import with_headers
from integrator.errors import FieldError, field_error
from integrator.logs import message_line
from integrator.publisher import Outbound
from integrator.schemas import SchemaCatalogue
from integrator.topology import Topology

log = logging.getLogger("integrator.validator")


def validation_handler(catalogue: SchemaCatalogue, topology: Topology, max_body_bytes: int) -> Handler:
    """`max_body_bytes`: what is larger (published past the gateway) is refused unread."""
    known = catalogue.message_types
    too_large = [field_error("", "maxBytes", f"body is larger than {max_body_bytes} bytes; not read")]

    def validate(delivery: DeliveredMessage) -> Decision:
        props = delivery.header.properties
        doc, warnings = None, []
        if len(delivery.body) > max_body_bytes:
            errors = too_large
        else:
            try:
                doc = orjson.loads(delivery.body)
            except orjson.JSONDecodeError as exc:
                errors = [field_error("", "json", f"body is not valid JSON: {exc}")]
            else:
                errors, warnings = catalogue.check(doc, stored=True)
        message = doc.get("message") if isinstance(doc, dict) else None
        ids = {"message_id": props.message_id, "message_type": message,
               "store_id": doc.get("store_id") if isinstance(doc, dict) else None}  # fmt: skip
        if errors:
            metrics.validated.labels(
                metrics.message_label(message, known), "rejected", reason_class(errors)
            ).inc()
            message_line(log, "rejected", {**ids, "errors": len(errors), "first_error": errors[0]["path"]})
            noted = with_findings(props, warnings, errors=errors)
            event = ["rejected", props.message_id, errors, warnings]
            return Decision([Outbound(topology.rejected, "", delivery.body, noted)], event)
        metrics.validated.labels(metrics.message_label(message, known), "accepted", "").inc()
        message_line(log, "validated", ids)
        out = Outbound(topology.validated, message, delivery.body, with_findings(props, warnings))
        return Decision([out], ["validated", props.message_id, warnings])

    return validate


def with_findings(
    props: spec.Basic.Properties, warnings: list[FieldError], **headers: Any
) -> spec.Basic.Properties:
    """`props` with `headers` and the validator's own warnings, whatever an earlier hop said: the
    schema may have changed since the gateway looked, or nothing looked at all."""
    if not warnings and not headers and "warnings" not in (props.headers or {}):
        return props  # the common case: nothing to note, nothing to drop
    noted = with_headers(props, **headers)
    if warnings:
        noted.headers["warnings"] = warnings
    else:
        noted.headers.pop("warnings", None)
    return noted


def reason_class(errors: list[FieldError]) -> str:
    """A bounded label for why a message was rejected."""
    first = errors[0]
    if first["rule"] in ("json", "maxBytes"):
        return "json"
    if first["rule"] == "schema" and first["path"] == "/message":
        return "no_schema"
    # the schema is checked only once the envelope is right, so the errors are of one kind
    return "schema" if first["path"].startswith("/payload/") else "envelope"
