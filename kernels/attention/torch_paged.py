"""Paged-KV attention in plain PyTorch: the CPU serving path and the oracle of the GPU backends.

KV cache layout (shared with FlashInfer's "NHD" paged layout, so one set of tensors serves every backend): one
tensor per attention layer, `[num_blocks, 2, block_size, num_kv_heads, head_dim]`, index 0 = K, 1 = V. Token slot
`s` (= block * block_size + offset) of a layer lives at `cache[s // block_size, :, s % block_size]`.

Seen as rows of `cache.view(-1, num_kv_heads, head_dim)`, the K of slot s is row `(s // bs) * 2 * bs + s % bs` and
its V is that row + bs. Seen as rows of `cache.view(2 * num_blocks, bs * nkv * d)`, the K of block b is row 2b and
its V row 2b + 1: padded groups gather whole blocks (one 2b row copies bs tokens), so a group's context is padded to
a multiple of bs. `plan()` turns the step's metadata into such row indices once (writes, gathers, masks); every
layer then does one `index_copy_` per K/V write, one `index_select` per gather and one attention call per group:
- decode and verify sequences (few query rows each) are bucketed by context length (a bucket's shortest context
  has at least `_DECODE_BUCKET_RATIO` of its longest's blocks, so padding wastes at most ~1/10 of it plus a partial
  block) and each bucket is one padded call, GQA folded into the query axis (q [G, nkv, group * Q, d] against
  k [G, nkv, S, d]: no K/V head repetition); with few KV heads that call is two contiguous bmm, else SDPA;
- longer extends (chunked prefill on a cached prefix) share one padded call when padding wastes at most half of
  it, else run one call each;
- a lone prefill without a cached prefix attends over its fresh K/V directly (plain causal SDPA, no gather).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.attention.base import AttentionBackend, AttentionMetadata

# Sequences with at most this many query rows take the folded-GQA path (decode, speculative verify).
_MAX_FOLDED_QUERY_LEN = 8
# A decode bucket takes sequences (longest first) while their block count is at least this share of its first's
# (0.9 ran the 128-prompt offline benchmark 2-3% faster than 0.75 in three alternating pairs, 1 thread).
_DECODE_BUCKET_RATIO = 0.9
# Folded groups with at most this many KV heads score every query head against every KV head in one contiguous bmm
# (num_kv_heads x the needed work; on CPU still ~2x faster than SDPA, which reads strided K/V with a few query rows).
_MAX_KV_HEADS_ALL_PAIRS = 4


def kv_cache_shape(num_blocks: int, block_size: int, num_kv_heads: int, head_dim: int) -> tuple[int, ...]:
    return (num_blocks, 2, block_size, num_kv_heads, head_dim)


def kv_cache_bytes_per_block(
    num_layers: int, block_size: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype
) -> int:
    """Bytes one block costs across all `num_layers` KV layers (K and V): what the engine divides free memory by."""
    element_size = torch.empty((), dtype=dtype).element_size()
    return num_layers * 2 * block_size * num_kv_heads * head_dim * element_size


def allocate_kv_caches(
    num_layers: int,
    num_blocks: int,
    block_size: int,
    num_kv_heads: int,
    head_dim: int,
    dtype: torch.dtype,
    device: torch.device | str,
) -> list[torch.Tensor]:
    """One zeroed `[num_blocks, 2, block_size, num_kv_heads, head_dim]` tensor per KV layer."""
    for name, value in (("num_layers", num_layers), ("num_blocks", num_blocks), ("block_size", block_size),
                        ("num_kv_heads", num_kv_heads), ("head_dim", head_dim)):
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    shape = kv_cache_shape(num_blocks, block_size, num_kv_heads, head_dim)
    return [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]


def check_kv_caches(kv_caches: list[torch.Tensor], num_kv_heads: int, head_dim: int) -> int:
    """Validates the per-layer cache tensors against the layout; returns block_size."""
    if not kv_caches:
        raise ValueError("kv_caches is empty: pass one cache tensor per KV layer")
    first = kv_caches[0]
    for i, cache in enumerate(kv_caches):
        if cache.dim() != 5 or cache.shape[1] != 2 or tuple(cache.shape[3:]) != (num_kv_heads, head_dim):
            raise ValueError(
                f"kv_caches[{i}] has shape {tuple(cache.shape)}; expected "
                f"[num_blocks, 2, block_size, {num_kv_heads}, {head_dim}]"
            )
        if cache.shape != first.shape or cache.dtype != first.dtype or cache.device != first.device:
            raise ValueError(f"kv_caches[{i}] differs from kv_caches[0] in shape, dtype or device")
        if not cache.is_contiguous():
            raise ValueError(f"kv_caches[{i}] must be contiguous")
    return int(first.shape[2])


def check_paged_metadata(metadata: AttentionMetadata, block_size: int) -> None:
    """Raises ValueError naming the field of `metadata` that a paged backend cannot serve."""
    num_seqs = len(metadata.query_lens_cpu)
    if num_seqs == 0:
        raise ValueError("metadata.query_lens_cpu is empty: a step needs at least one sequence")
    if len(metadata.seq_lens_cpu) != num_seqs:
        raise ValueError(f"metadata.seq_lens_cpu has {len(metadata.seq_lens_cpu)} entries, expected {num_seqs}")
    if metadata.block_tables is None:
        raise ValueError("metadata.block_tables is None: a paged backend needs each sequence's block table")
    if metadata.slot_mapping is None:
        raise ValueError("metadata.slot_mapping is None: a paged backend needs the slot of every new token")
    if metadata.block_tables.dim() != 2 or metadata.block_tables.shape[0] != num_seqs:
        raise ValueError(f"metadata.block_tables has shape {tuple(metadata.block_tables.shape)}, expected "
                         f"[{num_seqs}, max_blocks]")
    if tuple(metadata.slot_mapping.shape) != (metadata.num_tokens,):
        raise ValueError(f"metadata.slot_mapping has shape {tuple(metadata.slot_mapping.shape)}, expected "
                         f"[{metadata.num_tokens}]")
    capacity = metadata.block_tables.shape[1] * block_size
    for b, (query_len, seq_len) in enumerate(zip(metadata.query_lens_cpu, metadata.seq_lens_cpu)):
        if query_len < 1:
            raise ValueError(f"metadata.query_lens_cpu[{b}] = {query_len}: every sequence needs a query row")
        if seq_len < query_len:
            raise ValueError(f"metadata.seq_lens_cpu[{b}] = {seq_len} is shorter than its query_len {query_len}")
        if seq_len > capacity:
            raise ValueError(f"metadata.seq_lens_cpu[{b}] = {seq_len} exceeds the block table's capacity {capacity}")


def slots_to_k_rows(slots: torch.Tensor, block_size: int) -> torch.Tensor:
    """Flat slot -> row of K in `cache.view(-1, nkv, d)`; the V row is this + block_size."""
    slots = slots.long()
    return torch.div(slots, block_size, rounding_mode="floor") * (2 * block_size) + slots % block_size


def write_kv(cache: torch.Tensor, k_rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Stores k/v [T, nkv, d] at K rows `k_rows` [T] of one layer's cache (V rows are k_rows + block_size).

    NOTE: duplicate rows are only safe when they carry identical values (CUDA-graph padding relies on this).
    """
    block_size = cache.shape[2]
    flat = cache.view(-1, cache.shape[3], cache.shape[4])
    flat.index_copy_(0, k_rows, k.to(cache.dtype))
    flat.index_copy_(0, k_rows + block_size, v.to(cache.dtype))


