"""Who is looking: logging in with an administrator's or a store's token, sessions kept in
PostgreSQL (found by the SHA-256 of their cookie), and a CSRF token for every change.

A session counts only while the token it was opened with does: replacing or revoking an
administrator's token, or revoking a store's, ends its sessions at their next request. A store's
session sees only that store's messages and acts only on them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from integrator.db import connection
from integrator.stores import token_hash

COOKIE = "integrator_console"
STORE_OF_TOKEN = "SELECT store_id FROM store_tokens WHERE sha256 = $1 AND revoked_at IS NULL"
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


async def log_in(db: asyncpg.Pool, token: str) -> str | None:
    """A new session's cookie value for whoever `token` belongs to; None for no one."""
    sha256 = token_hash(token)
    async with connection(db) as conn:
        admin = await conn.fetchval("SELECT name FROM admins WHERE token_sha256 = $1", sha256)
        store_id = None if admin is not None else await conn.fetchval(STORE_OF_TOKEN, sha256)
        if admin is None and store_id is None:
            return None
        cookie = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(hours=SESSION_HOURS)
        await conn.execute("DELETE FROM console_sessions WHERE expires_at < now()")
        await conn.execute(
            "INSERT INTO console_sessions (id_sha256, token_sha256, admin, store_id, csrf, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            token_hash(cookie), sha256, admin, store_id, secrets.token_urlsafe(24), expires,
        )  # fmt: skip
    return cookie


async def session_for(db: asyncpg.Pool, cookie: str | None) -> Session | None:
    """The session of this cookie, while it has not expired and its token still stands."""
    if not cookie:
        return None
    async with connection(db) as conn:
        row = await conn.fetchrow(
            "SELECT s.admin, s.store_id, s.csrf FROM console_sessions s"
            " LEFT JOIN admins a ON a.name = s.admin"
            " LEFT JOIN store_tokens t ON t.sha256 = s.token_sha256 AND t.revoked_at IS NULL"
            " WHERE s.id_sha256 = $1 AND s.expires_at > now()"
            " AND (a.token_sha256 = s.token_sha256 OR t.store_id = s.store_id)",
            token_hash(cookie),
        )  # fmt: skip
    if row is None:
        return None
    return Session(row["admin"], row["store_id"], row["csrf"])


async def log_out(db: asyncpg.Pool, cookie: str) -> None:
    async with connection(db) as conn:
        await conn.execute("DELETE FROM console_sessions WHERE id_sha256 = $1", token_hash(cookie))


def same_token(given: object, expected: str) -> bool:
    """Whether a form field holds `expected` (a file or nothing does not)."""
    return isinstance(given, str) and secrets.compare_digest(given.encode(), expected.encode())
