"""docker/compose.yaml: validated by Compose itself where installed (`docker compose` or `docker-compose`), and
read here for what Compose cannot know: that each server command parses with glm-serve's own CLI, that the stop
grace period covers the drain, and that the mounts, aliases and ports meet Prometheus's and Grafana's configs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker_files import Dockerfile, duration_seconds
from docker_support import DOCKER_DIR, compose_command
from served_command import REPO, command_env

from server.cli import build_parser

COMPOSE = DOCKER_DIR / "compose.yaml"
SERVERS = {"glm-serve": ("gpu", "Dockerfile"), "glm-serve-cpu": ("cpu", "Dockerfile.cpu")}
_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]


def with_defaults(value: str) -> str:
    """Compose interpolation with nothing set in the environment: `${NAME:-default}` -> default."""
    return _VARIABLE.sub(lambda m: m.group(2) or "", value)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's short-syntax volumes (`source:target[:mode]`)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = with_defaults(volume).split(":")[:2]
        out[target] = source
    return out


@pytest.mark.parametrize("profile", [None, "cpu", "gpu"])
def test_compose_validates_the_file(profile: str | None, tmp_path: Path) -> None:
    command = [*compose_command(), "-f", str(COMPOSE), *(["--profile", profile] if profile else []), "config"]
    env = {k: v for k, v in command_env().items() if not k.startswith(("GLM_", "COMPOSE_"))}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    if profile is None:
        return  # NOTE: Compose v2 lists only the services of active profiles (none here), v1 lists all
    resolved = yaml.safe_load(result.stdout)["services"]
    expected = {"prometheus", "grafana"} | {name for name, (p, _) in SERVERS.items() if p == profile}
    assert expected <= set(resolved)
    gpu_command = resolved.get("glm-serve", {}).get("command")
    if gpu_command is not None:  # interpolated by Compose, with the defaults
        assert gpu_command[:2] == ["--model", "/models/GLM-4.5-Air"]


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_server_service_runs_its_image_command_with_drain_time(name: str) -> None:
    service, (profile, dockerfile_name) = services()[name], SERVERS[name]
    dockerfile = Dockerfile.read(DOCKER_DIR / dockerfile_name)
    assert service["profiles"] == [profile]
    assert (DOCKER_DIR / service["build"]["context"]).resolve() == REPO
    assert service["build"]["dockerfile"] == f"docker/{dockerfile_name}"
    argv = [*dockerfile.exec_form("ENTRYPOINT")[1:], *(with_defaults(a) for a in service["command"])]
    ns = build_parser().parse_args(argv)  # the container's full command line, as glm-serve reads it
    assert (ns.host, ns.port) == ("0.0.0.0", 8000)
    assert ns.metrics_public, "Prometheus scrapes without a key even when GLM_SERVE_API_KEY is set"
    grace = duration_seconds(service["stop_grace_period"])
    assert grace > ns.shutdown_timeout, "Docker would SIGKILL the server before the drain ends"
    assert [p.split(":")[-1] for p in service["ports"]] == dockerfile.last("EXPOSE").value.split()
    assert "server" in service["networks"]["default"]["aliases"], "Prometheus scrapes server:8000"
    assert service["ipc"] == "host" or "shm_size" in service
    assert service["ulimits"] == {"memlock": -1, "stack": 67108864}
    assert {"HF_TOKEN", "GLM_SERVE_API_KEY"} <= set(service["environment"])
    assert dockerfile.env["HF_HOME"] in mounts(service)
    assert "healthcheck" not in service, "the image's HEALTHCHECK applies"


def test_gpu_service_reserves_nvidia_gpus_and_keeps_jit_kernels() -> None:
    service = services()["glm-serve"]
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    dockerfile = Dockerfile.read(DOCKER_DIR / "Dockerfile")
    image_volumes = {v for ins in dockerfile.all("VOLUME") for v in yaml.safe_load(ins.value)}
    assert image_volumes <= set(mounts(service)), "named volumes for every VOLUME (caches survive re-creation)"
    assert mounts(service)["/models"] == "./models"
    assert "deploy" not in services()["glm-serve-cpu"]


def test_monitoring_services_read_the_repo_configs() -> None:
    all_services = services()
    prometheus, grafana = all_services["prometheus"], all_services["grafana"]
    for service in (prometheus, grafana):
        assert sorted(service["profiles"]) == ["cpu", "gpu"], "started with either server profile"
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    assert mounts(prometheus)[config_flag.split("=", 1)[1]] == "./prometheus/prometheus.yml"
    assert [p.split(":")[-1] for p in prometheus["ports"]] == ["9090"]
    datasource = yaml.safe_load((DOCKER_DIR / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"  # the service name and its port

    grafana_mounts = mounts(grafana)
    provisioning = DOCKER_DIR / grafana_mounts["/etc/grafana/provisioning"]
    assert (provisioning / "datasources").is_dir() and (provisioning / "dashboards").is_dir()
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "glm-serve.yaml").read_text())["providers"]
    dashboards_source = DOCKER_DIR / grafana_mounts[provider["options"]["path"]]
    assert (dashboards_source / "glm-serve.json").is_file()
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert str(home.parent) == provider["options"]["path"] and (dashboards_source / home.name).is_file()
