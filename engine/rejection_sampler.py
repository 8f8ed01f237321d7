"""RejectionSampler: verify k draft tokens per request against the target model's k+1 distributions.

The drafter is one-hot (greedy MTP drafts: q(d_j) = 1), so speculative sampling's rule reduces to:
  - greedy request: accept d_j while d_j == argmax p_j; at the first mismatch emit argmax p_j; if all k are
    accepted emit the bonus argmax p_{k+1};
  - sampled request: accept d_j with probability p_j(d_j) (u ~ U(0, 1] from the request's generator, accept iff
    u <= p_j(d_j)); at the first rejection emit a draw from p_j with d_j zeroed and renormalised, then stop; if all k
    are accepted emit a draw from p_{k+1}.
Each emitted sequence is then distributed exactly as k+1 tokens sampled one by one from the target.

Inputs: `target_probs` [T, V] from `Sampler.compute_probs` over the verify rows, T = sum(k_r + 1); request r owns
rows starts_r .. starts_r + k_r (contiguous, in request order), row j built with SamplingRow(state, drafts[:j]).

Randomness contract: per step a seeded sampled request draws k_r uniforms then V more (Exp(1) noise for the
residual or bonus draw, by the exponential race) from its own generator, whatever the outcome; greedy requests draw
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.sampler import Sampler, SamplingRequestState


@dataclass(frozen=True, slots=True)
class RejectionSamplerOutput:
    # [R, K+1] int64, K = max k_r: row r holds its accepted drafts then one corrected/bonus token, padded with -1
    output_token_ids: torch.Tensor
    num_accepted_drafts: torch.Tensor  # [R] int64: drafts accepted per request (emitted tokens = this + 1)

    def tolist(self) -> list[list[int]]:
        """The emitted tokens per request (one device->host sync)."""
        return [[t for t in row if t >= 0] for row in self.output_token_ids.tolist()]


class RejectionSampler:
    """Shares `sampler`'s generator for unseeded requests."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def __call__(
        self,
        target_probs: torch.Tensor,
        draft_token_ids: Sequence[Sequence[int]],
        states: Sequence[SamplingRequestState],
    ) -> RejectionSamplerOutput:
        num_drafts = [len(d) for d in draft_token_ids]
        _check_inputs(target_probs, draft_token_ids, states)
        device = target_probs.device
        num_requests, max_k = len(num_drafts), max(num_drafts, default=0)
        starts_list = [0]
        for k in num_drafts[:-1]:
            starts_list.append(starts_list[-1] + k + 1)
        starts = torch.tensor(starts_list, dtype=torch.int64).to(device)  # [R]
        k = torch.tensor(num_drafts, dtype=torch.int64).to(device)  # [R]
        is_greedy_list = [s.params.is_greedy for s in states]
        is_greedy = torch.tensor(is_greedy_list).to(device)  # [R]
        gens = [None if g else s.ensure_generator(device) for s, g in zip(states, is_greedy_list)]

        num_accepted = torch.zeros(num_requests, dtype=torch.int64, device=device)
        drafts = torch.zeros(num_requests, max_k, dtype=torch.int64, device=device)
        if max_k > 0:
            drafts = torch.tensor([list(d) + [0] * (max_k - len(d)) for d in draft_token_ids]).to(device)
            uniforms = self._uniforms(num_requests, max_k, num_drafts, gens, device)
            num_accepted = _count_accepted(target_probs, drafts, starts, k, is_greedy, uniforms)

        # The one token drawn per request: from row starts+num_accepted, the rejected draft zeroed (if any).
        residual = target_probs[starts + num_accepted]  # [R, V] (a copy)
        rejected = num_accepted < k
        rejected_ids = drafts.gather(1, num_accepted.clamp(max=max(max_k - 1, 0))[:, None]) if max_k else None
        if rejected_ids is not None:
            kept = residual.gather(1, rejected_ids).masked_fill(rejected[:, None], 0.0)
            residual.scatter_(1, rejected_ids, kept)
        last_ids = residual.argmax(dim=-1)
        if not all(is_greedy_list):  # exponential race; scale-free, so no renormalisation is needed
            noise = self.sampler.exponential_noise(residual, gens)
            last_ids = torch.where(is_greedy, last_ids, residual.div_(noise).argmax(dim=-1))

        cols = torch.arange(max_k + 1, device=device)[None, :]
        out = torch.full((num_requests, max_k + 1), -1, dtype=torch.int64, device=device)
        out[:, :max_k] = torch.where(cols[:, :max_k] < num_accepted[:, None], drafts, -1)
        out.scatter_(1, num_accepted[:, None], last_ids[:, None])
        return RejectionSamplerOutput(output_token_ids=out, num_accepted_drafts=num_accepted)

    def _uniforms(
        self,
        num_requests: int,
        max_k: int,
        num_drafts: list[int],
        gens: list[torch.Generator | None],
        device: torch.device,
    ) -> torch.Tensor:
        """U(0, 1] draws [R, K]: one batched draw, seeded requests redrawn from their own generator (k_r each)."""
        u = torch.rand(num_requests, max_k, device=device, generator=self.sampler.generator(device))
        for r, gen in enumerate(gens):
            if gen is not None and num_drafts[r]:  # NOTE: per-request loop: each seeded request owns its stream
                u[r, : num_drafts[r]] = torch.rand(num_drafts[r], device=device, generator=gen)
        return 1.0 - u  # rand is in [0, 1): flip so that p == 0 never accepts and p == 1 always does


def _count_accepted(
    target_probs: torch.Tensor,
    drafts: torch.Tensor,
    starts: torch.Tensor,
    k: torch.Tensor,
    is_greedy: torch.Tensor,
    uniforms: torch.Tensor,
) -> torch.Tensor:
    """Length of each request's accepted draft prefix, [R] int64."""
    max_k = drafts.shape[1]
    j = torch.arange(max_k, device=drafts.device)[None, :]
    valid = j < k[:, None]  # [R, K]
    rows = (starts[:, None] + j).clamp(max=target_probs.shape[0] - 1)  # NOTE: padded slots clamp; masked by valid
    p_draft = target_probs[rows, drafts]  # [R, K]
    target_argmax = target_probs.argmax(dim=-1)[rows]  # [R, K]
    accept = torch.where(is_greedy[:, None], drafts == target_argmax, uniforms <= p_draft) & valid
    return accept.to(torch.int64).cumprod(dim=1).sum(dim=1)


def _check_inputs(
    target_probs: torch.Tensor, draft_token_ids: Sequence[Sequence[int]], states: Sequence[SamplingRequestState]
) -> None:
    num_drafts = [len(d) for d in draft_token_ids]
    if len(states) != len(num_drafts):
        raise ValueError(f"states: expected one per request ({len(num_drafts)}), got {len(states)}")
    expected_rows = sum(num_drafts) + len(num_drafts)
    if target_probs.dim() != 2 or target_probs.shape[0] != expected_rows:
        raise ValueError(f"target_probs: expected shape [{expected_rows}, V], got {tuple(target_probs.shape)}")
    vocab_size = target_probs.shape[1]
    if any(not 0 <= t < vocab_size for d in draft_token_ids for t in d):
        raise ValueError(f"draft_token_ids: ids must be in [0, {vocab_size})")
