"""A server command line run directly on this machine (no container), as the image's ENTRYPOINT + CMD would run.

`glm-serve` resolves through PATH, with this interpreter's bin directory first (the venv's console script).
Output is collected in memory for failure messages.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command_env() -> dict[str, str]:
    """This environment with the venv's bin first on PATH and no API key or test script leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLM_SERVE_API_KEY", "GLM_SERVE_TEST_SCRIPT")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def with_option(argv: Sequence[str], option: str, value: str) -> list[str]:
    """argv with `option`'s value replaced where it appears (every occurrence), appended otherwise."""
    out, found = list(argv), False
    for i, word in enumerate(out):
        if word == option and i + 1 < len(out):
            out[i + 1], found = value, True
        elif word.startswith(option + "="):
            out[i], found = f"{option}={value}", True
    return out if found else [*out, option, value]


class ServedCommand:
    def __init__(self, argv: Sequence[str], port: int) -> None:
        self.argv = tuple(argv)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=command_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def log(self) -> str:
        return f"$ {' '.join(self.argv)}\n" + "".join(self.output[-200:])

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Until GET /health answers 200; raises with the server's output if it exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} before it was healthy:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"server not healthy after {timeout:.0f} s:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the image's STOPSIGNAL
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
