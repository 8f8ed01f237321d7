"""`--dataset-name random`: prompts of random English words with vLLM's length ranges.

With a tokenizer, prompts are whole words adding up to exactly the drawn number of tokens (checked by counting
the finished prompt); without one, a prompt of N tokens is N words (about N tokens with a byte-level BPE) and its
length is left unknown.
"""

from __future__ import annotations

import random

from loadtests.dataset_config import DatasetConfig
from loadtests.sample_request import SampleRequest
from loadtests.token_counter import TokenCounter
from loadtests.words import WORDS

# Bound on the add/drop-a-word corrections after the first draft of a prompt.
MAX_FIXUPS = 64


def length_range(mean: int, range_ratio: float) -> tuple[int, int]:
    """Inclusive bounds [int(mean * (1 - r)), int(mean * (1 + r))] of a drawn length."""
    return int(mean * (1 - range_ratio)), int(mean * (1 + range_ratio))


def _one_token_words(counter: TokenCounter) -> list[str]:
    """Words costing one token in a sentence: the filler that makes an exact total reachable."""
    return [w for w in WORDS if counter.word_cost(w) == 1]


def random_words(rng: random.Random, num_tokens: int, counter: TokenCounter | None) -> list[str]:
    """Random words whose in-sentence token costs add up to `num_tokens` (one word per token without counter)."""
    if counter is None:
        return [rng.choice(WORDS) for _ in range(num_tokens)]
    cheap = _one_token_words(counter)
    words, used = [], 0
    while used < num_tokens:
        word = rng.choice(WORDS)
        if used + counter.word_cost(word) > num_tokens:
            if not cheap:
                break
            word = rng.choice(cheap)
        words.append(word)
        used += counter.word_cost(word)
    return words


def random_prompt(rng: random.Random, prefix: list[str], num_tokens: int, counter: TokenCounter | None) -> str:
    """`prefix` words then random words, `len(prefix tokens) + num_tokens` tokens in all when counted.

    NOTE: costs are additive because GLM-style pre-tokenizers split before each space-led word; the first word
    of a prompt (no leading space) can cost differently, so the finished prompt is counted and corrected by
    adding or dropping one-token words (or cut on a token boundary as a last resort).
    """
    body = random_words(rng, num_tokens, counter)
    if counter is None:
        return " ".join(prefix + body)
    target = (counter.count(" ".join(prefix)) if prefix else 0) + num_tokens
    cheap = _one_token_words(counter) or list(WORDS)
    for _ in range(MAX_FIXUPS):
        actual = counter.count(" ".join(prefix + body))
        if actual == target:
            break
        if actual > target and body:
            body.pop()
        else:
            body.append(rng.choice(cheap))
    text = " ".join(prefix + body)
    return text if counter.count(text) <= target else counter.truncate(text, target)


def sample_random_requests(config: DatasetConfig, counter: TokenCounter | None) -> list[SampleRequest]:
    rng = random.Random(config.seed)
    in_low, in_high = length_range(config.random_input_len, config.random_range_ratio)
    out_low, out_high = length_range(config.random_output_len, config.random_range_ratio)
    prefix = random_prompt(rng, [], config.random_prefix_len, counter).split()
    requests = []
    for _ in range(config.num_prompts):
        input_len = rng.randint(in_low, in_high)
        output_len = max(1, rng.randint(out_low, out_high))
        prompt = random_prompt(rng, prefix, input_len, counter)
        prompt_len = counter.count(prompt) if counter is not None else None
        requests.append(SampleRequest(prompt=prompt, prompt_len=prompt_len, expected_output_len=output_len))
    return requests
