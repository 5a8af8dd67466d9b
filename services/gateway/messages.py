"""GET /messages/{id} and GET /messages: what became of a store's messages, from the ledger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from multidict import MultiMapping

from integrator import ledger
from integrator.db import DatabaseUnavailable
from integrator.errors import field_error
from integrator.http_json import json_answer
from integrator.subscriptions import is_pattern
from services.gateway.auth import authenticate
from services.gateway.keys import DATABASE, SETTINGS
from services.gateway.problems import Problem

NOT_FOUND = "no such message"
QUERY_PARAMETERS = ("message", "state", "since", "until", "limit", "cursor")


def ledger_unavailable(request: web.Request) -> Problem:
    retry_after = str(request.app[SETTINGS].retry_after_seconds)
    return Problem(503, "the ledger is unavailable; retry later", headers={"Retry-After": retry_after})


def _store(request: web.Request) -> str | None:
    """Whose messages the request may see: the token's store; on /api/stores/{id}, that store
    (any store's, with authentication off and no store in the path)."""
    pusher = authenticate(request)
    in_path = request.match_info.get("store_id")
    if in_path is not None and pusher is not None and in_path != pusher:
        raise Problem(403, "these credentials may not read this store's messages")
    return in_path or pusher


async def get_message(request: web.Request) -> web.Response:
    """GET /messages/{message_id}: the record of an original or a copy; 404 for an unknown id
    and for another store's message alike."""
    store_id = _store(request)
    try:
        record = await ledger.find(request.app[DATABASE], request.match_info["message_id"], store_id)
    except DatabaseUnavailable:
        raise ledger_unavailable(request) from None
    if record is None:
        raise Problem(404, NOT_FOUND)
    return json_answer(record)


async def list_messages(request: web.Request) -> web.Response:
    """GET /messages?message=&state=&since=&until=&limit=&cursor=: summaries, newest first."""
    query = _search(request, _store(request))
    try:
        page, cursor = await ledger.search(request.app[DATABASE], query)
    except ledger.BadQuery as exc:
        raise Problem(
            400, "invalid query", [field_error(f"/query/{exc.field}", "format", str(exc))]
        ) from None
    except DatabaseUnavailable:
        raise ledger_unavailable(request) from None
    return json_answer({"messages": page, "next_cursor": cursor})


def _search(request: web.Request, store_id: str | None) -> ledger.Search:
    """The search the query string asks for; every problem with it at once, as a 400."""
    params, errors = request.query, []

    def bad(name: str, rule: str, message: str) -> None:
        errors.append(field_error(f"/query/{name}", rule, message))

    for name in params:
        if name not in QUERY_PARAMETERS:
            bad(name, "additionalProperties", f"is not a parameter (expected {', '.join(QUERY_PARAMETERS)})")
        elif len(params.getall(name)) > 1:
            bad(name, "maxItems", "is given more than once")
    message, state = params.get("message"), params.get("state")
    if message is not None and not is_pattern(message):
        bad("message", "pattern", "must be a message type or pattern, like order:* or order:#")
    if state is not None and state not in ledger.STATES:
        bad("state", "enum", f"must be one of {', '.join(ledger.STATES)}")
    since, until = (_moment(params, name, bad) for name in ("since", "until"))
    limit = 50
    if "limit" in params:
        raw = params["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= ledger.MAX_LIMIT:
            bad("limit", "maximum", f"must be a whole number from 1 to {ledger.MAX_LIMIT}")
        else:
            limit = int(raw)
    cursor = params.get("cursor")
    if cursor is not None:
        try:
            ledger.decode_cursor(cursor)
        except ledger.BadQuery as exc:
            bad("cursor", "format", str(exc))
    if errors:
        raise Problem(400, "invalid query", errors)
    return ledger.Search(store_id, message, state, since, until, limit, cursor)


def _moment(params: MultiMapping[str], name: str, bad: Callable[[str, str, str], None]) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        bad(name, "format", "must be an ISO 8601 time, like 2026-12-03T10:00:00Z")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_message_routes(app: web.Application) -> None:
    """The ledger's routes."""
    for prefix in ("", "/api/stores/{store_id}"):
        app.router.add_get(f"{prefix}/messages", list_messages)
        # ObjectIds only, so that /messages/validate stays the dry run's alone
        app.router.add_get(f"{prefix}/messages/{{message_id:[0-9a-f]{{24}}}}", get_message)
