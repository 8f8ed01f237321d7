"""FlashInferPagedAttention against TorchPagedAttention (the oracle) on the same bf16 caches and metadata."""

from __future__ import annotations

import pytest
import torch
from paged_testing import make_paged_batch

from kernels.attention.flashinfer_paged import FlashInferPagedAttention
from kernels.attention.torch_paged import TorchPagedAttention

BATCHES = {
    "decode": [(1, 1), (1, 15), (1, 16), (1, 17), (1, 100), (1, 513), (1, 2)],
    "prefill": [(200, 200), (37, 37), (1, 1)],
    "chunked": [(64, 300), (128, 128 + 16), (17, 40)],
    "mixed": [(1, 90), (64, 200), (4, 33), (100, 100), (1, 2), (9, 9)],
    "verify": [(4, 50), (4, 4), (3, 129), (2, 16), (5, 300)],
}
HEADS = [(16, 2, 128), (96, 8, 128), (8, 8, 128)]  # group 8, GLM-4.5-Air's 12, MHA
BF16 = dict(atol=2e-2, rtol=2e-2)


def run_both(lens, num_heads, num_kv_heads, head_dim, seed=0, **fi_kwargs):
    batch = make_paged_batch(lens, num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
                             block_size=16, dtype=torch.bfloat16, num_layers=2, seed=seed, device="cuda")
    torch_caches = [c.clone() for c in batch.kv_caches]
    oracle = TorchPagedAttention(num_heads, num_kv_heads, head_dim, batch.scale, torch_caches)
    backend = FlashInferPagedAttention(num_heads, num_kv_heads, head_dim, batch.scale, batch.kv_caches, **fi_kwargs)
    oracle.plan(batch.metadata)
    backend.plan(batch.metadata)
    outs = []
    for layer in (1, 0):
        expected = oracle.forward(layer, batch.q, batch.k, batch.v)
        got = backend.forward(layer, batch.q, batch.k, batch.v)
        outs.append((got, expected))
    return batch, outs, torch_caches


@pytest.mark.parametrize("heads", HEADS, ids=lambda h: f"{h[0]}x{h[1]}x{h[2]}")
@pytest.mark.parametrize("name", sorted(BATCHES))
def test_flashinfer_matches_torch(name, heads) -> None:
    batch, outs, torch_caches = run_both(BATCHES[name], *heads)
    for got, expected in outs:
        assert got.shape == batch.q.shape and got.dtype == torch.bfloat16
        torch.testing.assert_close(got, expected, **BF16)
    torch.testing.assert_close(outs[1][0].float(), batch.expected(0), **BF16)
    for mine, oracle in zip(batch.kv_caches, torch_caches):
        assert torch.equal(mine, oracle)  # same slots, same values


@pytest.mark.parametrize("tensor_cores", [True, False])
def test_decode_with_and_without_tensor_cores(tensor_cores) -> None:
    batch, outs, _ = run_both(BATCHES["decode"], 32, 4, 128, seed=1, decode_use_tensor_cores=tensor_cores)
    for got, expected in outs:
        torch.testing.assert_close(got, expected, **BF16)


def test_fp32_cache_is_rejected() -> None:
    caches = [torch.zeros(4, 2, 16, 2, 64, device="cuda")]
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        FlashInferPagedAttention(8, 2, 64, 0.125, caches)


def test_one_backend_replans_across_step_kinds() -> None:
    """One backend (one set of wrappers) re-planned for prefill, decode, mixed, decode, verify steps in turn."""
    num_blocks, block_size = 64, 16
    shared = [torch.zeros(num_blocks, 2, block_size, 2, 128, dtype=torch.bfloat16, device="cuda") for _ in range(2)]
    backend = FlashInferPagedAttention(16, 2, 128, 128**-0.5, shared)
    for seed, name in enumerate(("prefill", "decode", "mixed", "decode", "verify")):
        lens = BATCHES[name]
        needed = sum(-(-s // block_size) for _, s in lens)
        batch = make_paged_batch(lens, num_heads=16, num_kv_heads=2, head_dim=128, block_size=block_size,
                                 dtype=torch.bfloat16, num_layers=2, seed=seed, device="cuda",
                                 spare_blocks=num_blocks - needed)
        for dst, src in zip(shared, batch.kv_caches):
            dst.copy_(src)
        backend.plan(batch.metadata)
        for layer in (0, 1):
            got = backend.forward(layer, batch.q, batch.k, batch.v)
            torch.testing.assert_close(got.float(), batch.expected(layer), **BF16)
