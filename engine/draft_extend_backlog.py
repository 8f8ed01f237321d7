"""DraftExtendBacklog: the draft-extend rows of steps that ran without drafting, kept until drafting resumes.

With `speculative_disable_by_batch_size`, a step with more requests than the limit drafts nothing and skips the MTP
layer altogether (its cost would be a whole extra layer per step). The MTP KV of the positions such a step commits is
then missing; instead of leaving a hole (which would spoil every later draft of the request), the rows are kept
here: per request, the target's hidden state h_p and the next token t_{p+1} of each committed position p. When the
request next runs in a drafting step, its kept rows are prepended to that step's draft-extend rows, and the MTP KV
is exactly what drafting every step would have written.

Bounded: a request keeps at most `max_rows` rows (the most recent; older positions are left as a hole, which only
lowers acceptance, never changes output). Rows at or past a position being recomputed (preemption) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, slots=True)
class _Rows:
    start: int  # position of the first row
    hidden: torch.Tensor  # [n, H] target hidden states after the final norm
    input_ids: np.ndarray  # [n] int64: the token following each row's position


class DraftExtendBacklog:
    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._rows: dict[str, list[_Rows]] = {}  # request id -> contiguous segments, oldest first

    def __len__(self) -> int:
        return len(self._rows)

    def holds_any(self, req_ids: tuple[str, ...]) -> bool:
        return bool(self._rows) and any(request_id in self._rows for request_id in req_ids)

    def forget(self, req_ids: tuple[str, ...]) -> None:
        for request_id in req_ids:
            self._rows.pop(request_id, None)

    def add(self, request_id: str, start: int, hidden: torch.Tensor, input_ids: np.ndarray) -> None:
        """Keep rows at positions start .. start + n - 1 (they follow the kept ones, or replace what they overlap)."""
        segments = self._continuing(request_id, start)
        segments.append(_Rows(start, hidden, input_ids))
        excess = sum(len(s.input_ids) for s in segments) - self.max_rows
        while excess > 0:
            first = segments[0]
            if len(first.input_ids) <= excess:
                segments.pop(0)
                excess -= len(first.input_ids)
            else:
                segments[0] = _Rows(first.start + excess, first.hidden[excess:], first.input_ids[excess:])
                excess = 0
        self._rows[request_id] = segments

    def take(self, request_id: str, start: int) -> tuple[int, list[torch.Tensor], list[np.ndarray]]:
        """Remove and return the rows that end exactly at `start` (the request's first row this step): (their
        first position, hidden pieces, token pieces); (start, [], []) when none are kept."""
        segments = self._continuing(request_id, start)
        self._rows.pop(request_id, None)
        if not segments:
            return start, [], []
        return segments[0].start, [s.hidden for s in segments], [s.input_ids for s in segments]

    def _continuing(self, request_id: str, start: int) -> list[_Rows]:
        """The request's segments cut before `start`; [] unless they reach `start` without a gap."""
        kept: list[_Rows] = []
        for s in self._rows.get(request_id, ()):
            if s.start >= start:
                break
            n = min(len(s.input_ids), start - s.start)
            kept.append(s if n == len(s.input_ids) else _Rows(s.start, s.hidden[:n], s.input_ids[:n]))
        if kept and kept[-1].start + len(kept[-1].input_ids) != start:
            return []
        return kept
