"""AsyncEngine: THE one place where the async server meets the synchronous engine.

Thread picture: the engine core lives in one daemon thread ("glm-engine") that builds it (model load, KV cache)
and then loops: take plain messages from `_inbox` (add / finish / shutdown), run one `step_fn()` when requests are
unfinished, and hand each request's `EngineCoreOutput` to the event loop with ONE `loop.call_soon_threadsafe`
per step. The event loop never touches torch and never blocks on model work; each request (its n completions)
gets an asyncio queue (`RequestGroup`). Moving the engine into another process later changes this file only.

Health: the loop writes `heartbeat` (monotonic seconds) every iteration (at least every `IDLE_WAIT_S` when idle).
A request that fails alone (a core's `step_fn` raises `RequestFailedError` naming it, or `add_request` raises
anything but the ValueError of a refused request) is aborted in the core and fails with HTTP 500 while the
others go on. If the loop raises anything else, every open request fails with `EngineDeadError`, `on_death`
callbacks run on the event loop (the CLI turns that into a non-zero exit) and /health answers 503 from then on.

Stats: the engine core exposes its scheduler (running/waiting lists, KV usage, preemptions, cumulative
speculative-decoding counters in `spec_decode_stats`, sent as per-step deltas) but no per-step token
counts or scheduling events, so a `_ScheduleProbe` wraps `scheduler.schedule` to see each `SchedulerOutput`
(iteration tokens, first-scheduled time of each request: queue and prefill times). NOTE: replace the probe by
engine-reported stats once the engine core offers them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.outputs import EngineCoreOutput, SchedulerOutput
from engine.request import RequestStatus
from engine.sampling_params import SamplingParams
from engine.spec_decode_stats import SpecDecodingStats
from server.metrics import EngineStepStats, ServerMetrics

logger = logging.getLogger(__name__)

IDLE_WAIT_S = 0.25  # idle loop wake-up period (heartbeat refresh)


class EngineCoreLike(Protocol):
    """What AsyncEngine needs of `engine.engine_core.EngineCore` (also met by the test-only scripted core)."""

    scheduler: Any  # .running, .waiting, .kv (.usage, .block_size, [.pool].num_blocks), .num_preemptions, .schedule()
    step_fn: Callable[[], list[EngineCoreOutput]]

    def add_request(self, request_id: str, prompt_token_ids: Sequence[int], sampling_params: SamplingParams) -> None:
        ...

    def abort_request(self, request_ids: str | Sequence[str]) -> None: ...

    def finish_requests(self, request_ids: str | Sequence[str], status: Any) -> Any: ...

    def has_unfinished_requests(self) -> bool: ...


class EngineDeadError(RuntimeError):
    """The engine loop died; the request cannot complete (HTTP 500 / in-stream error)."""


class RequestFailedError(RuntimeError):
    """Raised by a core's `step_fn` when processing some requests failed but the core itself is sound: the loop
    aborts exactly those requests, fails them alone (HTTP 500) and keeps serving the others. NOTE: the step that
    raised emitted nothing; the other requests continue from where they were."""

    def __init__(self, request_ids: Sequence[str], message: str) -> None:
        super().__init__(message)
        self.request_ids = tuple(request_ids)


class RequestAbortedError(RuntimeError):
    """The server aborted the request (shutdown drain ran out of time)."""


@dataclass(frozen=True, slots=True)
class _Add:
    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling_params: SamplingParams


@dataclass(frozen=True, slots=True)
class _Finish:
    request_ids: tuple[str, ...]
    stopped: bool  # True: a stop string ended it (finish_reason "stop"); False: abort


@dataclass(frozen=True, slots=True)
class _Shutdown:
    pass


@dataclass(frozen=True, slots=True)
class StepOutput:
    """One completion's news from one engine step, as the serving layer receives it."""

    output: EngineCoreOutput
    arrived_at: float  # time.monotonic() when the engine thread handed it over
    scheduled_at: float | None  # monotonic time the request was first scheduled (None: unknown)


