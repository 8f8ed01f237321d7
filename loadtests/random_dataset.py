"""`--dataset-name random`: prompts of random English words with vLLM's length ranges.

With a tokenizer the prompts are cut to exactly the drawn number of tokens (re-counted after the cut); without
one, a prompt of N tokens is N words (about N tokens with a byte-level BPE) and its length is left unknown.
"""

from __future__ import annotations

import random

from loadtests.dataset_config import DatasetConfig
from loadtests.sample_request import SampleRequest
from loadtests.token_counter import TokenCounter
from loadtests.words import WORDS


def length_range(mean: int, range_ratio: float) -> tuple[int, int]:
    """Inclusive bounds [int(mean * (1 - r)), int(mean * (1 + r))] of a drawn length."""
    return int(mean * (1 - range_ratio)), int(mean * (1 + range_ratio))


def random_text(rng: random.Random, num_tokens: int, counter: TokenCounter | None) -> str:
    """Random words making `num_tokens` tokens (exactly, up to BPE merges at the cut, when `counter` is given)."""
    if num_tokens <= 0:
        return ""
    # Every word is at least one token, so num_tokens words are always enough to cut from.
    text = " ".join(rng.choice(WORDS) for _ in range(num_tokens))
    return counter.truncate(text, num_tokens) if counter is not None else text


def sample_random_requests(config: DatasetConfig, counter: TokenCounter | None) -> list[SampleRequest]:
    rng = random.Random(config.seed)
    in_low, in_high = length_range(config.random_input_len, config.random_range_ratio)
    out_low, out_high = length_range(config.random_output_len, config.random_range_ratio)
    prefix = random_text(rng, config.random_prefix_len, counter)
    requests = []
    for _ in range(config.num_prompts):
        input_len = rng.randint(in_low, in_high)
        output_len = max(1, rng.randint(out_low, out_high))
        body = random_text(rng, input_len, counter)
        prompt = f"{prefix} {body}" if prefix and body else prefix or body
        prompt_len = counter.count(prompt) if counter is not None else None
        requests.append(SampleRequest(prompt=prompt, prompt_len=prompt_len, expected_output_len=output_len))
    return requests
