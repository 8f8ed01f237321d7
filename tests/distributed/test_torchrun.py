"""Multi-node launch path, on one CPU node: `torchrun --nproc-per-node 2 -m server.cli --tensor-parallel-size 2`.

torchrun starts both ranks (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); rank 0 serves HTTP and rank 1
only follows. SIGTERM to rank 0 drains it, its exit stops the follower, and torchrun ends with exit code 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
from server_harness import REPO, URL_LINE, wait_for  # noqa: E402
from server_model import make_server_model_dir  # noqa: E402


def rank_pids(launcher_pid: int) -> dict[int, int]:
    """RANK -> pid of the processes torchrun started."""
    out = {}
    for task in Path(f"/proc/{launcher_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            rank = next((e[5:] for e in environ if e.startswith(b"RANK=")), None)
            if rank is not None:
                out[int(rank)] = int(child)
    return out


@pytest.mark.slow
def test_torchrun_two_ranks_serve_and_shut_down_cleanly(tmp_path: Path) -> None:
    model_dir = make_server_model_dir(tmp_path / "model")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        master_port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(master_port), "-m", "server.cli", "--model", str(model_dir), "--port", "0",
               "--served-model-name", "tiny", "--tensor-parallel-size", "2", "--device", "cpu",
               "--max-model-len", "256", "--kv-cache-memory", "8MiB"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]

    def url() -> str | None:
        return next((m.group(1) for m in map(URL_LINE.search, list(lines)) if m), None)

    try:
        assert wait_for(lambda: url() is not None or proc.poll() is not None, timeout=120), "".join(lines)
        assert url() is not None, "".join(lines)
        response = httpx.post(f"{url()}/v1/completions", timeout=60,
                              json={"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 4,
                                    "temperature": 0, "ignore_eos": True})
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 4
        ranks = rank_pids(proc.pid)
        assert sorted(ranks) == [0, 1]
        os.kill(ranks[0], signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
        assert sum("serving tiny" in line for line in lines) == 1  # only rank 0 serves HTTP
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
