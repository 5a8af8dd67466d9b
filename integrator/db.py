"""PostgreSQL: one lazily connecting pool per process, and the migrations in `migrations/`.

A pool is made without connecting, so a service starts while PostgreSQL is down and connects
on first use; every failure to reach the database is raised as DatabaseUnavailable, which the
callers answer with 503 or a retry, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from urllib.parse import urlsplit

import asyncpg
import orjson

from integrator import metrics
from integrator.consumer import wait_for
from integrator.logs import redact

log = logging.getLogger("integrator.db")

MIGRATIONS = files("integrator") / "migrations"
MIGRATION_LOCK = 7_302_017  # pg_advisory_lock key: one migrator at a time, whoever starts first
UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError)
"""What an unreachable, restarting or refusing server raises."""


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached (or the ledger's tables are not there yet)."""


async def _setup(connection: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(
            kind, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def open_pool(url: str, max_size: int = 4) -> asyncpg.Pool:
    """A pool that holds no connection until one is asked for, so it opens with PostgreSQL down."""
    return await asyncpg.create_pool(url, min_size=0, max_size=max_size, init=_setup, command_timeout=30)


@asynccontextmanager
async def connection(db: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection from `db`; DatabaseUnavailable if there is none to be had."""
    try:
        async with db.acquire(timeout=10) as conn:
            yield conn
    except UNAVAILABLE as exc:
        raise DatabaseUnavailable(redact(f"PostgreSQL unavailable: {exc}")) from exc
    except asyncpg.UndefinedTableError as exc:
        raise DatabaseUnavailable("the ledger's tables are missing: run `integrator db upgrade`") from exc


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) of every migration in the package, in order."""
    found = []
    for entry in MIGRATIONS.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


async def create_database(url: str) -> bool:
    """Create the database `url` names if it is missing (connecting to `postgres` beside it)."""
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise ValueError(f"{redact(url)} names no database")
    admin = await asyncpg.connect(url, database="postgres")
    try:
        if await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await admin.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await admin.close()


async def upgrade(url: str) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction; the names applied."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("migration applied", extra={"migration": name})
            applied.append(name)
        return applied
    finally:
        await conn.close()


class Persistence:
    """Runs a worker's database steps until each succeeds, holding its batch while PostgreSQL is
    away: the migrations are applied before the first step, and PostgreSQL's going and coming
    back is logged once each and kept in `database_up`."""

    FIRST_DELAY = 0.2
    MAX_DELAY = 5.0

    def __init__(self, url: str, stopping: asyncio.Event) -> None:
        self._url = url
        self._stopping = stopping
        self._migrated = False
        self.up = True

    async def until_done(self, step: Callable[[], Awaitable[None]], held: int) -> bool:
        """Run `step` until it succeeds (True), or until stopping (False); `held`: the batch's size."""
        delay = self.FIRST_DELAY
        while True:
            try:
                await self.migrated()
                await step()
                self._set_up(True)
                return True
            except DatabaseUnavailable as exc:
                self._set_up(False)
                log.warning("PostgreSQL unavailable; holding the batch", extra={
                    "count": held, "retry_in": delay, "error": str(exc)})  # fmt: skip
            if await wait_for(self._stopping, delay):
                return False
            delay = min(delay * 2, self.MAX_DELAY)

    async def migrated(self) -> None:
        """Apply the migrations this release has, once: the tables are never made by hand.
        DatabaseUnavailable while PostgreSQL is away."""
        if self._migrated:
            return
        try:
            await upgrade(self._url)
        except UNAVAILABLE as exc:
            raise DatabaseUnavailable(redact(str(exc))) from exc
        self._migrated = True

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            log.info("PostgreSQL reachable again" if up else "PostgreSQL unreachable")
        self.up = up
        metrics.database_up.set(1 if up else 0)
