"""Scheduler in pure Python, fed by a fake model that reads its "KV" through the block tables it receives."""

from __future__ import annotations

import random

import pytest

from engine.engine_config import SchedulerConfig
from engine.engine_core import EngineCore
from engine.kv_cache_manager import KVCacheManager
from engine.request import RequestStatus
from engine.sampling_params import SamplingParams
from engine.scheduler import Scheduler
from fake_model_runner import FakeModelRunner, reference_generate

VOCAB = 50


def make_core(num_blocks=64, block_size=4, max_model_len=256, max_num_seqs=16, max_num_batched_tokens=64,
              prefix_caching=True, async_scheduling=False, chunked=True):
    config = SchedulerConfig(max_model_len=max_model_len, max_num_seqs=max_num_seqs,
                             max_num_batched_tokens=max_num_batched_tokens, enable_chunked_prefill=chunked)
    kv = KVCacheManager(num_blocks, block_size, prefix_caching)
    runner = FakeModelRunner(num_blocks, block_size, VOCAB)
    return EngineCore(Scheduler(config, kv), runner, VOCAB, eos_token_ids=(), async_scheduling=async_scheduling)


def run_to_completion(core: EngineCore, max_steps: int = 10_000) -> dict[str, list[int]]:
    tokens: dict[str, list[int]] = {}
    for _ in range(max_steps):
        if not core.has_unfinished_requests():
            return tokens
        for out in core.step_fn():
            tokens.setdefault(out.request_id, []).extend(out.new_token_ids)
    raise AssertionError("did not finish")


def random_prompts(rng: random.Random, num: int, low: int, high: int) -> list[list[int]]:
    return [[rng.randrange(VOCAB) for _ in range(rng.randint(low, high))] for _ in range(num)]


def test_chunked_prefill_splits_a_long_prompt_and_samples_only_at_its_end():
    core = make_core(max_num_batched_tokens=16)
    core.add_request("a", list(range(40)), SamplingParams(temperature=0, max_tokens=2))
    steps = []
    while core.has_unfinished_requests():
        so = core.scheduler.schedule()
        steps.append([(s.num_computed_tokens, s.num_scheduled_tokens, s.is_sampled) for s in so.scheduled])
        core.scheduler.update_from_output(so, core.model_runner.execute_model(so).result())
    assert steps == [[(0, 16, False)], [(16, 16, False)], [(32, 8, True)], [(40, 1, True)]]


def test_decodes_go_first_then_prefills_in_arrival_order_within_budget_and_max_num_seqs():
    core = make_core(max_num_batched_tokens=10, max_num_seqs=3)
    core.add_request("long", list(range(8)), SamplingParams(max_tokens=5))
    core.step()  # prefill "long" (8 tokens)
    for i, name in enumerate(("w1", "w2", "w3")):
        core.add_request(name, [i] * 6, SamplingParams(max_tokens=5))
    so = core.scheduler.schedule()
    # decode of "long" (1), then w1 (6), then w2 gets the 3 tokens left; w3 exceeds max_num_seqs.
    assert [(s.request_id, s.num_scheduled_tokens) for s in so.scheduled] == [("long", 1), ("w1", 6), ("w2", 3)]
    assert [r.request_id for r in core.scheduler.waiting] == ["w3"]


def test_outputs_match_single_prompt_reference_with_preemption_chunking_and_prefix_caching():
    rng = random.Random(0)
    system = [rng.randrange(VOCAB) for _ in range(13)]
    prompts = [system + p for p in random_prompts(rng, 12, 1, 30)] + random_prompts(rng, 12, 1, 60)
    max_tokens = [rng.randint(1, 20) for _ in prompts]
    expected = {str(i): reference_generate(p, m, VOCAB) for i, (p, m) in enumerate(zip(prompts, max_tokens))}
    for num_blocks, async_scheduling in ((400, False), (24, False), (24, True), (400, True)):
        core = make_core(num_blocks=num_blocks, max_model_len=96, async_scheduling=async_scheduling)
        for i, (p, m) in enumerate(zip(prompts, max_tokens)):
            core.add_request(str(i), p, SamplingParams(max_tokens=m))
        assert run_to_completion(core) == expected, (num_blocks, async_scheduling)
        assert core.scheduler.kv.num_free_blocks == num_blocks
        if num_blocks == 24:
            assert core.scheduler.num_preemptions > 0
        assert core.scheduler.kv.num_hit_tokens > 0  # the shared system prompt was served from the cache


def test_preemption_takes_the_newest_running_request():
    core = make_core(num_blocks=6, block_size=4, max_model_len=24, max_num_batched_tokens=64)
    core.add_request("old", list(range(8)), SamplingParams(max_tokens=10))
    core.add_request("new", list(range(20, 28)), SamplingParams(max_tokens=10))
    core.step()  # both prefilled: 2 blocks each, 2 free
    for _ in range(5):
        core.step()  # positions 8..11 fill a third block each; position 12 finds the pool dry
    assert [r.request_id for r in core.scheduler.running] == ["old"]
    assert core.scheduler.requests["new"].status == RequestStatus.PREEMPTED
    assert core.scheduler.requests["new"].num_computed_tokens == 0


