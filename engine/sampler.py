"""Sampler: logits [N, V] -> next tokens [N], vectorised over the batch.

Per step the caller (the model runner) does:

    rows = [SamplingRow(state) for each request]        # state: the request's SamplingRequestState, kept by the caller
    batch = SamplingBatch.build(rows, vocab_size, device)
    out = sampler(logits, batch)                         # SamplerOutput; or sampler.compute_probs(logits, batch)

Processing order (vLLM's): min_tokens stop mask, logit_bias, penalties (repetition on prompt+output, frequency and
presence on output), then temperature, min_p, top_k, top_p; then sampling. Greedy rows (temperature 0) take the argmax
of the penalised logits (temperature and truncation never move the argmax; ties go to the lowest id). Random rows
sample by the exponential race: token = argmax(probs / q) with q ~ Exp(1) i.i.d. over the vocabulary, an exact draw
from `probs`.

Randomness contract: a seeded request draws its noise from its own generator, exactly V uniforms (made Exp(1))
per sampled token (none for greedy rows), so its tokens do not depend on the rest of the batch. Unseeded rows share
the sampler's generator.

Logprobs contract (vLLM's default "raw_logprobs"): reported logprobs are log_softmax of the logits as given, i.e.
the model's distribution BEFORE penalties, bias, temperature and truncation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from engine.sampling_params import SamplingParams


@dataclass(slots=True, eq=False)
class SamplingRequestState:
    """One request's sampling state, created once at admission and kept by the caller for the request's life.

    It caches the request's token statistics on the device (prompt-token mask, output-token counts) so that a
    step's batch costs O(new tokens) host work, not O(context). Only requests with penalties build the caches.
    """

    params: SamplingParams
    prompt_token_ids: Sequence[int]
    # NOTE: a live, append-only view of the request's committed output tokens (the caller's list itself, not a
    # copy): each build counts the tokens appended since the previous build. Never remove tokens from it.
    output_token_ids: Sequence[int]
    stop_token_ids: frozenset[int]  # masked while fewer than params.min_tokens are generated (see stop_token_id_set)
    # None: created from params.seed (if any) on the logits' device at the first build. A caller-made generator
    # must live on the logits' device.
    generator: torch.Generator | None = None
    _prompt_mask: torch.Tensor | None = field(default=None, init=False, repr=False)  # [V] bool, built once
    _output_counts: torch.Tensor | None = field(default=None, init=False, repr=False)  # [V] int32, output[:n]
    _num_counted: int = field(default=0, init=False, repr=False)  # n: output tokens already in _output_counts

    def ensure_generator(self, device: torch.device) -> torch.Generator | None:
        if self.generator is None and self.params.seed is not None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.params.seed)
        return self.generator


@dataclass(frozen=True, slots=True)
class SamplingRow:
    """One logits row to sample: a request plus the draft tokens this row sees after its committed output.

    In speculative verification, row j (0..k) of a request with drafts d_1..d_k carries draft_token_ids = d_1..d_j,
    so its penalties and min_tokens count exactly the prefix that row's logits were computed from.
    """

    state: SamplingRequestState
    draft_token_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PenaltyTensors:
    rows: torch.Tensor  # [P] int64: logits rows that have a penalty
    repetition: torch.Tensor  # [P, 1] float32
    presence: torch.Tensor  # [P, 1] float32
    frequency: torch.Tensor  # [P, 1] float32
    output_counts: torch.Tensor  # [P, V] int32: occurrences in output + this row's drafts
    seen_mask: torch.Tensor | None  # [P, V] bool: in prompt or output (None when no row has repetition_penalty)


@dataclass(frozen=True, slots=True)
class SamplingBatch:
    """Per-step tensors describing N rows. Built by `build`, read-only afterwards; every tensor on the device."""

    num_rows: int
    temperature: torch.Tensor  # [N, 1] float32; 1.0 on greedy rows
    is_greedy: torch.Tensor  # [N] bool
    all_greedy: bool  # host flags: branching on them never syncs with the device
    any_greedy: bool
    top_k: torch.Tensor | None  # [N] int64, V where off; None when no row uses top-k
    max_top_k: int  # max top_k over rows that use it (0 when none)
    top_p: torch.Tensor | None  # [N, 1] float32; None when every row has top_p == 1
    log_min_p: torch.Tensor | None  # [N, 1] float32 log(min_p) (-inf where off); None when no row uses min_p
    logit_bias: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None  # (rows [M], token ids [M], bias [M])
    stop_mask: tuple[torch.Tensor, torch.Tensor] | None  # (rows [S], token ids [S]) set to -inf (min_tokens)
    penalties: PenaltyTensors | None
    generators: tuple[torch.Generator | None, ...]  # [N]: the row's own generator (seeded rows) or None
    max_num_logprobs: int  # -1 when no row asked for logprobs

    @staticmethod
    def build(rows: Sequence[SamplingRow], vocab_size: int, device: torch.device | str) -> SamplingBatch:
        """Describe `rows` for one step.

        Cost: one Python pass over the rows plus one small host->device copy per field; rows with penalties add a
        [P, V] gather of their cached counts and O(new tokens) counting work. No O(context) host work per step.
        """
        device = torch.device(device)
        temps, greedy, top_ks, top_ps, min_ps, gens = [], [], [], [], [], []
        bias_rows, bias_ids, bias_vals, stop_rows, stop_ids, pen_rows = [], [], [], [], [], []
        max_logprobs = -1
        for i, row in enumerate(rows):
            p = row.state.params
            is_greedy = p.is_greedy
            temps.append(1.0 if is_greedy else p.temperature)
            greedy.append(is_greedy)
            top_ks.append(vocab_size if p.top_k <= 0 else min(p.top_k, vocab_size))
            top_ps.append(p.top_p)
            min_ps.append(p.min_p)
            gens.append(None if is_greedy else row.state.ensure_generator(device))
            if p.logit_bias:
                bias_rows += [i] * len(p.logit_bias)
                bias_ids += p.logit_bias.keys()
                bias_vals += p.logit_bias.values()
            num_generated = len(row.state.output_token_ids) + len(row.draft_token_ids)
            if num_generated < p.min_tokens and row.state.stop_token_ids:
                stop_rows += [i] * len(row.state.stop_token_ids)
                stop_ids += row.state.stop_token_ids
            if p.has_penalties:
                pen_rows.append(i)
            if p.logprobs is not None:
                max_logprobs = max(max_logprobs, p.logprobs)

        def to_dev(values: list, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)

        uses_top_k = any(k < vocab_size for k in top_ks)
        return SamplingBatch(
            num_rows=len(rows),
            temperature=to_dev(temps, torch.float32).unsqueeze(1),
            is_greedy=to_dev(greedy, torch.bool),
            all_greedy=all(greedy),
            any_greedy=any(greedy),
            top_k=to_dev(top_ks, torch.int64) if uses_top_k else None,
            max_top_k=max((k for k in top_ks if k < vocab_size), default=0),
            top_p=to_dev(top_ps, torch.float32).unsqueeze(1) if any(p < 1.0 for p in top_ps) else None,
            log_min_p=to_dev(min_ps, torch.float32).log().unsqueeze(1) if any(m > 0 for m in min_ps) else None,
            logit_bias=(
                (to_dev(bias_rows, torch.int64), to_dev(bias_ids, torch.int64), to_dev(bias_vals, torch.float32))
                if bias_rows
                else None
            ),
            stop_mask=(to_dev(stop_rows, torch.int64), to_dev(stop_ids, torch.int64)) if stop_rows else None,
            penalties=_build_penalties([rows[i] for i in pen_rows], pen_rows, vocab_size, device) if pen_rows else None,
            generators=tuple(gens),
            max_num_logprobs=max_logprobs,
        )


def _build_penalties(
    rows: Sequence[SamplingRow], row_ids: list[int], vocab_size: int, device: torch.device
) -> PenaltyTensors:
    states = list({id(r.state): r.state for r in rows}.values())  # unique, ordered
    _update_counts(states, vocab_size, device)
    need_seen = any(r.state.params.repetition_penalty != 1.0 for r in rows)
    counts = torch.stack([r.state._output_counts for r in rows])  # [P, V] copy: drafts are added below
    draft_rows = [i for i, r in enumerate(rows) for _ in r.draft_token_ids]
    if draft_rows:
        draft_ids = [t for r in rows for t in r.draft_token_ids]
        idx = (torch.tensor(draft_rows).to(device), torch.tensor(draft_ids).to(device))
        counts.index_put_(idx, torch.ones(len(draft_ids), dtype=counts.dtype, device=device), accumulate=True)
    seen = None
    if need_seen:
        for s in states:
            if s._prompt_mask is None:
                s._prompt_mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
                s._prompt_mask[torch.as_tensor(list(s.prompt_token_ids), dtype=torch.int64).to(device)] = True
        seen = torch.stack([r.state._prompt_mask for r in rows]) | (counts > 0)

    def col(name: str) -> torch.Tensor:
        return torch.tensor([getattr(r.state.params, name) for r in rows], dtype=torch.float32).to(device)[:, None]

    return PenaltyTensors(
        rows=torch.tensor(row_ids, dtype=torch.int64).to(device),
        repetition=col("repetition_penalty"),
        presence=col("presence_penalty"),
        frequency=col("frequency_penalty"),
        output_counts=counts,
        seen_mask=seen,
    )


def _update_counts(states: list[SamplingRequestState], vocab_size: int, device: torch.device) -> None:
    """Count, into each state's cache, the output tokens appended since its last build (one H2D copy in all)."""
    fresh: list[int] = []
    sizes: list[int] = []
    for s in states:
        if s._output_counts is None:
            s._output_counts = torch.zeros(vocab_size, dtype=torch.int32, device=device)
        new = s.output_token_ids[s._num_counted :]
        fresh.extend(new)
        sizes.append(len(new))
        s._num_counted += len(new)
    if not fresh:
        return
    parts = torch.tensor(fresh, dtype=torch.int64).to(device).split(sizes)
    for s, part, n in zip(states, parts, sizes):
        if n:  # NOTE: one small kernel per state with new tokens (usually one token per step)
            s._output_counts.index_add_(0, part, torch.ones(n, dtype=torch.int32, device=device))


