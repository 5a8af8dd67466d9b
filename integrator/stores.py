"""Store access tokens: who may push for which store.

Tokens are random (32 bytes), shown once when created, and kept in PostgreSQL (`store_tokens`)
only as SHA-256 hashes: every gateway replica sees the same tokens, and a leaked table holds
nothing usable. A store may hold several tokens at once, which is how a token is rotated without
downtime: create the new one, switch senders, revoke the old one. A revoked token keeps its row,
so importing an old stores file again cannot bring it back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from integrator.consumer import wait_for
from integrator.db import DatabaseUnavailable, connection
from integrator.ids import is_object_id

log = logging.getLogger("integrator.stores")

CHECK_SECONDS = 1.0
"""How often a gateway looks for changed tokens: a new or revoked token counts within this."""


class StoresFileError(Exception):
    """A stores file to import cannot be read or is malformed."""


def token_hash(token: str) -> str:
    """How a token is kept and looked up: its SHA-256, so a leaked table holds nothing usable."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create(db: asyncpg.Pool, store_id: str) -> tuple[str, str]:
    """A new token for `store_id`: (its public id, the secret, shown this once)."""
    if not is_object_id(store_id):
        raise ValueError(f"{store_id!r} is not a store id (24 hexadecimal characters)")
    secret = secrets.token_urlsafe(32)
    token_id = "tok_" + secrets.token_hex(8)
    async with connection(db) as conn:
        await conn.execute(
            "INSERT INTO store_tokens (id, store_id, sha256) VALUES ($1, $2, $3)",
            token_id, store_id, token_hash(secret),
        )  # fmt: skip
    return token_id, secret


async def listing(db: asyncpg.Pool) -> list[dict[str, str]]:
    """Every standing token's store, id and creation time; never a secret or a hash."""
    async with connection(db) as conn:
        rows = await conn.fetch(
            "SELECT store_id, id, created_at FROM store_tokens WHERE revoked_at IS NULL"
            " ORDER BY store_id, created_at, id"
        )
    return [
        {"store_id": r["store_id"], "token_id": r["id"], "created_at": _utc(r["created_at"])} for r in rows
    ]


async def revoke(db: asyncpg.Pool, store_id: str, token_id: str) -> bool:
    """False if the store has no such standing token."""
    async with connection(db) as conn:
        done = await conn.execute(
            "UPDATE store_tokens SET revoked_at = now()"
            " WHERE id = $1 AND store_id = $2 AND revoked_at IS NULL",
            token_id, store_id,
        )  # fmt: skip
    return done != "UPDATE 0"


FILE_TOKEN_FIELDS = ("id", "sha256", "created_at")


def read_file(path: Path) -> list[dict[str, str]]:
    """The tokens of a stores file, as earlier releases kept them, checked entry by entry: a
    malformed one raises StoresFileError naming the place."""
    try:
        document: Any = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StoresFileError(f"{path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("stores", {}), dict):
        raise StoresFileError(f"{path}: expected a mapping under 'stores'")
    found = []
    for store, entry in document.get("stores", {}).items():
        if not is_object_id(store):
            raise StoresFileError(f"{path}: {str(store)[:40]!r} is not a store id")
        if not isinstance(entry, dict) or not isinstance(entry.get("tokens", []), list):
            raise StoresFileError(f"{path}: store {store}: expected a mapping with a list of tokens")
        for i, token in enumerate(entry.get("tokens", [])):
            if not isinstance(token, dict) or not all(
                isinstance(token.get(k), str) for k in FILE_TOKEN_FIELDS
            ):
                raise StoresFileError(
                    f"{path}: store {store}, token {i}: needs {', '.join(FILE_TOKEN_FIELDS)}"
                )
            found.append({"store_id": store, **{k: token[k] for k in FILE_TOKEN_FIELDS}})
    return found


async def import_file(db: asyncpg.Pool, path: Path) -> tuple[int, int]:
    """The tokens of a stores file into PostgreSQL, hashes and ids kept, so senders go on with
    the tokens they have: (imported, already there). Running it again imports nothing twice."""
    tokens = read_file(path)
    async with connection(db) as conn:
        imported = await conn.fetchval(
            "WITH added AS (INSERT INTO store_tokens (id, store_id, sha256, created_at)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])"
            " ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM added",
            [t["id"] for t in tokens], [t["store_id"] for t in tokens], [t["sha256"] for t in tokens],
            [_moment(t["created_at"], path) for t in tokens],
        )  # fmt: skip
    return imported, len(tokens) - imported


class GatewayTokens:
    """The standing tokens as a gateway sees them: all in memory, so that a push never waits on
    PostgreSQL, and read again whenever `store_tokens` changes (`keep_current`). While PostgreSQL
    is away the tokens read before go on counting; until they are first read, `loaded` is false."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self._db = db
        self._by_hash: dict[str, str] = {}
        self._version: int | None = None
        self._reachable = True

    @property
    def loaded(self) -> bool:
        return self._version is not None

    def store_for(self, token: str) -> str | None:
        """The store a token belongs to. The secret is hashed before any lookup, so timing says
        nothing about it."""
        return self._by_hash.get(token_hash(token))

    async def keep_current(self, stopping: asyncio.Event) -> None:
        while True:
            try:
                await self.refresh()
                self._say_reachable(True, None)
            except DatabaseUnavailable as exc:
                self._say_reachable(False, exc)
            if await wait_for(stopping, CHECK_SECONDS):
                return

    async def refresh(self) -> None:
        """Read the tokens again if they changed since the last read. The version is read first:
        a change committed in between is read again at the next check, never missed."""
        async with connection(self._db) as conn:
            version = await conn.fetchval("SELECT version FROM store_tokens_version")
            if version == self._version:
                return
            rows = await conn.fetch("SELECT sha256, store_id FROM store_tokens WHERE revoked_at IS NULL")
        self._by_hash = {row["sha256"]: row["store_id"] for row in rows}
        log.info("store tokens read", extra={"count": len(rows), "first": self._version is None})
        self._version = version

    def _say_reachable(self, reachable: bool, exc: Exception | None) -> None:
        if reachable != self._reachable:
            if reachable:
                log.info("store tokens readable again")
            else:
                log.warning(
                    "store tokens unreadable; the ones read before still count", extra={"error": str(exc)}
                )
        self._reachable = reachable


def _moment(text: str, path: Path) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise StoresFileError(f"{path}: created_at {text[:40]!r} is not an ISO 8601 time") from None


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
