"""The web console in a real browser: Debian's chromium driven by Playwright, against the real
services, the machine's broker and the run's own database."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from integrator import stores
from tests.conftest import INVALID_PRODUCT, NEW_PRODUCT, OTHER_STORE, STORE
from tests.support.processes import Stack
from tests.support.rabbit_node import NodeUnavailable, RabbitNode
from tests.test_ledger import pushed, record_in
from tests.test_operations import cli

CHROMIUM = os.environ.get("INTEGRATOR_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags, chromium keeps reaching for Google's hosts, and this
# machine refuses every one of them.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
SCREENSHOTS = os.environ.get("INTEGRATOR_SCREENSHOTS")  # `make screenshots`: docs/console

pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason=f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def console(stack: Stack) -> Stack:
    stack.env["INTEGRATOR_GATEWAY_VALIDATES"] = "false"  # so that invalid payloads reach `rejected`
    return stack


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    yield await context.new_page()
    await context.close()


def console_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.health_ports['console']}"


def admin_token(stack: Stack) -> str:
    (created,) = cli(stack, "admins", "create", "ops")
    assert created["admin"] == "ops" and created["note"] == "shown once; stored hashed"
    return created["token"]


async def log_in(page: Page, stack: Stack, token: str, path: str = "/") -> None:
    await page.goto(console_url(stack) + path)
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


async def until_shown(page: Page, check: Callable[[], Awaitable[bool]], within: float = 20) -> None:
    """Reload `page` until `check()` holds: the ledger writes a moment after the pipeline."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"{page.url} never showed it"
        await asyncio.sleep(0.2)
        await page.reload()


async def test_a_browser_without_a_session_goes_to_the_login_and_back(console: Stack, page: Page) -> None:
    await console.start("console")
    token = await asyncio.to_thread(admin_token, console)
    await page.goto(console_url(console) + "/messages?message=order:*")
    assert page.url.startswith(console_url(console) + "/login?next=/messages")
    await page.get_by_label("Token").fill("adm_not-a-token")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token is not an administrator's or a store's.")
    await page.get_by_label("Token").fill(token)
    await page.keyboard.press("Enter")  # no mouse needed
    await expect(page.get_by_role("heading", name="Messages")).to_be_visible()
    assert page.url.endswith("/messages?message=order:*")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "integrator_console")
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_label("Token")).to_be_visible()
    await page.goto(console_url(console) + "/")
    assert "/login" in page.url, "the session ended with the logout"


async def test_a_pushed_message_shows_its_copies_and_each_copy_its_parent(
    console: Stack, page: Page, http: aiohttp.ClientSession
) -> None:
    await console.start("gateway", "validator", "router", "ledger", "console")
    await log_in(page, console, await asyncio.to_thread(admin_token, console))
    message_id = (await pushed(http, console, NEW_PRODUCT))["message_id"]
    await page.goto(f"{console_url(console)}/messages/{message_id}")
    copies = page.locator("ul.copies li")
    await until_shown(page, lambda: _count_is(copies, 2))
    subscribers = sorted(re.sub(r"^\S+ for ", "", text) for text in await copies.all_inner_texts())
    assert subscribers == ["erp", "store"]
    await copies.filter(has_text="for erp").get_by_role("link").click()
    await expect(page.locator("dl.envelope")).to_contain_text(f"{message_id} for erp")
    await page.get_by_role("link", name=message_id).click()
    await expect(page.locator("h1")).to_contain_text(message_id)


async def _count_is(locator: Locator, expected: int) -> bool:
    return await locator.count() == expected


