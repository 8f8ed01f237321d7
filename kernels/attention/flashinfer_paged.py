"""Paged-KV attention on CUDA through FlashInfer's documented wrappers, over the same cache tensors as the torch backend.

One step = one `plan()` (host-side scheduling, once) and one `run()` per layer:
- decode-only steps (every sequence has one query row) use `BatchDecodeWithPagedKVCacheWrapper` (tensor cores
  when GQA groups are large);
- everything else (prefill, chunked prefill, mixed batches, speculative-verify rows) uses
  `BatchPrefillWithPagedKVCacheWrapper` with causal=True; FlashInfer aligns the causal mask bottom-right
  (query row i of a sequence sits at position kv_len - qo_len + i), which is our contract.
New K/V rows are stored with two `index_copy_` at `slot_mapping` (the same `write_kv` as the torch backend) before
the wrapper reads the cache, so the new rows attend to themselves.

CUDA graphs (used by `engine.cuda_graph_runner`): `make_graph_decode_state(batch_size)` builds a decode wrapper
with `use_cuda_graph=True` over fixed index buffers; `plan_graph_decode(state, metadata)` pads a decode batch to
the state's size and re-plans into those buffers before each replay. Padded rows attend to one page of sequence
0 and write their K/V, replaced by sequence 0's own K/V, to sequence 0's slot: identical duplicate writes, so the
real cache is never disturbed.

NOTE: flashinfer is imported only here, in the constructor, so `import kernels` works without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kernels.attention.base import AttentionBackend, AttentionMetadata
from kernels.attention.torch_paged import check_kv_caches, check_paged_metadata, slots_to_k_rows, write_kv

DEFAULT_WORKSPACE_BYTES = 256 << 20  # float workspace for split-KV partial results (FlashInfer recommends 128MB+)
_HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_flashinfer_cache(cache: torch.Tensor) -> None:
    if cache.device.type != "cuda":
        raise ValueError(f"kv_caches are on {cache.device}: FlashInferPagedAttention needs CUDA tensors")
    if cache.dtype not in _HALF_DTYPES:
        raise ValueError(f"kv_caches dtype {cache.dtype}: FlashInferPagedAttention needs float16 or bfloat16")


@dataclass(frozen=True, slots=True)
class PagedKVLayout:
    """FlashInfer's CSR description of every sequence's pages."""

    indptr: torch.Tensor  # [B+1] int32 on the host: sequence b owns indices[indptr[b]:indptr[b+1]]
    indices: torch.Tensor  # [num_pages] int32 on the cache device: block ids, in context order
    last_page_len: torch.Tensor  # [B] int32 on the host: tokens in each sequence's last page, 1..block_size
    qo_indptr: torch.Tensor  # [B+1] int32 on the host: query row offsets (query_start_loc)


def paged_kv_layout(metadata: AttentionMetadata, block_size: int) -> PagedKVLayout:
    """Builds the page lists from the padded block tables without a device sync (sizes come from the host)."""
    assert metadata.block_tables is not None
    device = metadata.block_tables.device
    seq_lens = metadata.seq_lens_cpu
    num_pages = [-(-s // block_size) for s in seq_lens]
    indptr = [0]
    for n in num_pages:
        indptr.append(indptr[-1] + n)
    qo_indptr = [0]
    for n in metadata.query_lens_cpu:
        qo_indptr.append(qo_indptr[-1] + n)
    total = indptr[-1]
    pages = torch.tensor(num_pages, dtype=torch.int64, device=device)
    seq_of_page = torch.repeat_interleave(torch.arange(len(seq_lens), device=device), pages, output_size=total)
    first_page = torch.tensor(indptr[:-1], dtype=torch.int64, device=device)
    column = torch.arange(total, device=device) - first_page[seq_of_page]
    indices = metadata.block_tables[seq_of_page, column].to(torch.int32)
    return PagedKVLayout(
        indptr=torch.tensor(indptr, dtype=torch.int32),
        indices=indices,
        last_page_len=torch.tensor([s - (n - 1) * block_size for s, n in zip(seq_lens, num_pages)],
                                   dtype=torch.int32),
        qo_indptr=torch.tensor(qo_indptr, dtype=torch.int32),
    )


def pad_decode_layout(layout: PagedKVLayout, batch_size: int) -> PagedKVLayout:
    """Appends sequences of one page (sequence 0's first page, one token) up to `batch_size` sequences."""
    num_pad = batch_size - (layout.indptr.numel() - 1)
    if num_pad < 0:
        raise ValueError(f"batch of {layout.indptr.numel() - 1} sequences exceeds batch_size={batch_size}")
    if num_pad == 0:
        return layout
    last = int(layout.indptr[-1])
    return PagedKVLayout(
        indptr=torch.cat([layout.indptr, last + torch.arange(1, num_pad + 1, dtype=torch.int32)]),
        indices=torch.cat([layout.indices, layout.indices[:1].expand(num_pad)]),
        last_page_len=torch.cat([layout.last_page_len, torch.ones(num_pad, dtype=torch.int32)]),
        qo_indptr=torch.arange(batch_size + 1, dtype=torch.int32),
    )


def padded_write_rows(k_rows: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K rows [batch_size], source rows [batch_size]): padded rows copy row 0's K/V into row 0's slot."""
    num_real = k_rows.numel()
    num_pad = batch_size - num_real
    rows = torch.cat([k_rows, k_rows[:1].expand(num_pad)])
    src = torch.cat([torch.arange(num_real, device=k_rows.device),
                     torch.zeros(num_pad, dtype=torch.int64, device=k_rows.device)])
    return rows, src


@dataclass(frozen=True, slots=True)
class GraphDecodeState:
    """Everything a captured decode graph reads besides the model's own static inputs (all addresses fixed)."""

    batch_size: int  # the captured (padded) number of sequences
    wrapper: Any  # flashinfer.BatchDecodeWithPagedKVCacheWrapper(use_cuda_graph=True) over fixed index buffers
    k_write_rows: torch.Tensor  # [batch_size] int64: K row of each row's slot (padded rows: sequence 0's slot)
    write_src: torch.Tensor  # [batch_size] int64: row whose K/V is written (padded rows: 0)


class FlashInferPagedAttention(AttentionBackend):
    def __init__(
        self,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        scale: float,
        kv_caches: list[torch.Tensor],
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        decode_use_tensor_cores: bool | None = None,
    ) -> None:
        """`decode_use_tensor_cores`: None chooses them for GQA groups of 4+ query heads per KV head."""
        import flashinfer

        super().__init__(num_heads, num_kv_heads, head_dim, scale)
        self.block_size = check_kv_caches(kv_caches, num_kv_heads, head_dim)
        self.kv_caches = kv_caches
        self.device = kv_caches[0].device
        self.dtype = kv_caches[0].dtype
        check_flashinfer_cache(kv_caches[0])
        if decode_use_tensor_cores is None:
            decode_use_tensor_cores = num_heads // num_kv_heads >= 4
        self._flashinfer = flashinfer
        self._use_tensor_cores = decode_use_tensor_cores
        # NOTE: one float workspace serves every wrapper: steps (and graph replays) run one at a time.
        self._workspace = torch.zeros(workspace_bytes, dtype=torch.uint8, device=self.device)
        self._prefill = flashinfer.BatchPrefillWithPagedKVCacheWrapper(self._workspace, "NHD")
        self._decode = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self._workspace, "NHD", use_tensor_cores=decode_use_tensor_cores
        )
        self._graph_indices: torch.Tensor | None = None  # page-index buffer shared by every CUDA-graph state
        self._active: Any = None  # the wrapper planned for this step
        self._plan_copied: dict[int, torch.cuda.Event] = {}  # id(wrapper) -> its last plan's upload
        self._k_write_rows: torch.Tensor | None = None
        self._graph: GraphDecodeState | None = None

    # ---- eager steps ------------------------------------------------------------------------------------------

    def plan(self, metadata: AttentionMetadata) -> None:
        check_paged_metadata(metadata, self.block_size)
        super().plan(metadata)
        self._graph = None
        layout = paged_kv_layout(metadata, self.block_size)
        assert metadata.slot_mapping is not None
        self._k_write_rows = slots_to_k_rows(metadata.slot_mapping, self.block_size)
        if metadata.is_decode_only:
            self._plan_decode(self._decode, layout)
            self._active = self._decode
        else:
            self._guarded_plan(
                self._prefill, layout.qo_indptr, layout.indptr, layout.indices, layout.last_page_len,
                self.num_heads, self.num_kv_heads, self.head_dim, self.block_size,
                causal=True, pos_encoding_mode="NONE", sm_scale=self.scale,
                q_data_type=self.dtype, kv_data_type=self.dtype,
            )
            self._active = self._prefill

    def _plan_decode(self, wrapper: Any, layout: PagedKVLayout) -> None:
        self._guarded_plan(
            wrapper, layout.indptr, layout.indices, layout.last_page_len,
            self.num_heads, self.num_kv_heads, self.head_dim, self.block_size,
            pos_encoding_mode="NONE", sm_scale=self.scale, q_data_type=self.dtype, kv_data_type=self.dtype,
        )

    def _guarded_plan(self, wrapper: Any, *args: Any, **kwargs: Any) -> None:
        """wrapper.plan(...), never while its previous plan's upload is still queued.

        NOTE: FlashInfer's plan() fills a pinned host buffer of the wrapper and queues an async copy from it. With
        overlap scheduling the host can plan step N+1 before the GPU ran step N's copy, overwriting its source;
        waiting for the previous upload of the same wrapper (done once step N-1's kernels finish) prevents it.
        """
        previous = self._plan_copied.get(id(wrapper))
        if previous is not None:
            previous.synchronize()
        wrapper.plan(*args, **kwargs)
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
            self._plan_copied[id(wrapper)] = event

    def forward(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        cache = self.kv_caches[layer_idx]
        if q.dtype != self.dtype:
            raise ValueError(f"q dtype {q.dtype} differs from the KV cache dtype {self.dtype}")
        graph = self._graph
        if graph is not None:
            # NOTE: captured into CUDA graphs: only fixed-address tensors here, no host syncs.
            k, v = k.index_select(0, graph.write_src), v.index_select(0, graph.write_src)
            write_kv(cache, graph.k_write_rows, k, v)
            return graph.wrapper.run(q.contiguous(), cache)
        if self._active is None or self._k_write_rows is None:
            raise RuntimeError("FlashInferPagedAttention.forward() called before plan()")
        if q.shape[0] != self._k_write_rows.numel():
            raise ValueError(f"q has {q.shape[0]} rows; the plan has {self._k_write_rows.numel()} tokens")
        write_kv(cache, self._k_write_rows, k, v)
        return self._active.run(q.contiguous(), cache)

    # ---- CUDA graphs (see engine/cuda_graph_runner.py) --------------------------------------------------------

    @property
    def max_graph_pages(self) -> int:
        return 0 if self._graph_indices is None else self._graph_indices.numel()

    def make_graph_decode_state(self, batch_size: int, max_pages: int) -> GraphDecodeState:
        """A decode wrapper whose plan lands in fixed buffers, for graphs captured at `batch_size` sequences whose
        contexts hold at most `max_pages` pages in all. The first call sizes the page-index buffer for all states."""
        if self._graph_indices is None:
            self._graph_indices = torch.zeros(max_pages, dtype=torch.int32, device=self.device)
        elif max_pages > self._graph_indices.numel():
            raise ValueError(f"max_pages={max_pages} exceeds the {self._graph_indices.numel()} pages reserved by the "
                             "first graph state")
        wrapper = self._flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self._workspace,
            "NHD",
            use_cuda_graph=True,
            use_tensor_cores=self._use_tensor_cores,
            paged_kv_indptr_buffer=torch.zeros(batch_size + 1, dtype=torch.int32, device=self.device),
            # NOTE: every state shares one page-index buffer; each replay re-plans it first.
            paged_kv_indices_buffer=self._graph_indices,
            paged_kv_last_page_len_buffer=torch.zeros(batch_size, dtype=torch.int32, device=self.device),
        )
        return GraphDecodeState(
            batch_size=batch_size,
            wrapper=wrapper,
            k_write_rows=torch.zeros(batch_size, dtype=torch.int64, device=self.device),
            write_src=torch.zeros(batch_size, dtype=torch.int64, device=self.device),
        )

    def plan_graph_decode(self, state: GraphDecodeState, metadata: AttentionMetadata) -> None:
        """Plans a decode batch of at most `state.batch_size` sequences into the state's fixed buffers; the next
        forwards (the graph's replay, or its capture) run on the padded batch of `state.batch_size` rows."""
        check_paged_metadata(metadata, self.block_size)
        if not metadata.is_decode_only:
            raise ValueError("metadata.query_lens_cpu: CUDA-graph decode needs one query row per sequence")
        layout = pad_decode_layout(paged_kv_layout(metadata, self.block_size), state.batch_size)
        if layout.indices.numel() > self.max_graph_pages:
            raise ValueError(f"metadata.seq_lens_cpu: {layout.indices.numel()} pages exceed max_graph_pages="
                             f"{self.max_graph_pages}")
        assert metadata.slot_mapping is not None
        rows, src = padded_write_rows(slots_to_k_rows(metadata.slot_mapping, self.block_size), state.batch_size)
        state.k_write_rows.copy_(rows)
        state.write_src.copy_(src)
        self._plan_decode(state.wrapper, layout)
        self.metadata = metadata
        self._graph = state
