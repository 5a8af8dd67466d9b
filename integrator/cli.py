"""`integrator`: look at the queues and act on what they hold.

    integrator stats                         depth, consumers and net change of every queue
    integrator tail SUBSCRIBER [--count N]   copies waiting for a subscriber, then new ones; takes none
    integrator show QUEUE [--limit N]        what rejected, unrouted, dead or accepted.SUB holds, with reasons
    integrator show MESSAGE_ID               the ledger's record of a message, with its copies
    integrator messages [--state S] [--since 1h] [--until T] [--type T] [--store S] [--limit N]
                                             the ledger's messages, newest first
    integrator db upgrade                    create the database if missing and apply its migrations
    integrator subscriptions check FILE      every problem in a subscriptions file, with its place
    integrator replay QUEUE [--type T] [--limit N]   send held messages (or parked.SUB) back again
    integrator endpoints list | enable SUBSCRIBER    endpoint subscribers, and resuming one a 410 disabled
    integrator tokens create STORE | list | revoke STORE TOKEN_ID | import [FILE]   store access tokens
    integrator admins create NAME | list | revoke NAME              the console's administrators

Settings come from the same environment variables as the services (AMQP_URL, INTEGRATOR_PREFIX,
INTEGRATOR_SUBSCRIPTIONS, INTEGRATOR_DATABASE_URL). Output is one JSON object per line, for people and for jq.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from integrator import admins, db, ledger, stores
from integrator.check_broker import missing
from integrator.connection import BROKER_ERRORS, connect_first
from integrator.held import act_on, describe, held, replay_target
from integrator.ids import is_object_id
from integrator.logs import redact
from integrator.settings import Settings
from integrator.subscriptions import Subscriptions, SubscriptionsError, is_pattern
from integrator.topology import HOLDING, STAGES, Topology, queue_state


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(record, default=str).decode() + "\n")
    sys.stdout.flush()


@asynccontextmanager
async def channel(settings: Settings, confirms: bool = False) -> AsyncIterator[AbstractChannel]:
    connection = await connect_first(settings.amqp_url, "integrator-cli")
    async with connection:
        yield await connection.channel(publisher_confirms=confirms)


def subscriber_names(settings: Settings) -> tuple[str, ...]:
    try:
        return Subscriptions.load(settings.subscriptions).names
    except SubscriptionsError:
        return ()


async def stats(settings: Settings, interval: float) -> None:
    topology = Topology.from_settings(settings)
    names = [topology.name(s) for s in STAGES] + [
        topology.accepted_queue(s) for s in subscriber_names(settings)
    ]
    async with channel(settings) as ch:
        first = {name: await queue_state(ch, name) for name in names}
        await asyncio.sleep(interval)
        for name in names:
            depth, consumers = await queue_state(ch, name) or (None, None)
            before = first[name]
            change = None if before is None or depth is None else round((depth - before[0]) / interval, 1)
            emit({"queue": name, "depth": depth, "consumers": consumers, "net_change_per_s": change})


async def tail(settings: Settings, subscriber: str, count: int | None) -> None:
    """The copies waiting in the subscriber's queue, then each new one as it arrives.

    New copies come through a private, exclusive queue bound like the subscriber's: the broker
    copies each message into both, so the real subscriber still gets everything. It is bound
    before the waiting copies are read, so none falls between the two; one seen in both is
    printed once."""
    topology = Topology.from_settings(settings)
    queue = topology.accepted_queue(subscriber)
    seen: set[str | None] = set()

    def show(message: AbstractIncomingMessage) -> bool:
        """Print a copy not printed yet; True once `count` are printed."""
        if message.message_id not in seen:
            seen.add(message.message_id)
            emit({"queue": queue, **describe(message)})
        return count is not None and len(seen) >= count

    async with channel(settings) as ch:
        accepted = await ch.get_exchange(topology.accepted)
        mirror = await ch.declare_queue(exclusive=True, auto_delete=True)
        await mirror.bind(accepted, routing_key=subscriber)
        async with channel(settings) as peek:
            async for message in held(peek, queue, count):
                if show(message):
                    return
        print(f"tailing {queue}", file=sys.stderr, flush=True)
        async with mirror.iterator(no_ack=True) as messages:
            async for message in messages:
                if show(message):
                    return


async def show(settings: Settings, stage: str, limit: int | None) -> None:
    topology = Topology.from_settings(settings)
    async with channel(settings) as ch:
        async for message in held(ch, topology.name(stage), limit):
            emit({"queue": topology.name(stage), **describe(message)})


async def replay(settings: Settings, stage: str, message_type: str | None, limit: int | None) -> None:
    """Send held messages back, those of `message_type` only if it is given."""
    topology = Topology.from_settings(settings)
    replayed = 0
    async with channel(settings, confirms=True) as ch:
        chosen = (lambda m: m.type == message_type) if message_type is not None else (lambda m: True)
        async for message in act_on(ch, topology, stage, chosen, True, settings.ledger, limit):
            exchange, _ = replay_target(topology, stage, message)
            emit({"replayed": message.message_id, "message": message.type, "to": exchange})
            replayed += 1
    emit({"replayed_total": replayed, "from": topology.name(stage)})


DEV_STORE = "5279008084a81693d5000001"


async def tokens(settings: Settings, action: str, store_id: str | None, token_id: str | None) -> None:
    """`create STORE`: a new token, shown once; `list`; `revoke STORE TOKEN_ID`; `import [FILE]`:
    the tokens of a stores file (INTEGRATOR_STORES by default); `dev`: `make run`'s store."""
    async with database(settings, migrated=True) as pool:
        match action:
            case "create":
                await created_token(pool, store_id or "")
            case "list":
                for row in await stores.listing(pool):
                    emit(row)
            case "revoke":
                if not await stores.revoke(pool, store_id or "", token_id or ""):
                    sys.exit(f"no token {token_id} for store {store_id}")
                emit({"revoked": token_id, "store_id": store_id})
            case "import":
                path = Path(store_id) if store_id else settings.stores
                imported, present = await stores.import_file(pool, path)
                emit({"imported": imported, "already_present": present, "from": str(path)})
            case "dev" if any(row["store_id"] == DEV_STORE for row in await stores.listing(pool)):
                note = f"has a token already; `integrator tokens create {DEV_STORE}` adds one"
                emit({"store_id": DEV_STORE, "note": note})
            case "dev":  # `make run`: a development store with a token, created on the first run only
                await created_token(pool, DEV_STORE)


