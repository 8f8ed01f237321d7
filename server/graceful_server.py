"""GracefulServer: uvicorn's Server with the contract's drain on SIGTERM/SIGINT and a non-zero exit on engine death.

Drain (vLLM's `--shutdown-timeout` semantics): the first signal flips /health to 503 and refuses new requests
with 503 at once, while the listening socket stays open (probes and load balancers must see the 503); in-flight
requests may finish for up to `shutdown_timeout` seconds, then the rest are aborted (streams get an error event)
and uvicorn shuts down. A second signal exits at once. NOTE: uvicorn re-raises captured signals after serving;
the drain path does not record them, so a drained server exits 0, and one whose engine died exits 1.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

from server.context import ServingContext

logger = logging.getLogger(__name__)
ABORT_FLUSH_S = 0.5  # after aborting, time for streams to write their error event


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ctx: ServingContext, shutdown_timeout: float,
                 on_started: Callable[[GracefulServer], None] | None = None) -> None:
        super().__init__(config)
        self.ctx = ctx
        self.shutdown_timeout = shutdown_timeout
        self.exit_code = 0
        self._on_started = on_started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
        self.ctx.engine.add_death_callback(self._engine_died)
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started(self)

    def bound_port(self) -> int:
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self.config.port)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self._drain_task is not None or self.should_exit:
            self.force_exit = True  # second signal: stop now
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self.drain())

    async def drain(self) -> None:
        ctx = self.ctx
        ctx.draining = True
        open_requests = ctx.engine.num_open_requests
        logger.info("draining: %d request(s) in flight, up to %.1fs", open_requests, self.shutdown_timeout)
        deadline = time.monotonic() + self.shutdown_timeout
        while ctx.engine.num_open_requests and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if ctx.engine.num_open_requests:
            logger.warning("drain timeout: aborting %d request(s)", ctx.engine.num_open_requests)
            ctx.engine.abort_all("the server is shutting down")
            await asyncio.sleep(ABORT_FLUSH_S)
        self.should_exit = True

    def _engine_died(self, error: BaseException) -> None:
        logger.error("engine loop died (%r): exiting with status 1", error)
        self.exit_code = 1
        self.should_exit = True
