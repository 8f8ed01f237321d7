"""Each image's ENTRYPOINT + CMD, run directly on this machine (127.0.0.1 and a free port in place of 0.0.0.0:8000),
starts the server, and the image's own HEALTHCHECK command fails before it is up and passes once it is ready."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import httpx
import pytest
from docker_files import Dockerfile
from docker_support import DOCKER_DIR, embedded_model_dir
from served_command import ServedCommand, command_env, free_port


def healthcheck_argv(dockerfile: Dockerfile, port: int) -> list[str]:
    command = list(dockerfile.healthcheck.command)
    replaced = [word.replace(":8000/health", f":{port}/health") for word in command]
    assert replaced != command, "the health check names port 8000"
    return replaced


def run_healthcheck(dockerfile: Dockerfile, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(healthcheck_argv(dockerfile, port), env=command_env(), capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile"])
def test_image_command_starts_the_server_and_passes_the_healthcheck(
        name: str, start_image_command: Callable[[Dockerfile], ServedCommand]) -> None:
    dockerfile = Dockerfile.read(DOCKER_DIR / name)
    assert run_healthcheck(dockerfile, free_port()).returncode != 0, "the check fails while nothing answers"
    server = start_image_command(dockerfile)
    result = run_healthcheck(dockerfile, server.port)
    assert result.returncode == 0, f"health check failed: {result.stderr}\n{server.log()}"
    models = httpx.get(server.url + "/v1/models", timeout=10).json()["data"]
    if embedded_model_dir() is not None:  # the image's own default: the embedded model, no --model
        assert models[0]["id"] == embedded_model_dir().name
    assert models[0]["max_model_len"] > 0


def test_healthcheck_fails_on_a_server_that_answers_503(tmp_path: object) -> None:
    """The check must tell 'up but not ready' (503 while loading or draining) from healthy, not just connect."""
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from threading import Thread

    class Loading(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(503 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Loading)
    Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        for name in ("Dockerfile.cpu", "Dockerfile"):
            result = run_healthcheck(Dockerfile.read(DOCKER_DIR / name), httpd.server_address[1])
            assert result.returncode != 0, f"{name}: a 503 /health passed the health check"
    finally:
        httpd.shutdown()
