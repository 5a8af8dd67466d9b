"""What the validator does with one incoming message."""

from __future__ import annotations

import orjson
from aiormq.abc import DeliveredMessage

from integrator.consumer import Handler
from integrator.envelope import with_headers
from integrator.errors import field_error
from integrator.publisher import Outbound
from integrator.schemas import SchemaCatalogue
from integrator.topology import Topology


def validation_handler(catalogue: SchemaCatalogue, topology: Topology) -> Handler:
    def validate(delivery: DeliveredMessage) -> list[Outbound]:
        props = delivery.header.properties
        try:
            doc = orjson.loads(delivery.body)
        except orjson.JSONDecodeError as exc:
            errors = [field_error("", "json", f"body is not valid JSON: {exc}")]
        else:
            errors = catalogue.errors(doc, stored=True)
        if errors:
            return [Outbound(topology.rejected, "", delivery.body, with_headers(props, errors=errors))]
        return [Outbound(topology.validated, doc["message"], delivery.body, props)]

    return validate
