"""Fixtures for the Docker deployment checks: the two Dockerfiles, and one real server started from the CPU
image's command line and sent some traffic (helpers: docker_support.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from docker_files import Dockerfile  # noqa: E402
from docker_support import DOCKER_DIR, REPO, embedded_model_dir, image_argv, send_traffic  # noqa: E402
from served_command import ServedCommand, free_port  # noqa: E402

START_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def gpu_dockerfile() -> Dockerfile:
    return Dockerfile.read(DOCKER_DIR / "Dockerfile")


@pytest.fixture(scope="session")
def cpu_dockerfile() -> Dockerfile:
    return Dockerfile.read(DOCKER_DIR / "Dockerfile.cpu")


@pytest.fixture(scope="session")
def model_args(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """Extra arguments for running an image's command here: none once the embedded model is in the tree,
    otherwise `--model` with a tiny random model (the images' default would not start without it)."""
    if embedded_model_dir() is not None:
        return ()
    sys.path.insert(0, str(REPO / "tests" / "server"))
    from server_model import make_server_model_dir

    return ("--model", str(make_server_model_dir(tmp_path_factory.mktemp("docker_tiny"))))


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


