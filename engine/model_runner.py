"""ModelRunner: turns a SchedulerOutput into one forward pass and one sampled token per finishing request.

Per step: flatten the scheduled requests into rows (numpy, no per-token Python), build `AttentionMetadata`
(positions, slot_mapping, block tables), run the model through `StepForward` (engine/cuda_graph_runner.py: a CUDA
graph replay for decode steps that fit a captured size, else plan the attention backend and run eagerly), compute
logits only for the rows that sample, sample, and hand back a `PendingRunnerOutput` whose `result()` reads the
tokens to the host.

The attention backend comes from `kernels/attention/selector.py` (`attention_backend`: FlashInfer on CUDA when it
imports, torch elsewhere); CUDA graphs are captured once, right after the KV cache is allocated, unless
`enforce_eager`, tensor parallelism, speculative decoding or a backend without a graph-safe plan rules them out.

Device-side state kept between steps:
- the KV cache (one tensor per KV layer; the MTP layer has its own, index num_hidden_layers, same block tables);
- the previous step's sampled tokens, still on the device: with async scheduling a request's next input token
  is gathered from there (no host round trip);
- per-request sampling state (generator, penalty counts), dropped when the scheduler reports the request finished.

Speculative decoding (num_speculative_tokens k > 0): a sampling request's rows end with its k_r drafts; the logits of
its last k_r + 1 rows are verified by the RejectionSampler (after all sampling parameters, each row seeing its
earlier drafts), and the MTPProposer then drafts the next step's tokens from this step's hidden states. These steps
run synchronously (their output is read back before returning): the draft-extend needs the emitted tokens, and the
engine uses its synchronous loop with speculation.

Tensor parallelism: every rank runs a ModelRunner over its shard of the model and executes the same
SchedulerOutput (engine/distributed/); the model's collectives keep them in step. Only rank 0 (the driver) samples:
a token still on the device (async scheduling) is broadcast from rank 0 with the step's input ids, and the tokens a
speculative step emits are broadcast before the MTP draft-extend, which every rank runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from engine.cuda_graph_runner import StepForward, build_step_forward
from engine.engine_config import EngineConfig
from engine.mtp_proposer import DraftExtendBatch, MTPProposer
from engine.outputs import ModelRunnerOutput, SampledLogprobs, ScheduledRequest, SchedulerOutput
from engine.rejection_sampler import RejectionSampler
from engine.sampler import Sampler, SamplerOutput, SamplingBatch, SamplingRequestState, SamplingRow, compute_logprobs
from kernels.attention.base import AttentionBackend, AttentionMetadata
from kernels.attention.flashinfer_paged import DEFAULT_WORKSPACE_BYTES as FLASHINFER_WORKSPACE_BYTES
from kernels.attention.selector import get_attention_backend
from kernels.attention.torch_paged import allocate_kv_caches, kv_cache_bytes_per_block

logger = logging.getLogger(__name__)

CPU_KV_CACHE_BYTES = 4 << 30  # default KV budget on CPU when kv_cache_memory is not given


@dataclass(frozen=True, slots=True)
class StepInputs:
    """The flattened batch of one step (T rows, B requests, S sampling rows)."""

    input_ids: torch.Tensor  # [T] int64 on the device; rows in `fill_dst` still hold 0 until filled
    positions: torch.Tensor  # [T] int64 on the device
    metadata: AttentionMetadata
    logits_rows: torch.Tensor  # [S] int64 on the device: the last 1 + k_r rows of each sampling request
    sampled_req_ids: tuple[str, ...]  # [S]
    fill_dst: torch.Tensor | None  # [F] int64 rows whose token the previous step sampled (async scheduling)
    fill_src: torch.Tensor | None  # [F] int64 rows of the previous step's sampled-token tensor
    query_start_cpu: np.ndarray  # [B+1] int64 host copy of query_start_loc
    block_table_cpu: np.ndarray  # [B, max_blocks] int32 host copy of the block tables


class PendingRunnerOutput:
    """A launched step. `result()` waits for the device once and caches; the runner may call it early."""

    def __init__(self, runner: ModelRunner, req_ids: tuple[str, ...], sampler_output: SamplerOutput | None) -> None:
        self._runner = runner
        self._req_ids = req_ids
        self._sampler_output = sampler_output
        self._result: ModelRunnerOutput | None = None
        # NOTE: on CUDA the copy is queued now and overlaps with the next step's host work; the event marks it.
        self._host_tokens: torch.Tensor | None = None
        self._event: torch.cuda.Event | None = None
        if sampler_output is not None and sampler_output.sampled_token_ids.is_cuda:
            self._host_tokens = torch.empty(len(req_ids), dtype=torch.int64, pin_memory=True)
            self._host_tokens.copy_(sampler_output.sampled_token_ids, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()

    def result(self) -> ModelRunnerOutput:
        if self._result is None:
            self._result = self._materialise()
        return self._result

    def _materialise(self) -> ModelRunnerOutput:
        out = self._sampler_output
        if out is None:
            return ModelRunnerOutput((), (), None)
        if self._event is not None:
            self._event.synchronize()
        tokens = (self._host_tokens if self._host_tokens is not None else out.sampled_token_ids).tolist()
        self._runner.record_sampled(self._req_ids, tokens)
        logprobs = None
        if out.logprobs is not None:
            logprobs = self._runner.logprobs_to_host(self._req_ids, out)
        return ModelRunnerOutput(self._req_ids, tuple(tokens), logprobs)


@dataclass(frozen=True, slots=True)
class FinishedRunnerOutput:
    """A step whose output is already on the host (speculative steps run synchronously)."""

    output: ModelRunnerOutput

    def result(self) -> ModelRunnerOutput:
        return self.output


class ModelRunner:
    def __init__(self, model: torch.nn.Module, config: EngineConfig) -> None:
        self.model = model
        self.config = config
        self.device = torch.device(config.device)
        self.model_config = config.model_config
        self.block_size = config.cache.block_size
        self.vocab_size = config.model_config.vocab_size
        self.num_kv_layers: int = model.num_kv_layers
        self.tp = model.tp  # the tensor-parallel group (one rank by default)
        attention = model.model.layers[0].self_attn
        self.num_heads, self.num_kv_heads = attention.num_heads, attention.num_kv_heads  # this rank's
        self.sampler = Sampler(seed=config.seed)
        self.kv_caches: list[torch.Tensor] = []
        self.attn: AttentionBackend | None = None
        self.step_forward: StepForward | None = None  # the model's forward per step (graphs or eager)
        self._states: dict[str, SamplingRequestState] = {}  # request id -> sampling state (output list inside)
        self._prev_tokens: torch.Tensor | None = None  # [S] int64 device: the previous step's sampled tokens
        self._prev_rows: dict[str, int] = {}  # request id -> row of _prev_tokens
        self._prev_pending: PendingRunnerOutput | None = None
        self.proposer: MTPProposer | None = None  # speculative decoding: the drafter (tests may swap in a double)
        self.rejection_sampler: RejectionSampler | None = None
        if config.speculative.is_enabled:
            self.proposer = MTPProposer(model, config.speculative, self.block_size, self.device)
            self.rejection_sampler = RejectionSampler(self.sampler)

    # ---- KV cache -------------------------------------------------------------------------------------------

    def determine_num_blocks(self) -> int:
        """Blocks that fit the memory budget; raises ValueError naming the knob when one sequence cannot fit."""
        cache, sched, mc = self.config.cache, self.config.scheduler, self.model_config
        per_block = kv_cache_bytes_per_block(self.num_kv_layers, self.block_size, self.num_kv_heads,
                                             mc.head_dim, self.config.dtype)
        needed_for_one = -(-sched.max_model_len // self.block_size)
        if cache.num_blocks_override is not None:
            num_blocks, knob = cache.num_blocks_override, "num_blocks_override"
        elif cache.kv_cache_memory is not None:
            num_blocks, knob = cache.kv_cache_memory // per_block, "kv_cache_memory"
        elif self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = int(free * cache.gpu_memory_utilization) - self._activation_reserve_bytes()
            num_blocks, knob = max(budget, 0) // per_block, "gpu_memory_utilization"
        else:
            full = needed_for_one * sched.max_num_seqs
            num_blocks, knob = min(CPU_KV_CACHE_BYTES // per_block, full), "kv_cache_memory"
        if num_blocks < needed_for_one:
            raise ValueError(
                f"{knob}: the KV cache would hold {num_blocks} blocks ({num_blocks * self.block_size} tokens), "
                f"fewer than one max_model_len={sched.max_model_len} sequence; give it more memory or lower "
                f"max_model_len"
            )
        return int(num_blocks)

    def _activation_reserve_bytes(self) -> int:
        """Rough peak of one step's activations (hidden-sized buffers per batched token, fp32 logits per sequence),
        plus FlashInfer's workspace, allocated after the KV cache; the 512 MiB slack also covers the CUDA graphs."""
        mc, sched = self.model_config, self.config.scheduler
        element = torch.empty((), dtype=self.config.dtype).element_size()
        hidden = sched.max_num_batched_tokens * (mc.hidden_size * 16 + self.num_heads * mc.head_dim * 4)
        logits = sched.max_num_seqs * mc.vocab_size * 4 * 6
        return hidden * element + logits + FLASHINFER_WORKSPACE_BYTES + (512 << 20)

    def initialize_kv_cache(self, num_blocks: int | None = None) -> int:
        """Allocate the per-layer KV tensors, the attention backend over them and (CUDA) the decode graphs; returns
        the number of blocks. NOTE: with tensor parallelism every rank must call it (the block count is the minimum
        over ranks)."""
        mc = self.model_config
        num_blocks = self.tp.min_over_ranks(self.determine_num_blocks()) if num_blocks is None else num_blocks
        self.kv_caches = allocate_kv_caches(self.num_kv_layers, num_blocks, self.block_size, self.num_kv_heads,
                                            mc.head_dim, self.config.dtype, self.device)
        self.attn = get_attention_backend(self.device, self.num_heads, self.num_kv_heads, mc.head_dim,
                                          mc.head_dim**-0.5, self.kv_caches, self.config.attention_backend)
        logger.info("KV cache: %d blocks of %d tokens, %d layers; attention: %s", num_blocks, self.block_size,
                    self.num_kv_layers, type(self.attn).__name__)
        self.step_forward = build_step_forward(self.model, self.attn, self.config, self.tp.world_size)
        return num_blocks

    # ---- one step -------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def execute_model(self, scheduler_output: SchedulerOutput) -> PendingRunnerOutput | FinishedRunnerOutput:
        for request_id in scheduler_output.finished_req_ids:
            self._states.pop(request_id, None)
        if self.proposer is not None:
            self.proposer.forget(scheduler_output.finished_req_ids)
        if scheduler_output.is_empty:
            return PendingRunnerOutput(self, (), None)
        assert self.step_forward is not None, "initialize_kv_cache() must run first"
        inputs = self.prepare_inputs(scheduler_output)
        input_ids = inputs.input_ids
        if inputs.fill_dst is not None:
            if self.tp.is_driver:
                assert self._prev_tokens is not None
                input_ids[inputs.fill_dst] = self._prev_tokens[inputs.fill_src]
            self.tp.broadcast(input_ids)  # only rank 0 sampled the in-flight tokens
        # NOTE: after a graph replay `hidden` is a view into graph memory, overwritten by the next replay: it is
        # only read within this step (the logits gather below is queued before any later replay).
        hidden = self.step_forward(input_ids, inputs.positions, inputs.metadata)  # [T, H]
        if self.proposer is not None:
            return FinishedRunnerOutput(self._verify_and_propose(scheduler_output, inputs, hidden))
        sampler_output = None
        if inputs.sampled_req_ids:
            logits = self.model.compute_logits(hidden[inputs.logits_rows])  # [S, V] fp32
            if self.tp.is_driver:
                rows = self._sampling_rows(scheduler_output, inputs.sampled_req_ids)
                batch = SamplingBatch.build(rows, self.vocab_size, self.device)
                sampler_output = self.sampler(logits, batch)
        # NOTE: only this step's tokens can be in flight when the next step is prepared (one step of overlap).
        self._prev_tokens = None if sampler_output is None else sampler_output.sampled_token_ids
        self._prev_rows = {request_id: i for i, request_id in enumerate(inputs.sampled_req_ids)}
        pending = PendingRunnerOutput(self, inputs.sampled_req_ids, sampler_output)
        self._prev_pending = pending
        return pending

    def prepare_inputs(self, scheduler_output: SchedulerOutput) -> StepInputs:
        scheduled = scheduler_output.scheduled
        num_reqs = len(scheduled)
        bs = self.block_size
        query_lens = np.fromiter((s.num_scheduled_tokens for s in scheduled), np.int64, num_reqs)
        computed = np.fromiter((s.num_computed_tokens for s in scheduled), np.int64, num_reqs)
        cu = np.zeros(num_reqs + 1, np.int64)
        np.cumsum(query_lens, out=cu[1:])
        num_tokens = int(cu[-1])
        req_of_row = np.repeat(np.arange(num_reqs), query_lens)
        positions = np.arange(num_tokens) + np.repeat(computed - cu[:-1], query_lens)
        seq_lens = computed + query_lens
        block_table = np.zeros((num_reqs, max(len(s.block_ids) for s in scheduled)), np.int32)
        for i, s in enumerate(scheduled):
            block_table[i, : len(s.block_ids)] = s.block_ids
        slots = block_table[req_of_row, positions // bs].astype(np.int64) * bs + positions % bs
        input_ids, fill_dst, fill_src = self._gather_input_ids(scheduled, cu, num_tokens)
        sampled = [i for i, s in enumerate(scheduled) if s.is_sampled]
        dev = self.device
        pin = dev.type == "cuda"

        def to_dev(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            # NOTE: a copy from pageable memory waits for the device's queue; pinned memory keeps the overlap.
            host = torch.from_numpy(array).to(dtype)
            return host.pin_memory().to(dev, non_blocking=True) if pin else host

        metadata = AttentionMetadata(
            query_start_loc=to_dev(cu, torch.int32),
            seq_lens=to_dev(seq_lens, torch.int32),
            query_lens_cpu=tuple(query_lens.tolist()),
            seq_lens_cpu=tuple(seq_lens.tolist()),
            slot_mapping=to_dev(slots, torch.int64),
            block_tables=to_dev(block_table, torch.int32),
        )
        return StepInputs(
            input_ids=to_dev(input_ids, torch.int64),
            positions=to_dev(positions, torch.int64),
            metadata=metadata,
            logits_rows=to_dev(_logits_rows(scheduled, sampled, cu), torch.int64),
            sampled_req_ids=tuple(scheduled[i].request_id for i in sampled),
            fill_dst=None if fill_dst is None else to_dev(fill_dst, torch.int64),
            fill_src=None if fill_src is None else to_dev(fill_src, torch.int64),
            query_start_cpu=cu,
            block_table_cpu=block_table,
        )

    def _gather_input_ids(self, scheduled, cu: np.ndarray, num_tokens: int):
        """Host-known tokens in place; the last row of a request whose token is still on the device left at 0."""
        input_ids = np.zeros(num_tokens, np.int64)
        missing = [i for i, s in enumerate(scheduled) if len(s.token_ids) < s.num_scheduled_tokens]
        if not missing:
            input_ids[:] = np.fromiter((t for s in scheduled for t in s.token_ids), np.int64, num_tokens)
            return input_ids, None, None
        fill_dst = cu[1:][missing] - 1
        known = np.ones(num_tokens, bool)
        known[fill_dst] = False
        input_ids[known] = np.fromiter((t for s in scheduled for t in s.token_ids), np.int64, num_tokens - len(missing))
        try:
            fill_src = np.array([self._prev_rows[scheduled[i].request_id] for i in missing], np.int64)
        except KeyError as exc:
            raise RuntimeError(f"request {exc.args[0]!r} has an in-flight token the previous step did not sample") from None
        return input_ids, fill_dst, fill_src

    def _request_states(self, sampled: list[ScheduledRequest]) -> list[SamplingRequestState]:
        """Each sampling request's state, created at its first sampled step."""
        states = []
        for s in sampled:
            state = self._states.get(s.request_id)
            if state is None:
                state = SamplingRequestState(s.sampling_params, s.prompt_token_ids, [], s.stop_token_ids)
                self._states[s.request_id] = state
            states.append(state)
        return states

    def _sampling_rows(self, scheduler_output: SchedulerOutput, req_ids: tuple[str, ...]) -> list[SamplingRow]:
        by_id = {s.request_id: s for s in scheduler_output.scheduled if s.is_sampled}
        states = self._request_states([by_id[request_id] for request_id in req_ids])
        pending = self._prev_pending
        if pending is not None and any(_needs_exact_history(s) for s in states):
            pending.result()  # NOTE: a host sync, only for penalties/min_tokens under async scheduling
        return [SamplingRow(state) for state in states]

    # ---- speculative decoding -------------------------------------------------------------------------------

    def _verify_and_propose(self, scheduler_output: SchedulerOutput, inputs: StepInputs,
                            hidden: torch.Tensor) -> ModelRunnerOutput:
        """Emit 1..k_r + 1 tokens per sampling request by exact rejection sampling of its k_r drafts (k_r = 0: one
        plain draw), then draft the next step's tokens from this step's hidden states."""
        assert self.proposer is not None and self.rejection_sampler is not None
        sampled = [s for s in scheduler_output.scheduled if s.is_sampled]
        emitted: list[list[int]] = []
        logprobs = spec_logprobs = None
        if sampled:
            logits = self.model.compute_logits(hidden[inputs.logits_rows])  # [sum(k_r + 1), V] fp32
            if self.tp.is_driver:
                emitted, logprobs, spec_logprobs = self._verify_sampled(sampled, logits)
            emitted = self.tp.broadcast_object(emitted)  # every rank runs the draft-extend over them
        extend = DraftExtendBatch.from_step(scheduler_output.scheduled, inputs.query_start_cpu,
                                            inputs.block_table_cpu, inputs.positions, emitted)
        next_drafts = self.proposer.propose(hidden, extend, self.attn)
        return ModelRunnerOutput(
            req_ids=tuple(s.request_id for s in sampled),
            sampled_token_ids=tuple(tokens[-1] for tokens in emitted),
            logprobs=logprobs,
            num_accepted_drafts=tuple(len(tokens) - 1 for tokens in emitted),
            spec_logprobs=spec_logprobs,
            spec_token_ids=next_drafts,
        )

    def _verify_sampled(self, sampled: list[ScheduledRequest], logits: torch.Tensor):
        """-> (emitted tokens per request, logprobs, spec_logprobs); the driver's part of a speculative step."""
        states = self._request_states(sampled)
        drafts = [s.spec_token_ids for s in sampled]
        logprobs = spec_logprobs = None
        if all(map(_is_plain_greedy, states)):  # the raw argmax decides: no sampling batch to build
            emitted = _accept_greedy(logits.argmax(dim=-1).tolist(), drafts)
        else:
            rows = [SamplingRow(state, d[:j]) for state, d in zip(states, drafts) for j in range(len(d) + 1)]
            batch = SamplingBatch.build(rows, self.vocab_size, self.device)
            emitted = self._verify(logits, batch, drafts, states)
            if batch.max_num_logprobs >= 0:
                logprobs, spec_logprobs = self._verify_logprobs(logits, emitted, drafts, states,
                                                                batch.max_num_logprobs)
        for state, tokens in zip(states, emitted):
            state.output_token_ids.extend(tokens)  # type: ignore[attr-defined]
        return emitted, logprobs, spec_logprobs

    def _verify(self, logits: torch.Tensor, batch: SamplingBatch, drafts: list[tuple[int, ...]],
                states: list[SamplingRequestState]) -> list[list[int]]:
        """The tokens each request emits: its accepted drafts, then the bonus or corrected token."""
        assert self.rejection_sampler is not None
        if not batch.all_greedy:  # NOTE: .tolist() is the step's host sync; drafting needs the emitted tokens
            return self.rejection_sampler(self.sampler.compute_probs(logits, batch), drafts, states).tolist()
        # All greedy: the rejection rule reduces to "accept while the draft is the row's argmax" (same tokens,
        # without building probabilities).
        return _accept_greedy(self.sampler(logits, batch).sampled_token_ids.tolist(), drafts)

    def _verify_logprobs(self, logits: torch.Tensor, emitted: list[list[int]], drafts: list[tuple[int, ...]],
                         states: list[SamplingRequestState], num_top: int):
        """Raw logprobs of every emitted token, read from the verify row that emitted it: per request, (the last
        token's, the accepted drafts') or (None, None) when the request did not ask for logprobs."""
        row_tokens = [0] * logits.shape[0]
        start = 0
        for tokens, d in zip(emitted, drafts):
            row_tokens[start : start + len(tokens)] = tokens
            start += len(d) + 1
        lp = compute_logprobs(logits, torch.tensor(row_tokens, device=logits.device), num_top)
        values, ranks = lp.sampled_logprobs.tolist(), lp.sampled_ranks.tolist()
        top_ids, top_lps = lp.top_token_ids.tolist(), lp.top_logprobs.tolist()
        last: list[SampledLogprobs | None] = []
        accepted: list[tuple[SampledLogprobs, ...] | None] = []
        start = 0
        for tokens, d, state in zip(emitted, drafts, states):
            k = state.params.logprobs
            if k is None:
                last.append(None)
                accepted.append(None)
            else:
                entries = tuple(SampledLogprobs(values[r], ranks[r], tuple(top_ids[r][:k]), tuple(top_lps[r][:k]))
                                for r in range(start, start + len(tokens)))
                last.append(entries[-1])
                accepted.append(entries[:-1])
            start += len(d) + 1
        return tuple(last), tuple(accepted)

    # ---- called by PendingRunnerOutput ----------------------------------------------------------------------

    def record_sampled(self, req_ids: tuple[str, ...], tokens: list[int]) -> None:
        """Append each sampled token to its request's output history (penalties and min_tokens read it)."""
        for request_id, token in zip(req_ids, tokens):
            state = self._states.get(request_id)
            if state is not None:
                state.output_token_ids.append(token)  # type: ignore[attr-defined]

    def logprobs_to_host(self, req_ids: tuple[str, ...], out: SamplerOutput) -> tuple[SampledLogprobs | None, ...]:
        lp = out.logprobs
        assert lp is not None
        sampled = lp.sampled_logprobs.tolist()
        ranks = lp.sampled_ranks.tolist()
        top_ids = lp.top_token_ids.tolist()
        top_lps = lp.top_logprobs.tolist()
        rows: list[SampledLogprobs | None] = []
        for i, request_id in enumerate(req_ids):
            state = self._states.get(request_id)
            k = state.params.logprobs if state is not None else None
            if k is None:
                rows.append(None)
                continue
            rows.append(SampledLogprobs(sampled[i], ranks[i], tuple(top_ids[i][:k]), tuple(top_lps[i][:k])))
        return tuple(rows)


def _logits_rows(scheduled: tuple[ScheduledRequest, ...], sampled: list[int], cu: np.ndarray) -> np.ndarray:
    """The last 1 + k_r rows of each sampling request (k_r: its drafts), in request order."""
    ends = cu[1:][sampled]
    counts = np.fromiter((len(scheduled[i].spec_token_ids) + 1 for i in sampled), np.int64, len(sampled))
    if (counts == 1).all():
        return ends - 1
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(ends - counts, counts) + offsets


def _accept_greedy(targets: list[int], drafts: list[tuple[int, ...]]) -> list[list[int]]:
    """Greedy verification: each request's drafts up to the first that differs from its row's target token, then
    that row's target. targets: one per verify row (request r owns k_r + 1 consecutive rows)."""
    emitted, start = [], 0
    for d in drafts:
        num_accepted = 0
        while num_accepted < len(d) and d[num_accepted] == targets[start + num_accepted]:
            num_accepted += 1
        emitted.append([*d[:num_accepted], targets[start + num_accepted]])
        start += len(d) + 1
    return emitted


def _is_plain_greedy(state: SamplingRequestState) -> bool:
    """Greedy and nothing moves its logits before the argmax (no bias, penalties, min_tokens mask or logprobs)."""
    p = state.params
    return (p.is_greedy and not p.logit_bias and not p.has_penalties and p.logprobs is None
            and (len(state.output_token_ids) >= p.min_tokens or not state.stop_token_ids))


def _needs_exact_history(state: SamplingRequestState) -> bool:
    """True when this step's sampling depends on the request's latest output token (which may be in flight)."""
    params = state.params
    return params.has_penalties or len(state.output_token_ids) < params.min_tokens
