"""Speculative decoding's counter model in pure Python: the scheduler, the KV cache and the engine loop, fed by a
fake model that verifies drafts by reading its "KV" back through the block tables.

The fake's KV slots store the token written at each position (drafts included), and its next token is a hash of
the sequence read back through the request's block table. A wrong rollback, a block lost or shared wrongly, or a
rejected draft left in the sequence therefore changes the answer, as it would with the real model.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from engine.engine_config import SchedulerConfig
from engine.engine_core import EngineCore
from engine.kv_cache_manager import KVCacheManager
from engine.outputs import ModelRunnerOutput, SchedulerOutput
from engine.request import RequestStatus
from engine.sampling_params import SamplingParams
from engine.scheduler import Scheduler
from engine.spec_decode_stats import SpecDecodingStats
from fake_model_runner import next_token, reference_generate

VOCAB = 50


class _Done:
    def __init__(self, output: ModelRunnerOutput) -> None:
        self.output = output

    def result(self) -> ModelRunnerOutput:
        return self.output


class FakeSpecRunner:
    """Greedy verification of each request's drafts against the fake model, then k new drafts: the true
    continuation for the first r of them (r from a hash of the sequence: every acceptance length occurs), then
    wrong tokens."""

    def __init__(self, num_blocks: int, block_size: int, k: int) -> None:
        self.block_size = block_size
        self.k = k
        self.slots: list[int | None] = [None] * (num_blocks * block_size)
        self.emitted: list[tuple[str, tuple[int, ...]]] = []  # (request id, tokens) per verify, before stop checks
        self.verify_rows: list[tuple[int, int]] = []  # (drafts verified, rows) per sampled request-step

    def _slot(self, block_ids: tuple[int, ...], position: int) -> int:
        return block_ids[position // self.block_size] * self.block_size + position % self.block_size

    def execute_model(self, scheduler_output: SchedulerOutput) -> _Done:
        req_ids, sampled, accepted, drafts = [], [], [], []
        for s in scheduler_output.scheduled:
            assert len(s.token_ids) == s.num_scheduled_tokens, "speculative steps know every input token"
            for i, token in enumerate(s.token_ids):
                self.slots[self._slot(s.block_ids, s.num_computed_tokens + i)] = token
            if not s.is_sampled:
                assert s.next_token_id >= 0 and not s.spec_token_ids
                continue
            num_known = s.num_computed_tokens + s.num_scheduled_tokens - len(s.spec_token_ids)
            num_accepted = 0
            while True:  # read the sequence back through the block table, accepted drafts included
                sequence = [self.slots[self._slot(s.block_ids, p)] for p in range(num_known + num_accepted)]
                assert None not in sequence, f"{s.request_id} reads an unwritten slot"
                truth = next_token(sequence, VOCAB)
                if num_accepted == len(s.spec_token_ids) or s.spec_token_ids[num_accepted] != truth:
                    break
                num_accepted += 1
            self.verify_rows.append((len(s.spec_token_ids), s.num_scheduled_tokens))
            self.emitted.append((s.request_id, s.spec_token_ids[:num_accepted] + (truth,)))
            req_ids.append(s.request_id)
            sampled.append(truth)
            accepted.append(num_accepted)
            drafts.append(self._propose(sequence + [truth]))
        return _Done(ModelRunnerOutput(tuple(req_ids), tuple(sampled), None, tuple(accepted), None, tuple(drafts)))

    def _propose(self, sequence: list[int]) -> tuple[int, ...]:
        num_right = hashlib.blake2b(repr(sequence).encode(), digest_size=2).digest()[0] % (self.k + 1)
        out = []
        for j in range(self.k):
            token = next_token(sequence, VOCAB)
            if j >= num_right:
                token = (token + 1) % VOCAB
            out.append(token)
            sequence = sequence + [token]
        return tuple(out)


def make_core(k: int, num_blocks=64, block_size=4, max_model_len=128, max_num_seqs=16, max_num_batched_tokens=64,
              prefix_caching=True, eos_token_ids=()) -> EngineCore:
    config = SchedulerConfig(max_model_len=max_model_len, max_num_seqs=max_num_seqs,
                             max_num_batched_tokens=max_num_batched_tokens)
    kv = KVCacheManager(num_blocks, block_size, prefix_caching)
    runner = FakeSpecRunner(num_blocks, block_size, k)
    return EngineCore(Scheduler(config, kv, num_speculative_tokens=k), runner, VOCAB, eos_token_ids=eos_token_ids)


def run(core: EngineCore, check=None, max_steps: int = 20_000) -> dict[str, list[int]]:
    tokens: dict[str, list[int]] = {}
    for _ in range(max_steps):
        if not core.has_unfinished_requests():
            return tokens
        for out in core.step():
            tokens.setdefault(out.request_id, []).extend(out.new_token_ids)
        if check is not None:
            check(core.scheduler)
    raise AssertionError("did not finish")


def check_invariants(scheduler: Scheduler) -> None:
    """Between steps: counters in range, blocks held exactly by their owners, registered blocks hold their tokens."""
    kv, k = scheduler.kv, scheduler.spec_decode_stats.num_spec_tokens
    owners: dict[int, int] = {}
    for request in scheduler.running:
        assert request.num_output_placeholders == 0
        assert request.num_computed_tokens <= request.num_tokens
        assert len(request.spec_token_ids) <= k
        if request.spec_token_ids:  # drafts follow a sampled step: exactly the last committed token is pending
            assert request.num_computed_tokens == request.num_tokens - 1
        num_held = len(kv.block_ids(request.request_id))
        # Enough for the committed KV; never more than one step with all k drafts and lookahead could have needed.
        assert kv.num_blocks_needed(request.num_computed_tokens) <= num_held
        assert num_held <= kv.num_blocks_needed(request.num_tokens + 2 * k)
        for block_id in kv.block_ids(request.request_id):
            owners[block_id] = owners.get(block_id, 0) + 1
    for request in scheduler.waiting:
        assert request.num_computed_tokens == 0 and not request.spec_token_ids
    for block in kv.pool.blocks:
        assert block.ref_cnt == owners.get(block.block_id, 0)
    assert kv.num_free_blocks == sum(1 for b in kv.pool.blocks if b.ref_cnt == 0)


def check_prefix_cache_holds_committed_kv(core: EngineCore) -> None:
    """Every registered block's KV (the fake's slots) is the committed tokens it is registered under."""
    runner, bs = core.model_runner, core.scheduler.kv.block_size
    for block in core.scheduler.kv.pool.blocks:
        if block.block_hash is not None:
            assert runner.slots[block.block_id * bs : (block.block_id + 1) * bs] == list(block.token_ids)


def workload(seed: int, num: int = 30, system_len: int = 9):
    rng = random.Random(seed)
    system = [rng.randrange(VOCAB) for _ in range(system_len)]
    prompts = [(system if i % 2 else []) + [rng.randrange(VOCAB) for _ in range(rng.randint(1, 40))]
               for i in range(num)]
    max_tokens = [rng.randint(1, 30) for _ in prompts]
    return prompts, max_tokens


CONFIGS = {
    "roomy": dict(num_blocks=400),
    "tiny_pool_preempts": dict(num_blocks=28, max_num_seqs=8),
    "small_budget_chunks_and_trims_drafts": dict(num_blocks=400, max_num_batched_tokens=7),
    "no_prefix_cache": dict(num_blocks=60, prefix_caching=False),
}


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_outputs_equal_the_reference_with_every_acceptance_length(k, name):
    prompts, max_tokens = workload(seed=k)
    core = make_core(k, **CONFIGS[name])
    for i, (p, m) in enumerate(zip(prompts, max_tokens)):
        core.add_request(str(i), p, SamplingParams(max_tokens=m))
    outputs = run(core, check_invariants)
    assert outputs == {str(i): reference_generate(p, m, VOCAB) for i, (p, m) in enumerate(zip(prompts, max_tokens))}
    check_prefix_cache_holds_committed_kv(core)
    kv, stats = core.scheduler.kv, core.scheduler.spec_decode_stats
    assert kv.num_free_blocks == kv.pool.num_blocks
    # Every acceptance length happened, and the counters agree with what the runner verified.
    lengths = {len(tokens) - 1 for _, tokens in core.model_runner.emitted}
    assert lengths == set(range(k + 1))
    assert stats.num_draft_tokens == sum(d for d, _ in core.model_runner.verify_rows)
    assert 0 < stats.num_accepted_tokens < stats.num_draft_tokens
    per_pos = stats.num_accepted_tokens_per_pos
    assert sum(per_pos) == stats.num_accepted_tokens and per_pos == sorted(per_pos, reverse=True)
    if name == "tiny_pool_preempts":
        assert core.scheduler.num_preemptions > 0
    if CONFIGS[name].get("prefix_caching", True):
        assert kv.num_hit_tokens > 0


def test_stop_tokens_inside_an_accepted_run_end_the_output_there():
    prompts, _ = workload(seed=7, num=40)
    eos = 5
    core = make_core(3, num_blocks=400, eos_token_ids=(eos,))
    for i, p in enumerate(prompts):
        core.add_request(str(i), p, SamplingParams(max_tokens=60, min_tokens=2))
    outputs = run(core, check_invariants)
    for i, p in enumerate(prompts):
        free_run = reference_generate(p, 60, VOCAB)
        stop_at = next((j for j, t in enumerate(free_run) if t == eos and j >= 2), None)
        assert outputs[str(i)] == (free_run if stop_at is None else free_run[: stop_at + 1])
    # Some verify step emitted tokens after the stop token: they were dropped, and the request freed.
    emitted_after_stop = [t for rid, t in core.model_runner.emitted if eos in t[:-1] and t.index(eos) < len(t) - 1
                          and outputs[rid][-1] == eos]
    assert emitted_after_stop
    assert core.scheduler.kv.num_free_blocks == 400


def test_each_output_carries_its_steps_drafted_and_accepted_counts():
    k = 3
    prompts, max_tokens = workload(seed=11, num=12)
    core = make_core(k, num_blocks=400, eos_token_ids=(5,))
    for i, (p, m) in enumerate(zip(prompts, max_tokens)):
        core.add_request(str(i), p, SamplingParams(max_tokens=m + 20))
    drafted: dict[str, int] = {}
    accepted: dict[str, int] = {}
    while core.has_unfinished_requests():
        for out in core.step():
            assert 0 <= out.num_accepted_tokens <= out.num_draft_tokens <= k
            if not out.finished:  # a stop condition may cut the accepted run short, never otherwise
                assert len(out.new_token_ids) == out.num_accepted_tokens + 1
            drafted[out.request_id] = drafted.get(out.request_id, 0) + out.num_draft_tokens
            accepted[out.request_id] = accepted.get(out.request_id, 0) + out.num_accepted_tokens
    stats = core.scheduler.spec_decode_stats
    # Per request, the outputs add up to the engine's counters (the Prometheus vllm:spec_decode_* series).
    assert sum(drafted.values()) == stats.num_draft_tokens > 0
    assert sum(accepted.values()) == stats.num_accepted_tokens > 0
    assert len({accepted[rid] for rid in accepted}) > 1  # per request, not one shared figure


def test_drafts_are_trimmed_to_max_tokens_and_max_model_len():
    core = make_core(3, num_blocks=100, max_model_len=30)
    core.add_request("tokens", [1, 2, 3], SamplingParams(max_tokens=6))
    core.add_request("length", list(range(20)), SamplingParams(max_tokens=100))
    outputs = run(core)
    assert outputs == {"tokens": reference_generate([1, 2, 3], 6, VOCAB),
                       "length": reference_generate(list(range(20)), 10, VOCAB)}
    # No step verified more drafts than the request had room for: nothing emitted is ever cut by a length limit.
    num_emitted = {"tokens": 0, "length": 0}
    for request_id, tokens in core.model_runner.emitted:
        num_emitted[request_id] += len(tokens)
    assert num_emitted == {"tokens": 6, "length": 10}


def test_the_token_budget_cuts_drafts_not_the_decode():
    core = make_core(3, num_blocks=100, max_num_batched_tokens=6)
    core.add_request("a", list(range(5)), SamplingParams(max_tokens=20))
    core.add_request("b", list(range(10, 15)), SamplingParams(max_tokens=20))
    core.step()  # a's prompt (5 rows)
    core.step()  # a verifies 1 + 3 rows (nothing to verify yet: 1 row), b's prompt chunk
    while not all(r.spec_token_ids for r in core.scheduler.running):
        core.step()
    so = core.scheduler.schedule()
    assert [(s.request_id, len(s.spec_token_ids), s.num_scheduled_tokens) for s in so.scheduled] == [
        ("a", 3, 4), ("b", 1, 2)]
    assert all(s.is_sampled for s in so.scheduled)
    core.scheduler.update_from_output(so, core.model_runner.execute_model(so).result())
    assert run(core) and core.scheduler.kv.num_free_blocks == 100


def test_lookahead_slots_are_held_for_draft_steps_and_dropped_when_the_pool_is_short():
    core = make_core(3, num_blocks=100, block_size=4)
    core.add_request("a", list(range(8)), SamplingParams(max_tokens=20))
    so = core.scheduler.schedule()  # prefill of 8 positions samples: the proposer's draft steps need 2 more slots
    assert len(so.scheduled[0].block_ids) * 4 >= 8 + 2
    core.scheduler.update_from_output(so, core.model_runner.execute_model(so).result())
    # A pool with exactly the blocks the rows need: the lookahead is dropped rather than preempting anyone.
    tight = make_core(3, num_blocks=2, block_size=4, max_model_len=8)
    tight.add_request("b", list(range(7)), SamplingParams(max_tokens=1))
    so = tight.scheduler.schedule()
    assert [s.request_id for s in so.scheduled] == ["b"] and not so.preempted_req_ids
    assert len(so.scheduled[0].block_ids) == 2


def test_preemption_drops_drafts_and_recomputes_the_same_tokens():
    core = make_core(2, num_blocks=7, block_size=4, max_model_len=28, max_num_seqs=2)
    prompts = {"old": list(range(9)), "new": list(range(20, 29))}
    for request_id, prompt in prompts.items():
        core.add_request(request_id, prompt, SamplingParams(max_tokens=12))
    outputs = run(core, check_invariants)
    assert core.scheduler.num_preemptions > 0
    assert outputs == {rid: reference_generate(p, 12, VOCAB) for rid, p in prompts.items()}


def test_no_block_leaks_with_speculation_and_random_aborts():
    rng = random.Random(99)
    core = make_core(3, num_blocks=40, block_size=4, max_model_len=64, max_num_seqs=8, max_num_batched_tokens=24)
    next_id, live = 0, []
    while next_id < 400 or core.has_unfinished_requests():
        for _ in range(rng.randint(0, 3)):
            if next_id < 400:
                prompt = [rng.randrange(6) for _ in range(rng.randint(1, 30))]  # small alphabet: cache hits
                core.add_request(str(next_id), prompt, SamplingParams(max_tokens=rng.randint(1, 25)))
                live.append(str(next_id))
                next_id += 1
        if live and rng.random() < 0.3:
            core.abort_request(live.pop(rng.randrange(len(live))))
        for out in core.step():
            if out.finished and out.request_id in live:
                live.remove(out.request_id)
        check_invariants(core.scheduler)
        check_prefix_cache_holds_committed_kv(core)
    kv = core.scheduler.kv
    assert kv.num_free_blocks == 40 and all(b.ref_cnt == 0 for b in kv.pool.blocks)
    assert core.scheduler.num_preemptions > 0 and kv.num_hit_tokens > 0
    assert core.scheduler.spec_decode_stats.num_accepted_tokens > 0


def test_abort_between_steps_while_drafts_are_pending():
    core = make_core(2, num_blocks=30)
    core.add_request("a", list(range(10)), SamplingParams(max_tokens=20))
    core.step()
    request = core.scheduler.requests["a"]
    assert request.spec_token_ids and request.status == RequestStatus.RUNNING
    core.abort_request("a")
    assert not core.has_unfinished_requests() and core.scheduler.kv.num_free_blocks == 30


def test_spec_decoding_stats_definitions():
    stats = SpecDecodingStats(3)
    before = stats.snapshot()
    for drafted, accepted in ((3, 3), (3, 1), (2, 0), (0, 0), (1, 1)):
        stats.observe(drafted, accepted)
    assert (stats.num_drafts, stats.num_draft_tokens, stats.num_accepted_tokens) == (4, 9, 5)
    assert stats.num_accepted_tokens_per_pos == [3, 1, 1]
    assert stats.acceptance_rate == pytest.approx(5 / 9)
    assert stats.mean_acceptance_length == pytest.approx(1 + 5 / 4)
    assert stats.acceptance_rate_per_pos == pytest.approx([3 / 4, 1 / 4, 1 / 4])
    delta = stats.since(before)
    assert delta == stats and delta is not stats
    with pytest.raises(ValueError, match="num_accepted_tokens=3, num_draft_tokens=2"):
        stats.observe(2, 3)
    with pytest.raises(ValueError, match="num_draft_tokens=4"):
        stats.observe(4, 0)
    assert SpecDecodingStats(1).mean_acceptance_length == 1.0