@dataclass(frozen=True, slots=True)
class _FreshPrefill:
    """One sequence with no cached prefix: causal attention over its own fresh K/V rows."""

    start: int  # first row of the sequence in the flattened batch
    end: int  # one past its last row


@dataclass(frozen=True, slots=True)
class _PaddedGroup:
    """Sequences padded to [G, Q] query rows and [G, S] context positions, attended by one SDPA call."""

    num_seqs: int  # G
    max_query_len: int  # Q
    max_seq_len: int  # S
    is_folded: bool  # GQA folded into the query axis (small Q); else K/V heads are expanded
    query_rows: torch.Tensor | None  # [G*Q] int64 rows of q; None: the group is q[0:G*Q] in order (all decode)
    valid_rows: torch.Tensor | None  # [N] int64 real rows of the padded [G*Q] output; None: all rows are real
    dest_rows: torch.Tensor | None  # [N] int64 output rows they land on; None: the group is the whole batch in order
    kv_rows: torch.Tensor  # [2*G*S/bs] int64 K then V block rows of `cache.view(2*num_blocks, -1)`; padding: 0
    kv_buffer: torch.Tensor  # [2*G*S/bs, bs*nkv*d] cache dtype: gather target reused by every layer
    # bool (True = attend) [G, 1, Q, S] if not folded; if folded float additive (0 / -inf) [G, 1, 1, S] when
    # Q == 1, else [G, 1, group*Q, S]
    mask: torch.Tensor


