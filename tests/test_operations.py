"""Operating the hub: health and readiness, metrics that count what happened, the integrator CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractChannel
from prometheus_client.parser import text_string_to_metric_families

from integrator.logs import redact
from tests.conftest import NEW_PRODUCT, STORE, SUBSCRIBERS
from tests.support.broker import AMQP_URL, body, delete_topology, depth, next_message, take
from tests.support.database import SERVER, drop_database
from tests.support.processes import ROOT, Service, Stack, free_port, kill_services_of
from tests.support.proxy import Proxy
from tests.support.scrape import scrape


async def status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as response:
        return response.status


async def wait_for_status(http: aiohttp.ClientSession, url: str, expected: int, within: float = 15) -> None:
    for _ in range(int(within / 0.1)):
        if await status(http, url) == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered {expected}")


async def test_readiness_follows_the_broker_connection(stack: Stack, http: aiohttp.ClientSession) -> None:
    proxy = await Proxy("127.0.0.1", 5672).start()
    try:
        stack.env["AMQP_URL"] = proxy.url()
        services = ("gateway", "validator", "router", "ledger", "deliverer")
        await stack.start(*services)
        urls = [stack.service_url(name) for name in services]
        for url in urls:
            assert (await status(http, url + "/healthz"), await status(http, url + "/readyz")) == (200, 200)
        proxy.cut()
        for url in urls:
            await wait_for_status(http, url + "/readyz", 503)
            assert await status(http, url + "/healthz") == 200, "alive while not ready"
        proxy.restore()
        for url in urls:
            await wait_for_status(http, url + "/readyz", 200)
    finally:
        await proxy.close()


async def test_metrics_count_what_happened(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    stack.env["INTEGRATOR_GATEWAY_VALIDATES"] = "false"  # so that the validator rejects one
    stack.env["INTEGRATOR_LEDGER"] = "false"  # its events add one publish per batch, however batched
    await stack.start("gateway", "validator", "router")
    invalid = {"message": "order:new", "store_id": STORE, "payload": {"order": []}}
    custom = {"message": "stock:count", "store_id": STORE, "payload": {}}  # no schema, matches only `store`
    for doc, expected in ((NEW_PRODUCT, 202), (NEW_PRODUCT, 202), (invalid, 202), (custom, 202), ({}, 422)):
        async with http.post(stack.url + "/messages", json=doc) as response:
            assert response.status == expected
    await take(channel, f"{stack.prefix}.accepted.store", 3)
    await take(channel, f"{stack.prefix}.accepted.erp", 2)
    await take(channel, f"{stack.prefix}.rejected", 1)

    gateway = await scrape(http, stack.service_url("gateway"))
    assert gateway[("integrator_gateway_requests_total", (("outcome", "accepted"),))] == 4
    assert gateway[("integrator_gateway_requests_total", (("outcome", "invalid"),))] == 1
    assert gateway[("integrator_publish_confirm_seconds_count", (("service", "gateway"),))] == 4

    validator = await scrape(http, stack.service_url("validator"))
    validated = "integrator_messages_validated_total"
    assert validator[(validated, (("message", "product:new"), ("outcome", "accepted"), ("reason", "")))] == 2
    assert validator[(validated, (("message", "other"), ("outcome", "accepted"), ("reason", "")))] == 1
    assert (
        validator[(validated, (("message", "order:new"), ("outcome", "rejected"), ("reason", "schema")))] == 1
    )

    router = await scrape(http, stack.service_url("router"))
    assert router[("integrator_messages_routed_total", (("subscriber", "store"),))] == 3
    assert router[("integrator_messages_routed_total", (("subscriber", "erp"),))] == 2
    assert router[("integrator_messages_routed_total", (("subscriber", "mailer"),))] == 0
    assert router[("integrator_end_to_end_seconds_count", ())] == 3
    assert router[("integrator_publish_confirm_seconds_count", (("service", "router"),))] == 5


async def test_one_message_can_be_followed_through_the_logs(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway", "validator", "router")
    async with http.post(stack.url + "/messages", json=NEW_PRODUCT) as response:
        message_id = (await response.json())["message_id"]
    copies = await take(channel, f"{stack.prefix}.accepted.store", 1) + await take(
        channel, f"{stack.prefix}.accepted.erp", 1
    )
    # info lines reach the file within a flush interval (0.2 s): wait for each service's
    for name, wanted in (("gateway", [message_id]), ("validator", [message_id]),
                         ("router", [body(c)["message_id"] for c in copies])):  # fmt: skip
        for needle in wanted:
            await stack.service(name).wait_for_text(needle, within=5)
    lines = [
        orjson.loads(line)
        for name in ("gateway", "validator", "router")
        for line in stack.service(name).log_text().splitlines()
        if message_id in line
    ]
    assert [(e["service"], e["event"]) for e in lines] == [
        ("gateway", "accepted"), ("validator", "validated"), ("router", "routed"), ("router", "routed")
    ]  # fmt: skip
    assert {e["message_id"] for e in lines[2:]} == {body(c)["message_id"] for c in copies}
    assert all(e["store_id"] == STORE and e["message_type"] == "product:new" for e in lines)
    assert {e["subscriber"] for e in lines[2:]} == {"store", "erp"}


def cli_process(stack: Stack, *args: str) -> subprocess.Popen[str]:
    """The CLI as a user runs it, with the stack's settings; output in pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "integrator.cli", *args],
        cwd=ROOT,
        env={**os.environ, "AMQP_URL": AMQP_URL, "INTEGRATOR_PREFIX": stack.prefix, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli(stack: Stack, *args: str, within: float = 30) -> list[dict]:
    process = cli_process(stack, *args)
    out, err = process.communicate(timeout=within)
    assert process.returncode == 0, err
    return [orjson.loads(line) for line in out.splitlines()]


async def test_cli_stats_lists_every_queue(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.start("gateway")
    for _ in range(3):
        async with http.post(stack.url + "/messages", json=NEW_PRODUCT) as response:
            assert response.status == 202
    rows = {row["queue"]: row for row in await asyncio.to_thread(cli, stack, "stats", "--interval", "0.2")}
    p = stack.prefix
    assert set(rows) == {f"{p}.{q}" for q in ("incoming", "validated", "rejected", "unrouted", "dead")} | {
        f"{p}.accepted.{s}" for s in ("store", "erp", "mailer")
    }
    assert (rows[f"{p}.incoming"]["depth"], rows[f"{p}.incoming"]["consumers"]) == (3, 0)
    assert rows[f"{p}.incoming"]["net_change_per_s"] == 0


async def push_products(http: aiohttp.ClientSession, stack: Stack, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        async with http.post(stack.url + "/messages", json=NEW_PRODUCT) as response:
            assert response.status == 202
            ids.append((await response.json())["message_id"])
    return ids


async def copies_on(channel: AbstractChannel, queue: str, parents: list[str]) -> None:
    """Wait until `queue` holds one copy of each parent (left there)."""
    for _ in range(150):
        if await depth(channel, queue) == len(parents):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{queue} never held {len(parents)} copies")


async def copies_waiting_for_erp(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, count: int
) -> tuple[str, list[str]]:
    """The whole stack running and `count` products' copies waiting in erp's queue: its name
    and their parents' ids, in push order."""
    await stack.start("gateway", "validator", "router")
    queue = f"{stack.prefix}.accepted.erp"
    parents = await push_products(http, stack, count)
    await copies_on(channel, queue, parents)
    return queue, parents


async def test_cli_tail_shows_waiting_then_new_copies_without_taking_them(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    queue, waiting = await copies_waiting_for_erp(stack, http, channel, 2)
    tail = await asyncio.to_thread(cli_process, stack, "tail", "erp", "--count", "4")
    assert tail.stderr is not None
    ready = await asyncio.to_thread(tail.stderr.readline)  # the sign that new copies are watched
    assert ready == f"tailing {queue}\n"
    new = await push_products(http, stack, 2)
    out, _ = await asyncio.to_thread(tail.communicate, timeout=30)
    shown = [orjson.loads(line) for line in out.splitlines()]
    assert [row["body"]["parent_id"] for row in shown] == waiting + new
    assert {row["queue"] for row in shown} == {queue}
    assert [row["deliveries"] for row in shown] == [0, 0, 0, 0]
    copies = await take(channel, queue, 4)
    assert [body(m)["parent_id"] for m in copies] == waiting + new, "the subscriber still has all four"
    assert await depth(channel, queue) == 0


async def test_cli_show_peeks_at_a_subscriber_queue(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    queue, parents = await copies_waiting_for_erp(stack, http, channel, 3)
    first = await asyncio.to_thread(cli, stack, "show", "accepted.erp")
    again = await asyncio.to_thread(cli, stack, "show", "accepted.erp", "--limit", "1")
    assert [(r["queue"], r["body"]["parent_id"], r["reason"]) for r in first] == [
        (queue, p, None) for p in parents
    ]
    assert [r["deliveries"] for r in first] == [0, 0, 0]
    assert [(r["body"]["parent_id"], r["deliveries"]) for r in again] == [(parents[0], 1)], "a look counts"
    left = [body(m)["parent_id"] for m in await take(channel, queue, 3)]
    assert sorted(left) == sorted(parents), "all three are still there (a look may reorder them)"


def test_cli_show_refuses_a_queue_it_does_not_know(stack: Stack) -> None:
    process = cli_process(stack, "show", "accepted.")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert (
        "'accepted.': one of rejected, unrouted, dead, parked.SUBSCRIBER, accepted.SUBSCRIBER or a message id"
        in err
    )


async def test_cli_show_and_replay_rejected_after_a_schema_fix(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, tmp_path
) -> None:
    schemas = tmp_path / "schemas"
    (schemas / "loyalty" / "points").mkdir(parents=True)
    strict = '{"type": "object", "required": ["points"], "properties": {"points": {"type": "integer"}}}'
    (schemas / "loyalty" / "points" / "added.json").write_text(strict)
    (schemas / "loyalty" / "points" / "spent.json").write_text(strict)
    stack.env |= {"INTEGRATOR_SCHEMAS": str(schemas), "INTEGRATOR_GATEWAY_VALIDATES": "false"}
    await stack.start("gateway", "validator", "router")
    ids = []
    for points in ("5", "6"):
        doc = {"message": "loyalty:points:added", "store_id": STORE, "payload": {"points": points}}
        async with http.post(stack.url + "/messages", json=doc) as response:
            ids.append((await response.json())["message_id"])
    other = {"message": "loyalty:points:spent", "store_id": STORE, "payload": {"points": "7"}}
    async with http.post(stack.url + "/messages", json=other) as response:
        other_id = (await response.json())["message_id"]
    for _ in range(100):
        if await depth(channel, f"{stack.prefix}.rejected") == 3:
            break
        await asyncio.sleep(0.1)
    assert await depth(channel, f"{stack.prefix}.rejected") == 3

    shown = await asyncio.to_thread(cli, stack, "show", "rejected")
    assert [row["message_id"] for row in shown] == [*ids, other_id]
    assert shown[0]["reason"] == '/payload/points: must be an integer, got "5"'
    assert await depth(channel, f"{stack.prefix}.rejected") == 3, "show leaves them in place"

    # the fix: points may be numeric strings too; restart the validator with it
    (schemas / "loyalty" / "points" / "added.json").write_text(
        strict.replace('"integer"', '["integer", "string"]')
    )
    stack.service("validator").stop()
    stack.services.pop("validator")
    await stack.start("validator")
    replayed = await asyncio.to_thread(cli, stack, "replay", "rejected", "--type", "loyalty:points:added")
    assert replayed[-1] == {"replayed_total": 2, "from": f"{stack.prefix}.rejected"}
    copies = await take(channel, f"{stack.prefix}.accepted.store", 2)
    assert sorted(body(c)["parent_id"] for c in copies) == sorted(ids), "the original message ids, kept"
    [kept] = await asyncio.to_thread(cli, stack, "show", "rejected")
    assert (kept["message_id"], kept["reason"]) == (other_id, '/payload/points: must be an integer, got "7"')


async def test_cli_replays_a_dead_copy_to_the_queue_it_died_in(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    stack.env["INTEGRATOR_DELIVERY_LIMIT"] = "1"
    await stack.start("gateway", "validator", "router")
    async with http.post(stack.url + "/messages", json=NEW_PRODUCT) as response:
        parent_id = (await response.json())["message_id"]
    erp = await channel.get_queue(f"{stack.prefix}.accepted.erp", ensure=False)
    for _ in range(2):  # a subscriber that fails twice
        message = await next_message(erp)
        await message.nack(requeue=True)
    [shown] = await asyncio.to_thread(cli, stack, "show", "dead")
    assert shown["reason"] == f"delivery_limit in {stack.prefix}.accepted.erp"
    assert shown["body"]["parent_id"] == parent_id

    replayed = await asyncio.to_thread(cli, stack, "replay", "dead")
    assert replayed[0]["to"] == f"{stack.prefix}.accepted"
    [back] = await take(channel, erp.name, 1)
    assert back.message_id == shown["message_id"]
    assert "x-death" not in back.headers
    assert back.headers["replayed_from"] == f"{stack.prefix}.dead"


async def test_cli_replays_unrouted_after_a_subscription_fix(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, subscriptions_file
) -> None:
    subscriptions_file.write_text("subscribers:\n  erp:\n    messages: ['order:*']\n")
    await stack.start("gateway", "validator", "router")
    doc = {"message": "stock:change", "store_id": STORE, "payload": {"sku": "S", "quantity": 2}}
    async with http.post(stack.url + "/messages", json=doc) as response:
        parent_id = (await response.json())["message_id"]
    [held] = await asyncio.to_thread(cli, stack, "show", "unrouted", "--limit", "5")
    assert held["message_id"] == parent_id

    subscriptions_file.write_text("subscribers:\n  erp:\n    messages: ['order:*', 'stock:*']\n")
    stack.service("router").stop()
    stack.services.pop("router")
    await stack.start("router")
    replayed = await asyncio.to_thread(cli, stack, "replay", "unrouted")
    assert replayed == [
        {"replayed": parent_id, "message": "stock:change", "to": f"{stack.prefix}.validated"},
        {"replayed_total": 1, "from": f"{stack.prefix}.unrouted"},
    ]
    [copy] = await take(channel, f"{stack.prefix}.accepted.erp", 1)
    assert body(copy)["parent_id"] == parent_id


SECRET_URL = "amqp://guest:s3cret@127.0.0.1:{port}/"


def run_with_url(url: str, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AMQP_URL": url, "INTEGRATOR_PREFIX": "never-created"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


def test_a_missing_broker_is_one_clear_sentence_without_the_password() -> None:
    url = SECRET_URL.format(port=free_port())  # nothing listens there
    for command in (
        [sys.executable, "-m", "integrator.check_broker"],
        [sys.executable, "-m", "integrator.cli", "stats"],
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_core.py"],
    ):
        result = run_with_url(url, *command)
        said = result.stdout + result.stderr
        assert result.returncode != 0, command
        assert f"No RabbitMQ answers at amqp://guest:***@127.0.0.1:{url.split(':')[3]}" in said, said
        if "pytest" not in command:
            assert said.startswith("No RabbitMQ answers"), "one sentence, nothing before it"
        assert "rabbitmq-server -detached" in said
        assert "s3cret" not in said
        assert "Traceback" not in said


async def test_refused_credentials_are_never_printed_or_logged(tmp_path) -> None:
    url = SECRET_URL.format(port=urlparse(AMQP_URL).port or 5672)  # the real broker, a wrong password
    cli_run = await asyncio.to_thread(run_with_url, url, sys.executable, "-m", "integrator.cli", "stats")
    assert cli_run.returncode == 1
    assert cli_run.stderr.startswith("RabbitMQ at amqp://guest:***@127.0.0.1:"), cli_run.stderr
    assert "refuses these credentials" in cli_run.stderr
    validator = Service("services.validator", {"AMQP_URL": url}, tmp_path / "validator.log")
    validator.launch()
    assert validator.process is not None
    assert await asyncio.to_thread(validator.process.wait, 30) == 1
    log = validator.log_text()
    assert '"event":"broker refused"' in log
    assert "s3cret" not in log + cli_run.stdout + cli_run.stderr


def test_redact_hides_every_password_in_a_line() -> None:
    line = "to amqp://guest:s3cret@a:5672/, then amqps://u:p%40ss@b/vh and postgresql://pg@c/db"
    assert redact(line) == "to amqp://guest:***@a:5672/, then amqps://u:***@b/vh and postgresql://pg@c/db"


async def test_every_answer_is_application_json_and_workers_answer_404s_in_json(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    await stack.start("gateway", "validator", "router")
    answers = []
    for url, method, data, headers in (
        (stack.url + "/healthz", "GET", None, {}),
        (stack.url + "/schemas", "GET", None, {}),
        (stack.url + "/messages", "POST", orjson.dumps(NEW_PRODUCT), {"Content-Type": "application/json"}),
        (stack.url + "/messages", "POST", b"{}", {"Content-Type": "application/json"}),
        (stack.url + "/nowhere", "GET", None, {}),
        (stack.service_url("validator") + "/readyz", "GET", None, {}),
        (stack.service_url("validator") + "/nowhere", "GET", None, {}),
        (stack.service_url("router") + "/metrics", "POST", None, {}),
    ):
        async with http.request(method, url, data=data, headers=headers) as response:
            answers.append((response.status, response.headers["Content-Type"]))
            if response.status == 404:
                assert await response.json() == {"error": "no such path: /nowhere", "errors": []}
            if response.status == 405:
                assert (await response.json())["error"] == "method POST not allowed here; allowed: GET, HEAD"
    json = "application/json"
    assert answers == [(200, json), (200, json), (202, json), (422, json), (404, json),
                       (200, json), (404, json), (405, json)]  # fmt: skip


async def test_a_push_without_content_type_is_told_so(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.start("gateway")
    async with http.post(
        stack.url + "/messages", data=orjson.dumps(NEW_PRODUCT), skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 415
        assert (await response.json())["error"] == (
            "content type must be application/json, got no Content-Type header"
        )


async def test_each_service_exports_only_its_own_metrics(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.start("gateway", "validator", "router")
    families = {}
    for name in ("gateway", "validator", "router"):
        async with http.get(stack.service_url(name) + "/metrics") as response:
            text = await response.text()
        every = {f.name for f in text_string_to_metric_families(text)}
        assert "process_cpu_seconds" in every
        families[name] = {f for f in every if f.startswith("integrator") and not f.endswith("_created")}
    assert families == {
        "gateway": {"integrator_gateway_requests", "integrator_publish_confirm_seconds",
                    "integrator_in_flight"},
        "validator": {"integrator_messages_validated", "integrator_handler_failures", "integrator_set_aside",
                      "integrator_publish_confirm_seconds", "integrator_in_flight"},
        "router": {"integrator_messages_routed", "integrator_messages_unrouted",
                   "integrator_copies_declined", "integrator_subscriptions_reloads",
                   "integrator_subscriptions_file_valid", "integrator_database_up",
                   "integrator_messages_dead_lettered", "integrator_end_to_end_seconds",
                   "integrator_handler_failures", "integrator_set_aside",
                   "integrator_publish_confirm_seconds", "integrator_in_flight"},
    }  # fmt: skip


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm to make"])
def test_make_run_creates_its_database_and_stops_its_services_once_each(
    stop: str, prefix: str, tmp_path: Path, subscriptions_file: Path
) -> None:
    names = ("GATEWAY", "VALIDATOR", "ROUTER", "LEDGER", "DELIVERER", "CONSOLE")
    ports = {name: str(free_port()) for name in names}
    database = f"{SERVER}/integrator_test_{prefix.replace('-', '_')}"  # not there yet: make run makes it
    env = {
        "INTEGRATOR_DATABASE_URL": database,
        **os.environ,
        "AMQP_URL": AMQP_URL,
        "INTEGRATOR_PREFIX": prefix,
        "INTEGRATOR_SUBSCRIPTIONS": str(subscriptions_file),
        **{f"INTEGRATOR_{name}_PORT": port for name, port in ports.items()},
    }
    output = tmp_path / "make-run.log"
    with output.open("wb") as out:  # a session of its own, as a terminal gives its foreground job
        make = subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        ready = ['"event":"accepting messages"', '"service":"console","event":"serving"'] + [
            f'"service":"{name}","event":"consuming"'
            for name in ("validator", "router", "ledger", "deliverer")
        ]
        while not all(sign in output.read_text() for sign in ready):
            assert make.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.1)
        if stop == "ctrl-c":
            os.killpg(make.pid, signal.SIGINT)  # what the terminal sends its foreground group
        else:
            make.terminate()  # to make alone, as a script that ran `make run &` stops it
        assert make.wait(30) != 0
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        left_running = kill_services_of(prefix)  # make stops them; if it did not, they must not linger
        asyncio.run(drop_database(database))
        asyncio.run(delete_topology(prefix, SUBSCRIBERS))
    assert not left_running, f"make run left services running: {left_running}"
    assert f'"created":"{database}"' in output.read_text()
    lines = [orjson.loads(line) for line in output.read_text().splitlines() if line.startswith('{"time"')]
    stops = sorted((e["service"], e["signal"]) for e in lines if e["event"] == "stop requested")
    assert stops == [
        ("console", "SIGTERM"),
        ("deliverer", "SIGTERM"),
        ("gateway", "SIGTERM"),
        ("ledger", "SIGTERM"),
        ("router", "SIGTERM"),
        ("validator", "SIGTERM"),
    ]
    stopped = sorted(e["service"] for e in lines if e["event"] == "stopped")
    assert stopped == ["console", "deliverer", "gateway", "ledger", "router", "validator"], "each stopped"
    assert "No child processes" not in output.read_text()
    for port in ports.values():  # nothing left listening
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(port))) != 0
