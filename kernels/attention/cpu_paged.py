"""CpuPagedAttention: the plain-PyTorch paged backend, with decode and verify rows served by a C++ kernel.

On CPU the torch backend's decode path copies every sequence's K/V blocks into a padded buffer once per layer per
step (`index_select`) and then reads that copy: at large batches the copy is most of the step. The kernel in
`csrc/paged_attention_cpu.cpp` reads the blocks in place through the block table instead, one pass per (sequence,
KV head), with no padding between sequences of different lengths. Sequences with more query rows (prefill, chunked
prefill) keep the torch backend's SDPA path, which is already matrix-product bound.

The extension is built with `torch.utils.cpp_extension` the first time a process needs it (about 20 s on two cores;
ninja comes with the `ninja` package), then loaded from torch's extension cache (`TORCH_EXTENSIONS_DIR`, by default
under ~/.cache). `cpu_kernel_error()` says why it cannot be used (no C++ compiler, say); the selector then keeps the
torch backend.

NOTE: the build targets this machine's CPU (-march=native). The cache name carries a fingerprint of the CPU's
feature flags, so a cache directory shared between different machines never loads a build that faults.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from kernels.attention.base import AttentionMetadata
from kernels.attention.torch_paged import TorchPagedAttention, _build_plan

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("csrc") / "paged_attention_cpu.cpp"
_CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]


def _cpu_fingerprint() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return hashlib.sha256(flags.encode()).hexdigest()[:10]


@functools.cache
def load_cpu_kernel():
    """The compiled extension module (built on first use, then cached by torch). Raises if it cannot be built."""
    from torch.utils.cpp_extension import load

    if shutil.which("ninja") is None:
        import ninja  # the PyPI package ships the binary; torch looks for it on PATH

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    logger.info("attention: loading the CPU paged-attention kernel (built once per machine, ~20 s)")
    return load(name=f"glm_serve_paged_attention_cpu_{_cpu_fingerprint()}", sources=[str(_SOURCE)],
                extra_cflags=_CFLAGS, extra_ldflags=["-fopenmp"], verbose=False)


@functools.cache
def cpu_kernel_error() -> str | None:
    """None when the kernel builds and loads here, else why not (cached)."""
    try:
        load_cpu_kernel()
    except Exception as exc:  # noqa: BLE001 - no compiler, no ninja, a read-only cache: all mean "not usable"
        # NOTE: torch's message holds the whole build log; keep its first words and the compiler's complaints.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
        said = [line for line in lines[1:] if "not found" in line or "error" in line.lower()]
        return f"{type(exc).__name__}: {' | '.join([lines[0].split(':')[0], *said[:3]])}"
    return None


@dataclass(frozen=True, slots=True)
class _KernelGroup:
    """Sequences with few query rows, attended by one kernel call: no padding, no K/V copy."""

    query_rows: torch.Tensor | None  # [N] int64 rows of q, sequence by sequence; None: the whole batch in order
    query_start: torch.Tensor  # [G+1] int64 into the group's N rows
    seq_lens: torch.Tensor  # [G] int64
    block_tables: torch.Tensor  # [G, max_blocks] int32 contiguous

    @property
    def dest_rows(self) -> torch.Tensor | None:
        """The output rows the results land on (what TorchPagedAttention.forward scatters to): the query rows."""
        return self.query_rows


def _kernel_groups(metadata: AttentionMetadata, seqs: list[int], starts: list[int], kv_cache: torch.Tensor,
                   group_size: int, is_all: bool) -> list[_KernelGroup]:
    block_size = kv_cache.shape[2]
    query_lens = [metadata.query_lens_cpu[b] for b in seqs]
    seq_lens = [metadata.seq_lens_cpu[b] for b in seqs]
    num_blocks = -(-max(seq_lens) // block_size)
    tables = metadata.block_tables[:, :num_blocks]
    rows = None
    if not is_all:
        tables = tables.index_select(0, torch.tensor(seqs, dtype=torch.int64))
        rows = torch.tensor([r for b in seqs for r in range(starts[b], starts[b + 1])], dtype=torch.int64)
    return [_KernelGroup(
        query_rows=rows,
        query_start=torch.tensor([0, *itertools.accumulate(query_lens)], dtype=torch.int64),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int64),
        block_tables=tables.to(torch.int32).contiguous(),
    )]


class CpuPagedAttention(TorchPagedAttention):
    def __init__(
        self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float, kv_caches: list[torch.Tensor]
    ) -> None:
        super().__init__(num_heads, num_kv_heads, head_dim, scale, kv_caches)
        if kv_caches[0].device.type != "cpu":
            raise ValueError(f"kv_caches are on {kv_caches[0].device}: CpuPagedAttention needs CPU tensors")
        self._kernel = load_cpu_kernel()

    def _make_plan(self, metadata: AttentionMetadata):
        return _build_plan(metadata, self.kv_caches[0], self.group_size, folded_parts=_kernel_groups)

    def _attend(self, part, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        if not isinstance(part, _KernelGroup):
            return super()._attend(part, q, k, v, flat)
        rows = q if part.query_rows is None else q.index_select(0, part.query_rows)
        cache = flat.view(self.kv_caches[0].shape)
        rows = rows.to(torch.float64 if cache.dtype == torch.float64 else torch.float32).contiguous()
        out = torch.empty_like(rows)
        self._kernel.paged_attention_decode(rows, cache, out, part.query_start, part.seq_lens, part.block_tables,
                                            self.scale)
        return out.to(q.dtype)
