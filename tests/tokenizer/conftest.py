"""Shared fixtures: a tiny GLM-4.5-style tokenizer trained into a temporary model directory, and the parser
corpus (tests/tokenizer/data/tool_cases.json, a copy of the reference cases)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from parser_harness import load_tool_cases

from tokenizer import Tokenizer
from tokenizer.bpe_builder import DEFAULT_CHAT_TEMPLATE_PATH, build_glm_tokenizer

TINY_VOCAB_SIZE = 1024


def training_texts() -> list[str]:
    """Small and fast, but with the markup, code, JSON and non-ASCII text the tests push through it."""
    cases = load_tool_cases()
    texts = [case["model_output"] for case in cases]
    texts += [json.dumps(case["tools"], ensure_ascii=False) for case in cases if case["tools"]]
    texts.append(DEFAULT_CHAT_TEMPLATE_PATH.read_text(encoding="utf-8"))
    texts += [
        "The quick brown fox jumps over the lazy dog. What is the weather in Paris today?",
        "北京是中国的首都。東京は日本の首都です。café naïve façade — “quoted” 😀🎉",
        "def main():\n    print('hello world')\n    return 0\n",
    ] * 3
    return texts


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_glm_tokenizer(training_texts(), tmp_path_factory.mktemp("tiny_glm"), vocab_size=TINY_VOCAB_SIZE)


@pytest.fixture(scope="session")
def glm_tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer.from_model_dir(model_dir)


@pytest.fixture(scope="session")
def tool_cases() -> list[dict[str, Any]]:
    return load_tool_cases()
