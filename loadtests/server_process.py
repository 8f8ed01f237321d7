"""Run `glm-serve` as a subprocess on 127.0.0.1 for a benchmark or a test, and stop it afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
URL_LINE = re.compile(r"serving .* on (http://127\.0\.0\.1:\d+)/v1")


@dataclass(frozen=True)
class RunningServer:
    # Base URL without the route, e.g. http://127.0.0.1:41234.
    url: str
    # The server's process id (per-thread CPU figures read /proc/<pid>).
    pid: int


@contextmanager
def glm_serve(args: Sequence[str], start_timeout_s: float = 180.0,
              env: Mapping[str, str] | None = None) -> Iterator[RunningServer]:
    """Start `python -m server.cli --host 127.0.0.1 --port 0 *args`; yields it once the engine is ready.

    Raises RuntimeError with the server's last output lines when it does not come up in time.
    NOTE: a reader thread keeps draining the server's stdout, so it never blocks on a full pipe.
    """
    cmd = [sys.executable, "-m", "server.cli", "--host", "127.0.0.1", "--port", "0", *args]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            match = URL_LINE.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()  # the server exited

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(start_timeout_s) or not found:
            raise RuntimeError(f"glm-serve did not come up:\n{''.join(lines[-40:])}")
        yield RunningServer(found[0], proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
