"""Client-side token counting with the `tokenizers` library (`--tokenizer`): a model directory or a tokenizer.json.

Only used to size prompts and to plan `max_tokens`; measured output tokens always come from the server's usage.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Encoding, Tokenizer


class TokenCounter:
    """Counts tokens of plain text (no special tokens, no chat template)."""

    def __init__(self, tokenizer: Tokenizer, name: str) -> None:
        self._tokenizer = tokenizer
        self.name = name  # what --tokenizer named, recorded in the result file as tokenizer_id
        self._word_costs: dict[str, int] = {}

    @classmethod
    def from_path(cls, path: str | Path) -> TokenCounter:
        """`path` is a directory holding tokenizer.json, or the tokenizer.json file itself."""
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ValueError(f"--tokenizer: no tokenizer.json at {path}")
        return cls(Tokenizer.from_file(str(file)), str(path))

    def encode(self, text: str) -> Encoding:
        return self._tokenizer.encode(text, add_special_tokens=False)

    def count(self, text: str) -> int:
        return len(self.encode(text).ids)

    def word_cost(self, word: str) -> int:
        """Tokens of `word` after a space, i.e. inside a sentence (cached)."""
        cost = self._word_costs.get(word)
        if cost is None:
            cost = self._word_costs[word] = self.count(" " + word)
        return cost

    def truncate(self, text: str, num_tokens: int) -> str:
        """The longest prefix of `text` that ends on the boundary after its first `num_tokens` tokens.

        NOTE: re-encoding the prefix usually gives exactly `num_tokens` tokens, but BPE merges across the cut can
        change the count by one; callers re-count and record the true length.
        """
        if num_tokens <= 0:
            return ""
        offsets = self.encode(text).offsets
        if num_tokens >= len(offsets):
            return text
        return text[: offsets[num_tokens - 1][1]]