class RequestGroup:
    """The n completions of one API request: one queue, the outputs of every child in step order.

    Call `next()` until `is_done`; `finish(child, stopped)` ends one child early (stop string or abort);
    `close()` aborts whatever is unfinished. NOTE: always `close()` (try/finally): it is what frees the KV blocks
    of a request whose client went away.
    """

    def __init__(self, engine: AsyncEngine, child_ids: tuple[str, ...]) -> None:
        self.engine = engine
        self.child_ids = child_ids
        self.queue: asyncio.Queue[StepOutput | BaseException] = asyncio.Queue()
        self.unfinished: set[str] = set(child_ids)

    @property
    def is_done(self) -> bool:
        return not self.unfinished

    async def next(self, timeout: float | None = None) -> StepOutput | None:
        """The next output of an unfinished child; None after `timeout` seconds without one (keep-alives).
        Raises EngineDeadError / RequestAbortedError / the engine's ValueError for a refused request."""
        while True:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                if timeout:
                    try:
                        # NOTE: asyncio.timeout, not wait_for: wait_for wraps the get in a new Task, and this
                        # runs once per token per stream on the event loop (server overhead).
                        async with asyncio.timeout(timeout):
                            item = await self.queue.get()
                    except TimeoutError:
                        return None
                else:
                    item = await self.queue.get()
            if isinstance(item, BaseException):
                raise item
            if item.output.request_id not in self.unfinished:
                continue  # a child that was finished early may still deliver a token already in flight
            if item.output.finished:
                self.unfinished.discard(item.output.request_id)
            return item

    def finish(self, child_id: str, stopped: bool) -> None:
        if child_id in self.unfinished:
            self.unfinished.discard(child_id)
            self.engine.send_finish((child_id,), stopped)

    def close(self) -> None:
        if self.unfinished:
            self.engine.send_finish(tuple(self.unfinished), stopped=False)
            self.unfinished.clear()
        self.engine.release(self)


class _ScheduleProbe:
    """Wraps `scheduler.schedule` (engine thread only) to count step tokens and first-scheduled times."""

    def __init__(self, scheduler: Any) -> None:
        self._schedule = scheduler.schedule
        self.num_scheduled_tokens = 0  # since the last take
        self.first_scheduled: dict[str, float] = {}
        scheduler.schedule = self

    def __call__(self) -> SchedulerOutput:
        out = self._schedule()
        self.num_scheduled_tokens += out.num_scheduled_tokens
        now = time.monotonic()
        for scheduled in out.scheduled:
            self.first_scheduled.setdefault(scheduled.request_id, now)
        return out

    def take_tokens(self) -> int:
        tokens, self.num_scheduled_tokens = self.num_scheduled_tokens, 0
        return tokens


