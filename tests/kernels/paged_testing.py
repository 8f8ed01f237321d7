"""Random paged-KV batches and their per-sequence reference, shared by the kernel tests and the GPU tests.

A batch is a list of (query_len, seq_len) pairs: sequence b has `seq_len - query_len` cached positions already in
the cache and `query_len` new rows this step. Blocks are handed out in a random order (non-contiguous), block tables
are padded with -1, and every slot outside the batch's contexts holds large finite garbage so that a backend that
reads a masked or foreign slot gets a visibly wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.attention.base import AttentionMetadata
from kernels.attention.dense import causal_attention


@dataclass(frozen=True)
class PagedBatch:
    metadata: AttentionMetadata
    kv_caches: list[torch.Tensor]  # per layer [num_blocks, 2, block_size, nkv, d]
    q: torch.Tensor  # [T, nh, d] new query rows
    k: torch.Tensor  # [T, nkv, d] new keys (same for every layer)
    v: torch.Tensor  # [T, nkv, d]
    prefix_k: list[list[torch.Tensor]]  # [layer][seq] -> [seq_len - query_len, nkv, d] keys already cached
    prefix_v: list[list[torch.Tensor]]
    scale: float

    def expected(self, layer: int = 0) -> torch.Tensor:
        """Per-sequence causal attention over cached prefix + new rows, computed in fp32 -> [T, nh, d]."""
        outs, start = [], 0
        for b, n in enumerate(self.metadata.query_lens_cpu):
            rows = slice(start, start + n)
            keys = torch.cat([self.prefix_k[layer][b], self.k[rows]]).float()
            values = torch.cat([self.prefix_v[layer][b], self.v[rows]]).float()
            outs.append(causal_attention(self.q[rows].float(), keys, values, self.scale))
            start += n
        return torch.cat(outs)

    def expected_cache_rows(self, layer: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """What the cache must hold at slot_mapping after one forward: (k, v) in cache dtype."""
        return self.k.to(self.kv_caches[layer].dtype), self.v.to(self.kv_caches[layer].dtype)


def make_paged_batch(
    lens: list[tuple[int, int]],
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 16,
    block_size: int = 4,
    dtype: torch.dtype = torch.float32,
    num_layers: int = 1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    spare_blocks: int = 3,
) -> PagedBatch:
    gen = torch.Generator().manual_seed(seed)
    blocks_per_seq = [-(-seq_len // block_size) for _, seq_len in lens]
    num_blocks = sum(blocks_per_seq) + spare_blocks
    order = torch.randperm(num_blocks, generator=gen).tolist()
    max_blocks = max(blocks_per_seq) + 1  # one extra column of padding for everybody
    tables = torch.full((len(lens), max_blocks), -1, dtype=torch.int32)
    used = 0
    for b, count in enumerate(blocks_per_seq):
        tables[b, :count] = torch.tensor(order[used : used + count], dtype=torch.int32)
        used += count

    def slot(b: int, pos: int) -> tuple[int, int]:
        return int(tables[b, pos // block_size]), pos % block_size

    shape = (num_blocks, 2, block_size, num_kv_heads, head_dim)
    caches = [(1e3 * torch.randn(shape, generator=gen)).to(dtype) for _ in range(num_layers)]
    prefix_k: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]
    prefix_v: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]
    for layer in range(num_layers):
        for b, (query_len, seq_len) in enumerate(lens):
            cached = seq_len - query_len
            pk = torch.randn(cached, num_kv_heads, head_dim, generator=gen).to(dtype)
            pv = torch.randn(cached, num_kv_heads, head_dim, generator=gen).to(dtype)
            for pos in range(cached):
                blk, off = slot(b, pos)
                caches[layer][blk, 0, off] = pk[pos]
                caches[layer][blk, 1, off] = pv[pos]
            prefix_k[layer].append(pk.to(device))
            prefix_v[layer].append(pv.to(device))
    slots = [slot(b, pos) for b, (n, s) in enumerate(lens) for pos in range(s - n, s)]
    num_tokens = len(slots)
    q = torch.randn(num_tokens, num_heads, head_dim, generator=gen).to(dtype)
    k = torch.randn(num_tokens, num_kv_heads, head_dim, generator=gen).to(dtype)
    v = torch.randn(num_tokens, num_kv_heads, head_dim, generator=gen).to(dtype)
    query_lens = tuple(n for n, _ in lens)
    seq_lens = tuple(s for _, s in lens)
    starts = [0]
    for n in query_lens:
        starts.append(starts[-1] + n)
    metadata = AttentionMetadata(
        query_start_loc=torch.tensor(starts, dtype=torch.int32, device=device),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=device),
        query_lens_cpu=query_lens,
        seq_lens_cpu=seq_lens,
        slot_mapping=torch.tensor([blk * block_size + off for blk, off in slots], dtype=torch.int64, device=device),
        block_tables=tables.to(device),
    )
    return PagedBatch(
        metadata=metadata,
        kv_caches=[c.to(device) for c in caches],
        q=q.to(device),
        k=k.to(device),
        v=v.to(device),
        prefix_k=prefix_k,
        prefix_v=prefix_v,
        scale=head_dim**-0.5,
    )


def cache_rows_at_slots(cache: torch.Tensor, slot_mapping: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, v) [T, nkv, d] stored at the given slots, read through the 5-D layout (not the flat-row formula)."""
    block_size = cache.shape[2]
    blocks = torch.div(slot_mapping, block_size, rounding_mode="floor")
    offsets = slot_mapping % block_size
    return cache[blocks, 0, offsets], cache[blocks, 1, offsets]
