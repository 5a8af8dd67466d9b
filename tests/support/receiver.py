"""A real HTTP endpoint for the deliverer to POST to: it records every request and answers as a
test scripts it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.processes import free_port


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    after: float = 0.0  # seconds to wait before answering
    body: str = "ok"


@dataclass(frozen=True)
class Received:
    at: float  # monotonic
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self, *script: Answer, then: Answer = Answer()) -> None:
        self.script = list(script)  # answered in turn; then `then` to everything
        self.then = then
        self.requests: list[Received] = []
        self.port = free_port()
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = self.script.pop(0) if self.script else self.then
        async with self._arrived:
            self.requests.append(Received(time.monotonic(), dict(request.headers), body))
            self._arrived.notify_all()
        if answer.after:
            await asyncio.sleep(answer.after)
        return web.Response(status=answer.status, headers=answer.headers, text=answer.body)

    async def wait_for(self, count: int, within: float = 20.0) -> list[Received]:
        """The first `count` requests, once they have arrived; fail if they do not in time."""
        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.requests) >= count), within)
            except TimeoutError:
                raise AssertionError(f"{len(self.requests)} requests of {count} in {within} s") from None
        return self.requests[:count]
