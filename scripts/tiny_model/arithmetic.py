"""Arithmetic word problems with a column-by-column trace (thinking on) or a one-line answer (thinking off).

Thinking on: operands of two digits (and some of one), addition with carry and subtraction with borrow, each column
written out. Thinking off: single-digit facts only, answered directly; a 4-layer model cannot add two-digit numbers
in one forward pass reliably, and the trace is what teaches it to.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from scripts.tiny_model import lexicon


@dataclass(frozen=True)
class Problem:
    question: str  # the user's message
    reasoning: str  # the think trace (used only with thinking on)
    answer: str  # the assistant's content
    result: int  # the number the answer must state


def plural(count: int, item: str) -> str:
    return item if count == 1 else item + "s"


_ADD = (
    ("{n} has {a} {ia} and buys {b} more. How many {ip} does {n} have now?", "{n} has {r} {ir} now."),
    ("There are {a} {ia} in a box. {n} puts in {b} more. How many {ip} are in the box?",
     "There are {r} {ir} in the box."),
    ("What is {a} plus {b}?", "{a} plus {b} is {r}."),
    ("{n} read {a} pages on Monday and {b} pages on Tuesday. How many pages did {n} read in total?",
     "{n} read {r} pages in total."),
    ("Add {a} and {b}.", "The sum is {r}."),
)
_SUB = (
    ("{n} has {a} {ia} and gives {b} to {m}. How many {ip} does {n} have left?", "{n} has {r} {ir} left."),
    ("A shop had {a} {ia} and sold {b}. How many {ip} are left in the shop?", "The shop has {r} {ir} left."),
    ("What is {a} minus {b}?", "{a} minus {b} is {r}."),
    ("{n} needs {a} points and has {b}. How many more points does {n} need?", "{n} needs {r} more points."),
    ("Subtract {b} from {a}.", "The difference is {r}."),
)


def _column_trace(a: int, b: int, op: str) -> list[str]:
    if a < 10 and b < 10 or (op == "-" and a < 20 and b < 10 and a - b < 10):
        return [f"{a} {op} {b} = {a + b if op == '+' else a - b}."]
    a1, a0, b1, b0 = a // 10, a % 10, b // 10, b % 10
    if op == "+":
        s0 = a0 + b0
        carry = s0 // 10
        ones = f"Ones: {a0} + {b0} = {s0}" + (f", write {s0 % 10}, carry 1." if carry else ".")
        tens = f"Tens: {a1} + {b1}" + (" + 1" if carry else "") + f" = {a1 + b1 + carry}."
        return [ones, tens]
    if a0 >= b0:
        ones, borrow = f"Ones: {a0} - {b0} = {a0 - b0}.", 0
    else:
        ones, borrow = f"Ones: {a0} is less than {b0}, so borrow: {a0 + 10} - {b0} = {a0 + 10 - b0}.", 1
    tens = f"Tens: {a1}" + (" - 1" if borrow else "") + f" - {b1} = {a1 - borrow - b1}."
    return [ones, tens]


def _operands(rng: random.Random, op: str, thinking: bool) -> tuple[int, int]:
    two_digit = thinking and rng.random() < 0.85
    if op == "+":
        if two_digit:
            return rng.randint(10, 99), rng.randint(10, 99)
        return rng.randint(1, 9), rng.randint(1, 9)
    if two_digit:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        return max(a, b), min(a, b)
    b = rng.randint(1, 9)
    return rng.randint(b + 1, b + 9), b


def make_problem(rng: random.Random, thinking: bool) -> Problem:
    op = rng.choice("+-")
    a, b = _operands(rng, op, thinking)
    r = a + b if op == "+" else a - b
    question, answer = rng.choice(_ADD if op == "+" else _SUB)
    item = rng.choice(lexicon.ITEMS)
    name, other = rng.sample(lexicon.NAMES, 2)
    fill = dict(n=name, m=other, a=a, b=b, r=r, ia=plural(a, item), ip=item + "s", ir=plural(r, item))
    steps = [f"I need {a} {op} {b}."] + _column_trace(a, b, op) + [f"So {a} {op} {b} = {r}."]
    if len(steps) == 3:  # a one-line fact: the column line already states it
        steps = steps[:2]
    content = answer.format(**fill)
    if not thinking:
        content = f"{a} {op} {b} = {r}. {content}"
    return Problem(question.format(**fill), "\n".join(steps), content, r)
