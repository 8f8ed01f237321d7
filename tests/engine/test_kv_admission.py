"""Admission against the KV pool: a request that could outgrow the whole pool on its own is refused when it is
added (ValueError naming the field), instead of stalling the scheduler and killing the engine loop later."""

from __future__ import annotations

import random

import pytest
from fake_model_runner import reference_generate
from test_scheduler import make_core, run_to_completion

from engine.sampling_params import SamplingParams
from engine.scheduler import Scheduler

BLOCK_SIZE = 4
NUM_BLOCKS = 4  # 16 KV slots: far less than max_model_len=256


def small_pool_core():
    return make_core(num_blocks=NUM_BLOCKS, block_size=BLOCK_SIZE, max_model_len=256)


def test_a_prompt_larger_than_the_pool_is_refused_and_the_core_keeps_serving() -> None:
    core = small_pool_core()
    with pytest.raises(ValueError, match=r"prompt_token_ids: .*20 prompt.*4 blocks of 4 tokens"):
        core.add_request("too-big", list(range(20)), SamplingParams(max_tokens=1))
    assert not core.has_unfinished_requests()
    core.add_request("ok", [1, 2, 3], SamplingParams(temperature=0, max_tokens=5))
    assert run_to_completion(core) == {"ok": reference_generate([1, 2, 3], 5, 50)}
    assert core.scheduler.kv.num_free_blocks == NUM_BLOCKS


def test_without_the_check_such_a_request_stalls_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Scheduler, "_check_fits_kv_pool", lambda self, request: None)
    core = small_pool_core()
    core.add_request("too-big", list(range(20)), SamplingParams(max_tokens=1))
    with pytest.raises(RuntimeError, match="no progress"):
        core.step()


def test_growth_past_the_pool_counts_prompt_plus_max_tokens() -> None:
    core = small_pool_core()
    prompt = list(range(10))
    with pytest.raises(ValueError, match="max_tokens 8"):  # 10 + 8 - 1 = 17 slots > 16
        core.add_request("grows", prompt, SamplingParams(max_tokens=8))
    with pytest.raises(ValueError, match="max_tokens 246"):  # no max_tokens: up to max_model_len
        core.add_request("unbounded", prompt, SamplingParams())
    core.add_request("fits", prompt, SamplingParams(temperature=0, max_tokens=7, ignore_eos=True))  # 16 slots
    assert run_to_completion(core) == {"fits": reference_generate(prompt, 7, 50)}
    assert core.scheduler.kv.num_free_blocks == NUM_BLOCKS


def test_every_admitted_request_finishes_and_every_refused_one_could_not_fit() -> None:
    rng = random.Random(7)
    for async_scheduling in (False, True):
        core = make_core(num_blocks=6, block_size=BLOCK_SIZE, max_model_len=64, max_num_seqs=4,
                         max_num_batched_tokens=8, async_scheduling=async_scheduling)
        admitted: list[str] = []
        finished: set[str] = set()
        for index in range(60):
            prompt = [rng.randrange(50) for _ in range(rng.randint(1, 30))]
            max_tokens = rng.randint(1, 20)
            try:
                core.add_request(str(index), prompt, SamplingParams(max_tokens=max_tokens, ignore_eos=True))
                admitted.append(str(index))
            except ValueError:
                assert len(prompt) + max_tokens - 1 > 6 * BLOCK_SIZE
                continue
            if rng.random() < 0.3:  # sometimes step, so refusals interleave with running requests
                finished.update(out.request_id for out in core.step_fn() if out.finished)
        finished.update(run_to_completion(core))  # raises if the scheduler stalls
        assert finished == set(admitted) and len(admitted) > 10
        assert core.scheduler.kv.num_free_blocks == 6