def test_prompt_longer_than_max_model_len_is_refused_before_admission():
    core = make_core(max_model_len=32)
    with pytest.raises(ValueError, match="prompt_token_ids.*max_model_len=32"):
        core.add_request("a", list(range(32)), SamplingParams())
    with pytest.raises(ValueError, match="prompt_token_ids: token id 50"):
        core.add_request("b", [1, 50], SamplingParams())
    with pytest.raises(ValueError, match="already in use"):
        core.add_request("c", [1], SamplingParams())
        core.add_request("c", [1], SamplingParams())
    assert list(core.scheduler.requests) == ["c"]


def test_max_model_len_caps_the_output():
    core = make_core(max_model_len=20)
    core.add_request("a", list(range(15)), SamplingParams(max_tokens=100))
    outs = run_to_completion(core)
    assert len(outs["a"]) == 5


def test_stop_tokens_min_tokens_and_ignore_eos():
    prompt = [3, 1, 4]
    free_run = reference_generate(prompt, 30, VOCAB)
    eos = free_run[4]  # the 5th token generated
    first = free_run.index(eos) + 1
    for params, expected_len, reason in (
        (SamplingParams(max_tokens=30), first, "stop"),
        (SamplingParams(max_tokens=30, ignore_eos=True), 30, "length"),
        (SamplingParams(max_tokens=30, stop_token_ids=[free_run[1]]), 2, "stop"),
    ):
        config = SchedulerConfig(max_model_len=64)
        kv = KVCacheManager(64, 4)
        core = EngineCore(Scheduler(config, kv), FakeModelRunner(64, 4, VOCAB), VOCAB, eos_token_ids=(eos,))
        core.add_request("a", prompt, params)
        outs = []
        while core.has_unfinished_requests():
            outs += core.step()
        assert len(outs) == expected_len and outs[-1].finish_reason == reason
        assert [o.new_token_ids[0] for o in outs] == free_run[:expected_len]


def test_abort_at_every_step_frees_everything():
    for abort_at in range(8):
        for async_scheduling in (False, True):
            core = make_core(num_blocks=32, max_num_batched_tokens=8, async_scheduling=async_scheduling)
            core.add_request("a", list(range(20)), SamplingParams(max_tokens=6))
            core.add_request("b", list(range(20)), SamplingParams(max_tokens=6))
            for _ in range(abort_at):
                core.step_fn()
            core.abort_request(["a", "nonexistent"])
            run_to_completion(core)
            assert "a" not in core.scheduler.requests
            assert core.scheduler.kv.num_free_blocks == 32


def test_no_block_leaks_after_1000_random_requests_with_random_aborts():
    rng = random.Random(1234)
    for async_scheduling in (False, True):
        core = make_core(num_blocks=48, block_size=4, max_model_len=64, max_num_seqs=8,
                         max_num_batched_tokens=32, async_scheduling=async_scheduling)
        next_id = 0
        live: list[str] = []
        while next_id < 1000 or core.has_unfinished_requests():
            for _ in range(rng.randint(0, 3)):
                if next_id < 1000:
                    prompt = [rng.randrange(8) for _ in range(rng.randint(1, 40))]  # small alphabet: cache hits
                    core.add_request(str(next_id), prompt, SamplingParams(max_tokens=rng.randint(1, 20)))
                    live.append(str(next_id))
                    next_id += 1
            if live and rng.random() < 0.2:
                core.abort_request(live.pop(rng.randrange(len(live))))
            for out in core.step_fn():
                if out.finished and out.request_id in live:
                    live.remove(out.request_id)
            check_invariants(core.scheduler)
        assert core.scheduler.kv.num_free_blocks == 48
        assert not core.scheduler.running and not core.scheduler.waiting
        assert core.scheduler.num_preemptions > 0 and core.scheduler.kv.num_hit_tokens > 0


def check_invariants(scheduler: Scheduler) -> None:
    kv = scheduler.kv
    held = 0
    for request in scheduler.running:
        assert 0 <= request.num_computed_tokens <= request.num_tokens_with_placeholders <= scheduler.config.max_model_len
        assert len(kv.block_ids(request.request_id)) >= kv.num_blocks_needed(request.num_computed_tokens)
    for request in scheduler.waiting:
        assert request.num_computed_tokens == 0 and not kv.block_ids(request.request_id)
    refs = sum(b.ref_cnt for b in kv.pool.blocks)
    held = sum(len(kv.block_ids(r.request_id)) for r in scheduler.running)
    assert refs == held
    assert kv.num_free_blocks == sum(1 for b in kv.pool.blocks if b.ref_cnt == 0)
