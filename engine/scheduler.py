"""Scheduler: decides, each step, which requests run and how many tokens each computes.

The one counter model
    Each request has `num_computed_tokens` (positions whose KV is cached or being written by a launched step) and
    a target, `num_tokens_with_placeholders` (prompt + outputs, counting outputs sampled by a launched step whose
    value the host has not seen yet). A step gives a request n = min(target - num_computed_tokens, budget left)
    tokens and moves num_computed_tokens forward by n at once. A step that brings it up to the target samples
    the next token there: one output placeholder, replaced by the token when the step's output is processed.
    A prompt is a long gap (chunked when the budget is short), a decode a gap of 1, a prefix-cache hit starts the
    counter at the hit, preemption frees the blocks and resets the counter to 0 (recompute), and speculative
    decoding adds the request's k draft tokens to the target (gap 1 + k; the step holds 1 + k placeholders, the
    most it can emit) and rolls back the rejected drafts by lowering the counter by their number.
    Invariant: 0 <= num_computed_tokens <= target <= max_model_len, and a scheduled request holds KV blocks for
    every position below num_computed_tokens (plus, with speculation, the MTP draft steps' lookahead slots).

Policy per step: one token budget (max_num_batched_tokens); running requests first in admission order, then
waiting requests in arrival order (preempted ones at the front) while max_num_seqs, the budget and the KV pool
allow; when the pool runs dry the newest running request is preempted, and nothing new is admitted that step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from engine.block_pool import KVBlock
from engine.engine_config import SchedulerConfig
from engine.kv_cache_manager import KVCacheManager
from engine.outputs import EngineCoreOutput, ModelRunnerOutput, SampledLogprobs, ScheduledRequest, SchedulerOutput
from engine.request import Request, RequestStatus
from engine.spec_decode_stats import SpecDecodingStats


class Scheduler:
    def __init__(self, config: SchedulerConfig, kv_cache_manager: KVCacheManager,
                 num_speculative_tokens: int = 0) -> None:
        self.config = config
        self.kv = kv_cache_manager
        # MTP draft steps 2..k write KV one position past each other, beyond the step's rows (see mtp_proposer.py).
        self.num_lookahead_tokens = max(num_speculative_tokens - 1, 0)
        self.spec_decode_stats = SpecDecodingStats(num_speculative_tokens)  # cumulative
        self.requests: dict[str, Request] = {}  # every unfinished request
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # admission order: the newest is preempted first
        self._finished_req_ids: set[str] = set()  # since the previous schedule()
        self._next_arrival = 0
        self._step_id = 0
        self.num_preemptions = 0

    # ---- requests in and out --------------------------------------------------------------------------------

    def add_request(self, request: Request) -> None:
        """Queue a request. Raises ValueError when it cannot fit the model's context."""
        if request.request_id in self.requests:
            raise ValueError(f"request_id {request.request_id!r} is already in use")
        if request.num_prompt_tokens >= self.config.max_model_len:
            raise ValueError(
                f"prompt_token_ids: the prompt has {request.num_prompt_tokens} tokens, which leaves no room for "
                f"an output within max_model_len={self.config.max_model_len}"
            )
        self._check_fits_kv_pool(request)
        request.arrival_index = self._next_arrival
        self._next_arrival += 1
        self.requests[request.request_id] = request
        self.waiting.append(request)

    def _check_fits_kv_pool(self, request: Request) -> None:
        """Refuse a request that could outgrow the whole KV pool on its own.

        NOTE: such a request is preempted when the pool runs dry and can never be admitted again, so the scheduler
        would stall (the engine loop raises "no progress" and dies); refusing it here fails it alone. Its worst
        case holds KV for prompt + max_tokens - 1 positions (the last sampled token is never computed)."""
        num_tokens = request.num_prompt_tokens + request.max_tokens - 1
        num_blocks, capacity = self.kv.num_blocks_needed(num_tokens), self.kv.pool.num_blocks
        if num_blocks > capacity:
            raise ValueError(
                f"prompt_token_ids: the request needs up to {num_tokens} tokens of KV cache "
                f"({request.num_prompt_tokens} prompt + max_tokens {request.max_tokens} - 1), more than the whole "
                f"KV cache holds ({capacity} blocks of {self.kv.block_size} tokens); shorten the prompt or lower "
                "max_tokens"
            )

    def finish_requests(self, request_ids: Iterable[str], status: RequestStatus) -> list[Request]:
        """Finish (abort, or stop on a stop string) requests at any point; frees all they hold. Unknown ids are
        ignored (they may have finished already). Returns the requests that were finished by this call."""
        assert status.is_finished, status
        done = []
        for request_id in request_ids:
            request = self.requests.get(request_id)
            if request is None:
                continue
            request.status = status
            self._release(request)
            done.append(request)
        return done

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    @property
    def num_unfinished_requests(self) -> int:
        return len(self.requests)

    # ---- one step -------------------------------------------------------------------------------------------

    def schedule(self) -> SchedulerOutput:
        budget = self.config.max_num_batched_tokens
        scheduled: list[ScheduledRequest] = []
        preempted: list[str] = []
        index = 0
        while index < len(self.running) and budget > 0:
            request = self.running[index]
            num_new = min(self._num_tokens_wanted(request), budget)
            if num_new == 0:
                index += 1
                continue
            while not self._allocate(request, num_new, request.num_computed_tokens + num_new):
                victim = self.running.pop()  # the newest
                self._preempt(victim)
                preempted.append(victim.request_id)
                if victim is request:
                    break
            else:
                scheduled.append(self._advance(request, num_new))
                budget -= num_new
                index += 1
        if not preempted:
            budget = self._admit_waiting(budget, scheduled)
        self._step_id += 1
        finished: tuple[str, ...] = ()
        if scheduled:  # NOTE: an empty output may never reach the runner; keep the ids for the next step
            finished, self._finished_req_ids = tuple(self._finished_req_ids), set()
        return SchedulerOutput(
            step_id=self._step_id,
            scheduled=tuple(scheduled),
            num_scheduled_tokens=self.config.max_num_batched_tokens - budget,
            preempted_req_ids=tuple(preempted),
            finished_req_ids=finished,
        )

    def update_from_output(
        self, scheduler_output: SchedulerOutput, runner_output: ModelRunnerOutput
    ) -> list[EngineCoreOutput]:
        """Per sampled request: roll back its rejected drafts, append the accepted drafts and then the sampled token
        up to the first stop condition (nothing after it is emitted), free it when finished, else keep its drafts
        for the next step."""
        drafts_of = {s.request_id: s.spec_token_ids for s in scheduler_output.scheduled if s.spec_token_ids}
        outputs = []
        for row, request_id in enumerate(runner_output.req_ids):
            request = self.requests.get(request_id)
            if request is None:  # finished or aborted while this step was in flight: drop the token
                continue
            drafts = drafts_of.get(request_id, ())
            num_accepted = runner_output.num_accepted_drafts[row] if drafts else 0
            request.num_output_placeholders -= 1 + len(drafts)
            if drafts:  # NOTE: the rejected rows' KV lies past the counter now and is overwritten later
                request.num_computed_tokens -= len(drafts) - num_accepted
                self.spec_decode_stats.observe(len(drafts), num_accepted)
            new_token_ids = drafts[:num_accepted] + (runner_output.sampled_token_ids[row],)
            num_new = self._append_tokens(request, new_token_ids)
            if request.is_finished:
                self._release(request)
            elif runner_output.spec_token_ids:
                request.spec_token_ids = list(runner_output.spec_token_ids[row])
            outputs.append(EngineCoreOutput(
                request_id=request_id,
                new_token_ids=new_token_ids[:num_new],
                new_logprobs=_new_logprobs(runner_output, row, num_new),
                finish_reason=request.finish_reason,
                stop_reason=request.stop_reason,
                num_cached_tokens=max(request.num_cached_tokens, 0),
                num_draft_tokens=len(drafts),
                num_accepted_tokens=num_accepted,
            ))
        return outputs

    # ---- helpers --------------------------------------------------------------------------------------------

    def _num_tokens_wanted(self, request: Request) -> int:
        """Tokens that would bring the request up to its target, drafts included (first trimmed to the request's
        room); 0 once its last allowed token is in flight."""
        num_left = request.max_tokens - request.num_output_tokens - request.num_output_placeholders
        if num_left <= 0:
            return 0
        drafts = request.spec_token_ids
        if drafts:  # NOTE: a step emits up to 1 + len(drafts) tokens; all of them must fit both limits
            room = min(num_left, self.config.max_model_len - request.num_tokens_with_placeholders) - 1
            del drafts[max(room, 0):]
        return request.num_tokens_with_placeholders + len(drafts) - request.num_computed_tokens

    def _allocate(self, request: Request, num_new: int, end: int, computed_blocks: list[KVBlock] | None = None) -> bool:
        """KV slots for the step's rows (up to position `end`), plus the MTP draft steps' lookahead slots when the
        step samples; without the lookahead when the pool is short (the proposer then drafts fewer tokens)."""
        lookahead = 0
        if self.num_lookahead_tokens and end >= request.num_tokens_with_placeholders:
            lookahead = min(self.num_lookahead_tokens, max(self.config.max_model_len - end, 0))
        if lookahead and self.kv.allocate_slots(request, num_new, computed_blocks, lookahead):
            return True
        return self.kv.allocate_slots(request, num_new, computed_blocks)

    def _append_tokens(self, request: Request, token_ids: tuple[int, ...]) -> int:
        """Append in order until one finishes the request; returns how many were appended."""
        for num_appended, token_id in enumerate(token_ids, start=1):
            if request.append_output_token(token_id, self.config.max_model_len):
                return num_appended
        return len(token_ids)

    def _admit_waiting(self, budget: int, scheduled: list[ScheduledRequest]) -> int:
        chunked = self.config.enable_chunked_prefill
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            request = self.waiting[0]
            if request.num_output_placeholders:  # NOTE: preempted while its token is in flight; wait for it
                break
            computed_blocks, num_hit = self.kv.get_computed_blocks(request)
            num_new = request.num_tokens - num_hit
            if num_new > budget:
                if not chunked:
                    break
                num_new = budget
            if not self._allocate(request, num_new, num_hit + num_new, computed_blocks):
                break
            self.waiting.popleft()
            request.status = RequestStatus.RUNNING
            request.num_computed_tokens = num_hit
            if request.num_cached_tokens < 0:
                request.num_cached_tokens = num_hit
            self.running.append(request)
            scheduled.append(self._advance(request, num_new))
            budget -= num_new
        return budget

    def _advance(self, request: Request, num_new: int) -> ScheduledRequest:
        start = request.num_computed_tokens
        end = start + num_new
        num_known = request.num_tokens_with_placeholders
        is_sampled = end >= num_known
        drafts: tuple[int, ...] = ()
        if request.spec_token_ids:  # the drafts the budget let in are verified; the rest are dropped
            drafts = tuple(request.spec_token_ids[: max(end - num_known, 0)])
            request.spec_token_ids = []
        request.num_computed_tokens = end
        if is_sampled:
            request.num_output_placeholders += 1 + len(drafts)
        all_token_ids = request.all_token_ids
        return ScheduledRequest(
            request_id=request.request_id,
            token_ids=tuple(all_token_ids[start:end]) + drafts,
            num_computed_tokens=start,
            num_scheduled_tokens=num_new,
            block_ids=tuple(self.kv.block_ids(request.request_id)),
            is_sampled=is_sampled,
            prompt_token_ids=request.prompt_token_ids,
            sampling_params=request.sampling_params,
            stop_token_ids=request.stop_token_ids,
            spec_token_ids=drafts,
            next_token_id=all_token_ids[end] if end < len(all_token_ids) else -1,
        )

    def _preempt(self, request: Request) -> None:
        self.kv.free(request)
        request.status = RequestStatus.PREEMPTED
        request.num_computed_tokens = 0
        request.spec_token_ids = []
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(request)

    def _release(self, request: Request) -> None:
        """Forget a finished request: out of its queue, blocks back to the pool, the runner told next step."""
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        self.kv.free(request)
        del self.requests[request.request_id]
        self._finished_req_ids.add(request.request_id)


def _new_logprobs(runner_output: ModelRunnerOutput, row: int, num_new: int) -> tuple[SampledLogprobs, ...] | None:
    """Logprobs of the first `num_new` emitted tokens of `row` (accepted drafts, then the sampled token)."""
    logprobs = runner_output.logprobs
    sampled = logprobs[row] if logprobs is not None else None
    if sampled is None:
        return None
    drafts = runner_output.spec_logprobs[row] if runner_output.spec_logprobs is not None else None
    return ((drafts or ()) + (sampled,))[:num_new]
