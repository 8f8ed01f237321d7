"""GLM-4.5 tokenizer, chat template, detokenizer and output parser.

No torch here: the server imports this package in its API process.
"""

from tokenizer.chat_template import ChatTemplate, ChatTemplateError
from tokenizer.detokenizer import DetokenizerOutput, IncrementalDetokenizer
from tokenizer.forced_calls import ForcedCall, InvalidToolChoiceError, forced_call_for
from tokenizer.generation_config import GenerationDefaults
from tokenizer.messages import InvalidMessageError, normalize_messages
from tokenizer.output_parser import (
    Delta,
    OutputParser,
    ParsedOutput,
    ParsedToolCall,
    new_tool_call_id,
    parse_output,
)
from tokenizer.reasoning_tokens import count_reasoning_tokens
from tokenizer.special_tokens import GLM45_ADDED_TOKENS, GlmTokenIds
from tokenizer.stop_strings import StopStringMatcher
from tokenizer.tokenizer import Tokenizer

__all__ = [
    "GLM45_ADDED_TOKENS",
    "ChatTemplate",
    "ChatTemplateError",
    "Delta",
    "DetokenizerOutput",
    "ForcedCall",
    "GenerationDefaults",
    "GlmTokenIds",
    "IncrementalDetokenizer",
    "InvalidMessageError",
    "InvalidToolChoiceError",
    "OutputParser",
    "ParsedOutput",
    "ParsedToolCall",
    "StopStringMatcher",
    "Tokenizer",
    "count_reasoning_tokens",
    "forced_call_for",
    "new_tool_call_id",
    "normalize_messages",
    "parse_output",
]
