"""GPU tests: skipped unless CUDA is available (and, for most, flashinfer imports). Run by scripts/gpu_check.sh."""

import sys
from pathlib import Path

import pytest
import torch

# The paged-batch builder shared with the CPU kernel tests.
sys.path.insert(0, str(Path(__file__).parent.parent / "kernels"))


def flashinfer_skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "needs CUDA"
    from kernels.attention.selector import flashinfer_import_error

    error = flashinfer_import_error()
    return None if error is None else f"flashinfer does not import: {error}"


def pytest_collection_modifyitems(config, items):
    reason = flashinfer_skip_reason()
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.gpu)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
