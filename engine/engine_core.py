"""EngineCore: the synchronous heart of the engine. Requests in; per-step `EngineCoreOutput`s out.

It knows nothing of HTTP, threads or tokenizers. Two loop bodies drive it, chosen once by `async_scheduling`:
- `step()`: schedule, execute, update; the host waits for the device every step.
- `step_overlapped()`: keeps one step in flight; step N+1 is scheduled and launched before step N's tokens are
  read back, so the host's scheduling and input preparation hide behind the device's work (as SGLang's overlap
  scheduler and vLLM's async scheduling do). Outputs are identical: a request's next input token is taken from the
  previous step's device tensor, and a request that finished meanwhile has its extra token dropped.
Speculative decoding (MTP drafts, verified in the same step) always uses `step()`: drafting needs each step's
emitted tokens on the host, so there is nothing left to overlap.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from engine.engine_config import EngineConfig
from engine.kv_cache_manager import KVCacheManager
from engine.outputs import EngineCoreOutput, ModelRunnerOutput, SchedulerOutput
from engine.request import Request, RequestStatus
from engine.sampling_params import SamplingParams
from engine.scheduler import Scheduler

logger = logging.getLogger(__name__)


class PendingOutput(Protocol):
    def result(self) -> ModelRunnerOutput: ...


class ModelExecutor(Protocol):
    """What the core needs from a model runner (the real one, or a fake in tests)."""

    def execute_model(self, scheduler_output: SchedulerOutput) -> PendingOutput: ...


class EngineCore:
    def __init__(
        self,
        scheduler: Scheduler,
        model_runner: ModelExecutor,
        vocab_size: int,
        eos_token_ids: Sequence[int] = (),
        async_scheduling: bool = False,
    ) -> None:
        self.scheduler = scheduler
        self.model_runner = model_runner
        self.vocab_size = vocab_size
        self.eos_token_ids = tuple(eos_token_ids)
        self.max_model_len = scheduler.config.max_model_len
        self._in_flight: deque[tuple[SchedulerOutput, PendingOutput]] = deque()
        # The loop body, chosen once: callers just call `engine.step_fn()` until nothing is unfinished.
        self.step_fn: Callable[[], list[EngineCoreOutput]] = self.step_overlapped if async_scheduling else self.step

    @classmethod
    def from_config(cls, config: EngineConfig, extra_eos_token_ids: Sequence[int] = ()) -> EngineCore:
        """Load the model, size and allocate the KV cache, build the scheduler. EOS ids: config.json's,
        generation_config.json's and `extra_eos_token_ids` (the tokenizer's stop ids)."""
        runner = _build_runner(config)
        num_blocks = runner.initialize_kv_cache()
        kv = KVCacheManager(num_blocks, config.cache.block_size, config.cache.enable_prefix_caching)
        spec = config.speculative
        scheduler = Scheduler(config.scheduler, kv, spec.num_speculative_tokens)
        eos = tuple(config.model_config.eos_token_id) + generation_config_eos(config.model) + tuple(extra_eos_token_ids)
        if spec.is_enabled and config.scheduler.async_scheduling:
            logger.info("speculative decoding runs the synchronous engine loop (async_scheduling ignored)")
        return cls(scheduler, runner, config.model_config.vocab_size, tuple(dict.fromkeys(eos)),
                   config.scheduler.async_scheduling and not spec.is_enabled)

    def check_health(self) -> None:
        """Raise when the engine cannot run a step (a tensor-parallel worker process died); cheap, no collective."""
        check_workers = getattr(self.model_runner, "check_workers", None)
        if check_workers is not None:
            check_workers()

    def shutdown(self) -> None:
        """Release what the runner holds outside this process (tensor-parallel followers); idempotent."""
        shutdown = getattr(self.model_runner, "shutdown", None)
        if shutdown is not None:
            shutdown()

    # ---- requests -------------------------------------------------------------------------------------------

    def add_request(self, request_id: str, prompt_token_ids: Sequence[int], sampling_params: SamplingParams) -> None:
        """Validate and queue one request (one completion: the caller fans out n > 1)."""
        if not isinstance(sampling_params, SamplingParams):
            raise TypeError(f"sampling_params must be a SamplingParams, got {type(sampling_params).__name__}")
        prompt = tuple(prompt_token_ids)
        if not prompt:
            raise ValueError("prompt_token_ids must not be empty")
        if not all(isinstance(t, int) for t in prompt) or min(prompt) < 0 or max(prompt) >= self.vocab_size:
            bad = next(t for t in prompt if not isinstance(t, int) or not 0 <= t < self.vocab_size)
            raise ValueError(f"prompt_token_ids: token id {bad!r} is out of range for vocab_size {self.vocab_size}")
        sampling_params.verify_token_ids(self.vocab_size)
        room = self.max_model_len - len(prompt)
        max_tokens = room if sampling_params.max_tokens is None else min(sampling_params.max_tokens, room)
        request = Request(
            request_id=request_id,
            prompt_token_ids=prompt,
            sampling_params=sampling_params,
            stop_token_ids=sampling_params.stop_token_id_set(self.eos_token_ids),
            max_tokens=max_tokens,
        )
        self.scheduler.add_request(request)

    def abort_request(self, request_ids: str | Iterable[str]) -> None:
        """Abort requests at any point (waiting, running, in flight); unknown ids are ignored."""
        self.finish_requests(request_ids, RequestStatus.FINISHED_ABORTED)

    def finish_requests(self, request_ids: str | Iterable[str], status: RequestStatus) -> list[Request]:
        """Finish requests from outside the core loop (abort; a stop string seen by the detokenizer layer)."""
        ids = (request_ids,) if isinstance(request_ids, str) else tuple(request_ids)
        return self.scheduler.finish_requests(ids, status)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished_requests() or bool(self._in_flight)

    # ---- the two loop bodies --------------------------------------------------------------------------------

    def step(self) -> list[EngineCoreOutput]:
        """Schedule one step, run it, and return what each request got."""
        if not self.scheduler.has_unfinished_requests():
            return []
        scheduler_output = self.scheduler.schedule()
        if scheduler_output.is_empty and not scheduler_output.preempted_req_ids:
            raise RuntimeError("the scheduler made no progress with unfinished requests (KV cache too small?)")
        runner_output = self.model_runner.execute_model(scheduler_output).result()
        return self.scheduler.update_from_output(scheduler_output, runner_output)

    def step_overlapped(self) -> list[EngineCoreOutput]:
        """Launch step N+1, then read back step N: the host never waits for a step it could have overlapped."""
        launched = False
        if self.scheduler.has_unfinished_requests():
            scheduler_output = self.scheduler.schedule()
            if not scheduler_output.is_empty:
                self._in_flight.append((scheduler_output, self.model_runner.execute_model(scheduler_output)))
                launched = True
        if not self._in_flight or (launched and len(self._in_flight) == 1):
            return []
        scheduler_output, pending = self._in_flight.popleft()
        return self.scheduler.update_from_output(scheduler_output, pending.result())


def _build_runner(config: EngineConfig):
    """The ModelRunner, or with tensor_parallel_size > 1 rank 0's MultiprocExecutor (followers started)."""
    if config.parallel.world_size > 1:
        from engine.distributed.executor import MultiprocExecutor

        return MultiprocExecutor.start(config)
    from engine.loader import load_model
    from engine.model_runner import ModelRunner

    return ModelRunner(load_model(config.model, dtype=config.dtype, device=config.device), config)


def generation_config_eos(model_dir: str | Path) -> tuple[int, ...]:
    """EOS ids from generation_config.json (GLM-4.5 lists three there), () when absent."""
    path = Path(model_dir) / "generation_config.json"
    if not path.is_file():
        return ()
    try:
        eos = json.loads(path.read_text()).get("eos_token_id")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise ValueError(f"{path}: malformed JSON: {exc}") from None
    if eos is None:
        return ()
    return tuple(eos) if isinstance(eos, list) else (int(eos),)
