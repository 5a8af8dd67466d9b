"""Reading the ledger: one message by id, and a store's messages newest first, a page at a time.

Shared by the gateway's API and the CLI. Pages are keyset-paginated on (received_at,
message_id): the cursor is where the last page ended, so a page costs the same however deep.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from integrator.db import connection
from integrator.ids import day_of, is_object_id
from integrator.subscriptions import pattern_regex

STATES = ("accepted", "validated", "routed", "unrouted", "rejected", "dead")
MAX_LIMIT = 500
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

ORIGINAL = """SELECT message_id, message, store_id, state, received_at, updated_at, errors, warnings,
                     envelope, children, routing, timeline
              FROM messages WHERE day = $1 AND message_id = $2"""
COPY = """SELECT c.message_id, c.parent_id, c.subscriber, c.state, c.updated_at, c.reason, c.attempts,
                 m.message, m.store_id, m.received_at, m.warnings, m.envelope
          FROM copies c JOIN messages m ON m.day = c.day AND m.message_id = c.parent_id
          WHERE c.day = $1 AND c.message_id = $2"""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _payload(envelope: str | None) -> Any:
    return None if envelope is None else orjson.loads(envelope).get("payload")


async def find(db: asyncpg.Pool, message_id: str, store_id: str | None) -> dict[str, Any] | None:
    """The record of an original or a copy; None if there is none that `store_id` may see
    (any store's when `store_id` is None)."""
    if not is_object_id(message_id):
        return None
    day = day_of(message_id)
    async with connection(db) as conn:
        row = await conn.fetchrow(ORIGINAL, day, message_id)
        if row is None:
            copy = await conn.fetchrow(COPY, day, message_id)
    if row is not None:
        if row["message"] is None or store_id not in (None, row["store_id"]):
            return None
        return {
            "message_id": row["message_id"], "message": row["message"], "store_id": row["store_id"],
            "state": row["state"], "received_at": _iso(row["received_at"]),
            "updated_at": _iso(row["updated_at"]), "errors": row["errors"] or [],
            "warnings": row["warnings"] or [], "payload": _payload(row["envelope"]),
            "children": [{"message_id": c, "subscriber": s} for c, s in row["children"] or ()],
            "routing": [_outcome(*outcome) for outcome in row["routing"] or ()],
            "timeline": [_event(e) for e in row["timeline"]],
        }  # fmt: skip
    if copy is None or store_id not in (None, copy["store_id"]):
        return None
    return {
        "message_id": copy["message_id"], "message": copy["message"], "store_id": copy["store_id"],
        "state": copy["state"], "received_at": _iso(copy["received_at"]),
        "updated_at": _iso(copy["updated_at"]), "errors": [], "warnings": copy["warnings"] or [],
        "payload": _payload(copy["envelope"]), "parent_id": copy["parent_id"],
        "subscriber": copy["subscriber"], **({"reason": copy["reason"]} if copy["reason"] else {}),
        "attempts": copy["attempts"] or [],
    }  # fmt: skip


def _outcome(subscriber: str, outcome: str, detail: str | None = None, copy_id: str | None = None) -> dict:
    return {"subscriber": subscriber, "outcome": outcome, "detail": detail, "copy_id": copy_id}


def _event(entry: list[Any]) -> dict[str, Any]:
    event = {"state": entry[1], "at": _iso(datetime.fromtimestamp(entry[0] / 1000, UTC))}
    if len(entry) > 2:
        event["detail"] = entry[2]
    return event


class BadQuery(ValueError):
    """A search parameter that cannot be used; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field


@dataclass(frozen=True, slots=True)
class Search:
    store_id: str | None = None
    message: str | None = None  # a subscription pattern
    state: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None


def encode_cursor(received_at: datetime, message_id: str) -> str:
    raw = orjson.dumps([(received_at - EPOCH) // MICROSECOND, message_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        micros, message_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(micros, int) or not is_object_id(message_id):
            raise ValueError
        return EPOCH + micros * MICROSECOND, message_id
    except (ValueError, TypeError, OverflowError, OSError):
        raise BadQuery("cursor", "is not a cursor this API gave out") from None


async def search(db: asyncpg.Pool, query: Search) -> tuple[list[dict[str, Any]], str | None]:
    """One page of summaries, newest first, and the cursor of the next page (None at the end)."""
    clauses, args = ["received_at IS NOT NULL"], []

    def where(clause: str, value: Any) -> None:
        args.append(value)
        clauses.append(clause.replace("?", f"${len(args)}"))

    if query.store_id is not None:
        where("store_id = ?", query.store_id)
    if query.message is not None:
        where("':' || message ~ ?", pattern_regex(query.message))
    if query.state is not None:
        where("state = ?", query.state)
    if query.since is not None:
        where("received_at >= ?", query.since)
        where("day >= ?", (query.since - timedelta(days=1)).date())  # an id's second precedes receipt
    if query.until is not None:
        where("received_at < ?", query.until)
        where("day <= ?", query.until.date())
    if query.cursor is not None:
        received_at, message_id = decode_cursor(query.cursor)
        args.extend((received_at, message_id))
        clauses.append(f"(received_at, message_id) < (${len(args) - 1}, ${len(args)})")
    args.append(query.limit + 1)
    sql = (
        "SELECT message_id, message, store_id, state, received_at, updated_at FROM messages"
        f" WHERE {' AND '.join(clauses)} ORDER BY received_at DESC, message_id DESC LIMIT ${len(args)}"
    )
    async with connection(db) as conn:
        rows = await conn.fetch(sql, *args)
    page = [
        {"message_id": r["message_id"], "message": r["message"], "store_id": r["store_id"],
         "state": r["state"], "received_at": _iso(r["received_at"]), "updated_at": _iso(r["updated_at"])}
        for r in rows[: query.limit]
    ]  # fmt: skip
    more = len(rows) > query.limit
    last = rows[query.limit - 1] if more else None
    return page, encode_cursor(last["received_at"], last["message_id"]) if last else None
