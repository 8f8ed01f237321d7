"""MTPProposer: k draft tokens per request from the model's one MTP layer (reference section 4), once per step.

After the target's forward and the verification of a step (model_runner.py), the proposer runs:
1. Draft-extend, one MTP pass over the step's rows, under the step's own attention plan: row p takes the target
   hidden h_p of this step (after model.norm) and the token t_{p+1} (the next prompt token, an accepted draft, or
   the token just sampled or corrected). Every committed position of the sequence thus gets MTP KV, from the
   target's own hidden states, overwriting whatever a draft step wrote there. The last committed row of a request
   that sampled yields draft 1: the greedy argmax of its MTP logits, whatever the request's temperature.
   NOTE: the rows of rejected drafts run too (so that the step's plan serves as is) and write MTP KV at positions
   past the committed ones; those slots are rewritten (by a draft step, or the next step's draft-extend) before any
   row reads them, as rows only read slots at or before their own position.
2. Draft steps j = 2..k, one row per drafting request: input token d_{j-1}, hidden g_{j-1} = the previous MTP
   step's output AFTER shared_head.norm (carrying the un-normalised sum collapses acceptance, section 4.3).

Position convention (vLLM's and SGLang's): the row of (h_p, t_{p+1}) sits at position p, and its MTP K/V lives in
KV slot p of the MTP layer (KV layer num_hidden_layers, the target's block tables). Draft step j of a request whose
last extend row is at P runs at P + j - 1: past the step's rows, in the lookahead slots the scheduler allocates
(k - 1 of them); a request whose blocks stop short drafts fewer tokens.

NOTE (prefix caching): MTP slot p depends on t_{p+1}, one token past p's block. The MTP KV of the last position of
a prefix-cache hit was written by the request that filled the block, with its own next token; a request that
continues the block differently reads one slightly wrong MTP entry. Only its drafts can suffer, never its output:
verification is exact.

Above `disable_by_batch_size` scheduled requests a step drafts nothing and runs no MTP pass; its committed rows wait
in a `DraftExtendBacklog` and join the draft-extend of the request's next drafting step (engine/draft_extend_backlog.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.draft_extend_backlog import DraftExtendBacklog
from engine.engine_config import SpeculativeConfig
from engine.outputs import ScheduledRequest
from kernels.attention.base import AttentionBackend, AttentionMetadata


# Most draft-extend rows kept per request while drafting is off (see DraftExtendBacklog).
MAX_BACKLOG_ROWS = 4096


@dataclass(frozen=True, slots=True)
class DraftExtendBatch:
    """The draft-extend rows of one step: exactly the step's T rows, R scheduled requests in the step's order."""

    req_ids: tuple[str, ...]  # [R]
    # [T] int64: row p's next token t_{p+1}. Rows past a request's committed ones (its rejected drafts) carry their
    # draft: whatever they write is rewritten before it is read (see the module's NOTE).
    input_ids: np.ndarray
    positions: torch.Tensor  # [T] int64 on the device: the step's positions
    query_start: np.ndarray  # [R+1] int64: request r owns rows query_start[r] .. query_start[r+1] - 1
    num_committed: np.ndarray  # [R] int64: the first rows of each request that stay (all but rejected drafts), >= 1
    start_positions: np.ndarray  # [R] int64 position of each request's first row
    block_table: np.ndarray  # [R, max_blocks] int32, padded with 0
    num_blocks: np.ndarray  # [R] int64 blocks each request holds (its KV capacity is num_blocks * block_size)
    is_drafting: np.ndarray  # [R] bool: the request sampled this step and gets drafts for its next step

    @property
    def num_drafting(self) -> int:
        return int(self.is_drafting.sum())

    def committed_input_ids(self, r: int) -> np.ndarray:
        """t_{p+1} of request r's committed rows."""
        first = self.query_start[r]
        return self.input_ids[first : first + self.num_committed[r]]

    @classmethod
    def from_step(cls, scheduled: Sequence[ScheduledRequest], query_start: np.ndarray, block_table: np.ndarray,
                  positions: torch.Tensor, emitted: Sequence[Sequence[int]]) -> DraftExtendBatch:
        """Pair each of the step's rows with the token that follows it: the next known token, an accepted draft, or
        the token just emitted. query_start [R+1], block_table [R, max_blocks], positions [T]: the step's layout;
        emitted: the tokens of each sampling request, in order."""
        num_reqs = len(scheduled)
        num_committed = np.empty(num_reqs, np.int64)
        input_ids: list[int] = []
        emitted_iter = iter(emitted)
        for i, s in enumerate(scheduled):
            assert len(s.token_ids) == s.num_scheduled_tokens, f"{s.request_id}: a step token is not on the host"
            if s.is_sampled:
                tokens = next(emitted_iter)
                num_rows = s.num_scheduled_tokens - len(s.spec_token_ids) + len(tokens) - 1
                row_ids = [*s.token_ids[1:], tokens[-1]]
                row_ids[num_rows - 1] = tokens[-1]
            else:
                assert s.next_token_id >= 0, f"{s.request_id}: a prefill chunk's next token must be known"
                num_rows = s.num_scheduled_tokens
                row_ids = [*s.token_ids[1:], s.next_token_id]
            input_ids += row_ids
            num_committed[i] = num_rows
        return cls(
            req_ids=tuple(s.request_id for s in scheduled),
            input_ids=np.array(input_ids, np.int64),
            positions=positions,
            query_start=query_start,
            num_committed=num_committed,
            start_positions=np.fromiter((s.num_computed_tokens for s in scheduled), np.int64, num_reqs),
            block_table=block_table,
            num_blocks=np.fromiter((len(s.block_ids) for s in scheduled), np.int64, num_reqs),
            is_drafting=np.fromiter((s.is_sampled for s in scheduled), bool, num_reqs),
        )


