"""Process lifecycle: /health while loading, SIGTERM drain (finish in time, or abort at the timeout), engine death
(non-zero exit) and a hung engine loop (stale heartbeat). Each test owns its server, because each ends it; the
scripted core (test-only) supplies the load delay, slow steps and injected faults."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import ServerProcess, sse_events, wait_for, write_script

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "count"}]}
ENDLESS = [{"text": "la ", "stop_token": None}]  # runs to max_tokens


def start(tiny_model_dir: Path, tmp_path: Path, *flags: str, wait_ready: bool = True, **script: Any) -> ServerProcess:
    path = write_script(tmp_path / "script.json", replies=ENDLESS, **script)
    return ServerProcess(tiny_model_dir, *flags, env={"GLM_SERVE_TEST_SCRIPT": str(path)}, wait_ready=wait_ready)


class StreamReader(threading.Thread):
    """Reads one streamed chat completion in the background; `first_token` is set when content arrives."""

    def __init__(self, server: ServerProcess, **body: Any) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.body = {**CHAT, **body, "stream": True, "stream_options": {"include_usage": True}}
        self.first_token = threading.Event()
        self.events: list[str] = []
        self.status = 0

    def run(self) -> None:
        with httpx.stream("POST", self.server.base_url + "/chat/completions", json=self.body, timeout=60) as r:
            self.status = r.status_code
            for payload in sse_events(r.iter_lines()):
                self.events.append(payload)
                if '"content":"la' in payload:
                    self.first_token.set()

    def finish_reason(self) -> str | None:
        chunks = [json.loads(e) for e in self.events if e != "[DONE]"]
        reasons = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
        return reasons[-1] if reasons else None


def health(server: ServerProcess) -> httpx.Response:
    return httpx.get(server.url + "/health", timeout=5)


def test_loading_ready_and_graceful_drain(tiny_model_dir: Path, tmp_path: Path) -> None:
    server = start(tiny_model_dir, tmp_path, "--shutdown-timeout", "30", wait_ready=False,
                   load_delay_s=4.0, step_delay_s=0.03)
    try:
        port_line = wait_for(lambda: "Uvicorn running on" in server.log(), timeout=60)
        assert port_line
        url = server.log().split("Uvicorn running on ")[1].split()[0]
        loading = httpx.get(url + "/health", timeout=5)
        assert loading.status_code == 503 and loading.json()["error"]["message"] == "Not ready: loading"
        assert httpx.get(url + "/v1/models", timeout=5).status_code == 200  # answers before the engine is ready
        early = httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=5)
        assert early.status_code == 503 and early.headers["retry-after"]
        server.wait_ready()
        assert health(server).status_code == 200
        reader = StreamReader(server, max_tokens=60)
        reader.start()
        assert reader.first_token.wait(30)
        server.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: health(server).status_code == 503, timeout=5)
        assert "draining" in health(server).json()["error"]["message"]
        refused = httpx.post(server.base_url + "/chat/completions", json=CHAT, timeout=5)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "server_overloaded"
        reader.join(30)
        assert reader.status == 200 and reader.events[-1] == "[DONE]"
        usage = json.loads(reader.events[-2])["usage"]  # the in-flight request finished whole
        assert usage["completion_tokens"] == 60 and reader.finish_reason() == "length"
        assert server.proc.wait(30) == 0
    finally:
        server.stop(signal.SIGKILL)


def test_drain_timeout_aborts_streams_with_an_error_event(tiny_model_dir: Path, tmp_path: Path) -> None:
    server = start(tiny_model_dir, tmp_path, "--shutdown-timeout", "0.5", step_delay_s=0.05)
    try:
        reader = StreamReader(server, max_tokens=1000)
        reader.start()
        assert reader.first_token.wait(30)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        reader.join(20)
        assert time.monotonic() - started < 10
        assert reader.events[-1] == "[DONE]"
        error = json.loads(reader.events[-2])["error"]
        assert error["code"] == "server_overloaded" and "shutting down" in error["message"]
        assert server.proc.wait(30) == 0
    finally:
        server.stop(signal.SIGKILL)


def test_engine_death_reports_in_stream_and_exits_nonzero(tiny_model_dir: Path, tmp_path: Path) -> None:
    server = start(tiny_model_dir, tmp_path, fail_at_step=5)
    try:
        reader = StreamReader(server, max_tokens=50)
        reader.start()
        reader.join(30)
        assert reader.status == 200 and reader.events[-1] == "[DONE]"
        error = json.loads(reader.events[-2])["error"]
        assert error["type"] == "server_error" and "engine stopped" in error["message"]
        assert server.proc.wait(30) == 1
        assert "engine loop died" in server.log()
    finally:
        server.stop(signal.SIGKILL)


def test_hung_engine_turns_health_503(tiny_model_dir: Path, tmp_path: Path) -> None:
    server = start(tiny_model_dir, tmp_path, "--heartbeat-timeout", "1", "--shutdown-timeout", "0", hang_at_step=2)
    try:
        assert health(server).status_code == 200
        with pytest.raises(httpx.TimeoutException):
            httpx.post(server.base_url + "/chat/completions", json={**CHAT, "max_tokens": 5}, timeout=2)
        assert wait_for(lambda: health(server).status_code == 503, timeout=10)
        assert "heartbeat stale" in health(server).json()["error"]["message"]
        assert server.stop(signal.SIGTERM, timeout=20) == 0
    finally:
        server.stop(signal.SIGKILL)
