"""Fixtures: every test gets its own exchange/queue prefix on the real broker, removed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel

from integrator import db, stores
from integrator.check_broker import missing
from integrator.connection import BROKER_ERRORS
from integrator.subscriptions import Subscriptions, SubscriptionsError
from tests.support.broker import AMQP_URL, delete_names, delete_topology, left_by_this_run, new_prefix
from tests.support.database import SERVER, create_database, drop_database
from tests.support.processes import Stack
from tests.support.proxy import Proxy

STORE = "5279008084a81693d5000001"
OTHER_STORE = "5279008084a81693d5000002"
SUBSCRIBERS = ("store", "erp", "mailer")
SUBSCRIPTIONS = f"""
subscribers:
  store:
    messages: ["#"]
  erp:
    messages: ["order:*", "product:new"]
  mailer:
    messages: ["order:new", "user:*"]
    stores: ["{OTHER_STORE}"]
"""

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_WEBHOOK_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

NEW_PRODUCT = {
    "message": "product:new",
    "store_id": STORE,
    "payload": {
        "id": 1123,
        "name": "Example product",
        "description": "Description",
        "price": "15.99",
        "available_on": "2012-10-17T03:43:57Z",
        "permalink": "ruby-on-rails-tote",
        "meta_description": None,
        "meta_keywords": None,
    },
}
INVALID_PRODUCT = {**NEW_PRODUCT, "payload": {**NEW_PRODUCT["payload"], "price": []}}
"""A product:new whose price is not a string: the validator rejects it."""


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    name = new_prefix()
    PREFIXES[name] = request.node.nodeid
    return name


PREFIXES: dict[str, str] = {}
"""Each prefix of the run and the test that took it, to name the test that left queues behind."""


@pytest.fixture(scope="session", autouse=True)
async def nothing_left_on_the_broker() -> AsyncIterator[None]:
    """Every test removes what it declared on the machine's broker; what is left is removed here
    and fails the run, naming the tests (see `left_by_this_run` for why it matters)."""
    yield
    if (left := left_by_this_run()) is None:
        return
    queues, exchanges = left
    await delete_names(queues, exchanges)
    leakers = sorted({PREFIXES.get(name.split(".")[0], name) for name in queues})
    assert not queues, f"{len(queues)} queues left on the broker by: {', '.join(leakers)}"


@pytest.fixture
def subscriptions_file(tmp_path: Path) -> Path:
    path = tmp_path / "subscriptions.yml"
    path.write_text(SUBSCRIPTIONS)
    return path


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """The run's own database, migrated; dropped at the end."""
    try:
        url = await create_database()
    except OSError as exc:
        why = f"PostgreSQL is not answering at {SERVER} ({exc}); start it, or point"
        pytest.exit(f"{why} INTEGRATOR_TEST_POSTGRES at a server the tests may create databases on", 2)
    yield url
    await drop_database(url)


@pytest.fixture
async def ledger_db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.open_pool(database_url)
    yield pool
    await pool.close()


@pytest.fixture
async def postgres_proxy() -> AsyncIterator[Proxy]:
    """A TCP proxy to the machine's PostgreSQL, to cut a service off from it without stopping it."""
    proxy = await Proxy("127.0.0.1", 5432).start()
    yield proxy
    await proxy.close()


@pytest.fixture
def proxied_database_url(database_url: str, postgres_proxy: Proxy) -> str:
    """The run's database, reached through `postgres_proxy`."""
    return database_url.replace(":5432/", f":{postgres_proxy.port}/")


@pytest.fixture
async def stack(
    prefix: str, tmp_path: Path, subscriptions_file: Path, database_url: str
) -> AsyncIterator[Stack]:
    """The services, not yet started: a test starts the ones it needs."""
    env = {"INTEGRATOR_SUBSCRIPTIONS": str(subscriptions_file), "INTEGRATOR_DATABASE_URL": database_url}
    stack = Stack(prefix, tmp_path, env)
    yield stack
    stack.stop()
    try:  # a test may have changed the subscribers
        named = Subscriptions.load(subscriptions_file).names
    except SubscriptionsError:
        named = ()
    await delete_topology(prefix, tuple({*SUBSCRIBERS, *named}))


@pytest.fixture
async def channel() -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        yield await connection.channel()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session", autouse=True)
async def machine_broker_left_alone() -> AsyncIterator[None]:
    """A connection to the broker at AMQP_URL, held for the whole run, must still be open at the
    end: no test may stop or restart a broker it did not start (tests/support/rabbit_node.py)."""
    try:
        held = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "tests-held"})
    except BROKER_ERRORS as exc:
        pytest.exit(missing(AMQP_URL, exc), returncode=2)
    yield
    still_open = not held.is_closed
    if still_open:
        await (await held.channel()).close()  # and it still answers
    await held.close()
    assert still_open, "the machine's broker closed a connection held since the run began"


@pytest.fixture(scope="session", autouse=True)
def no_token_is_ever_logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every token the tests create, and every endpoint secret they use, is looked for in every
    service log the session wrote."""
    created: list[str] = []
    create = stores.create

    async def recording_create(pool: asyncpg.Pool, store_id: str) -> tuple[str, str]:
        token_id, secret = await create(pool, store_id)
        created.append(secret)
        return token_id, secret

    stores.create = recording_create  # type: ignore[assignment]
    yield
    stores.create = create  # type: ignore[assignment]
    logs = list(tmp_path_factory.getbasetemp().rglob("*.log"))
    secrets = [*created, *(s.removeprefix("whsec_") for s in (WEBHOOK_SECRET, OTHER_WEBHOOK_SECRET))]
    leaked = [log.name for log in logs for secret in secrets if secret in log.read_text(errors="replace")]
    assert not leaked, f"a token or secret reached these logs: {leaked}"
