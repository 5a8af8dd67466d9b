"""The gateway's HTTP API: pushing a message, checking one, the schema catalogue, and health."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from integrator import envelope
from integrator.errors import field_error
from integrator.ids import new_message_id
from integrator.publisher import Outbound
from integrator.schemas import SchemaCatalogue
from integrator.settings import Settings
from services.gateway.body import read_object
from services.gateway.broker import BrokerLink, BrokerUnavailable
from services.gateway.problems import Problem

log = logging.getLogger("integrator.gateway")

SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", BrokerLink)
CATALOGUE = web.AppKey("catalogue", SchemaCatalogue)


async def post_message(request: web.Request) -> web.Response:
    """POST /messages with `{message, store_id, payload}`."""
    doc = await read_object(request, request.app[SETTINGS].max_body_bytes)
    return await _accept(request, doc)


async def post_store_message(request: web.Request) -> web.Response:
    """POST /api/stores/{store_id}/messages with `{message, payload}`: the store comes from the path."""
    doc = await read_object(request, request.app[SETTINGS].max_body_bytes)
    store_id = request.match_info["store_id"]
    if doc.setdefault("store_id", store_id) != store_id:
        raise Problem(
            422,
            "invalid message envelope",
            [field_error("/store_id", "const", "differs from the store in the path")],
        )
    return await _accept(request, doc)


async def validate_message(request: web.Request) -> web.Response:
    """POST /messages/validate: a dry run with the validator's own checks; publishes nothing."""
    doc = await read_object(request, request.app[SETTINGS].max_body_bytes)
    errors = request.app[CATALOGUE].errors(doc)
    if errors:
        raise Problem(422, "invalid message", errors)
    return web.json_response({"valid": True})


async def list_schemas(request: web.Request) -> web.Response:
    """GET /schemas: the message types that have a schema."""
    return web.json_response(
        [
            {"message": s.message_type, "title": s.title, "description": s.description}
            for s in sorted(request.app[CATALOGUE], key=lambda s: s.message_type)
        ]
    )


async def get_schema(request: web.Request) -> web.Response:
    """GET /schemas/{type}: one schema, as the validator uses it."""
    message_type = request.match_info["message_type"]
    if message_type not in request.app[CATALOGUE]:
        raise Problem(404, f"no schema for message type {message_type}")
    return web.json_response(request.app[CATALOGUE][message_type].document, dumps=_dumps)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


async def _accept(request: web.Request, doc: dict) -> web.Response:
    errors = envelope.envelope_errors(doc)
    if errors:
        raise Problem(422, "invalid message envelope", errors)
    message, store_id = doc["message"], doc["store_id"]
    message_id = new_message_id()
    body = envelope.dump(message, message_id, store_id, orjson.dumps(doc["payload"]))
    headers = {"store_id": store_id, "received_at": envelope.now_ms()}
    broker = request.app[BROKER]
    try:
        await broker.publish(
            Outbound(
                broker.topology.incoming, message, body, envelope.properties(message, message_id, headers)
            )
        )
    except BrokerUnavailable as exc:
        log.warning("message not accepted: broker unavailable", extra={"error": str(exc)})
        retry_after = str(request.app[SETTINGS].retry_after_seconds)
        raise Problem(503, "broker unavailable; retry later", headers={"Retry-After": retry_after}) from None
    return web.Response(status=202, body=body, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    """The process is alive."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready to accept messages: connected to the broker with the topology declared."""
    if request.app[BROKER].ready:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not connected to the broker"}, status=503)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/messages", post_message)
    app.router.add_post("/messages/validate", validate_message)
    app.router.add_get("/schemas", list_schemas)
    app.router.add_get("/schemas/{message_type}", get_schema)
    app.router.add_post("/api/stores/{store_id}/messages", post_store_message)
