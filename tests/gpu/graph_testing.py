"""Helpers for the CUDA-graph tests: step metadata for sequences living in a block pool, and a sync-free toy model."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from kernels.attention.base import AttentionBackend, AttentionMetadata


class PagedSequences:
    """Sequences with fixed, shuffled block lists; builds the metadata of prefill and decode steps over them."""

    def __init__(self, num_seqs: int, max_len: int, block_size: int, seed: int = 0, device: str = "cuda") -> None:
        blocks_per_seq = -(-max_len // block_size)
        self.num_blocks = num_seqs * blocks_per_seq + 1  # block 0 is left to the graph capture's dummy writes
        gen = torch.Generator().manual_seed(seed)
        order = (torch.randperm(self.num_blocks - 1, generator=gen) + 1).tolist()
        self.tables = [order[i * blocks_per_seq : (i + 1) * blocks_per_seq] for i in range(num_seqs)]
        self.block_size = block_size
        self.device = device
        self.lens = [0] * num_seqs

    def step(self, seqs: list[int], num_new: list[int]) -> AttentionMetadata:
        """Metadata for `num_new[i]` new tokens of sequence `seqs[i]`; advances their lengths."""
        bs = self.block_size
        slots, starts, seq_lens = [], [0], []
        for b, n in zip(seqs, num_new):
            for pos in range(self.lens[b], self.lens[b] + n):
                slots.append(self.tables[b][pos // bs] * bs + pos % bs)
            self.lens[b] += n
            starts.append(starts[-1] + n)
            seq_lens.append(self.lens[b])
        tables = torch.tensor([self.tables[b] for b in seqs], dtype=torch.int32)
        return AttentionMetadata(
            query_start_loc=torch.tensor(starts, dtype=torch.int32, device=self.device),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=self.device),
            query_lens_cpu=tuple(num_new),
            seq_lens_cpu=tuple(seq_lens),
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=self.device),
            block_tables=tables.to(self.device),
        )

    def positions(self, seqs: list[int], num_new: list[int]) -> torch.Tensor:
        """Positions of the tokens `step(seqs, num_new)` is about to add (call before step)."""
        return torch.cat([torch.arange(self.lens[b], self.lens[b] + n) for b, n in zip(seqs, num_new)]).to(self.device)


class ToyAttentionModel(nn.Module):
    """Embedding + position embedding, then residual attention layers: no host syncs, so it captures."""

    def __init__(self, vocab: int, hidden: int, num_heads: int, num_kv_heads: int, head_dim: int, num_layers: int,
                 max_positions: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(max_position_embeddings=max_positions)
        self.shape = (num_heads, num_kv_heads, head_dim)
        self.embed = nn.Embedding(vocab, hidden)
        self.pos_embed = nn.Embedding(max_positions, hidden)
        self.qkv = nn.ModuleList(nn.Linear(hidden, (num_heads + 2 * num_kv_heads) * head_dim) for _ in
                                 range(num_layers))
        self.o = nn.ModuleList(nn.Linear(num_heads * head_dim, hidden, bias=False) for _ in range(num_layers))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, attn: AttentionBackend) -> torch.Tensor:
        nh, nkv, d = self.shape
        x = self.embed(input_ids) + self.pos_embed(positions)
        for layer, (qkv, o) in enumerate(zip(self.qkv, self.o)):
            q, k, v = qkv(x).split([nh * d, nkv * d, nkv * d], dim=-1)
            out = attn.forward(layer, q.reshape(-1, nh, d), k.reshape(-1, nkv, d), v.reshape(-1, nkv, d))
            x = x + o(out.reshape(-1, nh * d))
        return x
