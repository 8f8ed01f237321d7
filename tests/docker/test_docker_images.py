"""The two Dockerfiles, read without a Docker engine: the command the image runs, its user, health check, volumes,
and that the build context they copy installs into a complete `glm-serve` (built here as a wheel)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from docker_files import Dockerfile, duration_seconds
from docker_support import DOCKER_DIR, embedded_model_files
from served_command import REPO

from server.cli import build_parser

HEALTH_URL = re.compile(r"http://(?:127\.0\.0\.1|localhost):(\d+)/health\b")
MIN_START_PERIOD_S = {"Dockerfile": 10 * 60, "Dockerfile.cpu": 60}  # GPU: large checkpoints + FlashInfer JIT


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(params=["Dockerfile", "Dockerfile.cpu"])
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return Dockerfile.read(DOCKER_DIR / request.param)


def test_entrypoint_serves_on_all_interfaces_port_8000_whatever_the_run_arguments(dockerfile: Dockerfile) -> None:
    entrypoint = dockerfile.exec_form("ENTRYPOINT")
    assert entrypoint[0] == "glm-serve", "ENTRYPOINT is the server command itself (no subcommand, no shell)"
    default = build_parser().parse_args([*entrypoint[1:], *dockerfile.exec_form("CMD")])
    # `docker run IMAGE --model ...` replaces CMD: the bind address must survive that.
    with_run_args = build_parser().parse_args([*entrypoint[1:], "--model", "/models/GLM-4.5-Air"])
    for ns in (default, with_run_args):
        assert (ns.host, ns.port) == ("0.0.0.0", 8000)
    assert dockerfile.last("EXPOSE").value.split() == ["8000"]


def test_runs_as_a_non_root_user_created_in_the_image(dockerfile: Dockerfile) -> None:
    user = dockerfile.last("USER").value.split(":")[0]
    assert user not in ("root", "0")
    assert any(re.search(rf"useradd\b.*\s{re.escape(user)}(\s|$)", ins.value) for ins in dockerfile.all("RUN"))
    assert dockerfile.instructions.index(dockerfile.last("USER")) > dockerfile.instructions.index(
        dockerfile.all("RUN")[-1]), "every RUN (pip, apt) happens before switching to the unprivileged user"


def test_healthcheck_polls_health_on_the_exposed_port_with_a_start_period_for_loading(
        dockerfile: Dockerfile) -> None:
    check = dockerfile.healthcheck
    urls = HEALTH_URL.findall(" ".join(check.command))
    assert urls == ["8000"], f"one GET /health on the exposed port, got {check.command}"
    assert duration_seconds(check.options["start-period"]) >= MIN_START_PERIOD_S[dockerfile.path.name]
    assert duration_seconds(check.options["timeout"]) < duration_seconds(check.options["interval"])
    assert int(check.options["retries"]) >= 1
    assert dockerfile.last("STOPSIGNAL").value == "SIGTERM"


def test_hf_cache_is_a_volume_and_output_unbuffered(dockerfile: Dockerfile) -> None:
    env = dockerfile.env
    assert env["PYTHONUNBUFFERED"] == "1"
    volumes = [v for ins in dockerfile.all("VOLUME") for v in _volume_paths(ins.value)]
    assert env["HF_HOME"] in volumes
    home = env["HF_HOME"].split("/.cache/")[0]
    assert any(f"chown -R {dockerfile.last('USER').value}" in ins.value and home in ins.value
               for ins in dockerfile.all("RUN")), "the cache volume must be writable by the unprivileged user"


def _volume_paths(value: str) -> list[str]:
    import json

    return json.loads(value) if value.startswith("[") else value.split()


def test_torch_version_is_the_pyproject_pin(dockerfile: Dockerfile) -> None:
    pins = [d for d in pyproject()["project"]["dependencies"] if re.match(r"torch\s*==", d)]
    assert pins, "pyproject.toml pins torch"
    assert dockerfile.arg_default("TORCH_VERSION") == pins[0].split("==")[1].strip()


def test_gpu_image_is_cuda_runtime_with_the_cuda_extra(gpu_dockerfile: Dockerfile) -> None:
    assert gpu_dockerfile.base_image.startswith("nvidia/cuda:") and "-runtime-" in gpu_dockerfile.base_image
    installs = " ".join(ins.value for ins in gpu_dockerfile.all("RUN"))
    assert 'pip install ".[cuda]"' in installs  # flashinfer-python
    assert "nvcc" in installs or "cuda-minimal-build" in installs, "FlashInfer JIT needs nvcc at run time"
    assert gpu_dockerfile.env["CUDA_HOME"] == "/usr/local/cuda"


def test_cpu_image_has_no_cuda_and_checks_the_embedded_model(cpu_dockerfile: Dockerfile) -> None:
    assert "cuda" not in cpu_dockerfile.base_image
    assert cpu_dockerfile.arg_default("TORCH_INDEX_URL").endswith("/whl/cpu")
    runs = [ins.value for ins in cpu_dockerfile.all("RUN")]
    assert any('--index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"' in run for run in runs)
    assert not any("[cuda]" in run for run in runs)
    assert any("resolve_model(None)" in run for run in runs), "the build fails without the embedded model"


def test_copied_sources_are_the_packages_pyproject_declares(dockerfile: Dockerfile) -> None:
    setuptools = pyproject()["tool"]["setuptools"]
    packages = {pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]}
    copied = set(dockerfile.copy_sources)
    assert packages | {"pyproject.toml", pyproject()["project"]["readme"]} <= copied
    ignore = DOCKER_DIR / f"{dockerfile.path.name}.dockerignore"
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and line[0] != "#"]
    for source in copied:
        assert not _dockerignored(patterns, source), f"{ignore.name} drops {source}, which the image copies"
    for heavy in (".venv", ".git", "tests"):
        assert _dockerignored(patterns, heavy), f"{ignore.name} sends {heavy} to the builder"


def _dockerignored(patterns: list[str], path: str) -> bool:
    """.dockerignore semantics for a top-level path: the last matching pattern decides, `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!")
        if fnmatch.fnmatch(path, glob) or (glob.startswith("**") and fnmatch.fnmatch(path, glob[3:] or "*")):
            ignored = not negated
    return ignored


def test_build_context_installs_a_complete_glm_serve(tmp_path: Path, cpu_dockerfile: Dockerfile) -> None:
    """What `pip install .` in the image gets: a wheel built from exactly the copied sources."""
    context = tmp_path / "context"
    for source in cpu_dockerfile.copy_sources:
        src = REPO / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, context / source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(context)], check=True, capture_output=True, timeout=240)
    (wheel,) = (tmp_path / "dist").glob("glm_serve-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert re.search(r"^glm-serve = server\.cli:main$", entry_points, re.M)
    for package in ("server", "engine", "kernels", "tokenizer"):
        expected = {p.relative_to(REPO).as_posix() for p in (REPO / package).rglob("*.py")}
        assert expected <= names, f"missing from the wheel: {sorted(expected - names)[:5]}"
    shipped = {p.relative_to(REPO).as_posix() for p in embedded_model_files()}
    if not shipped:
        pytest.skip("the embedded model (engine/embedded/) is not in the tree yet: the CPU image would not build")
    assert shipped <= names, (f"the embedded model is not package data of a non-editable install (the CPU "
                              f"image's default model): missing {sorted(shipped - names)}")
