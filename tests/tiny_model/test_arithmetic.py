"""Arithmetic word problems: single-digit operands copied from the question, a correct fact, the result stated last."""

from __future__ import annotations

import random
import re

from scripts.tiny_model.arithmetic import make_problem


def _problems(thinking: bool, count: int = 400):
    rng = random.Random(7)
    return [make_problem(rng, thinking) for _ in range(count)]


def test_trace_states_the_question_operands_and_a_true_fact():
    seen_ops = set()
    for p in _problems(thinking=True):
        need, fact = p.reasoning.split("\n")
        a, op, b = re.fullmatch(r"I need (\d) ([-+*]) (\d)\.", need).groups()
        seen_ops.add(op)
        assert fact == f"{a} {op} {b} = {p.result}."
        assert p.result == eval(f"{a} {op} {b}") >= 0
        # Both operands appear in the question, in the trace's order except in "Subtract b from a".
        numbers = re.findall(r"\d+", p.question)
        assert numbers == ([b, a] if p.question.startswith("Subtract") else [a, b]), (p.question, p.reasoning)
        assert re.findall(r"-?\d+", p.answer)[-1] == str(p.result)
    assert seen_ops == {"+", "-", "*"}


def test_thinking_off_states_the_fact_first_then_the_answer():
    for p in _problems(thinking=False):
        fact, sentence = p.answer.split(". ", 1)
        a, op, b, r = re.fullmatch(r"(\d) ([-+*]) (\d) = (\d+)", fact).groups()
        assert int(r) == p.result == eval(f"{a} {op} {b}")
        assert re.findall(r"\d+", sentence)[-1] == r


def test_every_single_digit_fact_occurs():
    facts = {p.reasoning.split("\n")[1] for p in _problems(thinking=True, count=6000)}
    assert len(facts) == 81 + 45 + 64