class MTPProposer:
    def __init__(self, model: torch.nn.Module, config: SpeculativeConfig, block_size: int,
                 device: torch.device) -> None:
        if not getattr(model, "has_mtp", False):
            raise ValueError("num_speculative_tokens: the model has no MTP layer")
        self.model = model
        self.num_speculative_tokens = config.num_speculative_tokens
        self.disable_by_batch_size = config.disable_by_batch_size
        self.block_size = block_size
        self.device = device
        self.backlog = DraftExtendBacklog(MAX_BACKLOG_ROWS)

    def forget(self, req_ids: tuple[str, ...]) -> None:
        """Drop what is kept about finished requests."""
        if len(self.backlog):
            self.backlog.forget(req_ids)

    def is_disabled_for(self, num_requests: int) -> bool:
        """True when a step with this many scheduled requests drafts nothing."""
        limit = self.disable_by_batch_size
        return limit is not None and num_requests > limit

    @torch.inference_mode()
    def propose(self, hidden: torch.Tensor, batch: DraftExtendBatch,
                attn: AttentionBackend) -> tuple[tuple[int, ...], ...]:
        """hidden [T, H]: the target's output of the step. Returns drafts per drafting request (batch order); a
        request may get fewer than k (lookahead slots missing) or none (speculation off for this step)."""
        if self.is_disabled_for(len(batch.req_ids)):
            self._defer(hidden, batch)
            return ((),) * batch.num_drafting
        g = self._draft_extend(hidden, batch, attn)  # [D, H] last committed rows of the drafting requests
        if g is None:
            return ()
        drafting = np.flatnonzero(batch.is_drafting)
        last_positions = (batch.start_positions + batch.num_committed - 1)[drafting]
        capacity = batch.num_blocks[drafting] * self.block_size
        steps = self._draft_steps(g, last_positions, capacity, batch.block_table[drafting], attn)
        drafts: list[list[int]] = [[] for _ in drafting]
        for rows, tokens in steps:  # NOTE: the only device->host copies of the proposer, after all its work
            for row, token in zip(rows.tolist(), tokens.tolist()):
                drafts[row].append(token)
        return tuple(tuple(d) for d in drafts)

    def _defer(self, hidden: torch.Tensor, batch: DraftExtendBatch) -> None:
        """Keep each request's committed rows for its next drafting step (no MTP pass now)."""
        starts = batch.query_start
        for r, request_id in enumerate(batch.req_ids):
            n = int(batch.num_committed[r])
            rows = slice(int(starts[r]), int(starts[r]) + n)
            self.backlog.add(request_id, int(batch.start_positions[r]), hidden[rows], batch.input_ids[rows])

    def _draft_extend(self, hidden: torch.Tensor, batch: DraftExtendBatch,
                      attn: AttentionBackend) -> torch.Tensor | None:
        """Run the MTP layer over the step's rows (and any backlog); returns g of each drafting request's last
        committed row, [D, H]."""
        last_rows = batch.query_start[:-1] + batch.num_committed - 1  # [R]
        if self.backlog.holds_any(batch.req_ids):
            hidden, input_ids, positions, shift = self._with_backlog(hidden, batch, attn)
            last_rows = last_rows + shift
        else:  # NOTE: the rows are the step's own and the backend still holds the step's plan: it serves as is.
            input_ids, positions = self._to_device(batch.input_ids), batch.positions
        wanted = self._to_device(last_rows[batch.is_drafting])  # [D]; the other rows only write MTP KV
        g = self.model.mtp_forward(input_ids, hidden, positions, attn, wanted)  # [D, H]
        return g if batch.is_drafting.any() else None

    def _with_backlog(self, hidden: torch.Tensor, batch: DraftExtendBatch, attn: AttentionBackend):
        """Prepend each request's kept rows to its step rows and plan attention over the result. Returns (hidden
        rows [E, H], input ids [E], positions [E], shift [R]: how far each request's step rows moved)."""
        starts = batch.query_start
        pieces: list[torch.Tensor] = []
        ids: list[np.ndarray] = []
        first_positions = batch.start_positions.copy()
        query_lens = starts[1:] - starts[:-1]
        num_kept = np.zeros(len(batch.req_ids), np.int64)
        for r, request_id in enumerate(batch.req_ids):
            first, kept_hidden, kept_ids = self.backlog.take(request_id, int(batch.start_positions[r]))
            first_positions[r] = first
            num_kept[r] = batch.start_positions[r] - first
            rows = slice(int(starts[r]), int(starts[r + 1]))
            pieces += [*kept_hidden, hidden[rows]]
            ids += [*kept_ids, batch.input_ids[rows]]
        metadata, positions = self._metadata(query_lens + num_kept, first_positions, batch.block_table)
        attn.plan(metadata)
        shift = np.cumsum(num_kept)
        return torch.cat(pieces), self._to_device(np.concatenate(ids)), positions, shift

    def _draft_steps(self, g: torch.Tensor, last_positions: np.ndarray, capacity: np.ndarray,
                     block_table: np.ndarray, attn: AttentionBackend) -> list[tuple[np.ndarray, torch.Tensor]]:
        """Drafts 1..k for D requests: per step, (which of the D requests drafted, their tokens [n] on the device)."""
        rows = np.arange(len(last_positions))
        tokens = self.model.compute_mtp_logits(g).argmax(dim=-1)  # [D] draft 1
        steps = [(rows, tokens)]
        for j in range(1, self.num_speculative_tokens):
            positions = last_positions[rows] + j  # draft step j + 1 writes MTP KV slot P + j
            active = positions < capacity[rows]
            if not active.all():
                keep = np.flatnonzero(active)
                if keep.size == 0:
                    break
                rows, positions = rows[keep], positions[keep]
                index = self._to_device(keep)
                g, tokens = g[index], tokens[index]
            metadata, pos = self._metadata(np.ones(len(rows), np.int64), positions, block_table[rows])
            attn.plan(metadata)
            g = self.model.mtp_forward(tokens, g, pos, attn)  # [n, H], normalised: carried to the next step
            tokens = self.model.compute_mtp_logits(g).argmax(dim=-1)
            steps.append((rows, tokens))
        return steps

    def _metadata(self, query_lens: np.ndarray, starts: np.ndarray,
                  block_table: np.ndarray) -> tuple[AttentionMetadata, torch.Tensor]:
        """Paged metadata for rows at positions starts[r] .. starts[r] + query_lens[r] - 1 of each request."""
        bs = self.block_size
        num_reqs = len(query_lens)
        cu = np.zeros(num_reqs + 1, np.int64)
        np.cumsum(query_lens, out=cu[1:])
        positions = _positions(query_lens, starts)
        seq_lens = starts + query_lens
        req_of_row = np.repeat(np.arange(num_reqs), query_lens)
        slots = block_table[req_of_row, positions // bs].astype(np.int64) * bs + positions % bs
        metadata = AttentionMetadata(
            query_start_loc=self._to_device(cu, torch.int32),
            seq_lens=self._to_device(seq_lens, torch.int32),
            query_lens_cpu=tuple(query_lens.tolist()),
            seq_lens_cpu=tuple(seq_lens.tolist()),
            slot_mapping=self._to_device(slots),
            block_tables=self._to_device(block_table, torch.int32),
        )
        return metadata, self._to_device(positions)

    def _to_device(self, array: np.ndarray, dtype: torch.dtype = torch.int64) -> torch.Tensor:
        host = torch.from_numpy(np.ascontiguousarray(array)).to(dtype)
        if self.device.type == "cuda":  # NOTE: pinned, so the copy does not wait for the device's queue
            return host.pin_memory().to(self.device, non_blocking=True)
        return host


def _positions(query_lens: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Rows at positions starts[r] .. starts[r] + query_lens[r] - 1 of each request, flattened."""
    ends = np.cumsum(query_lens)
    return np.arange(int(ends[-1])) + np.repeat(starts - (ends - query_lens), query_lens)