async def test_search_by_type_with_wildcards(console: Stack, page: Page, http: aiohttp.ClientSession) -> None:
    await console.start("gateway", "validator", "router", "ledger", "console")
    await log_in(page, console, await asyncio.to_thread(admin_token, console))
    message_id = (await pushed(http, console, NEW_PRODUCT))["message_id"]
    await record_in(http, console, message_id, "routed")
    for pattern, found in (("product:*", True), ("#", True), ("order:*", False)):
        await page.goto(f"{console_url(console)}/messages")
        await page.get_by_label("Type").fill(pattern)
        await page.get_by_role("button", name="Search").click()
        rows = page.locator("table.messages tbody")
        if found:
            await expect(rows.get_by_role("link", name=message_id)).to_be_visible()
        else:
            await expect(rows).to_have_text("No message matches.")
    for query, problem in (("message=order::", "message is not a message type or pattern"),
                           ("message=" + quote(":".join(["#"] * 20) + ":x"), "message is not a message type"),
                           ("since=0001-01-01", "since is not a time between 1970 and 9998"),
                           ("until=yesterday", "until is not a time like"),
                           ("id=a%0d%0ab", "id is not a message id")):  # fmt: skip
        response = await page.goto(f"{console_url(console)}/messages?{query}")
        assert response is not None and response.status == 400, query
        await expect(page.get_by_role("alert")).to_contain_text(problem)


async def test_a_rejected_message_shows_its_error_highlighted_in_the_payload(
    console: Stack, page: Page, http: aiohttp.ClientSession
) -> None:
    await console.start("gateway", "validator", "ledger", "console")
    await log_in(page, console, await asyncio.to_thread(admin_token, console))
    message_id = (await pushed(http, console, INVALID_PRODUCT))["message_id"]
    await record_in(http, console, message_id, "rejected")
    await page.goto(f"{console_url(console)}/messages/{message_id}")
    await expect(page.locator(".state").first).to_have_text("rejected")
    await expect(page.locator("ul.errors li code")).to_have_text(["/payload/price"])
    highlighted = page.locator(".json .error")
    await expect(highlighted).to_have_count(1)
    assert await highlighted.get_attribute("data-pointer") == "/payload/price"
    await expect(page.locator('.json [data-pointer="/payload/name"]')).not_to_have_class("error")
    if SCREENSHOTS:
        await page.screenshot(path=f"{SCREENSHOTS}/rejected-message.png", full_page=True)


async def test_an_unrouted_message_is_replayed_after_a_subscriber_is_added(
    console: Stack, page: Page, http: aiohttp.ClientSession, subscriptions_file: Path
) -> None:
    only_orders = "subscribers:\n  erp:\n    messages: ['order:*']\n"
    await asyncio.to_thread(subscriptions_file.write_text, only_orders)
    await console.start("gateway", "validator", "router", "ledger", "console")
    await log_in(page, console, await asyncio.to_thread(admin_token, console))
    message_id = (await pushed(http, console, NEW_PRODUCT))["message_id"]
    await record_in(http, console, message_id, "unrouted")
    router = console.service("router")
    offset = len(router.log_text())
    await asyncio.to_thread(
        subscriptions_file.write_text,
        "subscribers:\n  erp:\n    messages: ['order:*']\n  catalog:\n    messages: ['product:*']\n",
    )
    await router.wait_for_log("subscriptions reloaded", offset=offset)
    await page.goto(f"{console_url(console)}/held/unrouted")
    row = page.locator(f'tr[data-message-id="{message_id}"]')
    await row.get_by_role("button", name="Replay…").click()
    await expect(page.get_by_role("alert")).to_contain_text(f"This will replay 1 message ({message_id}).")
    await page.get_by_role("button", name="Replay 1").click()
    await expect(page.get_by_role("heading")).to_have_text("Replayed 1 from unrouted")
    record = await record_in(http, console, message_id, "routed")
    assert [c["subscriber"] for c in record["children"]] == ["catalog"]
    await page.goto(f"{console_url(console)}/held/unrouted")
    await expect(page.locator("table.held tbody")).to_have_text("Nothing held here.")


