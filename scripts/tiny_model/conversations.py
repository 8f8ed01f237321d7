"""Seeded generator of GLM-4.5 chat conversations: small talk, arithmetic, tool use, irrelevant tools, echo.

A `Conversation` holds chat-template messages (assistant reasoning in `reasoning_content`, tool-call arguments as
mappings), the tools offered, the thinking switch, and what the evaluation expects of the assistant turn at
`target_index` (the first assistant turn after the last user message). Messages up to `target_index` are the prompt.
Thinking-off conversations chain up to four exchanges under one tools block: every turn is trained, so the costly
tools block is paid once for several outputs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from scripts.tiny_model import lexicon
from scripts.tiny_model.arithmetic import make_problem
from scripts.tiny_model.intents import CLAUSE_TOOLS, Intent, make_intent
from scripts.tiny_model.tools import TOOL_NAMES, TOOLS

KINDS = ("tool", "arithmetic", "smalltalk", "echo")


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


def _tool_request(rng: random.Random) -> list[Intent]:
    roll = rng.random()
    if roll < 0.55:
        return [make_intent(rng, rng.choice(TOOL_NAMES))]
    if roll < 0.8:  # same tool, several distinct cities
        count = rng.choice((2, 2, 3))
        intents: list[Intent] = []
        while len(intents) < count:
            intent = make_intent(rng, "get_weather")
            if all(intent.arguments["city"] != i.arguments["city"] for i in intents):
                intents.append(intent)
        return intents
    return [make_intent(rng, n) for n in rng.sample(CLAUSE_TOOLS, 2)]


def _request_text(rng: random.Random, intents: list[Intent]) -> str:
    if len(intents) == 1 and intents[0].name not in CLAUSE_TOOLS:
        return intents[0].request
    clauses = [i.request for i in intents]
    joined = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    form = rng.choice(("Please {x}.", "Can you {x}?", "{X}.", "I'd like you to {x}."))
    return form.replace("{X}", joined[0].upper() + joined[1:]).replace("{x}", joined)


@dataclass(frozen=True)
class Exchange:
    kind: str  # one of KINDS
    messages: list[dict[str, Any]]  # a user message, then assistant (and tool) messages
    tools_needed: list[str]  # tools this exchange calls
    expected: dict[str, Any]  # what the evaluation checks of its first assistant turn


def tool_exchange(rng: random.Random, thinking: bool) -> Exchange:
    intents = _tool_request(rng)
    names = list(dict.fromkeys(i.name for i in intents))
    purposes = " and ".join(i.purpose for i in intents) if len(intents) < 3 else "the weather in three cities"
    plan = f"The user wants {purposes}. " + (
        f"I will call {names[0]}." if len(intents) == 1 else f"I will make {len(intents)} calls in parallel.")
    lead = rng.choice(("", "", "Sure.", "One moment."))
    done = "I have the result, so I can answer." if len(intents) == 1 else "I have all the results now."
    messages = [{"role": "user", "content": _request_text(rng, intents)}, _assistant(lead, plan, thinking, intents)]
    messages += [{"role": "tool", "content": i.result} for i in intents]
    messages.append(_assistant(" ".join(i.answer for i in intents), done, thinking))
    return Exchange("tool", messages, names, {"calls": [{"name": i.name, "arguments": i.arguments} for i in intents]})


def arithmetic_exchange(rng: random.Random, thinking: bool) -> Exchange:
    problem = make_problem(rng, thinking)
    messages = [{"role": "user", "content": problem.question},
                _assistant(problem.answer, problem.reasoning, thinking)]
    return Exchange("arithmetic", messages, [], {"result": problem.result, "calls": []})


def smalltalk_exchange(rng: random.Random, thinking: bool) -> Exchange:
    question, reply = rng.choice(lexicon.GREETINGS)
    messages = [{"role": "user", "content": question},
                _assistant(reply, rng.choice(lexicon.GREETING_THOUGHTS), thinking)]
    return Exchange("smalltalk", messages, [], {"reply": reply, "calls": []})


def _echo_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.25:
        return ", ".join(rng.sample(lexicon.CITIES, rng.randint(2, 4)))
    if roll < 0.5:
        return (f"{rng.choice(lexicon.NAMES)} has {rng.randint(2, 99)} {rng.choice(lexicon.ITEMS)}s "
                f"in {rng.choice(lexicon.CITIES)}.")
    pool = (lexicon.SEARCH_TOPICS, lexicon.FILE_CONTENTS, lexicon.EMAIL_SUBJECTS, lexicon.EMAIL_BODIES,
            lexicon.EXPRESSIONS, lexicon.EMAIL_ADDRESSES, lexicon.FILE_PATHS)
    return rng.choice(rng.choice(pool))


def echo_exchange(rng: random.Random, thinking: bool) -> Exchange:
    """Repeat a text verbatim: cheap, short samples that teach the copying every tool argument needs."""
    text = _echo_text(rng)
    ask = rng.choice(("Repeat this exactly:\n{t}", "Please say this back to me:\n{t}", "Copy this text:\n{t}"))
    messages = [{"role": "user", "content": ask.format(t=text)},
                _assistant(text, "The user wants the text repeated exactly.", thinking)]
    return Exchange("echo", messages, [], {"reply": text, "calls": []})


_MAKERS = {"tool": tool_exchange, "arithmetic": arithmetic_exchange, "smalltalk": smalltalk_exchange,
           "echo": echo_exchange}
DEFAULT_MIX = {"tool": 0.45, "arithmetic": 0.33, "smalltalk": 0.05, "echo": 0.17}
# Tools offered beside the needed ones, and how often a conversation without calls still offers tools.
_EXTRA_TOOLS_MAX = 1
_IRRELEVANT_TOOLS_SHARE = 0.25


def conversation(rng: random.Random, kinds: list[str], weights: list[float], thinking: bool) -> Conversation:
    """With thinking on, one trained exchange (maybe after a history exchange, which the template renders without
    reasoning); with thinking off, one to four exchanges that are all model output, sharing the tools block."""
    def draw() -> Exchange:
        return _MAKERS[rng.choices(kinds, weights)[0]](rng, thinking)

    messages: list[dict[str, Any]] = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(lexicon.SYSTEM_PROMPTS)})
    count = rng.choices((1, 2, 3, 4), (0.3, 0.3, 0.25, 0.15))[0] if not thinking else 1 + (rng.random() < 0.2)
    exchanges = [draw() for _ in range(count)]
    for exchange in exchanges[:-1]:
        messages += exchange.messages
    final = exchanges[-1]
    target = len(messages) + 1
    messages += final.messages
    needed = list(dict.fromkeys(name for e in exchanges for name in e.tools_needed))
    offered = needed or rng.random() < _IRRELEVANT_TOOLS_SHARE
    tools = _tool_list(rng, needed, _EXTRA_TOOLS_MAX + (not needed)) if offered else []
    return Conversation(final.kind, messages, tools, thinking, target, final.expected)


def generate(seed: int, count: int, mix: dict[str, float] | None = None,
             thinking_share: float = 0.5) -> list[Conversation]:
    """`count` conversations from `seed`; the same arguments always give the same list."""
    mix = mix or DEFAULT_MIX
    unknown = set(mix) - set(_MAKERS)
    if unknown:
        raise ValueError(f"mix: unknown kinds {sorted(unknown)}; choose from {KINDS}")
    rng = random.Random(seed)
    kinds, weights = list(mix), [mix[k] for k in mix]
    out = []
    for _ in range(count):
        out.append(conversation(rng, kinds, weights, rng.random() < thinking_share))
    return out
