"""MTPProposer: k draft tokens per request from the model's one MTP layer (reference section 4), once per step.

After the target's forward and the verification of a step (model_runner.py), the proposer runs:
1. Draft-extend, one MTP pass over every newly committed position p of every scheduled request: row p takes the
   target hidden h_p of this step (after model.norm) and the token t_{p+1} (the next prompt token, an accepted
   draft, or the token just sampled or corrected). Every position of the sequence thus gets MTP KV, from the
   target's own hidden states, overwriting whatever a draft step wrote there. The last row of a request that
   sampled yields draft 1: the greedy argmax of its MTP logits, whatever the request's temperature.
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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.engine_config import SpeculativeConfig
from engine.outputs import ScheduledRequest
from kernels.attention.base import AttentionBackend, AttentionMetadata


@dataclass(frozen=True, slots=True)
class DraftExtendBatch:
    """The draft-extend rows of one step: R scheduled requests in the step's order, E rows in all."""

    req_ids: tuple[str, ...]  # [R]
    # [E] int64 rows of the target's hidden output; None: all of them, in order (the extend rows are then exactly
    # the step's rows, which the attention backend's current plan describes)
    hidden_rows: np.ndarray | None
    input_ids: np.ndarray  # [E] int64: t_{p+1} of each row p
    query_lens: np.ndarray  # [R] int64 rows per request (>= 1)
    start_positions: np.ndarray  # [R] int64 position of each request's first row
    block_table: np.ndarray  # [R, max_blocks] int32, padded with 0
    num_blocks: np.ndarray  # [R] int64 blocks each request holds (its KV capacity is num_blocks * block_size)
    is_drafting: np.ndarray  # [R] bool: the request sampled this step and gets drafts for its next step

    @property
    def num_drafting(self) -> int:
        return int(self.is_drafting.sum())

    @classmethod
    def from_step(cls, scheduled: Sequence[ScheduledRequest], query_start: np.ndarray, block_table: np.ndarray,
                  emitted: Sequence[Sequence[int]]) -> DraftExtendBatch:
        """Each scheduled request's newly committed rows (all its rows but the rejected drafts'), each paired with
        the token that follows it: the next known token, an accepted draft, or the token just emitted.
        query_start [R+1] and block_table [R, max_blocks]: the step's layout; emitted: per sampling request."""
        num_reqs = len(scheduled)
        query_lens = np.empty(num_reqs, np.int64)
        input_ids: list[int] = []
        emitted_iter = iter(emitted)
        for i, s in enumerate(scheduled):
            if s.is_sampled:
                tokens = next(emitted_iter)
                num_rows = s.num_scheduled_tokens - len(s.spec_token_ids) + len(tokens) - 1
                input_ids += s.token_ids[1:num_rows]
                input_ids.append(tokens[-1])
            else:
                assert s.next_token_id >= 0, f"{s.request_id}: a prefill chunk's next token must be known"
                num_rows = s.num_scheduled_tokens
                input_ids += s.token_ids[1:]
                input_ids.append(s.next_token_id)
            query_lens[i] = num_rows
        hidden_rows = None
        if not np.array_equal(query_lens, query_start[1:] - query_start[:-1]):
            starts = np.cumsum(query_lens) - query_lens
            hidden_rows = np.repeat(query_start[:-1] - starts, query_lens) + np.arange(int(query_lens.sum()))
        return cls(
            req_ids=tuple(s.request_id for s in scheduled),
            hidden_rows=hidden_rows,
            input_ids=np.array(input_ids, np.int64),
            query_lens=query_lens,
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
        # Requests whose MTP KV has a hole (a step skipped their draft-extend): they never draft again.
        self._stale: set[str] = set()

    def forget(self, req_ids: tuple[str, ...]) -> None:
        """Drop what is kept about finished requests."""
        if self._stale:
            self._stale.difference_update(req_ids)

    @torch.inference_mode()
    def propose(self, hidden: torch.Tensor, batch: DraftExtendBatch,
                attn: AttentionBackend) -> tuple[tuple[int, ...], ...]:
        """hidden [T, H]: the target's output of the step. Returns drafts per drafting request (batch order); a
        request may get fewer than k (lookahead slots missing) or none (speculation off for it)."""
        limit = self.disable_by_batch_size
        if limit is not None and batch.num_drafting > limit:
            self._stale.update(batch.req_ids)  # NOTE: no draft-extend this step, so their MTP KV gets a hole
            return ((),) * batch.num_drafting
        g = self._draft_extend(hidden, batch, attn)  # [D, H] last rows of the drafting requests
        if g is None:
            return ()
        drafting = np.flatnonzero(batch.is_drafting)
        last_positions = (batch.start_positions + batch.query_lens - 1)[drafting]
        capacity = batch.num_blocks[drafting] * self.block_size
        steps = self._draft_steps(g, last_positions, capacity, batch.block_table[drafting], attn)
        drafts: list[list[int]] = [[] for _ in drafting]
        for rows, tokens in steps:  # NOTE: the only device->host copies of the proposer, after all its work
            for row, token in zip(rows.tolist(), tokens.tolist()):
                drafts[row].append(token)
        req_ids = batch.req_ids
        return tuple(() if req_ids[i] in self._stale else tuple(d) for i, d in zip(drafting.tolist(), drafts))

    def _draft_extend(self, hidden: torch.Tensor, batch: DraftExtendBatch,
                      attn: AttentionBackend) -> torch.Tensor | None:
        """Run the MTP layer over the committed rows; returns g of each drafting request's last row, [D, H]."""
        if batch.hidden_rows is None:
            # NOTE: the rows are the step's own and the backend still holds the step's plan: it serves as is.
            rows, positions = hidden, self._to_device(_positions(batch.query_lens, batch.start_positions))
        else:
            rows = hidden[self._to_device(batch.hidden_rows)]
            metadata, positions = self._metadata(batch.query_lens, batch.start_positions, batch.block_table)
            attn.plan(metadata)
        g = self.model.mtp_forward(self._to_device(batch.input_ids), rows, positions, attn)  # [E, H]
        if not batch.is_drafting.any():
            return None
        last_rows = np.cumsum(batch.query_lens)[batch.is_drafting] - 1
        return g[self._to_device(last_rows)]

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