async def test_a_store_sees_its_own_messages_and_no_other_store_s(
    console: Stack, page: Page, http: aiohttp.ClientSession, ledger_db: asyncpg.Pool
) -> None:
    await console.start("gateway", "validator", "router", "ledger", "console")
    _, token = await stores.create(ledger_db, STORE)
    ours = (await pushed(http, console, NEW_PRODUCT))["message_id"]
    theirs = (await pushed(http, console, {**NEW_PRODUCT, "store_id": OTHER_STORE}))["message_id"]
    for message_id in (ours, theirs):
        await record_in(http, console, message_id, "routed")
    await log_in(page, console, token)
    await expect(page.locator("form.who span")).to_have_text(f"store {STORE}")
    response = await page.goto(f"{console_url(console)}/messages/{theirs}")
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading")).to_have_text("No such message")
    await page.goto(f"{console_url(console)}/messages/{ours}")
    await expect(page.locator("h1")).to_contain_text(ours)
    await page.goto(f"{console_url(console)}/messages?message=%23")
    listed = await page.locator("table.messages tbody a").all_inner_texts()
    assert ours in listed and theirs not in listed
    await expect(page.get_by_label("Store")).to_have_count(0)  # a store cannot ask for another store


async def test_a_change_without_the_session_s_csrf_token_is_refused(
    console: Stack, page: Page, http: aiohttp.ClientSession
) -> None:
    await console.start("gateway", "validator", "console")
    await log_in(page, console, await asyncio.to_thread(admin_token, console))
    await pushed(http, console, INVALID_PRODUCT)  # something a replay could take
    url = f"{console_url(console)}/held/rejected"
    for form in ({"action": "discard", "confirmed": "yes"},
                 {"action": "discard", "confirmed": "yes", "csrf": "forged"}):  # fmt: skip
        answer = await page.request.post(url, form=form)
        assert answer.status == 403 and "did not come from this session" in await answer.text()
    assert (await page.request.post(console_url(console) + "/logout", form={})).status == 403
    await page.goto(url)  # the message is still held, and the session still open
    await expect(page.locator("table.held tbody tr")).to_have_count(1)


