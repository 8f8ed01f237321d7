"""The whole engine on CUDA (tiny random GLM-4.5 checkpoint, bf16): `LLM` with the FlashInfer backend and decode under
CUDA graphs gives the greedy tokens of the PyTorch paged backend run eagerly.

bf16 attention kernels round differently, so two backends may part where the reference's best two tokens are
within NEAR_TIE nats of each other; a prompt's tokens are compared up to such a point, and any divergence where the
reference's choice was clear fails.
"""

from __future__ import annotations

import pytest
import torch

from engine import LLM, SamplingParams
from kernels.attention.flashinfer_paged import FlashInferPagedAttention
from kernels.attention.torch_paged import TorchPagedAttention
from model_factory import make_tiny_model_dir

# head_dim 128 as GLM-4.5 (FlashInfer JIT-compiles one kernel set per head_dim): wide heads, all else tiny.
OVERRIDES = dict(hidden_size=128, num_attention_heads=8, num_key_value_heads=2, head_dim=128)
NUM_PROMPTS = 12
NEAR_TIE = 0.1  # nats between the reference's top two log-probabilities


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_engine_cuda"), seed=7, **OVERRIDES)


def run(model_dir, **kwargs):
    """-> (outputs, the engine's ModelRunner); 12 greedy requests whose lengths differ, so the decode batch shrinks
    through several captured sizes (16, 8, 4, 2, 1)."""
    llm = LLM(model=model_dir, dtype="bfloat16", device="cuda", max_model_len=256, max_num_seqs=16,
              kv_cache_memory=64 << 20, **kwargs)
    gen = torch.Generator().manual_seed(0)
    prompts = [{"prompt_token_ids": torch.randint(4, 1000, (int(n),), generator=gen).tolist()}
               for n in torch.randint(3, 120, (NUM_PROMPTS,), generator=gen)]
    params = [SamplingParams(temperature=0, max_tokens=4 + 3 * i, ignore_eos=True, logprobs=2)
              for i in range(NUM_PROMPTS)]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    runner = llm.engine.model_runner
    llm.shutdown()
    return outputs, runner


def assert_same_greedy_tokens(got, reference, label: str) -> None:
    for i, (mine, theirs) in enumerate(zip(got, reference)):
        a, b = mine.outputs[0].token_ids, theirs.outputs[0].token_ids
        assert len(a) == len(b) == 4 + 3 * i
        split = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if split is None:
            continue
        top = sorted((lp.logprob for lp in theirs.outputs[0].logprobs[split].values()), reverse=True)
        assert top[0] - top[1] < NEAR_TIE, (
            f"{label}, prompt {i}: token {split} is {a[split]}, the reference's {b[split]} led by "
            f"{top[0] - top[1]:.3f} nats")


@pytest.fixture(scope="module")
def reference(model_dir):
    outputs, runner = run(model_dir, attention_backend="torch", enforce_eager=True)
    assert isinstance(runner.attn, TorchPagedAttention) and runner.step_forward.graphs is None
    return outputs


@pytest.mark.parametrize("async_scheduling", [True, False])
def test_flashinfer_with_cuda_graphs_gives_the_torch_backends_tokens(model_dir, reference, async_scheduling) -> None:
    outputs, runner = run(model_dir, attention_backend="auto", async_scheduling=async_scheduling)
    assert isinstance(runner.attn, FlashInferPagedAttention)
    graphs = runner.step_forward.graphs
    assert graphs is not None and graphs.capture_sizes == [1, 2, 4, 8, 16]
    assert runner.step_forward.num_graph_steps >= 20, "decode steps did not replay the captured graphs"
    assert runner.step_forward.num_eager_steps >= 1  # the prefill
    assert_same_greedy_tokens(outputs, reference, f"graphs, async_scheduling={async_scheduling}")


def test_enforce_eager_flashinfer_gives_the_torch_backends_tokens(model_dir, reference) -> None:
    outputs, runner = run(model_dir, attention_backend="flashinfer", enforce_eager=True)
    assert isinstance(runner.attn, FlashInferPagedAttention) and runner.step_forward.graphs is None
    assert runner.step_forward.num_graph_steps == 0
    assert_same_greedy_tokens(outputs, reference, "FlashInfer eager")
