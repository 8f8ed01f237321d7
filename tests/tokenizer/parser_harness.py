"""Helpers for parser tests: feed text in pieces, accumulate deltas as the openai client does, compare."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tokenizer import OutputParser, ParsedOutput

DATA_DIR = Path(__file__).parent / "data"


def load_tool_cases() -> list[dict[str, Any]]:
    """The reference parser corpus (a copy of the shared tool_cases.json)."""
    cases: list[dict[str, Any]] = json.loads((DATA_DIR / "tool_cases.json").read_text(encoding="utf-8"))
    return cases


def case_thinking(case: dict[str, Any]) -> bool:
    """Whether the case's request had thinking on. The corpus has no field for it (the file must stay identical
    to the reference); a case sent with thinking off says so in its note (`enable_thinking=false`)."""
    return "enable_thinking=false" not in case["note"]


def counter_ids() -> Callable[[], str]:
    """Deterministic tool-call ids: call_1, call_2, ..."""
    count = 0

    def next_id() -> str:
        nonlocal count
        count += 1
        return f"call_{count}"

    return next_id


class Accumulator:
    """Merges deltas like openai-python's accumulate_delta: strings concatenate, tool calls merge by index.

    Also checks the chunk rules: id/type/name only in a call's first fragment, index on every fragment,
    indexes 0, 1, 2... in order.
    """

    def __init__(self) -> None:
        self.reasoning_content: str | None = None
        self.content: str | None = None
        self.tool_calls: dict[int, dict[str, str]] = {}

    def add(self, deltas: Sequence[dict[str, Any]]) -> None:
        for delta in deltas:
            assert set(delta) <= {"reasoning_content", "content", "tool_calls"}, delta
            if "reasoning_content" in delta:
                assert isinstance(delta["reasoning_content"], str) and delta["reasoning_content"], delta
                self.reasoning_content = (self.reasoning_content or "") + delta["reasoning_content"]
            if "content" in delta:
                assert isinstance(delta["content"], str) and delta["content"], delta
                self.content = (self.content or "") + delta["content"]
            for fragment in delta.get("tool_calls", []):
                self._add_fragment(fragment)

    def _add_fragment(self, fragment: dict[str, Any]) -> None:
        index = fragment["index"]
        call = self.tool_calls.get(index)
        if call is None:
            assert fragment["type"] == "function" and fragment["id"] and fragment["function"]["name"], fragment
            assert index == len(self.tool_calls), "indexes must be 0, 1, 2... in order"
            call = {"id": fragment["id"], "name": fragment["function"]["name"], "arguments": ""}
            self.tool_calls[index] = call
        else:
            assert set(fragment) == {"index", "function"} and set(fragment["function"]) == {"arguments"}, fragment
        call["arguments"] += fragment["function"]["arguments"]

    def snapshot(self) -> dict[str, Any]:
        return {
            "reasoning_content": self.reasoning_content,
            "content": self.content,
            "tool_calls": {index: dict(call) for index, call in self.tool_calls.items()},
        }


def accumulate(deltas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    accumulator = Accumulator()
    accumulator.add(deltas)
    return accumulator.snapshot()


def expected_from(result: ParsedOutput) -> dict[str, Any]:
    return {
        "reasoning_content": result.reasoning_content,
        "content": result.content,
        "tool_calls": {
            index: {"id": call.id, "name": call.name, "arguments": call.arguments}
            for index, call in enumerate(result.tool_calls)
        },
    }


def case_view(result: ParsedOutput) -> dict[str, Any]:
    """The shape of tool_cases.json's `expected`."""
    return {
        "reasoning_content": result.reasoning_content,
        "content": result.content,
        "tool_calls": [{"name": call.name, "arguments": json.loads(call.arguments)} for call in result.tool_calls],
    }


def split_at(text: str, cuts: Sequence[int]) -> list[str]:
    bounds = [0, *sorted(set(cuts)), len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def random_pieces(text: str, rng: random.Random, max_pieces: int = 24) -> list[str]:
    if len(text) < 2:
        return [text]
    count = rng.randint(1, min(max_pieces, len(text) - 1))
    return split_at(text, rng.sample(range(1, len(text)), count))


def stream(pieces: Sequence[str], parser: OutputParser, check_prefixes: bool = True) -> dict[str, Any]:
    """Feed pieces, then finish, and accumulate. With check_prefixes, every intermediate accumulation must be a
    prefix of the final one: nothing sent is ever taken back (no tag fragment leaked and later removed)."""
    accumulator = Accumulator()
    snapshots = []
    for piece in pieces:
        accumulator.add(parser.feed(piece))
        if check_prefixes:
            snapshots.append(accumulator.snapshot())
    accumulator.add(parser.finish())
    final = accumulator.snapshot()
    for snapshot in snapshots:
        for field in ("reasoning_content", "content"):
            assert (final[field] or "").startswith(snapshot[field] or ""), (field, snapshot, final)
        for index, call in snapshot["tool_calls"].items():
            assert final["tool_calls"][index]["arguments"].startswith(call["arguments"]), (snapshot, final)
    return final