async def test_pages_at_desktop_and_phone_sizes(
    console: Stack, browser: Browser, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Every page answers and fits the window; `make screenshots` keeps them in docs/console."""
    await console.start("gateway", "validator", "router", "ledger", "console")
    token = await asyncio.to_thread(admin_token, console)
    message_id = (await pushed(http, console, NEW_PRODUCT))["message_id"]
    await record_in(http, console, message_id, "routed")
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    pages = {"overview": "/", "messages": "/messages", "message": f"/messages/{message_id}",
             "rejected": "/held/rejected", "catalogue": "/catalogue",
             "subscriptions": "/subscriptions"}  # fmt: skip
    for size, viewport in (("desktop", (1280, 800)), ("phone", (390, 844))):
        context = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        page = await context.new_page()
        await log_in(page, console, token)
        for name, path in pages.items():
            response = await page.goto(console_url(console) + path)
            assert response is not None and response.status == 200, path
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport[0], f"{path} is {width} px wide in a {viewport[0]} px window"
            await page.screenshot(path=str(folder / f"{name}-{size}.png"))
        await context.close()
    made = {p.name for p in folder.glob("*.png")}
    assert {f"{name}-{size}.png" for name in pages for size in ("desktop", "phone")} <= made


async def test_the_login_goes_on_to_pages_of_the_console_only(console: Stack, page: Page) -> None:
    await console.start("console")
    token = await asyncio.to_thread(admin_token, console)
    for target in ("//example.com/", "/\\example.com/", "https://example.com/"):
        await page.context.clear_cookies()
        await page.goto(f"{console_url(console)}/login?next={target}")
        await page.get_by_label("Token").fill(token)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        assert page.url == console_url(console) + "/", target


async def test_revoking_a_store_s_token_ends_its_sessions(
    console: Stack, page: Page, ledger_db: asyncpg.Pool
) -> None:
    await console.start("console")
    token_id, token = await stores.create(ledger_db, STORE)
    await log_in(page, console, token)
    assert await stores.revoke(ledger_db, STORE, token_id)
    await page.goto(console_url(console) + "/messages")
    assert "/login" in page.url, "the store's session ended with its token, at its next request"


async def test_revoking_an_administrator_ends_their_sessions(console: Stack, page: Page) -> None:
    await console.start("console")
    await log_in(page, console, await asyncio.to_thread(admin_token, console))
    (listed,) = await asyncio.to_thread(cli, console, "admins", "list")
    assert listed["name"] == "ops" and "token" not in listed
    assert await asyncio.to_thread(cli, console, "admins", "revoke", "ops") == [{"revoked": "ops"}]
    await page.goto(console_url(console) + "/catalogue")
    assert "/login" in page.url, "the revoked administrator's session ended"


async def test_a_store_replays_only_its_own_held_messages(
    console: Stack, page: Page, http: aiohttp.ClientSession, ledger_db: asyncpg.Pool
) -> None:
    await console.start("gateway", "validator", "console")
    _, token = await stores.create(ledger_db, STORE)
    ours = (await pushed(http, console, INVALID_PRODUCT))["message_id"]
    theirs = (await pushed(http, console, {**INVALID_PRODUCT, "store_id": OTHER_STORE}))["message_id"]
    await log_in(page, console, token, "/held/rejected")
    await until_shown(page, lambda: _count_is(page.locator("table.held tbody tr[data-message-id]"), 1))
    assert await page.locator("table.held tbody a").all_inner_texts() == [ours]
    await page.get_by_role("button", name="Discard all…").click()
    await expect(page.get_by_role("alert")).to_contain_text("This will discard 1 message.")
    await page.get_by_role("button", name="Discard 1").click()
    await expect(page.locator("ul.done a")).to_have_text([ours])
    await page.context.clear_cookies()  # and in as an administrator, who sees every store's
    await log_in(page, console, await asyncio.to_thread(admin_token, console), "/held/rejected")
    assert await page.locator("table.held tbody a").all_inner_texts() == [theirs], "the other store's stays"


async def test_the_overview_shows_rates_from_the_management_plugin_and_held_pages_the_oldest_age(
    console: Stack, page: Page, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    node = RabbitNode(tmp_path / "rabbit", management=True)  # the machine's broker has no plugin
    try:
        await node.start()
    except NodeUnavailable as exc:
        node.remove()
        pytest.skip(f"cannot start a private RabbitMQ node: {exc}")
    try:
        console.env |= {"AMQP_URL": node.url, "INTEGRATOR_MANAGEMENT_URL": node.management_url}
        await console.start("gateway", "validator", "router", "console")
        await log_in(page, console, await asyncio.to_thread(admin_token, console))
        await pushed(http, console, INVALID_PRODUCT)
        incoming = page.locator(f'tr[data-queue="{console.prefix}.incoming"]')
        deadline = time.monotonic() + 30
        while not await _rate_shown(incoming):  # the plugin's rates need a few samples
            assert time.monotonic() < deadline, "no rate in for incoming"
            for _ in range(20):
                await pushed(http, console, NEW_PRODUCT)
            await page.reload()
        assert float(await incoming.locator(".rate-out").inner_text()) > 0, "the validator takes them"
        await expect(page.locator("p.note")).to_have_count(0)
        await page.goto(f"{console_url(console)}/held/rejected")
        oldest = await page.locator(".oldest").inner_text()
        assert re.fullmatch(r"\d+ s", oldest) and int(oldest[:-2]) < 60, oldest
    finally:
        console.stop()
        node.remove()


async def _rate_shown(row: Locator) -> bool:
    text = await row.locator(".rate-in").inner_text()
    return text != "" and float(text) > 0
