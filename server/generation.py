"""GenerationRun: one API request's completions, from the engine's token ids to text deltas, timings and metrics.

Shared by chat and legacy completions. Each completion (`Choice`) has its own incremental detokenizer (stop strings
are found here, then the engine is told to finish that completion as stopped). `events()` yields a `ChoiceDelta`
per engine output; the serving classes turn them into response bodies or SSE chunks. `close()` must always run
(try/finally): it aborts whatever is unfinished (client gone) and records the request's metrics and log fields.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Request

from engine.outputs import SampledLogprobs
from engine.sampling_params import SamplingParams
from server.async_engine import RequestGroup, StepOutput
from server.context import ServingContext
from server.logging import RequestRecord
from server.metrics import FinishedRequestStats
from tokenizer.detokenizer import IncrementalDetokenizer

T = TypeVar("T")
DISCONNECT_POLL_S = 0.1


@dataclass(slots=True)
class Choice:
    index: int  # the OpenAI choice index: prompt_index * n + completion index
    prompt_index: int
    child_id: str
    detokenizer: IncrementalDetokenizer
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[SampledLogprobs] = field(default_factory=list)
    finish_reason: str | None = None  # engine terms: stop / length / abort
    stop_reason: int | str | None = None  # stop token id or stop string
    first_token_at: float | None = None
    last_token_at: float | None = None
    scheduled_at: float | None = None
    num_cached_tokens: int = 0
    num_draft_tokens: int = 0  # speculative decoding: drafts the engine verified for this completion
    num_accepted_tokens: int = 0  # ... and how many of them it accepted

    @property
    def is_finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(slots=True)
class ChoiceDelta:
    choice: Choice
    text: str  # newly released text (after stop-string handling)
    token_ids: tuple[int, ...]  # tokens of this step
    logprobs: tuple[SampledLogprobs, ...] | None
    finished: bool  # this delta ends the choice (finish_reason is set)


class GenerationRun:
    def __init__(self, ctx: ServingContext, record: RequestRecord, arrival: float,
                 prompts: Sequence[Sequence[int]], params: Sequence[SamplingParams],
                 detokenizers: Sequence[IncrementalDetokenizer]) -> None:
        """`prompts` (one or several), each run with every entry of `params` (n completions); `detokenizers` holds
        one per completion, prompt-major."""
        self.ctx = ctx
        self.record = record
        self.arrival = arrival
        self.prompts = [list(prompt) for prompt in prompts]
        self.params = list(params)
        n = len(self.params)
        child_prompts = [prompt for prompt in self.prompts for _ in range(n)]
        self.group: RequestGroup = ctx.submit(record.request_id, child_prompts, self.params * len(self.prompts))
        self.choices = [Choice(index, index // n, child_id, detok)
                        for index, (child_id, detok) in enumerate(zip(self.group.child_ids, detokenizers,
                                                                      strict=True))]
        self._by_child = {choice.child_id: choice for choice in self.choices}
        self._closed = False
        self.error: str | None = None  # set by the caller when the request failed ("error" in metrics)

    @property
    def num_prompt_tokens(self) -> int:
        return sum(len(prompt) for prompt in self.prompts)

    @property
    def num_completion_tokens(self) -> int:
        return sum(len(choice.token_ids) for choice in self.choices)

    @property
    def num_cached_tokens(self) -> int:
        n = len(self.params)
        return sum(self.choices[i * n].num_cached_tokens for i in range(len(self.prompts)))

    async def events(self, keep_alive: float | None = None) -> AsyncIterator[ChoiceDelta | None]:
        """Deltas in engine order until every choice finished; None when `keep_alive` seconds passed idle."""
        while not self.group.is_done:
            item = await self.group.next(keep_alive)
            if item is None:
                yield None
                continue
            yield self._apply(item)

    def _apply(self, item: StepOutput) -> ChoiceDelta:
        out = item.output
        choice = self._by_child[out.request_id]
        if choice.first_token_at is None:
            choice.first_token_at = item.arrived_at
            choice.scheduled_at = item.scheduled_at
            choice.num_cached_tokens = out.num_cached_tokens
        elif choice.last_token_at is not None:
            self.ctx.metrics.record_inter_token_latency(item.arrived_at - choice.last_token_at)
        choice.last_token_at = item.arrived_at
        choice.num_draft_tokens += out.num_draft_tokens
        choice.num_accepted_tokens += out.num_accepted_tokens
        # NOTE: a multi-token (speculative) step may complete a stop string before its last token: the tokens after
        # it are dropped from the ids, logprobs and usage, as if they had come one per step.
        num_kept, released = choice.detokenizer.push_until_stop(out.new_token_ids)
        token_ids = out.new_token_ids[:num_kept]
        logprobs = None if out.new_logprobs is None else out.new_logprobs[:num_kept]
        choice.token_ids.extend(token_ids)
        if logprobs is not None:
            choice.logprobs.extend(logprobs)
        text, stop_string = released.text, released.stop_string
        if stop_string is None and out.finished:
            tail = choice.detokenizer.finish()
            text, stop_string = text + tail.text, tail.stop_string
        if stop_string is not None:
            choice.finish_reason, choice.stop_reason = "stop", stop_string
            self.group.finish(choice.child_id, stopped=True)  # no-op when the engine finished it already
        elif out.finished:
            choice.finish_reason, choice.stop_reason = out.finish_reason, out.stop_reason
        return ChoiceDelta(choice, text, token_ids, logprobs, choice.is_finished)

    async def run_to_end(self) -> None:
        async for _ in self.events():
            pass

    def close(self) -> None:
        """Abort what is unfinished, record metrics and log fields. Idempotent."""
        if self._closed:
            return
        self._closed = True
        aborted = not self.group.is_done
        self.group.close()
        now = time.monotonic()
        reason = "error" if self.error else "abort" if aborted else (self.choices[0].finish_reason or "stop")
        if reason == "abort":
            for choice in self.choices:
                choice.finish_reason = choice.finish_reason or "abort"
        self.ctx.metrics.record_finished(self._stats(reason, now))
        first = min((c.first_token_at for c in self.choices if c.first_token_at is not None), default=None)
        scheduled = min((c.scheduled_at for c in self.choices if c.scheduled_at is not None), default=None)
        record = self.record
        record.prompt_tokens = self.num_prompt_tokens
        record.completion_tokens = self.num_completion_tokens
        record.cached_tokens = self.num_cached_tokens
        record.n = len(self.params)
        record.ttft_ms = _ms(first, self.arrival)
        record.queue_ms = _ms(scheduled, self.arrival)
        record.e2e_ms = _ms(now, self.arrival)
        record.finish_reason = record.finish_reason or reason
        if self.ctx.args.num_speculative_tokens > 0:  # absent from the log line when speculation is off
            record.spec_drafted = sum(choice.num_draft_tokens for choice in self.choices)
            record.spec_accepted = sum(choice.num_accepted_tokens for choice in self.choices)

    def _stats(self, reason: str, now: float) -> FinishedRequestStats:
        longest = max(self.choices, key=lambda c: len(c.token_ids))
        first = longest.first_token_at
        last = longest.last_token_at
        scheduled = longest.scheduled_at
        decode = last - first if first is not None and last is not None else None
        tpot = decode / (len(longest.token_ids) - 1) if decode is not None and len(longest.token_ids) > 1 else None
        return FinishedRequestStats(
            finished_reason=reason,
            num_prompt_tokens=self.num_prompt_tokens,
            num_generation_tokens=self.num_completion_tokens,
            max_generation_tokens=len(longest.token_ids),
            max_tokens_param=self.params[0].max_tokens or 0,
            n=len(self.params),
            e2e=(last if last is not None else now) - self.arrival,
            ttft=first - self.arrival if first is not None else None,
            queue=scheduled - self.arrival if scheduled is not None else None,
            prefill=first - scheduled if first is not None and scheduled is not None else None,
            decode=decode,
            inference=last - scheduled if last is not None and scheduled is not None else None,
            time_per_output_token=tpot,
        )


async def until_disconnected(request: Request, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Run `work` while polling `request.is_disconnected()`; a disconnect cancels it. Returns (disconnected, result)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return False, task.result()
            if await request.is_disconnected():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return True, None
    finally:
        if not task.done():  # our own caller was cancelled
            task.cancel()


def _ms(end: float | None, start: float) -> float | None:
    return round((end - start) * 1000.0, 3) if end is not None else None
