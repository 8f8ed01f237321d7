"""GLM-4.5 added tokens: the family's table, and their ids resolved from a loaded tokenizer.

Ids are never hard-coded: a real checkpoint puts these 36 tokens at 151329-151364, the small test and embedded
tokenizers built by `bpe_builder` put them after their own vocabularies. Everything that needs an id asks
`GlmTokenIds`, which reads it from the tokenizer at load time and fails fast when a token is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class AddedTokenSpec:
    content: str
    special: bool
    """Special tokens are removed by `decode(skip_special_tokens=True)`; the tag tokens are added but not special."""


# The family's added-token order (ids 151329-151364 in GLM-4.5/4.6 checkpoints). Roles, masks and media markers
# are special; the code markers, the reasoning/tool tags, `/nothink` and the box/placeholder markers are not.
GLM45_ADDED_TOKENS: tuple[AddedTokenSpec, ...] = tuple(
    AddedTokenSpec(content, special)
    for content, special in (
        ("<|endoftext|>", True),
        ("[MASK]", True),
        ("[gMASK]", True),
        ("[sMASK]", True),
        ("<sop>", True),
        ("<eop>", True),
        ("<|system|>", True),
        ("<|user|>", True),
        ("<|assistant|>", True),
        ("<|observation|>", True),
        ("<|begin_of_image|>", True),
        ("<|end_of_image|>", True),
        ("<|begin_of_video|>", True),
        ("<|end_of_video|>", True),
        ("<|begin_of_audio|>", True),
        ("<|end_of_audio|>", True),
        ("<|begin_of_transcription|>", True),
        ("<|end_of_transcription|>", True),
        ("<|code_prefix|>", False),
        ("<|code_middle|>", False),
        ("<|code_suffix|>", False),
        ("<think>", False),
        ("</think>", False),
        ("<tool_call>", False),
        ("</tool_call>", False),
        ("<tool_response>", False),
        ("</tool_response>", False),
        ("<arg_key>", False),
        ("</arg_key>", False),
        ("<arg_value>", False),
        ("</arg_value>", False),
        ("/nothink", False),
        ("<|begin_of_box|>", False),
        ("<|end_of_box|>", False),
        ("<|image|>", False),
        ("<|video|>", False),
    )
)

ENDOFTEXT = "<|endoftext|>"
USER = "<|user|>"
OBSERVATION = "<|observation|>"
# Generation stops on these three (generation_config `eos_token_id`); the tokenizer's own eos is only the first.
GLM45_STOP_TOKENS: tuple[str, ...] = (ENDOFTEXT, USER, OBSERVATION)


class _TokenLookup(Protocol):
    def token_to_id(self, token: str) -> int | None: ...


@dataclass(frozen=True)
class GlmTokenIds:
    """Ids of the tokens the server and the parser reason about, read from one tokenizer."""

    endoftext: int
    gmask: int
    sop: int
    system: int
    user: int
    assistant: int
    observation: int
    think_start: int
    think_end: int
    tool_call_start: int
    tool_call_end: int
    arg_key_start: int
    arg_key_end: int
    arg_value_start: int
    arg_value_end: int
    nothink: int

    @classmethod
    def resolve(cls, tokenizer: _TokenLookup) -> GlmTokenIds:
        """Raises ValueError naming every GLM token the vocabulary lacks (not a GLM-4.5 tokenizer)."""
        names = {
            "endoftext": ENDOFTEXT,
            "gmask": "[gMASK]",
            "sop": "<sop>",
            "system": "<|system|>",
            "user": USER,
            "assistant": "<|assistant|>",
            "observation": OBSERVATION,
            "think_start": "<think>",
            "think_end": "</think>",
            "tool_call_start": "<tool_call>",
            "tool_call_end": "</tool_call>",
            "arg_key_start": "<arg_key>",
            "arg_key_end": "</arg_key>",
            "arg_value_start": "<arg_value>",
            "arg_value_end": "</arg_value>",
            "nothink": "/nothink",
        }
        ids = {field: tokenizer.token_to_id(token) for field, token in names.items()}
        missing = [names[field] for field, token_id in ids.items() if token_id is None]
        if missing:
            raise ValueError(f"tokenizer is not a GLM-4.5 tokenizer: missing added tokens {missing}")
        return cls(**ids)  # type: ignore[arg-type]

    @property
    def parser_tag_ids(self) -> frozenset[int]:
        """The tags the output parser reads (think, tool_call, arg_key, arg_value; open and close). GLM-4.5 marks
        them not special, but a checkpoint that did would lose them under `skip_special_tokens=True`: the chat
        route's detokenizer keeps these whatever the flag says (`Tokenizer.detokenizer(keep_token_ids=...)`)."""
        return frozenset((self.think_start, self.think_end, self.tool_call_start, self.tool_call_end,
                          self.arg_key_start, self.arg_key_end, self.arg_value_start, self.arg_value_end))
