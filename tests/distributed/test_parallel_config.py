"""Pure pieces of tensor parallelism: the layout's splits, config validation, and the CLI flags."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
import torch

from engine.config import ModelConfig
from engine.distributed.executor import MultiprocExecutor
from engine.distributed.step_message import decode_step, encode_step
from engine.outputs import ScheduledRequest, SchedulerOutput
from engine.parallel.layout import ParallelLayout
from engine.sampling_params import SamplingParams
from engine.weight_map import checkpoint_weight_map
from model_factory import TINY_CONFIG
from server.cli import args_from_namespace, build_parser
from server.engine_builder import build_engine_config


def tiny_config(**overrides) -> ModelConfig:
    return ModelConfig.from_dict({**TINY_CONFIG, "model_type": "glm4_moe", **overrides})


def test_kv_heads_are_split_or_replicated():
    # 2 KV heads: 2 ranks hold one each; 4 ranks hold them twice over (ranks 0-1 head 0, ranks 2-3 head 1).
    assert [ParallelLayout(r, 2).kv_head_range(2) for r in range(2)] == [(0, 1), (1, 2)]
    assert [ParallelLayout(r, 4).kv_head_range(2) for r in range(4)] == [(0, 1), (0, 1), (1, 2), (1, 2)]
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        ParallelLayout(0, 3).kv_head_range(2)


def test_vocab_rows_pad_the_last_rank():
    assert [ParallelLayout(r, 2).vocab_range(999) for r in range(2)] == [(0, 500, 500), (500, 999, 500)]


def test_experts_are_placed_whole_or_sliced():
    assert ParallelLayout(1, 2, expert_parallel=True).expert_range(8) == (4, 8)
    assert ParallelLayout(1, 2, expert_parallel=True).moe_intermediate_range(32) == (0, 32)
    assert ParallelLayout(1, 2).expert_range(8) == (0, 8)
    assert ParallelLayout(1, 2).moe_intermediate_range(32) == (16, 32)


@pytest.mark.parametrize("world_size, expert_parallel, field", [
    (3, False, "num_attention_heads"),
    (8, False, "num_attention_heads"),
    (16, True, "num_attention_heads"),
])
def test_a_size_that_does_not_divide_names_the_dimension(world_size, expert_parallel, field):
    with pytest.raises(ValueError, match=field):
        ParallelLayout(0, world_size, expert_parallel).check(tiny_config())


def test_expert_parallel_needs_divisible_experts():
    with pytest.raises(ValueError, match="n_routed_experts"):
        ParallelLayout(0, 4, expert_parallel=True).check(tiny_config(n_routed_experts=6, n_group=1, topk_group=1))


def test_every_checkpoint_tensor_is_read_by_some_rank_exactly_once_when_sliced():
    """Over the ranks, the row slices of each sharded tensor tile it (no gap, no overlap), and each routed expert
    is read by exactly one rank under expert parallelism."""
    config = tiny_config()
    maps = [checkpoint_weight_map(config, layout=ParallelLayout(r, 2, True)) for r in range(2)]
    for name in maps[0]:
        targets = [m[name] for m in maps]
        if ".experts." in name:
            assert sum(t.on_this_rank for t in targets) == 1, name
        elif targets[0].shard is not None:
            spans = sorted((t.shard.start, t.shard.end) for t in targets)
            assert spans[0][0] == 0 and spans[-1][1] == targets[0].shard.full_size, name
            assert spans[0][1] == spans[1][0], name


def test_cli_flags_reach_the_engine_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**TINY_CONFIG, "model_type": "glm4_moe"}))
    ns = build_parser().parse_args(["--model", str(tmp_path), "--tensor-parallel-size", "2",
                                    "--enable-expert-parallel", "--device", "cpu"])
    args = args_from_namespace(ns)
    config = build_engine_config(args, ModelConfig.from_pretrained(tmp_path))
    assert config.parallel.tensor_parallel_size == 2 and config.parallel.enable_expert_parallel
    with pytest.raises(ValueError, match="num_attention_heads"):
        build_engine_config(args_from_namespace(build_parser().parse_args(
            ["--model", str(tmp_path), "-tp", "3", "--device", "cpu"])), ModelConfig.from_pretrained(tmp_path))


def test_step_message_keeps_what_followers_read_and_drops_sampling_fields():
    full = ScheduledRequest("a", (7, 8, 9), 10, 3, (4, 5), True, tuple(range(500)), SamplingParams(temperature=0.5),
                            frozenset({1}), spec_token_ids=(8, 9), next_token_id=-1)
    chunk = ScheduledRequest("b", (1, 2), 0, 2, (6,), False, (1, 2, 3), SamplingParams(), frozenset(), (), 3)
    step = SchedulerOutput(4, (full, chunk), 5, ("c",), ("d",))
    message = pickle.loads(pickle.dumps(encode_step(step)))
    decoded = decode_step(message)
    assert decoded.scheduled[0].prompt_token_ids == () and decoded.scheduled[0].stop_token_ids == frozenset()
    blank = dict(prompt_token_ids=(), sampling_params=decoded.scheduled[0].sampling_params, stop_token_ids=frozenset())
    assert decoded == dataclasses.replace(step, scheduled=tuple(dataclasses.replace(r, **blank) for r in step.scheduled))
    assert len(pickle.dumps(message)) < len(pickle.dumps(step)) / 3


def test_too_few_gpus_on_one_node_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({**TINY_CONFIG, "model_type": "glm4_moe"}))
    ns = build_parser().parse_args(["--model", str(tmp_path), "-tp", "2", "--device", "cpu"])
    config = dataclasses.replace(build_engine_config(args_from_namespace(ns), ModelConfig.from_pretrained(tmp_path)),
                                 device=torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="needs 2 visible GPUs, found 1"):
        MultiprocExecutor.start(config)
