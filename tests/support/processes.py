"""Starting the real services as processes, as users do, and waiting until they are ready."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_services_of(prefix: str) -> list[int]:
    """SIGKILL every process running with INTEGRATOR_PREFIX=`prefix` (services a test started in
    sessions of their own, as `make run` does); returns their pids."""
    marker = f"INTEGRATOR_PREFIX={prefix}".encode()
    killed = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                os.kill(int(environ.parent.name), signal.SIGKILL)
                killed.append(int(environ.parent.name))
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return killed


@dataclass
class Service:
    """One service process, logging to a file the test can read."""

    module: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def launch(self) -> int:
        """Start the process; returns the log offset to wait from."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return offset

    async def start(self, ready_event: str, within: float = 20.0) -> Service:
        await self.wait_for_log(ready_event, within, self.launch())
        return self

    def log_text(self, offset: int = 0) -> str:
        return self.log_path.read_bytes()[offset:].decode(errors="replace")

    async def wait_for_log(self, event: str, within: float = 20.0, offset: int = 0) -> None:
        await self.wait_for_text(f'"event":"{event}"', within, offset)

    async def wait_for_text(self, needle: str, within: float = 20.0, offset: int = 0) -> None:
        """Wait until the log holds `needle` (after `offset`); fail if the process exits first."""
        deadline = time.monotonic() + within
        while needle not in self.log_text(offset):
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.module} exited early:\n{self.log_text(offset)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.module} never logged {needle!r}:\n{self.log_text(offset)}")
            await asyncio.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


# what a service logs once it is ready; every other one logs "consuming"
READY = {"gateway": "accepting messages", "console": "serving"}


@dataclass
class Stack:
    """The gateway, validator, router, ledger and deliverer under one prefix."""

    prefix: str
    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    health_ports: dict[str, int] = field(
        default_factory=lambda: {
            name: free_port() for name in ("validator", "router", "ledger", "deliverer", "console")
        }
    )
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def service_url(self, name: str) -> str:
        """Where a service answers /healthz, /readyz and /metrics."""
        return self.url if name == "gateway" else f"http://127.0.0.1:{self.health_ports[name]}"

    def service(self, name: str) -> Service:
        if name not in self.services:
            env = {
                "INTEGRATOR_PREFIX": self.prefix,
                "INTEGRATOR_GATEWAY_PORT": str(self.port),
                "INTEGRATOR_VALIDATOR_PORT": str(self.health_ports["validator"]),
                "INTEGRATOR_ROUTER_PORT": str(self.health_ports["router"]),
                "INTEGRATOR_LEDGER_PORT": str(self.health_ports["ledger"]),
                "INTEGRATOR_DELIVERER_PORT": str(self.health_ports["deliverer"]),
                "INTEGRATOR_CONSOLE_PORT": str(self.health_ports["console"]),
                "INTEGRATOR_AUTH": "false",  # tests/test_auth.py turns it on
                **self.env,
            }
            self.services[name] = Service(f"services.{name}", env, self.workdir / f"{name}.log")
        return self.services[name]

    async def start(self, *names: str) -> Stack:
        """Launch the named services together and wait until each is ready for work."""
        offsets = {name: self.service(name).launch() for name in names}
        for name, offset in offsets.items():
            ready = READY.get(name, "consuming")
            await self.service(name).wait_for_log(ready, offset=offset)
        return self

    def stop(self) -> None:
        for service in self.services.values():
            if service.process is not None and service.process.poll() is None:
                service.stop()
