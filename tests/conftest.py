import sys
from pathlib import Path

# tests/model_factory.py and friends are importable as top-level helpers.
sys.path.insert(0, str(Path(__file__).parent))


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch at one intra-op thread for a module (use: `pytestmark = pytest.mark.usefixtures("one_torch_thread")`).

    NOTE: on a small shared CPU, intra-op threads fighting other processes make tiny ops up to 100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
