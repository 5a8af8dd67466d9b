"""The console's pages: each handler reads the ledger or the broker and renders a template."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web
from multidict import MultiMapping

from integrator import held, ledger
from integrator.ids import is_object_id
from integrator.subscriptions import is_pattern, topic_matches
from integrator.topology import HOLDING
from services.console.access import Session
from services.console.keys import BROKER, CATALOGUE, DATABASE, QUEUES, SETTINGS, SUBSCRIPTIONS, TOPOLOGY
from services.console.overview import bar_chart, received_per_minute
from services.console.render import page, see_other

SEARCH_FIELDS = ("id", "message", "store", "state", "since", "until")
HELD_LOOKED_AT = 1000  # a held queue's page looks at the first this many messages of the queue
HELD_SHOWN = 100  # and lists at most this many of those the session may see


def session_of(request: web.Request) -> Session:
    return request["session"]


async def overview(request: web.Request) -> web.Response:
    subscriptions = await request.app[SUBSCRIPTIONS].get()
    async with request.app[BROKER].channel() as channel:
        rows = await request.app[QUEUES].look(channel, subscriptions)
    if request.query.get("part") == "queues":  # the live part, every few seconds
        return page(request, "queues.html", rows=rows)
    chart = bar_chart(await received_per_minute(request.app[DATABASE], session_of(request).store_id))
    return page(request, "overview.html", rows=rows, chart=chart)


def _moment(text: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ledger.BadQuery(field, "is not a time like 2026-12-05T10:00") from None
    if not 1970 <= parsed.year <= 9998:
        raise ledger.BadQuery(field, "is not a time between 1970 and 9998")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def messages(request: web.Request) -> web.Response:
    """Search by id, type (wildcards), store, state and time range, a page at a time."""
    form = {k: request.query.get(k, "").strip() for k in SEARCH_FIELDS}
    session = session_of(request)
    query, problem = ledger.Search(store_id=session.store_id), None
    try:
        if form["id"]:
            if not is_object_id(form["id"]):
                raise ledger.BadQuery("id", "is not a message id (24 hexadecimal digits)")
            return see_other(f"/messages/{form['id']}")
        if form["message"]:
            if not is_pattern(form["message"]):
                raise ledger.BadQuery("message", "is not a message type or pattern, like order:*")
            query = replace(query, message=form["message"])
        if form["store"] and session.admin is not None:
            query = replace(query, store_id=form["store"])
        if form["state"]:
            if form["state"] not in ledger.STATES:
                raise ledger.BadQuery("state", f"is not one of {', '.join(ledger.STATES)}")
            query = replace(query, state=form["state"])
        if form["since"]:
            query = replace(query, since=_moment(form["since"], "since"))
        if form["until"]:
            query = replace(query, until=_moment(form["until"], "until"))
        query = replace(query, cursor=request.query.get("cursor") or None)
        found, cursor = await ledger.search(request.app[DATABASE], query)
    except ledger.BadQuery as exc:
        found, cursor, problem = [], None, f"{exc.field} {exc}"
    return page(request, "messages.html", status=400 if problem else 200, form=form, found=found,
                cursor=cursor, problem=problem, states=ledger.STATES)  # fmt: skip


async def message(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    record = await ledger.find(request.app[DATABASE], message_id, session_of(request).store_id)
    if record is None:
        return page(request, "error.html", status=404, title="No such message",
                    detail=f"There is no message {message_id} that you may see.")  # fmt: skip
    marked = {e["path"]: "warning" for e in record["warnings"]}
    marked |= {e["path"]: "error" for e in record["errors"]}
    return page(request, "message.html", record=record, marked=marked)


async def held_stage(request: web.Request) -> str:
    stage = request.match_info["queue"]
    parked = stage.removeprefix("parked.")
    if stage in HOLDING or (parked != stage and parked in (await request.app[SUBSCRIPTIONS].get()).names):
        return stage
    raise web.HTTPNotFound(text=f"{stage} is not a holding queue")


def chooser(request: web.Request, form: MultiMapping) -> held.Choice:
    """The held messages an action takes: one by id, or all of a type pattern (all if none);
    a store's session only ever its own store's."""
    session = session_of(request)
    message_id, pattern = str(form.get("message_id", "")), str(form.get("message", "")).strip()
    if pattern and not is_pattern(pattern):
        raise web.HTTPBadRequest(text=f"{pattern[:100]!r} is not a message type or pattern, like order:*")
    wanted = tuple(pattern.split(":")) if pattern else None

    def chosen(m: AbstractIncomingMessage) -> bool:
        if not session.may_see(held.store_of(m)):
            return False
        if message_id:
            return m.message_id == message_id
        return wanted is None or topic_matches(wanted, tuple((m.type or "").split(":")))

    return chosen


async def held_list(request: web.Request) -> web.Response:
    stage = await held_stage(request)
    chosen = chooser(request, request.query)
    queue = request.app[TOPOLOGY].name(stage)
    async with request.app[BROKER].channel() as channel:
        looked = [m async for m in held.held(channel, queue, HELD_LOOKED_AT)]
    mine = [m for m in looked if chosen(m)]
    oldest = min((m.timestamp.replace(tzinfo=UTC) for m in mine if m.timestamp), default=None)
    age = None if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
    return page(request, "held.html", stage=stage, shown=[held.summary(m) for m in mine[:HELD_SHOWN]],
                filter=request.query.get("message", ""), oldest_s=age, looked=len(looked))  # fmt: skip


async def held_act(request: web.Request) -> web.Response:
    """Replay or discard one held message, or all that match: first a confirmation that says how
    many, then (with `confirmed`) the deed."""
    stage = await held_stage(request)
    form = await request.post()
    action = form.get("action")
    if action not in ("replay", "discard"):
        raise web.HTTPBadRequest(text="action is replay or discard")
    chosen = chooser(request, form)
    topology, settings = request.app[TOPOLOGY], request.app[SETTINGS]
    async with request.app[BROKER].channel() as channel:
        if form.get("confirmed") != "yes":
            count = sum([1 async for m in held.held(channel, topology.name(stage), None) if chosen(m)])
            which = {"message_id": str(form.get("message_id", "")), "message": str(form.get("message", ""))}
            return page(request, "confirm.html", stage=stage, action=action, count=count, form=which)
        done = [m.message_id async for m in held.act_on(channel, topology, stage, chosen,
                                                         action == "replay", settings.ledger)]  # fmt: skip
    return page(request, "done.html", stage=stage, action=action, done=done)


async def catalogue(request: web.Request) -> web.Response:
    schemas = sorted(request.app[CATALOGUE], key=lambda s: s.message_type)
    return page(request, "catalogue.html", schemas=schemas, aliases=request.app[CATALOGUE].aliases)


async def subscriptions_page(request: web.Request) -> web.Response:
    """The subscribers as the router has them; a store sees those that take its messages, without
    their endpoints' addresses."""
    current = request.app[SUBSCRIPTIONS]
    subscribers = (await current.get()).subscribers
    store = session_of(request).store_id
    if store is not None:
        subscribers = [s for s in subscribers if s.wants_store(store)]
    return page(request, "subscriptions.html", subscribers=subscribers, problems=current.problems,
                file=current.path)  # fmt: skip
