"""The gateway's HTTP API: pushing a message, checking one, the schema catalogue; health and metrics."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from integrator import envelope, metrics
from integrator.errors import field_error
from integrator.health import NOT_CONNECTED, add_health_routes
from integrator.http_json import json_answer
from integrator.ids import is_object_id, new_message_id
from integrator.logs import message_line
from integrator.publisher import Outbound
from services.gateway import idempotency
from services.gateway.auth import authenticate
from services.gateway.body import read_object
from services.gateway.broker import AtCapacity, BrokerUnavailable
from services.gateway.keys import BROKER, CATALOGUE, RATE_LIMITER, SETTINGS, TOKENS
from services.gateway.openapi import openapi_json
from services.gateway.problems import Problem

log = logging.getLogger("integrator.gateway")

ACCEPTED = metrics.requests.labels("accepted")  # looked up once: every push that succeeds counts


async def post_message(request: web.Request) -> web.Response:
    """POST /messages with `{message, store_id, payload}`."""
    pusher = authenticate(request)
    if (refusal := refuse_if_unavailable(request)) is not None:
        return refusal
    doc = await read_object(request, request.app[SETTINGS])
    return await _accept(request, doc, pusher)


async def post_store_message(request: web.Request) -> web.Response:
    """POST /api/stores/{store_id}/messages with `{message, payload}`: the store comes from the path."""
    pusher = authenticate(request)
    if (refusal := refuse_if_unavailable(request)) is not None:
        return refusal
    doc = await read_object(request, request.app[SETTINGS])
    store_id = request.match_info["store_id"]
    if doc.setdefault("store_id", store_id) != store_id:
        raise Problem(
            422,
            "invalid message envelope",
            [field_error("/store_id", "const", "differs from the store in the path")],
        )
    return await _accept(request, doc, pusher)


def refuse_if_unavailable(request: web.Request) -> web.Response | None:
    """The 503 for a push while the hub cannot take it, decided before its body is read so that
    shedding a flood costs as little as possible; the publish checks again. Returned rather than
    raised: the exception's way through the middleware cost a refusal a sixth more CPU."""
    try:
        request.app[BROKER].admit()
    except BrokerUnavailable as exc:
        return unavailable(request, exc)
    return None


def unavailable(request: web.Request, exc: BrokerUnavailable) -> web.Response:
    """The 503 for a push the hub cannot store now: full, or cut off from the broker."""
    at_capacity = isinstance(exc, AtCapacity)
    metrics.requests.labels("refused" if at_capacity else "unavailable").inc()
    log.debug("not accepted", extra={"error": str(exc)})
    summary = "the hub is at capacity; retry later" if at_capacity else "broker unavailable; retry later"
    retry_after = str(request.app[SETTINGS].retry_after_seconds)
    return Problem(503, summary, headers={"Retry-After": retry_after}).response()


async def limit_rate(request: web.Request, store_id: str) -> None:
    """A 429 if `store_id` sends faster than its rate."""
    if (wait := await request.app[RATE_LIMITER].retry_after(store_id)) is not None:
        metrics.requests.labels("limited").inc()
        raise Problem(
            429, "too many messages for this store; retry later", headers={"Retry-After": str(wait)}
        )


async def validate_message(request: web.Request) -> web.Response:
    """POST /messages/validate: a dry run with the validator's own checks; publishes nothing.

    It costs what a push costs to check, so it takes a store token and counts against the
    store's rate like one: anonymous clients cannot crowd out the pushes."""
    pusher = authenticate(request)
    doc = await read_object(request, request.app[SETTINGS])
    store_id = pusher or doc.get("store_id")
    if is_object_id(store_id):
        await limit_rate(request, store_id)
    errors, warnings = request.app[CATALOGUE].check(doc)
    if errors:
        raise Problem(422, "invalid message", errors, warnings=warnings)
    return json_answer({"valid": True, "warnings": warnings} if warnings else {"valid": True})


async def list_schemas(request: web.Request) -> web.Response:
    """GET /schemas: the message types that have a schema, and the aliases senders use for them."""
    catalogue = request.app[CATALOGUE]
    entries = [{"message": s.message_type, "title": s.title, "description": s.description} for s in catalogue]
    entries.extend(
        {"message": alias, "alias_of": meant, "title": catalogue[meant].title,
         "description": catalogue[meant].description}
        for alias, meant in catalogue.aliases.items()
    )  # fmt: skip
    return json_answer(sorted(entries, key=lambda entry: entry["message"]))


async def get_schema(request: web.Request) -> web.Response:
    """GET /schemas/{type}: one schema, as the validator uses it; an alias answers with the
    schema of the type it means."""
    message_type = request.match_info["message_type"]
    if message_type not in request.app[CATALOGUE]:
        raise Problem(404, f"no schema for message type {message_type}")
    return json_answer(request.app[CATALOGUE][message_type].document)


async def _accept(request: web.Request, doc: dict, pusher: str | None) -> web.Response:
    key = idempotency.key_of(request)
    errors = envelope.envelope_errors(doc)
    if errors:
        raise Problem(422, "invalid message envelope", errors)
    message, store_id = doc["message"], doc["store_id"]
    if pusher is not None and store_id != pusher:
        raise Problem(403, "these credentials may not push for this store")
    await limit_rate(request, store_id)
    warnings = []
    if request.app[SETTINGS].gateway_validates:
        errors, warnings = request.app[CATALOGUE].check_payload(message, doc["payload"])
        if errors:
            raise Problem(422, "invalid message", errors, warnings=warnings)
    broker = request.app[BROKER]
    message_id = new_message_id()
    if key is not None:
        message_id = await idempotency.claim(request, store_id, key, doc, message_id)
    body = envelope.dump(message, message_id, store_id, orjson.dumps(doc["payload"]))
    headers = {"store_id": store_id, "received_at": envelope.now_ms()}
    if warnings:
        headers["warnings"] = warnings
    props = envelope.properties(message, message_id, headers)
    try:
        await broker.publish(Outbound(broker.topology.incoming, message, body, props))
    except BrokerUnavailable as exc:
        if key is not None:
            await idempotency.settle(request, store_id, key, None)
        return unavailable(request, exc)
    ACCEPTED.inc()
    message_line(log, "accepted", {"message_id": message_id, "message_type": message, "store_id": store_id})
    if warnings:
        body = body[:-1] + b',"warnings":' + orjson.dumps(warnings) + b"}"
    if key is not None:
        await idempotency.settle(request, store_id, key, body)
    return web.Response(status=202, body=body, content_type="application/json")


def add_routes(app: web.Application) -> None:
    spec = openapi_json(app[CATALOGUE])  # tests/test_openapi.py keeps it true

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    def ready() -> bool:
        return app[BROKER].ready and (TOKENS not in app or app[TOKENS].loaded)

    def why_not() -> str:
        return NOT_CONNECTED if not app[BROKER].ready else "store tokens not read yet: PostgreSQL unavailable"

    add_health_routes(app, "gateway", ready, why_not)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_post("/messages", post_message, name="push")
    app.router.add_post("/messages/validate", validate_message)
    app.router.add_get("/schemas", list_schemas)
    app.router.add_get("/schemas/{message_type}", get_schema)
    app.router.add_post("/api/stores/{store_id}/messages", post_store_message, name="push_for_store")
