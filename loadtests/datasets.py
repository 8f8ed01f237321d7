"""The dataset registry: `--dataset-name` -> the requests to send."""

from __future__ import annotations

from collections.abc import Callable

from loadtests.conversation_datasets import sample_chat_requests, sample_sharegpt_requests
from loadtests.dataset_config import DatasetConfig
from loadtests.random_dataset import sample_random_requests
from loadtests.sample_request import SampleRequest
from loadtests.token_counter import TokenCounter

SAMPLERS: dict[str, Callable[[DatasetConfig, TokenCounter | None], list[SampleRequest]]] = {
    "random": sample_random_requests,
    "chat": sample_chat_requests,
    "sharegpt": sample_sharegpt_requests,
}


def get_samples(config: DatasetConfig, counter: TokenCounter | None) -> list[SampleRequest]:
    """Exactly `config.num_prompts` requests, deterministic for a given seed, dataset and tokenizer."""
    samples = SAMPLERS[config.dataset_name](config, counter)
    assert len(samples) == config.num_prompts, (len(samples), config.num_prompts)
    return samples
