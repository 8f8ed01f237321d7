"""CudaGraphRunner's host-side decisions, on CPU (replay itself is tested in tests/gpu)."""

from __future__ import annotations

import pytest
import torch

from engine.cuda_graph_runner import CudaGraphRunner, GraphDecodeBackend, default_capture_sizes, padded_batch_size
from kernels.attention.flashinfer_paged import FlashInferPagedAttention
from kernels.attention.torch_paged import TorchPagedAttention, allocate_kv_caches


@pytest.mark.parametrize(
    "max_batch_size,expected",
    [
        (1, [1]),
        (2, [1, 2]),
        (8, [1, 2, 4, 8]),
        (20, [1, 2, 4, 8, 16, 20]),
        (32, [1, 2, 4, 8, 16, 24, 32]),
        (64, [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]),
    ],
)
def test_default_capture_sizes(max_batch_size, expected) -> None:
    assert default_capture_sizes(max_batch_size) == expected


def test_default_capture_sizes_rejects_zero() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        default_capture_sizes(0)


def test_padded_batch_size_is_the_smallest_bucket_that_fits() -> None:
    sizes = default_capture_sizes(32)
    assert [padded_batch_size(sizes, n) for n in (1, 2, 3, 5, 8, 9, 17, 25, 32)] == [1, 2, 4, 8, 8, 16, 24, 32, 32]
    assert padded_batch_size(sizes, 33) is None


def test_only_graph_capable_backends_are_accepted() -> None:
    assert issubclass(FlashInferPagedAttention, GraphDecodeBackend)
    caches = allocate_kv_caches(1, 4, 4, 2, 8, torch.float32, "cpu")
    torch_backend = TorchPagedAttention(4, 2, 8, 0.3, caches)
    assert not isinstance(torch_backend, GraphDecodeBackend)
    with pytest.raises(ValueError, match="attn_backend"):
        CudaGraphRunner(torch.nn.Linear(2, 2), torch_backend, 8)
