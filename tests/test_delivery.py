"""Delivery to web endpoints: the real services POSTing to a real HTTP receiver in the test."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractChannel
from standardwebhooks.webhooks import Webhook

from integrator.ids import child_message_id
from tests.conftest import NEW_PRODUCT, STORE
from tests.conftest import OTHER_WEBHOOK_SECRET as OTHER_SECRET
from tests.conftest import WEBHOOK_SECRET as SECRET
from tests.support.broker import depth
from tests.support.processes import Stack
from tests.support.receiver import Answer, Receiver
from tests.support.scrape import scrape
from tests.test_ledger import pushed, record_in
from tests.test_operations import cli


def endpoints(path: Path, settings: str = "", **urls: str) -> None:
    """A subscriptions file with a queue subscriber `store` and an endpoint subscriber per url;
    `settings` are more lines of each endpoint (`timeout_seconds: 1`)."""
    text = "subscribers:\n  store:\n    messages: ['#']\n"
    for name, url in urls.items():
        text += f"  {name}:\n    messages: ['product:*']\n"
        text += f"    endpoint:\n      url: {url}\n      secret: {SECRET}\n"
        text += "".join(f"      {line}\n" for line in settings.splitlines())
    path.write_text(text)


@pytest.fixture
def delivering(stack: Stack, subscriptions_file: Path) -> Stack:
    stack.env |= {"INTEGRATOR_ALLOW_PRIVATE_ENDPOINTS": "true", "INTEGRATOR_RETRY_SCHEDULE": "1,1"}
    return stack


async def test_a_copy_is_delivered_once_signed(
    delivering: Stack, subscriptions_file: Path, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    async with Receiver() as receiver:
        endpoints(subscriptions_file, hooks=receiver.url)
        await delivering.start("gateway", "validator", "router", "deliverer", "ledger")
        parent_id = (await pushed(http, delivering, NEW_PRODUCT))["message_id"]
        (request,) = await receiver.wait_for(1)
        copy_id = child_message_id(parent_id, "hooks")
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["webhook-id"] == copy_id
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("Integrator/")
        Webhook(SECRET).verify(request.body, headers)  # raises if the signature does not verify
        body = orjson.loads(request.body)
        assert (body["message_id"], body["parent_id"], body["store_id"]) == (copy_id, parent_id, STORE)
        assert body["payload"] == NEW_PRODUCT["payload"]
        record = await record_in(http, delivering, copy_id, "delivered")
        ((attempt),) = record["attempts"]
        assert (attempt["status"], attempt["error"], attempt["response"]) == (200, None, "ok")
        # once, not again: nothing waits for a retry or on the queue (the ledger hears of the
        # attempt only once the copy is settled)
        waiting = [f"{delivering.prefix}.{queue}" for queue in ("accepted.hooks", "retry.1s")]
        assert [await depth(channel, queue) for queue in waiting] == [0, 0]
        assert len(receiver.requests) == 1
        metrics = await scrape(http, delivering.service_url("deliverer"))
        assert (
            metrics[("integrator_delivery_attempts_total", (("outcome", "2xx"), ("subscriber", "hooks")))]
            == 1
        )
        assert metrics[("integrator_endpoint_circuit_state", (("subscriber", "hooks"),))] == 0
        assert metrics[("integrator_delivery_seconds_count", (("subscriber", "hooks"),))] == 1
        assert metrics[("integrator_endpoint_queue_depth", (("subscriber", "hooks"),))] == 0


async def test_a_failing_endpoint_gets_the_same_copy_until_it_answers(
    delivering: Stack, subscriptions_file: Path, http: aiohttp.ClientSession
) -> None:
    delivering.env["INTEGRATOR_RETRY_SCHEDULE"] = "1,1,1"
    async with Receiver(Answer(500, body="boom"), Answer(502)) as receiver:
        endpoints(subscriptions_file, hooks=receiver.url)
        await delivering.start("gateway", "validator", "router", "deliverer", "ledger")
        parent_id = (await pushed(http, delivering, NEW_PRODUCT))["message_id"]
        requests = await receiver.wait_for(3)
        copy_id = child_message_id(parent_id, "hooks")
        assert [r.headers["webhook-id"] for r in requests] == [copy_id] * 3
        assert len({r.body for r in requests}) == 1, "the same body on every attempt"
        assert all(b.at - a.at >= 0.9 for a, b in itertools.pairwise(requests)), "a second apart at least"
        record = await record_in(http, delivering, copy_id, "delivered")
        answers = [(a["status"], a["response"]) for a in record["attempts"]]
        assert answers == [(500, "boom"), (502, "ok"), (200, "ok")]


async def test_a_410_disables_the_endpoint_and_its_copies_wait(
    delivering: Stack, subscriptions_file: Path, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    async with Receiver(Answer(410)) as receiver:
        endpoints(subscriptions_file, hooks=receiver.url)
        await delivering.start("gateway", "validator", "router", "deliverer", "ledger")
        first = (await pushed(http, delivering, NEW_PRODUCT))["message_id"]
        await receiver.wait_for(1)
        await record_in(http, delivering, child_message_id(first, "hooks"), "disabled")
        second = (await pushed(http, delivering, NEW_PRODUCT))["message_id"]
        queue = f"{delivering.prefix}.accepted.hooks"
        deadline = time.monotonic() + 10
        while await depth(channel, queue) < 2:
            assert time.monotonic() < deadline, "the copies are not held on the endpoint's queue"
            await asyncio.sleep(0.05)
        assert len(receiver.requests) == 1, "nothing sent while disabled"
        (listed,) = await asyncio.to_thread(cli, delivering, "endpoints", "list")
        assert (listed["subscriber"], listed["enabled"], listed["url"]) == ("hooks", False, receiver.url)
        assert "secret" not in listed and SECRET not in orjson.dumps(listed).decode()
        await asyncio.to_thread(cli, delivering, "endpoints", "enable", "hooks")
        requests = await receiver.wait_for(3)
        assert {r.headers["webhook-id"] for r in requests[1:]} == {
            child_message_id(first, "hooks"),
            child_message_id(second, "hooks"),
        }
        assert await depth(channel, queue) == 0


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(
    status: int, delivering: Stack, subscriptions_file: Path, http: aiohttp.ClientSession
) -> None:
    async with Receiver(Answer(status, {"Retry-After": "2"})) as receiver:
        endpoints(subscriptions_file, hooks=receiver.url)
        await delivering.start("gateway", "validator", "router", "deliverer")
        await pushed(http, delivering, NEW_PRODUCT)
        first, second = await receiver.wait_for(2)
        assert second.at - first.at >= 2.0, "retried before Retry-After said"


async def test_an_endpoint_that_does_not_answer_in_time_gets_the_copy_again(
    delivering: Stack, subscriptions_file: Path, http: aiohttp.ClientSession
) -> None:
    async with Receiver(Answer(after=3)) as receiver:
        endpoints(subscriptions_file, "timeout_seconds: 1", hooks=receiver.url)
        await delivering.start("gateway", "validator", "router", "deliverer", "ledger")
        parent_id = (await pushed(http, delivering, NEW_PRODUCT))["message_id"]
        first, second = await receiver.wait_for(2)
        assert second.at - first.at >= 2.0, "the timed-out attempt, then the schedule's 1 s"
        record = await record_in(http, delivering, child_message_id(parent_id, "hooks"), "delivered")
        timed_out, answered = record["attempts"]
        assert (timed_out["status"], timed_out["error"]) == (None, "no answer within 1 s")
        assert 1000 <= timed_out["duration_ms"] < 2000 and answered["at"] > timed_out["at"]
        assert (answered["status"], answered["error"]) == (200, None)


async def test_a_copy_waits_for_its_next_attempt_in_a_delay_queue(
    delivering: Stack, subscriptions_file: Path, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    delivering.env["INTEGRATOR_RETRY_SCHEDULE"] = "5"
    async with Receiver(Answer(500)) as receiver:
        endpoints(subscriptions_file, hooks=receiver.url)
        await delivering.start("gateway", "validator", "router", "deliverer")
        await pushed(http, delivering, NEW_PRODUCT)
        (first,) = await receiver.wait_for(1)
        waiting = f"{delivering.prefix}.retry.5s"
        deadline = time.monotonic() + 5
        while await depth(channel, waiting) != 1:
            assert time.monotonic() < deadline, "the copy is not waiting in the delay queue (acked there)"
            await asyncio.sleep(0.05)
        _, second = await receiver.wait_for(2, within=10)
        assert 5.0 <= second.at - first.at < 6.5, "the delay, stretched by at most a tenth"
        assert await depth(channel, waiting) == 0


async def test_a_circuit_stops_the_requests_to_an_endpoint_that_fails_every_one(
    delivering: Stack, subscriptions_file: Path, http: aiohttp.ClientSession
) -> None:
    async with Receiver(then=Answer(500)) as receiver:
        endpoints(subscriptions_file, "max_in_flight: 1", hooks=receiver.url)  # one failure after another
        await delivering.start("gateway", "validator", "router", "deliverer")
        for _ in range(8):
            await pushed(http, delivering, NEW_PRODUCT)
        requests = await receiver.wait_for(6, within=15)
        metrics = await scrape(http, delivering.service_url("deliverer"))
        assert metrics[("integrator_endpoint_circuit_state", (("subscriber", "hooks"),))] in (1, 2)
        fifth, probe = requests[4], requests[5]
        assert probe.at - fifth.at >= 4.9, "after five failures in a row, nothing until the probe 5 s on"


async def test_a_spent_schedule_parks_the_copy_and_replay_delivers_it(
    delivering: Stack, subscriptions_file: Path, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    async with Receiver(then=Answer(500)) as receiver:
        endpoints(subscriptions_file, hooks=receiver.url)
        await delivering.start("gateway", "validator", "router", "deliverer", "ledger")
        parent_id = (await pushed(http, delivering, NEW_PRODUCT))["message_id"]
        copy_id = child_message_id(parent_id, "hooks")
        await receiver.wait_for(3)  # the first attempt and the schedule's two
        record = await record_in(http, delivering, copy_id, "parked")
        assert [a["status"] for a in record["attempts"]] == [500, 500, 500]
        parked = f"{delivering.prefix}.parked.hooks"
        (shown,) = await asyncio.to_thread(cli, delivering, "show", "parked.hooks")
        assert shown["message_id"] == copy_id and [a[1] for a in shown["attempts"]] == [500] * 3
        receiver.then = Answer(200)
        (replayed, total) = await asyncio.to_thread(cli, delivering, "replay", "parked.hooks")
        assert (replayed["replayed"], total["replayed_total"]) == (copy_id, 1)
        await receiver.wait_for(4)
        await record_in(http, delivering, copy_id, "delivered")
        assert await depth(channel, parked) == 0


async def test_a_slow_endpoint_does_not_delay_a_fast_one(
    delivering: Stack, subscriptions_file: Path, http: aiohttp.ClientSession
) -> None:
    async with Receiver(then=Answer(after=5)) as slow, Receiver() as fast:
        endpoints(subscriptions_file, slow=slow.url, fast=fast.url)
        await delivering.start("gateway", "validator", "router", "deliverer")
        for _ in range(20):  # more than the slow one's max_in_flight (8)
            await pushed(http, delivering, NEW_PRODUCT)
        started = time.monotonic()
        await fast.wait_for(20, within=4)
        assert time.monotonic() - started < 4
        assert len(slow.requests) == 8, "the slow endpoint has its max_in_flight, no more"


async def test_the_deliverer_killed_mid_flight_loses_nothing(
    delivering: Stack, subscriptions_file: Path, http: aiohttp.ClientSession
) -> None:
    async with Receiver(*[Answer(after=30)] * 8) as receiver:  # the first eight hang
        endpoints(subscriptions_file, hooks=receiver.url)
        await delivering.start("gateway", "validator", "router", "deliverer")
        parents = [(await pushed(http, delivering, NEW_PRODUCT))["message_id"] for _ in range(12)]
        await receiver.wait_for(8)
        delivering.service("deliverer").stop(signal.SIGKILL)
        await delivering.start("deliverer")
        expected = {child_message_id(p, "hooks") for p in parents}
        deadline = time.monotonic() + 20
        while {r.headers["webhook-id"] for r in receiver.requests[8:]} != expected:
            assert time.monotonic() < deadline, "a copy was lost with the deliverer"
            await asyncio.sleep(0.05)


async def test_private_addresses_are_refused_unless_allowed(
    stack: Stack, subscriptions_file: Path, http: aiohttp.ClientSession
) -> None:
    endpoints(subscriptions_file, hooks="http://127.0.0.1:9/hooks")
    process = stack.service("deliverer")
    process.launch()
    assert process.process is not None and await asyncio.to_thread(process.process.wait, 20) == 1
    assert "127.0.0.1 is a loopback address" in process.log_text()
    async with Receiver() as receiver:  # a name, allowed at load, that resolves to loopback
        endpoints(subscriptions_file, hooks=receiver.url.replace("127.0.0.1", "vm"))
        stack.env["INTEGRATOR_RETRY_SCHEDULE"] = "60"
        await stack.start("gateway", "validator", "router", "deliverer", "ledger")
        parent_id = (await pushed(http, stack, NEW_PRODUCT))["message_id"]
        record = await record_in(http, stack, child_message_id(parent_id, "hooks"), "failing")
        (attempt,) = record["attempts"]
        assert attempt["status"] is None and "vm resolves to no public address" in attempt["error"]
        assert receiver.requests == []


def test_a_rotation_signs_with_every_secret(tmp_path: Path) -> None:
    from integrator.endpoints import parse_endpoint

    problems: list[str] = []
    spec = {"url": "https://erp.example.com/hub", "secret": [SECRET, OTHER_SECRET]}
    endpoint = parse_endpoint(spec, problems)
    assert problems == [] and endpoint is not None
    timestamp = int(time.time())
    headers = {"webhook-id": "m1", "webhook-timestamp": str(timestamp),
               "webhook-signature": endpoint.signature("m1", timestamp, b"{}")}  # fmt: skip
    for secret in (SECRET, OTHER_SECRET):
        Webhook(secret).verify(b"{}", headers)
    assert SECRET not in repr(endpoint)


def test_secret_env_is_needed_only_where_copies_are_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrator.subscriptions import Subscriptions, SubscriptionsError

    path = tmp_path / "subscriptions.yml"
    path.write_text(
        "subscribers:\n  erp:\n    messages: ['order:*']\n    endpoint:\n"
        "      url: https://erp.example.com/hub\n      secret_env: ERP_TEST_SECRET\n"
    )
    monkeypatch.delenv("ERP_TEST_SECRET", raising=False)
    assert Subscriptions.load(path).names == ("erp",), "the router and the CLI have no need of it"
    with pytest.raises(SubscriptionsError) as raised:
        Subscriptions.load(path, signing=True)
    assert raised.value.problems == [
        f"{path}: subscriber 'erp': endpoint.secret_env: no environment variable 'ERP_TEST_SECRET'"
    ]
    monkeypatch.setenv("ERP_TEST_SECRET", f"{SECRET} {OTHER_SECRET}")  # a rotation
    (erp,) = Subscriptions.load(path, signing=True).subscribers
    assert erp.endpoint is not None
    timestamp = int(time.time())
    headers = {"webhook-id": "m1", "webhook-timestamp": str(timestamp),
               "webhook-signature": erp.endpoint.signature("m1", timestamp, b"{}")}  # fmt: skip
    for secret in (SECRET, OTHER_SECRET):
        Webhook(secret).verify(b"{}", headers)


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        (
            {"url": "ftp://erp.example.com/", "secret": SECRET},
            "endpoint.url: 'ftp://erp.example.com/' must be an http",
        ),
        ({"url": "https://u:p@erp.example.com/", "secret": SECRET}, "must not carry credentials"),
        ({"url": "https://erp.example.com/"}, "endpoint.give either 'secret' or 'secret_env'"),
        ({"url": "https://erp.example.com/", "secret": "hunter2"}, "endpoint.secret: each secret is whsec_"),
        ({"url": "https://erp.example.com/", "secret_env": 7}, "endpoint.secret_env: 7 is not the name"),
        (
            {"url": "https://erp.example.com/", "secret": SECRET, "timeout_seconds": 0},
            "endpoint.timeout_seconds",
        ),
        ({"url": "https://erp.example.com/", "secret": SECRET, "max_in_flight": 0}, "endpoint.max_in_flight"),
        ({"url": "https://erp.example.com/", "secret": SECRET, "rate": -1}, "endpoint.rate"),
        (
            {"url": "https://erp.example.com/", "secret": SECRET, "retries": 3},
            "endpoint: unknown keys ['retries']",
        ),
    ],
)
def test_a_bad_endpoint_is_named_in_the_file_s_problems(endpoint: dict, problem: str) -> None:
    from integrator.subscriptions import Subscriptions, SubscriptionsError

    with pytest.raises(SubscriptionsError) as raised:
        Subscriptions.parse({"subscribers": {"erp": {"messages": ["order:*"], "endpoint": endpoint}}})
    (found,) = raised.value.problems
    assert found.startswith("subscriber 'erp': ") and problem in found, found


@pytest.mark.parametrize(
    ("host", "refused"),
    [("127.0.0.1", True), ("10.1.2.3", True), ("192.168.0.1", True), ("169.254.169.254", True),
     ("100.100.100.200", True), ("[::1]", True), ("[fd00:ec2::254]", True), ("[::ffff:127.0.0.1]", True),
     ("localhost", True), ("metadata.google.internal", True), ("0.0.0.0", True),
     ("93.184.216.34", False), ("erp.example.com", False)],
)  # fmt: skip
def test_addresses_the_hub_will_not_send_to(host: str, refused: bool) -> None:
    from integrator.endpoints import host_refusal

    assert (host_refusal(host) is not None) == refused


async def test_the_circuit_opens_after_failures_in_a_row_and_a_probe_closes_it() -> None:
    from services.deliverer.gates import CLOSED, HALF_OPEN, OPEN, Circuit

    circuit = Circuit(failures_to_open=3, cooldown=0.2)
    for _ in range(2):
        await circuit.admit()
        circuit.record(False)
    assert circuit.state == CLOSED, "two failures do not open it"
    circuit.record(False)
    assert circuit.state == OPEN
    started = time.monotonic()
    attempts = {asyncio.ensure_future(circuit.admit()) for _ in range(2)}
    (_probe,), waiting = await asyncio.wait(attempts, return_when=asyncio.FIRST_COMPLETED)
    assert time.monotonic() - started >= 0.19 and circuit.state == HALF_OPEN
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiting), "one probe at a time"
    circuit.record(False)  # the probe failed: open again, for twice as long
    assert circuit.state == OPEN
    await asyncio.wait(waiting)  # the other is the next probe, 0.4 s on
    assert time.monotonic() - started >= 0.59
    circuit.record(True)
    assert circuit.state == CLOSED
    await asyncio.wait_for(circuit.admit(), 0.01)


async def test_a_rate_spaces_the_requests() -> None:
    from services.deliverer.gates import Pace

    pace = Pace(20)
    started = time.monotonic()
    for _ in range(5):
        await pace.take()
    assert time.monotonic() - started >= 0.19  # the first at once, then one every 50 ms
