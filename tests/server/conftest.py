"""Server test fixtures: a tiny model directory (session-wide) and a /metrics reader."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from server_harness import ServerProcess  # noqa: E402
from server_model import make_server_model_dir  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_server_model_dir(tmp_path_factory.mktemp("server_tiny"))


@pytest.fixture
def metrics_text() -> Any:
    def get(server: ServerProcess, headers: Mapping[str, str] | None = None) -> str:
        return httpx.get(server.url + "/metrics", headers=headers, timeout=10).text

    return get


