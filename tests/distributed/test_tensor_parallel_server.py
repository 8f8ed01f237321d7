"""`glm-serve --tensor-parallel-size 2` on CPU: the server spawns its follower, serves, and when the follower is
killed /health turns 503 and the process exits non-zero (the engine-death path), instead of hanging."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
from server_harness import ServerProcess, wait_for  # noqa: E402
from server_model import make_server_model_dir  # noqa: E402


def spawned_children(pid: int) -> list[int]:
    """Child processes started by multiprocessing's spawn (the tensor-parallel followers)."""
    # NOTE: children are listed per thread; the engine thread (not the main one) spawns the followers.
    children = [c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def is_unhealthy(server: ServerProcess) -> bool:
    """/health says 503, or the server is exiting (the engine-death path exits right after the 503 turns on)."""
    try:
        return httpx.get(server.url + "/health", timeout=5).status_code == 503
    except httpx.TransportError:
        # NOTE: refused, or dropped mid-request (RemoteProtocolError) when the exit lands while /health is open.
        return wait_for(lambda: server.proc.poll() is not None, timeout=5)


@pytest.mark.slow
def test_tp2_server_serves_then_dies_cleanly_when_a_worker_is_killed(tmp_path: Path) -> None:
    model_dir = make_server_model_dir(tmp_path / "model")
    server = ServerProcess(model_dir, "--tensor-parallel-size", "2", "--device", "cpu", "--max-model-len", "256",
                           "--kv-cache-memory", "8MiB")
    try:
        response = httpx.post(server.base_url + "/completions", timeout=60,
                              json={"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 4,
                                    "temperature": 0, "ignore_eos": True})
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 4
        followers = spawned_children(server.proc.pid)
        assert len(followers) == 1, followers
        os.kill(followers[0], signal.SIGKILL)
        assert wait_for(lambda: is_unhealthy(server), timeout=15)
        assert server.proc.wait(30) == 1
        assert "worker rank 1" in server.log()
    finally:
        server.stop(signal.SIGKILL)
