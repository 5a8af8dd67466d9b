"""A hostile client gets the house format, learns nothing, and cannot fill the log: malformed
HTTP, bodies that lie about their encoding, slow bodies, hang-ups; and an unexpected error
inside a handler still answers JSON."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from integrator import stores
from integrator.schemas import SchemaCatalogue
from integrator.settings import Settings
from services.gateway.app import create_app
from services.gateway.broker import BrokerLink
from tests.conftest import STORE
from tests.support.broker import AMQP_URL
from tests.support.processes import ROOT, Stack


async def exchange(port: int, request: bytes, wait: float = 5.0) -> bytes:
    """Send raw bytes and return the answer, head and body, or b"" if the server hangs up first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        async with asyncio.timeout(wait):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            return head + await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return b""
    finally:
        writer.close()


def answer(raw: bytes) -> tuple[int, str, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    content_type = next(
        v for k, _, v in (line.partition(": ") for line in lines[1:]) if k.lower() == "content-type"
    )
    return int(lines[0].split()[1]), content_type, json.loads(body)


@pytest.fixture
async def secured(stack: Stack, ledger_db: asyncpg.Pool) -> tuple[Stack, str]:
    _, token = await stores.create(ledger_db, STORE)
    stack.env |= {"INTEGRATOR_AUTH": "true", "INTEGRATOR_BODY_TIMEOUT": "1"}
    await stack.start("gateway")
    return stack, token


@pytest.mark.parametrize(
    "header_line",
    [b"Authorization: Bearer %s\x01", b"Authorization: Bearer %s\nX: y", b"X: y\r\n folded %s"],
    ids=["control character", "bare LF", "folded line"],
)
async def test_malformed_http_is_answered_in_json_without_echo_or_log(
    secured: tuple[Stack, str], header_line: bytes
) -> None:
    stack, token = secured
    request = b"POST /messages HTTP/1.1\r\nHost: hub\r\n" + header_line % token.encode() + b"\r\n\r\n"
    status, content_type, body = answer(await exchange(stack.port, request))
    assert (status, content_type, body) == (
        400,
        "application/json",
        {"error": "malformed HTTP request", "errors": []},
    )
    assert token not in stack.service("gateway").log_text()


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (
            {"Content-Encoding": "gzip"},
            b"not gzip",
            (400, "request body does not match its Content-Encoding"),
        ),
        (
            {"Content-Encoding": "br2"},
            b"{}",
            (415, "content encoding must be one of identity, gzip, deflate"),
        ),
        (
            {"Content-Type": "application/json; charset=latin-1"},
            b"{}",
            (415, "a JSON body is UTF-8, not latin-1"),
        ),
    ],
    ids=["gzip that is not", "unknown encoding", "another charset"],
)
async def test_a_body_that_lies_about_itself_gets_a_json_4xx(
    secured: tuple[Stack, str], http: aiohttp.ClientSession, headers: dict, body: bytes, expected: tuple
) -> None:
    stack, token = secured
    for path in ("/messages", "/messages/validate"):
        sent = {"Content-Type": "application/json", "Authorization": f"Bearer {token}", **headers}
        async with http.post(stack.url + path, data=body, headers=sent, compress=None) as response:
            assert (response.status, (await response.json())["error"]) == expected


async def test_a_body_that_does_not_arrive_in_time_is_answered_408(secured: tuple[Stack, str]) -> None:
    stack, token = secured
    request = (
        b"POST /messages HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
        b"Authorization: Bearer " + token.encode() + b'\r\n\r\n{"message":'
    )
    assert answer(await exchange(stack.port, request)) == (
        408, "application/json", {"error": "request body not received within 1 s", "errors": []}
    )  # fmt: skip


async def test_a_thousand_hang_ups_write_a_handful_of_lines(secured: tuple[Stack, str]) -> None:
    stack, token = secured
    gateway = stack.service("gateway")
    before = len(gateway.log_text().splitlines())
    for _ in range(10):
        await asyncio.gather(
            *(
                exchange(stack.port, b"POST /messages HTTP/1.1\r\nHost: hub\r\n\x01\r\n\r\n", 2)
                for _ in range(100)
            )
        )
    async with aiohttp.ClientSession() as http, http.get(stack.url + "/healthz") as response:
        assert response.status == 200  # still serving
    logged = gateway.log_text().splitlines()[before:]
    assert 1 <= len(logged) <= 20, logged[:5]
    assert all('"event":"request failed"' in line for line in logged)
    assert "Traceback" not in "\n".join(logged) and token not in gateway.log_text()


async def test_an_unexpected_error_in_a_handler_answers_json_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(auth=False)
    app = create_app(settings, BrokerLink(settings), SchemaCatalogue({}))

    async def broken(_: web.Request) -> web.Response:
        raise KeyError("a bug")

    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/broken") as response:
            assert (response.status, await response.json()) == (
                500,
                {"error": "internal error", "errors": []},
            )
    finally:
        await runner.cleanup()
    failures = [r for r in caplog.records if r.getMessage() == "unexpected error"]
    assert len(failures) == 1 and failures[0].exc_info is not None


@pytest.mark.parametrize("service", ["gateway", "validator", "router"])
def test_credentials_the_broker_refuses_stop_a_service_at_once(service: str, tmp_path: Path) -> None:
    wrong = AMQP_URL.replace("guest:guest@", "guest:not-the-password@")
    assert wrong != AMQP_URL, "the tests' broker URL carries guest:guest"
    ports = {f"INTEGRATOR_{name}_PORT": "0" for name in ("GATEWAY", "VALIDATOR", "ROUTER")}
    env = {
        **os.environ, **ports, "AMQP_URL": wrong, "INTEGRATOR_AUTH": "false",
        "INTEGRATOR_PREFIX": f"refused-{service}",
        "INTEGRATOR_SUBSCRIPTIONS": str(ROOT / "config/subscriptions.yml"),
    }  # fmt: skip
    command = [sys.executable, "-m", f"services.{service}"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(f"{service}: the broker refuses the credentials")
    assert "not-the-password" not in result.stderr
