"""Which prompts to send: the dataset flags of `vllm bench serve`, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATASET_NAMES = ("random", "chat", "sharegpt")

# Where the embedded model's held-out conversations live (JSONL); `--dataset-name chat` defaults to it.
DEFAULT_CHAT_DATASET_DIR = Path(__file__).resolve().parents[1] / "engine" / "embedded"


@dataclass(frozen=True)
class DatasetConfig:
    # One of DATASET_NAMES.
    dataset_name: str = "random"
    # ShareGPT JSON file (required for sharegpt); a JSONL file or a directory of them for chat (default:
    # DEFAULT_CHAT_DATASET_DIR); ignored by random.
    dataset_path: Path | None = None
    # Number of requests to produce (conversation datasets repeat entries when they hold fewer).
    num_prompts: int = 1000
    # Seed of the dataset's own random.Random (prompt words, lengths, shuffling).
    seed: int = 0
    # random: mean prompt tokens (shared prefix excluded), mean max_tokens, and the +/- ratio of both ranges:
    # lengths are uniform integers in [int(L * (1 - r)), int(L * (1 + r))], as vLLM's random dataset.
    random_input_len: int = 1024
    random_output_len: int = 128
    random_range_ratio: float = 0.0
    # random: tokens of one random prefix shared by every prompt (exercises prefix caching); 0 = none.
    random_prefix_len: int = 0
    # sharegpt / chat: fixed max_tokens for every request instead of the recorded reply's length.
    sharegpt_output_len: int | None = None
    chat_output_len: int | None = None

    def __post_init__(self) -> None:
        if self.dataset_name not in DATASET_NAMES:
            raise ValueError(f"dataset_name must be one of {DATASET_NAMES}, got {self.dataset_name!r}")
        if self.num_prompts < 1:
            raise ValueError(f"num_prompts must be >= 1, got {self.num_prompts}")
        if self.random_input_len < 0:
            raise ValueError(f"random_input_len must be >= 0, got {self.random_input_len}")
        if self.random_output_len < 1:
            raise ValueError(f"random_output_len must be >= 1, got {self.random_output_len}")
        if not 0.0 <= self.random_range_ratio < 1.0:
            raise ValueError(f"random_range_ratio must be in [0, 1), got {self.random_range_ratio}")
        if self.random_prefix_len < 0:
            raise ValueError(f"random_prefix_len must be >= 0, got {self.random_prefix_len}")
        if self.random_prefix_len + int(self.random_input_len * (1 - self.random_range_ratio)) < 1:
            raise ValueError("random_input_len: every prompt needs at least one token (raise it or the prefix)")
        for name in ("sharegpt_output_len", "chat_output_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.dataset_name == "sharegpt" and self.dataset_path is None:
            raise ValueError("dataset_path is required with dataset_name 'sharegpt' (a ShareGPT JSON file)")
