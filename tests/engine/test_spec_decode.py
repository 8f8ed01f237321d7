"""MTP speculative decoding end to end on a tiny random GLM-4.5 checkpoint (MTP layer included), in float64.

The reference is the same engine without speculation (tests/engine/test_llm.py proves it equal to transformers).
A random MTP layer drafts tokens the target almost never accepts, so the acceptance paths are driven by test
doubles of the proposer that draft the reference continuation (all of it, or with some drafts corrupted), while
the real MTP layer still runs underneath (its KV, draft-extend and draft steps are exercised and checked against a
dense recomputation). The MTP layer's own math is proven against transformers in tests/engine/test_model.py.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from engine import LLM, SamplingParams
from engine.mtp_proposer import DraftExtendBatch, MTPProposer
from kernels.attention import AttentionMetadata, DenseAttention
from model_factory import make_tiny_model_dir

VOCAB = 1000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_spec"), seed=11)


def make_llm(model_dir, k: int = 0, **kwargs) -> LLM:
    kwargs.setdefault("max_model_len", 512)
    kwargs.setdefault("num_blocks_override", 700)
    return LLM(model=model_dir, dtype=torch.float64, device="cpu", num_speculative_tokens=k, **kwargs)


def mixed_prompts(seed: int = 0, num: int = 32, system: list[int] | None = None):
    rng = random.Random(seed)
    lengths = [1, 2, 15, 16, 17, 300] + [rng.randint(1, 200) for _ in range(num - 6)]
    prompts = [(system or []) + [rng.randrange(4, VOCAB) for _ in range(n)] for n in lengths]
    max_tokens = [rng.randint(1, 16) for _ in prompts]
    return prompts, max_tokens


def generate(llm: LLM, prompts, params) -> list[list[int]]:
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    return [o.outputs[0].token_ids for o in outs]


def greedy(max_tokens: list[int], **kw) -> list[SamplingParams]:
    return [SamplingParams(temperature=0, max_tokens=m, **kw) for m in max_tokens]


class OracleProposer(MTPProposer):
    """Runs the real MTP proposer (its KV and drafts), records its drafts, and returns the reference continuation
    instead: the request's expected tokens at positions P + 2 .. P + 1 + k (P: its last draft-extend row). With
    `corrupt`, a draft is replaced by a wrong token when a hash of its position says so."""

    def __init__(self, base: MTPProposer, expected: dict[str, list[int]], corrupt: float = 0.0) -> None:
        super().__init__(base.model, _spec_config(base), base.block_size, base.device)
        self.expected = expected  # request id -> prompt + expected output
        self.corrupt = corrupt
        self.records: list[tuple[str, int, tuple[int, ...]]] = []  # (request id, P, real MTP drafts)

    def propose(self, hidden: torch.Tensor, batch: DraftExtendBatch, attn) -> tuple[tuple[int, ...], ...]:
        real = super().propose(hidden, batch, attn)
        if self.is_disabled_for(len(batch.req_ids)):
            return real  # speculation off for this step: no drafts
        out = []
        for n, i in enumerate(np.flatnonzero(batch.is_drafting)):
            request_id, start = batch.req_ids[i], int(batch.start_positions[i])
            last = start + int(batch.num_committed[i]) - 1
            sequence = self.expected[request_id]
            # The draft-extend pairs each row p with the committed token p + 1.
            assert batch.committed_input_ids(i).tolist() == sequence[start + 1 : last + 2]
            self.records.append((request_id, last, real[n]))
            drafts = list(sequence[last + 2 : last + 2 + self.num_speculative_tokens])
            for j in range(len(drafts)):
                if random.Random(last * 31 + j).random() < self.corrupt:
                    drafts[j] = (drafts[j] + 1) % VOCAB
            out.append(tuple(drafts))
        return tuple(out)


def _spec_config(base: MTPProposer):
    from engine.engine_config import SpeculativeConfig

    return SpeculativeConfig(base.num_speculative_tokens, base.disable_by_batch_size)


def install_oracle(llm: LLM, prompts, outputs, corrupt: float = 0.0) -> OracleProposer:
    runner = llm.engine.model_runner
    first = llm._next_request
    expected = {str(first + i): list(p) + list(o) for i, (p, o) in enumerate(zip(prompts, outputs))}
    runner.proposer = OracleProposer(runner.proposer, expected, corrupt)
    return runner.proposer


@pytest.fixture(scope="module")
def greedy_case(model_dir):
    prompts, max_tokens = mixed_prompts()
    return prompts, max_tokens, generate(make_llm(model_dir), prompts, greedy(max_tokens))


CONFIGS = {
    "default": dict(),
    "tiny_pool_preempt_chunked": dict(max_model_len=320, num_blocks_override=20, max_num_batched_tokens=48,
                                      max_num_seqs=8),
    # The reference runs the default CPU backend (the C++ decode kernel); the plain-PyTorch one must match it.
    "torch_attention_preempt": dict(attention_backend="torch", max_model_len=320, num_blocks_override=20,
                                    max_num_batched_tokens=48, max_num_seqs=8),
}


def assert_all_blocks_free(llm: LLM) -> None:
    kv = llm.engine.scheduler.kv
    assert kv.num_free_blocks == kv.pool.num_blocks and all(b.ref_cnt == 0 for b in kv.pool.blocks)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_with_the_mtp_drafter_equals_no_speculation(model_dir, greedy_case, k, name):
    prompts, max_tokens, expected = greedy_case
    llm = make_llm(model_dir, k, **CONFIGS[name])
    assert generate(llm, prompts, greedy(max_tokens)) == expected
    stats = llm.engine.scheduler.spec_decode_stats
    assert stats.num_draft_tokens > 0  # drafts were made and verified (a random MTP layer gets few accepted)
    expected_backend = "TorchPagedAttention" if "attention_backend" in CONFIGS[name] else "CpuPagedAttention"
    assert type(llm.engine.model_runner.attn).__name__ == expected_backend
    assert_all_blocks_free(llm)
    if name != "default":
        assert llm.engine.scheduler.num_preemptions > 0


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("corrupt", [0.0, 0.3])
def test_perfect_and_partly_wrong_drafters_give_the_same_tokens(model_dir, greedy_case, k, corrupt):
    prompts, max_tokens, expected = greedy_case
    llm = make_llm(model_dir, k, **CONFIGS["tiny_pool_preempt_chunked"])
    install_oracle(llm, prompts, expected, corrupt)
    assert generate(llm, prompts, greedy(max_tokens)) == expected
    stats = llm.engine.scheduler.spec_decode_stats
    assert stats.num_drafts > 0
    if corrupt == 0.0:
        assert stats.num_accepted_tokens == stats.num_draft_tokens  # 100% acceptance
        assert stats.mean_acceptance_length > 1 + 0.5 * k
    else:
        assert 0 < stats.num_accepted_tokens < stats.num_draft_tokens
    assert llm.engine.scheduler.num_preemptions > 0
    assert_all_blocks_free(llm)


def test_shared_prefixes_hit_the_prefix_cache_and_match(model_dir):
    rng = random.Random(5)
    system = [rng.randrange(4, VOCAB) for _ in range(70)]
    prompts, max_tokens = mixed_prompts(seed=3, num=12, system=system)
    prompts = [p[:200] for p in prompts]
    expected = generate(make_llm(model_dir, enable_prefix_caching=False), prompts, greedy(max_tokens))
    for k, corrupt in ((1, None), (3, 0.2)):
        llm = make_llm(model_dir, k, max_num_batched_tokens=128)
        for _ in range(2):  # the second round is served from the cache
            if corrupt is not None:
                install_oracle(llm, prompts, expected, corrupt)
            assert generate(llm, prompts, greedy(max_tokens)) == expected
        assert llm.engine.scheduler.kv.num_hit_tokens >= 64 * 11
        assert_all_blocks_free(llm)


def test_greedy_requests_whose_logits_are_processed_equal_no_speculation(model_dir, greedy_case):
    """Plain greedy requests are verified on the raw argmax; greedy ones with logit_bias, penalties or min_tokens
    (which move the argmax) go through the sampling batch, each verify row seeing its earlier drafts."""
    prompts, _, _ = greedy_case
    prompts = prompts[:12]
    eos = 3  # make_tiny_model_dir's eos: min_tokens masks it
    params = [SamplingParams(temperature=0, max_tokens=14, **kw) for kw in (
        {}, {"logit_bias": {7: 5.0, 11: 3.0}}, {"repetition_penalty": 1.5}, {"presence_penalty": 1.0},
        {"frequency_penalty": 0.7}, {"min_tokens": 10, "stop_token_ids": [eos, 9]})] * 2
    reference = generate(make_llm(model_dir), prompts, params)
    free_runs = generate(make_llm(model_dir), prompts, [SamplingParams(temperature=0, max_tokens=14)] * 12)
    llm = make_llm(model_dir, 3)
    install_oracle(llm, prompts, reference, corrupt=0.3)
    assert generate(llm, prompts, params) == reference
    assert reference != free_runs  # the processors changed the outputs
    assert llm.engine.scheduler.spec_decode_stats.num_accepted_tokens > 10


def test_stop_conditions_inside_an_accepted_run(model_dir):
    rng = random.Random(8)
    prompts = [[rng.randrange(4, VOCAB) for _ in range(rng.randint(3, 60))] for _ in range(8)]
    free_runs = generate(make_llm(model_dir), prompts, greedy([24] * len(prompts)))
    # With every draft accepted (k = 3), outputs 1-3, 5-7, ... are drafts and 0, 4, 8, ... prefill/bonus tokens:
    # each stop is a draft whose step would emit tokens after it.
    stops = [next(run[i] for i in (1, 2, 3, 5, 6, 7) if run.index(run[i]) == i) for run in free_runs]
    llm = make_llm(model_dir, 3)
    oracle = install_oracle(llm, prompts, free_runs)
    params = [SamplingParams(temperature=0, max_tokens=24, stop_token_ids=[s]) for s in stops[:4]]
    params += [SamplingParams(temperature=0, max_tokens=m) for m in (1, 2, 7, 11)]  # max_tokens inside runs
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    for i, (out, run) in enumerate(zip(outs, free_runs)):
        c = out.outputs[0]
        if i < 4:
            assert c.token_ids == run[: run.index(stops[i]) + 1]
            assert (c.finish_reason, c.stop_reason) == ("stop", stops[i])
        else:
            assert c.token_ids == run[: params[i].max_tokens] and c.finish_reason == "length"
    stats = llm.engine.scheduler.spec_decode_stats
    assert stats.num_accepted_tokens == stats.num_draft_tokens > 0
    # Each stop fell inside a verified draft window, so the step emitted tokens past it: they were dropped.
    first = int(outs[0].request_id)
    for i in range(4):
        stop_position = len(prompts[i]) + free_runs[i].index(stops[i])
        assert any(rid == str(first + i) and last + 2 <= stop_position <= last + 4 for rid, last, _ in oracle.records)
    assert_all_blocks_free(llm)


def test_stop_strings_completed_inside_a_multi_token_step_drop_the_tokens_after_them(tmp_path):
    from tokenizer.bpe_builder import build_glm_tokenizer

    texts = ["The quick brown fox jumps over the lazy dog.", "What is the weather in Paris today?",
             "def main():\n    print('hello world')\n"] * 4
    path = make_tiny_model_dir(tmp_path / "tiny_text", seed=3)
    build_glm_tokenizer(texts, path, vocab_size=600)
    free_params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    plain = LLM(model=path, device="cpu", max_model_len=256, num_blocks_override=64)
    spec = LLM(model=path, device="cpu", max_model_len=256, num_blocks_override=64, num_speculative_tokens=3)
    (free,) = plain.generate("What is the", free_params, use_tqdm=False)
    text = free.outputs[0].text
    delivered = []
    step = spec.engine.step
    spec.engine.step_fn = lambda: [delivered.append(len(o.new_token_ids)) or o for o in step()]
    num_cut = 0
    for stop in sorted({ch for ch in text if ch.isprintable() and not ch.isspace()})[:8]:
        params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True, stop=[stop])
        (want,) = plain.generate("What is the", params, use_tqdm=False)
        install_oracle(spec, [free.prompt_token_ids], [free.outputs[0].token_ids])
        delivered.clear()
        (got,) = spec.generate("What is the", params, use_tqdm=False)
        g, w = got.outputs[0], want.outputs[0]
        assert (g.text, g.token_ids, g.finish_reason, g.stop_reason) == (w.text, w.token_ids, "stop", stop)
        num_cut += sum(delivered) > len(g.token_ids)
    assert num_cut > 0  # some stop string completed before the end of a multi-token step
    assert_all_blocks_free(spec)


def test_logprobs_of_accepted_drafts_equal_those_without_speculation(model_dir, greedy_case):
    prompts, max_tokens, expected = greedy_case
    prompts, expected = prompts[:8], expected[:8]
    params = greedy([12] * 8, logprobs=3)
    reference = make_llm(model_dir).generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    free_runs = [o.outputs[0].token_ids for o in reference]
    llm = make_llm(model_dir, 2)
    install_oracle(llm, prompts, free_runs, corrupt=0.3)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    for out, ref in zip(outs, reference):
        c, r = out.outputs[0], ref.outputs[0]
        assert c.token_ids == r.token_ids and len(c.logprobs) == len(c.token_ids)
        for got, want in zip(c.logprobs, r.logprobs):
            assert list(got) == list(want)
            assert all(got[t].logprob == pytest.approx(want[t].logprob, abs=1e-9) and got[t].rank == want[t].rank
                       for t in want)
        assert c.cumulative_logprob == pytest.approx(r.cumulative_logprob, abs=1e-8)
    assert llm.engine.scheduler.spec_decode_stats.num_accepted_tokens > 0


def dense_mtp_drafts(model, sequence: list[int], k: int) -> list[int]:
    """The drafts for the tokens after `sequence` computed from scratch, no KV cache: target hidden states of the
    whole sequence, then the MTP layer over rows (h_p, t_{p+1}) at positions p, then k - 1 steps appending
    (g_j, d_j) rows (reference sections 4.2-4.4)."""
    c = model.config
    attn = DenseAttention(c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.head_dim**-0.5)
    ids = torch.tensor(sequence)
    n = len(sequence)
    attn.plan(AttentionMetadata.for_prefill([n]))
    hidden = model(ids, torch.arange(n), attn)  # [n, H]
    mtp_hidden, mtp_ids, drafts = hidden[: n - 1], ids[1:], []
    for _ in range(k):
        rows = len(mtp_ids)
        attn.plan(AttentionMetadata.for_prefill([rows]))
        g = model.mtp_forward(mtp_ids, mtp_hidden, torch.arange(rows), attn)[-1:]  # [1, H]
        drafts.append(int(model.compute_mtp_logits(g).argmax()))
        mtp_hidden, mtp_ids = torch.cat([mtp_hidden, g]), torch.cat([mtp_ids, torch.tensor(drafts[-1:])])
    return drafts


@torch.inference_mode()
def test_mtp_drafts_equal_a_dense_recomputation_after_every_step(model_dir, greedy_case):
    """The real proposer's drafts after prefill chunks, preemption and multi-token accepts (driven by a partly
    wrong oracle) equal drafts recomputed from the committed tokens alone: the draft-extend covers exactly the
    committed positions with the right hidden states, positions and MTP KV, and drafts 2..k carry g."""
    prompts, max_tokens, expected = greedy_case
    chosen = [i for i, p in enumerate(prompts) if len(p) > 100][:6] + [0, 1, 2, 3]  # long ones fill the pool
    prompts, max_tokens, expected = ([seq[i] for i in chosen] for seq in greedy_case)
    k = 3
    llm = make_llm(model_dir, k, enable_prefix_caching=False, max_model_len=320, num_blocks_override=20,
                   max_num_batched_tokens=40, max_num_seqs=6)
    oracle = install_oracle(llm, prompts, expected, corrupt=0.4)
    assert generate(llm, prompts, greedy(max_tokens)) == expected
    assert llm.engine.scheduler.num_preemptions > 0
    model = llm.engine.model_runner.model
    for request_id, last, real in oracle.records:
        committed = oracle.expected[request_id][: last + 2]  # t_0 .. t_{P+1}
        assert list(real) == dense_mtp_drafts(model, committed, len(real)), (request_id, last)
    assert sum(len(real) == k for _, _, real in oracle.records) > 30
    assert llm.engine.scheduler.spec_decode_stats.num_accepted_tokens > 10  # multi-row draft-extends happened


def test_random_aborts_in_mixed_greedy_and_sampled_batches_leave_no_blocks_behind(model_dir):
    rng = random.Random(3)
    llm = make_llm(model_dir, 3, max_model_len=320, num_blocks_override=24, max_num_batched_tokens=64,
                   max_num_seqs=6)
    core, live = llm.engine, []
    for i in range(40):
        prompt = [rng.randrange(4, 40) for _ in range(rng.randint(1, 120))]  # small alphabet: cache hits
        params = SamplingParams(temperature=rng.choice([0.0, 0.8]), top_k=rng.choice([0, 20]), seed=i,
                                presence_penalty=rng.choice([0.0, 0.5]), max_tokens=rng.randint(1, 30))
        core.add_request(f"r{i}", prompt, params)
        live.append(f"r{i}")
        for _ in range(rng.randint(0, 3)):
            for out in core.step() if core.has_unfinished_requests() else []:
                if out.finished and out.request_id in live:
                    live.remove(out.request_id)
        if live and rng.random() < 0.4:
            core.abort_request(live.pop(rng.randrange(len(live))))
    while core.has_unfinished_requests():
        core.step()
    assert_all_blocks_free(llm)
    assert core.scheduler.num_preemptions > 0 and core.scheduler.kv.num_hit_tokens > 0
    assert core.scheduler.spec_decode_stats.num_draft_tokens > 0


def test_bad_configuration_raises_naming_the_field(model_dir, tmp_path):
    with pytest.raises(ValueError, match="num_speculative_tokens must be an int >= 0"):
        make_llm(model_dir, -1)
    with pytest.raises(ValueError, match="speculative_disable_by_batch_size must be a positive int"):
        make_llm(model_dir, 1, speculative_disable_by_batch_size=0)
    no_mtp = make_tiny_model_dir(tmp_path / "no_mtp", seed=2, with_mtp=False)
    with pytest.raises(ValueError, match="num_speculative_tokens=2: the checkpoint has no MTP layer"):
        make_llm(no_mtp, 2)


def test_speculation_uses_the_synchronous_loop_and_switches_off_above_a_batch_size(model_dir, greedy_case):
    prompts, max_tokens, expected = greedy_case
    llm = make_llm(model_dir, 2, async_scheduling=True, speculative_disable_by_batch_size=4)
    assert llm.engine.step_fn == llm.engine.step
    stats = llm.engine.scheduler.spec_decode_stats
    drafted_at: list[int] = []  # scheduled requests of each step that verified drafts
    execute = llm.engine.model_runner.execute_model

    def spy(scheduler_output):
        if any(s.spec_token_ids for s in scheduler_output.scheduled):
            drafted_at.append(len(scheduler_output.scheduled))
        return execute(scheduler_output)

    llm.engine.model_runner.execute_model = spy
    assert generate(llm, prompts[:12], greedy(max_tokens[:12])) == expected[:12]
    # Drafts made in a step of <= 4 requests are verified in the next, which may have admitted more; never two
    # steps in a row above the limit.
    assert stats.num_drafts > 0 and drafted_at and max(drafted_at) <= 4 + 1
    assert_all_blocks_free(llm)


@torch.inference_mode()
def test_drafting_resumes_below_the_batch_size_limit_with_the_mtp_kv_of_the_skipped_steps(model_dir):
    """Crossing speculative_disable_by_batch_size both ways: steps above the limit draft nothing and run no MTP
    pass; when the batch falls back under it, drafting resumes, and every draft equals a dense recomputation from
    the committed tokens, so the MTP KV of the positions decoded without drafting was filled (from the kept target
    hidden states). Output equals decoding without speculation."""
    rng = random.Random(8)
    prompts = [[rng.randrange(4, VOCAB) for _ in range(n)] for n in (40, 7, 90, 20, 33, 5)]
    max_tokens = [60, 12, 30, 18, 45, 25]
    expected = generate(make_llm(model_dir), prompts, greedy(max_tokens))
    k, limit = 3, 2
    llm = make_llm(model_dir, k, speculative_disable_by_batch_size=limit, max_model_len=320)
    core, runner = llm.engine, llm.engine.model_runner
    ids = [f"q{i}" for i in range(len(prompts))]
    oracle = OracleProposer(runner.proposer, {rid: p + e for rid, p, e in zip(ids, prompts, expected)}, corrupt=0.4)
    runner.proposer = oracle
    outputs: dict[str, list[int]] = {rid: [] for rid in ids}
    kept, num_steps_off, arrivals = [], 0, {0: [0], 4: [1, 2, 3], 30: [4, 5]}  # step -> requests added then
    step = 0
    while step == 0 or core.has_unfinished_requests():
        for i in arrivals.get(step, ()):
            core.add_request(ids[i], prompts[i], greedy([max_tokens[i]])[0])
        num_steps_off += oracle.is_disabled_for(len(core.scheduler.running) + len(core.scheduler.waiting))
        for out in core.step():
            outputs[out.request_id] += out.new_token_ids
        kept.append(len(oracle.backlog))
        step += 1
    assert [outputs[rid] for rid in ids] == expected
    assert num_steps_off > 5 and max(kept) >= 3 and kept[-1] == 0
    model = runner.model
    resumed = 0
    for request_id, last, real in oracle.records:
        committed = oracle.expected[request_id][: last + 2]
        assert list(real) == dense_mtp_drafts(model, committed, len(real)), (request_id, last)
        resumed += request_id in ("q0", "q2", "q4")
    assert resumed > 20
    assert_all_blocks_free(llm)
