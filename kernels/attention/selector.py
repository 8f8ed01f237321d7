"""Picks the paged attention backend for a device: FlashInfer on CUDA when it imports and the cache is fp16/bf16; on
CPU the C++ decode kernel (kernels/attention/cpu_paged.py) when it builds here; plain PyTorch otherwise. `name`
forces one ("flashinfer", "cpu" or "torch"); "auto" (or None) decides by device.
"""

from __future__ import annotations

import functools
import importlib
import logging

import torch

from kernels.attention.base import AttentionBackend
from kernels.attention.torch_paged import TorchPagedAttention

logger = logging.getLogger(__name__)

ATTENTION_BACKENDS = ("auto", "flashinfer", "cpu", "torch")
_CPU_CACHE_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


@functools.cache
def flashinfer_import_error() -> str | None:
    """None when `import flashinfer` works here, else why not (cached: the import is slow)."""
    try:
        importlib.import_module("flashinfer")
    except Exception as exc:  # noqa: BLE001 - any failure (missing, CUDA mismatch, broken wheel) means "not usable"
        return f"{type(exc).__name__}: {exc}"
    return None


def is_flashinfer_available() -> bool:
    return flashinfer_import_error() is None


def resolve_attention_backend(name: str | None, device: torch.device | str, dtype: torch.dtype) -> str:
    """The concrete backend name ("flashinfer", "cpu" or "torch") for this device and KV-cache dtype."""
    name = "auto" if name is None else name.lower()
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend={name!r}: choose one of {ATTENTION_BACKENDS}")
    device = torch.device(device)
    if name == "torch":
        return "torch"
    if name == "cpu" or (name == "auto" and device.type == "cpu"):
        return _resolve_cpu(name, device, dtype)
    usable = device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)
    if name == "flashinfer":
        if device.type != "cuda":
            raise ValueError(f"attention_backend='flashinfer' needs a CUDA device, got {device}")
        if not usable:
            raise ValueError(f"attention_backend='flashinfer' needs a float16/bfloat16 KV cache, got {dtype}")
        error = flashinfer_import_error()
        if error is not None:
            raise ValueError(f"attention_backend='flashinfer' but flashinfer does not import: {error}")
        return "flashinfer"
    if usable and is_flashinfer_available():
        return "flashinfer"
    if device.type == "cuda":
        logger.warning("attention: using the PyTorch paged backend on CUDA (%s)",
                       flashinfer_import_error() or f"KV cache dtype {dtype} is not float16/bfloat16")
    return "torch"


def _resolve_cpu(name: str, device: torch.device, dtype: torch.dtype) -> str:
    from kernels.attention.cpu_paged import cpu_kernel_error

    if name == "cpu":
        if device.type != "cpu":
            raise ValueError(f"attention_backend='cpu' needs the CPU device, got {device}")
        if dtype not in _CPU_CACHE_DTYPES:
            raise ValueError(f"attention_backend='cpu' needs a float32/bfloat16/float16/float64 KV cache, got {dtype}")
        error = cpu_kernel_error()
        if error is not None:
            raise ValueError(f"attention_backend='cpu' but its C++ kernel does not build here: {error}")
        return "cpu"
    if dtype in _CPU_CACHE_DTYPES:
        error = cpu_kernel_error()
        if error is None:
            return "cpu"
        logger.warning("attention: the CPU paged-attention kernel does not build here (%s); using the PyTorch "
                       "backend", error)
    return "torch"


def get_attention_backend(
    device: torch.device | str,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    scale: float,
    kv_caches: list[torch.Tensor],
    name: str | None = "auto",
) -> AttentionBackend:
    """The paged attention backend over `kv_caches` (from `allocate_kv_caches`) for `device`."""
    if kv_caches and torch.device(device) != kv_caches[0].device:
        # torch.device("cuda") != torch.device("cuda:0"): compare types and explicit indices only.
        want, have = torch.device(device), kv_caches[0].device
        if want.type != have.type or (want.index is not None and want.index != have.index):
            raise ValueError(f"kv_caches are on {have} but device={want}")
    dtype = kv_caches[0].dtype if kv_caches else torch.float32
    chosen = resolve_attention_backend(name, device, dtype)
    if chosen == "flashinfer":
        from kernels.attention.flashinfer_paged import FlashInferPagedAttention

        return FlashInferPagedAttention(num_heads, num_kv_heads, head_dim, scale, kv_caches)
    if chosen == "cpu":
        from kernels.attention.cpu_paged import CpuPagedAttention

        return CpuPagedAttention(num_heads, num_kv_heads, head_dim, scale, kv_caches)
    return TorchPagedAttention(num_heads, num_kv_heads, head_dim, scale, kv_caches)
