"""Loading a model directory: ids, special tokens, stop ids, template helper."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tokenizer import GLM45_ADDED_TOKENS, GenerationDefaults, Tokenizer


def test_ids_are_resolved_from_the_tokenizer(glm_tokenizer: Tokenizer) -> None:
    glm = glm_tokenizer.glm
    first = glm_tokenizer.token_to_id("<|endoftext|>")
    assert first is not None
    # The family's order: the 36 added tokens are consecutive, after the trained vocabulary.
    assert [glm_tokenizer.token_to_id(spec.content) for spec in GLM45_ADDED_TOKENS] == list(range(first, first + 36))
    assert glm_tokenizer.vocab_size == first + 36
    assert (glm.endoftext, glm.user, glm.observation) == (first, first + 7, first + 9)
    assert (glm.think_start, glm.think_end, glm.nothink) == (first + 21, first + 22, first + 31)
    assert glm_tokenizer.id_to_token(glm.tool_call_start) == "<tool_call>"


def test_stop_ids_eos_and_special_tokens(glm_tokenizer: Tokenizer) -> None:
    glm = glm_tokenizer.glm
    assert glm_tokenizer.stop_token_ids == (glm.endoftext, glm.user, glm.observation)
    assert glm_tokenizer.eos_token_id == glm_tokenizer.pad_token_id == glm.endoftext
    assert {glm.endoftext, glm.gmask, glm.user, glm.assistant, glm.observation} <= glm_tokenizer.special_token_ids
    assert not {glm.think_start, glm.tool_call_start, glm.arg_value_end, glm.nothink} & glm_tokenizer.special_token_ids
    assert glm_tokenizer.template_tokens == {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}


def test_tags_inside_text_are_single_tokens(glm_tokenizer: Tokenizer) -> None:
    glm = glm_tokenizer.glm
    ids = glm_tokenizer.encode("value </arg_value> inside")
    assert glm.arg_value_end in ids
    assert glm_tokenizer.decode(ids) == "value </arg_value> inside"
    assert glm_tokenizer.encode("hi /nothink")[-1] == glm.nothink


def test_encode_chat_and_lone_surrogates(glm_tokenizer: Tokenizer) -> None:
    ids = glm_tokenizer.encode_chat([{"role": "user", "content": "hi"}], enable_thinking=False)
    assert ids[:2] == [glm_tokenizer.glm.gmask, glm_tokenizer.glm.sop]
    assert glm_tokenizer.decode(ids).endswith("<|assistant|>\n<think></think>")
    assert glm_tokenizer.decode(glm_tokenizer.encode("a\ud800b")) == "a\ufffdb"


def test_reasoning_token_count(glm_tokenizer: Tokenizer) -> None:
    glm = glm_tokenizer.glm
    output = glm_tokenizer.encode("\n<think>some thoughts</think>\nanswer")
    think_span = output[output.index(glm.think_start) : output.index(glm.think_end) + 1]
    assert glm_tokenizer.count_reasoning_tokens(output) == len(think_span)
    assert glm_tokenizer.count_reasoning_tokens(output, thinking=False) == 0
    truncated = glm_tokenizer.encode("\n<think>never closed")
    assert glm_tokenizer.count_reasoning_tokens(truncated) == len(truncated) - 1
    assert glm_tokenizer.count_reasoning_tokens(glm_tokenizer.encode("Answer with <think> in it</think>")) == 0
    assert glm_tokenizer.count_reasoning_tokens([]) == 0


def test_missing_generation_config_falls_back_to_the_glm_stop_tokens(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / "generation_config.json").unlink()
    tokenizer = Tokenizer.from_model_dir(copy)
    glm = tokenizer.glm
    assert tokenizer.stop_token_ids == (glm.endoftext, glm.user, glm.observation)
    (copy / "generation_config.json").write_text(json.dumps({"eos_token_id": glm.endoftext, "temperature": 0.6}))
    assert Tokenizer.from_model_dir(copy).stop_token_ids == (glm.endoftext, glm.user, glm.observation)
    assert GenerationDefaults.from_file(copy / "generation_config.json").temperature == 0.6


def test_a_tokenizer_without_glm_tokens_fails_fast(model_dir: Path, tmp_path: Path) -> None:
    data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    data["added_tokens"] = [token for token in data["added_tokens"] if token["content"] != "</arg_value>"]
    copy = tmp_path / "broken"
    shutil.copytree(model_dir, copy)
    (copy / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="</arg_value>"):
        Tokenizer.from_model_dir(copy)


def test_no_heavy_imports() -> None:
    import subprocess
    import sys

    code = "import sys, tokenizer; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
