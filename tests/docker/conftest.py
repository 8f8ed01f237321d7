"""Fixtures for the Docker deployment checks: the two Dockerfiles, the tools that validate the configs (skipped with
a reason when absent), and one real server started from the CPU image's command line and sent some traffic.

Nothing here needs a Docker engine: the image's command runs directly on this machine with `--host 127.0.0.1`
and a free port substituted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from docker_files import Dockerfile  # noqa: E402
from served_command import REPO, ServedCommand, free_port, with_option  # noqa: E402

DOCKER_DIR = REPO / "docker"
START_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def gpu_dockerfile() -> Dockerfile:
    return Dockerfile.read(DOCKER_DIR / "Dockerfile")


@pytest.fixture(scope="session")
def cpu_dockerfile() -> Dockerfile:
    return Dockerfile.read(DOCKER_DIR / "Dockerfile.cpu")


def embedded_model_dir() -> Path | None:
    """The model the images serve without --model, or None while it is not in the tree."""
    from engine.embedded_model import default_model_path

    try:
        return default_model_path()
    except FileNotFoundError:
        return None


@pytest.fixture(scope="session")
def model_args(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """Extra arguments for running an image's command here: none once the embedded model is in the tree,
    otherwise `--model` with a tiny random model (the images' default would not start without it)."""
    if embedded_model_dir() is not None:
        return ()
    sys.path.insert(0, str(REPO / "tests" / "server"))
    from tiny_model import make_server_model_dir

    return ("--model", str(make_server_model_dir(tmp_path_factory.mktemp("docker_tiny"))))


def image_argv(dockerfile: Dockerfile, port: int, extra: tuple[str, ...] = ()) -> list[str]:
    """ENTRYPOINT + CMD as `docker run` would exec them, bound to 127.0.0.1:port instead of 0.0.0.0:8000."""
    argv = [*dockerfile.exec_form("ENTRYPOINT"), *dockerfile.exec_form("CMD"), *extra]
    return with_option(with_option(argv, "--host", "127.0.0.1"), "--port", str(port))


@pytest.fixture(scope="session")
def start_image_command(model_args: tuple[str, ...]) -> Iterator[Callable[[Dockerfile], ServedCommand]]:
    """Starts a Dockerfile's command (once per distinct command line) and waits for /health 200."""
    servers: dict[tuple[str, ...], ServedCommand] = {}

    def start(dockerfile: Dockerfile) -> ServedCommand:
        key = tuple(image_argv(dockerfile, 0, model_args))
        if key not in servers:
            port = free_port()
            servers[key] = server = ServedCommand(image_argv(dockerfile, port, model_args), port)
            server.wait_healthy(START_TIMEOUT_S)
        return servers[key]

    yield start
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session")
def warm_server(start_image_command: Callable[[Dockerfile], ServedCommand],
                cpu_dockerfile: Dockerfile) -> tuple[ServedCommand, str]:
    """The CPU image's server after traffic (chat, streamed completion, one 400), so histograms have samples;
    returns it with its served model name."""
    server = start_image_command(cpu_dockerfile)
    send_traffic(server)
    model = httpx.get(server.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    return server, model


def send_traffic(server: ServedCommand) -> None:
    model = httpx.get(server.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    chat = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
        "model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    assert chat.status_code == 200, chat.text
    with httpx.stream("POST", server.url + "/v1/completions", timeout=60, json={
            "model": model, "prompt": "Hello there", "max_tokens": 4, "stream": True}) as stream:
        assert stream.status_code == 200
        assert any(line == "data: [DONE]" for line in stream.iter_lines())
    bad = httpx.post(server.url + "/v1/completions", timeout=10, json={"model": model, "prompt": "x",
                                                                       "max_tokens": -1})
    assert bad.status_code == 400, bad.text


def tool_path(name: str) -> str:
    """A command-line tool's path, or a skip naming the package that brings it."""
    found = shutil.which(name)
    if found is None:
        package = {"promtool": "prometheus", "prometheus": "prometheus"}.get(name, name)
        pytest.skip(f"{name} is not installed (apt-get install -y {package}); CI installs it")
    return found


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) where it answers, else `docker-compose`; skips when neither is installed."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install -y docker-compose); "
                "CI installs it")
