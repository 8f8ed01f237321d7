"""CUDA-graph decode: replays (re-planned each time, padded batches) equal eager FlashInfer and the torch oracle."""

from __future__ import annotations

import pytest
import torch
from graph_testing import PagedSequences, ToyAttentionModel
from paged_testing import make_paged_batch

from engine.cuda_graph_runner import CudaGraphRunner
from kernels.attention.flashinfer_paged import FlashInferPagedAttention
from kernels.attention.torch_paged import TorchPagedAttention, allocate_kv_caches

BF16 = dict(atol=2e-2, rtol=2e-2)
NH, NKV, D = 32, 4, 128


def test_attention_graph_replays_follow_new_plans() -> None:
    """One graph captured at 8 rows, replayed for batches of 1..8 decode sequences of changing lengths."""
    num_blocks, block_size, capacity = 160, 16, 8
    graph_caches = allocate_kv_caches(2, num_blocks, block_size, NKV, D, torch.bfloat16, "cuda")
    eager_caches = allocate_kv_caches(2, num_blocks, block_size, NKV, D, torch.bfloat16, "cuda")
    graphed = FlashInferPagedAttention(NH, NKV, D, D**-0.5, graph_caches)
    eager = FlashInferPagedAttention(NH, NKV, D, D**-0.5, eager_caches)
    state = graphed.make_graph_decode_state(capacity, max_pages=num_blocks + capacity)
    q = torch.zeros(capacity, NH, D, dtype=torch.bfloat16, device="cuda")
    k = torch.zeros(capacity, NKV, D, dtype=torch.bfloat16, device="cuda")
    v = torch.zeros_like(k)

    def attend() -> list[torch.Tensor]:
        return [graphed.forward(layer, q, k, v) for layer in (0, 1)]

    first = make_paged_batch([(1, 5)], NH, NKV, D, block_size, torch.bfloat16, 2, 0, "cuda", num_blocks - 1)
    graphed.plan_graph_decode(state, first.metadata)
    attend()  # warm-up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = attend()
    for seed, num_seqs in enumerate((5, 1, 8, 3, 7)):
        lens = [(1, 1 + (37 * (i + seed)) % 200) for i in range(num_seqs)]
        needed = sum(-(-s // block_size) for _, s in lens)
        batch = make_paged_batch(lens, NH, NKV, D, block_size, torch.bfloat16, 2, seed + 1, "cuda", num_blocks - needed)
        for cache_g, cache_e, src in zip(graph_caches, eager_caches, batch.kv_caches):
            cache_g.copy_(src)
            cache_e.copy_(src)
        graphed.plan_graph_decode(state, batch.metadata)
        q.normal_()  # padded rows hold garbage
        k.normal_()
        v.normal_()
        q[:num_seqs], k[:num_seqs], v[:num_seqs] = batch.q, batch.k, batch.v
        graph.replay()
        eager.plan(batch.metadata)
        for layer in (0, 1):
            expected = eager.forward(layer, batch.q, batch.k, batch.v)
            torch.testing.assert_close(outs[layer][:num_seqs], expected, **BF16)
            torch.testing.assert_close(outs[layer][:num_seqs].float(), batch.expected(layer), **BF16)
            assert torch.equal(graph_caches[layer], eager_caches[layer]), "padding rows disturbed the cache"


@pytest.fixture
def toy():
    torch.manual_seed(0)
    model = ToyAttentionModel(vocab=500, hidden=256, num_heads=NH, num_kv_heads=NKV, head_dim=D, num_layers=3,
                              max_positions=256).to("cuda", torch.bfloat16)
    return model


def test_runner_matches_eager_flashinfer_and_torch(toy) -> None:
    block_size, num_seqs = 16, 13
    seqs = PagedSequences(num_seqs, max_len=200, block_size=block_size)
    caches = {name: allocate_kv_caches(3, seqs.num_blocks, block_size, NKV, D, torch.bfloat16, "cuda")
              for name in ("graph", "flashinfer", "torch")}
    graph_attn = FlashInferPagedAttention(NH, NKV, D, D**-0.5, caches["graph"])
    eager = {"flashinfer": FlashInferPagedAttention(NH, NKV, D, D**-0.5, caches["flashinfer"]),
             "torch": TorchPagedAttention(NH, NKV, D, D**-0.5, caches["torch"])}
    runner = CudaGraphRunner(toy, graph_attn, max_batch_size=16, max_model_len=256)
    runner.capture()
    assert runner.capture_sizes == [1, 2, 4, 8, 16]
    gen = torch.Generator().manual_seed(1)
    prompt_lens = [int(n) for n in torch.randint(1, 120, (num_seqs,), generator=gen)]
    all_seqs = list(range(num_seqs))
    positions = seqs.positions(all_seqs, prompt_lens)
    metadata = seqs.step(all_seqs, prompt_lens)
    ids = torch.randint(0, 500, (sum(prompt_lens),), generator=gen).cuda()
    with torch.inference_mode():
        for name, attn in [("graph", graph_attn), *eager.items()]:  # same prefill into all three caches
            attn.plan(metadata)
            toy(ids, positions, attn)
        for step, batch in enumerate(([0], [3, 1, 2], all_seqs[:8], all_seqs, [12, 5, 7, 9, 11], [4])):
            positions = seqs.positions(batch, [1] * len(batch))
            metadata = seqs.step(batch, [1] * len(batch))
            ids = torch.randint(0, 500, (len(batch),), generator=gen).cuda()
            assert runner.can_run(metadata)
            hidden = runner.run(ids, positions, metadata).clone()
            for name, attn in eager.items():
                attn.plan(metadata)
                torch.testing.assert_close(hidden, toy(ids, positions, attn), **BF16, msg=f"step {step} vs {name}")
        for name in eager:
            for mine, theirs in zip(caches["graph"], caches[name]):
                torch.testing.assert_close(mine[1:], theirs[1:], **BF16)  # block 0 holds the capture's dummy K/V
    prefill = seqs.step([0], [2])
    assert not runner.can_run(prefill)
    with pytest.raises(ValueError, match="can_run"):
        runner.run(ids[:1], positions[:1], prefill)
