"""A fake model runner for pure-Python engine tests: it reads "KV" through the block tables it is given.

Each KV slot stores the token id written at that position. To pick the next token, the fake model reads the
sequence back through the request's block table (so a wrong block table, a bad prefix-cache hit or a lost block
changes the answer) and hashes it. The next token is therefore a pure function of the true sequence, whatever the
batching, chunking, preemption or caching, which is what the real model guarantees too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from engine.outputs import ModelRunnerOutput, SchedulerOutput


def next_token(sequence: list[int], vocab_size: int) -> int:
    digest = hashlib.blake2b(repr(sequence).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % vocab_size


@dataclass
class _Done:
    output: ModelRunnerOutput

    def result(self) -> ModelRunnerOutput:
        return self.output


class FakeModelRunner:
    def __init__(self, num_blocks: int, block_size: int, vocab_size: int = 50) -> None:
        self.block_size = block_size
        self.vocab_size = vocab_size
        self.slots: list[int | None] = [None] * (num_blocks * block_size)
        self.last_sampled: dict[str, int] = {}  # the previous step's token per request (the "device" copy)
        self.num_steps = 0
        self.num_rows = 0

    def execute_model(self, scheduler_output: SchedulerOutput) -> _Done:
        self.num_steps += 1
        self.num_rows += scheduler_output.num_scheduled_tokens
        for request_id in scheduler_output.finished_req_ids:
            self.last_sampled.pop(request_id, None)
        req_ids, tokens = [], []
        sampled_now: dict[str, int] = {}
        for s in scheduler_output.scheduled:
            inputs = list(s.token_ids)
            missing = s.num_scheduled_tokens - len(inputs)
            assert missing in (0, 1), missing
            if missing:
                inputs.append(self.last_sampled[s.request_id])
            bs = self.block_size
            for i, token in enumerate(inputs):
                pos = s.num_computed_tokens + i
                self.slots[s.block_ids[pos // bs] * bs + pos % bs] = token
            if s.is_sampled:
                end = s.num_computed_tokens + s.num_scheduled_tokens
                seq = [self.slots[s.block_ids[p // bs] * bs + p % bs] for p in range(end)]
                assert None not in seq, f"{s.request_id} reads an unwritten slot"
                token = next_token(seq, self.vocab_size)
                req_ids.append(s.request_id)
                tokens.append(token)
                sampled_now[s.request_id] = token
        self.last_sampled.update(sampled_now)
        return _Done(ModelRunnerOutput(tuple(req_ids), tuple(tokens), None))


def reference_generate(prompt: list[int], max_tokens: int, vocab_size: int, stop_ids: frozenset[int] = frozenset()) -> list[int]:
    """What the fake model produces for one prompt alone."""
    seq = list(prompt)
    out = []
    for _ in range(max_tokens):
        token = next_token(seq, vocab_size)
        seq.append(token)
        out.append(token)
        if token in stop_ids:
            break
    return out
