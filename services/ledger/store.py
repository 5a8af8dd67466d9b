"""Writing a batch's rows to PostgreSQL, keeping a day's partitions ready and dropping old ones.

Every write is an upsert keyed by (day, message_id) in one transaction, so a batch written
twice (the ledger killed after the commit but before its ack) leaves the same rows: a
redelivered event merges into the timeline it is already in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import asyncpg
import orjson

from integrator import metrics
from integrator.db import connection
from services.ledger.records import RANK, Batch

log = logging.getLogger("integrator.ledger")

TABLES = ("messages", "copies")

UPSERT_MESSAGES = """
INSERT INTO messages AS m (day, message_id, message, store_id, received_at, state, updated_at,
                           errors, warnings, children, routing, timeline, envelope)
SELECT day, message_id, message, store_id, received_at, state, updated_at,
       errors::jsonb, warnings::jsonb, children::jsonb, routing::jsonb, timeline::jsonb, envelope
FROM unnest($1::date[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
            $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
            $13::text[])
     AS t (day, message_id, message, store_id, received_at, state, updated_at,
           errors, warnings, children, routing, timeline, envelope)
ON CONFLICT (day, message_id) DO UPDATE SET
    message = COALESCE(m.message, excluded.message),
    store_id = COALESCE(m.store_id, excluded.store_id),
    received_at = LEAST(m.received_at, excluded.received_at),
    envelope = COALESCE(m.envelope, excluded.envelope),
    state = CASE WHEN excluded.updated_at >= m.updated_at THEN excluded.state ELSE m.state END,
    errors = CASE WHEN excluded.updated_at >= m.updated_at THEN COALESCE(excluded.errors, m.errors)
                  ELSE COALESCE(m.errors, excluded.errors) END,
    warnings = CASE WHEN excluded.updated_at >= m.updated_at THEN COALESCE(excluded.warnings, m.warnings)
                    ELSE COALESCE(m.warnings, excluded.warnings) END,
    children = COALESCE(excluded.children, m.children),
    routing = COALESCE(excluded.routing, m.routing),
    updated_at = GREATEST(m.updated_at, excluded.updated_at),
    timeline = (SELECT jsonb_agg(e ORDER BY (e->>0)::bigint, e)  -- in time; each event once
                FROM (SELECT DISTINCT e FROM jsonb_array_elements(m.timeline || excluded.timeline) e) d)
"""

UPSERT_COPIES = """
INSERT INTO copies AS c (day, message_id, parent_id, subscriber, state, updated_at, reason, attempts)
SELECT day, message_id, parent_id, subscriber, state, updated_at, reason, attempts::jsonb
FROM unnest($1::date[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
            $7::text[], $8::text[])
     AS t (day, message_id, parent_id, subscriber, state, updated_at, reason, attempts)
ON CONFLICT (day, message_id) DO UPDATE SET
    state = CASE WHEN excluded.updated_at >= c.updated_at THEN excluded.state ELSE c.state END,
    reason = CASE WHEN excluded.updated_at >= c.updated_at THEN excluded.reason ELSE c.reason END,
    updated_at = GREATEST(c.updated_at, excluded.updated_at),
    attempts = CASE WHEN excluded.attempts IS NULL THEN c.attempts ELSE  -- in time; each once
        (SELECT jsonb_agg(e ORDER BY (e->>'at')::bigint, e) FROM (SELECT DISTINCT e
         FROM jsonb_array_elements(COALESCE(c.attempts, '[]') || excluded.attempts) e) d) END
"""


def _json(value: object) -> str | None:
    """JSON text for a jsonb column: asyncpg would take a list of lists for a 2-D array."""
    return None if value is None else orjson.dumps(value).decode()


def _when(event: list) -> tuple[int, int]:
    return event[0], RANK[event[1]]


def _in_time(attempts: list[dict]) -> list[dict] | None:
    return sorted(attempts, key=lambda attempt: attempt["at"]) if attempts else None


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


class LedgerStore:
    def __init__(self, pool: asyncpg.Pool, retention_days: int, idempotency_hours: int) -> None:
        self._pool = pool
        self._retention_days = retention_days
        self._idempotency_hours = idempotency_hours
        self._partitions: set[date] = set()  # days known to have their partitions

    def oldest_kept(self) -> date:
        return datetime.now(UTC).date() - timedelta(days=self._retention_days)

    async def write(self, batch: Batch) -> None:
        """Write the batch in one transaction; rows older than retention are dropped, counted."""
        oldest = self.oldest_kept()
        originals = [row for row in batch.originals.values() if row.day >= oldest]
        copies = [row for row in batch.copies.values() if row.day >= oldest]
        expired = len(batch.originals) - len(originals) + len(batch.copies) - len(copies)
        if expired:
            metrics.ledger_skipped.labels("expired").inc(expired)
        async with connection(self._pool) as conn:
            await self._ensure_partitions(conn, {row.day for row in originals} | {row.day for row in copies})
            async with conn.transaction():
                if originals:
                    await conn.execute(UPSERT_MESSAGES, *_columns(
                        (r.day, r.message_id, r.message, r.store_id, _time(r.received_at), r.state,
                         _time(r.updated_at), _json(r.errors), _json(r.warnings), _json(r.children),
                         _json(r.routing), _json(sorted(r.timeline, key=_when)), r.envelope)
                        for r in originals
                    ))  # fmt: skip
                if copies:
                    await conn.execute(UPSERT_COPIES, *_columns(
                        (r.day, r.message_id, r.parent_id, r.subscriber, r.state,
                         _time(r.updated_at), r.reason, _json(_in_time(r.attempts))) for r in copies
                    ))  # fmt: skip
        metrics.ledger_recorded.labels("messages").inc(len(originals))
        metrics.ledger_recorded.labels("copies").inc(len(copies))

    async def _ensure_partitions(self, conn: asyncpg.Connection, days: set[date]) -> None:
        for day in sorted(days - self._partitions):
            for table in TABLES:
                # another ledger may make it a moment before us
                with contextlib.suppress(asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {table}_{day:%Y%m%d} PARTITION OF {table}"
                        f" FOR VALUES FROM ('{day}') TO ('{day + timedelta(days=1)}')"
                        + (" WITH (fillfactor = 80)" if table == "messages" else "")  # room for HOT updates
                    )
            self._partitions.add(day)

    async def drop_expired(self) -> list[str]:
        """Drop every partition older than retention, whole, and forget expired idempotency keys
        and identities; the partitions dropped."""
        oldest = self.oldest_kept()
        dropped = []
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT child.relname FROM pg_inherits JOIN pg_class child ON child.oid = inhrelid"
                " JOIN pg_class parent ON parent.oid = inhparent WHERE parent.relname = ANY($1::text[])",
                list(TABLES),
            )
            for (name,) in rows:
                day = datetime.strptime(name.rsplit("_", 1)[1], "%Y%m%d").date()
                if day < oldest:
                    await conn.execute(f"DROP TABLE IF EXISTS {name}")
                    self._partitions.discard(day)
                    log.info("partition dropped", extra={"partition": name, "day": str(day)})
                    dropped.append(name)
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
                self._idempotency_hours,
            )
            await conn.execute("DELETE FROM identities WHERE expires_at < now()")
        return dropped


def _columns(rows: Iterable[tuple]) -> list[list]:
    """Rows as the column arrays `unnest` takes."""
    return [list(column) for column in zip(*rows, strict=True)]
