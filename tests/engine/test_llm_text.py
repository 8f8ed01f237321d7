"""LLM with a tokenizer: text prompts, incremental text, stop strings, EOS from the tokenizer's stop ids."""

from __future__ import annotations

import pytest
import torch

from engine import LLM, SamplingParams
from model_factory import make_tiny_model_dir

TEXTS = ["The quick brown fox jumps over the lazy dog.", "What is the weather in Paris today?",
         "def main():\n    print('hello world')\n", "café naïve 北京 😀"] * 4


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    from tokenizer.bpe_builder import build_glm_tokenizer

    path = make_tiny_model_dir(tmp_path_factory.mktemp("tiny_text"), seed=3, with_mtp=False)
    build_glm_tokenizer(TEXTS, path, vocab_size=600)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield LLM(model=path, device="cpu", max_model_len=256, num_blocks_override=64)
    torch.set_num_threads(previous)


def test_text_prompt_round_trip(llm):
    tok = llm.get_tokenizer()
    (out,) = llm.generate("The quick brown fox", SamplingParams(temperature=0, max_tokens=24, ignore_eos=True),
                          use_tqdm=False)
    assert out.prompt == "The quick brown fox"
    assert out.prompt_token_ids == tok.encode("The quick brown fox")
    c = out.outputs[0]
    assert len(c.token_ids) == 24 and c.finish_reason == "length"
    assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)


def test_stop_string_cuts_the_text_and_finishes_the_request(llm):
    tok = llm.get_tokenizer()
    params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    (free,) = llm.generate("What is the", params, use_tqdm=False)
    text = free.outputs[0].text
    visible = [ch for ch in text if ch.isprintable() and not ch.isspace()]
    assert len(visible) >= 4, f"the tiny model should write some visible text, got {text!r}"
    stop = text[text.index(visible[3]) : text.index(visible[3]) + 1]
    cut = text.index(stop)
    for include in (False, True):
        (out,) = llm.generate("What is the", SamplingParams(temperature=0, max_tokens=40, ignore_eos=True,
                                                            stop=[stop], include_stop_str_in_output=include),
                              use_tqdm=False)
        c = out.outputs[0]
        assert c.finish_reason == "stop" and c.stop_reason == stop
        assert c.text == (text[: cut + len(stop)] if include else text[:cut])
        assert c.token_ids == free.outputs[0].token_ids[: len(c.token_ids)] and len(c.token_ids) < 40
    assert not llm.engine.has_unfinished_requests()
    assert llm.engine.scheduler.kv.num_free_blocks == 64
    assert set(tok.stop_token_ids) <= set(llm.engine.eos_token_ids)
