"""ModelRunner's batch building: positions, slots, block tables, sampled rows and device-side token fill."""

from __future__ import annotations

import pytest
import torch

from engine.config import ModelConfig
from engine.engine_config import CacheConfig, EngineConfig, SchedulerConfig
from engine.loader import build_model
from engine.model_runner import ModelRunner
from engine.outputs import ScheduledRequest, SchedulerOutput
from engine.sampling_params import SamplingParams
from model_factory import TINY_CONFIG


def make_runner(**cache) -> ModelRunner:
    model_config = ModelConfig.from_dict({**TINY_CONFIG, "architectures": ["Glm4MoeForCausalLM"]})
    config = EngineConfig(model="unused", model_config=model_config, dtype=torch.float32, device=torch.device("cpu"),
                          cache=CacheConfig(**cache), scheduler=SchedulerConfig(max_model_len=64, max_num_seqs=4))
    return ModelRunner(build_model(model_config, torch.float32, "cpu"), config)


def scheduled(request_id, token_ids, num_computed, num_scheduled, block_ids, is_sampled) -> ScheduledRequest:
    return ScheduledRequest(request_id, tuple(token_ids), num_computed, num_scheduled, tuple(block_ids), is_sampled,
                            (1,), SamplingParams(temperature=0), frozenset())


def test_prepare_inputs_flattens_rows_and_fills_in_flight_tokens_from_the_device():
    runner = make_runner(num_blocks_override=16)
    runner._prev_tokens = torch.tensor([77, 88])
    runner._prev_rows = {"b": 1}
    out = SchedulerOutput(1, (
        scheduled("a", [5, 6, 7], 14, 3, [4, 9], True),  # positions 14..16 cross from block 4 into block 9
        scheduled("b", [], 20, 1, [2, 3], True),  # its input is the token the previous step sampled (88)
        scheduled("c", [8, 9], 0, 2, [7], False),  # a prefill chunk: no logits
    ), 6, (), ())
    inputs = runner.prepare_inputs(out)
    assert inputs.positions.tolist() == [14, 15, 16, 20, 0, 1]
    assert inputs.metadata.slot_mapping.tolist() == [4 * 16 + 14, 4 * 16 + 15, 9 * 16 + 0, 3 * 16 + 4, 7 * 16, 7 * 16 + 1]
    assert inputs.metadata.query_start_loc.tolist() == [0, 3, 4, 6]
    assert inputs.metadata.seq_lens_cpu == (17, 21, 2)
    assert inputs.metadata.block_tables.tolist() == [[4, 9], [2, 3], [7, 0]]
    assert inputs.logits_rows.tolist() == [2, 3] and inputs.sampled_req_ids == ("a", "b")
    assert inputs.fill_dst.tolist() == [3] and inputs.fill_src.tolist() == [1]
    ids = inputs.input_ids.clone()
    ids[inputs.fill_dst] = runner._prev_tokens[inputs.fill_src]
    assert ids.tolist() == [5, 6, 7, 88, 8, 9]


def test_kv_cache_sizing_from_memory_and_refusal_when_one_sequence_does_not_fit():
    per_block = 5 * 2 * 16 * 2 * 16 * 4  # (4 layers + MTP) x K/V x block x kv heads x head_dim x fp32
    assert make_runner(kv_cache_memory=per_block * 10 + 7).determine_num_blocks() == 10
    with pytest.raises(ValueError, match="kv_cache_memory: the KV cache would hold 3 blocks"):
        make_runner(kv_cache_memory=per_block * 3).determine_num_blocks()  # max_model_len 64 needs 4
    runner = make_runner(num_blocks_override=6)
    assert runner.initialize_kv_cache() == 6
    assert len(runner.kv_caches) == 5 and runner.kv_caches[4].shape == (6, 2, 16, 2, 16)  # the MTP layer's too
