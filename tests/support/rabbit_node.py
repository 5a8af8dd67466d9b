"""A private RabbitMQ node for tests that stop or kill a broker: never the machine's own.

It runs the installed `rabbitmq-server` as the current user, with its own node name, Erlang
cookie, epmd, AMQP and distribution ports and data directory, all under one temporary folder
that is removed with the node. The CLI talks to it with the same environment, so no command
can reach another node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import aio_pika

from integrator.connection import BROKER_ERRORS

SERVER_DIRS = (Path("/usr/lib/rabbitmq/bin"), Path("/usr/local/lib/rabbitmq/bin"))
"""Where packages put the real scripts; /usr/sbin's wrappers switch to the `rabbitmq` user."""
CLI_PORT_OFFSET = 10000
"""RabbitMQ's CLI tools take their own distribution ports at the node's plus 10000 (11 of them)."""


class NodeUnavailable(Exception):
    """No private node can be started here; the reason says why."""


def _script(name: str) -> Path:
    for directory in SERVER_DIRS:
        if (directory / name).is_file():
            return directory / name
    raise NodeUnavailable(f"{name} is not installed (looked in {', '.join(map(str, SERVER_DIRS))})")


def _epmd() -> str:
    found = shutil.which("epmd") or next(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"), None)
    if found is None:
        raise NodeUnavailable("epmd (Erlang) is not installed")
    return str(found)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base() -> int:
    """A port P with P (AMQP), P+1 (distribution), P+2 (epmd) and the CLI's range all free,
    below the ephemeral range so that no outgoing connection takes one meanwhile."""
    for _ in range(100):
        base = random.randrange(12000, 21000)
        cli = range(base + 1 + CLI_PORT_OFFSET, base + 1 + CLI_PORT_OFFSET + 11)
        if all(_bindable(p) for p in (base, base + 1, base + 2, *cli)):
            return base
    raise NodeUnavailable("no free ports for a private node")


class RabbitNode:
    """One private node; `start()`, then `url` for clients, `stop_app()`/`start_app()`, `kill()`
    and `start()` again on the same data, `remove()`."""

    def __init__(
        self, workdir: Path, management: bool = False, *, name: str | None = None, base: int | None = None,
        epmd_port: int | None = None, home: Path | None = None,
    ) -> None:  # fmt: skip
        """With `management`, the management plugin listens on `management_url`, its statistics
        sampled every second. Nodes of one cluster share `epmd_port` and `home` (the Erlang cookie);
        a node's own epmd is removed with it."""
        self.workdir = workdir
        self.management_port = free_base() if management else None
        self.name = name or f"itest-{uuid.uuid4().hex[:8]}@localhost"
        base = base or free_base()
        self.port, self.dist_port = base, base + 1
        self.own_epmd = epmd_port is None
        self.epmd_port = base + 2 if epmd_port is None else epmd_port
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.management_url = f"http://guest:guest@127.0.0.1:{self.management_port}" if management else None
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "HOME": str(home or workdir),  # its own .erlang.cookie, or its cluster's
            # no busy-waiting schedulers: several nodes share this machine's two cores with the hub
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+sbwt none +sbwtdcpu none +sbwtdio none",
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_PID_FILE": str(workdir / "pid"),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    async def start(self, within: float = 60.0) -> RabbitNode:
        self._launch()
        await self.until_answering(within)
        return self

    def _launch(self) -> None:
        server = _script("rabbitmq-server")
        _script("rabbitmqctl")
        _epmd()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq one
        config = f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n"
        plugins = "[]"  # no management listener unless asked for
        if self.management_port is not None:
            plugins = "[rabbitmq_management]"
            config += f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
            config += "collect_statistics_interval = 1000\n"
        (self.workdir / "enabled_plugins").write_text(f"{plugins}.\n")
        (self.workdir / "rabbitmq.conf").write_text(config)
        with (self.workdir / "server.log").open("ab") as log:  # a session of its own: it may outlive us
            self.process = subprocess.Popen([str(server)], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.workdir, start_new_session=True)  # fmt: skip

    async def until_answering(self, within: float = 60.0) -> None:
        """Wait until an AMQP client gets in (the CLI is not used here: while it waits, it may
        hold a port the node is about to listen on)."""
        deadline = time.monotonic() + within
        quiet = logging.getLogger("aiormq.connection")
        level, quiet.level = quiet.level, logging.CRITICAL  # each refusal is expected, not news
        try:
            await self._until_answering(deadline, within)
        finally:
            quiet.setLevel(level)

    async def _until_answering(self, deadline: float, within: float) -> None:
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise NodeUnavailable(f"rabbitmq-server exited: {self.log_tail()}")
            try:
                connection = await aio_pika.connect(self.url, timeout=2)
            except BROKER_ERRORS:
                if time.monotonic() > deadline:
                    raise NodeUnavailable(f"node did not answer in {within}s: {self.log_tail()}") from None
                await asyncio.sleep(0.2)
            else:
                await connection.close()
                return

    def ctl(self, *args: str, timeout: float = 120, tool: str = "rabbitmqctl") -> str:
        """What `rabbitmqctl -n NODE ARGS` (or another of RabbitMQ's CLI tools) printed."""
        return subprocess.run(
            [str(_script(tool)), "-n", self.name, *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        ).stdout

    async def stop_app(self) -> None:
        await asyncio.to_thread(self.ctl, "stop_app")

    async def start_app(self) -> None:
        await asyncio.to_thread(self.ctl, "start_app")
        await self.until_answering()

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM, as a crash or a lost machine would stop it."""
        os.kill(self.pid(), signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)

    def pid(self) -> int:
        return int((self.workdir / "pid").read_text())

    def running(self) -> bool:
        try:
            os.kill(self.pid(), 0)
        except (OSError, ValueError):
            return False
        return True

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def remove(self) -> None:
        """Stop the node (and its own epmd), then delete everything it wrote."""
        if self.running():
            try:
                self.ctl("stop", timeout=60)
            except (subprocess.SubprocessError, OSError):
                self.kill()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.own_epmd:
            kill_epmd(self.epmd_port)
        shutil.rmtree(self.workdir, ignore_errors=True)


def kill_epmd(port: int) -> None:
    subprocess.run([_epmd(), "-port", str(port), "-kill"], capture_output=True, timeout=10)
