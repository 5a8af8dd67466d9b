"""Console administrators: a name and a token shown once, kept only as its SHA-256.

`integrator admins create NAME` makes one; the console's login takes the token. Hashing the
token before any lookup means the table leaks nothing usable and timing says nothing of it.
"""

from __future__ import annotations

import secrets

import asyncpg

from integrator.db import connection
from integrator.stores import token_hash


async def create(db: asyncpg.Pool, name: str) -> str:
    """A new administrator's token, or a new token for an existing one: the old one, and every
    console session opened with it, stop working."""
    token = "adm_" + secrets.token_urlsafe(32)
    async with connection(db) as conn:
        await conn.execute(
            "INSERT INTO admins (name, token_sha256) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256, created_at = now()",
            name, token_hash(token),
        )  # fmt: skip
    return token


async def listing(db: asyncpg.Pool) -> list[dict[str, str]]:
    async with connection(db) as conn:
        rows = await conn.fetch("SELECT name, created_at FROM admins ORDER BY name")
    return [{"name": row["name"], "created_at": row["created_at"].isoformat()} for row in rows]


async def revoke(db: asyncpg.Pool, name: str) -> bool:
    """Remove an administrator and end their sessions; False if there was none of that name."""
    async with connection(db) as conn:
        return await conn.execute("DELETE FROM admins WHERE name = $1", name) != "DELETE 0"