class AsyncEngine:
    def __init__(self, core_factory: Callable[[], EngineCoreLike], metrics: ServerMetrics | None = None,
                 enable_prefix_caching: bool = True) -> None:
        self._core_factory = core_factory
        self._metrics = metrics
        self._prefix_caching = enable_prefix_caching
        self._inbox: queue.SimpleQueue[_Add | _Finish | _Shutdown] = queue.SimpleQueue()
        self._groups: dict[str, RequestGroup] = {}  # child id -> group (event loop only)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._on_death: list[Callable[[BaseException], None]] = []
        self._on_ready: list[Callable[[], None]] = []
        self._announced_ready = False
        self.heartbeat = time.monotonic()
        self.is_ready = False
        self.error: BaseException | None = None  # set once the loop died
        self.core: EngineCoreLike | None = None
        self._died = False  # _die ran on the event loop (callbacks notified)

    # ---- lifecycle (event loop) -----------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="glm-engine", daemon=True)
        self._thread.start()

    def add_ready_callback(self, callback: Callable[[], None]) -> None:
        """`callback()` runs on the event loop once the engine is ready (at once if it already is)."""
        self._on_ready.append(callback)
        if self._announced_ready:
            callback()

    def _became_ready(self) -> None:
        self._announced_ready = True
        for callback in self._on_ready:
            callback()

    def add_death_callback(self, callback: Callable[[BaseException], None]) -> None:
        """`callback(error)` runs on the event loop when the engine loop dies (at once if it already has)."""
        self._on_death.append(callback)
        if self.error is not None and self._died:
            callback(self.error)

    def shutdown(self, timeout: float = 2.0) -> None:
        self._inbox.put(_Shutdown())
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def is_dead(self) -> bool:
        return self.error is not None

    def heartbeat_age(self) -> float:
        return time.monotonic() - self.heartbeat

    @property
    def num_open_requests(self) -> int:
        """API requests in flight (groups), counted on the event loop."""
        return len({id(group) for group in self._groups.values()})

    @property
    def num_open_children(self) -> int:
        return len(self._groups)

    # ---- requests (event loop) ------------------------------------------------------------------------------

    def add_request_group(self, child_ids: Sequence[str], prompts: Sequence[Sequence[int]],
                          params: Sequence[SamplingParams]) -> RequestGroup:
        """Queue one engine request per child (its own prompt and params); outputs arrive in the returned group."""
        if self.error is not None:
            raise EngineDeadError(f"the engine loop died: {self.error!r}")
        group = RequestGroup(self, tuple(child_ids))
        for child_id, prompt, child_params in zip(child_ids, prompts, params, strict=True):
            if child_id in self._groups:
                raise ValueError(f"request id {child_id!r} is already in flight")
            self._groups[child_id] = group
            self._inbox.put(_Add(child_id, tuple(prompt), child_params))
        return group

    def send_finish(self, child_ids: tuple[str, ...], stopped: bool) -> None:
        self._inbox.put(_Finish(child_ids, stopped))

    def release(self, group: RequestGroup) -> None:
        for child_id in group.child_ids:
            if self._groups.get(child_id) is group:
                del self._groups[child_id]

    def abort_all(self, reason: str) -> None:
        """Abort every open request (drain timeout): the engine frees them, their readers get RequestAbortedError."""
        for group in set(self._groups.values()):
            group.queue.put_nowait(RequestAbortedError(reason))
            group.close()

    def _deliver(self, batch: list[StepOutput]) -> None:
        for item in batch:
            group = self._groups.get(item.output.request_id)
            if group is not None:
                group.queue.put_nowait(item)

    def _deliver_error(self, child_id: str, error: BaseException) -> None:
        group = self._groups.get(child_id)
        if group is not None:
            group.queue.put_nowait(error)

    def _die(self, error: BaseException) -> None:
        self._died = True
        dead = EngineDeadError(f"the engine loop died: {error!r}")
        for group in set(self._groups.values()):
            group.queue.put_nowait(dead)
        for callback in self._on_death:
            callback(error)

    # ---- the engine thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._loop is not None
        try:
            core = self._core_factory()
            self.core = core
            probe = _ScheduleProbe(core.scheduler)
            if self._metrics is not None:
                kv = core.scheduler.kv
                self._metrics.record_cache_config(getattr(kv, "pool", kv).num_blocks, kv.block_size)
            self.heartbeat = time.monotonic()
            self.is_ready = True
            logger.info("engine ready")
            self._loop.call_soon_threadsafe(self._became_ready)
            self._loop_forever(core, probe)
        except BaseException as error:  # noqa: BLE001 - anything that ends the loop kills the engine
            logger.exception("engine loop died")
            self.error = error
            self.is_ready = False
            self._loop.call_soon_threadsafe(self._die, error)

    def _loop_forever(self, core: EngineCoreLike, probe: _ScheduleProbe) -> None:
        awaiting_first: dict[str, int] = {}  # request id -> prompt length, until its first output
        preemptions_seen = getattr(core.scheduler, "num_preemptions", 0)
        # Cumulative speculative-decoding counters (the scripted core has none): reported as per-step deltas.
        spec_stats = getattr(core.scheduler, "spec_decode_stats", None) or SpecDecodingStats(0)
        spec_seen = spec_stats.snapshot()
        loop = self._loop
        assert loop is not None
        check_health = getattr(core, "check_health", None)  # raises when a tensor-parallel worker died
        while True:
            self.heartbeat = time.monotonic()
            if check_health is not None:
                check_health()
            if not self._drain_inbox(core, probe, awaiting_first, block=not core.has_unfinished_requests()):
                return
            outputs = self._step(core, probe, awaiting_first) if core.has_unfinished_requests() else []
            now = time.monotonic()
            num_prompt = num_cached = num_generated = 0
            if outputs:
                batch = [StepOutput(out, now, probe.first_scheduled.get(out.request_id)) for out in outputs]
                for out in outputs:
                    num_generated += len(out.new_token_ids)
                    prompt_len = awaiting_first.pop(out.request_id, None)
                    if prompt_len is not None:
                        num_prompt += prompt_len
                        num_cached += out.num_cached_tokens
                    if out.finished:
                        probe.first_scheduled.pop(out.request_id, None)
                loop.call_soon_threadsafe(self._deliver, batch)
            if self._metrics is not None:
                scheduler = core.scheduler
                preemptions = getattr(scheduler, "num_preemptions", 0)
                spec = spec_stats.since(spec_seen)
                if spec.num_drafts:
                    spec_seen = spec_stats.snapshot()
                self._metrics.record_step(EngineStepStats(
                    num_running=len(scheduler.running),
                    num_waiting=len(scheduler.waiting),
                    kv_cache_usage=float(scheduler.kv.usage),
                    num_scheduled_tokens=probe.take_tokens(),
                    num_prompt_tokens=num_prompt,
                    num_cached_prompt_tokens=num_cached,
                    num_generation_tokens=num_generated,
                    num_preemptions=preemptions - preemptions_seen,
                    prefix_caching=self._prefix_caching,
                    spec_num_drafts=spec.num_drafts,
                    spec_num_draft_tokens=spec.num_draft_tokens,
                    spec_num_accepted_tokens=spec.num_accepted_tokens,
                    spec_accepted_per_pos=tuple(spec.num_accepted_tokens_per_pos),
                ))
                preemptions_seen = preemptions

    def _step(self, core: EngineCoreLike, probe: _ScheduleProbe,
              awaiting_first: dict[str, int]) -> list[EngineCoreOutput]:
        try:
            return core.step_fn()
        except RequestFailedError as error:
            logger.error("engine step failed for request(s) %s: %s", ", ".join(error.request_ids), error)
            self._fail_alone(core, error.request_ids, error, probe, awaiting_first)
            return []

    def _fail_alone(self, core: EngineCoreLike, request_ids: Sequence[str], error: BaseException,
                    probe: _ScheduleProbe, awaiting_first: dict[str, int]) -> None:
        """Abort `request_ids` in the core and hand `error` to their readers (engine thread)."""
        core.abort_request(list(request_ids))
        assert self._loop is not None
        for request_id in request_ids:
            probe.first_scheduled.pop(request_id, None)
            awaiting_first.pop(request_id, None)
            self._loop.call_soon_threadsafe(self._deliver_error, request_id, error)

    def _drain_inbox(self, core: EngineCoreLike, probe: _ScheduleProbe, awaiting_first: dict[str, int],
                     block: bool) -> bool:
        """Apply every queued message; returns False on shutdown. Blocks up to IDLE_WAIT_S when idle."""
        try:
            message = self._inbox.get(timeout=IDLE_WAIT_S) if block else self._inbox.get_nowait()
        except queue.Empty:
            return True
        loop = self._loop
        assert loop is not None
        while True:
            if isinstance(message, _Shutdown):
                return False
            if isinstance(message, _Add):
                try:
                    core.add_request(message.request_id, message.prompt_token_ids, message.sampling_params)
                    awaiting_first[message.request_id] = len(message.prompt_token_ids)
                except ValueError as error:  # NOTE: a bad request must never kill the loop
                    loop.call_soon_threadsafe(self._deliver_error, message.request_id, error)
                except Exception as error:  # noqa: BLE001 - a bug on one request fails it alone (500)
                    logger.exception("add_request failed for %s", message.request_id)
                    failed = RequestFailedError((message.request_id,), f"{type(error).__name__}: {error}")
                    self._fail_alone(core, failed.request_ids, failed, probe, awaiting_first)
            else:
                _finish(core, message)
                for request_id in message.request_ids:
                    probe.first_scheduled.pop(request_id, None)
                    awaiting_first.pop(request_id, None)
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return True


def _finish(core: EngineCoreLike, message: _Finish) -> None:
    if message.stopped:
        core.finish_requests(message.request_ids, RequestStatus.FINISHED_STOPPED)
    else:
        core.abort_request(message.request_ids)
