"""How every service process runs: structured logs, uvloop, and SIGTERM/SIGINT as a stop request."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from integrator import logs
from integrator.connection import BrokerRefused
from integrator.schemas import SchemaCatalogue, SchemaFileError
from integrator.settings import Settings
from integrator.topology import TopologyConflict

log = logging.getLogger("integrator.service")

Main = Callable[[asyncio.Event], Awaitable[None]]


def settings_or_exit() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        sys.exit(f"invalid setting: {exc}")


def load_catalogue_or_exit(service: str, settings: Settings) -> SchemaCatalogue:
    """The schema catalogue; a bad schema file stops the service, naming the file and the problem."""
    try:
        return SchemaCatalogue.load(settings.schemas_dir, settings.strict_schemas)
    except SchemaFileError as exc:
        sys.exit(f"{service}: {exc}")


def run_service(name: str, settings: Settings, main: Main) -> None:
    """Run `main(stopping)` until it returns; a signal sets `stopping` so it can finish in-flight work."""
    logs.configure(name, settings.log_level)
    # What is loaded by now (modules, schemas, settings) lives as long as the process. Freezing it
    # keeps the collector from walking it again: each full collection had paused every message in
    # flight for 50-90 ms, and the p99 at 100 originals/s fell from 62-77 to 31-35 ms without them.
    gc.freeze()

    async def supervised() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _request_stop, stopping, signum)
        log.info("starting", extra={"prefix": settings.prefix})
        try:
            await main(stopping)
        except TopologyConflict as exc:
            log.error("cannot declare the topology", extra={"error": str(exc)})
            sys.exit(f"{name}: {exc}")
        except BrokerRefused as exc:
            log.error("broker refused", extra={"error": str(exc)})
            sys.exit(f"{name}: {exc}")
        log.info("stopped")

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        asyncio.run(supervised())
    else:
        uvloop.run(supervised())


def _request_stop(stopping: asyncio.Event, signum: int) -> None:
    log.info("stop requested", extra={"signal": signal.Signals(signum).name})
    stopping.set()
