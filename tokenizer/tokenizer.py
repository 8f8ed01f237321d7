"""A GLM-4.5 model directory's tokenizer: tokenizer.json, tokenizer_config.json, generation_config.json.

Every id comes from the files, none is hard-coded. Loading fails fast (ValueError) when the vocabulary lacks a GLM
added token or when a tag does not encode to its single added token (the parser relies on both).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HfTokenizer

from tokenizer.chat_template import ChatTemplate, find_template_source
from tokenizer.detokenizer import IncrementalDetokenizer
from tokenizer.generation_config import GenerationDefaults
from tokenizer.reasoning_tokens import count_reasoning_tokens
from tokenizer.special_tokens import ENDOFTEXT, GLM45_ADDED_TOKENS, GLM45_STOP_TOKENS, GlmTokenIds

logger = logging.getLogger(__name__)

# tokenizer_config.json keys that transformers passes to chat templates as variables.
_TEMPLATE_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class Tokenizer:
    def __init__(
        self,
        hf_tokenizer: HfTokenizer,
        config: Mapping[str, Any],
        generation: GenerationDefaults,
        chat_template_source: str | None,
    ) -> None:
        self.hf_tokenizer = hf_tokenizer
        self.config = dict(config)
        self.generation = generation
        self.glm = GlmTokenIds.resolve(hf_tokenizer)
        self._check_tags_encode_whole()
        self.special_token_ids: frozenset[int] = frozenset(
            token_id for token_id, token in hf_tokenizer.get_added_tokens_decoder().items() if token.special
        )
        self.eos_token_id: int = self._id_of(_token_content(config.get("eos_token")) or ENDOFTEXT)
        pad = _token_content(config.get("pad_token"))
        self.pad_token_id: int | None = self._id_of(pad) if pad else generation.pad_token_id
        self.stop_token_ids: tuple[int, ...] = self._stop_ids()
        self.template_tokens: dict[str, str] = {
            key: content for key in _TEMPLATE_TOKEN_KEYS if (content := _token_content(config.get(key)))
        }
        self.chat_template = (
            ChatTemplate(chat_template_source, self.template_tokens) if chat_template_source is not None else None
        )

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> Tokenizer:
        path = Path(model_dir)
        config_file = path / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        return cls(
            HfTokenizer.from_file(str(path / "tokenizer.json")),
            config,
            GenerationDefaults.from_file(path / "generation_config.json"),
            find_template_source(path),
        )

    @property
    def vocab_size(self) -> int:
        """Ids in use, added tokens included (a checkpoint's embedding table may be larger)."""
        return self.hf_tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Plain encoding: no BOS or other post-processing (the chat template writes `[gMASK]<sop>` itself).

        Lone surrogates (JSON allows `"\\ud800"`, and json.loads keeps them) cannot be encoded as UTF-8; they
        are replaced by U+FFFD rather than failing the request.
        """
        try:
            return self.hf_tokenizer.encode(text, add_special_tokens=False).ids
        except TypeError:
            if not isinstance(text, str):
                raise
            clean = text.encode("utf-16-le", errors="surrogatepass").decode("utf-16-le", errors="replace")
            return self.hf_tokenizer.encode(clean, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.hf_tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.hf_tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.hf_tokenizer.id_to_token(token_id)

    def apply_chat_template(
        self,
        messages: Sequence[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        **kwargs: Any,
    ) -> str:
        """The prompt text; kwargs (enable_thinking...) are template variables. See `ChatTemplate.render`."""
        if self.chat_template is None:
            raise ValueError("this model directory has no chat template")
        return self.chat_template.render(messages, tools, add_generation_prompt, **kwargs)

    def encode_chat(
        self,
        messages: Sequence[Any],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        **kwargs: Any,
    ) -> list[int]:
        return self.encode(self.apply_chat_template(messages, tools, add_generation_prompt, **kwargs))

    def detokenizer(
        self,
        *,
        skip_special_tokens: bool = True,
        stop_strings: Sequence[str] = (),
        include_stop_str_in_output: bool = False,
        hide_stop_tokens: bool = True,
        keep_token_ids: Collection[int] = (),
    ) -> IncrementalDetokenizer:
        """A detokenizer for one sequence; stop tokens are left out of the text unless `hide_stop_tokens=False`
        (e.g. with `ignore_eos`, when they are ordinary output). `skip_special_tokens` drops the special tokens
        except `keep_token_ids` (the chat route keeps `self.glm.parser_tag_ids` so the parser sees its tags).

        NOTE: skipping is done by leaving the ids out before decoding, which is what `tokenizers` does itself
        (special ids are dropped before the decoder runs), so the text is the same as `decode(...,
        skip_special_tokens=True)` apart from the kept ids."""
        hidden = set(self.stop_token_ids) if hide_stop_tokens else set()
        if skip_special_tokens:
            hidden |= self.special_token_ids.difference(keep_token_ids)
        return IncrementalDetokenizer(
            self.hf_tokenizer,
            skip_special_tokens=False,
            stop_strings=stop_strings,
            include_stop_str_in_output=include_stop_str_in_output,
            hidden_token_ids=hidden,
        )

    def count_reasoning_tokens(self, generated_ids: Sequence[int], thinking: bool = True) -> int:
        """`usage.completion_tokens_details.reasoning_tokens`; see `tokenizer.reasoning_tokens`."""
        if not thinking:
            return 0
        return count_reasoning_tokens(
            generated_ids,
            think_start_id=self.glm.think_start,
            think_end_id=self.glm.think_end,
            decode=self.decode,
        )

    def _id_of(self, token: str) -> int:
        token_id = self.hf_tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"token {token!r} named in tokenizer_config.json is not in the vocabulary")
        return token_id

    def _check_tags_encode_whole(self) -> None:
        for spec in GLM45_ADDED_TOKENS:
            token_id = self.hf_tokenizer.token_to_id(spec.content)
            if token_id is None:
                continue  # media markers are optional; the tokens the server needs were checked by GlmTokenIds
            if self.hf_tokenizer.encode(spec.content, add_special_tokens=False).ids != [token_id]:
                raise ValueError(f"{spec.content!r} does not encode to its added token {token_id}")

    def _stop_ids(self) -> tuple[int, ...]:
        """generation_config `eos_token_id`, completed with any GLM stop token it lacks (stopping on
        `<|endoftext|>` alone runs past `<|observation|>` and the model writes the tool result itself)."""
        ids = list(self.generation.eos_token_ids) or [self.eos_token_id]
        for token in GLM45_STOP_TOKENS:
            token_id = self._id_of(token)
            if token_id not in ids:
                logger.warning("generation_config.json lacks stop token %s (id %d); adding it", token, token_id)
                ids.append(token_id)
        for token_id in ids:
            if not 0 <= token_id < self.vocab_size:
                raise ValueError(f"stop id {token_id} is outside the vocabulary (size {self.vocab_size})")
        return tuple(ids)


def _token_content(token: Any) -> str | None:
    """tokenizer_config writes a token as a string or as an AddedToken-like dict with `content`."""
    if isinstance(token, str):
        return token
    content = token.get("content") if isinstance(token, Mapping) else None
    return content if isinstance(content, str) else None
