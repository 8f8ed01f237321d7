"""StepForward's choice per step (CUDA-graph replay at a padded size, or eager) and when the engine captures graphs at
all, on CPU: a fake set of graphs stands in for CudaGraphRunner (its replay itself is tested in tests/gpu)."""

from __future__ import annotations

import pytest
import torch

from engine import LLM, SamplingParams
from engine.config import ModelConfig
from engine.cuda_graph_runner import StepForward, build_step_forward, cuda_graphs_disabled_reason
from engine.engine_config import CacheConfig, EngineConfig, SchedulerConfig, SpeculativeConfig
from kernels.attention import selector
from kernels.attention.base import AttentionMetadata
from kernels.attention.torch_paged import TorchPagedAttention, allocate_kv_caches
from model_factory import TINY_CONFIG, make_tiny_model_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_MODEL_LEN = 64


def step_metadata(query_lens: list[int], seq_lens: list[int]) -> AttentionMetadata:
    starts = [0]
    for n in query_lens:
        starts.append(starts[-1] + n)
    return AttentionMetadata(
        query_start_loc=torch.tensor(starts, dtype=torch.int32),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32),
        query_lens_cpu=tuple(query_lens),
        seq_lens_cpu=tuple(seq_lens),
        slot_mapping=torch.zeros(starts[-1], dtype=torch.int64),
        block_tables=torch.zeros(len(query_lens), 4, dtype=torch.int32),
    )


class FakeGraphs:
    """Duck-types CudaGraphRunner for StepForward: records each replay, then runs `run_rows` on the real rows."""

    def __init__(self, capture_sizes: list[int], max_model_len: int = MAX_MODEL_LEN, run_rows=None) -> None:
        self.capture_sizes = capture_sizes
        self.max_model_len = max_model_len
        self.replays: list[tuple[int, int]] = []  # (padded batch size, sequences)
        self._run_rows = run_rows

    def replay(self, batch_size, input_ids, positions, metadata) -> torch.Tensor:
        self.replays.append((batch_size, metadata.num_seqs))
        if self._run_rows is not None:
            return self._run_rows(input_ids, positions, metadata)
        return torch.full((metadata.num_seqs, 2), float(batch_size))


class RecordingEager:
    """A model and an attention backend that record what the eager path did."""

    def __init__(self) -> None:
        self.planned: list[AttentionMetadata] = []
        self.num_forwards = 0

    def plan(self, metadata: AttentionMetadata) -> None:
        self.planned.append(metadata)

    def __call__(self, input_ids, positions, attn) -> torch.Tensor:
        assert attn is self
        self.num_forwards += 1
        return torch.zeros(input_ids.shape[0], 2)


@pytest.mark.parametrize(
    "query_lens,seq_lens,padded",
    [
        ([1], [5], 1),
        ([1, 1, 1], [5, 9, 64], 4),  # a context of exactly max_model_len still fits
        ([1] * 5, [3] * 5, 8),
        ([1] * 8, [3] * 8, 8),
    ],
)
def test_decode_steps_replay_at_the_smallest_captured_size_that_holds_them(query_lens, seq_lens, padded) -> None:
    eager = RecordingEager()
    graphs = FakeGraphs([1, 2, 4, 8])
    forward = StepForward(eager, eager, graphs)
    metadata = step_metadata(query_lens, seq_lens)
    hidden = forward(torch.zeros(len(query_lens), dtype=torch.int64), torch.zeros(len(query_lens)), metadata)
    assert graphs.replays == [(padded, len(query_lens))]
    assert hidden.shape == (len(query_lens), 2) and hidden[0, 0] == padded
    assert eager.planned == [] and eager.num_forwards == 0  # the graph's own plan, no eager plan
    assert (forward.num_graph_steps, forward.num_eager_steps) == (1, 0)


