"""The messages of one engine step and of the offline API: plain frozen data, no tensors, no behaviour.

Flow: Scheduler -> `SchedulerOutput` -> ModelRunner -> `ModelRunnerOutput` -> Scheduler -> `EngineCoreOutput`
(per request, per step) -> LLM / server -> `RequestOutput` (per prompt, with `CompletionOutput` per completion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.sampling_params import SamplingParams


@dataclass(frozen=True, slots=True)
class ScheduledRequest:
    """One request's share of a step: rows for positions [num_computed_tokens, + num_scheduled_tokens)."""

    request_id: str
    # Input tokens known on the host for the first len(token_ids) rows. NOTE: with async scheduling the last row
    # may be missing (num_scheduled_tokens == len(token_ids) + 1): its token is the one the previous step sampled
    # for this request, which the runner takes from the device without a host round trip.
    token_ids: tuple[int, ...]
    num_computed_tokens: int  # positions already in the KV cache before this step (first row's position)
    num_scheduled_tokens: int  # rows of this step
    block_ids: tuple[int, ...]  # the request's whole block table after this step's allocation
    is_sampled: bool  # the last row reaches the sequence's end: sample the next token from it
    prompt_token_ids: tuple[int, ...]  # for the sampler's state (penalties), read on first sight
    sampling_params: SamplingParams
    stop_token_ids: frozenset[int]  # masked by the sampler until min_tokens outputs exist
    # Drafts verified this step: the last len(spec_token_ids) entries of token_ids (rows after the last committed
    # token). The step emits 1..len + 1 tokens; rejected rows are rolled back by the scheduler.
    spec_token_ids: tuple[int, ...] = ()
    # The known token right after this step's rows (a prefill chunk that stops short of the sequence's end), -1
    # otherwise: the MTP draft-extend input of the chunk's last row.
    next_token_id: int = -1


@dataclass(frozen=True, slots=True)
class SchedulerOutput:
    step_id: int  # increasing step counter
    scheduled: tuple[ScheduledRequest, ...]  # running requests first, then newly admitted ones
    num_scheduled_tokens: int  # rows in the flattened batch (sum over `scheduled`)
    preempted_req_ids: tuple[str, ...]  # requests that lost their blocks this step (recomputed later)
    finished_req_ids: tuple[str, ...]  # finished or aborted since the previous step: the runner drops their state

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


@dataclass(frozen=True, slots=True)
class Logprob:
    """vLLM's per-token logprob entry."""

    logprob: float  # raw log-probability (before penalties, temperature and truncation)
    rank: int | None = None  # 1-based rank in the raw distribution
    decoded_token: str | None = None  # filled by the detokenizer layer (never by the engine core)


@dataclass(frozen=True, slots=True)
class SampledLogprobs:
    """Logprobs of one sampled token: the token itself plus the request's top-`logprobs` alternatives."""

    logprob: float  # of the sampled token
    rank: int  # of the sampled token, 1-based
    top_token_ids: tuple[int, ...]  # best first, len == sampling_params.logprobs
    top_logprobs: tuple[float, ...]

    def as_dict(self, token_id: int) -> dict[int, Logprob]:
        """vLLM's shape: {token id: Logprob}, the sampled token first, then the alternatives."""
        out = {token_id: Logprob(self.logprob, self.rank)}
        for rank, (tid, lp) in enumerate(zip(self.top_token_ids, self.top_logprobs), start=1):
            out.setdefault(tid, Logprob(lp, rank))
        return out


@dataclass(frozen=True, slots=True)
class ModelRunnerOutput:
    req_ids: tuple[str, ...]  # requests that sampled a token this step, in row order
    # One per req_id: the token sampled after the request's last accepted row (with drafts: the bonus token, or
    # the target's correction of the first rejected draft).
    sampled_token_ids: tuple[int, ...]
    logprobs: tuple[SampledLogprobs | None, ...] | None  # one per req_id; None when no row asked for logprobs
    # Speculative decoding (all empty/None without it), one entry per req_id:
    num_accepted_drafts: tuple[int, ...] = ()  # n: the step's drafts spec_token_ids[:n] are emitted before the token
    spec_logprobs: tuple[tuple[SampledLogprobs, ...] | None, ...] | None = None  # logprobs of those n drafts
    spec_token_ids: tuple[tuple[int, ...], ...] = ()  # drafts proposed for the request's next step


@dataclass(frozen=True, slots=True)
class EngineCoreOutput:
    """One request's news from one step."""

    request_id: str
    new_token_ids: tuple[int, ...]  # tokens appended this step (1; 1 + accepted drafts with speculation)
    new_logprobs: tuple[SampledLogprobs, ...] | None  # one per new token when the request asked for logprobs
    finish_reason: str | None = None  # "stop" / "length" / "abort" once finished
    stop_reason: int | str | None = None  # the stop token id (stop_token_ids) that ended it
    num_cached_tokens: int = 0  # prompt tokens served by the prefix cache
    # Speculative decoding, this step (0 without it): drafts verified and how many of them were accepted, counted
    # as the scheduler's SpecDecodingStats counts them (accepted drafts cut by a stop condition still count).
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(slots=True)
class CompletionOutput:
    """One completion of a prompt (vLLM's `CompletionOutput`)."""

    index: int  # which of the n completions
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None  # per output token; None unless sampling_params.logprobs is set
    finish_reason: str | None = None  # "stop" / "length" / "abort"
    stop_reason: int | str | None = None  # the stop token id or stop string, when one ended it


@dataclass(slots=True)
class RequestOutput:
    """Everything about one prompt (vLLM's `RequestOutput`)."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = False
    num_cached_tokens: int = 0  # prompt tokens served by the prefix cache (first completion)
