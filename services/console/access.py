"""Who is looking: logging in with an administrator's or a store's token, sessions kept in
PostgreSQL (found by the SHA-256 of their cookie), and a CSRF token for every change.

A store's session sees only that store's messages and acts only on them."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from integrator import admins, stores
from integrator.db import connection

COOKIE = "integrator_console"
SESSION_HOURS = 12


@dataclass(frozen=True, slots=True)
class Session:
    admin: str | None
    store_id: str | None
    csrf: str

    @property
    def who(self) -> str:
        return f"admin {self.admin}" if self.admin else f"store {self.store_id}"

    def may_see(self, store_id: str | None) -> bool:
        return self.admin is not None or store_id == self.store_id


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def log_in(db: asyncpg.Pool, stores_file: Path, token: str) -> str | None:
    """A new session's cookie value for whoever `token` belongs to; None for no one."""
    admin = await admins.named_by(db, token)
    store_id = None if admin is not None else stores.load(stores_file).store_for(token)
    if admin is None and store_id is None:
        return None
    cookie = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(hours=SESSION_HOURS)
    async with connection(db) as conn:
        await conn.execute("DELETE FROM console_sessions WHERE expires_at < now()")
        await conn.execute(
            "INSERT INTO console_sessions (id_sha256, admin, store_id, csrf, expires_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            _hash(cookie), admin, store_id, secrets.token_urlsafe(24), expires,
        )  # fmt: skip
    return cookie


async def session_for(db: asyncpg.Pool, cookie: str | None) -> Session | None:
    if not cookie:
        return None
    async with connection(db) as conn:
        row = await conn.fetchrow(
            "SELECT admin, store_id, csrf FROM console_sessions WHERE id_sha256 = $1 AND expires_at > now()",
            _hash(cookie),
        )
    return None if row is None else Session(row["admin"], row["store_id"], row["csrf"])


async def log_out(db: asyncpg.Pool, cookie: str) -> None:
    async with connection(db) as conn:
        await conn.execute("DELETE FROM console_sessions WHERE id_sha256 = $1", _hash(cookie))


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())
