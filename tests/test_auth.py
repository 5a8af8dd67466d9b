"""Only a store's own systems can push for it: tokens, 401 and 403, rotation, nothing leaked.

Tokens live in PostgreSQL, shared by every gateway; `integrator tokens import` brings in those of
a stores file of earlier releases."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest
from multidict import CIMultiDict

from integrator import stores
from tests.conftest import NEW_PRODUCT, OTHER_STORE, STORE
from tests.support.database import create_database, drop_database
from tests.support.processes import ROOT, Stack
from tests.support.proxy import Proxy
from tests.support.scrape import pushes


def tokens_cli(database_url: str, *args: str, ok: bool = True, **env: str) -> list[dict] | str:
    """`integrator tokens ...`'s JSON lines; with `ok=False`, its error (and exit status 1)."""
    result = subprocess.run(
        [sys.executable, "-m", "integrator.cli", "tokens", *args],
        cwd=ROOT,
        env={"INTEGRATOR_DATABASE_URL": database_url, "PATH": "", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if not ok:
        assert result.returncode == 1, result.stdout
        return result.stderr
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
async def own_database() -> AsyncIterator[str]:
    """A database of this test's alone: what the CLI lists is only what the test made."""
    url = await create_database()
    yield url
    await drop_database(url)


@pytest.fixture
async def secured(stack: Stack) -> Stack:
    stack.env |= {"INTEGRATOR_AUTH": "true"}
    return stack


async def push(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | CIMultiDict, doc: dict = NEW_PRODUCT
) -> tuple[int, dict]:
    async with http.post(url, json=doc, headers=headers) as response:
        return response.status, await response.json()


async def cli(database_url: str, *args: str, ok: bool = True, **env: str) -> list[dict] | str:
    return await asyncio.to_thread(tokens_cli, database_url, *args, ok=ok, **env)


async def test_tokens_are_shown_once_and_stored_hashed(own_database: str) -> None:
    [created] = await cli(own_database, "create", STORE)
    assert len(created["token"]) >= 43  # 32 random bytes, url-safe base64
    conn = await asyncpg.connect(own_database)
    try:
        [row] = await conn.fetch("SELECT * FROM store_tokens")
    finally:
        await conn.close()
    assert (row["id"], row["store_id"]) == (created["token_id"], STORE)
    assert row["sha256"] == stores.token_hash(created["token"]) and created["token"] not in str(dict(row))
    [listed] = await cli(own_database, "list")
    assert set(listed) == {"store_id", "token_id", "created_at"}, "no secret, no hash"
    assert (listed["store_id"], listed["token_id"]) == (STORE, created["token_id"])
    revoked = await cli(own_database, "revoke", STORE, created["token_id"])
    assert revoked == [{"revoked": created["token_id"], "store_id": STORE}]
    assert await cli(own_database, "list") == []
    again = await cli(own_database, "revoke", STORE, created["token_id"], ok=False)
    assert again == f"no token {created['token_id']} for store {STORE}\n"
    assert await cli(own_database, "create", "shop", ok=False) == (
        "'shop' is not a store id (24 hexadecimal characters)\n"
    )


async def test_pushes_need_the_stores_own_token(
    secured: Stack, ledger_db: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    _, token = await stores.create(ledger_db, STORE)
    _, other_token = await stores.create(ledger_db, OTHER_STORE)
    await secured.start("gateway")
    url = secured.url + "/messages"
    denied = (401, {"error": "missing or invalid credentials", "errors": []})
    assert await push(http, url, {}) == denied
    assert await push(http, url, {"X-Hub-Access-Token": "not-a-token"}) == denied
    assert await push(http, url, {"X-Hub-Store": STORE, "X-Hub-Access-Token": other_token}) == denied
    assert (await push(http, url, {"X-Hub-Store": STORE, "X-Hub-Access-Token": token}))[0] == 202
    assert (await push(http, url, {"Authorization": f"Bearer {token}"}))[0] == 202
    assert (await push(http, url, {"Authorization": f"bEaReR {token}"}))[0] == 202, "any case of the scheme"
    twice = CIMultiDict([("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {other_token}")])
    assert await push(http, url, twice) == denied, "two credentials are none"
    assert await push(http, url, CIMultiDict([("X-Hub-Store", STORE), ("X-Hub-Store", OTHER_STORE),
                                              ("X-Hub-Access-Token", token)])) == denied  # fmt: skip

    forbidden = (403, {"error": "these credentials may not push for this store", "errors": []})
    assert await push(http, url, {"Authorization": f"Bearer {other_token}"}) == forbidden
    path_url = f"{secured.url}/api/stores/{STORE}/messages"
    doc = {"message": "product:new", "payload": NEW_PRODUCT["payload"]}
    assert await push(http, path_url, {"Authorization": f"Bearer {other_token}"}, doc) == forbidden
    last = await push(http, path_url, {"Authorization": f"Bearer {token}"}, doc)
    assert last[0] == 202
    assert await pushes(http, secured.url) == {"accepted": 4, "denied": 7}

    # the line of the last push is in the log file: so is everything written before it
    await secured.service("gateway").wait_for_text(last[1]["message_id"], within=5)
    log = secured.service("gateway").log_text()
    assert token not in log and other_token not in log, "tokens never logged"


async def test_a_token_is_rotated_without_downtime(
    secured: Stack, ledger_db: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    old_id, old = await stores.create(ledger_db, STORE)
    await secured.start("gateway")
    url = secured.url + "/messages"
    _, new = await stores.create(ledger_db, STORE)  # the running gateway picks it up
    assert await statuses_until(http, url, new, 202) <= {401}, "the new token works within seconds"
    assert (await push(http, url, {"Authorization": f"Bearer {old}"}))[0] == 202, "the old one still does"
    assert await stores.revoke(ledger_db, STORE, old_id)
    assert await statuses_until(http, url, old, 401) <= {202}, "until it is revoked"
    assert (await push(http, url, {"Authorization": f"Bearer {new}"}))[0] == 202


async def statuses_until(http: aiohttp.ClientSession, url: str, token: str, wanted: int) -> set[int]:
    """Push with `token` until the answer is `wanted` (the gateway looks for changed tokens once
    a second); the other statuses seen on the way."""
    seen = set()
    deadline = time.monotonic() + 10
    while (status := (await push(http, url, {"Authorization": f"Bearer {token}"}))[0]) != wanted:
        seen.add(status)
        assert time.monotonic() < deadline, f"still {status}, not {wanted}"
        await asyncio.sleep(0.1)
    return seen


async def test_authentication_off_is_explicit_and_logged(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.start("gateway")  # tests run with INTEGRATOR_AUTH=false
    assert (await push(http, stack.url + "/messages", {}))[0] == 202
    assert "authentication is off: any client may push for any store" in stack.service("gateway").log_text()


OLD_TOKEN = "an old token from a stores file"
OLD_STORES = f"""
stores:
  {STORE}:
    tokens:
    - {{id: tok_old1, sha256: {stores.token_hash(OLD_TOKEN)}, created_at: "2026-11-01T10:00:00Z"}}
    - {{id: tok_old2, sha256: {stores.token_hash("another")}, created_at: "2026-11-02T10:00:00Z"}}
"""


async def test_the_tokens_of_a_stores_file_are_imported_once_and_revoked_ones_stay_revoked(
    secured: Stack, own_database: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    stores_file = tmp_path / "stores.yml"
    stores_file.write_text(OLD_STORES)
    imported = await cli(own_database, "import", INTEGRATOR_STORES=str(stores_file))  # the file by default
    assert imported == [{"imported": 2, "already_present": 0, "from": str(stores_file)}]
    assert await cli(own_database, "list") == [
        {"store_id": STORE, "token_id": "tok_old1", "created_at": "2026-11-01T10:00:00Z"},
        {"store_id": STORE, "token_id": "tok_old2", "created_at": "2026-11-02T10:00:00Z"},
    ], "ids and times kept"
    secured.env |= {"INTEGRATOR_DATABASE_URL": own_database, "INTEGRATOR_STORES": str(stores_file)}
    await secured.start("gateway")
    url = secured.url + "/messages"
    assert (await push(http, url, {"Authorization": f"Bearer {OLD_TOKEN}"}))[0] == 202, "senders go on"
    assert "the stores file is no longer read: store tokens live in PostgreSQL" in (
        secured.service("gateway").log_text()
    ), "a file left in place is pointed out"
    await cli(own_database, "revoke", STORE, "tok_old1")
    again = await cli(own_database, "import", str(stores_file))
    assert again == [{"imported": 0, "already_present": 2, "from": str(stores_file)}]
    assert await statuses_until(http, url, OLD_TOKEN, 401) <= {202}, "the revoked token is not brought back"
    assert [t["token_id"] for t in await cli(own_database, "list")] == ["tok_old2"]


BROKEN_STORES = {
    "not YAML": ("stores: [", ""),
    "a store that is a list": (f"stores:\n  {STORE}: [1, 2]\n", f"store {STORE}: expected a mapping"),
    "a token without sha256": (
        f"stores:\n  {STORE}:\n    tokens:\n    - {{id: tok_1, created_at: now}}\n",
        f"store {STORE}, token 0: needs id, sha256, created_at",
    ),
    "a store id that is not one": ("stores:\n  shop: {tokens: []}\n", "'shop' is not a store id"),
    "a time that is not one": (
        f"stores:\n  {STORE}:\n    tokens:\n    - {{id: tok_1, sha256: ab, created_at: now}}\n",
        "created_at 'now' is not an ISO 8601 time",
    ),
    "no file": (None, "[Errno 2] No such file or directory"),
}


@pytest.mark.parametrize("broken", BROKEN_STORES, ids=list(BROKEN_STORES))
async def test_a_broken_stores_file_is_not_imported(own_database: str, tmp_path: Path, broken: str) -> None:
    content, problem = BROKEN_STORES[broken]
    stores_file = tmp_path / "stores.yml"
    if content is not None:
        stores_file.write_text(content)
    error = await cli(own_database, "import", str(stores_file), ok=False)
    assert error.startswith(f"{stores_file}: {problem}")
    assert await cli(own_database, "list") == [], "nothing of it imported"


@pytest.fixture
async def token_behind_proxy(secured: Stack, ledger_db: asyncpg.Pool, proxied_database_url: str) -> str:
    """A store's token, and the gateway's PostgreSQL behind the proxy the test cuts."""
    _, token = await stores.create(ledger_db, STORE)
    secured.env["INTEGRATOR_DATABASE_URL"] = proxied_database_url
    return token


async def test_tokens_read_before_count_while_postgresql_is_away(
    secured: Stack, token_behind_proxy: str, ledger_db: asyncpg.Pool, postgres_proxy: Proxy,
    http: aiohttp.ClientSession,
) -> None:  # fmt: skip
    token = token_behind_proxy
    await secured.start("gateway")
    gateway, url = secured.service("gateway"), secured.url + "/messages"
    postgres_proxy.cut()
    await gateway.wait_for_log("store tokens unreadable; the ones read before still count")
    assert (await push(http, url, {"Authorization": f"Bearer {token}"}))[0] == 202
    _, new = await stores.create(ledger_db, STORE)
    assert (await push(http, url, {"Authorization": f"Bearer {new}"}))[0] == 401, "not read yet"
    postgres_proxy.restore()
    await gateway.wait_for_log("store tokens readable again")
    assert (await push(http, url, {"Authorization": f"Bearer {new}"}))[0] == 202


async def test_a_gateway_started_while_postgresql_is_away_answers_503_until_it_has_the_tokens(
    secured: Stack, token_behind_proxy: str, postgres_proxy: Proxy, http: aiohttp.ClientSession
) -> None:
    token = token_behind_proxy
    postgres_proxy.cut()
    await secured.start("gateway")
    url, bearer = secured.url + "/messages", {"Authorization": f"Bearer {token}"}
    async with http.post(url, json=NEW_PRODUCT, headers=bearer) as response:
        assert (response.status, response.headers["Retry-After"]) == (503, "1")
        error = "store tokens not read yet: PostgreSQL unavailable; retry later"
        assert await response.json() == {"error": error, "errors": []}
    async with http.get(secured.url + "/readyz") as response:
        assert (response.status, await response.json()) == (
            503, {"status": "store tokens not read yet: PostgreSQL unavailable"})  # fmt: skip
    postgres_proxy.restore()
    assert await statuses_until(http, url, token, 202) <= {503}
    async with http.get(secured.url + "/readyz") as response:
        assert response.status == 200


async def test_the_dry_run_takes_a_token_and_counts_against_the_stores_rate(
    secured: Stack, ledger_db: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    _, token = await stores.create(ledger_db, STORE)
    secured.env |= {"INTEGRATOR_STORE_RATE": "0.01", "INTEGRATOR_STORE_BURST": "2"}
    await secured.start("gateway")
    dry_run = secured.url + "/messages/validate"
    assert await push(http, dry_run, {}) == (401, {"error": "missing or invalid credentials", "errors": []})
    bearer = {"Authorization": f"Bearer {token}"}
    assert await push(http, dry_run, bearer) == (200, {"valid": True})
    assert (await push(http, secured.url + "/messages", bearer))[0] == 202
    status, answer = await push(http, dry_run, bearer)
    assert (status, answer["error"]) == (429, "too many messages for this store; retry later")
