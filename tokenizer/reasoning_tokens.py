"""Counting reasoning tokens for `usage.completion_tokens_details.reasoning_tokens` (API contract section 4).

reasoning_tokens = generated tokens from the opening `<think>` through the first `</think>` after it, both
inclusive (to the end when the block never closes); 0 when thinking is off or the output does not open with a
think block. "Opens with" follows parser rule 5.1.1: only whitespace may come before `<think>`, so a literal
`<think>` written later in an answer is not counted. `<think>` and `</think>` are single added tokens, so the
count works on ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def count_reasoning_tokens(
    token_ids: Sequence[int],
    *,
    think_start_id: int,
    think_end_id: int,
    decode: Callable[[Sequence[int]], str],
) -> int:
    """`decode` turns the few tokens before `<think>` into text, to check that they are only whitespace."""
    try:
        start = token_ids.index(think_start_id)
    except ValueError:
        return 0
    if start and decode(token_ids[:start]).strip():
        return 0
    for position in range(start + 1, len(token_ids)):
        if token_ids[position] == think_end_id:
            return position - start + 1
    return len(token_ids) - start