@dataclass(frozen=True, slots=True)
class LogprobsTensors:
    sampled_logprobs: torch.Tensor  # [N] float32: raw logprob of the token each row emitted
    sampled_ranks: torch.Tensor  # [N] int64: 1-based rank of that token in the raw distribution (ties rank ahead)
    top_token_ids: torch.Tensor  # [N, K] int64, K = max `logprobs` in the batch; row i reads its first logprobs_i
    top_logprobs: torch.Tensor  # [N, K] float32: raw logprobs of top_token_ids, descending


@dataclass(frozen=True, slots=True)
class SamplerOutput:
    sampled_token_ids: torch.Tensor  # [N] int64 on the logits' device
    logprobs: LogprobsTensors | None  # None when no row asked for logprobs


class Sampler:
    """Stateless apart from the generator that unseeded rows share."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = seed
        self._generator: torch.Generator | None = None

    def generator(self, device: torch.device) -> torch.Generator:
        """The shared generator of unseeded rows, created on first use on `device` (seeded if `seed` was given)."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            if self._seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(self._seed)
        return self._generator

    def __call__(self, logits: torch.Tensor, batch: SamplingBatch) -> SamplerOutput:
        """Sample one token per row of `logits` [N, V] float32 (not modified)."""
        _check_logits(logits, batch)
        processed = process_logits(logits, batch)
        if batch.all_greedy:
            token_ids = processed.argmax(dim=-1)
        else:
            probs = processed.softmax(dim=-1)
            noise = self.exponential_noise(probs, batch.generators)
            token_ids = probs.div_(noise).argmax(dim=-1)
            if batch.any_greedy:
                token_ids = torch.where(batch.is_greedy, processed.argmax(dim=-1), token_ids)
        logprobs = None
        if batch.max_num_logprobs >= 0:
            logprobs = compute_logprobs(logits, token_ids, batch.max_num_logprobs)
        return SamplerOutput(sampled_token_ids=token_ids, logprobs=logprobs)

    def compute_probs(self, logits: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
        """The distribution each row samples from, [N, V] float32: processed softmax, one-hot argmax on greedy rows."""
        _check_logits(logits, batch)
        processed = process_logits(logits, batch)
        probs = processed.softmax(dim=-1)
        if batch.any_greedy:
            one_hot = torch.zeros_like(probs).scatter_(1, processed.argmax(dim=-1, keepdim=True), 1.0)
            probs = torch.where(batch.is_greedy[:, None], one_hot, probs)
        return probs

    def exponential_noise(self, like: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
        """Exp(1) noise shaped like `like` [R, V], as -log(1 - u), u ~ U[0, 1): one batched uniform draw, then
        seeded rows redrawn from their own generator (V uniforms per row)."""
        noise = torch.empty_like(like).uniform_(generator=self.generator(like.device))
        for i, gen in enumerate(generators):
            if gen is not None:  # NOTE: unavoidable per-row loop: each seeded row owns its random stream
                noise[i].uniform_(generator=gen)
        # NOTE: not Tensor.exponential_, which is ~5x slower than uniform_ + log1p on CPU. A zero (u == 0) would
        # turn a zero prob into nan or let it win the race: clamp to the smallest normal float.
        return noise.neg_().log1p_().neg_().clamp_min_(torch.finfo(noise.dtype).tiny)


def _check_logits(logits: torch.Tensor, batch: SamplingBatch) -> None:
    if logits.dim() != 2 or logits.shape[0] != batch.num_rows:
        raise ValueError(f"logits: expected shape [{batch.num_rows}, V], got {tuple(logits.shape)}")
    if logits.dtype != torch.float32:
        raise ValueError(f"logits: expected float32, got {logits.dtype}")


def process_logits(logits: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
    """Apply every per-row transformation; returns a new [N, V] tensor (-inf where truncated)."""
    out = logits.clone()
    if batch.stop_mask is not None:
        out[batch.stop_mask] = float("-inf")
    if batch.logit_bias is not None:
        rows, ids, bias = batch.logit_bias
        out.index_put_((rows, ids), bias, accumulate=True)
    if batch.penalties is not None:
        pen = batch.penalties
        out[pen.rows] = apply_penalties(out[pen.rows], pen)
    if not batch.all_greedy:
        out.div_(batch.temperature)
    if batch.log_min_p is not None:  # prob < min_p * max_prob  <=>  logit < max_logit + log(min_p)
        threshold = out.amax(dim=-1, keepdim=True) + batch.log_min_p
        out.masked_fill_(out < threshold, float("-inf"))
    if batch.top_k is not None:
        out = apply_top_k(out, batch.top_k, batch.max_top_k)
    if batch.top_p is not None:
        out = apply_top_p(out, batch.top_p)
    return out


def apply_penalties(logits: torch.Tensor, pen: PenaltyTensors) -> torch.Tensor:
    """logits [P, V] of the penalised rows -> penalised logits (HF/vLLM repetition, OpenAI presence/frequency)."""
    if pen.seen_mask is not None:
        scaled = torch.where(logits > 0, logits / pen.repetition, logits * pen.repetition)
        logits = torch.where(pen.seen_mask, scaled, logits)
    counts = pen.output_counts.to(logits.dtype)
    return logits - pen.frequency * counts - pen.presence * (counts > 0).to(logits.dtype)


def apply_top_k(logits: torch.Tensor, top_k: torch.Tensor, max_top_k: int) -> torch.Tensor:
    """Keep logits >= the row's k-th largest (ties at the boundary are all kept); rows with k == V untouched."""
    vocab_size = logits.shape[-1]
    is_off = top_k >= vocab_size
    k = torch.where(is_off, torch.ones_like(top_k), top_k)
    kth = logits.topk(max_top_k, dim=-1).values.gather(1, (k - 1)[:, None])  # [N, 1]
    kth = kth.masked_fill(is_off[:, None], float("-inf"))
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Keep the smallest top set whose probability mass reaches top_p: drop a token when the mass of the tokens
    sorted strictly before it (descending) is already >= top_p. The most likely token is always kept."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    sorted_probs = sorted_logits.softmax(dim=-1)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    # NOTE: rows with top_p == 1 are excluded explicitly: float32 cumsum can reach 1.0 before the tail.
    sorted_logits = sorted_logits.masked_fill((mass_before >= top_p) & (top_p < 1.0), float("-inf"))
    return torch.empty_like(logits).scatter_(1, order, sorted_logits)


def compute_logprobs(logits: torch.Tensor, token_ids: torch.Tensor, num_top: int) -> LogprobsTensors:
    """Raw logprobs (log_softmax of `logits`) of `token_ids` [N] and each row's `num_top` best alternatives."""
    raw = logits.log_softmax(dim=-1)
    sampled = raw.gather(1, token_ids[:, None])  # [N, 1]
    top = raw.topk(num_top, dim=-1) if num_top > 0 else None
    empty_ids = torch.empty(raw.shape[0], 0, dtype=torch.int64, device=raw.device)
    return LogprobsTensors(
        sampled_logprobs=sampled.squeeze(1),
        sampled_ranks=(raw >= sampled).sum(dim=-1),
        top_token_ids=top.indices if top is not None else empty_ids,
        top_logprobs=top.values if top is not None else empty_ids.to(raw.dtype),
    )
