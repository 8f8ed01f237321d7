"""Train a small GLM-4.5-style byte-level BPE tokenizer and write it as a model directory.

Used by the tests (a tiny vocabulary built into a temporary directory) and later to train the tokenizer of the
project's embedded small model. The output has the layout of a GLM-4.5 checkpoint's tokenizer files:

- `tokenizer.json`: byte-level BPE (every byte is in the base alphabet, so any text encodes), the GLM pre-split
  regex, then the 36 added tokens of `GLM45_ADDED_TOKENS` appended after the trained vocabulary in family order;
- `tokenizer_config.json`: `added_tokens_decoder`, eos/pad `<|endoftext|>`, the chat template;
- `generation_config.json`: `eos_token_id` = ids of `<|endoftext|>`, `<|user|>`, `<|observation|>`.

Training is deterministic: the same texts (in the same order) and settings give byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HfTokenizer

from tokenizer.special_tokens import ENDOFTEXT, GLM45_ADDED_TOKENS, GLM45_STOP_TOKENS

# GLM-4's pre-tokenisation split (the cl100k-style pattern): contractions, letter runs with one leading
# non-letter, digit groups of up to three, punctuation runs, newline runs, other whitespace.
GLM_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

DEFAULT_CHAT_TEMPLATE_PATH = Path(__file__).with_name("glm45_chat_template.jinja")


def train_glm_bpe(texts: Iterable[str], *, vocab_size: int = 8192, min_frequency: int = 2) -> HfTokenizer:
    """Train a byte-level BPE on `texts` and append the GLM-4.5 added tokens.

    `vocab_size` counts everything, added tokens included (the trainer may stop short of it on a small corpus).
    """
    num_added = len(GLM45_ADDED_TOKENS)
    base_alphabet_size = len(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size < base_alphabet_size + num_added:
        raise ValueError(f"vocab_size must be at least {base_alphabet_size + num_added}, got {vocab_size}")

    tokenizer = HfTokenizer(models.BPE(byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GLM_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - num_added,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)

    # One token per call so ids follow the family order even though special and plain tokens interleave.
    for spec in GLM45_ADDED_TOKENS:
        token = AddedToken(spec.content, special=spec.special, normalized=False, lstrip=False, rstrip=False)
        if spec.special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
    return tokenizer


def write_model_dir(
    tokenizer: HfTokenizer,
    out_dir: str | Path,
    *,
    chat_template: str | None = None,
    model_max_length: int = 131072,
    generation_defaults: Mapping[str, Any] | None = None,
) -> Path:
    """Write tokenizer.json, tokenizer_config.json and generation_config.json into `out_dir` (created if needed).

    `chat_template` defaults to the packaged GLM-4.5 template; `generation_defaults` (e.g. temperature, top_p)
    are added to generation_config.json next to the eos/pad ids.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if chat_template is None:
        chat_template = DEFAULT_CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")

    def token_id(content: str) -> int:
        found = tokenizer.token_to_id(content)
        if found is None:
            raise ValueError(f"tokenizer lacks the GLM added token {content!r}")
        return found

    tokenizer.save(str(out / "tokenizer.json"))
    added_tokens_decoder = {
        str(token_id(spec.content)): {
            "content": spec.content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": spec.special,
        }
        for spec in GLM45_ADDED_TOKENS
    }
    tokenizer_config = {
        "added_tokens_decoder": added_tokens_decoder,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "eos_token": ENDOFTEXT,
        "model_max_length": model_max_length,
        "pad_token": ENDOFTEXT,
        "padding_side": "left",
        "remove_space": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    generation_config: dict[str, Any] = {
        "eos_token_id": [token_id(token) for token in GLM45_STOP_TOKENS],
        "pad_token_id": token_id(ENDOFTEXT),
        **(generation_defaults or {}),
    }
    _write_json(out / "tokenizer_config.json", tokenizer_config)
    _write_json(out / "generation_config.json", generation_config)
    return out


def build_glm_tokenizer(
    texts: Iterable[str],
    out_dir: str | Path,
    *,
    vocab_size: int = 8192,
    min_frequency: int = 2,
    chat_template: str | None = None,
    model_max_length: int = 131072,
    generation_defaults: Mapping[str, Any] | None = None,
) -> Path:
    """Train on `texts` and write a model-directory-style tokenizer into `out_dir`; returns the directory."""
    tokenizer = train_glm_bpe(texts, vocab_size=vocab_size, min_frequency=min_frequency)
    return write_model_dir(
        tokenizer,
        out_dir,
        chat_template=chat_template,
        model_max_length=model_max_length,
        generation_defaults=generation_defaults,
    )


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