async def created_token(pool: asyncpg.Pool, store_id: str) -> None:
    try:
        new_id, secret = await stores.create(pool, store_id)
    except ValueError as exc:
        sys.exit(str(exc))
    emit({"store_id": store_id, "token_id": new_id, "token": secret, "note": "shown once; stored hashed"})


def shown_queue(name: str) -> str:
    if is_object_id(name) or name.removeprefix("accepted.") not in (name, ""):
        return name
    try:
        return held_queue(name)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{name!r}: one of {', '.join(HOLDING)}, parked.SUBSCRIBER, accepted.SUBSCRIBER or a message id"
        ) from None


def held_queue(name: str) -> str:
    if name in HOLDING or name.removeprefix("parked.") not in (name, ""):
        return name
    raise argparse.ArgumentTypeError(f"{name!r}: one of {', '.join(HOLDING)} or parked.SUBSCRIBER")


def moment(text: str) -> datetime:
    """`1h`, `30m`, `2d` ago, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text[:-1].isdigit() and text[-1:] in AGO:
        return datetime.now(UTC) - timedelta(**{AGO[text[-1]]: int(text[:-1])})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a time like 1h, 30m, 2d or 2026-12-03T10:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


AGO = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def state(text: str) -> str:
    if text not in ledger.STATES:
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(ledger.STATES)}")
    return text


def pattern(text: str) -> str:
    if not is_pattern(text):
        raise argparse.ArgumentTypeError(f"{text!r}: a message type or pattern, like order:* or order:#")
    return text


def check_subscriptions(path: Path, allow_private_endpoints: bool) -> None:
    """Print the file's subscribers if it is sound, else every problem in it, and exit 1."""
    try:
        subscriptions = Subscriptions.load(
            path, allow_private_endpoints=allow_private_endpoints, signing=True
        )
    except SubscriptionsError as exc:
        for problem in exc.problems:
            emit({"problem": problem})
        sys.exit(f"{path}: {len(exc.problems)} problem{'s' if len(exc.problems) > 1 else ''}")
    emit({"file": str(path), "subscribers": list(subscriptions.names)})


