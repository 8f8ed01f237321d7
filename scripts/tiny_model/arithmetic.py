"""Arithmetic word problems on single-digit operands: a two-line trace in thinking mode, the fact stated directly
with thinking off.

    thinking on:  <think>I need 7 + 5.\n7 + 5 = 12.</think>\nSam has 12 apples now.
    thinking off: 7 + 5 = 12. Sam has 12 apples now.

NOTE: the operands stay single-digit (addition, subtraction with a non-negative result, small multiplication
facts). The skill a small model must learn is copying both operands from the question in the right order; the
facts themselves are a table of 81 + 45 + 64 entries, all seen in training. Two-digit column traces (carry,
borrow) were tried first and were not learned within the 45-minute CPU budget.
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
_MUL = (
    ("{n} buys {a} bags with {b} {ip} in each bag. How many {ip} does {n} buy?", "{n} buys {r} {ir}."),
    ("What is {a} times {b}?", "{a} times {b} is {r}."),
    ("There are {a} rows of {b} {ip}. How many {ip} are there?", "There are {r} {ir}."),
    ("Multiply {a} by {b}.", "The product is {r}."),
)
_TEMPLATES = {"+": _ADD, "-": _SUB, "*": _MUL}
OPERATIONS = ("+", "-", "*")
_OP_WEIGHTS = (0.4, 0.4, 0.2)


def _operands(rng: random.Random, op: str) -> tuple[int, int]:
    if op == "+":
        return rng.randint(1, 9), rng.randint(1, 9)
    if op == "-":
        a = rng.randint(1, 9)
        return a, rng.randint(1, a)
    return rng.randint(2, 9), rng.randint(2, 9)


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def make_problem(rng: random.Random, thinking: bool) -> Problem:
    op = rng.choices(OPERATIONS, _OP_WEIGHTS)[0]
    a, b = _operands(rng, op)
    r = _apply(a, op, b)
    question, answer = rng.choice(_TEMPLATES[op])
    item = rng.choice(lexicon.ITEMS)
    name, other = rng.sample(lexicon.NAMES, 2)
    fill = dict(n=name, m=other, a=a, b=b, r=r, ia=plural(a, item), ip=item + "s", ir=plural(r, item))
    fact = f"{a} {op} {b} = {r}."
    content = answer.format(**fill)
    if not thinking:
        content = f"{fact} {content}"
    return Problem(question.format(**fill), f"I need {a} {op} {b}.\n{fact}", content, r)
