"""Request: one sequence's life inside the engine core, from admission to its finish status.

A request owns its token ids (prompt, then outputs) and the two counters the scheduler works with
(`num_computed_tokens` catches up with `num_tokens`, see engine/scheduler.py). It never touches the device, the
tokenizer or the KV cache: the KV cache manager keeps its blocks, the model runner its device-side state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from engine.sampling_params import SamplingParams


class RequestStatus(IntEnum):
    WAITING = 0  # in the waiting queue, never scheduled (or all its progress was dropped by preemption)
    RUNNING = 1  # in the running list, holds KV blocks
    PREEMPTED = 2  # back in the waiting queue after its blocks were taken; recomputes from token 0
    FINISHED_STOPPED = 3  # EOS, a stop token id, or a stop string (detokenizer layer)
    FINISHED_LENGTH = 4  # max_tokens or max_model_len reached
    FINISHED_ABORTED = 5  # aborted by the caller

    @property
    def is_finished(self) -> bool:
        return self >= RequestStatus.FINISHED_STOPPED


# The one table from finish status to OpenAI's `finish_reason`.
FINISH_REASONS: dict[RequestStatus, str] = {
    RequestStatus.FINISHED_STOPPED: "stop",
    RequestStatus.FINISHED_LENGTH: "length",
    RequestStatus.FINISHED_ABORTED: "abort",
}


@dataclass(slots=True, eq=False)
class Request:
    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling_params: SamplingParams
    stop_token_ids: frozenset[int]  # EOS (unless ignore_eos) + sampling_params.stop_token_ids; masked by min_tokens
    max_tokens: int  # resolved output budget: sampling_params.max_tokens capped by max_model_len - prompt length
    arrival_index: int = 0  # admission order; the scheduler preempts the newest (highest) first
    all_token_ids: list[int] = field(default_factory=list)  # prompt + outputs known on the host
    output_token_ids: list[int] = field(default_factory=list)  # outputs known on the host (append-only)
    num_computed_tokens: int = 0  # tokens whose KV is in the cache (or being written by a launched step)
    # NOTE: tokens sampled by a launched step whose value the host has not seen yet (async scheduling: 0 or 1;
    # speculative decoding: 1 + the drafts verified by that step, the most it can emit). The scheduler counts them
    # as part of the sequence already; processing the step's output removes them again.
    num_output_placeholders: int = 0
    # Drafts for the next step (MTP proposer): verified there, never part of the sequence unless accepted. The
    # scheduler trims them to the request's room and budget, moves them into the step, and drops them on preemption.
    spec_token_ids: list[int] = field(default_factory=list)
    num_cached_tokens: int = -1  # prefix-cache hit at first admission (-1: not admitted yet)
    num_preemptions: int = 0
    status: RequestStatus = RequestStatus.WAITING
    stop_reason: int | str | None = None  # the stop token id or stop string that finished it, if any
    block_hashes: list[bytes] = field(default_factory=list)  # chained hash of each full block of all_token_ids

    def __post_init__(self) -> None:
        if not self.prompt_token_ids:
            raise ValueError("prompt_token_ids must not be empty")
        if not self.all_token_ids:
            self.all_token_ids = list(self.prompt_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        """Tokens known on the host (prompt + outputs)."""
        return len(self.all_token_ids)

    @property
    def num_tokens_with_placeholders(self) -> int:
        """The sequence length the scheduler works towards: known tokens plus those still in flight."""
        return len(self.all_token_ids) + self.num_output_placeholders

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def is_finished(self) -> bool:
        return self.status >= RequestStatus.FINISHED_STOPPED

    @property
    def finish_reason(self) -> str | None:
        return FINISH_REASONS.get(self.status)

    def append_output_token(self, token_id: int, max_model_len: int) -> bool:
        """Record one sampled token; returns True if it finishes the request (status and stop_reason set).

        Order (vLLM's check_stop): the length limits first, so a stop token that is also the last allowed token
        reports "length"; a stop token counts only once min_tokens outputs exist (the sampler masks it before).
        """
        self.all_token_ids.append(token_id)
        self.output_token_ids.append(token_id)
        num_outputs = len(self.output_token_ids)
        if num_outputs >= self.max_tokens or len(self.all_token_ids) >= max_model_len:
            self.status = RequestStatus.FINISHED_LENGTH
            return True
        if num_outputs > self.sampling_params.min_tokens and token_id in self.stop_token_ids:
            self.status = RequestStatus.FINISHED_STOPPED
            self.stop_reason = token_id if token_id in self.sampling_params.stop_token_ids else None
            return True
        return False
