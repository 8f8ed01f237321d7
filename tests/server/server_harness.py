"""Server test helpers: `ServerProcess`, a real `python -m server.cli` subprocess on a free localhost port (port 0,
read back from the URL line it prints), one per test module; SSE and Prometheus text readers. A module of its own
(not conftest) so that test files can import it without clashing with other directories' conftest modules."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[2]
URL_LINE = re.compile(r"serving .* on (http://\S+)/v1")
START_TIMEOUT_S = 120.0


class ServerProcess:
    """`python -m server.cli` with the given flags; stdout/stderr are collected in memory for assertions."""

    def __init__(self, model_dir: Path, *flags: str, env: Mapping[str, str] | None = None,
                 wait_ready: bool = True) -> None:
        command = [sys.executable, "-m", "server.cli", "--model", str(model_dir), "--port", "0",
                   "--served-model-name", "tiny", "tiny-alias", *flags]
        full_env = {key: value for key, value in os.environ.items()
                    if key not in ("GLM_SERVE_API_KEY", "GLM_SERVE_TEST_SCRIPT")}
        full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
        self.proc = subprocess.Popen(command, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._url_found = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr, False), daemon=True).start()
        if wait_ready:
            self.wait_ready()

    def _read(self, stream: Any, sink: list[str], look_for_url: bool) -> None:
        for line in stream:
            sink.append(line)
            match = URL_LINE.search(line) if look_for_url else None
            if match:
                self.url = match.group(1)
                self._url_found.set()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self._url_found.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start (rc={self.proc.poll()}):\n{self.log()}")

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def request_log(self) -> list[dict[str, Any]]:
        """The JSON request lines written so far."""
        out = []
        for line in list(self.stderr):
            if line.startswith('{"event":"request"'):
                out.append(json.loads(line))
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def write_script(path: Path, **script: Any) -> Path:
    path.write_text(json.dumps(script), encoding="utf-8")
    return path


def sample_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """A sample's value from Prometheus text, parsed with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    return None


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def sse_events(lines: Sequence[str]) -> Iterator[str]:
    """`data:` payloads of raw SSE lines (comments and blank lines skipped)."""
    for line in lines:
        if line.startswith("data: "):
            yield line[len("data: "):]


def metric(server: ServerProcess, name: str, labels: Mapping[str, str] | None = None,
           headers: Mapping[str, str] | None = None) -> float:
    """A sample's value from the server's /metrics (0 when absent)."""
    import httpx

    value = sample_value(httpx.get(server.url + "/metrics", headers=headers, timeout=10).text, name, labels)
    return 0.0 if value is None else value


def is_idle(server: ServerProcess, headers: Mapping[str, str] | None = None) -> bool:
    """No request running or waiting in the engine, and the KV pool free."""
    return all(metric(server, name, headers=headers) == 0 for name in (
        "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"))
