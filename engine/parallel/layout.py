"""ParallelLayout: which part of every sharded tensor one rank holds. Pure arithmetic, no torch.distributed.

The model's layers size themselves from it and `engine.weight_map` reads the same ranges from the checkpoint, so a
layer's shape and the slice the loader copies into it can never disagree. Splits (vLLM's and SGLang's):
- query heads, the dense MLP's and the shared experts' intermediate size: contiguous equal parts per rank;
- KV heads: equal parts when there are at least as many as ranks; otherwise each rank holds one KV head, the one its
  query heads use (head `rank * num_kv_heads // world_size`), replicated on `world_size / num_kv_heads` ranks;
- vocabulary (embedding and LM head rows): ceil(V / world_size) rows per rank, the last rank's tail padded;
- routed experts: without expert parallelism every rank holds every expert with 1/world_size of its intermediate
  size; with it, rank r holds experts [r * E / world_size, (r + 1) * E / world_size) whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import ModelConfig


@dataclass(frozen=True, slots=True)
class ParallelLayout:
    rank: int = 0  # this process's rank in the tensor-parallel group
    world_size: int = 1  # tensor_parallel_size
    expert_parallel: bool = False  # routed experts placed whole across ranks instead of sliced

    def __post_init__(self) -> None:
        if not isinstance(self.world_size, int) or self.world_size < 1:
            raise ValueError(f"tensor_parallel_size must be a positive int, got {self.world_size!r}")
        if not isinstance(self.rank, int) or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {self.rank!r}")

    @property
    def is_sharded(self) -> bool:
        return self.world_size > 1

    def split(self, size: int, what: str) -> tuple[int, int]:
        """[start, end) of this rank's equal part of `size`; ValueError naming `what` when it does not divide."""
        if size % self.world_size:
            raise ValueError(f"tensor_parallel_size={self.world_size} does not divide {what} ({size})")
        part = size // self.world_size
        return self.rank * part, (self.rank + 1) * part

    def kv_head_range(self, num_kv_heads: int) -> tuple[int, int]:
        """[start, end) of the KV heads this rank holds (one replicated head when there are fewer than ranks)."""
        if num_kv_heads >= self.world_size:
            return self.split(num_kv_heads, "num_key_value_heads")
        if self.world_size % num_kv_heads:
            raise ValueError(f"tensor_parallel_size={self.world_size} must be a multiple of num_key_value_heads "
                             f"({num_kv_heads}) when it exceeds it")
        head = self.rank * num_kv_heads // self.world_size
        return head, head + 1

    def vocab_range(self, vocab_size: int) -> tuple[int, int, int]:
        """(start, end, rows per rank): this rank's vocabulary rows [start, end); rows past `end` are padding."""
        per_rank = -(-vocab_size // self.world_size)
        start = min(self.rank * per_rank, vocab_size)
        return start, min(start + per_rank, vocab_size), per_rank

    def expert_range(self, num_experts: int) -> tuple[int, int]:
        """[start, end) of the routed experts this rank holds."""
        if not self.expert_parallel:
            return 0, num_experts
        return self.split(num_experts, "n_routed_experts (enable_expert_parallel)")

    def moe_intermediate_range(self, moe_intermediate_size: int) -> tuple[int, int]:
        """[start, end) of each routed expert's intermediate rows this rank holds."""
        if self.expert_parallel:
            return 0, moe_intermediate_size
        return self.split(moe_intermediate_size, "moe_intermediate_size")

    def check(self, config: ModelConfig) -> None:
        """Raise ValueError naming the first dimension this world size cannot split."""
        self.split(config.num_attention_heads, "num_attention_heads")
        self.kv_head_range(config.num_key_value_heads)
        self.split(config.intermediate_size, "intermediate_size")
        self.split(config.moe_intermediate_size * config.n_shared_experts, "shared experts' intermediate size")
        self.expert_range(config.n_routed_experts)
        self.moe_intermediate_range(config.moe_intermediate_size)
