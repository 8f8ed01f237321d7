"""SpecDecodingStats: the engine's cumulative speculative-decoding counters (vLLM's names and definitions).

The scheduler updates one instance as it processes each verify step; readers (the server's Prometheus counters
vllm:spec_decode_*, benchmarks) take differences between two `snapshot()`s. A "draft" is one request's set of
draft tokens verified in one step (vLLM's num_drafts), so mean acceptance length = 1 + accepted / drafts: the
tokens a request gains per verify step, the bonus/corrected token included.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SpecDecodingStats:
    num_spec_tokens: int  # k: the most drafts one request verifies per step (length of the per-position list)
    num_drafts: int = 0  # request-steps that verified at least one draft
    num_draft_tokens: int = 0  # drafts verified
    num_accepted_tokens: int = 0  # drafts accepted
    # [k]: entry j counts drafts accepted at draft position j (0-based); position j is reached only if 0..j-1 were
    num_accepted_tokens_per_pos: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.num_accepted_tokens_per_pos:
            self.num_accepted_tokens_per_pos = [0] * self.num_spec_tokens

    def observe(self, num_draft_tokens: int, num_accepted_tokens: int) -> None:
        """One request's verify step: it proposed `num_draft_tokens` drafts and the first `num_accepted_tokens`
        were accepted."""
        if not 0 <= num_accepted_tokens <= num_draft_tokens <= self.num_spec_tokens:
            raise ValueError(f"num_accepted_tokens={num_accepted_tokens}, num_draft_tokens={num_draft_tokens}: "
                             f"need 0 <= accepted <= drafted <= {self.num_spec_tokens}")
        if num_draft_tokens == 0:
            return
        self.num_drafts += 1
        self.num_draft_tokens += num_draft_tokens
        self.num_accepted_tokens += num_accepted_tokens
        per_pos = self.num_accepted_tokens_per_pos
        for position in range(num_accepted_tokens):
            per_pos[position] += 1

    def snapshot(self) -> SpecDecodingStats:
        return SpecDecodingStats(self.num_spec_tokens, self.num_drafts, self.num_draft_tokens,
                                 self.num_accepted_tokens, list(self.num_accepted_tokens_per_pos))

    def since(self, earlier: SpecDecodingStats) -> SpecDecodingStats:
        """The counts added after `earlier` (a snapshot of this object)."""
        return SpecDecodingStats(
            self.num_spec_tokens,
            self.num_drafts - earlier.num_drafts,
            self.num_draft_tokens - earlier.num_draft_tokens,
            self.num_accepted_tokens - earlier.num_accepted_tokens,
            [a - b for a, b in zip(self.num_accepted_tokens_per_pos, earlier.num_accepted_tokens_per_pos)],
        )

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted (0 when nothing was drafted)."""
        return self.num_accepted_tokens / self.num_draft_tokens if self.num_draft_tokens else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """Tokens emitted per verify step of a request: 1 + accepted / drafts (1 when nothing was drafted)."""
        return 1.0 + (self.num_accepted_tokens / self.num_drafts if self.num_drafts else 0.0)

    @property
    def acceptance_rate_per_pos(self) -> list[float]:
        """Entry j: share of drafts (request-steps) whose position-j draft was accepted."""
        return [n / self.num_drafts if self.num_drafts else 0.0 for n in self.num_accepted_tokens_per_pos]
