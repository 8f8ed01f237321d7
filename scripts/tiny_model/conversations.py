"""Seeded generator of GLM-4.5 chat conversations: small talk, arithmetic, tool use and irrelevant tools.

A `Conversation` holds chat-template messages (assistant reasoning in `reasoning_content`, tool-call arguments as
mappings), the tools offered, the thinking switch, and what the evaluation expects of the assistant turn at
`target_index` (the first assistant turn after the last user message). Messages up to `target_index` are the prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from scripts.tiny_model import lexicon
from scripts.tiny_model.arithmetic import make_problem
from scripts.tiny_model.intents import CLAUSE_TOOLS, Intent, make_intent
from scripts.tiny_model.tools import TOOL_NAMES, TOOLS

KINDS = ("tool", "arithmetic", "smalltalk")


@dataclass(frozen=True)
class Conversation:
    kind: str  # one of KINDS
    messages: list[dict[str, Any]]  # chat-template messages; the last one is an assistant turn
    tools: list[dict[str, Any]]  # OpenAI tool objects offered in this conversation (may be empty)
    enable_thinking: bool  # the chat template's switch
    target_index: int  # index of the evaluated assistant turn (first after the last user message)
    expected: dict[str, Any] = field(default_factory=dict)  # "calls": [{name, arguments}] or "result": int

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "messages": self.messages, "tools": self.tools,
                "enable_thinking": self.enable_thinking, "target_index": self.target_index,
                "expected": self.expected}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Conversation:
        return cls(raw["kind"], raw["messages"], raw["tools"], raw["enable_thinking"], raw["target_index"],
                   raw["expected"])


def _assistant(content: str, reasoning: str | None, thinking: bool,
               calls: list[Intent] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking and reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in calls]
    return message


def _tool_list(rng: random.Random, needed: list[str], extra_max: int) -> list[dict[str, Any]]:
    others = [n for n in TOOL_NAMES if n not in needed]
    chosen = needed + rng.sample(others, rng.randint(0, min(extra_max, len(others))))
    rng.shuffle(chosen)
    return [TOOLS[n] for n in chosen]


def _preamble(rng: random.Random, thinking: bool) -> list[dict[str, Any]]:
    """Optional system message and an earlier exchange (rendered without reasoning by the template)."""
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(lexicon.SYSTEM_PROMPTS)})
    if rng.random() < 0.2:
        if rng.random() < 0.5:
            question, reply = rng.choice(lexicon.GREETINGS)
        else:
            problem = make_problem(rng, thinking=False)
            question, reply = problem.question, problem.answer
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
    return messages


def _tool_request(rng: random.Random) -> list[Intent]:
    roll = rng.random()
    if roll < 0.55:
        return [make_intent(rng, rng.choice(TOOL_NAMES))]
    if roll < 0.8:  # same tool, several cities
        return [make_intent(rng, "get_weather") for _ in range(rng.choice((2, 2, 3)))]
    return [make_intent(rng, n) for n in rng.sample(CLAUSE_TOOLS, 2)]


def _request_text(rng: random.Random, intents: list[Intent]) -> str:
    if len(intents) == 1 and intents[0].name not in CLAUSE_TOOLS:
        return intents[0].request
    clauses = [i.request for i in intents]
    joined = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    form = rng.choice(("Please {x}.", "Can you {x}?", "{X}.", "I'd like you to {x}."))
    return form.replace("{X}", joined[0].upper() + joined[1:]).replace("{x}", joined)


def tool_conversation(rng: random.Random, thinking: bool) -> Conversation:
    intents = _tool_request(rng)
    names = list(dict.fromkeys(i.name for i in intents))
    messages = _preamble(rng, thinking)
    messages.append({"role": "user", "content": _request_text(rng, intents)})
    purposes = " and ".join(i.purpose for i in intents) if len(intents) < 3 else "the weather in three cities"
    plan = f"The user wants {purposes}. " + (
        f"I will call {names[0]}." if len(intents) == 1 else f"I will make {len(intents)} calls in parallel.")
    lead = rng.choice(("", "", "Let me check.", "Sure, one moment."))
    target = len(messages)
    messages.append(_assistant(lead, plan, thinking, intents))
    messages += [{"role": "tool", "content": i.result} for i in intents]
    done = "I have the result, so I can answer." if len(intents) == 1 else "I have all the results now."
    messages.append(_assistant(" ".join(i.answer for i in intents), done, thinking))
    expected = {"calls": [{"name": i.name, "arguments": i.arguments} for i in intents]}
    return Conversation("tool", messages, _tool_list(rng, names, 2), thinking, target, expected)


def arithmetic_conversation(rng: random.Random, thinking: bool) -> Conversation:
    problem = make_problem(rng, thinking)
    messages = _preamble(rng, thinking) + [{"role": "user", "content": problem.question}]
    target = len(messages)
    messages.append(_assistant(problem.answer, problem.reasoning, thinking))
    tools = _tool_list(rng, [], 3) if rng.random() < 0.3 else []
    return Conversation("arithmetic", messages, tools, thinking, target, {"result": problem.result, "calls": []})


def smalltalk_conversation(rng: random.Random, thinking: bool) -> Conversation:
    question, reply = rng.choice(lexicon.GREETINGS)
    messages = _preamble(rng, thinking) + [{"role": "user", "content": question}]
    target = len(messages)
    messages.append(_assistant(reply, rng.choice(lexicon.GREETING_THOUGHTS), thinking))
    tools = _tool_list(rng, [], 3) if rng.random() < 0.5 else []
    return Conversation("smalltalk", messages, tools, thinking, target, {"reply": reply, "calls": []})


_MAKERS = {"tool": tool_conversation, "arithmetic": arithmetic_conversation, "smalltalk": smalltalk_conversation}
DEFAULT_MIX = {"tool": 0.55, "arithmetic": 0.3, "smalltalk": 0.15}


def generate(seed: int, count: int, mix: dict[str, float] | None = None,
             thinking_share: float = 0.6) -> list[Conversation]:
    """`count` conversations from `seed`; the same arguments always give the same list."""
    mix = mix or DEFAULT_MIX
    unknown = set(mix) - set(_MAKERS)
    if unknown:
        raise ValueError(f"mix: unknown kinds {sorted(unknown)}; choose from {KINDS}")
    rng = random.Random(seed)
    kinds, weights = list(mix), [mix[k] for k in mix]
    out = []
    for _ in range(count):
        kind = rng.choices(kinds, weights)[0]
        out.append(_MAKERS[kind](rng, rng.random() < thinking_share))
    return out