@pytest.mark.parametrize(
    "query_lens,seq_lens",
    [
        ([7], [7]),  # prefill
        ([1, 16, 1], [20, 40, 3]),  # decode rows mixed with a prefill chunk
        ([3, 1], [30, 12]),  # speculative verify rows (1 + k drafts)
        ([1] * 9, [4] * 9),  # more sequences than the largest captured size
        ([1, 1], [10, MAX_MODEL_LEN + 1]),  # a context past the graphs' max_model_len
    ],
)
def test_other_steps_run_eagerly(query_lens, seq_lens) -> None:
    eager = RecordingEager()
    graphs = FakeGraphs([1, 2, 4, 8])
    forward = StepForward(eager, eager, graphs)
    metadata = step_metadata(query_lens, seq_lens)
    hidden = forward(torch.zeros(sum(query_lens), dtype=torch.int64), torch.zeros(sum(query_lens)), metadata)
    assert graphs.replays == []
    assert eager.planned == [metadata] and eager.num_forwards == 1 and hidden.shape[0] == sum(query_lens)
    assert (forward.num_graph_steps, forward.num_eager_steps) == (0, 1)


def test_without_graphs_every_step_is_eager() -> None:
    eager = RecordingEager()
    forward = StepForward(eager, eager)
    for query_lens in ([1], [1, 1, 1], [5]):
        forward(torch.zeros(sum(query_lens), dtype=torch.int64), torch.zeros(sum(query_lens)),
                step_metadata(query_lens, [8] * len(query_lens)))
    assert eager.num_forwards == 3 and forward.num_graph_steps == 0


# ---- when graphs are captured at all ---------------------------------------------------------------------------


class GraphCapableAttention:
    """Has the two methods CudaGraphRunner needs (the GraphDecodeBackend protocol), as FlashInfer's backend."""

    def make_graph_decode_state(self, batch_size, max_pages): ...

    def plan_graph_decode(self, state, metadata): ...


def engine_config(device: str = "cuda", dtype: torch.dtype = torch.bfloat16, **fields) -> EngineConfig:
    model_config = ModelConfig.from_dict({**TINY_CONFIG, "architectures": ["Glm4MoeForCausalLM"]})
    return EngineConfig(model="unused", model_config=model_config, dtype=dtype, device=torch.device(device),
                        cache=CacheConfig(), scheduler=SchedulerConfig(max_model_len=MAX_MODEL_LEN), **fields)


def torch_backend() -> TorchPagedAttention:
    return TorchPagedAttention(4, 2, 16, 0.25, allocate_kv_caches(1, 4, 16, 2, 16, torch.float32, "cpu"))


@pytest.mark.parametrize(
    "config,attn,world_size,reason",
    [
        (engine_config("cpu", torch.float32), GraphCapableAttention(), 1, "CUDA graphs need CUDA"),
        (engine_config(enforce_eager=True), GraphCapableAttention(), 1, "enforce_eager"),
        (engine_config(), GraphCapableAttention(), 2, "tensor_parallel_size=2"),
        (engine_config(speculative=SpeculativeConfig(num_speculative_tokens=2)), GraphCapableAttention(), 1,
         "speculative decoding"),
        (engine_config(), torch_backend(), 1, "TorchPagedAttention"),
        (engine_config(dtype=torch.float16), GraphCapableAttention(), 1, "bfloat16 only"),
    ],
    ids=["cpu", "enforce_eager", "tensor_parallel", "speculative", "torch_backend", "float16"],
)
def test_what_rules_graphs_out(config, attn, world_size, reason) -> None:
    assert reason in cuda_graphs_disabled_reason(config, attn, world_size)


def test_cuda_bf16_with_a_graph_capable_backend_captures() -> None:
    assert cuda_graphs_disabled_reason(engine_config(), GraphCapableAttention(), 1) is None


def test_build_on_cpu_gives_an_eager_forward() -> None:
    forward = build_step_forward(torch.nn.Identity(), torch_backend(), engine_config("cpu", torch.float32))
    assert forward.graphs is None


