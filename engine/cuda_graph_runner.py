"""CudaGraphRunner: the target model's decode forward replayed from CUDA graphs, one per padded batch size; and
StepForward, the engine's one call for a step's forward, which picks a graph or eager execution per step.

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

In the engine (`ModelRunner.initialize_kv_cache`), `build_step_forward` captures right after the KV cache is
allocated when `cuda_graphs_disabled_reason` finds nothing against it; `StepForward` then replays a graph for every
decode-only step that fits a captured size (padding it up) and runs every other step eagerly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from kernels.attention.base import AttentionBackend, AttentionMetadata
from kernels.moe import is_graph_capturable as moe_is_graph_capturable

if TYPE_CHECKING:
    from engine.engine_config import EngineConfig

logger = logging.getLogger(__name__)

# The engine captures decode graphs for 1 .. min(max_num_seqs, this) sequences (vLLM's default cap); bigger decode
# batches run eagerly (they are less launch-bound, and each size costs capture time and graph memory).
MAX_CAPTURE_BATCH_SIZE = 512


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


def graph_batch_size(capture_sizes: list[int], max_model_len: int, metadata: AttentionMetadata) -> int | None:
    """The captured size a step replays at, or None when it must run eagerly: a step with a sequence of several
    query rows (prefill, chunked prefill, speculative verify), more sequences than the largest captured size, or a
    context past max_model_len (the graphs' page buffers are sized for it)."""
    if not metadata.is_decode_only or max(metadata.seq_lens_cpu) > max_model_len:
        return None
    return padded_batch_size(capture_sizes, metadata.num_seqs)


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
        return self.is_captured and graph_batch_size(self.capture_sizes, self.max_model_len, metadata) is not None

    @torch.inference_mode()
    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, metadata: AttentionMetadata) -> torch.Tensor:
        """input_ids, positions [B] -> hidden [B, H] (a view into graph memory: valid until the next run)."""
        batch_size = graph_batch_size(self.capture_sizes, self.max_model_len, metadata) if self.is_captured else None
        if batch_size is None:
            raise ValueError("metadata: not a decode step this runner can replay (check can_run() first)")
        return self.replay(batch_size, input_ids, positions, metadata)

    @torch.inference_mode()
    def replay(self, batch_size: int, input_ids: torch.Tensor, positions: torch.Tensor,
               metadata: AttentionMetadata) -> torch.Tensor:
        """Replays the graph captured at `batch_size` (>= B) for a decode step of B sequences: input_ids and
        positions [B] are copied into the static buffers (NOTE: stream-ordered after whatever wrote them, e.g. the
        async-scheduling fill of in-flight tokens), the padded rows get token 0 at position 0, and the backend
        re-plans into the graph's fixed buffers. -> hidden [B, H], a view into graph memory (valid until the next
        replay)."""
        num_seqs = metadata.num_seqs
        if input_ids.shape != (num_seqs,) or positions.shape != (num_seqs,):
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and positions {tuple(positions.shape)} must be "
                             f"[{num_seqs}]")
        captured = self._graphs.get(batch_size)
        if captured is None or batch_size < num_seqs:
            raise ValueError(f"batch_size={batch_size}: no graph captured at that size for {num_seqs} sequences "
                             f"(captured: {sorted(self._graphs)})")
        self.input_ids[:num_seqs].copy_(input_ids, non_blocking=True)
        self.positions[:num_seqs].copy_(positions, non_blocking=True)
        self.input_ids[num_seqs:batch_size].zero_()  # padded rows: token 0 at position 0
        self.positions[num_seqs:batch_size].zero_()
        self.attn.plan_graph_decode(captured.attn_state, metadata)
        captured.graph.replay()
        return captured.hidden[:num_seqs]


class GraphReplayer(Protocol):
    """What StepForward needs of a set of captured graphs (CudaGraphRunner; a fake in the CPU tests)."""

    capture_sizes: list[int]  # sorted
    max_model_len: int

    def replay(self, batch_size: int, input_ids: torch.Tensor, positions: torch.Tensor,
               metadata: AttentionMetadata) -> torch.Tensor: ...


class StepForward:
    """The target model's forward of one step, `(input_ids [T], positions [T], metadata) -> hidden [T, H]`:
    replayed from the graph of the smallest captured size that holds the step when `graph_batch_size` allows it,
    else eager (the backend planned for the step, then the model). Without graphs every step is eager.

    NOTE: after a replay the backend holds the graph's plan, not an eager one: code that runs more attention in the
    same step (the MTP proposer) must not follow a replayed step (graphs are off with speculative decoding).
    """

    def __init__(self, model: torch.nn.Module, attn: AttentionBackend, graphs: GraphReplayer | None = None) -> None:
        self.model = model
        self.attn = attn
        self.graphs = graphs
        self.num_graph_steps = 0  # steps replayed from a graph (tests read these)
        self.num_eager_steps = 0

    def __call__(self, input_ids: torch.Tensor, positions: torch.Tensor, metadata: AttentionMetadata) -> torch.Tensor:
        graphs = self.graphs
        batch_size = None if graphs is None else graph_batch_size(graphs.capture_sizes, graphs.max_model_len, metadata)
        if batch_size is not None:
            self.num_graph_steps += 1
            return graphs.replay(batch_size, input_ids, positions, metadata)
        self.num_eager_steps += 1
        self.attn.plan(metadata)
        return self.model(input_ids, positions, self.attn)


def cuda_graphs_disabled_reason(config: EngineConfig, attn: AttentionBackend, world_size: int) -> str | None:
    """Why the engine runs every step eagerly, or None when decode steps can run under CUDA graphs."""
    if config.device.type != "cuda":
        return f"device {config.device} (CUDA graphs need CUDA)"
    if config.enforce_eager:
        return "enforce_eager=True"
    if world_size > 1:
        return f"tensor_parallel_size={world_size} (graphs are captured for a single rank only)"
    if config.speculative.is_enabled:
        return "speculative decoding (its verify and MTP steps run eagerly)"
    if not isinstance(attn, GraphDecodeBackend):
        return f"the {type(attn).__name__} attention backend has no graph-safe decode plan (FlashInfer has)"
    if not moe_is_graph_capturable(config.device, config.dtype):
        return f"dtype {config.dtype}: the MoE experts read routing on the host (graph-safe in bfloat16 only)"
    return None


def build_step_forward(model: torch.nn.Module, attn: AttentionBackend, config: EngineConfig,
                       world_size: int = 1) -> StepForward:
    """The engine's StepForward; captures the decode graphs (1 .. max_num_seqs) when nothing rules them out.
    NOTE: call it right after the KV cache is allocated, before any request runs (capture writes dummy K/V)."""
    reason = cuda_graphs_disabled_reason(config, attn, world_size)
    if reason is not None:
        logger.info("CUDA graphs off: %s; every step runs eagerly", reason)
        return StepForward(model, attn)
    runner = CudaGraphRunner(model, attn, max_batch_size=min(config.scheduler.max_num_seqs, MAX_CAPTURE_BATCH_SIZE),
                             max_model_len=config.scheduler.max_model_len)
    try:
        runner.capture()
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; enforce_eager=True (--enforce-eager) runs without CUDA graphs") from exc
    return StepForward(model, attn, runner)


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
