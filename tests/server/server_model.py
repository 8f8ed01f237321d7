"""A tiny random GLM-4.5 model directory with a trained GLM-style tokenizer, for server tests.

The model's vocabulary covers the tokenizer's, and config.json's eos ids are the tokenizer's three stop ids (the
model factory's defaults are plain token ids of a different vocabulary).
"""

from __future__ import annotations

from pathlib import Path

from model_factory import make_tiny_model_dir

from tokenizer.bpe_builder import DEFAULT_CHAT_TEMPLATE_PATH, train_glm_bpe, write_model_dir
from tokenizer.special_tokens import ENDOFTEXT, GLM45_STOP_TOKENS

VOCAB_SIZE = 640


def training_texts() -> list[str]:
    texts = [
        DEFAULT_CHAT_TEMPLATE_PATH.read_text(encoding="utf-8"),
        "The quick brown fox jumps over the lazy dog. What is the weather in Paris today? It is sunny.",
        "Let me think about it. The answer is 4. Two plus two equals four.",
        '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}',
        "北京 café naïve — “quoted” 😀",
    ]
    return texts * 4


def make_server_model_dir(path: Path, seed: int = 0, **overrides: object) -> Path:
    tokenizer = train_glm_bpe(training_texts(), vocab_size=VOCAB_SIZE)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    stop_ids = [tokenizer.token_to_id(token) for token in GLM45_STOP_TOKENS]
    make_tiny_model_dir(path, seed=seed, vocab_size=vocab, eos_token_id=stop_ids,
                        pad_token_id=tokenizer.token_to_id(ENDOFTEXT), **overrides)
    write_model_dir(tokenizer, path)  # after the model: its generation_config.json (stop ids) wins
    return path
