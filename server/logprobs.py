"""Engine logprobs -> the two OpenAI wire shapes (chat `logprobs.content[]`, legacy completions' parallel lists).

Token text is each id decoded alone with special tokens kept (vLLM's choice; OpenAI shows decoded text, not BPE
symbols); `bytes` is its UTF-8 encoding. A token that is only part of a multi-byte character decodes to U+FFFD.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from engine.outputs import SampledLogprobs
from tokenizer.tokenizer import Tokenizer


class TokenTexts:
    def __init__(self, tokenizer: Tokenizer, cache_size: int = 65536) -> None:
        self._decode = lru_cache(maxsize=cache_size)(self._decode_one)
        self._tokenizer = tokenizer

    def _decode_one(self, token_id: int) -> str:
        return self._tokenizer.decode([token_id], skip_special_tokens=False)

    def __call__(self, token_id: int) -> str:
        return self._decode(token_id)


def _entry(text: str, logprob: float) -> dict[str, Any]:
    return {"token": text, "logprob": max(logprob, -9999.0), "bytes": list(text.encode("utf-8"))}


def chat_logprobs(token_ids: Sequence[int], logprobs: Sequence[SampledLogprobs], texts: TokenTexts,
                  num_top: int) -> dict[str, Any]:
    """`{"content": [{token, logprob, bytes, top_logprobs: [...]}, ...]}` for the given tokens."""
    content = []
    for token_id, lp in zip(token_ids, logprobs):
        entry = _entry(texts(token_id), lp.logprob)
        entry["top_logprobs"] = [_entry(texts(tid), value)
                                 for tid, value in list(zip(lp.top_token_ids, lp.top_logprobs))[:num_top]]
        content.append(entry)
    return {"content": content}


def completion_logprobs(token_ids: Sequence[int], logprobs: Sequence[SampledLogprobs], texts: TokenTexts,
                        num_top: int, text_offset: int) -> dict[str, Any]:
    """`{tokens, token_logprobs, top_logprobs: [{text: logprob}], text_offset}` (legacy completions)."""
    tokens, token_logprobs, tops, offsets = [], [], [], []
    offset = text_offset
    for token_id, lp in zip(token_ids, logprobs):
        text = texts(token_id)
        tokens.append(text)
        token_logprobs.append(max(lp.logprob, -9999.0))
        top = {text: max(lp.logprob, -9999.0)}
        for tid, value in list(zip(lp.top_token_ids, lp.top_logprobs))[:num_top]:
            top.setdefault(texts(tid), max(value, -9999.0))
        tops.append(top)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops, "text_offset": offsets}
