"""The attention interface the model calls, and the per-step metadata every backend plans from.

Contract: the model runner builds one `AttentionMetadata` per step, calls `backend.plan(metadata)` once, then every
attention layer calls `backend.forward(layer_idx, q, k, v)`. The backend owns the KV cache tensors (if any): it
writes the new K/V rows at `slot_mapping` and attends over each sequence's whole context through its block table.
Rows of the flattened batch are grouped by sequence: sequence b owns rows `query_start_loc[b]:query_start_loc[b+1]`,
which are the LAST `query_len` positions of its context (bottom-right aligned causal mask).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class AttentionMetadata:
    query_start_loc: torch.Tensor  # [B+1] int32 on the model device: cumulative query lengths
    seq_lens: torch.Tensor  # [B] int32 on the model device: context length after this step (cached + new)
    query_lens_cpu: tuple[int, ...]  # host copy of query lengths (no device sync to read them)
    seq_lens_cpu: tuple[int, ...]  # host copy of seq_lens
    slot_mapping: torch.Tensor | None = None  # [T] int64: flat slot (block * block_size + offset) per new token
    block_tables: torch.Tensor | None = None  # [B, max_blocks] int32: KV block ids of each sequence (padded)

    @property
    def num_seqs(self) -> int:
        return len(self.query_lens_cpu)

    @property
    def num_tokens(self) -> int:
        return sum(self.query_lens_cpu)

    @property
    def is_decode_only(self) -> bool:
        return all(n == 1 for n in self.query_lens_cpu)

    @staticmethod
    def for_prefill(query_lens: list[int] | tuple[int, ...], device: torch.device | str = "cpu") -> AttentionMetadata:
        """Metadata for sequences that start from an empty context (no KV cache): training, oracles, tests."""
        lens = tuple(int(n) for n in query_lens)
        starts = [0]
        for n in lens:
            starts.append(starts[-1] + n)
        return AttentionMetadata(
            query_start_loc=torch.tensor(starts, dtype=torch.int32, device=device),
            seq_lens=torch.tensor(lens, dtype=torch.int32, device=device),
            query_lens_cpu=lens,
            seq_lens_cpu=lens,
        )


class AttentionBackend(ABC):
    """Causal multi-head attention with grouped KV heads (query head h reads KV head h // (num_heads/num_kv_heads))."""

    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float) -> None:
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} is not a multiple of num_kv_heads={num_kv_heads}")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = scale
        self.metadata: AttentionMetadata | None = None

    def plan(self, metadata: AttentionMetadata) -> None:
        """Prepare for one step; called once before the layers run."""
        self.metadata = metadata

    @abstractmethod
    def forward(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q [T, num_heads, head_dim], k/v [T, num_kv_heads, head_dim] -> [T, num_heads, head_dim]."""
