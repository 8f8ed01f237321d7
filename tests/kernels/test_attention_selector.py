from __future__ import annotations

import pytest
import torch

from kernels.attention import cpu_paged, selector
from kernels.attention.cpu_paged import CpuPagedAttention
from kernels.attention.selector import get_attention_backend, resolve_attention_backend
from kernels.attention.torch_paged import TorchPagedAttention, allocate_kv_caches

NO_COMPILER = "RuntimeError: Error building extension: c++: not found"


@pytest.fixture
def flashinfer_present(monkeypatch):
    monkeypatch.setattr(selector, "flashinfer_import_error", lambda: None)


@pytest.fixture
def flashinfer_missing(monkeypatch):
    monkeypatch.setattr(selector, "flashinfer_import_error", lambda: "ModuleNotFoundError: No module named 'x'")


@pytest.fixture
def cpu_kernel_missing(monkeypatch):
    monkeypatch.setattr(cpu_paged, "cpu_kernel_error", lambda: NO_COMPILER)


def test_cpu_gets_the_cpu_kernel_backend_and_torch_on_request() -> None:
    caches = allocate_kv_caches(2, 4, 8, 2, 16, torch.float32, "cpu")
    backend = get_attention_backend("cpu", 4, 2, 16, 0.25, caches)
    assert isinstance(backend, CpuPagedAttention) and backend.kv_caches is caches and backend.block_size == 8
    backend = get_attention_backend("cpu", 4, 2, 16, 0.25, caches, name="torch")
    assert type(backend) is TorchPagedAttention


@pytest.mark.parametrize("name", [None, "auto", "AUTO", "cpu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_cpu_resolves_to_the_cpu_kernel(name, dtype, flashinfer_present) -> None:
    assert resolve_attention_backend(name, "cpu", dtype) == "cpu"
    assert resolve_attention_backend("torch", "cpu", dtype) == "torch"


def test_cpu_falls_back_to_torch_when_the_kernel_does_not_build(cpu_kernel_missing, caplog) -> None:
    assert resolve_attention_backend("auto", "cpu", torch.float32) == "torch"
    assert "c++: not found" in caplog.text
    with pytest.raises(ValueError, match="does not build here: RuntimeError"):
        resolve_attention_backend("cpu", "cpu", torch.float32)


def test_cuda_prefers_flashinfer_when_it_imports(flashinfer_present) -> None:
    assert resolve_attention_backend("auto", "cuda", torch.bfloat16) == "flashinfer"
    assert resolve_attention_backend("auto", "cuda:1", torch.float16) == "flashinfer"
    assert resolve_attention_backend("torch", "cuda", torch.bfloat16) == "torch"
    assert resolve_attention_backend("auto", "cuda", torch.float32) == "torch"  # FlashInfer needs half precision


def test_cuda_falls_back_to_torch_without_flashinfer(flashinfer_missing) -> None:
    assert resolve_attention_backend("auto", "cuda", torch.bfloat16) == "torch"


@pytest.mark.parametrize(
    "name,device,dtype,match",
    [
        ("flashinfer", "cpu", torch.bfloat16, "CUDA"),
        ("flashinfer", "cuda", torch.float32, "float16/bfloat16"),
        ("flash", "cpu", torch.float32, "attention_backend"),
        ("cpu", "cuda", torch.bfloat16, "needs the CPU device"),
        ("cpu", "cpu", torch.int8, "float32/bfloat16/float16/float64"),
    ],
)
def test_bad_choices_raise(name, device, dtype, match, flashinfer_present) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_attention_backend(name, device, dtype)


def test_forced_flashinfer_that_does_not_import_raises(flashinfer_missing) -> None:
    with pytest.raises(ValueError, match="does not import"):
        resolve_attention_backend("flashinfer", "cuda", torch.bfloat16)


def test_device_mismatch_raises() -> None:
    caches = allocate_kv_caches(1, 4, 8, 2, 16, torch.float32, "cpu")
    with pytest.raises(ValueError, match="device"):
        get_attention_backend("cuda", 4, 2, 16, 0.25, caches)


def test_flashinfer_module_imports_without_flashinfer() -> None:
    import kernels.attention.flashinfer_paged as module

    assert hasattr(module, "FlashInferPagedAttention")
