"""Helpers of the Docker deployment checks (imported by the tests; fixtures live in conftest.py).

Nothing here needs a Docker engine: an image's command runs directly on this machine with `--host 127.0.0.1` and a
free port substituted; tools that validate the configs are looked up and skipped with a reason when absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from docker_files import Dockerfile
from served_command import REPO, ServedCommand, with_option

DOCKER_DIR = REPO / "docker"


def embedded_model_dir() -> Path | None:
    """The model `glm-serve` serves without --model (the images' default), or None while there is none."""
    from server.cli import resolve_model

    try:
        return Path(resolve_model(None))
    except SystemExit:
        return None


def embedded_model_files() -> list[Path]:
    """Files under engine/embedded/ in the tree: package data that `pip install .` must carry."""
    return sorted(p for p in (REPO / "engine" / "embedded").rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def image_argv(dockerfile: Dockerfile, port: int, extra: tuple[str, ...] = ()) -> list[str]:
    """ENTRYPOINT + CMD as `docker run` would exec them, bound to 127.0.0.1:port instead of 0.0.0.0:8000."""
    argv = [*dockerfile.exec_form("ENTRYPOINT"), *dockerfile.exec_form("CMD"), *extra]
    return with_option(with_option(argv, "--host", "127.0.0.1"), "--port", str(port))



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