@asynccontextmanager
async def database(settings: Settings, migrated: bool = False) -> AsyncIterator[asyncpg.Pool]:
    """A one-connection pool on INTEGRATOR_DATABASE_URL, its migrations applied first if
    `migrated` (the commands that write tables they may be the first to need)."""
    if migrated:
        await upgraded(settings)
    pool = await db.open_pool(settings.database_url, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


async def show_record(settings: Settings, message_id: str) -> None:
    async with database(settings) as pool:
        record = await ledger.find(pool, message_id, None)
    if record is None:
        sys.exit(f"{message_id}: not in the ledger")
    emit(record)


async def messages(settings: Settings, query: ledger.Search, limit: int | None) -> None:
    """Every match, or the first `limit`, a page at a time."""
    shown = 0
    async with database(settings) as pool:
        while True:
            page, cursor = await ledger.search(pool, query)
            for summary in page[: None if limit is None else limit - shown]:
                emit(summary)
                shown += 1
            if cursor is None or shown == limit:
                return
            query = replace(query, cursor=cursor)


async def endpoints(settings: Settings, action: str, subscriber: str | None) -> None:
    """`list`: each endpoint subscriber, whether it is enabled, and its settings (never its
    secret); `enable SUBSCRIBER`: resume one a 410 disabled, its waiting copies first."""
    loaded = Subscriptions.load(settings.subscriptions).subscribers
    subscribers = {s.name: s.endpoint for s in loaded if s.endpoint is not None}
    if action == "enable" and subscriber not in subscribers:
        sys.exit(f"{subscriber!r} is not an endpoint subscriber in {settings.subscriptions}")
    async with database(settings) as pool, db.connection(pool) as conn:
        if action == "enable":
            status = await conn.execute(
                "DELETE FROM disabled_endpoints WHERE prefix = $1 AND subscriber = $2",
                settings.prefix, subscriber,
            )  # fmt: skip
            emit({"enabled": subscriber, "was_disabled": status != "DELETE 0"})
            return
        rows = await conn.fetch(
            "SELECT subscriber, reason FROM disabled_endpoints WHERE prefix = $1", settings.prefix
        )
    disabled = {row["subscriber"]: row["reason"] for row in rows}
    for name, endpoint in subscribers.items():
        emit({"subscriber": name, "url": endpoint.url, "enabled": name not in disabled,
              **({"reason": disabled[name]} if name in disabled else {}),
              "timeout_seconds": endpoint.timeout_seconds, "max_in_flight": endpoint.max_in_flight,
              "rate": endpoint.rate})  # fmt: skip


async def admins_command(settings: Settings, action: str, name: str | None) -> None:
    """`create NAME`: a new token for NAME (a new administrator, or a replaced token), shown once;
    `list`; `revoke NAME`, which ends that administrator's console sessions too."""
    if action != "list" and not name:
        sys.exit(f"integrator admins {action} needs a NAME")
    async with database(settings, migrated=True) as pool:
        if action == "create":
            token = await admins.create(pool, name)
            emit({"admin": name, "token": token, "note": "shown once; stored hashed"})
        elif action == "list":
            for row in await admins.listing(pool):
                emit(row)
        elif not await admins.revoke(pool, name):
            sys.exit(f"no administrator {name!r}")
        else:
            emit({"revoked": name})


async def database_upgrade(settings: Settings) -> None:
    try:
        if await db.create_database(settings.database_url):
            emit({"created": redact(settings.database_url)})
    except db.UNAVAILABLE as exc:
        raise _unavailable(settings, exc) from exc
    emit({"applied": await upgraded(settings)})


async def upgraded(settings: Settings) -> list[str]:
    """The migrations applied now to the database at INTEGRATOR_DATABASE_URL."""
    try:
        return await db.upgrade(settings.database_url)
    except db.UNAVAILABLE as exc:
        raise _unavailable(settings, exc) from exc


def _unavailable(settings: Settings, exc: BaseException) -> db.DatabaseUnavailable:
    return db.DatabaseUnavailable(redact(f"PostgreSQL unavailable at {settings.database_url}: {exc}"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="integrator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = p.add_subparsers(dest="command", required=True)
    s = commands.add_parser("stats", help="depth, consumers and net change of every queue")
    s.add_argument("--interval", type=float, default=1.0, help="seconds between the two samples")
    t = commands.add_parser("tail", help="print the copies waiting for a subscriber, then new ones")
    t.add_argument("subscriber")
    t.add_argument("--count", type=int, help="stop after this many")
    sh = commands.add_parser(
        "show", help="list what a holding queue (or accepted.SUBSCRIBER) holds, with reasons"
    )
    sh.add_argument(
        "queue", type=shown_queue, metavar="{" + ",".join(HOLDING) + ",parked.SUB,accepted.SUB,MESSAGE_ID}"
    )
    sh.add_argument("--limit", type=int)
    m = commands.add_parser("messages", help="list the ledger's messages, newest first")
    m.add_argument("--state", type=state)
    m.add_argument("--since", type=moment, help="1h, 30m, 2d or an ISO 8601 time")
    m.add_argument("--until", type=moment)
    m.add_argument("--type", dest="message_type", type=pattern, help="a type or pattern: order:*")
    m.add_argument("--store", dest="store_id")
    m.add_argument("--limit", type=int, help="stop after this many")
    sc = commands.add_parser("subscriptions", help="check a subscriptions file before putting it in place")
    sc.add_argument("action", choices=("check",))
    sc.add_argument("file", type=Path)
    d = commands.add_parser("db", help="the ledger's database")
    d.add_argument("action", choices=("upgrade",))
    tk = commands.add_parser("tokens", help="create, list, revoke or import store access tokens")
    tk.add_argument("action", choices=("create", "list", "revoke", "import", "dev"))
    tk.add_argument("store_id", nargs="?", help="the store; for import, the stores file")
    tk.add_argument("token_id", nargs="?")
    ad = commands.add_parser("admins", help="create, list or revoke the console's administrators")
    ad.add_argument("action", choices=("create", "list", "revoke"))
    ad.add_argument("name", nargs="?")
    r = commands.add_parser("replay", help="send held messages back through the pipeline")
    r.add_argument("queue", type=held_queue, metavar="{" + ",".join(HOLDING) + ",parked.SUBSCRIBER}")
    r.add_argument("--type", dest="message_type", help="only messages of this type")
    r.add_argument("--limit", type=int)
    e = commands.add_parser("endpoints", help="endpoint subscribers; resume one that answered 410")
    e.add_argument("action", choices=("list", "enable"))
    e.add_argument("subscriber", nargs="?")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # a lost broker is said once, below
    settings = Settings.from_env()
    if args.command == "subscriptions":
        check_subscriptions(args.file, settings.allow_private_endpoints)
        return
    match args.command:
        case "stats":
            run = stats(settings, args.interval)
        case "tail":
            run = tail(settings, args.subscriber, args.count)
        case "show" if is_object_id(args.queue):
            run = show_record(settings, args.queue)
        case "show":
            run = show(settings, args.queue, args.limit)
        case "messages":
            page = min(args.limit or ledger.MAX_LIMIT, ledger.MAX_LIMIT)
            query = ledger.Search(args.store_id, args.message_type, args.state, args.since, args.until, page)
            run = messages(settings, query, args.limit)
        case "db":
            run = database_upgrade(settings)
        case "endpoints":
            run = endpoints(settings, args.action, args.subscriber)
        case "admins":
            run = admins_command(settings, args.action, args.name)
        case "tokens":
            run = tokens(settings, args.action, args.store_id, args.token_id)
        case _:
            run = replay(settings, args.queue, args.message_type, args.limit)
    try:
        asyncio.run(run)
    except KeyboardInterrupt:
        pass
    except (db.DatabaseUnavailable, stores.StoresFileError) as exc:
        sys.exit(str(exc))
    except BROKER_ERRORS as exc:
        sys.exit(missing(settings.amqp_url, exc))


if __name__ == "__main__":
    main()
