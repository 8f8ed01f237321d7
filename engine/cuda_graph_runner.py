"""CudaGraphRunner: the target model's decode forward replayed from CUDA graphs, one per padded batch size.

Decode steps are launch-bound: dozens of small kernels per layer for a handful of tokens. Capturing the forward
once per batch size (1, 2, 4, 8, 16, 24, 32, ... max_batch_size, vLLM's buckets) and replaying it removes the
launch cost. A step of B sequences runs in the smallest captured size >= B; rows past B are padding.

What a graph reads, all at fixed addresses: the runner's static `input_ids`/`positions` buffers, the model's
weights, the KV caches, and the attention backend's graph state (page-index buffers, write rows), which
`plan_graph_decode` refills before every replay (host-side FlashInfer planning, never captured).

NOTE hazards:
- `capture()` runs the model on dummy inputs that write K/V into block 0, slot 0 of every layer: call it before
  any request is served (right after the KV cache is allocated), never in the middle of serving.
- The hidden states `run()` returns live in the graph's memory pool: read them before the next `run()`.
- The model's forward must not synchronise with the host (no `.tolist()`, `.item()`, data-dependent shapes);
  capture fails with an error naming the batch size otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from kernels.attention.base import AttentionBackend, AttentionMetadata

logger = logging.getLogger(__name__)


@runtime_checkable
class GraphDecodeBackend(Protocol):
    """What an attention backend offers to be captured (FlashInferPagedAttention does); it also has `block_size`."""

    def make_graph_decode_state(self, batch_size: int, max_pages: int) -> Any: ...

    def plan_graph_decode(self, state: Any, metadata: AttentionMetadata) -> None: ...


def default_capture_sizes(max_batch_size: int) -> list[int]:
    """1, 2, 4, 8, then every multiple of 8 up to max_batch_size, and max_batch_size itself."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    sizes = [n for n in (1, 2, 4) if n < max_batch_size] + list(range(8, max_batch_size, 8))
    return sorted(set(sizes + [max_batch_size]))


def padded_batch_size(capture_sizes: list[int], num_seqs: int) -> int | None:
    """The smallest captured size that holds `num_seqs` sequences, or None."""
    return next((size for size in sorted(capture_sizes) if size >= num_seqs), None)


@dataclass(frozen=True, slots=True)
class _CapturedGraph:
    graph: torch.cuda.CUDAGraph
    attn_state: Any  # the backend's graph state planned before each replay
    hidden: torch.Tensor  # [batch_size, H] output written by every replay


class CudaGraphRunner:
    def __init__(
        self,
        model: torch.nn.Module,
        attn_backend: AttentionBackend,
        max_batch_size: int,
        capture_sizes: list[int] | None = None,
        max_model_len: int | None = None,
    ) -> None:
        """`max_model_len` bounds each sequence's context (default: the model's max_position_embeddings)."""
        if not isinstance(attn_backend, GraphDecodeBackend):
            raise ValueError(f"attn_backend {type(attn_backend).__name__} cannot run under CUDA graphs "
                             "(use FlashInferPagedAttention)")
        self.device = next(model.parameters()).device
        if self.device.type != "cuda":
            raise ValueError(f"model is on {self.device}: CUDA graphs need a CUDA device")
        self.model = model
        self.attn = attn_backend
        self.capture_sizes = sorted(set(capture_sizes or default_capture_sizes(max_batch_size)))
        if self.capture_sizes[0] < 1 or self.capture_sizes[-1] > max_batch_size:
            raise ValueError(f"capture_sizes {self.capture_sizes} must lie in 1..max_batch_size={max_batch_size}")
        self.max_batch_size = max_batch_size
        self.max_model_len = max_model_len or model.config.max_position_embeddings
        pages_per_seq = -(-self.max_model_len // attn_backend.block_size)
        self.max_pages = max_batch_size * pages_per_seq
        self.input_ids = torch.zeros(max_batch_size, dtype=torch.int64, device=self.device)
        self.positions = torch.zeros(max_batch_size, dtype=torch.int64, device=self.device)
        self._graphs: dict[int, _CapturedGraph] = {}

    @property
    def is_captured(self) -> bool:
        return bool(self._graphs)

    @torch.inference_mode()
    def capture(self) -> None:
        """Captures one graph per size, largest first, all in one memory pool."""
        pool = torch.cuda.graph_pool_handle()
        for batch_size in reversed(self.capture_sizes):
            state = self.attn.make_graph_decode_state(batch_size, self.max_pages)
            self.attn.plan_graph_decode(state, _dummy_decode_metadata(self.device))
            ids, pos = self.input_ids[:batch_size], self.positions[:batch_size]
            ids.zero_()
            pos.zero_()
            try:
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):  # warm-up (lazy inits, autotuning) outside the capture
                    for _ in range(2):
                        self.model(ids, pos, self.attn)
                torch.cuda.current_stream(self.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    hidden = self.model(ids, pos, self.attn)
            except RuntimeError as exc:
                raise RuntimeError(f"CUDA graph capture failed at batch size {batch_size}: {exc} (the model's "
                                   "forward must not synchronise with the host)") from exc
            self._graphs[batch_size] = _CapturedGraph(graph, state, hidden)
        torch.cuda.synchronize(self.device)
        logger.info("captured CUDA graphs for decode batch sizes %s", self.capture_sizes)

    def can_run(self, metadata: AttentionMetadata) -> bool:
        """A decode-only step of at most max_batch_size sequences, within max_model_len, after capture()."""
        return (
            self.is_captured
            and metadata.is_decode_only
            and metadata.num_seqs <= self.capture_sizes[-1]
            and max(metadata.seq_lens_cpu) <= self.max_model_len
        )

    @torch.inference_mode()
    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, metadata: AttentionMetadata) -> torch.Tensor:
        """input_ids, positions [B] -> hidden [B, H] (a view into graph memory: valid until the next run)."""
        if not self.can_run(metadata):
            raise ValueError("metadata: not a decode step this runner can replay (check can_run() first)")
        num_seqs = metadata.num_seqs
        if input_ids.shape != (num_seqs,) or positions.shape != (num_seqs,):
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and positions {tuple(positions.shape)} must be "
                             f"[{num_seqs}]")
        batch_size = padded_batch_size(self.capture_sizes, num_seqs)
        assert batch_size is not None
        captured = self._graphs[batch_size]
        self.input_ids[:num_seqs].copy_(input_ids, non_blocking=True)
        self.positions[:num_seqs].copy_(positions, non_blocking=True)
        self.input_ids[num_seqs:batch_size].zero_()  # padded rows: token 0 at position 0
        self.positions[num_seqs:batch_size].zero_()
        self.attn.plan_graph_decode(captured.attn_state, metadata)
        captured.graph.replay()
        return captured.hidden[:num_seqs]


def _dummy_decode_metadata(device: torch.device) -> AttentionMetadata:
    """One sequence of one token in block 0 (padded by the backend to the captured size)."""
    return AttentionMetadata(
        query_start_loc=torch.tensor([0, 1], dtype=torch.int32, device=device),
        seq_lens=torch.tensor([1], dtype=torch.int32, device=device),
        query_lens_cpu=(1,),
        seq_lens_cpu=(1,),
        slot_mapping=torch.zeros(1, dtype=torch.int64, device=device),
        block_tables=torch.zeros(1, 1, dtype=torch.int32, device=device),
    )