# ---- the options -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields,match",
    [
        (dict(attention_backend="flash"), "attention_backend must be one of"),
        (dict(attention_backend=None), "attention_backend must be one of"),
        (dict(enforce_eager="yes"), "enforce_eager must be a bool"),
    ],
)
def test_engine_config_names_the_bad_field(fields, match) -> None:
    with pytest.raises(ValueError, match=match):
        engine_config("cpu", torch.float32, **fields)


def test_flashinfer_forced_where_it_cannot_run_is_refused_at_configuration(monkeypatch) -> None:
    with pytest.raises(ValueError, match="attention_backend='flashinfer' needs a CUDA device"):
        engine_config("cpu", torch.float32, attention_backend="flashinfer")
    monkeypatch.setattr(selector, "flashinfer_import_error", lambda: "ModuleNotFoundError: No module named 'x'")
    with pytest.raises(ValueError, match="attention_backend='flashinfer' but flashinfer does not import"):
        engine_config(attention_backend="flashinfer")
    monkeypatch.setattr(selector, "flashinfer_import_error", lambda: None)
    assert engine_config(attention_backend="flashinfer").attention_backend == "flashinfer"
    assert engine_config("cpu", torch.float32, attention_backend="torch").attention_backend == "torch"


# ---- the engine with graphs (faked) -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_graphs"), seed=5)


def test_llm_refuses_flashinfer_on_cpu_before_loading(model_dir) -> None:
    with pytest.raises(ValueError, match="needs a CUDA device"):
        LLM(model=model_dir, device="cpu", attention_backend="flashinfer")


def generate(llm: LLM) -> list[list[int]]:
    prompts = [{"prompt_token_ids": [4 + (7 * i + j) % 900 for j in range(3 + 5 * i)]} for i in range(7)]
    # token 0 never sampled: a 0 among a replay's inputs can only be an in-flight token left unfilled
    params = [SamplingParams(temperature=0, max_tokens=3 + 2 * i, ignore_eos=True, logit_bias={0: -100.0})
              for i in range(7)]
    return [out.outputs[0].token_ids for out in llm.generate(prompts, params, use_tqdm=False)]


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_engine_decode_steps_go_through_the_graphs_with_the_same_tokens(model_dir, async_scheduling) -> None:
    """Decode steps of 7 shrinking to 1 requests replay at 8, 4, 2, 1; prefill steps stay eager; the tokens equal
    an engine without graphs (with async scheduling, the in-flight tokens reach the replayed inputs)."""
    kwargs = dict(model=model_dir, dtype=torch.float32, device="cpu", max_model_len=128, num_blocks_override=64,
                  async_scheduling=async_scheduling)
    expected = generate(LLM(**kwargs))
    llm = LLM(**kwargs)
    runner = llm.engine.model_runner
    assert runner.step_forward.graphs is None and isinstance(runner.attn, TorchPagedAttention)

    def run_rows(input_ids, positions, metadata):  # stands in for a replay: the model on the real rows
        assert input_ids.shape == (metadata.num_seqs,) and (input_ids > 0).all(), "an in-flight token was not filled"
        runner.attn.plan(metadata)
        return runner.model(input_ids, positions, runner.attn)

    graphs = FakeGraphs([1, 2, 4, 8], max_model_len=128, run_rows=run_rows)
    runner.step_forward = StepForward(runner.model, runner.attn, graphs)
    assert generate(llm) == expected
    assert {size for size, _ in graphs.replays} == {8, 4, 2, 1}
    assert all(size == min(s for s in (1, 2, 4, 8) if s >= n) for size, n in graphs.replays)
    assert runner.step_forward.num_eager_steps >= 1  # the prefill


def test_llm_passes_the_options_to_the_engine_config(model_dir) -> None:
    llm = LLM(model=model_dir, device="cpu", max_model_len=64, num_blocks_override=8, attention_backend="torch",
              enforce_eager=True)
    assert (llm.config.attention_backend, llm.config.enforce_eager) == ("torch", True)
    assert isinstance(llm.engine.model_runner.attn, TorchPagedAttention)
