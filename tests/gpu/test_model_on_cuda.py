"""The real GLM-4.5 model (tiny random checkpoint, bf16) on CUDA: FlashInfer equals the torch oracle, and decode
under CUDA graphs equals eager decode. Teacher-forced (same tokens for every path) so differences cannot compound.
"""

from __future__ import annotations

import pytest
import torch
from graph_testing import PagedSequences

from engine.cuda_graph_runner import CudaGraphRunner
from engine.loader import load_model
from kernels.attention.flashinfer_paged import FlashInferPagedAttention
from kernels.attention.torch_paged import TorchPagedAttention, allocate_kv_caches
from model_factory import make_tiny_model_dir

# head_dim 128 as GLM-4.5 (FlashInfer JIT-compiles one kernel set per head_dim): wide heads, all else tiny.
OVERRIDES = dict(hidden_size=128, num_attention_heads=8, num_key_value_heads=2, head_dim=128)
NUM_SEQS, MAX_LEN, BLOCK = 6, 96, 16


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = make_tiny_model_dir(tmp_path_factory.mktemp("tiny_cuda"), seed=3, **OVERRIDES)
    return load_model(path, dtype="bfloat16", device="cuda")


def backends(model, kinds):
    c = model.config
    out = {}
    for kind in kinds:
        caches = allocate_kv_caches(model.num_kv_layers, NUM_SEQS * (MAX_LEN // BLOCK) + 1, BLOCK,
                                    c.num_key_value_heads, c.head_dim, torch.bfloat16, "cuda")
        cls = TorchPagedAttention if kind == "torch" else FlashInferPagedAttention
        out[kind] = cls(c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.head_dim**-0.5, caches)
    return out


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def steps(gen):
    """(sequences, new tokens each): a ragged prefill, a mixed step, verify-like rows, then decode steps."""
    yield list(range(NUM_SEQS)), [int(n) for n in torch.randint(5, 40, (NUM_SEQS,), generator=gen)]
    yield [0, 1, 2], [1, 17, 4]
    yield [3, 4, 5], [4, 4, 3]
    for _ in range(4):
        yield list(range(NUM_SEQS)), [1] * NUM_SEQS


@torch.inference_mode()
def test_flashinfer_model_matches_torch_backend(model) -> None:
    attn = backends(model, ("torch", "flashinfer"))
    seqs = PagedSequences(NUM_SEQS, MAX_LEN, BLOCK, seed=1)
    gen = torch.Generator().manual_seed(0)
    for step, (batch, num_new) in enumerate(steps(gen)):
        positions = seqs.positions(batch, num_new)
        metadata = seqs.step(batch, num_new)
        ids = torch.randint(0, model.config.vocab_size, (sum(num_new),), generator=gen).cuda()
        logits = {}
        for kind, backend in attn.items():
            backend.plan(metadata)
            logits[kind] = model.compute_logits(model(ids, positions, backend))
        err = relative_error(logits["flashinfer"], logits["torch"])
        assert err < 3e-2, f"step {step}: relative logits error {err:.2e}"


@torch.inference_mode()
def test_model_decode_under_cuda_graphs_matches_eager(model) -> None:
    attn = backends(model, ("graph", "flashinfer"))
    runner = CudaGraphRunner(model, attn["graph"], max_batch_size=8, max_model_len=MAX_LEN)
    runner.capture()  # fails if the model's forward synchronises with the host (e.g. in the MoE)
    seqs = PagedSequences(NUM_SEQS, MAX_LEN, BLOCK, seed=2)
    gen = torch.Generator().manual_seed(5)
    for step, (batch, num_new) in enumerate(steps(gen)):
        positions = seqs.positions(batch, num_new)
        metadata = seqs.step(batch, num_new)
        ids = torch.randint(0, model.config.vocab_size, (sum(num_new),), generator=gen).cuda()
        attn["flashinfer"].plan(metadata)
        expected = model(ids, positions, attn["flashinfer"])
        if runner.can_run(metadata):
            hidden = runner.run(ids, positions, metadata)
        else:
            attn["graph"].plan(metadata)
            hidden = model(ids, positions, attn["graph"])
        err = relative_error(hidden, expected)
        assert err < 3e-2, f"step {step}: relative hidden error {err:.2e}"
