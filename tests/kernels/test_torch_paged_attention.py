"""The paged backends that run on CPU, against the dense per-sequence reference (`causal_attention`) on random paged
batches: TorchPagedAttention (plain PyTorch) and CpuPagedAttention (its decode/verify rows in the C++ kernel)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from paged_testing import cache_rows_at_slots, make_paged_batch

from kernels.attention.base import AttentionMetadata
from kernels.attention.cpu_paged import CpuPagedAttention
from kernels.attention.dense import DenseAttention
from kernels.attention.torch_paged import (
    TorchPagedAttention,
    allocate_kv_caches,
    kv_cache_bytes_per_block,
    kv_cache_shape,
)

TOLERANCE = {torch.float32: dict(atol=2e-5, rtol=1e-5), torch.bfloat16: dict(atol=3e-2, rtol=3e-2)}
BACKENDS = pytest.mark.parametrize("backend_cls", [TorchPagedAttention, CpuPagedAttention], ids=["torch", "cpu"])


def run_backend(batch, backend_cls=TorchPagedAttention, layer: int = 0) -> torch.Tensor:
    nh, d = batch.q.shape[1:]
    nkv = batch.k.shape[1]
    backend = backend_cls(nh, nkv, d, batch.scale, batch.kv_caches)
    backend.plan(batch.metadata)
    return backend.forward(layer, batch.q, batch.k, batch.v)


def check(lens, dtype=torch.float32, backend_cls=TorchPagedAttention, **kwargs) -> None:
    batch = make_paged_batch(lens, dtype=dtype, **kwargs)
    out = run_backend(batch, backend_cls)
    assert out.shape == batch.q.shape and out.dtype == dtype
    torch.testing.assert_close(out.float(), batch.expected(), **TOLERANCE[dtype])
    k, v = cache_rows_at_slots(batch.kv_caches[0], batch.metadata.slot_mapping)
    exp_k, exp_v = batch.expected_cache_rows()
    assert torch.equal(k, exp_k) and torch.equal(v, exp_v)


DECODE = [(1, 1), (1, 4), (1, 5), (1, 13), (1, 8), (1, 30)]  # block boundaries at multiples of 4
PREFILL = [(7, 7)]
PREFILLS = [(9, 9), (12, 12), (10, 10)]
CHUNKED = [(11, 20), (16, 16 + 9)]
VERIFY = [(4, 9), (3, 17), (4, 4), (2, 6)]
MIXED = [(1, 9), (12, 30), (4, 11), (23, 23), (1, 2), (9, 9)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "lens",
    [DECODE, PREFILL, PREFILLS, CHUNKED, VERIFY, MIXED, [(1, 40)], [(40, 40), (1, 3)], [(8, 20), (9, 20)]],
    ids=["decode", "prefill", "prefills", "chunked", "verify", "mixed", "decode1", "prefill+decode", "q8q9"],
)
@BACKENDS
def test_matches_reference(lens, dtype, backend_cls) -> None:
    check(lens, dtype, backend_cls)


# More than 4 KV heads: folded groups take the SDPA path instead of the all-pairs bmm.
@pytest.mark.parametrize("num_heads,num_kv_heads", [(4, 4), (4, 2), (8, 2), (8, 1), (12, 1), (24, 2), (8, 8), (16, 8)])
@BACKENDS
def test_gqa_ratios(num_heads, num_kv_heads, backend_cls) -> None:
    check(MIXED, backend_cls=backend_cls, num_heads=num_heads, num_kv_heads=num_kv_heads)


@pytest.mark.parametrize("block_size", [1, 3, 16])
@BACKENDS
def test_block_sizes(block_size, backend_cls) -> None:
    check(MIXED, backend_cls=backend_cls, block_size=block_size)


@BACKENDS
def test_extends_of_very_different_lengths_run_one_by_one_and_stay_exact(backend_cls) -> None:
    # Padding a 2-row chunk to a 40-row chunk would waste more than half: the plan splits them.
    check([(40, 60), (9, 9), (10, 70)], backend_cls=backend_cls)


def test_decodes_of_very_different_lengths_run_in_length_buckets_and_stay_exact() -> None:
    lens = [(1, n) for n in (3, 40, 7, 65, 2, 33, 64, 1, 17)] + [(3, 50), (2, 5)]
    check(lens)
    batch = make_paged_batch(lens, block_size=4)
    backend = TorchPagedAttention(4, 2, 16, batch.scale, batch.kv_caches)
    backend.plan(batch.metadata)
    groups = backend._plan.parts
    assert len(groups) > 2 and sorted(b for g in groups for b in g.dest_rows.tolist()) == list(range(14))
    starts = batch.metadata.query_start_loc.tolist()
    for group in groups:  # a bucket's shortest context has at least 3/4 of its longest's blocks (bounded padding)
        seqs = {max(b for b, start in enumerate(starts) if start <= row) for row in group.dest_rows.tolist()}
        blocks = [-(-lens[b][1] // 4) for b in seqs]
        assert group.max_seq_len == 4 * max(blocks) and 4 * min(blocks) >= 3 * max(blocks)
    torch.testing.assert_close(backend.forward(0, batch.q, batch.k, batch.v), batch.expected(),
                               **TOLERANCE[torch.float32])


@BACKENDS
def test_plan_is_reused_by_every_layer(backend_cls) -> None:
    batch = make_paged_batch(MIXED, num_layers=3, seed=3)
    backend = backend_cls(4, 2, 16, batch.scale, batch.kv_caches)
    backend.plan(batch.metadata)
    for layer in (2, 0, 1):
        torch.testing.assert_close(backend.forward(layer, batch.q, batch.k, batch.v), batch.expected(layer),
                                   **TOLERANCE[torch.float32])


@BACKENDS
def test_writes_only_the_new_slots(backend_cls) -> None:
    batch = make_paged_batch(MIXED, seed=5)
    before = batch.kv_caches[0].clone()
    run_backend(batch, backend_cls)
    after = batch.kv_caches[0]
    changed = (before != after).flatten(3).any(-1)  # [num_blocks, 2, block_size]
    block_size = after.shape[2]
    slots = batch.metadata.slot_mapping
    allowed = torch.zeros_like(changed)
    allowed[slots // block_size, :, slots % block_size] = True
    assert not (changed & ~allowed).any()


@BACKENDS
def test_decode_steps_continue_a_prefill(backend_cls) -> None:
    """Prefill through the cache, then decode token by token: each step equals attention over the whole history."""
    torch.manual_seed(0)
    nh, nkv, d, block_size, length = 4, 2, 8, 4, 11
    caches = allocate_kv_caches(1, 8, block_size, nkv, d, torch.float32, "cpu")
    table = torch.tensor([[5, 0, 7, 2]], dtype=torch.int32)
    q, k, v = torch.randn(length, nh, d), torch.randn(length, nkv, d), torch.randn(length, nkv, d)
    backend = backend_cls(nh, nkv, d, d**-0.5, caches)
    dense = DenseAttention(nh, nkv, d, d**-0.5)
    dense.plan(AttentionMetadata.for_prefill([length]))
    expected = dense.forward(0, q, k, v)
    prompt = 6
    got = [backend_step(backend, table, q, k, v, 0, prompt)]
    for pos in range(prompt, length):
        got.append(backend_step(backend, table, q, k, v, pos, pos + 1))
    torch.testing.assert_close(torch.cat(got), expected, atol=2e-5, rtol=1e-5)


def backend_step(backend, table, q, k, v, start: int, end: int) -> torch.Tensor:
    block_size = backend.block_size
    slots = [int(table[0, p // block_size]) * block_size + p % block_size for p in range(start, end)]
    backend.plan(AttentionMetadata(
        query_start_loc=torch.tensor([0, end - start], dtype=torch.int32),
        seq_lens=torch.tensor([end], dtype=torch.int32),
        query_lens_cpu=(end - start,),
        seq_lens_cpu=(end,),
        slot_mapping=torch.tensor(slots),
        block_tables=table,
    ))
    return backend.forward(0, q[start:end], k[start:end], v[start:end])


@settings(max_examples=25, deadline=None)
@given(
    lens=st.lists(
        st.tuples(st.integers(1, 12), st.integers(0, 20)).map(lambda t: (t[0], t[0] + t[1])), min_size=1, max_size=6
    ),
    group=st.sampled_from([1, 2, 3]),
    block_size=st.sampled_from([1, 2, 5]),
    seed=st.integers(0, 2**16),
)
@BACKENDS
def test_any_batch_matches_reference(lens, group, block_size, seed, backend_cls) -> None:
    check(lens, backend_cls=backend_cls, num_heads=2 * group, num_kv_heads=2, head_dim=8, block_size=block_size,
          seed=seed)


def test_kv_cache_allocation_and_size() -> None:
    caches = allocate_kv_caches(3, 10, 16, 2, 64, torch.bfloat16, "cpu")
    assert len(caches) == 3 and all(c.shape == (10, 2, 16, 2, 64) for c in caches)
    assert kv_cache_shape(10, 16, 2, 64) == (10, 2, 16, 2, 64)
    assert caches[0].data_ptr() != caches[1].data_ptr() and not caches[0].any()
    per_block = sum(c[0].numel() * c.element_size() for c in caches)
    assert kv_cache_bytes_per_block(3, 16, 2, 64, torch.bfloat16) == per_block == 3 * 2 * 16 * 2 * 64 * 2
    with pytest.raises(ValueError, match="num_blocks"):
        allocate_kv_caches(1, 0, 16, 2, 64, torch.float32, "cpu")


@pytest.mark.parametrize(
    "changes,field",
    [
        (dict(block_tables=None), "block_tables"),
        (dict(slot_mapping=None), "slot_mapping"),
        (dict(slot_mapping=torch.zeros(3, dtype=torch.int64)), "slot_mapping"),
        (dict(seq_lens_cpu=(1, 1)), r"seq_lens_cpu\[1\]"),
        (dict(seq_lens_cpu=(1, 100)), r"seq_lens_cpu\[1\]"),
        (dict(seq_lens_cpu=(1,)), "seq_lens_cpu"),
        (dict(block_tables=torch.zeros(1, 4, dtype=torch.int32)), "block_tables"),
    ],
)
@BACKENDS
def test_bad_metadata_names_the_field(changes, field, backend_cls) -> None:
    batch = make_paged_batch([(1, 5), (3, 9)])
    backend = backend_cls(4, 2, 16, batch.scale, batch.kv_caches)
    with pytest.raises(ValueError, match=field):
        backend.plan(dataclasses.replace(batch.metadata, **changes))


@BACKENDS
def test_misuse_raises(backend_cls) -> None:
    batch = make_paged_batch([(1, 5), (3, 9)])
    backend = backend_cls(4, 2, 16, batch.scale, batch.kv_caches)
    with pytest.raises(RuntimeError, match="plan"):
        backend.forward(0, batch.q, batch.k, batch.v)
    backend.plan(batch.metadata)
    with pytest.raises(ValueError, match="rows"):
        backend.forward(0, batch.q[:2], batch.k[:2], batch.v[:2])
    with pytest.raises(ValueError, match=r"kv_caches\[1\]"):
        backend_cls(4, 2, 16, 0.25, [batch.kv_caches[0], torch.zeros(3, 2, 4, 2, 8)])
    with pytest.raises(ValueError, match="kv_caches"):
        backend_cls(4, 2, 16, 0.25, [])
