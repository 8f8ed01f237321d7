"""The whole engine on a tiny random GLM-4.5 checkpoint against transformers' greedy `generate` (the oracle).

Every configuration (big pool, a pool so small that preemption and chunked prefill happen, shared system prompts
served by the prefix cache, async scheduling) must give each prompt exactly the tokens transformers gives it alone.
The model runs in float64 on both sides so that batching-order rounding can never flip an argmax.
"""

from __future__ import annotations

import random

import pytest
import torch

from engine import LLM, SamplingParams
from model_factory import make_tiny_model_dir

VOCAB = 1000
EOS = (1, 2, 3)  # tests/model_factory.TINY_CONFIG


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_llm"), seed=11)


@pytest.fixture(scope="module")
def hf_model(model_dir):
    from transformers import Glm4MoeForCausalLM

    Glm4MoeForCausalLM._keys_to_ignore_on_load_unexpected = [r"model\.layers\.4\..*"]
    return Glm4MoeForCausalLM.from_pretrained(model_dir, dtype=torch.float64, experts_implementation="eager").eval()


def make_llm(model_dir, **kwargs) -> LLM:
    kwargs.setdefault("max_model_len", 1040)
    kwargs.setdefault("num_blocks_override", 1200)  # 19,200 tokens: the batches below fit without preemption
    return LLM(model=model_dir, dtype=torch.float64, device="cpu", **kwargs)


def hf_greedy(hf_model, prompt: list[int], max_tokens: int) -> list[int]:
    with torch.no_grad():
        out = hf_model.generate(torch.tensor([prompt]), max_new_tokens=max_tokens, do_sample=False,
                                eos_token_id=list(EOS), pad_token_id=0)
    return out[0, len(prompt):].tolist()


def mixed_prompts(seed: int = 0, num: int = 32, system: list[int] | None = None):
    rng = random.Random(seed)
    lengths = [1, 2, 15, 16, 17, 1000] + [rng.randint(1, 600) for _ in range(num - 6)]
    prompts = [(system or []) + [rng.randrange(4, VOCAB) for _ in range(n)] for n in lengths]
    max_tokens = [rng.randint(1, 12) for _ in prompts]
    return prompts, max_tokens


@pytest.fixture(scope="module")
def greedy_case(hf_model):
    prompts, max_tokens = mixed_prompts()
    return prompts, max_tokens, [hf_greedy(hf_model, p, m) for p, m in zip(prompts, max_tokens)]


def generate_ids(llm: LLM, prompts, params) -> list[list[int]]:
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    assert [o.prompt_token_ids for o in outs] == prompts
    return [o.outputs[0].token_ids for o in outs]


CONFIGS = {
    "default": dict(),
    "tiny_pool_preempt_chunked": dict(num_blocks_override=70, max_num_batched_tokens=96, max_num_seqs=8),
    "async": dict(async_scheduling=True, max_num_batched_tokens=512),
    "no_prefix_cache_no_chunking": dict(enable_prefix_caching=False, enable_chunked_prefill=False,
                                       max_num_batched_tokens=1040),
    # The default on CPU is the C++ decode kernel ("cpu"); the plain-PyTorch backend must match as well.
    "torch_attention_preempt": dict(attention_backend="torch", num_blocks_override=70, max_num_batched_tokens=96,
                                    max_num_seqs=8),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_batch_matches_transformers_alone(model_dir, greedy_case, name):
    prompts, max_tokens, expected = greedy_case
    llm = make_llm(model_dir, **CONFIGS[name])
    params = [SamplingParams(temperature=0, max_tokens=m) for m in max_tokens]
    assert generate_ids(llm, prompts, params) == expected
    expected_backend = "TorchPagedAttention" if "attention_backend" in CONFIGS[name] else "CpuPagedAttention"
    assert type(llm.engine.model_runner.attn).__name__ == expected_backend
    kv = llm.engine.scheduler.kv
    assert kv.num_free_blocks == kv.pool.num_blocks
    if name in ("tiny_pool_preempt_chunked", "torch_attention_preempt"):
        assert llm.engine.scheduler.num_preemptions > 0


def test_shared_system_prompts_hit_the_prefix_cache_and_match(model_dir, hf_model):
    rng = random.Random(5)
    system = [rng.randrange(4, VOCAB) for _ in range(70)]
    prompts, max_tokens = mixed_prompts(seed=3, num=10, system=system)
    prompts = [p[:400] for p in prompts]
    expected = [hf_greedy(hf_model, p, m) for p, m in zip(prompts, max_tokens)]
    llm = make_llm(model_dir, max_num_batched_tokens=256)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts],
                        [SamplingParams(temperature=0, max_tokens=m) for m in max_tokens], use_tqdm=False)
    assert [o.outputs[0].token_ids for o in outs] == expected
    assert llm.engine.scheduler.kv.num_hit_tokens >= 64 * 9  # 4 full blocks of the system prompt, 9 times
    assert sum(o.num_cached_tokens > 0 for o in outs) >= 9
    # The same batch again is served from the cache and still matches.
    assert generate_ids(llm, prompts, [SamplingParams(temperature=0, max_tokens=m) for m in max_tokens]) == expected


def sampled_params(seed: int, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.9, top_p=0.95, top_k=50, seed=seed, max_tokens=10, **kw)


