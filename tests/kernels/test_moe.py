"""The sync-free grouped-GEMM expert path (used on CUDA) and the host-routed small-batch CPU path against the looped
reference, run here on CPU."""

import pytest
import torch

from kernels.moe import fused_experts, grouped_experts, host_routed_experts, looped_experts


def naive(x, w13, w2, ids, weights):
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for i in range(ids.shape[1]):
            gate, up = (w13[ids[t, i]] @ x[t]).chunk(2)
            out[t] += weights[t, i] * (w2[ids[t, i]] @ (torch.nn.functional.silu(gate) * up))
    return out


@pytest.mark.parametrize("num_tokens, experts, top_k", [(1, 8, 2), (7, 8, 3), (33, 16, 4), (64, 4, 1)])
def test_both_paths_equal_the_per_token_definition(num_tokens, experts, top_k):
    gen = torch.Generator().manual_seed(num_tokens)
    hidden, inter = 32, 16
    x = torch.randn(num_tokens, hidden, generator=gen)
    w13 = torch.randn(experts, 2 * inter, hidden, generator=gen) * 0.2
    w2 = torch.randn(experts, hidden, inter, generator=gen) * 0.2
    ids = torch.stack([torch.randperm(experts, generator=gen)[:top_k] for _ in range(num_tokens)])
    weights = torch.rand(num_tokens, top_k, generator=gen)
    ref = naive(x, w13, w2, ids, weights)
    for impl in (looped_experts, grouped_experts, host_routed_experts, fused_experts):
        assert torch.allclose(impl(x, w13, w2, ids, weights), ref, atol=1e-5), impl.__name__


def test_cpu_dispatch_matches_the_loop_in_inference_and_keeps_autograd():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 32, generator=gen)
    w13, w2 = torch.randn(8, 32, 32, generator=gen) * 0.2, torch.randn(8, 32, 16, generator=gen) * 0.2
    ids = torch.stack([torch.randperm(8, generator=gen)[:2] for _ in range(40)])
    weights = torch.rand(40, 2, generator=gen)
    with torch.no_grad():  # small inference batch: the grouped path, the loop's result to the last bit here
        torch.testing.assert_close(fused_experts(x, w13, w2, ids, weights), looped_experts(x, w13, w2, ids, weights),
                                   atol=1e-6, rtol=1e-6)
    assert fused_experts(x.requires_grad_(), w13, w2, ids, weights).requires_grad


def test_unused_experts_and_gradients():
    x = torch.randn(5, 16, requires_grad=True)
    w13 = torch.randn(6, 8, 16, requires_grad=True)
    w2 = torch.randn(6, 16, 4, requires_grad=True)
    ids = torch.tensor([[0, 5]] * 5)  # experts 1..4 receive nothing
    out = fused_experts(x, w13, w2, ids, torch.ones(5, 2))
    out.sum().backward()
    assert w13.grad[1:5].abs().sum() == 0 and w13.grad[0].abs().sum() > 0


@pytest.mark.parametrize("impl", [looped_experts, grouped_experts, host_routed_experts])
def test_expert_parallel_halves_sum_to_the_whole(impl):
    """Expert parallelism: each rank holds half the experts and marks the others' assignments with id E_local; the
    two partial outputs sum to the single-rank result (the uninitialised rows of foreign assignments never leak)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(9, 32, generator=gen)
    w13, w2 = torch.randn(8, 32, 32, generator=gen) * 0.2, torch.randn(8, 32, 16, generator=gen) * 0.2
    ids = torch.stack([torch.randperm(8, generator=gen)[:3] for _ in range(9)])
    weights = torch.rand(9, 3, generator=gen)
    with torch.no_grad():
        parts = []
        for start in (0, 4):
            local = ids - start
            local = local.masked_fill((local < 0) | (local >= 4), 4)
            parts.append(impl(x, w13[start:start + 4], w2[start:start + 4], local, weights, has_foreign=True)
                         if impl is grouped_experts else impl(x, w13[start:start + 4], w2[start:start + 4], local,
                                                               weights))
        torch.testing.assert_close(parts[0] + parts[1], naive(x, w13, w2, ids, weights), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_tokens, top_k", [(1, 1), (1, 2), (2, 2), (1, 4), (3, 2), (6, 3)])
def test_host_routed_path_equals_the_loop_to_the_last_bit(num_tokens, top_k):
    """Same per-expert products, same accumulation order; shared experts between tokens take the index path."""
    gen = torch.Generator().manual_seed(10 * num_tokens + top_k)
    x = torch.randn(num_tokens, 64, generator=gen)
    w13, w2 = torch.randn(4, 48, 64, generator=gen) * 0.2, torch.randn(4, 64, 24, generator=gen) * 0.2
    ids = torch.stack([torch.randperm(4, generator=gen)[:top_k] for _ in range(num_tokens)])
    weights = torch.rand(num_tokens, top_k, generator=gen)
    with torch.no_grad():
        expected = looped_experts(x, w13, w2, ids, weights)
        assert torch.equal(host_routed_experts(x, w13, w2, ids, weights), expected)
        if ids.numel() <= 4:  # the CPU dispatch takes it for decode-sized batches
            assert torch.equal(fused_experts(x, w13, w2, ids, weights), expected)