@dataclass(frozen=True, slots=True)
class _PagedPlan:
    k_write_rows: torch.Tensor  # [T] int64 K row of every new token in the flat cache
    # partition of the batch's sequences: _FreshPrefill, _PaddedGroup, or a subclass's own part (with dest_rows)
    parts: tuple
    num_tokens: int  # T


class TorchPagedAttention(AttentionBackend):
    def __init__(
        self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float, kv_caches: list[torch.Tensor]
    ) -> None:
        super().__init__(num_heads, num_kv_heads, head_dim, scale)
        self.block_size = check_kv_caches(kv_caches, num_kv_heads, head_dim)
        self.kv_caches = kv_caches
        self.group_size = num_heads // num_kv_heads
        self._plan: _PagedPlan | None = None
        self._zero_weights: dict[tuple[int, ...], torch.Tensor] = {}

    def plan(self, metadata: AttentionMetadata) -> None:
        check_paged_metadata(metadata, self.block_size)
        super().plan(metadata)
        self._plan = self._make_plan(metadata)
        self._zero_weights = {}  # all-pairs weight buffers live for one step (shapes follow the plan)

    def _make_plan(self, metadata: AttentionMetadata) -> _PagedPlan:
        return _build_plan(metadata, self.kv_caches[0], self.group_size)

    def forward(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        plan = self._plan
        if plan is None:
            raise RuntimeError("TorchPagedAttention.forward() called before plan()")
        if q.shape[0] != plan.num_tokens or k.shape[0] != plan.num_tokens:
            raise ValueError(f"q has {q.shape[0]} rows and k {k.shape[0]}; the plan has {plan.num_tokens} tokens")
        cache = self.kv_caches[layer_idx]
        write_kv(cache, plan.k_write_rows, k, v)
        flat = cache.view(2 * cache.shape[0], -1)  # [2*num_blocks, bs*nkv*d]: K then V of each block
        if len(plan.parts) == 1:
            return self._attend(plan.parts[0], q, k, v, flat)
        out = q.new_empty(q.shape)
        for part in plan.parts:
            result = self._attend(part, q, k, v, flat)
            if isinstance(part, _FreshPrefill):
                out[part.start : part.end] = result
            else:
                out.index_copy_(0, part.dest_rows, result)
        return out

    def _attend(self, part: _FreshPrefill | _PaddedGroup, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                flat: torch.Tensor) -> torch.Tensor:
        if isinstance(part, _FreshPrefill):
            return self._attend_fresh(q[part.start : part.end], k[part.start : part.end], v[part.start : part.end])
        return self._attend_padded(part, q, flat)

    def _attend_fresh(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q [L, nh, d], k/v [L, nkv, d] -> [L, nh, d], plain causal.

        NOTE: 4-D inputs on purpose: CPU SDPA sends 3-D inputs to its slow math path. KV heads are the batch axis and
        the group the head axis, K/V broadcast over it (stride 0): no head repetition is materialised.
        """
        length, nkv, group_size, d = q.shape[0], self.num_kv_heads, self.group_size, self.head_dim
        qf = q.view(length, nkv, group_size, d).permute(1, 2, 0, 3)  # [nkv, grp, L, d]
        kf = k.to(q.dtype).transpose(0, 1)[:, None].expand(nkv, group_size, length, d)
        vf = v.to(q.dtype).transpose(0, 1)[:, None].expand(nkv, group_size, length, d)
        out = F.scaled_dot_product_attention(qf, kf, vf, is_causal=True, scale=self.scale)  # [nkv, grp, L, d]
        return out.permute(2, 0, 1, 3).reshape(length, self.num_heads, d)

    def _attend_padded(self, group: _PaddedGroup, q: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        """Returns the group's real rows [N, nh, d], in the order of `dest_rows`."""
        num_seqs, query_len, seq_len = group.num_seqs, group.max_query_len, group.max_seq_len
        nkv, group_size, d = self.num_kv_heads, self.group_size, self.head_dim
        qg = q if group.query_rows is None else q.index_select(0, group.query_rows)  # [G*Q, nh, d]
        # NOTE: the buffer is overwritten by the next layer; nothing returned below aliases it.
        kv = torch.index_select(flat, 0, group.kv_rows, out=group.kv_buffer)  # [2*G*S/bs, bs*nkv*d]
        kv = kv.view(2, num_seqs, seq_len, nkv, d).to(q.dtype)
        k, v = kv[0].transpose(1, 2), kv[1].transpose(1, 2)  # [G, nkv, S, d] each
        if group.is_folded:
            # [G, Q, nkv, grp, d] -> [G, nkv, grp*Q, d]: a view when Q == 1.
            qf = qg.view(num_seqs, query_len, nkv, group_size, d).permute(0, 2, 3, 1, 4)
            qf = qf.reshape(num_seqs, nkv, group_size * query_len, d)
            if nkv <= _MAX_KV_HEADS_ALL_PAIRS:
                out = self._attend_all_pairs(qf, kv, group.mask)
            else:
                out = F.scaled_dot_product_attention(qf, k, v, attn_mask=group.mask, scale=self.scale)
            out = out.view(num_seqs, nkv, group_size, query_len, d).permute(0, 3, 1, 2, 4)
        else:
            qh = qg.view(num_seqs, query_len, self.num_heads, d).transpose(1, 2)  # [G, nh, Q, d]
            kh = k[:, :, None].expand(num_seqs, nkv, group_size, seq_len, d).reshape(num_seqs, -1, seq_len, d)
            vh = v[:, :, None].expand(num_seqs, nkv, group_size, seq_len, d).reshape(num_seqs, -1, seq_len, d)
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=group.mask, scale=self.scale)
            out = out.transpose(1, 2)  # [G, Q, nh, d]
        out = out.reshape(num_seqs * query_len, self.num_heads, d)
        return out if group.valid_rows is None else out.index_select(0, group.valid_rows)

    def _attend_all_pairs(self, qf: torch.Tensor, kv: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """qf [G, nkv, M, d], kv [2, G, S, nkv, d] contiguous, bias [G, 1, 1 or M, S] -> [G, nkv, M, d]."""
        num_seqs, nkv, rows, d = qf.shape
        seq_len = kv.shape[2]
        keys, values = kv[0].view(num_seqs, seq_len * nkv, d), kv[1].view(num_seqs, seq_len * nkv, d)
        scores = torch.bmm(qf.reshape(num_seqs, nkv * rows, d), keys.transpose(1, 2))  # [G, nkv*M, S*nkv]
        # Query head group h keeps its scores against KV head h: the diagonal of the two KV-head axes.
        own = torch.diagonal(scores.view(num_seqs, nkv, rows, seq_len, nkv), dim1=1, dim2=4)  # [G, M, S, nkv]
        # Softmax in at least float32 (bf16/fp16 inputs are upcast; a float64 model stays in float64).
        probs = torch.softmax(torch.add(bias, own.permute(0, 3, 1, 2), alpha=self.scale), -1,
                              dtype=torch.promote_types(qf.dtype, torch.float32))
        # Zero weights on the other KV heads' values, so one contiguous bmm sums only each head's own V.
        # NOTE: one buffer per shape for the whole step: every layer writes the same diagonal and nothing else, so
        # the zeros around it stay zero (one fill per step instead of one per layer).
        shape = (num_seqs, nkv, rows, seq_len, nkv)
        full = self._zero_weights.get(shape)
        if full is None or full.dtype != qf.dtype:
            full = self._zero_weights[shape] = qf.new_zeros(shape)
        torch.diagonal(full, dim1=1, dim2=4).copy_(probs.permute(0, 2, 3, 1))
        return torch.bmm(full.view(num_seqs, nkv * rows, seq_len * nkv), values).view(num_seqs, nkv, rows, d)


# (metadata, folded sequences, row starts, a KV cache, group size, whether they are the whole batch) -> plan parts
FoldedParts = Callable[[AttentionMetadata, list[int], list[int], torch.Tensor, int, bool], list]


def _build_plan(metadata: AttentionMetadata, kv_cache: torch.Tensor, group_size: int,
                folded_parts: FoldedParts | None = None) -> _PagedPlan:
    """folded_parts: how the sequences with few query rows are attended (default: padded groups by length)."""
    block_size = kv_cache.shape[2]
    query_lens, seq_lens = metadata.query_lens_cpu, metadata.seq_lens_cpu
    starts = [0]
    for n in query_lens:
        starts.append(starts[-1] + n)
    decode = [b for b, n in enumerate(query_lens) if n <= _MAX_FOLDED_QUERY_LEN]
    extend = [b for b, n in enumerate(query_lens) if n > _MAX_FOLDED_QUERY_LEN]
    parts: list = []
    if decode:
        parts += (folded_parts or _bucketed_groups)(metadata, decode, starts, kv_cache, group_size,
                                                    len(decode) == len(query_lens))
    for seqs in _split_extends(extend, query_lens, seq_lens):
        b = seqs[0]
        if len(seqs) == 1 and query_lens[b] == seq_lens[b]:
            parts.append(_FreshPrefill(starts[b], starts[b + 1]))
        else:
            is_whole_batch = not parts and len(seqs) == len(query_lens)
            parts.append(_padded_group(metadata, seqs, starts, kv_cache, group_size, False, is_whole_batch))
    k_write_rows = slots_to_k_rows(metadata.slot_mapping, block_size)
    return _PagedPlan(k_write_rows=k_write_rows, parts=tuple(parts), num_tokens=starts[-1])


def _bucketed_groups(metadata: AttentionMetadata, decode: list[int], starts: list[int], kv_cache: torch.Tensor,
                     group_size: int, is_all: bool) -> list[_PaddedGroup]:
    buckets = _bucket_decodes(decode, metadata.seq_lens_cpu, kv_cache.shape[2])
    whole_batch = len(buckets) == 1 and is_all
    return [_padded_group(metadata, seqs, starts, kv_cache, group_size, True, whole_batch) for seqs in buckets]


def _bucket_decodes(decode: list[int], seq_lens: tuple[int, ...], block_size: int) -> list[list[int]]:
    """Decode/verify sequences in buckets of similar block counts (longest first), each padded to its longest.

    NOTE: a bucket keeps batch order inside it when there is only one, so an all-decode batch whose contexts are
    close needs no query gather or output scatter.
    """
    if not decode:
        return []
    blocks = {b: -(-seq_lens[b] // block_size) for b in decode}
    order = sorted(decode, key=lambda b: -blocks[b])
    buckets: list[list[int]] = [[order[0]]]
    limit = blocks[order[0]] * _DECODE_BUCKET_RATIO
    for b in order[1:]:
        if blocks[b] < limit:
            buckets.append([])
            limit = blocks[b] * _DECODE_BUCKET_RATIO
        buckets[-1].append(b)
    return [decode] if len(buckets) == 1 else buckets


def _split_extends(extend: list[int], query_lens: tuple[int, ...], seq_lens: tuple[int, ...]) -> list[list[int]]:
    """One padded group for all extends unless padding would more than double the work; then one each."""
    if len(extend) <= 1:
        return [extend] if extend else []
    work = sum(query_lens[b] * seq_lens[b] for b in extend)
    padded = len(extend) * max(query_lens[b] for b in extend) * max(seq_lens[b] for b in extend)
    return [extend] if padded <= 2 * work else [[b] for b in extend]


def _padded_group(metadata: AttentionMetadata, seqs: list[int], starts: list[int], kv_cache: torch.Tensor,
                  group_size: int, is_folded: bool, is_whole_batch: bool) -> _PaddedGroup:
    block_size = kv_cache.shape[2]
    device = metadata.query_start_loc.device
    q_lens = [metadata.query_lens_cpu[b] for b in seqs]
    s_lens = [metadata.seq_lens_cpu[b] for b in seqs]
    num_blocks = -(-max(s_lens) // block_size)
    num_seqs, query_len, seq_len = len(seqs), max(q_lens), num_blocks * block_size
    q_len_t = torch.tensor(q_lens, dtype=torch.int64, device=device)[:, None]  # [G, 1]
    s_len_t = torch.tensor(s_lens, dtype=torch.int64, device=device)[:, None]
    # Query rows: sequence g's row i is starts[g] + i; padded rows repeat its first row.
    row_ids = torch.arange(query_len, device=device)[None, :]  # [1, Q]
    is_real = row_ids < q_len_t  # [G, Q]
    first = torch.tensor([starts[b] for b in seqs], dtype=torch.int64, device=device)[:, None]
    query_rows = torch.where(is_real, first + row_ids, first).reshape(-1)  # [G*Q]
    # Context blocks 0..S/bs-1 through the block table; blocks past the context (the table may pad with -1) read
    # block 0, and their positions are masked.
    positions = torch.arange(seq_len, device=device)  # [S]
    index = torch.tensor(seqs, dtype=torch.int64, device=device)
    tables = metadata.block_tables[:, :num_blocks].index_select(0, index).long()  # [G, S/bs]
    seq_blocks = torch.div(s_len_t + block_size - 1, block_size, rounding_mode="floor")  # [G, 1]
    tables = torch.where(torch.arange(num_blocks, device=device)[None, :] < seq_blocks, tables, 0)
    kv_rows = torch.cat([(2 * tables).reshape(-1), (2 * tables + 1).reshape(-1)])
    # Row i of sequence g is position s - q + i: it sees keys 0..s - q + i (bottom-right aligned causal), all
    # inside its context. NOTE: padded rows (i >= q) see at least key 0, so no row is fully masked (no NaN); what
    # they read past the context is finite and their output is dropped.
    mask = positions[None, None, :] <= (s_len_t - q_len_t + row_ids)[:, :, None]  # [G, Q, S]
    if is_folded and query_len == 1:
        mask = mask[:, None]  # [G, 1, 1, S]: broadcast over the folded heads
    elif is_folded:
        mask = mask[:, None].expand(num_seqs, group_size, query_len, seq_len).reshape(num_seqs, 1, -1, seq_len)
    else:
        mask = mask[:, None]  # [G, 1, Q, S]
    if is_folded:  # additive: the all-pairs path adds it to the scores (SDPA takes either form)
        mask = torch.zeros(mask.shape, dtype=torch.float32, device=device).masked_fill_(~mask, float("-inf"))
    all_real = all(n == query_len for n in q_lens)
    valid_rows = None
    if not all_real:  # built on the host: no device sync
        real = [g * query_len + i for g, n in enumerate(q_lens) for i in range(n)]
        valid_rows = torch.tensor(real, dtype=torch.int64, device=device)
    return _PaddedGroup(
        num_seqs=num_seqs,
        max_query_len=query_len,
        max_seq_len=seq_len,
        is_folded=is_folded,
        query_rows=None if is_whole_batch and all_real else query_rows,
        valid_rows=valid_rows,
        dest_rows=None if is_whole_batch else query_rows if all_real else query_rows[valid_rows],
        kv_rows=kv_rows,
        kv_buffer=kv_cache.new_empty((kv_rows.numel(), block_size * kv_cache.shape[3] * kv_cache.shape[4])),
        mask=mask,
    )
