"""Only a store's own systems can push for it: tokens, 401 and 403, rotation, nothing leaked."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from integrator import stores
from tests.conftest import NEW_PRODUCT, OTHER_STORE, STORE
from tests.support.processes import ROOT, Stack
from tests.support.scrape import pushes


def tokens_cli(stores_file: Path, *args: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "integrator.cli", "tokens", *args],
        cwd=ROOT,
        env={"INTEGRATOR_STORES": str(stores_file), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def stores_file(tmp_path: Path) -> Path:
    return tmp_path / "stores.yml"


@pytest.fixture
async def secured(stack: Stack, stores_file: Path) -> Stack:
    stack.env |= {"INTEGRATOR_AUTH": "true", "INTEGRATOR_STORES": str(stores_file)}
    return stack


async def push(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | CIMultiDict, doc: dict = NEW_PRODUCT
) -> tuple[int, dict]:
    async with http.post(url, json=doc, headers=headers) as response:
        return response.status, await response.json()


def test_tokens_are_shown_once_and_stored_hashed(stores_file: Path) -> None:
    [created] = tokens_cli(stores_file, "create", STORE)
    assert len(created["token"]) >= 43  # 32 random bytes, url-safe base64
    text = stores_file.read_text()
    assert created["token"] not in text and created["token_id"] in text
    assert stores_file.stat().st_mode & 0o077 == 0, "readable by its owner only"
    [listed] = tokens_cli(stores_file, "list")
    assert set(listed) == {"store_id", "token_id", "created_at"}, "no secret, no hash"
    assert (listed["store_id"], listed["token_id"]) == (STORE, created["token_id"])
    assert tokens_cli(stores_file, "revoke", STORE, created["token_id"]) == [
        {"revoked": created["token_id"], "store_id": STORE}
    ]
    assert tokens_cli(stores_file, "list") == []


async def test_pushes_need_the_stores_own_token(
    secured: Stack, stores_file: Path, http: aiohttp.ClientSession
) -> None:
    _, token = stores.create(stores_file, STORE)
    _, other_token = stores.create(stores_file, OTHER_STORE)
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
    secured: Stack, stores_file: Path, http: aiohttp.ClientSession
) -> None:
    old_id, old = stores.create(stores_file, STORE)
    await secured.start("gateway")
    url = secured.url + "/messages"
    _, new = stores.create(stores_file, STORE)  # the running gateway picks it up
    assert await statuses_until(http, url, new, 202) <= {401}, "the new token works within seconds"
    assert (await push(http, url, {"Authorization": f"Bearer {old}"}))[0] == 202, "the old one still does"
    stores.revoke(stores_file, STORE, old_id)
    assert await statuses_until(http, url, old, 401) <= {202}, "until it is revoked"
    assert (await push(http, url, {"Authorization": f"Bearer {new}"}))[0] == 202


async def statuses_until(http: aiohttp.ClientSession, url: str, token: str, wanted: int) -> set[int]:
    """Push with `token` until the answer is `wanted` (the gateway rereads the file once a
    second, on a request); the other statuses seen on the way."""
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


BROKEN_STORES = {
    "not YAML": ("stores: [", ""),
    "a store that is a list": (f"stores:\n  {STORE}: [1, 2]\n", f"store {STORE}: expected a mapping"),
    "a token without sha256": (
        f"stores:\n  {STORE}:\n    tokens:\n    - {{id: tok_1, created_at: now}}\n",
        f"store {STORE}, token 0: needs id, sha256, created_at",
    ),
    "a store id that is not one": ("stores:\n  shop: {tokens: []}\n", "'shop' is not a store id"),
}


@pytest.mark.parametrize("broken", BROKEN_STORES, ids=list(BROKEN_STORES))
def test_a_broken_stores_file_stops_the_gateway(stores_file: Path, broken: str) -> None:
    content, problem = BROKEN_STORES[broken]
    stores_file.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway"], cwd=ROOT,
        env={"INTEGRATOR_STORES": str(stores_file), "PATH": ""}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(f"gateway: {stores_file}: {problem}")


async def test_a_stores_file_broken_while_running_keeps_the_tokens_loaded_before(
    secured: Stack, stores_file: Path, http: aiohttp.ClientSession
) -> None:
    _, token = stores.create(stores_file, STORE)
    await secured.start("gateway")
    bearer = {"Authorization": f"Bearer {token}"}
    gateway = secured.service("gateway")
    for content, _ in BROKEN_STORES.values():
        offset = len(gateway.log_text().encode())
        await asyncio.to_thread(stores_file.write_text, content)
        deadline = time.monotonic() + 10
        # the file is looked at again by a push, at most once a second: push until it has been
        while '"event":"stores file unreadable;' not in gateway.log_text(offset):
            assert (await push(http, secured.url + "/messages", bearer))[0] == 202
            assert time.monotonic() < deadline, "the broken file was never noticed"
            await asyncio.sleep(0.1)
        assert (await push(http, secured.url + "/messages", bearer))[0] == 202
    await asyncio.to_thread(stores_file.unlink)
    _, new = await asyncio.to_thread(stores.create, stores_file, STORE)  # a good file again
    assert await statuses_until(http, secured.url + "/messages", new, 202) <= {401}
    await gateway.wait_for_log("stores file reloaded")
    assert (await push(http, secured.url + "/messages", bearer))[0] == 401, "the old file's token is gone"


async def test_the_dry_run_takes_a_token_and_counts_against_the_stores_rate(
    secured: Stack, stores_file: Path, http: aiohttp.ClientSession
) -> None:
    _, token = stores.create(stores_file, STORE)
    secured.env |= {"INTEGRATOR_STORE_RATE": "0.01", "INTEGRATOR_STORE_BURST": "2"}
    await secured.start("gateway")
    dry_run = secured.url + "/messages/validate"
    assert await push(http, dry_run, {}) == (401, {"error": "missing or invalid credentials", "errors": []})
    bearer = {"Authorization": f"Bearer {token}"}
    assert await push(http, dry_run, bearer) == (200, {"valid": True})
    assert (await push(http, secured.url + "/messages", bearer))[0] == 202
    status, answer = await push(http, dry_run, bearer)
    assert (status, answer["error"]) == (429, "too many messages for this store; retry later")
