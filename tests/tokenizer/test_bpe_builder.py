"""The tokenizer builder: model-directory layout, determinism, transformers compatibility."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenizer import GLM45_ADDED_TOKENS, Tokenizer
from tokenizer.bpe_builder import DEFAULT_CHAT_TEMPLATE_PATH, build_glm_tokenizer

CORPUS = ["hello world, hello tokenizer", "北京 café 😀", "def f(x):\n    return x + 1\n"] * 4


def test_files_and_added_tokens(model_dir: Path) -> None:
    config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    generation = json.loads((model_dir / "generation_config.json").read_text(encoding="utf-8"))
    decoder = config["added_tokens_decoder"]
    assert [entry["content"] for entry in decoder.values()] == [spec.content for spec in GLM45_ADDED_TOKENS]
    assert [entry["special"] for entry in decoder.values()] == [spec.special for spec in GLM45_ADDED_TOKENS]
    assert config["chat_template"] == DEFAULT_CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    assert config["eos_token"] == config["pad_token"] == "<|endoftext|>"
    ids = {entry["content"]: int(token_id) for token_id, entry in decoder.items()}
    assert generation["eos_token_id"] == [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]]
    assert generation["pad_token_id"] == ids["<|endoftext|>"]


def test_deterministic(tmp_path: Path) -> None:
    first = build_glm_tokenizer(CORPUS, tmp_path / "a", vocab_size=400, min_frequency=1)
    second = build_glm_tokenizer(CORPUS, tmp_path / "b", vocab_size=400, min_frequency=1)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_vocab_size_bound_and_byte_coverage(tmp_path: Path) -> None:
    out = build_glm_tokenizer(
        CORPUS * 10,
        tmp_path / "tok",
        vocab_size=300,
        min_frequency=1,
        generation_defaults={"temperature": 0.6, "top_p": 0.95},
    )
    tokenizer = Tokenizer.from_model_dir(out)
    assert tokenizer.vocab_size <= 300
    unseen = "Ωμέγα ☃ \x00\x7f 𝔘"
    assert tokenizer.decode(tokenizer.encode(unseen)) == unseen  # every byte is in the base alphabet
    assert tokenizer.generation.temperature == 0.6 and tokenizer.generation.top_p == 0.95
    with pytest.raises(ValueError):
        build_glm_tokenizer(CORPUS, tmp_path / "small", vocab_size=100)


def test_transformers_loads_it(model_dir: Path, glm_tokenizer: Tokenizer) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    text = "<|user|>\nhi <think>x</think> 北京<|assistant|>"
    assert hf.encode(text, add_special_tokens=False) == glm_tokenizer.encode(text)
    assert hf.eos_token == "<|endoftext|>"
