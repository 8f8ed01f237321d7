"""The page lists FlashInferPagedAttention hands to FlashInfer, checked on CPU (no flashinfer needed).

`attend_via_layout` reads the cache only through (qo_indptr, indptr, indices, last_page_len), exactly FlashInfer's
inputs, so equality with the dense reference proves the layout describes each sequence's context.
"""

from __future__ import annotations

import pytest
import torch
from paged_testing import make_paged_batch

from kernels.attention.dense import causal_attention
from kernels.attention.flashinfer_paged import (
    PagedKVLayout,
    pad_decode_layout,
    padded_write_rows,
    paged_kv_layout,
)
from kernels.attention.torch_paged import slots_to_k_rows, write_kv

BATCHES = {
    "decode": [(1, 1), (1, 4), (1, 5), (1, 17)],
    "mixed": [(1, 9), (12, 30), (4, 11), (23, 23), (1, 2)],
    "verify": [(4, 8), (3, 3), (5, 21)],
}


def attend_via_layout(q: torch.Tensor, cache: torch.Tensor, layout: PagedKVLayout, scale: float) -> torch.Tensor:
    block_size = cache.shape[2]
    outs = []
    for b in range(layout.indptr.numel() - 1):
        pages = layout.indices[layout.indptr[b] : layout.indptr[b + 1]].long()
        kv_len = (pages.numel() - 1) * block_size + int(layout.last_page_len[b])
        keys = cache[pages, 0].reshape(-1, *cache.shape[3:])[:kv_len]
        values = cache[pages, 1].reshape(-1, *cache.shape[3:])[:kv_len]
        rows = slice(int(layout.qo_indptr[b]), int(layout.qo_indptr[b + 1]))
        outs.append(causal_attention(q[rows].float(), keys.float(), values.float(), scale))
    return torch.cat(outs)


@pytest.mark.parametrize("block_size", [1, 4, 16])
@pytest.mark.parametrize("name", sorted(BATCHES))
def test_layout_describes_every_context(name, block_size) -> None:
    batch = make_paged_batch(BATCHES[name], block_size=block_size, seed=11)
    layout = paged_kv_layout(batch.metadata, block_size)
    assert layout.indptr.dtype == layout.indices.dtype == layout.last_page_len.dtype == torch.int32
    assert torch.equal(layout.qo_indptr, batch.metadata.query_start_loc)
    assert ((layout.last_page_len >= 1) & (layout.last_page_len <= block_size)).all()
    cache = batch.kv_caches[0]
    write_kv(cache, slots_to_k_rows(batch.metadata.slot_mapping, block_size), batch.k, batch.v)
    torch.testing.assert_close(attend_via_layout(batch.q, cache, layout, batch.scale), batch.expected())


def test_padding_keeps_real_sequences_and_adds_one_token_sequences() -> None:
    batch = make_paged_batch(BATCHES["decode"], block_size=4, seed=2)
    layout = paged_kv_layout(batch.metadata, 4)
    padded = pad_decode_layout(layout, 8)
    assert padded.indptr.numel() == 9 and padded.last_page_len.numel() == 8
    assert torch.equal(padded.indptr[:5], layout.indptr) and torch.equal(padded.indices[: layout.indices.numel()],
                                                                          layout.indices)
    assert torch.equal(padded.indptr[5:] - padded.indptr[4:-1], torch.ones(4, dtype=torch.int32))
    assert (padded.indices[layout.indices.numel() :] == layout.indices[0]).all()
    assert (padded.last_page_len[4:] == 1).all()
    assert torch.equal(padded.qo_indptr, torch.arange(9, dtype=torch.int32))
    q_padded = torch.cat([batch.q, torch.randn(4, *batch.q.shape[1:])])
    cache = batch.kv_caches[0]
    write_kv(cache, slots_to_k_rows(batch.metadata.slot_mapping, 4), batch.k, batch.v)
    out = attend_via_layout(q_padded, cache, padded, batch.scale)
    torch.testing.assert_close(out[:4], batch.expected())
    assert pad_decode_layout(layout, 4) is layout
    with pytest.raises(ValueError, match="batch_size"):
        pad_decode_layout(layout, 3)


def test_padded_writes_leave_the_cache_as_the_real_writes_do() -> None:
    batch = make_paged_batch(BATCHES["decode"], block_size=4, seed=4)
    rows = slots_to_k_rows(batch.metadata.slot_mapping, 4)
    expected = batch.kv_caches[0].clone()
    write_kv(expected, rows, batch.k, batch.v)
    padded_rows, src = padded_write_rows(rows, 7)
    assert padded_rows.shape == src.shape == (7,)
    # Padded rows carry different (garbage) K/V in the graph; the gather by `src` replaces them with row 0's.
    k = torch.cat([batch.k, 100 + torch.randn(3, *batch.k.shape[1:])])
    v = torch.cat([batch.v, 100 + torch.randn(3, *batch.v.shape[1:])])
    cache = batch.kv_caches[0].clone()
    write_kv(cache, padded_rows, k.index_select(0, src), v.index_select(0, src))
    assert torch.equal(cache, expected)
