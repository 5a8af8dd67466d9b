"""Databases of the tests' own on the machine's PostgreSQL, created and dropped by the tests."""

from __future__ import annotations

import os
import uuid

import asyncpg

from integrator import db

SERVER = os.environ.get("INTEGRATOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


async def create_database(migrate: bool = True) -> str:
    """A new database's URL, with the ledger's tables unless `migrate` is false."""
    url = f"{SERVER}/integrator_test_{uuid.uuid4().hex[:12]}"
    assert await db.create_database(url)
    if migrate:
        await db.upgrade(url)
    return url


async def drop_database(url: str) -> None:
    admin = await asyncpg.connect(url, database="postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()