def test_seeded_sampling_is_reproducible_across_batch_compositions_and_async(model_dir):
    rng = random.Random(9)
    target = [rng.randrange(4, VOCAB) for _ in range(37)]
    others = [[rng.randrange(4, VOCAB) for _ in range(rng.randint(1, 200))] for _ in range(6)]
    params = sampled_params(1234, presence_penalty=0.5, repetition_penalty=1.2, min_tokens=3)
    llm = make_llm(model_dir, max_num_batched_tokens=64)
    alone = generate_ids(llm, [target], [params])[0]
    mixed = generate_ids(llm, others[:3] + [target] + others[3:],
                         [sampled_params(i) for i in range(3)] + [params] + [sampled_params(i) for i in range(3, 6)])
    assert mixed[3] == alone
    overlapped = make_llm(model_dir, async_scheduling=True, max_num_batched_tokens=200, num_blocks_override=80)
    both = generate_ids(overlapped, [target] + others, [params] + [sampled_params(i) for i in range(6)])
    assert both[0] == alone and both[1:] == [mixed[i] for i in (0, 1, 2, 4, 5, 6)]
    assert generate_ids(llm, [target], [sampled_params(999)])[0] != alone  # the seed matters


def test_n_completions_share_the_prompt_and_differ(model_dir):
    llm = make_llm(model_dir)
    prompt = list(range(10, 60))
    (out,) = llm.generate({"prompt_token_ids": prompt}, SamplingParams(n=3, temperature=1.0, seed=7, max_tokens=8),
                          use_tqdm=False)
    assert [c.index for c in out.outputs] == [0, 1, 2]
    assert len({tuple(c.token_ids) for c in out.outputs}) == 3
    assert all(len(c.token_ids) == 8 or c.finish_reason == "stop" for c in out.outputs)
    assert llm.engine.scheduler.kv.num_hit_tokens >= 2 * 48  # children 1 and 2 reuse child 0's 3 full blocks


def test_logprobs_match_transformers_scores(model_dir, hf_model):
    llm = make_llm(model_dir)
    prompt = list(range(100, 140))
    (out,) = llm.generate({"prompt_token_ids": prompt}, SamplingParams(temperature=0, max_tokens=5, logprobs=3),
                          use_tqdm=False)
    c = out.outputs[0]
    with torch.no_grad():
        hf = hf_model.generate(torch.tensor([prompt]), max_new_tokens=5, do_sample=False, output_logits=True,
                               return_dict_in_generate=True, eos_token_id=list(EOS), pad_token_id=0)
    assert len(c.logprobs) == len(c.token_ids) == len(hf.logits)
    for token_id, entry, logits in zip(c.token_ids, c.logprobs, hf.logits):
        ref = torch.log_softmax(logits[0].double(), dim=-1)
        top = ref.topk(3)
        assert list(entry)[0] == token_id and entry[token_id].rank == 1
        assert [t for t in entry] == top.indices.tolist()  # greedy: the sampled token is the top-1
        for t, lp in zip(top.indices.tolist(), top.values.tolist()):
            assert entry[t].logprob == pytest.approx(lp, abs=1e-4)
    assert c.cumulative_logprob == pytest.approx(sum(e[t].logprob for t, e in zip(c.token_ids, c.logprobs)))


def test_bad_inputs_raise_naming_the_field(model_dir):
    llm = make_llm(model_dir, max_model_len=64)
    with pytest.raises(ValueError, match="prompt_token_ids.*max_model_len=64"):
        llm.generate({"prompt_token_ids": list(range(64))}, use_tqdm=False)
    with pytest.raises(ValueError, match="prompt_token_ids: token id 1000"):
        llm.generate({"prompt_token_ids": [5, 1000]}, use_tqdm=False)
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        llm.generate([{"prompt_token_ids": [5]}, {"ids": [5]}], use_tqdm=False)
    with pytest.raises(ValueError, match="text prompts need a tokenizer"):
        llm.generate("hello", use_tqdm=False)
    with pytest.raises(ValueError, match="sampling_params: got 2 for 1"):
        llm.generate([{"prompt_token_ids": [5]}], [SamplingParams(), SamplingParams()], use_tqdm=False)
    with pytest.raises(ValueError, match="num_blocks_override"):
        make_llm(model_dir, max_model_len=1000, num_blocks_override=10)
    with pytest.raises(ValueError, match="max_model_len .* exceeds"):
        make_llm(model_dir, max_model_len=4096)
    assert not llm.engine.has_unfinished_requests()
    # A failed batch leaves nothing behind: the next one runs normally.
    (out,) = llm.generate({"prompt_token_ids": [5, 6, 7]}, SamplingParams(max_tokens=64, ignore_eos=True),
                          use_tqdm=False)
    assert out.outputs[0].finish_reason == "length" and len(out.outputs[0].token_ids) == 61  # max_model_len cap


def test_default_model_is_the_embedded_checkpoint(tmp_path, monkeypatch):
    import engine.embedded_model as embedded
    from engine.llm import default_model_path

    assert default_model_path() == embedded.EMBEDDED_MODEL_DIR
    monkeypatch.setattr(embedded, "EMBEDDED_MODEL_DIR", tmp_path)  # an incomplete install: a clear error
    with pytest.raises(FileNotFoundError, match="embedded model file .*config.json is missing"):
        LLM()
