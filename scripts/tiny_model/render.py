"""Conversations -> the exact text the server would render, split into prompt and model-output segments.

Rendering goes through the project's own `tokenizer.chat_template.ChatTemplate` with GLM-4.5's template. A model
output is what the engine would generate after the generation prompt: for the assistant turn at message i it is
`render(messages[:i+1])` minus `render(messages[:i], add_generation_prompt=True)`, followed by the stop token the
model must learn to emit: `<|observation|>` after tool calls, `<|user|>` after an answer. Only assistant turns after
the last user message are outputs with thinking on: earlier ones lose their reasoning in the template (history
rule) and stay prompt. With thinking off every assistant turn renders as the model would write it, so all are outputs.
"""

from __future__ import annotations

from pathlib import Path

from scripts.tiny_model.conversations import Conversation
from tokenizer.chat_template import ChatTemplate
from tokenizer.special_tokens import OBSERVATION, USER

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "tokenizer" / "glm45_chat_template.jinja"

Segment = tuple[str, bool]  # (text, is_model_output)


class ConversationRenderer:
    def __init__(self, template_source: str | None = None) -> None:
        self.template = ChatTemplate(template_source or TEMPLATE_PATH.read_text(encoding="utf-8"))

    def render(self, conv: Conversation, num_messages: int, add_generation_prompt: bool) -> str:
        return self.template.render(conv.messages[:num_messages], tools=conv.tools or None,
                                    add_generation_prompt=add_generation_prompt,
                                    enable_thinking=conv.enable_thinking)

    def prompt(self, conv: Conversation) -> str:
        """The text the evaluated turn is generated from."""
        return self.render(conv, conv.target_index, add_generation_prompt=True)

    def segments(self, conv: Conversation) -> list[Segment]:
        """Prompt and output segments whose concatenation is the whole conversation plus the final stop token."""
        users = [i for i, m in enumerate(conv.messages) if m["role"] == "user"]
        if not users:
            raise ValueError("conversation.messages: needs a user message")
        out: list[Segment] = []
        done = 0  # characters of the full text already covered by segments
        first = users[-1] + 1 if conv.enable_thinking else 0
        for i in range(first, len(conv.messages)):
            message = conv.messages[i]
            if message["role"] != "assistant":
                continue
            prefix = self.render(conv, i, add_generation_prompt=True)
            full = self.render(conv, i + 1, add_generation_prompt=False)
            if not full.startswith(prefix) or len(prefix) < done:
                raise ValueError(f"messages[{i}]: rendering is not prefix-stable; cannot split the output")
            stop = OBSERVATION if message.get("tool_calls") else USER
            out.append((prefix[done:], False))
            out.append((full[len(prefix):] + stop, True))
            done = len(full) + len(stop)
        whole = self.render(conv, len(conv.messages), add_generation_prompt=False) + USER
        if "".join(text for text, _ in out) != whole:
            raise ValueError("conversation: a stop token is not what the template renders after its turn")
        return [(text, is_output) for text, is_output in out if text]


def encode_segments(tokenizer, segments: list[Segment]) -> tuple[list[int], list[bool]]:
    """Token ids and, per token, whether it is model output. Segments meet at added tokens, so encoding them one
    by one equals encoding their concatenation (checked in tests/tiny_model)."""
    ids: list[int] = []
    is_output: list[bool] = []
    for text, output in segments:
        piece = tokenizer.encode(text).ids
        ids += piece
        is_output += [output] * len(piece)
    return ids, is_output
